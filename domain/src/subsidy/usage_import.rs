//! Bulk usage import: a month of Cyberport's scheduler lines (`project,service_type,units,period`)
//! for many projects as one operation. Parsing and deciding are pure: each line is decided by
//! the same [`ChargeUsage`] decision as a single charge, over states the service loads once;
//! the service appends the accepted lines in batches.
//!
//! Readings: `project` is the application id; each line becomes one charge with the usage id
//! `{import_id}-{line}`, so importing the same file again under the same import id recognises
//! the lines already charged instead of charging them twice (an interrupted import resumes).
//! Lines are decided in file order against the effect of the lines accepted before them (the
//! allocation and the ceiling are cumulative). Two lines for the same project, service and
//! month are both charged: the scheduler may report one month in several lines.
//!
//! A line is a *repeat* when its application already has a charge, not reversed, of the same
//! service, month and units made by another import: the same usage sent again under another
//! import id (a copy of a file, a re-export from the scheduler) would be paid twice. A repeat
//! is refused (`usage_already_imported`, naming the earlier import and its usage id) unless
//! the import allows repeated lines. It is decided on the application's own folded state, at
//! the version the charge is appended at, so it holds against a concurrent import too. Charges
//! recorded on their own are not imports and never make a line a repeat; neither does an
//! earlier run of the same import (its lines are recognised as already imported instead).

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Serialize;

use super::application::{self, ApplicationState, ChargeUsage};
use super::error::DomainError;
use super::prices::PriceScheduleState;
use super::values::{Money, Period, ServiceType};

/// The header the file must start with.
pub const HEADER: [&str; 4] = ["project", "service_type", "units", "period"];

/// Whether one invalid line refuses the whole import, or the valid lines are written anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportMode {
    AllOrNothing,
    Partial,
}

impl ImportMode {
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        match text {
            "all_or_nothing" => Ok(Self::AllOrNothing),
            "partial" => Ok(Self::Partial),
            other => Err(DomainError::InvalidInput {
                field: "mode",
                reason: format!("{other:?} is neither all_or_nothing nor partial"),
            }),
        }
    }
}

/// What an import does with a line that repeats a charge another import made (see the module
/// documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RepeatedLines {
    /// Refused as `usage_already_imported`: the default.
    #[default]
    Refuse,
    /// Charged anyway: the clerk has checked that the usage really happened twice.
    Charge,
}

/// A well-formed line of the file (line numbers count the header as line 1), borrowing from
/// the file's text where it can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageLine<'a> {
    pub line: usize,
    pub application_id: Cow<'a, str>,
    pub service_type: ServiceType,
    pub units: u64,
    pub period: Period,
}

impl UsageLine<'_> {
    pub fn usage_id(&self, import_id: &str) -> String {
        usage_id(import_id, self.line)
    }
}

pub fn usage_id(import_id: &str, line: usize) -> String {
    format!("{import_id}-{line}")
}

/// Why a line was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineError {
    pub line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    pub code: &'static str,
    pub message: String,
}

impl LineError {
    fn new(line: usize, project: Option<&str>, error: &DomainError) -> Self {
        Self { line, project: project.map(str::to_owned), code: error.code(), message: error.to_string() }
    }

    fn format(line: usize, project: Option<&str>, message: String) -> Self {
        Self { line, project: project.map(str::to_owned), code: "invalid_line", message }
    }
}

/// An import id: letters, digits and `-` (it prefixes every usage id it creates).
pub fn check_import_id(import_id: &str) -> Result<(), DomainError> {
    let valid = !import_id.is_empty()
        && import_id.len() <= 48
        && import_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(DomainError::InvalidInput { field: "import_id", reason: "letters, digits and -, at most 48".into() })
    }
}

/// A usage file as it is read: its header checked once, its lines parsed each time they are
/// walked. Nothing parsed is held, so the passes of a million-line import hold the text and
/// one line at a time, not a million parsed lines.
#[derive(Debug, Clone)]
pub struct UsageFile<'a> {
    /// The text after the header line (`None`: the header is missing or wrong).
    body: Option<&'a str>,
}

impl<'a> UsageFile<'a> {
    pub fn read(text: &'a str) -> Self {
        // Spreadsheets save CSV with a byte-order mark; it is not part of the header.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let (header, body) = text.split_once('\n').unwrap_or((text, ""));
        let header_ok = {
            let fields = split_fields(header.trim_end_matches('\r')).unwrap_or_default();
            fields.len() == HEADER.len() && fields.iter().zip(HEADER).all(|(field, name)| field.trim() == name)
        };
        Self { body: header_ok.then_some(body) }
    }

