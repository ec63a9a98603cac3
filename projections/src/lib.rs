//! The query side: read models built from `$all` by projections, and the runner that keeps
//! each one up to date (checkpointed, one instance at a time, rebuilt without downtime).

pub mod applications;
pub mod audit_trail;
pub mod kpi;
pub mod projection;
pub mod runner;

pub use projection::{Projection, ProjectionError, TableSpec};
pub use runner::{ProjectionRunner, ProjectionStatus};

use std::sync::Arc;

/// Every projection the service runs.
pub fn all() -> Vec<Arc<dyn Projection>> {
    vec![Arc::new(audit_trail::AuditTrail), Arc::new(applications::Applications)]
}

/// Whether every read model has been built at its current version (until then, its queries
/// have nothing to answer from).
pub async fn all_built(pool: &sqlx::PgPool) -> Result<bool, ProjectionError> {
    let projections = all();
    let names: Vec<&str> = projections.iter().map(|projection| projection.name()).collect();
    let versions: Vec<i32> = projections.iter().map(|projection| projection.version()).collect();
    let built: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM projection_checkpoints c \
         JOIN unnest($1::text[], $2::int[]) AS p(name, version) ON c.name = p.name AND c.version = p.version",
    )
    .bind(&names)
    .bind(&versions)
    .fetch_one(pool)
    .await?;
    Ok(usize::try_from(built).unwrap_or_default() == projections.len())
}
