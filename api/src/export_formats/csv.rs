//! CSV as RFC 4180 has it (CRLF line ends, quotes doubled), UTF-8 with a byte-order mark so a
//! spreadsheet reads the applicants' names right, and guarded against formula injection: a
//! text cell that a spreadsheet would take for a formula (starting with `=`, `+`, `-`, `@`, a
//! tab or a carriage return) is written with a leading `'`. Numbers are never prefixed (a
//! negative amount stays a number).

use super::{Cell, decimal_amount, percentage};

pub struct CsvWriter {
    out: Vec<u8>,
}

/// The UTF-8 byte-order mark.
const BOM: &[u8] = "\u{feff}".as_bytes();

impl CsvWriter {
    pub fn new(headings: &[&str]) -> CsvWriter {
        let mut writer = CsvWriter { out: BOM.to_vec() };
        let cells: Vec<Cell> = headings.iter().map(|heading| Cell::text(*heading)).collect();
        writer.row(&cells);
        writer
    }

    pub fn row(&mut self, cells: &[Cell]) {
        for (n, cell) in cells.iter().enumerate() {
            if n > 0 {
                self.out.push(b',');
            }
            match cell {
                Cell::Text(text) => write_text(&mut self.out, text),
                Cell::Integer(value) => self.out.extend_from_slice(value.to_string().as_bytes()),
                Cell::Money(cents) => self.out.extend_from_slice(decimal_amount(*cents).as_bytes()),
                Cell::Rate(bps) => self.out.extend_from_slice(percentage(*bps).as_bytes()),
                Cell::Date(date) => self.out.extend_from_slice(date.format("%Y-%m-%d").to_string().as_bytes()),
                Cell::Time(time) => {
                    self.out.extend_from_slice(time.format("%Y-%m-%dT%H:%M:%SZ").to_string().as_bytes());
                }
                Cell::Empty => {}
            }
        }
        self.out.extend_from_slice(b"\r\n");
    }

    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }
}

/// Whether a spreadsheet would read the text as a formula (or, for a tab or carriage return,
/// strip it into one).
fn looks_like_formula(text: &str) -> bool {
    text.starts_with(['=', '+', '-', '@', '\t', '\r'])
}

fn write_text(out: &mut Vec<u8>, text: &str) {
    let guarded = if looks_like_formula(text) { format!("'{text}") } else { text.to_string() };
    if guarded.contains([',', '"', '\n', '\r']) {
        out.push(b'"');
        out.extend_from_slice(guarded.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(guarded.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone, Utc};

    use super::*;

    fn written(cells: &[Cell]) -> String {
        let mut writer = CsvWriter::new(&["a"]);
        writer.take();
        writer.row(cells);
        String::from_utf8(writer.take()).expect("utf-8")
    }

    #[test]
    fn formulas_are_made_inert_and_numbers_left_alone() {
        assert_eq!(
            written(&[Cell::text("=HYPERLINK(\"http://x\",\"y\")")]),
            "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\"\r\n"
        );
        for risky in ["+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert!(written(&[Cell::text(risky)]).trim_start_matches('"').starts_with('\''), "{risky:?}");
        }
        assert_eq!(written(&[Cell::Money(-5), Cell::Integer(-3), Cell::text("a, b")]), "-0.05,-3,\"a, b\"\r\n");
    }

    #[test]
    fn money_rates_dates_and_times_have_one_spelling() {
        let day = NaiveDate::from_ymd_opt(2025, 7, 1).expect("date");
        let time = Utc.with_ymd_and_hms(2025, 8, 2, 3, 4, 5).single().expect("time");
        assert_eq!(
            written(&[Cell::Money(123_456_789), Cell::Rate(7000), Cell::Date(day), Cell::Time(time), Cell::Empty]),
            "1234567.89,70.00,2025-07-01,2025-08-02T03:04:05Z,\r\n"
        );
    }

    #[test]
    fn the_file_starts_with_a_byte_order_mark_and_the_headings() {
        let mut writer = CsvWriter::new(&["Gross (HK$)", "Rate (%)"]);
        assert_eq!(writer.take(), "\u{feff}Gross (HK$),Rate (%)\r\n".as_bytes());
    }
}
