//! XLSX (Office Open XML spreadsheet) written as rows come: the sheet's XML goes into a
//! deflated ZIP entry row by row, and the workbook's small parts follow once the rows are done.
//! Why by hand rather than a spreadsheet crate: those keep the workbook in memory until it is
//! saved, or write a temporary file first; an export here is one sheet of typed cells, which
//! is a few hundred lines of XML.
//!
//! Cells: text as inline strings (never a formula, whatever it starts with), money as numbers
//! in the format `"HK$"#,##0.00`, rates as fractions in `0.00%`, dates and times as serial
//! numbers in `yyyy-mm-dd` and `yyyy-mm-dd hh:mm:ss`. A sheet holds at most 1,048,576 rows;
//! more continue on a next sheet, under the headings again.

use chrono::{DateTime, NaiveDate, Timelike, Utc};

use super::zip::ZipWriter;
use super::{Cell, TooLarge, decimal_amount, fraction};

/// Rows a sheet can hold (Excel's limit), the headings' row included.
const ROWS_PER_SHEET: u32 = 1_048_576;

/// Indexes into `cellXfs` of [`STYLES`].
const STYLE_MONEY: u8 = 1;
const STYLE_RATE: u8 = 2;
const STYLE_DATE: u8 = 3;
const STYLE_TIME: u8 = 4;
const STYLE_HEADING: u8 = 5;

const STYLES: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>"#,
    r#"<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">"#,
    r#"<numFmts count="3"><numFmt numFmtId="164" formatCode="&quot;HK$&quot;#,##0.00"/>"#,
    r#"<numFmt numFmtId="165" formatCode="yyyy-mm-dd"/><numFmt numFmtId="166" formatCode="yyyy-mm-dd hh:mm:ss"/></numFmts>"#,
    r#"<fonts count="2"><font><sz val="11"/><name val="Calibri"/></font><font><b/><sz val="11"/><name val="Calibri"/></font></fonts>"#,
    r#"<fills count="2"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill></fills>"#,
    r#"<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>"#,
    r#"<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>"#,
    r#"<cellXfs count="6"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>"#,
    r#"<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>"#,
    r#"<xf numFmtId="10" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>"#,
    r#"<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>"#,
    r#"<xf numFmtId="166" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>"#,
    r#"<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/></cellXfs>"#,
    r#"<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles></styleSheet>"#,
);

const ROOT_RELATIONSHIPS: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>"#,
    r#"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">"#,
    r#"<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>"#,
    r#"</Relationships>"#,
);

const SHEET_START: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>"#,
    r#"<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">"#,
    r#"<sheetViews><sheetView workbookViewId="0"><pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/></sheetView></sheetViews>"#,
    r#"<sheetData>"#,
);
const SHEET_END: &str = "</sheetData></worksheet>";

pub struct XlsxWriter {
    zip: ZipWriter,
    sheet_name: String,
    headings: Vec<String>,
    sheets: u32,
    /// Rows written on the current sheet, headings included.
    rows: u32,
    /// [`ROWS_PER_SHEET`], but in tests.
    rows_per_sheet: u32,
    line: String,
}

impl XlsxWriter {
    pub fn new(sheet_name: &str, headings: &[&str]) -> XlsxWriter {
        XlsxWriter {
            zip: ZipWriter::new(),
            sheet_name: sheet_name.to_string(),
            headings: headings.iter().map(|heading| heading.to_string()).collect(),
            sheets: 0,
            rows: 0,
            line: String::new(),
            rows_per_sheet: ROWS_PER_SHEET,
        }
    }

    /// Starts the next sheet with the headings (the previous one, if any, is closed).
    fn next_sheet(&mut self) -> Result<(), TooLarge> {
        if self.sheets > 0 {
            self.zip.write(SHEET_END.as_bytes());
        }
        self.sheets += 1;
        self.zip.start(&format!("xl/worksheets/sheet{}.xml", self.sheets))?;
        self.zip.write(SHEET_START.as_bytes());
        self.rows = 0;
        let headings: Vec<Cell> = self.headings.iter().map(|heading| Cell::text(heading.clone())).collect();
        self.write_row(&headings, true);
        Ok(())
    }

    pub fn row(&mut self, cells: &[Cell]) -> Result<(), TooLarge> {
        if self.sheets == 0 || self.rows >= self.rows_per_sheet {
            self.next_sheet()?;
        }
        self.write_row(cells, false);
        Ok(())
    }

