//! Verifying an export on its own (`aisc audit verify --file`), without the database: every
//! record carries its hash and its predecessor's, and the content digest is recomputed from
//! the record's fields. The rules, and the order they are checked in, are those of
//! `docs/AUDIT-FORMAT.md`; `tools/verify_export.py` implements them independently, and the two
//! must print the same verdict, so a message changed here is changed there too.

use std::collections::HashMap;
use std::fmt;
use std::io::BufRead;

use aisc_adapters::event_hash::{EventContent, chain_hash, content_digest, to_hex};
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

/// Why a file could not be verified at all: no verdict on its content.
#[derive(Debug, thiserror::Error)]
pub enum ExportFileError {
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error(
        "{path} is not an export of the event log: line {line} is not a JSON record with eventId, streamId, hash and previousHash"
    )]
    NotAnExport { path: String, line: u64 },
    #[error(
        "{path} is an export without hashes (line {line} has no hash and previousHash), made before exports carried them; export the history again"
    )]
    WithoutHashes { path: String, line: u64 },
    #[error(
        "{path} holds no records: an export of an empty range proves nothing, and an empty file may be a failed export"
    )]
    Empty { path: String },
}

/// The outcome of verifying a readable export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    /// Records verified before the first broken one (all of them when none is broken).
    pub verified: u64,
    /// Streams met among the verified records.
    pub streams: u64,
    /// Of those, streams whose first record here is not version 0 (a partial export): their
    /// chain starts from that record's `previousHash`, which the file cannot vouch for.
    pub streams_starting_later: u64,
    pub first_broken: Option<BrokenRecord>,
}

impl fmt::Display for FileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.first_broken {
            None => {
                write!(
                    f,
                    "OK: {} of {} verified, every hash chain intact",
                    counted(self.verified, "record"),
                    counted(self.streams, "stream")
                )?;
                if self.streams_starting_later > 0 {
                    write!(
                        f,
                        "; streams starting after version 0 (anchored on their first record's previousHash): {}",
                        self.streams_starting_later
                    )?;
                }
                Ok(())
            }
            Some(broken) => write!(f, "BROKEN: {broken}; {} verified before it", counted(self.verified, "record")),
        }
    }
}

/// `1 record`, `2 records`.
fn counted(count: u64, noun: &str) -> String {
    match count {
        1 => format!("1 {noun}"),
        _ => format!("{count} {noun}s"),
    }
}

/// The first record that does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenRecord {
    /// 1-based line of the file.
    pub line: u64,
    /// Where the record claims to belong; `None` when it could not be read as a record.
    pub place: Option<RecordPlace>,
    pub problem: RecordProblem,
}

