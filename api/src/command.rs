//! The machinery every command endpoint shares: the caller's context (principal, request and
//! correlation ids, `If-Match`, `Idempotency-Key`), the body read within a size limit and
//! parsed with the failing field's path, and idempotent replay of a POST's first response.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use aisc_adapters::access;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::auth::Principal;
use crate::problem::ApiError;
use crate::request_context::RequestId;

/// Largest command body accepted.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Headers a replayed response carries over from the first one.
const REPLAYED_HEADERS: [&str; 4] = ["etag", "location", "x-stream-id", "content-type"];

/// Who sends a command, and under which conditions.
#[derive(Debug, Clone)]
pub struct CommandContext {
    pub principal: Principal,
    pub request_id: String,
    /// `X-Correlation-Id` if given, else the request id.
    pub correlation_id: String,
    /// The version named by `If-Match` (an ETag of a GET), if any.
    pub if_match: Option<u64>,
    pub idempotency_key: Option<String>,
}

impl CommandContext {
    pub async fn from_request(request: &HttpRequest) -> Result<Self, ApiError> {
        let principal = Principal::extract(request).await?;
        let RequestId(request_id) = RequestId::extract(request).await?;
        let header_text = |name: &str| request.headers().get(name).and_then(|value| value.to_str().ok()).map(str::trim);
        let correlation_id = header_text("x-correlation-id")
            .filter(|id| !id.is_empty() && id.len() <= 128)
            .map_or_else(|| request_id.clone(), str::to_owned);
        let if_match = match header_text("if-match") {
            None => None,
            Some(value) => Some(value.trim_start_matches("W/").trim_matches('"').parse::<u64>().map_err(|_| {
                ApiError::bad_field("If-Match", format!("{value:?} is not a version this service issued as an ETag"))
            })?),
        };
        let idempotency_key = match header_text("idempotency-key") {
            None => None,
            Some(key) if !key.is_empty() && key.len() <= 200 && key.chars().all(|c| c.is_ascii_graphic()) => {
                Some(key.to_owned())
            }
            Some(_) => return Err(ApiError::bad_field("Idempotency-Key", "must be 1 to 200 printable characters")),
        };
        Ok(Self { principal, request_id, correlation_id, if_match, idempotency_key })
    }
}

/// Reads the body, refusing more than [`MAX_BODY_BYTES`] with 413.
pub async fn read_body(payload: web::Payload) -> Result<web::Bytes, ApiError> {
    read_body_within(payload, MAX_BODY_BYTES).await
}

/// Reads the body, refusing more than `limit` bytes with 413.
pub async fn read_body_within(mut payload: web::Payload, limit: usize) -> Result<web::Bytes, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|error| ApiError::bad_field("body", error.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Parses a JSON body; a malformed document, a wrong type, a missing or unknown field is a
/// 400 naming the field's path.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // No body at all reads as an empty object: commands without fields need none.
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let message = inner.to_string();
        let field = if inner.is_syntax() || inner.is_eof() {
            "body".to_string()
        } else if path == "." {
            // Missing and unknown fields are named by serde in backticks.
            message.split('`').nth(1).map_or_else(|| "body".to_string(), str::to_owned)
        } else {
            path
        };
        ApiError::bad_field(field, message)
    })?;
    deserializer.end().map_err(|error| ApiError::bad_field("body", error.to_string()))?;
    Ok(parsed)
}

