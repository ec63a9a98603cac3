//! Writing exports people open in a spreadsheet: CSV and XLSX, row by row, handing out the
//! bytes written so far, so an export of any length is sent in bounded memory.
//!
//! Money stays integer HK cents and rates basis points up to the cell: a CSV cell writes
//! `1234567.89`, an XLSX number cell the same decimal text (the spreadsheet reads it as a
//! number; no float is ever computed here).

mod csv;
mod xlsx;
mod zip;

use chrono::{DateTime, NaiveDate, Utc};

pub use self::csv::CsvWriter;
pub use self::xlsx::XlsxWriter;

/// One cell of an export row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Text(String),
    Integer(i64),
    /// HK cents, shown as HK$ with two decimals.
    Money(i64),
    /// Basis points, shown as a percentage with two decimals.
    Rate(i64),
    Date(NaiveDate),
    /// A recorded time, shown in UTC.
    Time(DateTime<Utc>),
    Empty,
}

impl Cell {
    pub fn text(value: impl Into<String>) -> Cell {
        Cell::Text(value.into())
    }

    pub fn optional<T>(value: Option<T>, cell: impl FnOnce(T) -> Cell) -> Cell {
        value.map_or(Cell::Empty, cell)
    }
}

/// `cents` as a decimal amount with two places: `123456789` → `1234567.89`, `-5` → `-0.05`.
pub fn decimal_amount(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let magnitude = cents.unsigned_abs();
    format!("{sign}{}.{:02}", magnitude / 100, magnitude % 100)
}

/// `bps` as a percentage with two places: `7000` → `70.00`.
pub fn percentage(bps: i64) -> String {
    decimal_amount(bps)
}

/// `bps` as a fraction with four places, what a percentage-formatted number cell holds:
/// `7000` → `0.7000`.
pub fn fraction(bps: i64) -> String {
    let sign = if bps < 0 { "-" } else { "" };
    let magnitude = bps.unsigned_abs();
    format!("{sign}{}.{:04}", magnitude / 10_000, magnitude % 10_000)
}

/// The formats an export is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Xlsx,
}

impl ExportFormat {
    pub const CSV_MEDIA_TYPE: &'static str = "text/csv; charset=utf-8";
    pub const XLSX_MEDIA_TYPE: &'static str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

    pub fn parse(text: &str) -> Option<ExportFormat> {
        match text {
            "csv" => Some(ExportFormat::Csv),
            "xlsx" => Some(ExportFormat::Xlsx),
            _ => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Xlsx => "xlsx",
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            ExportFormat::Csv => Self::CSV_MEDIA_TYPE,
            ExportFormat::Xlsx => Self::XLSX_MEDIA_TYPE,
        }
    }
}

/// An export grown past what its format can hold.
#[derive(Debug, thiserror::Error)]
#[error("the export is larger than {0}")]
pub struct TooLarge(pub &'static str);

/// A sheet being written in either format: rows in, bytes out.
pub enum SheetWriter {
    Csv(CsvWriter),
    Xlsx(Box<XlsxWriter>),
}

impl SheetWriter {
    /// A writer whose first row is `headings`; `sheet_name` names the XLSX sheet.
    pub fn new(format: ExportFormat, sheet_name: &str, headings: &[&str]) -> SheetWriter {
        match format {
            ExportFormat::Csv => SheetWriter::Csv(CsvWriter::new(headings)),
            ExportFormat::Xlsx => SheetWriter::Xlsx(Box::new(XlsxWriter::new(sheet_name, headings))),
        }
    }

    pub fn row(&mut self, cells: &[Cell]) -> Result<(), TooLarge> {
        match self {
            SheetWriter::Csv(writer) => {
                writer.row(cells);
                Ok(())
            }
            SheetWriter::Xlsx(writer) => writer.row(cells),
        }
    }

    /// The bytes written since the last call.
    pub fn take(&mut self) -> Vec<u8> {
        match self {
            SheetWriter::Csv(writer) => writer.take(),
            SheetWriter::Xlsx(writer) => writer.take(),
        }
    }

    /// Ends the file: its last bytes.
    pub fn finish(self) -> Result<Vec<u8>, TooLarge> {
        match self {
            SheetWriter::Csv(mut writer) => Ok(writer.take()),
            SheetWriter::Xlsx(writer) => writer.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_and_rates_are_written_from_integers() {
        assert_eq!(decimal_amount(123_456_789), "1234567.89");
        assert_eq!(decimal_amount(-5), "-0.05");
        assert_eq!(decimal_amount(0), "0.00");
        assert_eq!(percentage(7000), "70.00");
        assert_eq!(percentage(8950), "89.50");
        assert_eq!(fraction(7000), "0.7000");
        assert_eq!(fraction(10_000), "1.0000");
        assert_eq!(fraction(5), "0.0005");
    }
}
