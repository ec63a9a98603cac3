//! Tamper evidence: the canonical form of an event and its place in its stream's hash chain.
//!
//! An event's *content digest* is SHA-256 over its fields, each written as an 8-byte
//! big-endian length followed by its bytes, in this order: the format tag `aisc-event/1`,
//! stream id, event id (hyphenated lower-case), event type, schema version (decimal), the
//! recorded time (microseconds since the Unix epoch, decimal), canonical data, canonical
//! metadata. Its *hash* is SHA-256 over the previous hash of its stream (empty for version 0),
//! the content digest, and the version and global position as 8-byte big-endian integers.
//!
//! Canonical JSON: objects with keys sorted by their UTF-8 bytes, no whitespace, strings as
//! serde_json escapes them, integers in decimal. Fractional numbers are refused at append
//! (money is in integer cents and rates in basis points), so the form read back from `jsonb`
//! years later yields the same bytes as the form written.
//!
//! `docs/AUDIT-FORMAT.md` specifies all of this for auditors who re-implement it, and says
//! where the canonical JSON and RFC 8785 (JCS) agree: for every value within ±(2^53 − 1) they
//! give the same bytes, because appends refuse the one other case where they would differ
//! (object keys whose UTF-8 order is not their UTF-16 order).
//!
//! The *log digest* a signed seal carries (see [`LogDigest`]) is SHA-256 over the format tag
//! `aisc-log-digest/1` (length-prefixed as above), then, for every event up to the sealed
//! position in position order: its global position (8-byte big-endian), its stream id
//! (length-prefixed), its stream version (8-byte big-endian), its content digest (32 bytes,
//! recomputed from the event's fields) and its hash (32 bytes, as the chain verification
//! recomputed it). Because the content digest is recomputed, a rewrite that also recomputes
//! the stored hashes still changes the log digest; because every event is in it, so does an
//! event removed, added or moved.

use aisc_domain::event_store::StoreError;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

const FORMAT_TAG: &[u8] = b"aisc-event/1";
const LOG_DIGEST_TAG: &[u8] = b"aisc-log-digest/1";

/// The previous hash of a stream's first event (version 0): nothing, zero bytes.
pub const CHAIN_START: &[u8] = &[];

/// The fields of an event that its content digest covers.
#[derive(Clone, Copy)]
pub struct EventContent<'a> {
    pub stream_id: &'a str,
    pub event_id: Uuid,
    pub event_type: &'a str,
    pub schema_version: u32,
    pub recorded_at: DateTime<Utc>,
    pub data: &'a Value,
    pub metadata: &'a Value,
}

pub fn content_digest(content: &EventContent<'_>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    field(FORMAT_TAG);
    field(content.stream_id.as_bytes());
    field(content.event_id.hyphenated().to_string().as_bytes());
    field(content.event_type.as_bytes());
    field(content.schema_version.to_string().as_bytes());
    field(content.recorded_at.timestamp_micros().to_string().as_bytes());
    field(&canonical_json(content.data));
    field(&canonical_json(content.metadata));
    hasher.finalize().into()
}

pub fn chain_hash(previous: &[u8], digest: &[u8; 32], stream_version: u64, position: u64) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(digest);
    hasher.update((stream_version as i64).to_be_bytes());
    hasher.update((position as i64).to_be_bytes());
    hasher.finalize().into()
}

/// The running digest of the log, event by event in position order (format in the module
/// documentation). Fed by the chain verification, which recomputes both digests it needs.
#[derive(Clone)]
pub struct LogDigest {
    hasher: Sha256,
    event_count: u64,
}

/// What a [`LogDigest`] came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogDigestValue {
    pub event_count: u64,
    pub digest: [u8; 32],
}

impl Default for LogDigest {
    fn default() -> Self {
        Self::new()
    }
}

impl LogDigest {
    pub fn new() -> Self {
        let mut hasher = Sha256::new();
        hasher.update((LOG_DIGEST_TAG.len() as u64).to_be_bytes());
        hasher.update(LOG_DIGEST_TAG);
        Self { hasher, event_count: 0 }
    }

