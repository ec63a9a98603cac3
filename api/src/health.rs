//! Liveness and readiness.

use std::time::Duration;

use actix_web::{HttpResponse, get, web};
use serde_json::json;
use sqlx::PgPool;

/// How long readiness waits for the database before calling it down.
const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The process is up and serving.
#[utoipa::path(tag = "operations", security(()), responses((status = 200, description = "Alive")))]
#[get("/health/live")]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "live" }))
}

/// The service can do its work: the database answers and every read model has been built.
#[utoipa::path(
    tag = "operations",
    security(()),
    responses(
        (status = 200, description = "Ready: the database answers and the read models are built"),
        (status = 503, description = "The database is unreachable, or a read model is still being built", body = crate::problem::ProblemDocument, content_type = "application/problem+json"),
    )
)]
#[get("/health/ready")]
pub async fn ready(pool: web::Data<PgPool>) -> HttpResponse {
    let probe = tokio::time::timeout(READY_PROBE_TIMEOUT, async {
        aisc_adapters::database::ping(pool.get_ref()).await?;
        aisc_projections::all_built(pool.get_ref()).await
    })
    .await;
    match probe {
        Ok(Ok(true)) => HttpResponse::Ok().json(json!({ "status": "ready", "database": "up", "read_models": "built" })),
        Ok(Ok(false)) => not_ready("the read models are still being built"),
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "readiness: database unavailable");
            not_ready("the database is not reachable")
        }
        Err(_) => {
            tracing::warn!("readiness: database did not answer in time");
            not_ready("the database is not reachable")
        }
    }
}

fn not_ready(detail: &str) -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .content_type("application/problem+json")
        .insert_header(("Retry-After", "5"))
        .json(json!({
            "type": "about:blank",
            "title": "Service Unavailable",
            "status": 503,
            "detail": detail,
        }))
}