    /// Every line after the header, blank ones skipped: well-formed, or why not.
    pub fn lines(&self) -> impl Iterator<Item = Result<UsageLine<'a>, LineError>> + 'a {
        self.body
            .unwrap_or_default()
            .lines()
            .enumerate()
            .map(|(index, raw)| (index + 2, raw.trim_end_matches('\r')))
            .filter(|(_, raw)| !raw.trim().is_empty())
            .map(|(line, raw)| parse_line(line, raw))
    }

    /// The well-formed lines.
    pub fn well_formed(&self) -> impl Iterator<Item = UsageLine<'a>> + 'a {
        self.lines().filter_map(Result::ok)
    }

    /// The well-formed lines, last first.
    pub fn well_formed_last_first(&self) -> impl Iterator<Item = UsageLine<'a>> + 'a {
        let body = self.body.unwrap_or_default();
        let last = body.lines().count() + 1;
        body.lines()
            .rev()
            .enumerate()
            .map(move |(from_end, raw)| (last - from_end, raw.trim_end_matches('\r')))
            .filter(|(_, raw)| !raw.trim().is_empty())
            .filter_map(|(line, raw)| parse_line(line, raw).ok())
    }

    /// The number of well-formed lines, and an error for each malformed one. An empty or
    /// headerless file is one error on line 1.
    pub fn check(&self) -> (usize, Vec<LineError>) {
        if self.body.is_none() {
            let header = format!("the first line must be the header {}", HEADER.join(","));
            return (0, vec![LineError::format(1, None, header)]);
        }
        let mut well_formed = 0;
        let mut errors = Vec::new();
        for line in self.lines() {
            match line {
                Ok(_) => well_formed += 1,
                Err(error) => errors.push(error),
            }
        }
        if well_formed == 0 && errors.is_empty() {
            errors.push(LineError::format(1, None, "the file holds no usage line".into()));
        }
        (well_formed, errors)
    }
}

/// Parses the whole file at once: the well-formed lines, and an error for each malformed one.
/// An empty or headerless file is one error on line 1. Blank lines are skipped.
pub fn parse(text: &str) -> (Vec<UsageLine<'_>>, Vec<LineError>) {
    let file = UsageFile::read(text);
    let (_, errors) = file.check();
    (file.well_formed().collect(), errors)
}

fn parse_line(line: usize, raw: &str) -> Result<UsageLine<'_>, LineError> {
    let mut fields = split_fields(raw).map_err(|message| LineError::format(line, None, message))?;
    if fields.len() != HEADER.len() {
        return Err(LineError::format(line, None, format!("{} fields, expected {}", fields.len(), HEADER.len())));
    }
    let project = match std::mem::take(&mut fields[0]) {
        Cow::Borrowed(text) => Cow::Borrowed(text.trim()),
        Cow::Owned(text) => Cow::Owned(text.trim().to_string()),
    };
    let valid_project =
        !project.is_empty() && project.len() <= 64 && project.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !valid_project {
        return Err(LineError::format(
            line,
            Some(&project),
            format!("project {project:?} is not an application id (letters, digits and -, at most 64)"),
        ));
    }
    let service_type = ServiceType::parse(fields[1].trim()).map_err(|e| LineError::new(line, Some(&project), &e))?;
    let units_text = fields[2].trim();
    let units = match units_text.parse::<u64>() {
        Ok(units) if units > 0 => units,
        _ => {
            return Err(LineError::format(
                line,
                Some(&project),
                format!("units {units_text:?} is not a positive whole number"),
            ));
        }
    };
    let period = Period::parse(fields[3].trim()).map_err(|e| LineError::new(line, Some(&project), &e))?;
    Ok(UsageLine { line, application_id: project, service_type, units, period })
}

/// Splits a CSV line (RFC 4180 quoting, no line breaks inside a field). A line without quotes
/// (the scheduler's) is split in place.
fn split_fields(raw: &str) -> Result<Vec<Cow<'_, str>>, String> {
    if !raw.contains('"') {
        return Ok(raw.split(',').map(Cow::Borrowed).collect());
    }
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = raw.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.trim().is_empty() && !was_quoted => {
                field.clear();
                quoted = true;
                was_quoted = true;
            }
            (false, ',') => {
                fields.push(Cow::Owned(std::mem::take(&mut field)));
                was_quoted = false;
            }
            (false, '"') => return Err("a quote inside an unquoted field".into()),
            (false, c) if was_quoted && !c.is_whitespace() => {
                return Err("text after a closing quote".into());
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err("an unclosed quote".into());
    }
    fields.push(Cow::Owned(field));
    Ok(fields)
}

