//! Progress of long commands on standard error, never standard output (the command's result):
//! a bar redrawn in place on a terminal, a line every few seconds otherwise, and a last line
//! when the work is done.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aisc_domain::progress::Progress;

/// How often a terminal's bar is redrawn.
const REDRAW_EVERY: Duration = Duration::from_millis(100);
/// How often a line is written when standard error is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(2);
const BAR_WIDTH: u64 = 24;

pub struct ProgressReport {
    label: String,
    unit: &'static str,
    total: Option<u64>,
    terminal: bool,
    started: Instant,
    state: Mutex<Shown>,
}

#[derive(Default)]
struct Shown {
    done: u64,
    last_shown: Option<Instant>,
}

impl ProgressReport {
    /// Progress of `label`, counted in `unit`, out of `total` when it is known.
    pub fn new(label: impl Into<String>, unit: &'static str, total: Option<u64>) -> Self {
        Self {
            label: label.into(),
            unit,
            total,
            terminal: std::io::stderr().is_terminal(),
            started: Instant::now(),
            state: Mutex::new(Shown::default()),
        }
    }

    /// Shows the last figure and ends the line.
    pub fn finish(&self) {
        let Ok(state) = self.state.lock() else { return };
        let text = self.describe(state.done, true);
        let mut err = std::io::stderr().lock();
        let _ = if self.terminal { writeln!(err, "\r\x1b[2K{text}") } else { writeln!(err, "{text}") };
    }

    fn describe(&self, done: u64, finished: bool) -> String {
        let elapsed = self.started.elapsed();
        let rate = if elapsed.as_secs_f64() > 0.0 { done as f64 / elapsed.as_secs_f64() } else { 0.0 };
        let counted = match self.total {
            Some(total) if total > 0 => {
                let percent = done.min(total) * 100 / total;
                format!("{} of {} {} ({percent}%)", grouped(done), grouped(total), self.unit)
            }
            _ => format!("{} {}", grouped(done), self.unit),
        };
        let bar = match self.total {
            Some(total) if total > 0 && self.terminal && !finished => {
                let filled = done.min(total) * BAR_WIDTH / total;
                format!(
                    "[{}{}] ",
                    "#".repeat(usize::try_from(filled).unwrap_or(0)),
                    "-".repeat(usize::try_from(BAR_WIDTH - filled).unwrap_or(0))
                )
            }
            _ => String::new(),
        };
        let state = if finished { "done, " } else { "" };
        format!(
            "{}: {bar}{state}{counted}, {}/s, {:.1} s",
            self.label,
            grouped(rate.round() as u64),
            elapsed.as_secs_f64()
        )
    }
}

impl Progress for ProgressReport {
    fn reached(&self, done: u64) {
        let Ok(mut state) = self.state.lock() else { return };
        state.done = state.done.max(done);
        let every = if self.terminal { REDRAW_EVERY } else { LINE_EVERY };
        let due = match state.last_shown {
            Some(last) => last.elapsed() >= every,
            // The first figure waits a period too: quick work shows only its last line.
            None => self.started.elapsed() >= every,
        };
        if !due {
            return;
        }
        state.last_shown = Some(Instant::now());
        let text = self.describe(state.done, false);
        let mut err = std::io::stderr().lock();
        let _ = if self.terminal { write!(err, "\r\x1b[2K{text}") } else { writeln!(err, "{text}") };
        let _ = err.flush();
    }
}

/// `1234567` as `1,234,567`.
pub(crate) fn grouped(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }

    #[test]
    fn a_line_names_the_work_its_count_and_share() {
        let report = ProgressReport { terminal: false, ..ProgressReport::new("audit verify", "events", Some(200)) };
        let line = report.describe(50, false);
        assert!(line.starts_with("audit verify: 50 of 200 events (25%), "), "{line}");
        let done = report.describe(200, true);
        assert!(done.starts_with("audit verify: done, 200 of 200 events (100%), "), "{done}");
        let open = ProgressReport { terminal: false, ..ProgressReport::new("demo seed", "commands", None) };
        assert!(open.describe(1_500, false).starts_with("demo seed: 1,500 commands, "));
    }
}
