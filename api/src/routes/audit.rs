//! The audit trail read model: every event with actor, role, time, stream, type and request
//! id, filtered and paged by position.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, get, web};
use aisc_domain::event_store::Position;
use aisc_projections::audit_trail::{self, AuditQuery};
use aisc_projections::runner::wait_for_position;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use sqlx::PgPool;

use crate::auth::Principal;
use crate::authorization::{Action, require};
use crate::input;
use crate::problem::{ApiError, ProblemDocument};

/// How long a query naming `after_position` waits for the read model to reach it.
pub const READ_YOUR_WRITES_WAIT: Duration = Duration::from_secs(3);

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditParams {
    /// Only this stream's events.
    stream_id: Option<String>,
    /// Only events recorded by this principal.
    actor: Option<String>,
    /// Only events of this type.
    event_type: Option<String>,
    /// Recorded at or after this time (RFC 3339).
    recorded_from: Option<DateTime<Utc>>,
    /// Recorded before this time (RFC 3339).
    recorded_before: Option<DateTime<Utc>>,
    /// Taking effect on or after this business date (YYYY-MM-DD): facts of the scheme only.
    effective_from: Option<NaiveDate>,
    /// Taking effect on or before this business date (YYYY-MM-DD): "as it stood on".
    effective_until: Option<NaiveDate>,
    /// Continue after this position (the `next_after` of the previous page).
    #[serde(default)]
    after: u64,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<u32>,
    /// Answer only once the audit trail has applied this position (read-your-writes).
    after_position: Option<u64>,
}

/// One line of the audit trail.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AuditEntryView {
    pub position: u64,
    pub event_id: uuid::Uuid,
    pub stream_id: String,
    pub stream_version: u64,
    pub event_type: String,
    pub actor: Option<String>,
    pub role: Option<String>,
    pub request_id: Option<String>,
    pub correlation_id: Option<String>,
    pub recorded_at: DateTime<Utc>,
    /// The date the fact takes effect in the scheme's terms (YYYY-MM-DD: decided on, signed on,
    /// the usage month's first day…); absent for events outside the scheme.
    pub effective_on: Option<NaiveDate>,
}

impl From<audit_trail::AuditEntry> for AuditEntryView {
    fn from(entry: audit_trail::AuditEntry) -> Self {
        Self {
            position: entry.position,
            event_id: entry.event_id,
            stream_id: entry.stream_id,
            stream_version: entry.stream_version,
            event_type: entry.event_type,
            actor: entry.actor,
            role: entry.role,
            request_id: entry.request_id,
            correlation_id: entry.correlation_id,
            recorded_at: entry.recorded_at,
            effective_on: entry.effective_on,
        }
    }
}

/// A page of the audit trail.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntryView>,
    /// Pass as `after` to continue.
    pub next_after: u64,
}

/// `GET /api/v1/audit-trail`
#[utoipa::path(
    tag = "audit",
    params(AuditParams),
    responses(
        (status = 200, description = "A page of the audit trail in position order", body = AuditPage),
        (status = 400, description = "A malformed parameter", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 403, description = "The role may not read the audit trail", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable, or the read model did not reach after_position in time", body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
#[get("/audit-trail")]
pub async fn query_audit_trail(
    request: HttpRequest,
    principal: Principal,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, ApiError> {
    require(&principal, Action::ReadAuditTrail)?;
    let params: AuditParams = super::query(&request)?;
    if let Some(stream_id) = &params.stream_id {
        input::stream_id("stream_id", stream_id)?;
    }
    if let Some(actor) = &params.actor {
        input::name("actor", actor)?;
    }
    if let Some(event_type) = &params.event_type {
        input::event_type("event_type", event_type)?;
    }
    let limit = params.limit.unwrap_or(100);
    if !(1..=1_000).contains(&limit) {
        return Err(ApiError::bad_field("limit", format!("must be between 1 and 1000, not {limit}")));
    }
    if let (Some(from), Some(before)) = (params.recorded_from, params.recorded_before)
        && from >= before
    {
        return Err(ApiError::bad_field("recorded_before", "must be after recorded_from"));
    }
    if let (Some(from), Some(until)) = (params.effective_from, params.effective_until)
        && from > until
    {
        return Err(ApiError::bad_field("effective_until", "must not be before effective_from"));
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
            effective_from: params.effective_from,
            effective_until: params.effective_until,
            after_position: params.after,
            limit,
        },
    )
    .await?;
    let next_after = entries.last().map_or(params.after, |entry| entry.position);
    Ok(HttpResponse::Ok()
        .json(AuditPage { entries: entries.into_iter().map(AuditEntryView::from).collect(), next_after }))
}
