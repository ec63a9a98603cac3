//! The machinery every command endpoint shares: the caller's context (principal, request and
//! correlation ids, `If-Match`, `Idempotency-Key`), the body read within a size limit and
//! parsed with the failing field's path, and idempotent replay of a POST's first response
//! (claims on `Idempotency-Key`s that outlive neither their request nor their process).

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::convert::Infallible;
use std::time::Duration;

use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use aisc_adapters::access;
use aisc_adapters::event_ids::{ClaimIds, with_claim_ids};
use aisc_domain::command_service::Written;
use aisc_domain::event_store::Position;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::auth::Principal;
use crate::problem::ApiError;
use crate::request_context::RequestId;

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

/// Reads a command's body, refusing more than the configured limit with 413.
pub async fn read_body(request: &HttpRequest, payload: web::Payload) -> Result<web::Bytes, ApiError> {
    read_body_within(payload, crate::limits::RequestLimits::of(request).command_body_bytes).await
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
        let message = without_echoed_values(&inner.to_string());
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

/// serde's message without the value it quotes (`invalid type: string "Chan Tai Man"`,
/// `unknown variant `…``): a refusal is kept with an `Idempotency-Key` and logged, and the value
/// may be a person's name or address, which must not be kept outside the sealed fields.
fn without_echoed_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    for c in message.chars() {
        if c == '"' {
            out.push_str(if quoted { "\"" } else { "\"…" });
            quoted = !quoted;
        } else if !quoted {
            out.push(c);
        }
    }
    match out.strip_prefix("unknown variant `").and_then(|rest| rest.split_once('`')) {
        Some((_, rest)) => format!("unknown variant `…`{rest}"),
        None => out,
    }
}

/// How long a claim of an `Idempotency-Key` lasts unless its request renews it: a retry takes
/// over the claim of a request whose process died, or lost the database, at most this long
/// after the request's last renewal.
pub const CLAIM_LEASE: Duration = Duration::from_secs(5);

/// How often a running request renews its claim.
const CLAIM_RENEWAL: Duration = Duration::from_secs(1);

/// Runs a command at most once per (principal, `Idempotency-Key`): a retry with the same key
/// and the same request gets the first response and writes nothing; the same key with a
/// different request is refused with 422; a retry while the first is still running gets 409
/// with `Retry-After`. Without a key the command simply runs.
///
/// The claim on the key is a lease the running request renews (see [`CLAIM_LEASE`]): once a
/// request stops renewing it (its process died, or the database failed before its outcome was
/// kept) a retry takes the claim over and runs the command again. For commands that append
/// events, use [`run_idempotent_command`], which answers such a retry from the log when the
/// first execution had committed.
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
    run_claimed(pool, context, request, body, command, None).await
}

/// [`run_idempotent`] for a command of the command service, which answers the stream the
/// command is about (its subject) and what it wrote there; `respond` makes the response of
/// that outcome.
///
/// The events of a command run under a key carry ids derived from the key's claim, and the
/// log refuses those of an execution whose claim a retry has taken over. So when the process
/// of the first request died after its events were committed but before its response was
/// kept, the retry that takes the claim over finds the events and answers
/// `respond(subject, written)` as the first request would have, without running the command
/// again; and an execution that commits late (a slow process, or a transaction that outlived
/// its process) cannot add a second set of events.
pub async fn run_idempotent_command<F, Fut, R>(
    pool: &PgPool,
    context: &CommandContext,
    request: &HttpRequest,
    body: &[u8],
    command: F,
    respond: R,
) -> Result<HttpResponse, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(String, Written), ApiError>>,
    R: Fn(String, Written) -> HttpResponse,
{
    let run = || async {
        let (subject, written) = command().await?;
        Ok(respond(subject, written))
    };
    run_claimed(pool, context, request, body, run, Some(&respond)).await
}

