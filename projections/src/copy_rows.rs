//! Rows for `COPY … FROM STDIN` in PostgreSQL's text format, gathered per table: what a
//! projection's [`crate::BulkLoad`] hands the rebuild instead of running statements.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use uuid::Uuid;

/// A table a bulk load fills and the columns its rows give, in order (both named without a
/// schema, as in the projection's `tables.sql`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyTarget {
    pub table: &'static str,
    /// Comma-separated column names.
    pub columns: &'static str,
}

impl CopyTarget {
    pub(crate) fn statement(&self) -> String {
        format!("COPY {} ({}) FROM STDIN", self.table, self.columns)
    }
}

/// Encoded rows waiting to be sent, one buffer per target (indexed as the load's targets).
#[derive(Debug)]
pub struct CopyRows {
    buffers: Vec<Vec<u8>>,
}

impl CopyRows {
    pub(crate) fn new(targets: usize) -> Self {
        Self { buffers: vec![Vec::new(); targets] }
    }

    /// Adds one row to the target at `target` (its index among the load's targets).
    pub fn push(&mut self, target: usize, fields: &[&dyn CopyField]) {
        let Some(buffer) = self.buffers.get_mut(target) else {
            // A load naming a target it did not declare is a bug of that load.
            panic!("no COPY target number {target}");
        };
        for (n, field) in fields.iter().enumerate() {
            if n > 0 {
                buffer.push(b'\t');
            }
            field.encode(buffer);
        }
        buffer.push(b'\n');
    }

    /// Takes the buffers holding at least `at_least` bytes (all non-empty ones for 1), with
    /// their target's index.
    pub(crate) fn take(&mut self, at_least: usize) -> Vec<(usize, Vec<u8>)> {
        let at_least = at_least.max(1);
        self.buffers
            .iter_mut()
            .enumerate()
            .filter(|(_, buffer)| buffer.len() >= at_least)
            .map(|(target, buffer)| (target, std::mem::take(buffer)))
            .collect()
    }
}

/// A value as a field of a text-format `COPY` row.
pub trait CopyField {
    fn encode(&self, out: &mut Vec<u8>);
}

/// `\N`, text COPY's NULL.
const NULL: &[u8] = b"\\N";

impl CopyField for str {
    /// Escapes what text COPY reads as structure: backslash, tab, newline, carriage return.
    fn encode(&self, out: &mut Vec<u8>) {
        for byte in self.bytes() {
            match byte {
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\t' => out.extend_from_slice(b"\\t"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                other => out.push(other),
            }
        }
    }
}

impl CopyField for &str {
    fn encode(&self, out: &mut Vec<u8>) {
        (**self).encode(out);
    }
}

impl CopyField for String {
    fn encode(&self, out: &mut Vec<u8>) {
        self.as_str().encode(out);
    }
}

impl CopyField for i64 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.to_string().as_bytes());
    }
}

impl CopyField for i32 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.to_string().as_bytes());
    }
}

impl CopyField for bool {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(if *self { b't' } else { b'f' });
    }
}

impl CopyField for Uuid {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.hyphenated().encode_lower(&mut Uuid::encode_buffer()).as_bytes());
    }
}

impl CopyField for NaiveDate {
    /// ISO 8601, which PostgreSQL reads whatever its `DateStyle`.
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.format("%Y-%m-%d").to_string().as_bytes());
    }
}

impl CopyField for DateTime<Utc> {
    /// RFC 3339 in UTC to the microsecond (what `timestamptz` keeps).
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.to_rfc3339_opts(SecondsFormat::Micros, true).as_bytes());
    }
}

impl CopyField for [NaiveDate] {
    /// A `date[]` literal: `{2025-10-15,2026-04-15}`.
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        for (n, date) in self.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            date.encode(out);
        }
        out.push(b'}');
    }
}

impl CopyField for Vec<NaiveDate> {
    fn encode(&self, out: &mut Vec<u8>) {
        self.as_slice().encode(out);
    }
}

impl<T: CopyField> CopyField for Option<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Some(value) => value.encode(out),
            None => out.extend_from_slice(NULL),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(fields: &[&dyn CopyField]) -> String {
        let mut rows = CopyRows::new(1);
        rows.push(0, fields);
        let taken = rows.take(1);
        String::from_utf8(taken[0].1.clone()).expect("utf-8")
    }

    #[test]
    fn fields_are_escaped_and_tab_separated_with_null_as_backslash_n() {
        let date = NaiveDate::from_ymd_opt(2025, 7, 1).expect("date");
        let none: Option<String> = None;
        assert_eq!(
            row(&[&"a\tb\\c\nd\re", &42_i64, &-7_i32, &true, &none, &Some(date), &vec![date, date], &Vec::new()]),
            "a\\tb\\\\c\\nd\\re\t42\t-7\tt\t\\N\t2025-07-01\t{2025-07-01,2025-07-01}\t{}\n"
        );
    }

    #[test]
    fn instants_are_utc_to_the_microsecond_and_uuids_hyphenated() {
        let instant = DateTime::parse_from_rfc3339("2025-07-01T08:30:00.123456+08:00").expect("instant").to_utc();
        let id = Uuid::parse_str("0b7e0000-0000-4000-8000-000000000001").expect("uuid");
        assert_eq!(row(&[&instant, &id]), "2025-07-01T00:30:00.123456Z\t0b7e0000-0000-4000-8000-000000000001\n");
    }

    #[test]
    fn only_buffers_past_the_threshold_are_taken() {
        let mut rows = CopyRows::new(2);
        rows.push(0, &[&"short"]);
        rows.push(1, &[&"a longer row than the other"]);
        assert_eq!(rows.take(10).iter().map(|(target, _)| *target).collect::<Vec<_>>(), vec![1]);
        assert_eq!(rows.take(1).iter().map(|(target, _)| *target).collect::<Vec<_>>(), vec![0]);
        assert!(rows.take(1).is_empty());
    }
}