/// What deciding a line gave.
#[derive(Debug, Clone, PartialEq)]
pub enum LineOutcome {
    /// The line's charge to its application (paid from what it reserved in the usage month's
    /// funding year).
    Charge(Box<application::ApplicationEvent>),
    /// Charged by an earlier run of the same import.
    AlreadyImported,
    Refused(LineError),
}

/// The states the lines are decided against, changed as lines are accepted.
#[derive(Debug, Clone, Default)]
pub struct ImportStates {
    pub applications: BTreeMap<String, ApplicationState>,
    pub prices: PriceScheduleState,
}

/// Decides one line against the states and, when it is charged, applies its events to them.
pub fn decide_line(
    states: &mut ImportStates,
    import_id: &str,
    line: &UsageLine<'_>,
    repeated_lines: RepeatedLines,
    today: NaiveDate,
) -> LineOutcome {
    let project = line.application_id.as_ref();
    let refuse = |error: DomainError| LineOutcome::Refused(LineError::new(line.line, Some(project), &error));
    let Some(state) = states.applications.get_mut(project) else {
        return refuse(DomainError::UnknownApplication { application: project.to_string() });
    };
    if state.status == application::Status::New {
        return refuse(DomainError::UnknownApplication { application: project.to_string() });
    }
    let usage_id = line.usage_id(import_id);
    if state.usage.contains(&usage_id) {
        return LineOutcome::AlreadyImported;
    }
    // Before the charge's own rules: a repeat usually also exceeds the allocation the earlier
    // import used up, and saying which import charged it tells the clerk what happened.
    if repeated_lines == RepeatedLines::Refuse
        && let Some((earlier_usage, earlier_import)) =
            state.charged_by_another_import(import_id, &line.service_type, line.period, line.units)
    {
        return refuse(DomainError::UsageAlreadyImported {
            import: earlier_import,
            usage: earlier_usage,
            service_type: line.service_type.to_string(),
            period: line.period.to_string(),
            units: line.units,
        });
    }
    let charge = ChargeUsage {
        application_id: project.to_string(),
        usage_id,
        import_id: Some(import_id.to_string()),
        service_type: line.service_type.clone(),
        period: line.period,
        units: line.units,
    };
    match charge.charge(state, &states.prices, today) {
        Ok(charged) => {
            let event = application::ApplicationEvent::from(charged);
            *state = application::state::apply(std::mem::take(state), &event);
            LineOutcome::Charge(Box::new(event))
        }
        Err(error) => refuse(error),
    }
}

/// Takes back what [`decide_line`] applied for a line it charged: a dry run over the whole
/// file leaves the states as they were, without holding a second copy of them.
/// `disbursed_before` is the application's disbursed total before the run.
pub fn undo_line(states: &mut ImportStates, import_id: &str, line: &UsageLine<'_>, disbursed_before: Money) {
    if let Some(state) = states.applications.get_mut(line.application_id.as_ref()) {
        std::sync::Arc::make_mut(&mut state.usage).unrecord(&line.usage_id(import_id));
        state.disbursed = disbursed_before;
    }
}

