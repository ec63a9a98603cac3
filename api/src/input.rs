//! Bounds on what callers send, checked at the edge before anything reaches the domain or the
//! database: identifiers (length and characters), counts, free text, NUL bytes, and the media
//! type of JSON command bodies. Each refusal is a 400 naming the field (415 for the media
//! type); a caller's bad input is never a server error.
//!
//! Where the domain has a rule for an identifier it is reused (application and import ids) or
//! mirrored (batch ids, which the domain checks only when a batch is opened).

use actix_web::HttpRequest;
use actix_web::http::header::CONTENT_TYPE;

use crate::problem::ApiError;

/// Most units in one usage line, allocation, capacity declaration, redeployment or requested
/// month: far above any real month of the AISC (3,000 PFLOPS is about 270,000 GPU node-hours a
/// month) and, at any rate in force, far below what the ledger's 64-bit cents hold.
pub const MAX_UNITS: u64 = 1_000_000_000;
/// Most of a head count or a KPI figure (team size, talents, professionals, publications…).
pub const MAX_COUNT: u32 = 1_000_000;
/// Longest usage id: a scheduler's line id, or `{import id}-{line}` of an import.
pub const MAX_USAGE_ID_CHARS: usize = 100;
/// Longest batch id (the domain's rule when a batch is opened).
pub const MAX_BATCH_ID_CHARS: usize = 40;
/// Longest name or reference: committee members, meeting and decision references, actors.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest free text: reasons, conditions, comments, summaries (as the project summary).
pub const MAX_TEXT_CHARS: usize = 10_000;
/// Longest free-text search of the applications list.
pub const MAX_SEARCH_CHARS: usize = 200;
/// Longest code in a filter (a status or a category).
pub const MAX_CODE_CHARS: usize = 40;
/// Longest event type in a filter.
pub const MAX_EVENT_TYPE_CHARS: usize = 100;

/// An application id: the domain's rule (letters, digits and `-`, at most 64).
pub fn application_id(field: &str, value: &str) -> Result<(), ApiError> {
    aisc_domain::subsidy::streams::check_application_id(value)
        .map_err(|_| ApiError::bad_field(field, "letters, digits and -, at most 64"))
}

/// A batch id: letters, digits, `-` and `_`, at most 40 (the rule a batch is opened with).
pub fn batch_id(field: &str, value: &str) -> Result<(), ApiError> {
    let valid = !value.is_empty()
        && value.len() <= MAX_BATCH_ID_CHARS
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid { Ok(()) } else { Err(ApiError::bad_field(field, "letters, digits, - and _, at most 40")) }
}

/// A usage id: letters, digits, `-`, `_` and `.`, beginning with a letter or digit, at most
/// 100, so that it names its line in a URL (`…/usage/{usage_id}/reversal`).
pub fn usage_id(field: &str, value: &str) -> Result<(), ApiError> {
    let valid = value.len() <= MAX_USAGE_ID_CHARS
        && value.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_field(field, "letters, digits, -, _ and ., beginning with a letter or digit, at most 100"))
    }
}

/// An import id: the domain's rule (letters, digits and `-`, at most 48).
pub fn import_id(field: &str, value: &str) -> Result<(), ApiError> {
    aisc_domain::subsidy::usage_import::check_import_id(value)
        .map_err(|_| ApiError::bad_field(field, "letters, digits and -, at most 48"))
}

/// A stream id: the event store's rule.
pub fn stream_id(field: &str, value: &str) -> Result<(), ApiError> {
    aisc_domain::event_store::StreamId::parse(value)
        .map(|_| ())
        .map_err(|error| ApiError::bad_field(field, error.to_string()))
}

/// A name or a reference: 1 to 100 characters, not blank, no control characters.
pub fn name(field: &str, value: &str) -> Result<(), ApiError> {
    let valid =
        !value.trim().is_empty() && value.chars().count() <= MAX_NAME_CHARS && !value.chars().any(char::is_control);
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_field(field, format!("1 to {MAX_NAME_CHARS} characters, not blank, no control characters")))
    }
}