    fn write_row(&mut self, cells: &[Cell], heading: bool) {
        use std::fmt::Write;
        self.rows += 1;
        let row = self.rows;
        let line = &mut self.line;
        line.clear();
        let _ = write!(line, r#"<row r="{row}">"#);
        for (n, cell) in cells.iter().enumerate() {
            let reference = format!("{}{row}", column_name(n));
            let _ = match cell {
                Cell::Empty => Ok(()),
                Cell::Text(text) => {
                    let style = if heading { format!(r#" s="{STYLE_HEADING}""#) } else { String::new() };
                    write!(
                        line,
                        r#"<c r="{reference}"{style} t="inlineStr"><is><t xml:space="preserve">{}</t></is></c>"#,
                        escape(text)
                    )
                }
                Cell::Integer(value) => write!(line, r#"<c r="{reference}"><v>{value}</v></c>"#),
                Cell::Money(cents) => {
                    write!(line, r#"<c r="{reference}" s="{STYLE_MONEY}"><v>{}</v></c>"#, decimal_amount(*cents))
                }
                Cell::Rate(bps) => write!(line, r#"<c r="{reference}" s="{STYLE_RATE}"><v>{}</v></c>"#, fraction(*bps)),
                Cell::Date(date) => {
                    write!(line, r#"<c r="{reference}" s="{STYLE_DATE}"><v>{}</v></c>"#, serial_day(*date))
                }
                Cell::Time(time) => {
                    write!(line, r#"<c r="{reference}" s="{STYLE_TIME}"><v>{}</v></c>"#, serial_time(*time))
                }
            };
        }
        line.push_str("</row>");
        self.zip.write(self.line.as_bytes());
    }

    /// The bytes written since the last call.
    pub fn take(&mut self) -> Vec<u8> {
        self.zip.take()
    }

    /// Closes the sheet and writes the workbook's other parts and the archive's directory.
    pub fn finish(mut self) -> Result<Vec<u8>, TooLarge> {
        if self.sheets == 0 {
            self.next_sheet()?;
        }
        self.zip.write(SHEET_END.as_bytes());
        let mut sheets = String::new();
        let mut relationships = String::new();
        let mut overrides = String::new();
        for n in 1..=self.sheets {
            let name = if n == 1 { self.sheet_name.clone() } else { format!("{} ({n})", self.sheet_name) };
            sheets.push_str(&format!(r#"<sheet name="{}" sheetId="{n}" r:id="rId{n}"/>"#, escape(&name)));
            relationships.push_str(&format!(
                r#"<Relationship Id="rId{n}" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet{n}.xml"/>"#
            ));
            overrides.push_str(&format!(
                r#"<Override PartName="/xl/worksheets/sheet{n}.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>"#
            ));
        }
        let styles_id = self.sheets + 1;
        self.zip.start("xl/workbook.xml")?;
        self.zip.write(
            format!(
                r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets>{sheets}</sheets></workbook>"#
            )
            .as_bytes(),
        );
        self.zip.start("xl/_rels/workbook.xml.rels")?;
        self.zip.write(
            format!(
                r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">{relationships}<Relationship Id="rId{styles_id}" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" Target="styles.xml"/></Relationships>"#
            )
            .as_bytes(),
        );
        self.zip.start("xl/styles.xml")?;
        self.zip.write(STYLES.as_bytes());
        self.zip.start("_rels/.rels")?;
        self.zip.write(ROOT_RELATIONSHIPS.as_bytes());
        self.zip.start("[Content_Types].xml")?;
        self.zip.write(
            format!(
                r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>{overrides}</Types>"#
            )
            .as_bytes(),
        );
        self.zip.finish()
    }
}

/// `A`, …, `Z`, `AA`, … for the column at `index` (0-based).
fn column_name(index: usize) -> String {
    let mut name = Vec::new();
    let mut n = index + 1;
    while n > 0 {
        let rest = (n - 1) % 26;
        name.push(b'A' + rest as u8);
        n = (n - 1) / 26;
    }
    name.reverse();
    String::from_utf8(name).unwrap_or_default()
}

/// Text as XML character data: markup escaped, and the characters XML 1.0 cannot hold (the
/// C0 controls but tab, line feed and carriage return) left out.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' | '\n' | '\r' => out.push(character),
            control if (control as u32) < 0x20 || control == '\u{fffe}' || control == '\u{ffff}' => {}
            other => out.push(other),
        }
    }
    out
}

/// The spreadsheet's day number of `date` (1900 date system: 1900-03-01 is 61).
fn serial_day(date: NaiveDate) -> i64 {
    let epoch = NaiveDate::from_ymd_opt(1899, 12, 30).unwrap_or(NaiveDate::MIN);
    (date - epoch).num_days()
}

/// The day number with the time of day as a fraction, to ten places, from whole seconds.
fn serial_time(time: DateTime<Utc>) -> String {
    let seconds = i64::from(time.num_seconds_from_midnight());
    format!("{}.{:010}", serial_day(time.date_naive()), seconds * 10_000_000_000 / 86_400)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn columns_days_and_times_are_as_spreadsheets_count_them() {
        assert_eq!(
            (column_name(0), column_name(25), column_name(26), column_name(27)),
            ("A".into(), "Z".into(), "AA".into(), "AB".into())
        );
        assert_eq!(serial_day(NaiveDate::from_ymd_opt(2025, 7, 1).expect("date")), 45_839);
        let noon = Utc.with_ymd_and_hms(2025, 7, 1, 12, 0, 0).single().expect("time");
        assert_eq!(serial_time(noon), "45839.5000000000");
    }

    /// Each entry of an archive by name, inflated, read through its central directory.
    fn entries(archive: &[u8]) -> std::collections::BTreeMap<String, String> {
        let number = |at: usize, width: usize| {
            archive[at..at + width].iter().rev().fold(0_usize, |value, byte| value << 8 | usize::from(*byte))
        };
        let end = archive.len() - 22;
        let (count, mut at) = (number(end + 10, 2), number(end + 16, 4));
        let mut entries = std::collections::BTreeMap::new();
        for _ in 0..count {
            let (compressed, name_length, offset) = (number(at + 20, 4), number(at + 28, 2), number(at + 42, 4));
            let name = String::from_utf8_lossy(&archive[at + 46..at + 46 + name_length]).into_owned();
            let data = offset + 30 + name_length;
            let inflated = miniz_oxide::inflate::decompress_to_vec(&archive[data..data + compressed]).expect("inflate");
            entries.insert(name, String::from_utf8(inflated).expect("utf-8"));
            at += 46 + name_length;
        }
        entries
    }

    #[test]
    fn rows_past_a_sheets_capacity_continue_on_the_next_sheet_under_the_headings() {
        let mut writer = XlsxWriter::new("Disbursements", &["Units"]);
        writer.rows_per_sheet = 3;
        let mut archive = Vec::new();
        for units in 1..=5 {
            writer.row(&[Cell::Integer(units)]).expect("row");
            archive.extend(writer.take());
        }
        archive.extend(writer.finish().expect("finish"));
        let entries = entries(&archive);
        let workbook = &entries["xl/workbook.xml"];
        for (n, name) in [(1, "Disbursements"), (2, "Disbursements (2)"), (3, "Disbursements (3)")] {
            assert!(workbook.contains(&format!(r#"<sheet name="{name}" sheetId="{n}" r:id="rId{n}"/>"#)), "{workbook}");
            let sheet = &entries[&format!("xl/worksheets/sheet{n}.xml")];
            assert!(
                sheet.contains(r#"<row r="1"><c r="A1" s="5" t="inlineStr"><is><t xml:space="preserve">Units</t>"#)
            );
            assert!(sheet.ends_with("</sheetData></worksheet>"));
        }
        assert!(
            entries["xl/worksheets/sheet2.xml"].contains(
                r#"<row r="2"><c r="A2"><v>3</v></c></row><row r="3"><c r="A3"><v>4</v></c></row></sheetData>"#
            )
        );
        assert!(entries["xl/worksheets/sheet3.xml"].contains(r#"<row r="2"><c r="A2"><v>5</v></c></row></sheetData>"#));
        assert!(entries["[Content_Types].xml"].contains("/xl/worksheets/sheet3.xml"));
        assert!(entries["xl/_rels/workbook.xml.rels"].contains(
            r#"Id="rId4" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles""#
        ));
    }

    #[test]
    fn text_is_inline_and_never_a_formula() {
        let mut writer = XlsxWriter::new("Sheet", &["Organisation"]);
        writer.row(&[Cell::text("=HYPERLINK(\"x\")<&>\u{1}")]).expect("row");
        let mut archive = writer.take();
        archive.extend(writer.finish().expect("finish"));
        // The sheet is the archive's first entry: its data follows a 30-byte header and its name.
        let data = &archive[30 + "xl/worksheets/sheet1.xml".len()..];
        let bytes = miniz_oxide::inflate::decompress_to_vec(data).expect("a deflated sheet");
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains(r#"t="inlineStr"><is><t xml:space="preserve">=HYPERLINK(&quot;x&quot;)&lt;&amp;&gt;</t>"#),
            "{text}"
        );
        assert!(!text.contains("<f>"));
    }
}
