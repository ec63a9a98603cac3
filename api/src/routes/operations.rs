//! Operations for auditors and administrators over HTTP: the projections' status and
//! rebuilds, and verification of the hash chains.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use aisc_adapters::PostgresEventStore;
use aisc_domain::event_store::{EventStore, Position, PositionRange};
use aisc_projections::ProjectionRunner;
use serde::Deserialize;
use sqlx::PgPool;
use std::sync::Arc;

use crate::auth::Principal;
use crate::authorization::{Action, require};
use crate::command::{CommandContext, parse_json, read_body, run_idempotent};
use crate::problem::{ApiError, ProblemDocument};

fn runners(pool: &PgPool, store: &PostgresEventStore) -> Vec<ProjectionRunner> {
    let shared: Arc<dyn EventStore> = Arc::new(store.clone());
    aisc_projections::all()
        .into_iter()
        .map(|projection| ProjectionRunner::new(pool.clone(), shared.clone(), projection))
        .collect()
}

/// Where one read model stands.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ProjectionView {
    pub name: &'static str,
    /// The version the running code applies.
    pub version: i32,
    /// The version the stored read model was built with (null: never built).
    pub built_version: Option<i32>,
    pub position: u64,
    /// The log's last position.
    pub head: u64,
    /// Events after the checkpoint.
    pub lag_events: u64,
    pub rebuild_requested: bool,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ProjectionsView {
    pub projections: Vec<ProjectionView>,
}

/// A rebuild requested.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RebuildAccepted {
    /// The read model to rebuild.
    pub projection: String,
    /// Always true: the leading instance rebuilds it (follow it at `GET /api/v1/projections`).
    pub rebuild_requested: bool,
}

/// The outcome of recomputing the hash chains.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct VerificationView {
    pub intact: bool,
    /// Events verified (before the first broken one, if any).
    pub verified: u64,
    /// The first event that does not verify, with the problem found.
    pub first_broken: Option<BrokenEventView>,
}

/// An event that does not verify: the store's report, described here so the domain's port
/// stays free of the API.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct BrokenEventView {
    /// Its position in $all.
    pub position: u64,
    /// Its stream.
    pub stream: String,
    /// Its version in the stream (0-based).
    pub stream_version: u64,
    pub event_id: uuid::Uuid,
    pub problem: TamperingView,
}

/// Why an event failed verification.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub enum TamperingView {
    /// The stored hash is not the hash of the event's content chained to its predecessor.
    HashMismatch,
    /// The stream's versions are not gapless here (an event was removed or renumbered).
    VersionGap {
        /// The version the stream should have had here.
        expected_version: u64,
    },
    /// The stream's head record disagrees with its last event.
    StreamHeadMismatch,
}

impl From<aisc_domain::event_store::BrokenEvent> for BrokenEventView {
    fn from(broken: aisc_domain::event_store::BrokenEvent) -> Self {
        use aisc_domain::event_store::Tampering;
        let problem = match broken.problem {
            Tampering::HashMismatch => TamperingView::HashMismatch,
            Tampering::VersionGap { expected_version } => TamperingView::VersionGap { expected_version },
            Tampering::StreamHeadMismatch => TamperingView::StreamHeadMismatch,
        };
        Self {
            position: broken.position.0,
            stream: broken.stream,
            stream_version: broken.stream_version,
            event_id: broken.event_id,
            problem,
        }
    }
}