impl fmt::Display for BrokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.place {
            None => write!(f, "line {}: {}", self.line, self.problem),
            Some(place) => write!(
                f,
                "line {} (position {}, stream {}, version {}, event {}): {}",
                self.line, place.position, place.stream, place.version, place.event_id, self.problem
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordPlace {
    pub position: u64,
    pub stream: String,
    pub version: u64,
    pub event_id: String,
}

/// What is wrong with a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordProblem {
    NotUtf8,
    NotAJsonObject,
    /// A field the format requires is absent or of the wrong shape.
    BadField {
        field: &'static str,
        expected: &'static str,
    },
    /// The stream's version, or the position, is the same as an earlier record's.
    DuplicateVersion {
        version: u64,
        of_line: u64,
    },
    DuplicatePosition {
        position: u64,
        of_line: u64,
    },
    /// The stream's versions, or the positions, go backwards: records were moved.
    VersionOutOfOrder {
        version: u64,
        after_version: u64,
        of_line: u64,
    },
    PositionOutOfOrder {
        position: u64,
        after_position: u64,
        of_line: u64,
    },
    /// A version of the stream is missing: a record was removed (or moved).
    VersionGap {
        expected_version: u64,
        after_line: u64,
        found: u64,
    },
    /// `previousHash` is not the hash of the stream's previous record.
    ChainBreak {
        previous_version: u64,
        of_line: u64,
    },
    /// A stream's version 0 names a predecessor.
    FirstEventWithPreviousHash,
    /// A later version names no predecessor.
    MissingPreviousHash {
        version: u64,
    },
    /// The content digest of the record's fields, chained to its `previousHash`, is not its
    /// `hash`: a field was edited (or the hash).
    ContentDigestMismatch,
    /// `data` or `metadata` holds a number that is not a 64-bit integer, which the log never
    /// stores (appends refuse them), so the record cannot be what was recorded.
    NotAnIntegerNumber,
}

impl fmt::Display for RecordProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotUtf8 => write!(f, "malformed record: not UTF-8"),
            Self::NotAJsonObject => write!(f, "malformed record: not a JSON object"),
            Self::BadField { field, expected } => write!(f, "malformed record: {field} is missing or not {expected}"),
            Self::DuplicateVersion { version, of_line } => {
                write!(f, "duplicate: version {version} of the stream is already at line {of_line}")
            }
            Self::DuplicatePosition { position, of_line } => {
                write!(f, "duplicate: position {position} is already at line {of_line}")
            }
            Self::VersionOutOfOrder { version, after_version, of_line } => {
                write!(
                    f,
                    "out of order: version {version} comes after version {after_version} of the stream at line {of_line}"
                )
            }
            Self::PositionOutOfOrder { position, after_position, of_line } => {
                write!(f, "out of order: position {position} comes after position {after_position} at line {of_line}")
            }
            Self::VersionGap { expected_version, after_line, found } => write!(
                f,
                "version gap: expected version {expected_version} after line {after_line}, found {found}; a record is missing"
            ),
            Self::ChainBreak { previous_version, of_line } => {
                write!(f, "chain break: previousHash is not the hash of version {previous_version} at line {of_line}")
            }
            Self::FirstEventWithPreviousHash => {
                write!(f, "chain break: version 0 must have an empty previousHash")
            }
            Self::MissingPreviousHash { version } => {
                write!(f, "chain break: version {version} has an empty previousHash")
            }
            Self::ContentDigestMismatch => {
                write!(f, "content digest mismatch: the record's fields and previousHash do not give its hash")
            }
            Self::NotAnIntegerNumber => write!(
                f,
                "content digest mismatch: data or metadata holds a number that is not a 64-bit integer, which the log never stores"
            ),
        }
    }
}

/// One record, read and checked for shape.
struct Record {
    event_id: String,
    event_type: String,
    stream_id: String,
    version: u64,
    position: u64,
    schema_version: u32,
    recorded_at: DateTime<Utc>,
    data: Value,
    metadata: Value,
    hash: String,
    previous_hash: String,
}

impl Record {
    fn place(&self) -> RecordPlace {
        RecordPlace {
            position: self.position,
            stream: self.stream_id.clone(),
            version: self.version,
            event_id: self.event_id.clone(),
        }
    }
}

/// The last verified record of a stream.
struct StreamHead {
    version: u64,
    hash: String,
    line: u64,
}

/// Verifies the export read from `input`; `path` only names it in errors. Reads line by line,
/// keeping one entry per stream, so an export of any size verifies in little memory.
pub fn verify_export(mut input: impl BufRead, path: &str) -> Result<FileReport, ExportFileError> {
    let mut verification = Verification::default();
    let mut buffer = Vec::new();
    let mut line_number = 0_u64;
    loop {
        buffer.clear();
        let read = input
            .read_until(b'\n', &mut buffer)
            .map_err(|error| ExportFileError::Unreadable { path: path.to_owned(), reason: error.to_string() })?;
        if read == 0 {
            break;
        }
        line_number += 1;
        let line = buffer.strip_suffix(b"\n").unwrap_or(&buffer);
        // Blank lines carry nothing (an editor's trailing line, a CRLF conversion).
        if line.iter().all(|byte| matches!(byte, b' ' | b'\t' | b'\r')) {
            continue;
        }
        if verification.records_seen == 0 {
            check_looks_like_an_export(line, line_number, path)?;
        }
        verification.records_seen += 1;
        if let Err(problem) = verification.check(line, line_number) {
            return Ok(verification.report(Some(problem)));
        }
    }
    if verification.records_seen == 0 {
        return Err(ExportFileError::Empty { path: path.to_owned() });
    }
    Ok(verification.report(None))
}

