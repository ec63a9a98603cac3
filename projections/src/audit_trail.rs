//! The audit trail: every event with its actor, role, stream, type and request id, and both
//! its clocks — when it was recorded and the business date it takes effect on in the scheme's
//! terms — queryable by stream, actor, event type, recorded time and business date, paged by
//! position.

use aisc_domain::codec::BusinessDate;
use aisc_domain::event_store::RecordedEvent;
use aisc_domain::subsidy::events::SchemeEvent;
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use crate::projection::{Interest, Projection, ProjectionError, TableSpec};

pub const NAME: &str = "audit_trail";

const TABLES: &[TableSpec] = &[TableSpec {
    name: "audit_trail",
    ddl: "CREATE TABLE {schema}.audit_trail (
              position        bigint      PRIMARY KEY,
              event_id        uuid        NOT NULL,
              stream_id       text        NOT NULL,
              stream_version  bigint      NOT NULL,
              event_type      text        NOT NULL,
              actor           text,
              role            text,
              request_id      text,
              correlation_id  text,
              recorded_at     timestamptz NOT NULL,
              effective_on    date
          );
          CREATE INDEX audit_trail_by_stream ON {schema}.audit_trail (stream_id, position);
          CREATE INDEX audit_trail_by_actor ON {schema}.audit_trail (actor, position);
          CREATE INDEX audit_trail_by_type ON {schema}.audit_trail (event_type, position);
          CREATE INDEX audit_trail_by_time ON {schema}.audit_trail (recorded_at);
          CREATE INDEX audit_trail_by_business_date ON {schema}.audit_trail (effective_on, position);",
}];

pub struct AuditTrail;

#[async_trait]
impl Projection for AuditTrail {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> i32 {
        2
    }

    fn tables(&self) -> &'static [TableSpec] {
        TABLES
    }

    /// The audit trail records every event of the log, of any type.
    fn interest(&self, _event_type: &str) -> Option<Interest> {
        Some(Interest::Handles)
    }

    async fn apply(
        &self,
        connection: &mut PgConnection,
        schema: &str,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
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
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {schema}.audit_trail (position, event_id, stream_id, stream_version, event_type, actor, role, \
             request_id, correlation_id, recorded_at, effective_on) \
             SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], $6::text[], \
             $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::date[])"
        )))
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

/// One line of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub position: u64,
    pub event_id: Uuid,
    pub stream_id: String,
    pub stream_version: u64,
    pub event_type: String,
    pub actor: Option<String>,
    pub role: Option<String>,
    pub request_id: Option<String>,
    pub correlation_id: Option<String>,
    pub recorded_at: DateTime<Utc>,
    /// The date the fact takes effect in the scheme's terms (none for events outside the scheme).
    pub effective_on: Option<NaiveDate>,
}

/// Filters of an audit trail query; every one optional. Pages follow positions.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub stream_id: Option<String>,
    pub actor: Option<String>,
    pub event_type: Option<String>,
    pub recorded_from: Option<DateTime<Utc>>,
    pub recorded_before: Option<DateTime<Utc>>,
    /// Facts taking effect on or after this business date.
    pub effective_from: Option<NaiveDate>,
    /// Facts taking effect on or before this business date.
    pub effective_until: Option<NaiveDate>,
    /// Only entries after this position (the last position of the previous page).
    pub after_position: u64,
    pub limit: u32,
}

pub async fn query(pool: &PgPool, filter: &AuditQuery) -> Result<Vec<AuditEntry>, ProjectionError> {
    let mut sql: QueryBuilder<Postgres> = QueryBuilder::new(
        "SELECT position, event_id, stream_id, stream_version, event_type, actor, role, request_id, \
         correlation_id, recorded_at, effective_on FROM read_models.audit_trail WHERE position > ",
    );
    sql.push_bind(i64::try_from(filter.after_position).unwrap_or(i64::MAX));
    if let Some(stream) = &filter.stream_id {
        sql.push(" AND stream_id = ").push_bind(stream.clone());
    }
    if let Some(actor) = &filter.actor {
        sql.push(" AND actor = ").push_bind(actor.clone());
    }
    if let Some(event_type) = &filter.event_type {
        sql.push(" AND event_type = ").push_bind(event_type.clone());
    }
    if let Some(from) = filter.recorded_from {
        sql.push(" AND recorded_at >= ").push_bind(from);
    }
    if let Some(before) = filter.recorded_before {
        sql.push(" AND recorded_at < ").push_bind(before);
    }
    if let Some(from) = filter.effective_from {
        sql.push(" AND effective_on >= ").push_bind(from);
    }
    if let Some(until) = filter.effective_until {
        sql.push(" AND effective_on <= ").push_bind(until);
    }
    sql.push(" ORDER BY position LIMIT ").push_bind(i64::from(filter.limit.clamp(1, 1_000)));
    let rows = sql.build().fetch_all(pool).await?;
    rows.iter()
        .map(|row| {
            Ok(AuditEntry {
                position: u64::try_from(row.try_get::<i64, _>("position")?).unwrap_or_default(),
                event_id: row.try_get("event_id")?,
                stream_id: row.try_get("stream_id")?,
                stream_version: u64::try_from(row.try_get::<i64, _>("stream_version")?).unwrap_or_default(),
                event_type: row.try_get("event_type")?,
                actor: row.try_get("actor")?,
                role: row.try_get("role")?,
                request_id: row.try_get("request_id")?,
                correlation_id: row.try_get("correlation_id")?,
                recorded_at: row.try_get("recorded_at")?,
                effective_on: row.try_get("effective_on")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(ProjectionError::from)
}
