//! Events as auditors and reporting jobs receive them: an EventStoreDB-like JSON shape, used
//! by the HTTP feed and by `aisc audit export` (NDJSON). Each record carries its stored hash
//! and its predecessor's, so an export verifies on its own (`docs/AUDIT-FORMAT.md`).

use aisc_adapters::ChainLink;
use aisc_adapters::event_hash::to_hex;
use aisc_domain::event_store::RecordedEvent;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeedEvent<'a> {
    pub event_id: Uuid,
    pub event_type: &'a str,
    pub stream_id: &'a str,
    pub event_number: u64,
    pub position: u64,
    pub schema_version: u32,
    /// When the event was recorded: RFC 3339 in UTC with exactly six fractional digits
    /// (`2025-07-01T02:03:04.000005Z`), the microseconds the content digest covers.
    #[serde(serialize_with = "microseconds_utc")]
    #[schema(value_type = String, format = DateTime, example = "2025-07-01T02:03:04.000005Z")]
    pub created: DateTime<Utc>,
    #[schema(value_type = EventData)]
    pub data: &'a serde_json::Value,
    /// Who recorded the event, in which role and request.
    #[schema(value_type = EventMetadata)]
    pub metadata: &'a serde_json::Value,
    /// The event's hash in its stream's chain: 64 lower-case hex digits.
    pub hash: String,
    /// The hash of the stream's previous event; empty ("") for the stream's first event.
    pub previous_hash: String,
}

/// The event's own fields, as its `eventType` and `schemaVersion` define them (the domain's
/// event types; every stored form in `domain/tests/fixtures/`). One schema cannot name them
/// all: this one says so, with `additionalProperties: true`, rather than pass for an untyped
/// object.
pub struct EventData;

impl utoipa::PartialSchema for EventData {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "The event's fields, defined per eventType and schemaVersion: money in HK cents, rates in \
                 basis points, dates YYYY-MM-DD, months YYYY-MM.",
            ))
            .additional_properties(Some(AdditionalProperties::<utoipa::openapi::schema::Schema>::FreeForm(true)))
            .into()
    }
}

impl utoipa::ToSchema for EventData {}

/// The metadata the command service stores with every event it writes.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Describes the stored JSON for the document; the feed passes it through as stored.
pub struct EventMetadata {
    /// The principal (token name) that issued the command.
    actor: Option<String>,
    /// The role it acted in, e.g. `intake_officer`.
    role: Option<String>,
    /// The HTTP request's id (`X-Request-Id`).
    request_id: Option<String>,
    /// Shared by the events of one piece of work across requests.
    correlation_id: Option<String>,
    /// The event or command that caused this one, when there is one.
    causation_id: Option<String>,
}

impl<'a> FeedEvent<'a> {
    pub fn chained(event: &'a RecordedEvent, link: &ChainLink) -> Self {
        Self {
            event_id: event.event_id,
            event_type: &event.event_type,
            stream_id: event.stream.as_str(),
            event_number: event.stream_version,
            position: event.position.0,
            schema_version: event.schema_version,
            created: event.recorded_at,
            data: &event.data,
            metadata: &event.metadata,
            hash: to_hex(&link.hash),
            previous_hash: to_hex(&link.previous_hash),
        }
    }
}

/// Always six fractional digits: chrono's default drops trailing zero groups (`.120Z`, or no
/// fraction at all), which is exact too, but a fixed width is what an auditor's parser expects.
fn microseconds_utc<S: Serializer>(moment: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&moment.to_rfc3339_opts(SecondsFormat::Micros, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aisc_domain::event_store::{Position, StreamId};

    #[test]
    fn a_record_carries_microseconds_and_both_hashes_in_hex() {
        let event = RecordedEvent {
            position: Position(1_048_577),
            stream: StreamId::parse("note-1").expect("stream"),
            stream_version: 0,
            event_id: Uuid::nil(),
            event_type: "NoteRecorded".into(),
            schema_version: 1,
            data: serde_json::json!({"n": 1}),
            metadata: serde_json::json!({}),
            recorded_at: DateTime::from_timestamp_micros(1_751_335_384_000_000).expect("time"),
        };
        let link = ChainLink { hash: vec![0xab; 32], previous_hash: Vec::new() };
        let record = serde_json::to_value(FeedEvent::chained(&event, &link)).expect("json");
        assert_eq!(record["created"], "2025-07-01T02:03:04.000000Z");
        assert_eq!(record["hash"], "ab".repeat(32));
        assert_eq!(record["previousHash"], "");
    }
}