async fn run_claimed<F, Fut>(
    pool: &PgPool,
    context: &CommandContext,
    request: &HttpRequest,
    body: &[u8],
    command: F,
    respond: Option<&dyn Fn(String, Written) -> HttpResponse>,
) -> Result<HttpResponse, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<HttpResponse, ApiError>>,
{
    let Some(key) = &context.idempotency_key else { return command().await };
    let request_hash = request_hash(request, body);
    let principal = &context.principal.name;

    let lease = match access::claim_key(pool, principal, key, &request_hash, CLAIM_LEASE, respond.is_some()).await? {
        access::Claim::Run(lease) => {
            if lease.ids.generation > 1 {
                tracing::info!(key = %key, "took over an Idempotency-Key claim whose lease ran out: running the command");
            }
            lease
        }
        access::Claim::Committed(lease, events) => {
            let (Some(respond), Some((subject, written))) = (respond, committed_outcome(&events)) else {
                return Err(ApiError::internal("a claim's events were found for a command that cannot answer them"));
            };
            tracing::info!(key = %key, subject = %subject, "answering a retry from the events of an execution whose response was lost");
            let response = keep(pool, principal, key, &lease, respond(subject, written)).await?;
            return Ok(replayed(response));
        }
        access::Claim::Running { remaining } => return Ok(still_running(key, remaining)),
        access::Claim::Kept(kept) => return Ok(replay(kept)),
        access::Claim::OtherRequest => {
            return Err(ApiError::Unprocessable {
                code: "idempotency_key_reused",
                detail: format!("Idempotency-Key {key:?} was used for a different request; use a new key"),
                errors: vec![],
            });
        }
    };

    let outcome = tokio::select! {
        outcome = with_claim_ids(lease.ids, command()) => outcome,
        never = renew_while_running(pool, principal, key, &lease) => match never {},
    };

    // Outcomes that a retry could change (authorisation, conflicts, outages) are not kept.
    let status = match &outcome {
        Ok(response) => response.status(),
        Err(error) => actix_web::ResponseError::status_code(error),
    };
    let kept = status.is_success() || status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::BAD_REQUEST;
    if kept {
        let response = outcome.unwrap_or_else(|error| error.error_response_owned());
        return keep(pool, principal, key, &lease, response).await;
    }
    let still_ours = access::release_key(pool, principal, key, &lease).await.unwrap_or_else(|error| {
        tracing::warn!(error = %error, key = %key, "an Idempotency-Key claim could not be released; its lease will run out");
        true
    });
    match outcome {
        // The log refused this execution's events: a retry took the claim over.
        Err(ApiError::Internal(detail)) if !still_ours => {
            tracing::warn!(detail = %detail, key = %key, "a retry took this request's Idempotency-Key over");
            Err(superseded(key))
        }
        other => other,
    }
}

/// 409 for an execution whose claim a retry took over: the retry's outcome is the key's.
fn superseded(key: &str) -> ApiError {
    ApiError::Conflict {
        detail: format!("a retry with Idempotency-Key {key:?} took this request over; retry to get its outcome"),
        current_version: None,
    }
}

/// The SHA-256 of the method, path and body: what makes two requests "the same request".
fn request_hash(request: &HttpRequest, body: &[u8]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(request.method().as_str().as_bytes());
    hasher.update(b" ");
    hasher.update(request.path().as_bytes());
    hasher.update(b"\n");
    hasher.update(body);
    hasher.finalize().to_vec()
}

/// Renews the claim every [`CLAIM_RENEWAL`] for as long as it is polled (it never ends: it is
/// dropped when the command ends). A failed renewal is tried again; a claim taken over is left
/// alone, and the log will refuse this execution's events.
async fn renew_while_running(pool: &PgPool, principal: &str, key: &str, lease: &access::Lease) -> Infallible {
    loop {
        tokio::time::sleep(CLAIM_RENEWAL).await;
        match access::renew_lease(pool, principal, key, lease, CLAIM_LEASE).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(key = %key, "a retry took this request's Idempotency-Key over");
                return std::future::pending().await;
            }
            Err(error) => tracing::warn!(error = %error, key = %key, "an Idempotency-Key claim could not be renewed"),
        }
    }
}

