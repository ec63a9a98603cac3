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
