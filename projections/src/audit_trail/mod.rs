//! The audit trail: every event with its actor, role, stream, type and request id, and both
//! its clocks — when it was recorded and the business date it takes effect on in the scheme's
//! terms — queryable by stream, actor, event type, recorded time and business date, paged by
//! position.

use aisc_domain::codec::BusinessDate;
use aisc_domain::event_store::RecordedEvent;
use aisc_domain::subsidy::events::SchemeEvent;
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::projection::{BulkLoad, CopyRows, CopyTarget, Interest, Projection, ProjectionError, ReadModelTables};

mod queries;

pub use queries::*;

pub const NAME: &str = "audit_trail";

static TABLES: ReadModelTables = ReadModelTables {
    names: &["audit_trail"],
    create: include_str!("tables.sql"),
    indexes: include_str!("indexes.sql"),
};

pub struct AuditTrail;

#[async_trait]
impl Projection for AuditTrail {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> i32 {
        2
    }

    fn tables(&self) -> &'static ReadModelTables {
        &TABLES
    }

    /// The audit trail records every event of the log, of any type.
    fn interest(&self, _event_type: &str) -> Option<Interest> {
        Some(Interest::Handles)
    }

    async fn apply(&self, connection: &mut PgConnection, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
        let text =
            |event: &RecordedEvent, key: &str| event.metadata.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        let positions: Vec<i64> = events.iter().map(|e| e.position.0 as i64).collect();
        let event_ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
        let streams: Vec<String> = events.iter().map(|e| e.stream.as_str().to_owned()).collect();
        let versions: Vec<i64> = events.iter().map(|e| e.stream_version as i64).collect();
        let types: Vec<String> = events.iter().map(|e| e.event_type.clone()).collect();
        let actors: Vec<Option<String>> = events.iter().map(|e| text(e, "actor")).collect();
        let roles: Vec<Option<String>> = events.iter().map(|e| text(e, "role")).collect();
        let requests: Vec<Option<String>> = events.iter().map(|e| text(e, "request_id")).collect();
        let correlations: Vec<Option<String>> = events.iter().map(|e| text(e, "correlation_id")).collect();
        let times: Vec<DateTime<Utc>> = events.iter().map(|e| e.recorded_at).collect();
        let business_dates: Vec<Option<NaiveDate>> = events.iter().map(business_date).collect();
        sqlx::query(
            "INSERT INTO audit_trail (position, event_id, stream_id, stream_version, event_type, actor, role, \
             request_id, correlation_id, recorded_at, effective_on) \
             SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], $6::text[], \
             $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::date[])",
        )
        .bind(positions)
        .bind(event_ids)
        .bind(streams)
        .bind(versions)
        .bind(types)
        .bind(actors)
        .bind(roles)
        .bind(requests)
        .bind(correlations)
        .bind(times)
        .bind(business_dates)
        .execute(connection)
        .await?;
        Ok(())
    }

    /// A row per event, written as it is read: nothing is kept.
    fn bulk_load(&self) -> Option<Box<dyn BulkLoad>> {
        Some(Box::new(AuditTrailLoad))
    }
}

static COPY_TARGETS: [CopyTarget; 1] = [CopyTarget {
    table: "audit_trail",
    columns: "position, event_id, stream_id, stream_version, event_type, actor, role, request_id, correlation_id, \
              recorded_at, effective_on",
}];

struct AuditTrailLoad;

impl BulkLoad for AuditTrailLoad {
    fn targets(&self) -> &'static [CopyTarget] {
        &COPY_TARGETS
    }

    /// The same row `apply` inserts.
    fn load(&mut self, events: &[&RecordedEvent], rows: &mut CopyRows) -> Result<(), ProjectionError> {
        for event in events {
            let text = |key: &str| event.metadata.get(key).and_then(|v| v.as_str());
            rows.push(
                0,
                &[
                    &(event.position.0 as i64),
                    &event.event_id,
                    &event.stream.as_str(),
                    &(event.stream_version as i64),
                    &event.event_type,
                    &text("actor"),
                    &text("role"),
                    &text("request_id"),
                    &text("correlation_id"),
                    &event.recorded_at,
                    &business_date(event),
                ],
            );
        }
        Ok(())
    }

    fn finish(&mut self, _rows: &mut CopyRows) -> Result<(), ProjectionError> {
        Ok(())
    }
}

/// The business date of an event of the scheme; none for an event of another kind, or one
/// this code cannot read (written by a newer version during an upgrade, say): the audit trail
/// records every event whatever its data, so such an event is recorded without a date, and said.
fn business_date(event: &RecordedEvent) -> Option<NaiveDate> {
    if !SchemeEvent::event_types().any(|event_type| event_type == event.event_type) {
        return None;
    }
    match event.decode::<SchemeEvent>() {
        Ok(decoded) => Some(decoded.effective_on()),
        Err(error) => {
            tracing::warn!(position = event.position.0, %error, "audit trail: event recorded without its business date");
            None
        }
    }
}
