//! Every error as `application/problem+json` (RFC 9457). Bodies never carry SQL, stack traces
//! or panic messages: unexpected failures are logged with their detail and answered with a
//! generic message.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// A field-level problem of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldProblem {
    /// Where in the request: a JSON path such as `resources[0].units`, or a query parameter.
    pub field: String,
    pub message: String,
}

/// The body of every error response (RFC 9457 problem details).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProblemDocument {
    #[serde(rename = "type")]
    pub problem_type: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// Stable code of a domain refusal (422), or of what was not found (some 404s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    /// Field-level problems (400, 422).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldProblem>>,
    /// The aggregate's current version (409, 412).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<Option<u64>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{detail}")]
    BadRequest { detail: String, errors: Vec<FieldProblem> },
    #[error("missing or unknown bearer token")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// A resource not found, with a stable code saying which kind.
    #[error("{detail}")]
    NotFoundWithCode { code: &'static str, detail: String },
    #[error("{detail}")]
    Conflict { detail: String, current_version: Option<u64> },
    #[error("{detail}")]
    PreconditionFailed { detail: String, current_version: Option<u64> },
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// A body in a media type the route does not take (the `Content-Type` header is named).
    #[error("{detail}")]
    UnsupportedMediaType { detail: String },
    /// A refusal of the domain, with its stable code.
    #[error("{detail}")]
    Unprocessable { code: &'static str, detail: String, errors: Vec<FieldProblem> },
    /// The caller's role already runs its share of expensive reads.
    #[error("{detail}")]
    TooManyRequests { detail: String, retry_after_seconds: u32 },
    #[error("the database is unavailable; try again shortly")]
    Unavailable,
    /// The request was not finished by its deadline (its work, if any, was dropped).
    #[error("no answer within the request deadline of {} ms; try again shortly", deadline.as_millis())]
    DeadlineExceeded { deadline: std::time::Duration, request_id: Option<String> },
    #[error("an unexpected error occurred; it has been logged")]
    Internal(String),
}

impl ApiError {
    pub fn bad_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let (field, message) = (field.into(), message.into());
        ApiError::BadRequest { detail: format!("{field}: {message}"), errors: vec![FieldProblem { field, message }] }
    }

    pub fn internal(error: impl std::fmt::Display) -> Self {
        ApiError::Internal(error.to_string())
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "Bad Request",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::NotFound(_) | ApiError::NotFoundWithCode { .. } => "Not Found",
            ApiError::Conflict { .. } => "Conflict",
            ApiError::PreconditionFailed { .. } => "Precondition Failed",
            ApiError::PayloadTooLarge { .. } => "Payload Too Large",
            ApiError::UnsupportedMediaType { .. } => "Unsupported Media Type",
            ApiError::Unprocessable { .. } => "Unprocessable Content",
            ApiError::TooManyRequests { .. } => "Too Many Requests",
            ApiError::Unavailable | ApiError::DeadlineExceeded { .. } => "Service Unavailable",
            ApiError::Internal(_) => "Internal Server Error",
        }
    }

    pub fn document(&self) -> ProblemDocument {
        let mut document = ProblemDocument {
            problem_type: "about:blank",
            title: self.title(),
            status: self.status_code().as_u16(),
            detail: self.to_string(),
            code: None,
            errors: None,
            current_version: None,
        };
        match self {
            ApiError::BadRequest { errors, .. } => document.errors = Some(errors.clone()),
            ApiError::UnsupportedMediaType { detail } => {
                document.errors = Some(vec![FieldProblem { field: "Content-Type".into(), message: detail.clone() }]);
            }
            ApiError::Unprocessable { code, errors, .. } => {
                document.code = Some(code);
                document.errors = (!errors.is_empty()).then(|| errors.clone());
            }
            ApiError::NotFoundWithCode { code, .. } => document.code = Some(code),
            ApiError::Conflict { current_version, .. } | ApiError::PreconditionFailed { current_version, .. } => {
                document.current_version = Some(*current_version);
            }
            _ => {}
        }
        document
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::NotFoundWithCode { .. } => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable | ApiError::DeadlineExceeded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        // Only the service's own failures are errors in the log; a caller's bad input, a
        // refusal or an outage is answered and logged with the request's status.
        if let ApiError::Internal(detail) = self {
            tracing::error!(detail = %detail, "request failed");
        }
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json")));
        match self {
            ApiError::Unavailable => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("2")));
            }
            ApiError::DeadlineExceeded { request_id, .. } => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("2")));
                // Answered without the request (dropped with its work): its id comes along here.
                if let Some(value) = request_id.as_deref().and_then(|id| HeaderValue::from_str(id).ok()) {
                    response.insert_header((crate::request_context::REQUEST_ID_HEADER, value));
                }
            }
            ApiError::TooManyRequests { retry_after_seconds, .. } => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from(*retry_after_seconds)));
            }
            ApiError::Unauthorized => {
                response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            _ => {}
        }
        response.body(serde_json::to_string(&self.document()).unwrap_or_default())
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if aisc_adapters::database::is_unavailable(&error) {
            return ApiError::Unavailable;
        }
        match error {
            // A read model queried before its first build on a new database.
            sqlx::Error::Database(ref database) if database.code().as_deref() == Some("42P01") => {
                tracing::warn!(error = %error, "a read model is not built yet");
                ApiError::Unavailable
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<aisc_domain::event_store::StoreError> for ApiError {
    fn from(error: aisc_domain::event_store::StoreError) -> Self {
        use aisc_domain::event_store::{ActualVersion, StoreError};
        match error {
            StoreError::Unavailable(_) => ApiError::Unavailable,
            StoreError::WrongExpectedVersion { actual, .. } => ApiError::Conflict {
                detail: error.to_string(),
                current_version: match actual {
                    ActualVersion::Version(version) => Some(version),
                    ActualVersion::NoStream => None,
                },
            },
            StoreError::EventIdReused { .. } | StoreError::InvalidAppend(_) => {
                ApiError::Unprocessable { code: "invalid_append", detail: error.to_string(), errors: vec![] }
            }
            StoreError::Failure(detail) => ApiError::Internal(detail),
        }
    }
}

impl From<aisc_projections::ProjectionError> for ApiError {
    fn from(error: aisc_projections::ProjectionError) -> Self {
        match error {
            aisc_projections::ProjectionError::Database(error) => error.into(),
            aisc_projections::ProjectionError::Store(error) => error.into(),
            other => ApiError::internal(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;
    use serde_json::Value;

    fn body_of(error: &ApiError) -> Value {
        let bytes = error.error_response().into_body().try_into_bytes().expect("body");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[test]
    fn internal_details_are_logged_not_sent() {
        let error = ApiError::internal("relation \"events\" does not exist at character 15");
        let body = body_of(&error);
        assert_eq!(body["status"], 500);
        assert!(!body.to_string().contains("relation"), "{body}");
        assert_eq!(error.error_response().headers().get("content-type").expect("ct"), "application/problem+json");
    }

    #[test]
    fn field_problems_and_codes_reach_the_body() {
        let body = body_of(&ApiError::bad_field("resources[0].units", "must be positive"));
        assert_eq!(body["errors"][0]["field"], "resources[0].units");
        let body =
            body_of(&ApiError::Unprocessable { code: "rate_above_cap", detail: "too high".into(), errors: vec![] });
        assert_eq!((body["status"].as_u64(), body["code"].as_str()), (Some(422), Some("rate_above_cap")));
        let unsupported = ApiError::UnsupportedMediaType { detail: "send JSON".into() };
        let body = body_of(&unsupported);
        assert_eq!((body["status"].as_u64(), body["errors"][0]["field"].as_str()), (Some(415), Some("Content-Type")));
        let busy = ApiError::TooManyRequests { detail: "busy".into(), retry_after_seconds: 1 };
        let response = busy.error_response();
        assert_eq!(response.headers().get("retry-after").expect("retry-after"), "1");
        assert_eq!(body_of(&busy)["status"], 429);
        let unavailable = ApiError::Unavailable.error_response();
        assert_eq!(unavailable.headers().get("retry-after").expect("retry-after"), "2");
    }
}