/// `GET /api/v1/projections`: position, lag and version of every read model.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "Every read model's status", body = ProjectionsView),
        (status = 401, description = "No or bad token", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 403, description = "The role may not read it", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
#[get("/projections")]
pub async fn projection_status(
    principal: Principal,
    pool: web::Data<PgPool>,
    store: web::Data<PostgresEventStore>,
) -> Result<HttpResponse, ApiError> {
    require(&principal, Action::ReadProjectionStatus)?;
    let mut projections = Vec::new();
    for runner in runners(&pool, &store) {
        let status = runner.status().await?;
        projections.push(ProjectionView {
            name: status.name,
            version: status.version,
            built_version: status.built_version,
            position: status.position,
            head: status.head,
            lag_events: status.lag_events,
            rebuild_requested: status.rebuild_requested,
        });
    }
    Ok(HttpResponse::Ok().json(ProjectionsView { projections }))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RebuildRequest {
    /// Why the read model is rebuilt, for the operations log.
    reason: Option<String>,
}

/// `POST /api/v1/projections/{name}/rebuild`: asks the leading instance to rebuild the read
/// model from the whole log; queries keep being answered meanwhile. 202, with the status.
#[utoipa::path(
    tag = "operations",
    params(
        ("name" = String, Path, description = "The projection, e.g. audit_trail"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request safe"),
    ),
    request_body(content = Option<RebuildRequest>, content_type = "application/json"),
    responses(
        (status = 202, description = "The leading instance will rebuild the read model", body = RebuildAccepted, headers(("Location" = String, description = "The projections' status"))),
        (status = 400, description = "A malformed name or body", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 403, description = "Only administrators may ask for a rebuild", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No projection of that name", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 409, description = "The projection has not run yet, or the same Idempotency-Key is in flight", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 415, description = "A body that is not application/json", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 422, description = "The Idempotency-Key was used for another request", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
#[post("/projections/{name}/rebuild")]
pub async fn rebuild_projection(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    pool: web::Data<PgPool>,
    store: web::Data<PostgresEventStore>,
) -> Result<HttpResponse, ApiError> {
    let context = CommandContext::from_request(&request).await?;
    require(&context.principal, Action::RebuildProjection)?;
    crate::input::declared_json(&request)?;
    let body = read_body(&request, payload).await?;
    crate::input::json_body(&request, &body)?;
    let name = path.into_inner();
    let valid_name = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid_name {
        return Err(ApiError::bad_field("name", "lower-case letters, digits and _, at most 64"));
    }
    run_idempotent(&pool, &context, &request, &body, || async {
        let rebuild: RebuildRequest = if body.is_empty() { RebuildRequest::default() } else { parse_json(&body)? };
        if let Some(reason) = &rebuild.reason {
            crate::input::text("reason", reason)?;
        }
        let runner = runners(&pool, &store)
            .into_iter()
            .find(|runner| runner.name() == name)
            .ok_or_else(|| ApiError::NotFound(format!("no projection is named {name}")))?;
        if !runner.request_rebuild().await? {
            return Err(ApiError::Conflict {
                detail: format!("projection {name} has not run yet; it is built when the service first runs it"),
                current_version: None,
            });
        }
        tracing::info!(projection = %name, actor = %context.principal.name, reason = ?rebuild.reason, request_id = %context.request_id, "rebuild requested");
        Ok(HttpResponse::Accepted()
            .insert_header(("Location", "/api/v1/projections"))
            .json(RebuildAccepted { projection: name.to_string(), rebuild_requested: true }))
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct VerifyParams {
    /// First position to verify (default: the start).
    from: Option<u64>,
    /// Last position to verify (default: the end; then stream heads are checked too).
    to: Option<u64>,
}

/// `GET /api/v1/audit/verification?from=&to=`: recomputes the hash chains over the range.
#[utoipa::path(
    tag = "audit",
    params(VerifyParams),
    responses(
        (status = 200, description = "Whether the chains are intact, and the first broken event", body = VerificationView),
        (status = 400, description = "A malformed range", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 403, description = "The role may not verify", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
#[get("/audit/verification")]
pub async fn verify_log(
    request: HttpRequest,
    principal: Principal,
    store: web::Data<PostgresEventStore>,
) -> Result<HttpResponse, ApiError> {
    require(&principal, Action::VerifyLog)?;
    let params: VerifyParams = super::query(&request)?;
    if let (Some(from), Some(to)) = (params.from, params.to)
        && from > to
    {
        return Err(ApiError::bad_field("to", format!("{to} is before from {from}")));
    }
    let report = store.verify(PositionRange { from: params.from.map(Position), to: params.to.map(Position) }).await?;
    Ok(HttpResponse::Ok().json(VerificationView {
        intact: report.first_broken.is_none(),
        verified: report.verified,
        first_broken: report.first_broken.map(BrokenEventView::from),
    }))
}