/// Free text: at most 10,000 characters, no control characters but line breaks and tabs.
/// (Whether it may be empty is the domain's rule.)
pub fn text(field: &str, value: &str) -> Result<(), ApiError> {
    bounded_text(field, value, MAX_TEXT_CHARS)
}

/// Each item of a list of free texts, named `field[i]`.
pub fn texts(field: &str, values: &[String]) -> Result<(), ApiError> {
    values.iter().enumerate().try_for_each(|(index, value)| text(&format!("{field}[{index}]"), value))
}

/// Each item of a list of names, named `field[i]`.
pub fn names(field: &str, values: &[String]) -> Result<(), ApiError> {
    values.iter().enumerate().try_for_each(|(index, value)| name(&format!("{field}[{index}]"), value))
}

fn bounded_text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.chars().count() > max {
        return Err(ApiError::bad_field(field, format!("at most {max} characters")));
    }
    if value.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err(ApiError::bad_field(field, "no control characters but line breaks and tabs"));
    }
    Ok(())
}

/// The free-text search of a list: at most 200 characters.
pub fn search(field: &str, value: &str) -> Result<(), ApiError> {
    bounded_text(field, value, MAX_SEARCH_CHARS)
}

/// A code in a filter (a status, a category): lower-case letters, digits and `_`, at most 40.
pub fn code(field: &str, value: &str) -> Result<(), ApiError> {
    let valid = !value.is_empty()
        && value.len() <= MAX_CODE_CHARS
        && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid { Ok(()) } else { Err(ApiError::bad_field(field, "lower-case letters, digits and _, at most 40")) }
}

/// An event type in a filter: letters and digits, at most 100.
pub fn event_type(field: &str, value: &str) -> Result<(), ApiError> {
    let valid =
        !value.is_empty() && value.len() <= MAX_EVENT_TYPE_CHARS && value.chars().all(|c| c.is_ascii_alphanumeric());
    if valid { Ok(()) } else { Err(ApiError::bad_field(field, "letters and digits, at most 100")) }
}

/// A number of units: at most [`MAX_UNITS`] (whether it may be zero is the domain's rule).
pub fn units(field: &str, value: u64) -> Result<(), ApiError> {
    if value <= MAX_UNITS {
        Ok(())
    } else {
        Err(ApiError::bad_field(field, format!("at most 1,000,000,000 units, not {value}")))
    }
}

/// A head count or a KPI figure: at most [`MAX_COUNT`].
pub fn count(field: &str, value: u32) -> Result<(), ApiError> {
    if value <= MAX_COUNT { Ok(()) } else { Err(ApiError::bad_field(field, format!("at most 1,000,000, not {value}"))) }
}

/// Refuses with 415 a `Content-Type` other than `application/json` (a `charset` parameter,
/// if any, is UTF-8). Checked before the body is read.
pub fn declared_json(request: &HttpRequest) -> Result<(), ApiError> {
    let Some(value) = request.headers().get(CONTENT_TYPE) else { return Ok(()) };
    let refused = || ApiError::UnsupportedMediaType {
        detail: format!(
            "send the body as application/json, not {}",
            value.to_str().map_or_else(|_| "an unreadable Content-Type".to_string(), |text| format!("{text:?}"))
        ),
    };
    let text = value.to_str().map_err(|_| refused())?;
    let mut parts = text.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(refused());
    }
    for parameter in parts {
        let Some((key, value)) = parameter.split_once('=') else { continue };
        if key.trim().eq_ignore_ascii_case("charset") && !value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8") {
            return Err(refused());
        }
    }
    Ok(())
}

/// A JSON command's body, once read: a body needs `Content-Type: application/json` (a command
/// of no fields may come without a body, and then without a type), and no string in it holds
/// a NUL, which the log cannot store (400 naming the field).
pub fn json_body(request: &HttpRequest, body: &[u8]) -> Result<(), ApiError> {
    declared_json(request)?;
    let blank = body.iter().all(u8::is_ascii_whitespace);
    if !blank && request.headers().get(CONTENT_TYPE).is_none() {
        return Err(ApiError::UnsupportedMediaType { detail: "send the body as application/json".into() });
    }
    no_nul_in_json(body)
}

