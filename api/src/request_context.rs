//! Per-request context: the request id (`X-Request-Id` accepted or generated, and returned),
//! the authenticated principal (checked first, for every `/api/v1` route), one JSON log line
//! per request, and the request's span (exported when a collector is configured).

use std::future::{Ready, ready};
use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use sqlx::PgPool;
use tracing::Instrument;

use crate::auth::{self, Principal};
use crate::problem::ApiError;

pub const REQUEST_ID_HEADER: &str = "x-request-id";
const TRACEPARENT_HEADER: &str = "traceparent";

/// The id of the current request, as accepted from the caller or generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl FromRequest for RequestId {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(Ok(request.extensions().get::<RequestId>().cloned().unwrap_or_else(|| RequestId(new_request_id()))))
    }
}

fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A caller's id is kept if it is a sane token (printable, at most 128 bytes).
fn accepted_request_id(request: &ServiceRequest) -> Option<String> {
    let value = request.headers().get(REQUEST_ID_HEADER)?.to_str().ok()?.trim();
    (!value.is_empty() && value.len() <= 128 && value.chars().all(|c| c.is_ascii_graphic())).then(|| value.to_string())
}

/// The caller's W3C trace context, continued by the exported request span (never returned).
fn caller_trace(request: &ServiceRequest) -> Option<crate::trace_export::TraceParent> {
    let header = request.headers().get(TRACEPARENT_HEADER)?.to_str().ok()?;
    crate::trace_export::TraceParent::parse(header)
}

/// Middleware: assigns the request id, returns it, and logs the request when it completes.
pub async fn track_request(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let request_id = accepted_request_id(&request).unwrap_or_else(new_request_id);
    request.extensions_mut().insert(RequestId(request_id.clone()));
    let method = request.method().to_string();
    let route = request.match_pattern().unwrap_or_else(|| "unmatched".to_string());
    // Every line logged while the request is served carries its id. The status is recorded
    // when known, for the exported trace (it is not shown in the log lines of the request,
    // all written before it).
    let span = tracing::info_span!(
        target: crate::trace_export::REQUEST_SPAN_TARGET,
        crate::trace_export::REQUEST_SPAN_NAME,
        request_id = %request_id,
        method = %method,
        route = %route,
        status = tracing::field::Empty
    );
    if let Some(caller) = caller_trace(&request) {
        crate::trace_export::continue_trace(&span, caller);
    }
    let answered = next.call(request).instrument(span.clone()).await;
    // An error here is answered by the server from the error itself (the deadline's 503).
    let status = match &answered {
        Ok(response) => response.status().as_u16(),
        Err(error) => error.as_response_error().status_code().as_u16(),
    };
    span.record("status", status);
    let elapsed = started.elapsed();
    crate::metrics::record_request(&method, &route, status, elapsed);
    tracing::info!(
        request_id = %request_id,
        method = %method,
        route = %route,
        status,
        latency_ms = elapsed.as_secs_f64() * 1e3,
        "request"
    );
    let mut response = answered?;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    Ok(response)
}

/// Whether a path needs a bearer token: everything under `/api/v1` but the OpenAPI document
/// and its interactive reference (page and assets), unknown paths included (a caller without
/// a token learns nothing of what exists).
fn needs_token(path: &str) -> bool {
    (path == "/api/v1" || path.starts_with("/api/v1/"))
        && path != crate::openapi::DOCUMENT_PATH
        && !crate::routes::docs::is_reference(path)
}

/// The token of an `Authorization: Bearer <token>` header. The scheme name is matched without
/// regard to case (RFC 7235 §2.1); any other scheme, or no token, is no token.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once([' ', '\t'])?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The principal of the request's bearer token; 401 without a known one.
async fn principal_of(request: &HttpRequest) -> Result<Principal, ApiError> {
    let token = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token)
        .map(str::to_owned);
    let Some(token) = token else { return Err(ApiError::Unauthorized) };
    // The running service keeps verified tokens in memory; without the cache, the database.
    if let Some(tokens) = request.app_data::<web::Data<aisc_adapters::token_cache::TokenCache>>() {
        return auth::authenticate_with(tokens, &token).await?.ok_or(ApiError::Unauthorized);
    }
    let pool = request.app_data::<web::Data<PgPool>>().cloned().ok_or(ApiError::Unauthorized)?;
    auth::authenticate(&pool, &token).await?.ok_or(ApiError::Unauthorized)
}

/// Middleware: authenticates every request that needs a token before anything else about it
/// (its route, parameters, media type or body) is looked at, so a caller without a valid token
/// gets 401 and nothing else. The principal is kept for the handlers.
pub async fn authenticate(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    // The path as the router reads it (percent-decoded), so no spelling of a route escapes.
    if !needs_token(request.match_info().as_str()) {
        return Ok(next.call(request).await?.map_into_left_body());
    }
    match principal_of(request.request()).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            Ok(next.call(request).await?.map_into_left_body())
        }
        Err(error) => {
            let response = actix_web::ResponseError::error_response(&error);
            Ok(request.into_response(response).map_into_right_body())
        }
    }
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(request: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        // Authenticated by the middleware; a route outside it authenticates here.
        if let Some(principal) = request.extensions().get::<Principal>().cloned() {
            return Box::pin(ready(Ok(principal)));
        }
        let request = request.clone();
        Box::pin(async move { principal_of(&request).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_matched_without_regard_to_case() {
        for header in ["Bearer abc", "bearer abc", "BEARER abc", "bEaReR  abc ", "Bearer\tabc"] {
            assert_eq!(bearer_token(header), Some("abc"), "{header:?}");
        }
        for header in ["Basic abc", "Bearer", "Bearer ", "Bearerabc", "abc", ""] {
            assert_eq!(bearer_token(header), None, "{header:?}");
        }
    }

    #[test]
    fn everything_under_the_api_but_its_document_needs_a_token() {
        assert!(needs_token("/api/v1/events"));
        assert!(needs_token("/api/v1/no-such-resource"));
        assert!(needs_token("/api/v1"));
        assert!(!needs_token("/api/v1/openapi.json"));
        assert!(!needs_token("/health/ready"));
        assert!(!needs_token("/metrics"));
        assert!(!needs_token("/api/v10/x"));
    }
}