/// Line numbers as inclusive ranges (`[[2, 5], [7, 7]]`): says exactly which lines, compactly.
pub fn line_ranges(lines: impl IntoIterator<Item = usize>) -> Vec<[usize; 2]> {
    let mut ranges: Vec<[usize; 2]> = Vec::new();
    for line in lines {
        match ranges.last_mut() {
            Some(last) if last[1] + 1 == line => last[1] = line,
            _ => ranges.push([line, line]),
        }
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_lines_parse_with_their_line_numbers() {
        let text = "project,service_type,units,period\r\nabc-1,gpu_node_hour,120,2025-07\n\n\"abc-2\", cpu_core_hour ,5,2025-08\n";
        let (lines, errors) = parse(text);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].line, 2);
        assert_eq!(lines[0].application_id, "abc-1");
        assert_eq!(lines[0].units, 120);
        assert_eq!(lines[1].line, 4, "the blank line 3 still counts");
        assert_eq!(lines[1].service_type.as_str(), "cpu_core_hour");
        assert_eq!(lines[1].period.to_string(), "2025-08");
    }

    #[test]
    fn every_malformed_line_is_named_by_its_number_and_reason() {
        let text = [
            "project,service_type,units,period",
            "ok-1,gpu_node_hour,1,2025-07",
            "ok-2,GPU,1,2025-07",
            "ok-3,gpu_node_hour,0,2025-07",
            "ok-4,gpu_node_hour,-3,2025-07",
            "ok-5,gpu_node_hour,1,2025-13",
            "ok 6,gpu_node_hour,1,2025-07",
            "ok-7,gpu_node_hour,1",
            "\"ok-8,gpu_node_hour,1,2025-07",
            "ok-9,gpu_node_hour,1.5,2025-07",
        ]
        .join("\n");
        let (lines, errors) = parse(&text);
        assert_eq!(lines.iter().map(|l| l.line).collect::<Vec<_>>(), vec![2]);
        let numbered: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.code)).collect();
        assert_eq!(
            numbered,
            vec![
                (3, "invalid_service_type"),
                (4, "invalid_line"),
                (5, "invalid_line"),
                (6, "invalid_period"),
                (7, "invalid_line"),
                (8, "invalid_line"),
                (9, "invalid_line"),
                (10, "invalid_line"),
            ]
        );
        assert!(errors[1].message.contains("positive"), "{}", errors[1].message);
        assert_eq!(errors[0].project.as_deref(), Some("ok-2"));
    }

    #[test]
    fn a_file_without_the_header_or_without_lines_is_refused_on_line_one() {
        for text in ["", "abc-1,gpu_node_hour,1,2025-07\n", "project,units\n", "project,service_type,units,period\n\n"]
        {
            let (lines, errors) = parse(text);
            assert!(lines.is_empty(), "{text:?}");
            assert_eq!(errors.len(), 1, "{text:?}");
            assert_eq!(errors[0].line, 1, "{text:?}");
        }
    }

    #[test]
    fn a_byte_order_mark_before_the_header_is_not_part_of_it() {
        let (lines, errors) = parse("\u{feff}project,service_type,units,period\r\nabc-1,gpu_node_hour,1,2025-07\r\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(lines.len(), 1);
    }

    #[test]
    fn the_lines_read_last_first_are_the_lines_in_reverse() {
        let text = "project,service_type,units,period\r\nabc-1,gpu_node_hour,120,2025-07\n\nbad\n\"abc-2\",cpu_core_hour,5,2025-08\r\nabc-3,gpu_node_hour,1,2025-09";
        let file = UsageFile::read(text);
        let forward: Vec<_> = file.well_formed().collect();
        let mut backward: Vec<_> = file.well_formed_last_first().collect();
        backward.reverse();
        assert_eq!(forward, backward);
        assert_eq!(forward.iter().map(|line| line.line).collect::<Vec<_>>(), vec![2, 5, 6]);
    }

    #[test]
    fn line_ranges_are_exact_and_compact() {
        assert_eq!(line_ranges([2, 3, 4, 6, 9, 10]), vec![[2, 4], [6, 6], [9, 10]]);
        assert!(line_ranges(std::iter::empty()).is_empty());
    }

    #[test]
    fn a_line_for_an_unknown_project_is_refused_naming_it() {
        let (lines, errors) = parse("project,service_type,units,period\nabc-9,gpu_node_hour,1,2025-07\n");
        assert!(errors.is_empty(), "{errors:?}");
        let today = NaiveDate::from_ymd_opt(2025, 8, 5).expect("date");
        let mut states = ImportStates::default();
        // Not loaded at all, or loaded but never submitted: no such application.
        for known in [false, true] {
            if known {
                states.applications.insert("abc-9".into(), ApplicationState::default());
            }
            let outcome = decide_line(&mut states, "run-1", &lines[0], RepeatedLines::Refuse, today);
            let LineOutcome::Refused(error) = outcome else { panic!("refused, not {outcome:?}") };
            assert_eq!((error.line, error.project.as_deref(), error.code), (2, Some("abc-9"), "unknown_application"));
            assert_eq!(error.message, "no application abc-9");
        }
    }

    #[test]
    fn import_ids_and_modes_are_checked() {
        assert!(check_import_id("2025-07-run-3").is_ok());
        assert!(check_import_id("").is_err());
        assert!(check_import_id("a b").is_err());
        assert!(check_import_id(&"x".repeat(49)).is_err());
        assert_eq!(ImportMode::parse("partial").ok(), Some(ImportMode::Partial));
        assert!(ImportMode::parse("some").is_err());
    }
}