/// The first record decides whether the file is an export at all (exit 4, no verdict) or an
/// export with something wrong in it (a verdict). Only a line that is not a JSON object
/// naming an event and a stream, or one without the hash fields, is "not an export".
fn check_looks_like_an_export(line: &[u8], line_number: u64, path: &str) -> Result<(), ExportFileError> {
    let not_an_export = || ExportFileError::NotAnExport { path: path.to_owned(), line: line_number };
    let object = std::str::from_utf8(line)
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .and_then(|value| match value {
            Value::Object(object) => Some(object),
            _ => None,
        })
        .ok_or_else(not_an_export)?;
    if !object.contains_key("eventId") || !object.contains_key("streamId") {
        return Err(not_an_export());
    }
    if !object.contains_key("hash") && !object.contains_key("previousHash") {
        return Err(ExportFileError::WithoutHashes { path: path.to_owned(), line: line_number });
    }
    if !object.contains_key("hash") || !object.contains_key("previousHash") {
        return Err(not_an_export());
    }
    Ok(())
}

#[derive(Default)]
struct Verification {
    records_seen: u64,
    verified: u64,
    heads: HashMap<String, StreamHead>,
    streams_starting_later: u64,
    /// Position and line of the last verified record.
    last: Option<(u64, u64)>,
}

impl Verification {
    fn report(&self, first_broken: Option<BrokenRecord>) -> FileReport {
        FileReport {
            verified: self.verified,
            streams: self.heads.len() as u64,
            streams_starting_later: self.streams_starting_later,
            first_broken,
        }
    }

    /// Checks one record against the ones before it, in the documented order, and takes it
    /// into the stream's chain when it verifies.
    fn check(&mut self, line: &[u8], line_number: u64) -> Result<(), BrokenRecord> {
        let unplaced = |problem| BrokenRecord { line: line_number, place: None, problem };
        let text = std::str::from_utf8(line).map_err(|_| unplaced(RecordProblem::NotUtf8))?;
        let record = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(object)) => read_record(&object).map_err(unplaced)?,
            _ => return Err(unplaced(RecordProblem::NotAJsonObject)),
        };
        let placed = |problem| BrokenRecord { line: line_number, place: Some(record.place()), problem };
        let head = self.heads.get(&record.stream_id);

        if let Some(head) = head {
            if record.version == head.version {
                return Err(placed(RecordProblem::DuplicateVersion { version: record.version, of_line: head.line }));
            }
            if record.version < head.version {
                return Err(placed(RecordProblem::VersionOutOfOrder {
                    version: record.version,
                    after_version: head.version,
                    of_line: head.line,
                }));
            }
        }
        if let Some((last_position, last_line)) = self.last {
            if record.position == last_position {
                return Err(placed(RecordProblem::DuplicatePosition { position: record.position, of_line: last_line }));
            }
            if record.position < last_position {
                return Err(placed(RecordProblem::PositionOutOfOrder {
                    position: record.position,
                    after_position: last_position,
                    of_line: last_line,
                }));
            }
        }
        match head {
            Some(head) if record.version > head.version + 1 => {
                return Err(placed(RecordProblem::VersionGap {
                    expected_version: head.version + 1,
                    after_line: head.line,
                    found: record.version,
                }));
            }
            Some(head) if record.previous_hash != head.hash => {
                return Err(placed(RecordProblem::ChainBreak { previous_version: head.version, of_line: head.line }));
            }
            Some(_) => {}
            None if record.version == 0 && !record.previous_hash.is_empty() => {
                return Err(placed(RecordProblem::FirstEventWithPreviousHash));
            }
            None if record.version > 0 && record.previous_hash.is_empty() => {
                return Err(placed(RecordProblem::MissingPreviousHash { version: record.version }));
            }
            None => {}
        }
        if !holds_only_integers(&record.data) || !holds_only_integers(&record.metadata) {
            return Err(placed(RecordProblem::NotAnIntegerNumber));
        }
        if expected_hash(&record) != record.hash {
            return Err(placed(RecordProblem::ContentDigestMismatch));
        }

        let starts_later = head.is_none() && record.version > 0;
        if starts_later {
            self.streams_starting_later += 1;
        }
        self.last = Some((record.position, line_number));
        self.heads
            .insert(record.stream_id, StreamHead { version: record.version, hash: record.hash, line: line_number });
        self.verified += 1;
        Ok(())
    }
}

