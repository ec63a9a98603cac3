//! The audit trail read model: every event with actor, role, time, stream, type and request
//! id, filtered and paged by position.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, get, web};
use aisc_domain::event_store::Position;
use aisc_projections::audit_trail::{self, AuditQuery};
use aisc_projections::runner::wait_for_position;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;

use crate::auth::Principal;
use crate::authorization::{Action, require};
use crate::problem::ApiError;

/// How long a query naming `after_position` waits for the read model to reach it.
pub const READ_YOUR_WRITES_WAIT: Duration = Duration::from_secs(3);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    stream_id: Option<String>,
    actor: Option<String>,
    event_type: Option<String>,
    recorded_from: Option<DateTime<Utc>>,
    recorded_before: Option<DateTime<Utc>>,
    /// Continue after this position (the `next_after` of the previous page).
    #[serde(default)]
    after: u64,
    limit: Option<u32>,
    /// Answer only once the audit trail has applied this position (read-your-writes).
    after_position: Option<u64>,
}

/// `GET /api/v1/audit-trail`
#[get("/audit-trail")]
pub async fn query_audit_trail(
    request: HttpRequest,
    principal: Principal,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, ApiError> {
    require(&principal, Action::ReadAuditTrail)?;
    let params: AuditParams = super::query(&request)?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=1_000).contains(&limit) {
        return Err(ApiError::bad_field("limit", format!("must be between 1 and 1000, not {limit}")));
    }
    if let (Some(from), Some(before)) = (params.recorded_from, params.recorded_before)
        && from >= before
    {
        return Err(ApiError::bad_field("recorded_before", "must be after recorded_from"));
    }
    if let Some(position) = params.after_position
        && !wait_for_position(&pool, audit_trail::NAME, Position(position), READ_YOUR_WRITES_WAIT).await?
    {
        return Err(ApiError::Unavailable);
    }
    let entries = audit_trail::query(
        &pool,
        &AuditQuery {
            stream_id: params.stream_id,
            actor: params.actor,
            event_type: params.event_type,
            recorded_from: params.recorded_from,
            recorded_before: params.recorded_before,
            after_position: params.after,
            limit,
        },
    )
    .await?;
    let next_after = entries.last().map_or(params.after, |entry| entry.position);
    Ok(HttpResponse::Ok().json(json!({ "entries": entries, "next_after": next_after })))
}