    /// Adds the next event in position order.
    pub fn add(&mut self, position: u64, stream_id: &str, stream_version: u64, content: &[u8; 32], hash: &[u8; 32]) {
        self.hasher.update(position.to_be_bytes());
        self.hasher.update((stream_id.len() as u64).to_be_bytes());
        self.hasher.update(stream_id.as_bytes());
        self.hasher.update(stream_version.to_be_bytes());
        self.hasher.update(content);
        self.hasher.update(hash);
        self.event_count += 1;
    }

    pub fn finish(self) -> LogDigestValue {
        LogDigestValue { event_count: self.event_count, digest: self.hasher.finalize().into() }
    }
}

pub fn canonical_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => out.extend_from_slice(number.to_string().as_bytes()),
        Value::String(text) => write_string(text, out),
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_canonical(item, out);
            }
            out.push(b'}');
        }
    }
}

fn write_string(text: &str, out: &mut Vec<u8>) {
    // serde_json's string escaping is deterministic; a String always serialises.
    match serde_json::to_vec(text) {
        Ok(bytes) => out.extend_from_slice(&bytes),
        Err(_) => out.extend_from_slice(b"\"\""),
    }
}

/// Refuses JSON that `jsonb` would not give back identically: fractional or exponent numbers
/// (normalised by `numeric`) and NUL characters (refused by `jsonb`). Also refuses an object
/// whose keys sort differently by UTF-16 code units (RFC 8785) than by UTF-8 bytes (this
/// form), so that the canonical form of whatever is appended stays RFC 8785's for integers
/// within ±(2^53 − 1). `what` names the part.
pub fn check_storable(value: &Value, what: &str) -> Result<(), StoreError> {
    match value {
        Value::Number(number) if number.is_f64() => Err(StoreError::InvalidAppend(format!(
            "{what} contains the fractional number {number}; record money in integer cents and rates in basis points"
        ))),
        Value::String(text) if text.contains('\0') => {
            Err(StoreError::InvalidAppend(format!("{what} contains a NUL character")))
        }
        Value::Array(items) => items.iter().try_for_each(|item| check_storable(item, what)),
        Value::Object(map) => {
            if !keys_sort_alike_by_utf8_and_utf16(map.keys()) {
                return Err(StoreError::InvalidAppend(format!(
                    "{what} has keys that mix characters from U+E000 to U+FFFF with characters beyond U+FFFF, \
                     which sort differently by UTF-8 and by UTF-16; rename them"
                )));
            }
            map.iter().try_for_each(|(key, item)| {
                if key.contains('\0') {
                    return Err(StoreError::InvalidAppend(format!("{what} has a key with a NUL character")));
                }
                check_storable(item, what)
            })
        }
        _ => Ok(()),
    }
}

/// Whether the keys come in the same order sorted by UTF-8 bytes (code points) as by UTF-16
/// code units. The two orders differ only between a character from U+E000 to U+FFFF and one
/// beyond U+FFFF (a surrogate pair, which UTF-16 sorts first); both are written in UTF-8 with
/// a first byte of 0xEE or more, so keys without such a byte (all the scheme's) pass at once.
fn keys_sort_alike_by_utf8_and_utf16<'a>(keys: impl Iterator<Item = &'a String> + Clone) -> bool {
    if keys.clone().all(|key| key.bytes().all(|byte| byte < 0xEE)) {
        return true;
    }
    let mut by_utf8: Vec<&String> = keys.collect();
    by_utf8.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let mut by_utf16 = by_utf8.clone();
    by_utf16.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
    by_utf8 == by_utf16
}