/// The hash the record's content gives, chained to its `previousHash`, in lower-case hex.
fn expected_hash(record: &Record) -> String {
    // Both were checked to be lower-case hex of the right length when the record was read.
    let event_id = Uuid::parse_str(&record.event_id).unwrap_or_default();
    let previous = from_hex(&record.previous_hash).unwrap_or_default();
    let digest = content_digest(&EventContent {
        stream_id: &record.stream_id,
        event_id,
        event_type: &record.event_type,
        schema_version: record.schema_version,
        recorded_at: record.recorded_at,
        data: &record.data,
        metadata: &record.metadata,
    });
    to_hex(&chain_hash(&previous, &digest, record.version, record.position))
}

/// Reads the fields in the documented order, naming the first one that is wrong.
fn read_record(object: &Map<String, Value>) -> Result<Record, RecordProblem> {
    let bad = |field, expected| RecordProblem::BadField { field, expected };
    let text = |field: &'static str| object.get(field).and_then(Value::as_str).ok_or(bad(field, "a string"));
    let count = |field: &'static str, max: u64, expected: &'static str| {
        object.get(field).and_then(Value::as_u64).filter(|value| *value <= max).ok_or(bad(field, expected))
    };
    let event_id = text("eventId")
        .ok()
        .filter(|id| is_lower_case_uuid(id))
        .ok_or(bad("eventId", "a hyphenated lower-case UUID"))?;
    let event_type = text("eventType")?;
    let stream_id = text("streamId")?;
    let version = count("eventNumber", i64::MAX as u64, "an integer from 0 to 2^63-1")?;
    let position = count("position", i64::MAX as u64, "an integer from 0 to 2^63-1")?;
    let schema_version = count("schemaVersion", u64::from(u32::MAX), "an integer from 0 to 2^32-1")?;
    let recorded_at = text("created")
        .ok()
        .and_then(parse_created)
        .ok_or(bad("created", "a UTC time like 2025-07-01T02:03:04.000005Z"))?;
    let data = object.get("data").ok_or(bad("data", "present"))?;
    let metadata = object.get("metadata").ok_or(bad("metadata", "present"))?;
    let hash = text("hash").ok().filter(|hash| is_hash_hex(hash)).ok_or(bad("hash", "64 lower-case hex digits"))?;
    let previous_hash = text("previousHash")
        .ok()
        .filter(|hash| hash.is_empty() || is_hash_hex(hash))
        .ok_or(bad("previousHash", "empty or 64 lower-case hex digits"))?;
    Ok(Record {
        event_id: event_id.to_owned(),
        event_type: event_type.to_owned(),
        stream_id: stream_id.to_owned(),
        version,
        position,
        schema_version: u32::try_from(schema_version).unwrap_or(u32::MAX),
        recorded_at,
        data: data.clone(),
        metadata: metadata.clone(),
        hash: hash.to_owned(),
        previous_hash: previous_hash.to_owned(),
    })
}

