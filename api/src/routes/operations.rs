//! Operations for auditors and administrators over HTTP: the projections' status and
//! rebuilds, and verification of the hash chains.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use aisc_adapters::PostgresEventStore;
use aisc_domain::event_store::{EventStore, Position, PositionRange};
use aisc_projections::ProjectionRunner;
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;
use std::sync::Arc;

use crate::auth::Principal;
use crate::authorization::{Action, require};
use crate::command::{CommandContext, parse_json, read_body, run_idempotent};
use crate::problem::ApiError;

fn runners(pool: &PgPool, store: &PostgresEventStore) -> Vec<ProjectionRunner> {
    let shared: Arc<dyn EventStore> = Arc::new(store.clone());
    aisc_projections::all()
        .into_iter()
        .map(|projection| ProjectionRunner::new(pool.clone(), shared.clone(), projection))
        .collect()
}

/// `GET /api/v1/projections`: position, lag and version of every read model.
#[get("/projections")]
pub async fn projection_status(
    principal: Principal,
    pool: web::Data<PgPool>,
    store: web::Data<PostgresEventStore>,
) -> Result<HttpResponse, ApiError> {
    require(&principal, Action::ReadProjectionStatus)?;
    let mut statuses = Vec::new();
    for runner in runners(&pool, &store) {
        statuses.push(runner.status().await?);
    }
    Ok(HttpResponse::Ok().json(json!({ "projections": statuses })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RebuildRequest {
    /// Why the read model is rebuilt, for the operations log.
    reason: Option<String>,
}

/// `POST /api/v1/projections/{name}/rebuild`: asks the leading instance to rebuild the read
/// model from the whole log; queries keep being answered meanwhile. 202, with the status.
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
    let body = read_body(payload).await?;
    let name = path.into_inner();
    run_idempotent(&pool, &context, &request, &body, || async {
        let rebuild: RebuildRequest = if body.is_empty() { RebuildRequest::default() } else { parse_json(&body)? };
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
            .json(json!({ "projection": name, "rebuild_requested": true })))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyParams {
    from: Option<u64>,
    to: Option<u64>,
}

/// `GET /api/v1/audit/verification?from=&to=`: recomputes the hash chains over the range.
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
    Ok(HttpResponse::Ok().json(json!({
        "intact": report.first_broken.is_none(),
        "verified": report.verified,
        "first_broken": report.first_broken,
    })))
}
