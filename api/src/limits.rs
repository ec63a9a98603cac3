//! Bounds on every request: how long it may take and how large its body may be. A request
//! still running at its deadline (a database that went silent, a partition the sockets have
//! not noticed) is answered 503 with `Retry-After`, and its work is dropped: a command either
//! committed before or did not, and a retry under the same `Idempotency-Key` finds out which.
//! Expensive reads (the KPI dashboard in the past) are bounded per role: a role already running
//! its share is answered 429 with `Retry-After`, so one role's reports cannot slow the others.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};

use crate::auth::{Principal, Role};
use crate::problem::ApiError;
use crate::request_context::RequestId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Every request but bulk work is answered by then.
    pub deadline: Duration,
    /// The deadline of bulk work: usage imports, verifying the log, the KPI dashboard.
    pub bulk_deadline: Duration,
    /// Largest JSON command body.
    pub command_body_bytes: usize,
    /// Largest usage import file.
    pub import_body_bytes: usize,
    /// Expensive reads running at once per role; the next is answered 429.
    pub expensive_reads_per_role: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(5),
            bulk_deadline: Duration::from_secs(300),
            command_body_bytes: 256 * 1024,
            import_body_bytes: 32 * 1024 * 1024,
            expensive_reads_per_role: 2,
        }
    }
}

impl RequestLimits {
    /// The limits the running service was configured with (the defaults outside it).
    pub fn of(request: &actix_web::HttpRequest) -> Self {
        request.app_data::<web::Data<RequestLimits>>().map_or_else(Self::default, |limits| *limits.get_ref())
    }

    /// The deadline of a request to `path`.
    pub fn deadline_for(&self, path: &str) -> Duration {
        if is_bulk(path) { self.bulk_deadline } else { self.deadline }
    }
}

/// Routes whose work grows with the log or the file they are given.
fn is_bulk(path: &str) -> bool {
    matches!(path, "/api/v1/usage-imports" | "/api/v1/audit/verification" | "/api/v1/kpis")
}

/// Middleware: answers 503 with `Retry-After` for a request not finished by its deadline.
/// The answer is given as an error, since the request itself went down with its work; it
/// names the request id so the answer carries it like every other.
pub async fn enforce_deadline(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let deadline = RequestLimits::of(request.request()).deadline_for(request.path());
    let request_id = request.extensions().get::<RequestId>().map(|RequestId(id)| id.clone());
    match tokio::time::timeout(deadline, next.call(request)).await {
        Ok(response) => response,
        Err(_) => {
            crate::metrics::record_deadline_exceeded();
            tracing::warn!(deadline_ms = deadline.as_millis() as u64, "request deadline passed; answered 503");
            Err(ApiError::DeadlineExceeded { deadline, request_id }.into())
        }
    }
}

/// How many expensive reads each role is running; shared by every worker of the service.
#[derive(Debug)]
pub struct ExpensiveReads {
    per_role: usize,
    running: Arc<Mutex<BTreeMap<Role, usize>>>,
}

/// An expensive read under way: its roles' places are given back when it is dropped (answered,
/// failed, or cut off by the deadline).
#[derive(Debug)]
pub struct ExpensiveReadPermit {
    roles: Vec<Role>,
    running: Arc<Mutex<BTreeMap<Role, usize>>>,
}

/// How long a caller refused for its role's share is asked to wait, in seconds.
pub const EXPENSIVE_READ_RETRY_AFTER_SECONDS: u32 = 1;

impl ExpensiveReads {
    pub fn new(per_role: usize) -> Self {
        Self { per_role: per_role.max(1), running: Arc::new(Mutex::new(BTreeMap::new())) }
    }

    /// A place for an expensive read by `principal`, counted against each of its roles, or 429
    /// when one of them already runs its share.
    pub fn try_start(&self, principal: &Principal) -> Result<ExpensiveReadPermit, ApiError> {
        let mut running =
            self.running.lock().map_err(|_| ApiError::internal("the expensive-read counter is poisoned"))?;
        if let Some(full) = principal.roles.iter().find(|role| running.get(role).copied().unwrap_or(0) >= self.per_role)
        {
            return Err(ApiError::TooManyRequests {
                detail: format!(
                    "the role {} already runs {} expensive read(s), its limit; try again shortly",
                    full.as_str(),
                    self.per_role
                ),
                retry_after_seconds: EXPENSIVE_READ_RETRY_AFTER_SECONDS,
            });
        }
        let mut roles = principal.roles.clone();
        roles.sort_unstable();
        roles.dedup();
        for role in &roles {
            *running.entry(*role).or_insert(0) += 1;
        }
        Ok(ExpensiveReadPermit { roles, running: self.running.clone() })
    }
}

impl Drop for ExpensiveReadPermit {
    fn drop(&mut self) {
        // A poisoned lock means a panic elsewhere while counting; the counts stay as they were.
        if let Ok(mut running) = self.running.lock() {
            for role in &self.roles {
                if let Some(count) = running.get_mut(role) {
                    *count = count.saturating_sub(1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expensive_reads_are_bounded_per_role_and_given_back_when_done() {
        use actix_web::ResponseError;
        let reads = ExpensiveReads::new(1);
        let auditor = Principal { name: "a".into(), roles: vec![Role::Auditor] };
        let finance = Principal { name: "f".into(), roles: vec![Role::FinanceOfficer] };
        let both = Principal { name: "b".into(), roles: vec![Role::FinanceOfficer, Role::Auditor] };
        let first = reads.try_start(&auditor).expect("the first read of the role");
        let refused = reads.try_start(&auditor).expect_err("the role's share is taken");
        assert_eq!(refused.status_code(), actix_web::http::StatusCode::TOO_MANY_REQUESTS);
        assert!(reads.try_start(&both).is_err(), "counted against each of its roles");
        let other = reads.try_start(&finance).expect("another role is not affected");
        drop(first);
        drop(other);
        let again = reads.try_start(&both).expect("places given back");
        assert!(reads.try_start(&finance).is_err());
        drop(again);
    }

    #[test]
    fn bulk_work_has_its_own_deadline() {
        let limits = RequestLimits::default();
        assert_eq!(limits.deadline_for("/api/v1/usage-imports"), limits.bulk_deadline);
        assert_eq!(limits.deadline_for("/api/v1/audit/verification"), limits.bulk_deadline);
        assert_eq!(limits.deadline_for("/api/v1/applications"), limits.deadline);
        assert_eq!(limits.deadline_for("/api/v1/usage-imports/x"), limits.deadline);
    }
}