/// Runs a command at most once per (principal, `Idempotency-Key`): a retry with the same key
/// and the same request gets the first response and writes nothing; the same key with a
/// different request is refused with 422; a retry while the first is still running gets 409.
/// Without a key the command simply runs.
pub async fn run_idempotent<F, Fut>(
    pool: &PgPool,
    context: &CommandContext,
    request: &HttpRequest,
    body: &[u8],
    command: F,
) -> Result<HttpResponse, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<HttpResponse, ApiError>>,
{
    let Some(key) = &context.idempotency_key else { return command().await };
    let mut hasher = Sha256::new();
    hasher.update(request.method().as_str().as_bytes());
    hasher.update(b" ");
    hasher.update(request.path().as_bytes());
    hasher.update(b"\n");
    hasher.update(body);
    let request_hash = hasher.finalize().to_vec();
    let principal = &context.principal.name;

    if !access::claim_key(pool, principal, key, &request_hash).await? {
        return replay(pool, principal, key, &request_hash).await;
    }

    let outcome = command().await;
    let response = match outcome {
        Ok(response) => response,
        Err(error) => error.error_response_owned(),
    };
    // Outcomes that a retry could change (authorisation, conflicts, outages) are not kept.
    let status = response.status();
    let keep = status.is_success() || status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::BAD_REQUEST;
    if keep {
        let (response, body) = split_body(response).await?;
        let status = i16::try_from(response.status().as_u16()).unwrap_or(500);
        let content_type = header_text(response.headers(), "content-type");
        access::keep_response(pool, principal, key, status, &content_type, kept_headers(response.headers()), &body)
            .await?;
        Ok(rebuild(response, body))
    } else {
        access::release_key(pool, principal, key).await?;
        Ok(response)
    }
}

async fn replay(pool: &PgPool, principal: &str, key: &str, request_hash: &[u8]) -> Result<HttpResponse, ApiError> {
    let stored = access::kept_response(pool, principal, key).await?;
    let Some(access::KeptResponse { request_hash: stored_hash, status, content_type, headers, body }) = stored else {
        return Err(ApiError::Conflict {
            detail: "the first request with this Idempotency-Key was abandoned; retry".into(),
            current_version: None,
        });
    };
    if stored_hash != request_hash {
        return Err(ApiError::Unprocessable {
            code: "idempotency_key_reused",
            detail: format!("Idempotency-Key {key:?} was used for a different request; use a new key"),
            errors: vec![],
        });
    }
    if status == 0 {
        return Err(ApiError::Conflict {
            detail: format!("the first request with Idempotency-Key {key:?} is still running; retry shortly"),
            current_version: None,
        });
    }
    let status =
        StatusCode::from_u16(u16::try_from(status).unwrap_or(500)).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    if let Some(headers) = headers.as_object() {
        for (name, value) in headers {
            if let (Ok(name), Some(value)) = (HeaderName::try_from(name.as_str()), value.as_str())
                && let Ok(value) = HeaderValue::from_str(value)
            {
                response.insert_header((name, value));
            }
        }
    }
    if !content_type.is_empty() {
        response.insert_header((header::CONTENT_TYPE, content_type));
    }
    response.insert_header(("Idempotent-Replayed", "true"));
    Ok(response.body(body))
}

fn header_text(headers: &HeaderMap, name: &str) -> String {
    headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_default().to_string()
}

fn kept_headers(headers: &HeaderMap) -> serde_json::Value {
    let kept: serde_json::Map<String, serde_json::Value> = REPLAYED_HEADERS
        .iter()
        .filter(|name| **name != "content-type")
        .filter_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()).map(|v| (name.to_string(), v.into())))
        .collect();
    serde_json::Value::Object(kept)
}

async fn split_body(response: HttpResponse) -> Result<(HttpResponse<()>, web::Bytes), ApiError> {
    let (response, body) = response.into_parts();
    let bytes = actix_web::body::to_bytes(body).await.map_err(|_| ApiError::internal("unreadable response body"))?;
    Ok((response, bytes))
}

fn rebuild(response: HttpResponse<()>, body: web::Bytes) -> HttpResponse {
    response.set_body(body).map_into_boxed_body()
}

trait OwnedErrorResponse {
    fn error_response_owned(self) -> HttpResponse;
}

impl OwnedErrorResponse for ApiError {
    fn error_response_owned(self) -> HttpResponse {
        actix_web::ResponseError::error_response(&self)
    }
}
