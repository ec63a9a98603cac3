//! The scheme's commands and aggregate views over HTTP. Bodies are parsed once into the
//! domain's types here (400 with the field for malformed values); the domain's refusals come
//! back as 422 with their stable code.

pub mod application_view;
pub mod applications;
pub mod bodies;
pub mod imports;
pub mod queries;
pub mod setup;

use actix_web::{HttpRequest, HttpResponse, web};
use aisc_adapters::{PostgresEventStore, TimeOrderedEventIds};
use aisc_domain::command_service::{CommandError, CommandMetadata, Decision, Written};
use aisc_domain::event_store::{ActualVersion, StreamId};
use aisc_domain::personal_data::SealError;
use aisc_domain::subsidy::service::SchemeService;
use aisc_domain::subsidy::streams;
use aisc_domain::subsidy::{DomainError, Facts};
use chrono::NaiveDate;
use serde::Serialize;
use sqlx::PgPool;

use crate::authorization::{Action, require};
use crate::command::{CommandContext, read_body, run_idempotent_command};
use crate::problem::{ApiError, FieldProblem};

pub type Scheme = SchemeService<PostgresEventStore, TimeOrderedEventIds>;

/// What a command wrote.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CommandAccepted {
    pub stream_id: String,
    /// The stream's version after the command: the next `If-Match`.
    pub version: Option<u64>,
    /// The `$all` position written, for `after_position` on queries (read-your-writes).
    pub position: Option<u64>,
}

pub fn domain_refusal(error: DomainError) -> ApiError {
    match error {
        DomainError::UnknownApplication { .. } | DomainError::UnknownBatch { .. } => {
            ApiError::NotFound(error.to_string())
        }
        DomainError::InvalidInput { field, ref reason } => ApiError::Unprocessable {
            code: error.code(),
            detail: error.to_string(),
            errors: vec![FieldProblem { field: field.to_string(), message: reason.clone() }],
        },
        other => ApiError::Unprocessable { code: other.code(), detail: other.to_string(), errors: vec![] },
    }
}

pub fn command_failure(error: CommandError<DomainError>, if_match: bool) -> ApiError {
    match error {
        CommandError::Rejected(refusal) => domain_refusal(refusal),
        CommandError::Conflict { actual, .. } => {
            crate::metrics::record_append_conflict();
            let current_version = match actual {
                ActualVersion::Version(version) => Some(version),
                ActualVersion::NoStream => None,
            };
            let detail = error.to_string();
            if if_match {
                ApiError::PreconditionFailed { detail, current_version }
            } else {
                ApiError::Conflict { detail, current_version }
            }
        }
        CommandError::Codec(codec) => ApiError::internal(codec),
        CommandError::Store(store) => store.into(),
        CommandError::PersonalData(SealError::Erased(subject)) => ApiError::Unprocessable {
            code: "personal_data_erased",
            detail: format!(
                "the personal data of this application (data subject {subject}) has been erased; nothing more of it can be recorded"
            ),
            errors: vec![],
        },
        CommandError::PersonalData(unavailable @ SealError::Unavailable(_)) => ApiError::internal(unavailable),
    }
}

/// Runs a decision of the scheme for a command endpoint, on `today` (the service's clock) by
/// the calling principal, against the `If-Match` version if one was sent; answers the stream
/// the command is about and what was written to it.
pub async fn decide<D>(
    scheme: &Scheme,
    decision: &D,
    today: NaiveDate,
    context: &CommandContext,
    meta: &CommandMetadata,
) -> Result<(String, Written), ApiError>
where
    D: Decision<Facts = Facts, Error = DomainError>,
{
    let subject = decision.subject().map_err(domain_refusal)?;
    let facts = Facts::new(today, meta.actor.clone());
    let written = scheme
        .run(decision, &facts, context.if_match, meta)
        .await
        .map_err(|error| command_failure(error, context.if_match.is_some()))?;
    Ok((subject.to_string(), written))
}

/// Runs a command endpoint: authenticates, authorises `action`, reads the bounded JSON body
/// (415 for another media type, 400 for a NUL in it), makes the request idempotent under
/// `Idempotency-Key`, and answers with what was written. `run` checks the path's parameters,
/// then parses the body and checks its bounds (400 naming the field), then decides.
pub async fn command<F, Fut>(
    request: &HttpRequest,
    payload: web::Payload,
    pool: &PgPool,
    action: Action,
    created: bool,
    run: F,
) -> Result<HttpResponse, ApiError>
where
    F: FnOnce(CommandContext, CommandMetadata, web::Bytes) -> Fut,
    Fut: Future<Output = Result<(String, Written), ApiError>>,
{
    let context = CommandContext::from_request(request).await?;
    let role = require(&context.principal, action)?;
    crate::input::declared_json(request)?;
    let body = read_body(request, payload).await?;
    crate::input::json_body(request, &body)?;
    let meta = CommandMetadata {
        actor: context.principal.name.clone(),
        role: role.as_str().to_string(),
        request_id: context.request_id.clone(),
        correlation_id: context.correlation_id.clone(),
        causation_id: None,
    };
    let context_for_run = context.clone();
    let body_for_run = body.clone();
    let respond = |stream_id, written| accepted(created, stream_id, written);
    run_idempotent_command(pool, &context, request, &body, || run(context_for_run, meta, body_for_run), respond).await
}

/// The answer to a command that wrote `written` to its subject `stream_id` (also the answer
/// to a retry whose first execution's response was lost: see [`run_idempotent_command`]).
fn accepted(created: bool, stream_id: String, written: Written) -> HttpResponse {
    let mut response = if created { HttpResponse::Created() } else { HttpResponse::Ok() };
    response.insert_header(("X-Stream-Id", stream_id.clone()));
    if created {
        let application = StreamId::parse(stream_id.as_str()).ok();
        let location = match application.as_ref().and_then(streams::application_id) {
            Some(application_id) => format!("/api/v1/applications/{application_id}"),
            None => "/api/v1/batches".to_string(),
        };
        response.insert_header(("Location", location));
    }
    if let Some(version) = written.version {
        response.insert_header(("ETag", format!("\"{version}\"")));
    }
    response.json(CommandAccepted { stream_id, version: written.version, position: written.position.map(|p| p.0) })
}

/// An aggregate's view with the stream version it was read at.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Versioned<T> {
    /// The stream's version (also the `ETag`, for `If-Match`); null before its first event.
    pub version: Option<u64>,
    pub state: T,
}

/// A JSON view of an aggregate with its version as `ETag`.
pub fn view<T: Serialize>(state: T, version: Option<u64>) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    if let Some(version) = version {
        response.insert_header(("ETag", format!("\"{version}\"")));
    }
    response.json(Versioned { version, state })
}

pub fn configure(config: &mut utoipa_actix_web::service_config::ServiceConfig) {
    setup::configure(config);
    queries::configure(config);
    applications::configure(config);
    imports::configure(config);
}