/// Refuses a JSON document with a NUL in a string or a key, naming where (`meeting.members_present[0]`).
/// A document that does not parse is left to the parser's own 400.
pub fn no_nul_in_json(body: &[u8]) -> Result<(), ApiError> {
    // A NUL can only be written `\u0000` in JSON; most bodies hold no such escape.
    if !body.windows(6).any(|window| window == b"\\u0000") {
        return Ok(());
    }
    let Ok(document) = serde_json::from_slice::<serde_json::Value>(body) else { return Ok(()) };
    match nul_path(&document, String::new()) {
        Some(path) => {
            let field = if path.is_empty() { "body".to_string() } else { path };
            Err(ApiError::bad_field(field, "holds a NUL character"))
        }
        None => Ok(()),
    }
}

/// The path of the first string holding a NUL (a key holding one: the path of its object).
fn nul_path(value: &serde_json::Value, path: String) -> Option<String> {
    match value {
        serde_json::Value::String(text) => text.contains('\0').then_some(path),
        serde_json::Value::Array(items) => {
            items.iter().enumerate().find_map(|(index, item)| nul_path(item, format!("{path}[{index}]")))
        }
        serde_json::Value::Object(map) => map.iter().find_map(|(key, item)| {
            if key.contains('\0') {
                return Some(path.clone());
            }
            nul_path(item, if path.is_empty() { key.clone() } else { format!("{path}.{key}") })
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(error: ApiError) -> String {
        match error {
            ApiError::BadRequest { errors, .. } => errors[0].field.clone(),
            other => panic!("not a 400: {other:?}"),
        }
    }

    #[test]
    fn identifiers_are_bounded_in_length_and_characters() {
        assert!(usage_id("usage_id", "sched-2025-07").is_ok());
        assert!(usage_id("usage_id", "file-0a1b2c3d4e5f6a7b-12").is_ok());
        assert!(usage_id("usage_id", &"x".repeat(100)).is_ok());
        for bad in ["", "..", ".x", "-x", "a/b", "a b", "a%2F", "ü", &"x".repeat(101)] {
            assert_eq!(field_of(usage_id("usage_id", bad).expect_err(bad)), "usage_id", "{bad:?}");
        }
        assert!(batch_id("batch_id", &"b".repeat(40)).is_ok());
        assert!(batch_id("batch_id", &"b".repeat(41)).is_err());
        assert!(batch_id("batch_id", "2025 q2").is_err());
        assert!(name("m", "Prof Chan Tai-man").is_ok());
        for bad in ["", "  ", "a\u{0}b", "a\nb", &"n".repeat(101)] {
            assert!(name("m", bad).is_err(), "{bad:?}");
        }
        assert!(text("reason", "line one\nline two\ttabbed").is_ok());
        assert!(text("reason", "a\u{0}b").is_err());
        assert!(text("reason", &"é".repeat(10_000)).is_ok());
        assert!(text("reason", &"é".repeat(10_001)).is_err());
    }

    #[test]
    fn counts_are_bounded() {
        assert!(units("units", MAX_UNITS).is_ok());
        assert_eq!(field_of(units("units", MAX_UNITS + 1).expect_err("over")), "units");
        assert!(units("units", u64::MAX).is_err());
        assert!(count("team_size", MAX_COUNT).is_ok());
        assert!(count("team_size", MAX_COUNT + 1).is_err());
    }

    #[test]
    fn a_nul_in_a_json_string_or_key_is_named_by_its_path() {
        let body = br#"{"meeting": {"members_present": ["m1", "m\u0000"]}}"#;
        assert_eq!(field_of(no_nul_in_json(body).expect_err("nul")), "meeting.members_present[1]");
        assert_eq!(field_of(no_nul_in_json(br#"{"a\u0000": 1}"#).expect_err("nul key")), "body");
        assert!(no_nul_in_json(br#"{"reason": "a \\u0000 written out"}"#).is_ok());
        assert!(no_nul_in_json(br#"{"reason": "fine"}"#).is_ok());
        assert!(no_nul_in_json(br#"{"reason": "\u0000"#).is_ok(), "left to the parser");
    }
}
