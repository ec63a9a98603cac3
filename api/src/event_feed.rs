//! Events as auditors and reporting jobs receive them: an EventStoreDB-like JSON shape, used
//! by `aisc audit export` (NDJSON).

use aisc_domain::event_store::RecordedEvent;
use chrono::{DateTime, Utc};
use serde::Serialize;
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
    pub created: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub data: &'a serde_json::Value,
    /// Actor, role, request id, correlation id.
    #[schema(value_type = Object)]
    pub metadata: &'a serde_json::Value,
}

impl<'a> From<&'a RecordedEvent> for FeedEvent<'a> {
    fn from(event: &'a RecordedEvent) -> Self {
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
        }
    }
}
