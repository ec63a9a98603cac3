//! Bounds on every request: how long it may take and how large its body may be. A request
//! still running at its deadline (a database that went silent, a partition the sockets have
//! not noticed) is answered 503 with `Retry-After`, and its work is dropped: a command either
//! committed before or did not, and a retry under the same `Idempotency-Key` finds out which.

use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};

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
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(5),
            bulk_deadline: Duration::from_secs(300),
            command_body_bytes: 256 * 1024,
            import_body_bytes: 32 * 1024 * 1024,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_work_has_its_own_deadline() {
        let limits = RequestLimits::default();
        assert_eq!(limits.deadline_for("/api/v1/usage-imports"), limits.bulk_deadline);
        assert_eq!(limits.deadline_for("/api/v1/audit/verification"), limits.bulk_deadline);
        assert_eq!(limits.deadline_for("/api/v1/applications"), limits.deadline);
        assert_eq!(limits.deadline_for("/api/v1/usage-imports/x"), limits.deadline);
    }
}