/// The digest covers the id as `8-4-4-4-12` lower-case hex; accepting other spellings would
/// make the digest depend on how a verifier normalises them.
fn is_lower_case_uuid(text: &str) -> bool {
    text.len() == 36
        && text.bytes().enumerate().all(|(index, byte)| match index {
            8 | 13 | 18 | 23 => byte == b'-',
            _ => matches!(byte, b'0'..=b'9' | b'a'..=b'f'),
        })
}

fn is_hash_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| {
            let high = char::from(pair[0]).to_digit(16)?;
            let low = char::from(pair[1]).to_digit(16)?;
            u8::try_from(high * 16 + low).ok()
        })
        .collect()
}

/// Exactly `YYYY-MM-DDTHH:MM:SS.ffffffZ`, a real date and time from year 1 (no leap second):
/// the one spelling exports write, so every verifier turns it into the same microseconds.
fn parse_created(text: &str) -> Option<DateTime<Utc>> {
    let bytes = text.as_bytes();
    let shape_ok = bytes.len() == 27
        && bytes.iter().enumerate().all(|(index, byte)| match index {
            4 | 7 => *byte == b'-',
            10 => *byte == b'T',
            13 | 16 => *byte == b':',
            19 => *byte == b'.',
            26 => *byte == b'Z',
            _ => byte.is_ascii_digit(),
        });
    if !shape_ok {
        return None;
    }
    let number = |range: std::ops::Range<usize>| text.get(range).and_then(|digits| digits.parse::<u32>().ok());
    let year = i32::try_from(number(0..4)?).ok().filter(|year| *year >= 1)?;
    let date = NaiveDate::from_ymd_opt(year, number(5..7)?, number(8..10)?)?;
    let time = NaiveTime::from_hms_micro_opt(number(11..13)?, number(14..16)?, number(17..19)?, number(20..26)?)?;
    Some(date.and_time(time).and_utc())
}

/// Whether every number is a 64-bit integer (serde_json reads anything else as a float).
fn holds_only_integers(value: &Value) -> bool {
    match value {
        Value::Number(number) => !number.is_f64(),
        Value::Array(items) => items.iter().all(holds_only_integers),
        Value::Object(map) => map.values().all(holds_only_integers),
        Value::Null | Value::Bool(_) | Value::String(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_is_read_in_its_one_spelling_only() {
        let parsed = parse_created("2025-07-01T02:03:04.000005Z").expect("valid");
        assert_eq!(parsed.timestamp_micros(), 1_751_335_384_000_005);
        for bad in [
            "2025-07-01T02:03:04.00005Z",
            "2025-07-01T02:03:04.000005+00:00",
            "2025-07-01 02:03:04.000005Z",
            "2025-02-30T02:03:04.000005Z",
            "2025-07-01T23:59:60.000000Z",
            "0000-07-01T02:03:04.000005Z",
            "2025-07-01T02:03:04.00000٥Z",
        ] {
            assert!(parse_created(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn serde_json_reads_minus_zero_and_huge_integers_as_floats() {
        // The Python verifier mirrors these: such numbers are not integers in the format.
        for text in ["-0", "18446744073709551616", "-9223372036854775809", "1.0", "1e2"] {
            let value: Value = serde_json::from_str(text).expect("json");
            assert!(!holds_only_integers(&value), "{text}");
        }
        for text in ["0", "18446744073709551615", "-9223372036854775808"] {
            let value: Value = serde_json::from_str(text).expect("json");
            assert!(holds_only_integers(&value), "{text}");
        }
        assert!(serde_json::from_str::<Value>("1e400").is_err());
    }

    #[test]
    fn nesting_deeper_than_127_containers_is_not_json_to_serde_json() {
        // The Python verifier refuses the same depth, so the two agree on such a line.
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(serde_json::from_str::<Value>(&nested(127)).is_ok());
        assert!(serde_json::from_str::<Value>(&nested(128)).is_err());
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(from_hex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(from_hex(""), Some(vec![]));
        assert_eq!(from_hex("0"), None);
    }
}
