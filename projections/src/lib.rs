//! The query side: read models built from `$all` by projections, and the runner that keeps
//! each one up to date (checkpointed, one instance at a time, rebuilt without downtime).

pub mod applications;
pub mod audit_trail;
mod copy_rows;
pub mod health;
pub mod kpi;
pub mod projection;
mod replay;
pub mod runner;

pub use projection::{
    BulkLoad, CopyField, CopyRows, CopyTarget, Interest, Projection, ProjectionError, ReadModelTables,
};
pub use runner::{ProjectionRunner, ProjectionStatus};

use std::sync::Arc;

/// Every projection the service runs.
pub fn all() -> Vec<Arc<dyn Projection>> {
    vec![Arc::new(audit_trail::AuditTrail), Arc::new(applications::Applications), Arc::new(kpi::Kpi)]
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

#[cfg(test)]
mod tests {
    use aisc_domain::subsidy::events::SchemeEvent;

    use super::*;

    #[test]
    fn every_projection_declares_every_event_type_of_the_domain() {
        let mut undeclared = Vec::new();
        for projection in all() {
            for event_type in SchemeEvent::event_types() {
                if projection.interest(event_type).is_none() {
                    undeclared.push(format!("{} does not declare {event_type}", projection.name()));
                }
            }
        }
        assert!(
            undeclared.is_empty(),
            "declare each event type handled or ignored in the projection's `interest`: {undeclared:#?}"
        );
    }

    #[test]
    fn the_applications_read_model_handles_what_it_shows_and_ignores_the_price_schedule() {
        let applications = applications::Applications;
        for handled in ["ApplicationSubmitted", "UsageCharged", "BatchOpened", "SubsidyCommitted", "CapacityAllocated"]
        {
            assert!(applications.handles(handled), "{handled}");
        }
        assert_eq!(applications.interest("ServiceRateSet"), Some(Interest::Ignores));
        assert!(!applications.handles("ServiceRateSet"));
        assert_eq!(applications.interest("SomethingElse"), None, "a type outside the domain is not declared");
        assert!(audit_trail::AuditTrail.handles("SomethingElse"), "the audit trail records every event");
    }
}