/// Lower-case hexadecimal, as exports write hashes.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let value = json!({"b": 1, "a": {"z": [1, "x"], "aa": null}, "é": true});
        assert_eq!(
            String::from_utf8(canonical_json(&value)).expect("utf8"),
            r#"{"a":{"aa":null,"z":[1,"x"]},"b":1,"é":true}"#
        );
    }

    #[test]
    fn the_form_read_back_from_jsonb_text_gives_the_same_bytes() {
        // jsonb reorders keys (shorter first) and adds spaces; the canonical form does not care.
        let written = json!({"amount_cents": 123_456_789_012_i64, "rate_bps": 7000, "n": -5});
        let as_jsonb_prints_it: Value =
            serde_json::from_str(r#"{"n": -5, "rate_bps": 7000, "amount_cents": 123456789012}"#).expect("json");
        assert_eq!(canonical_json(&written), canonical_json(&as_jsonb_prints_it));
    }

    #[test]
    fn fractional_numbers_and_nul_are_refused() {
        assert!(check_storable(&json!({"a": [1, 2.5]}), "data").is_err());
        assert!(check_storable(&json!({"a": "x\u{0}y"}), "data").is_err());
        assert!(check_storable(&json!({"a\u{0}": 1}), "data").is_err());
        assert!(check_storable(&json!({"a": [1, u64::MAX, -3, "ok"]}), "data").is_ok());
    }

    #[test]
    fn strings_and_literals_are_written_as_rfc_8785_writes_them() {
        // RFC 8785, section 3.2.2, without its fractional numbers (which the log refuses).
        let value: Value = serde_json::from_str(
            r#"{"string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/", "literals": [null, true, false]}"#,
        )
        .expect("json");
        assert_eq!(
            String::from_utf8(canonical_json(&value)).expect("utf8"),
            r#"{"literals":[null,true,false],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
        let controls: String = (0u8..0x20).map(char::from).chain(['\u{7f}', '\u{2028}']).collect();
        assert_eq!(
            String::from_utf8(canonical_json(&Value::String(controls))).expect("utf8"),
            "\"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r\\u000e\\u000f\
             \\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\u{7f}\u{2028}\""
        );
    }

    #[test]
    fn keys_that_rfc_8785_would_sort_otherwise_are_refused() {
        // RFC 8785, section 3.2.3: U+FB33 sorts before U+1F600 by UTF-8, after it by UTF-16.
        let rfc_example = json!({
            "\u{20ac}": "Euro Sign", "\r": "Carriage Return", "\u{fb33}": "Hebrew Letter Dalet With Dagesh",
            "1": "One", "\u{1f600}": "Emoji: Grinning Face", "\u{80}": "Control", "\u{f6}": "Latin Small Letter O With Diaeresis"
        });
        assert!(check_storable(&rfc_example, "data").is_err());
        assert!(check_storable(&json!({"nested": [rfc_example]}), "data").is_err());
        // Without U+FB33 both orders agree, and the canonical form is the RFC's.
        let agreeing = json!({
            "\u{20ac}": 1, "\r": 2, "1": 3, "\u{1f600}": 4, "\u{80}": 5, "\u{f6}": 6
        });
        assert!(check_storable(&agreeing, "data").is_ok());
        assert_eq!(
            String::from_utf8(canonical_json(&agreeing)).expect("utf8"),
            "{\"\\r\":2,\"1\":3,\"\u{80}\":5,\"\u{f6}\":6,\"\u{20ac}\":1,\"\u{1f600}\":4}"
        );
        // Characters up to U+FFFF on their own sort alike either way.
        assert!(check_storable(&json!({"\u{e000}x": 1, "\u{e000}": 2, "\u{ffff}": 3, "a": 4}), "data").is_ok());
    }

    /// The worked example of docs/AUDIT-FORMAT.md: the document, this code and
    /// tools/verify_export.py must give these very bytes.
    #[test]
    fn the_documented_example_hashes_as_documented() {
        let data = json!({"note": "café \"q\"\n", "n": 1});
        let metadata = json!({"role": "intake_officer", "actor": "intake-1"});
        assert_eq!(String::from_utf8(canonical_json(&data)).expect("utf8"), r#"{"n":1,"note":"café \"q\"\n"}"#);
        let first = EventContent {
            stream_id: "application-0",
            event_id: Uuid::parse_str("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").expect("uuid"),
            event_type: "NoteRecorded",
            schema_version: 1,
            recorded_at: DateTime::from_timestamp_micros(1_751_335_384_000_005).expect("time"),
            data: &data,
            metadata: &metadata,
        };
        let digest = content_digest(&first);
        assert_eq!(to_hex(&digest), "392f6b700a10227b3d6fd43fb6efc54accf14b3541dc8a9aed0a998e31b3d0da");
        let hash = chain_hash(CHAIN_START, &digest, 0, 1_048_577);
        assert_eq!(to_hex(&hash), "03d4eb8ce641935b7201f0e87400621e26430765e81323a16c2e3cf320c084ad");
        let second_data = json!({"n": 2});
        let second = EventContent {
            event_id: Uuid::parse_str("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c").expect("uuid"),
            data: &second_data,
            ..first
        };
        let second_digest = content_digest(&second);
        assert_eq!(to_hex(&second_digest), "55879bb9a3245c3000ea6ba4eb3b29407ec94510cc689992789a86a8d96af744");
        assert_eq!(
            to_hex(&chain_hash(&hash, &second_digest, 1, 2_097_153)),
            "3ea1b00e30256e030c738f6f1351c0f553449e08379a4a8d4ad8fd21c7ebf855"
        );
    }

    #[test]
    fn hashes_are_written_in_lower_case_hex() {
        assert_eq!(to_hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(to_hex(CHAIN_START), "");
    }

    #[test]
    fn the_log_digest_depends_on_every_event_and_its_place() {
        let digest_of = |events: &[(u64, &str, u64, u8, u8)]| {
            let mut log = LogDigest::new();
            for (position, stream, version, content, hash) in events {
                log.add(*position, stream, *version, &[*content; 32], &[*hash; 32]);
            }
            log.finish()
        };
        let original = digest_of(&[(1, "s-1", 0, 1, 2), (2, "s-1", 1, 3, 4)]);
        assert_eq!(original.event_count, 2);
        assert_eq!(original, digest_of(&[(1, "s-1", 0, 1, 2), (2, "s-1", 1, 3, 4)]));
        // The empty log has a digest of its own, not the digest of nothing.
        assert_ne!(digest_of(&[]).digest, Sha256::digest(b"").as_slice());
        for changed in [
            digest_of(&[(1, "s-1", 0, 1, 2)]),
            digest_of(&[(1, "s-1", 0, 1, 2), (3, "s-1", 1, 3, 4)]),
            digest_of(&[(1, "s-1", 0, 1, 2), (2, "s-2", 1, 3, 4)]),
            digest_of(&[(1, "s-1", 0, 1, 2), (2, "s-1", 2, 3, 4)]),
            digest_of(&[(1, "s-1", 0, 1, 2), (2, "s-1", 1, 9, 4)]),
            digest_of(&[(1, "s-1", 0, 1, 2), (2, "s-1", 1, 3, 9)]),
        ] {
            assert_ne!(changed.digest, original.digest);
        }
    }

    #[test]
    fn any_field_change_changes_the_digest() {
        let data = json!({"x": 1});
        let metadata = json!({"actor": "a"});
        let base = EventContent {
            stream_id: "s-1",
            event_id: Uuid::nil(),
            event_type: "T",
            schema_version: 1,
            recorded_at: DateTime::from_timestamp_micros(1_700_000_000_000_000).expect("time"),
            data: &data,
            metadata: &metadata,
        };
        let original = content_digest(&base);
        let other_data = json!({"x": 2});
        assert_ne!(original, content_digest(&EventContent { data: &other_data, ..base }));
        let base = EventContent { data: &data, ..base };
        assert_ne!(original, content_digest(&EventContent { event_type: "U", ..base }));
        let base = EventContent { event_type: "T", ..base };
        assert_ne!(original, content_digest(&EventContent { schema_version: 2, ..base }));
        assert_ne!(chain_hash(&[], &original, 0, 1), chain_hash(&[], &original, 1, 1));
        assert_ne!(chain_hash(&[], &original, 0, 1), chain_hash(&[1], &original, 0, 1));
    }
}