/// Keeps `response` as the key's outcome and answers it. When it cannot be kept (the database
/// failed), the response is answered all the same and the claim's lease is ended, so that a
/// retry finds the command's events (if it wrote any) and answers them.
async fn keep(
    pool: &PgPool,
    principal: &str,
    key: &str,
    lease: &access::Lease,
    response: HttpResponse,
) -> Result<HttpResponse, ApiError> {
    let (response, body) = split_body(response).await?;
    let status = i16::try_from(response.status().as_u16()).unwrap_or(500);
    let content_type = header_text(response.headers(), "content-type");
    let headers = kept_headers(response.headers());
    match access::keep_response(pool, principal, key, lease, status, &content_type, headers, &body).await {
        Ok(true) => {}
        // A retry took the claim over. If this command committed, the retry answers its events;
        // if it wrote nothing, the retry's own execution decides the key's outcome.
        Ok(false) if response.status().is_success() => {
            tracing::warn!(key = %key, "a retry took the Idempotency-Key over before its response was kept");
        }
        Ok(false) => return Err(superseded(key)),
        Err(error) => {
            tracing::warn!(error = %error, key = %key, "a response could not be kept; a retry will answer it from the log");
            let _ = access::release_key(pool, principal, key, lease).await;
        }
    }
    Ok(rebuild(response, body))
}

/// What the execution that committed `events` answered: its subject and what it wrote there.
/// The command service makes a decision's event ids in the order the decision lists its
/// events, and every decision lists its subject's events first: the subject is the stream of
/// the lowest id and its version the last one written there. The position is the last event
/// the execution wrote on any stream, as the command service answers it.
fn committed_outcome(events: &[access::ClaimedEvent]) -> Option<(String, Written)> {
    let first = events.first()?;
    let generation = ClaimIds::generation_of(first.event_id);
    let execution: Vec<&access::ClaimedEvent> =
        events.iter().filter(|event| ClaimIds::generation_of(event.event_id) == generation).collect();
    let version = execution
        .iter()
        .filter(|event| event.stream_id == first.stream_id)
        .map(|event| event.stream_version)
        .max()
        .and_then(|v| u64::try_from(v).ok());
    let position = execution.iter().map(|event| event.position).max().and_then(|p| u64::try_from(p).ok());
    Some((first.stream_id.clone(), Written { version, position: position.map(Position) }))
}

/// 409: the first request with the key holds its claim; `Retry-After` says when its lease
/// runs out if it is not renewed.
fn still_running(key: &str, remaining: Duration) -> HttpResponse {
    let error = ApiError::Conflict {
        detail: format!("the first request with Idempotency-Key {key:?} is still running; retry shortly"),
        current_version: None,
    };
    let mut response = actix_web::ResponseError::error_response(&error);
    let seconds = remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

fn replay(kept: access::KeptResponse) -> HttpResponse {
    let access::KeptResponse { status, content_type, headers, body, .. } = kept;
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
    replayed(response.body(body))
}

fn replayed(mut response: HttpResponse) -> HttpResponse {
    response.headers_mut().insert(HeaderName::from_static("idempotent-replayed"), HeaderValue::from_static("true"));
    response
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Contact {
        name: String,
        kind: Kind,
        age: u32,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        Person,
    }

    fn refusal(body: &str) -> String {
        match parse_json::<Contact>(body.as_bytes()) {
            Err(error) => format!("{error:?}"),
            Ok(parsed) => panic!("accepted {parsed:?}"),
        }
    }

    #[test]
    fn a_refused_body_names_the_field_but_never_echoes_the_value() {
        let wrong_type = refusal(r#"{"name": "x", "kind": "person", "age": "Chan Tai Man"}"#);
        assert!(wrong_type.contains("age") && wrong_type.contains("expected u32"), "{wrong_type}");
        assert!(!wrong_type.contains("Chan"), "{wrong_type}");
        let variant = refusal(r#"{"name": "x", "kind": "Chan Tai Man", "age": 3}"#);
        assert!(variant.contains("unknown variant") && !variant.contains("Chan"), "{variant}");
        let string_for_number = without_echoed_values(r#"invalid type: string "Chan Tai Man", expected u32"#);
        assert_eq!(string_for_number, r#"invalid type: string "…", expected u32"#);
    }
}
