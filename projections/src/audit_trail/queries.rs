//! What auditors ask of the audit trail: entries by stream, actor, type, recorded time and
//! business date, paged by position.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use crate::projection::ProjectionError;

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
