//! Data subjects (PDPO): erasing one's personal data for good.

use actix_web::{HttpRequest, HttpResponse, post, web};
use aisc_adapters::clock::Clock;
use aisc_adapters::personal_data::Vault;
use aisc_domain::command_service::CommandMetadata;
use aisc_domain::personal_data::DataSubjectId;
use aisc_domain::subsidy::Facts;
use aisc_domain::subsidy::data_subjects::{ErasureBasis, RecordErasure};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::authorization::{Action, require};
use crate::command::{CommandContext, read_body, run_idempotent};
use crate::personal_data::{ErasureError, ErasureOutcome, erase_data_subject};
use crate::problem::{ApiError, ProblemDocument};
use crate::routes::scheme::bodies::{Bounded, parse_body};
use crate::routes::scheme::{Scheme, command_failure, domain_refusal};

/// Why a subject's personal data is erased. `reason` is kept with the erasure for good: it
/// must hold no personal data (a request's reference, not the requester's name).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErasureBody {
    #[schema(example = "Request DSR-2026-014 received by the data protection officer")]
    pub reason: String,
    #[schema(value_type = String, example = "data_subject_request")]
    pub basis: ErasureBasis,
}

impl Bounded for ErasureBody {
    fn check(&self) -> Result<(), ApiError> {
        crate::input::text("reason", &self.reason)
    }
}

/// What an erasure did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErasureAnswer {
    pub data_subject_id: String,
    /// Always true: the subject's personal data can no longer be read.
    pub erased: bool,
    /// True when an earlier request had already erased it (nothing more was written).
    pub already_erased: bool,
}

/// `POST /api/v1/data-subjects/{data_subject_id}/erasure`: destroys the subject's key, so
/// every personal field sealed under it reads as null for good, and records the erasure.
#[utoipa::path(tag = "personal data", params(("data_subject_id" = String, Path, description = "The data subject's UUID, as the application view names it"), ("Idempotency-Key" = Option<String>, Header)), request_body = ErasureBody,
    responses((status = 200, body = ErasureAnswer), (status = 400, body = ProblemDocument), (status = 401, body = ProblemDocument), (status = 403, body = ProblemDocument), (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument), (status = 413, body = ProblemDocument), (status = 415, body = ProblemDocument), (status = 422, body = ProblemDocument), (status = 503, body = ProblemDocument)))]
#[post("/data-subjects/{data_subject_id}/erasure")]
pub async fn erase(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    pool: web::Data<PgPool>,
    scheme: web::Data<Scheme>,
    vault: web::Data<Vault>,
    clock: web::Data<Clock>,
) -> Result<HttpResponse, ApiError> {
    let context = CommandContext::from_request(&request).await?;
    let role = require(&context.principal, Action::ErasePersonalData)?;
    let subject: DataSubjectId = path
        .trim()
        .parse()
        .map_err(|_| ApiError::bad_field("data_subject_id", "a UUID, as the application view names it"))?;
    crate::input::declared_json(&request)?;
    let body = read_body(&request, payload).await?;
    crate::input::json_body(&request, &body)?;
    let meta = CommandMetadata {
        actor: context.principal.name.clone(),
        role: role.as_str().to_string(),
        request_id: context.request_id.clone(),
        correlation_id: context.correlation_id.clone(),
        causation_id: None,
    };
    let facts = Facts::new(clock.today(), meta.actor.clone());
    run_idempotent(&pool, &context, &request, &body, || async {
        let body: ErasureBody = parse_body(&body)?;
        let erasure = RecordErasure { data_subject_id: subject, basis: body.basis, reason: body.reason };
        let outcome = erase_data_subject(&vault, &scheme, &erasure, &facts, &meta).await.map_err(erasure_failure)?;
        Ok(HttpResponse::Ok().json(ErasureAnswer {
            data_subject_id: subject.to_string(),
            erased: true,
            already_erased: outcome == ErasureOutcome::AlreadyErased,
        }))
    })
    .await
}

fn erasure_failure(error: ErasureError) -> ApiError {
    match error {
        ErasureError::UnknownSubject(_) => {
            ApiError::NotFoundWithCode { code: "unknown_data_subject", detail: error.to_string() }
        }
        ErasureError::Refused(refusal) => domain_refusal(refusal),
        ErasureError::NotSealed { .. } => {
            ApiError::Unprocessable { code: "personal_data_not_sealed", detail: error.to_string(), errors: vec![] }
        }
        ErasureError::Vault(vault) => ApiError::internal(vault),
        ErasureError::Command(command) => command_failure(command, false),
    }
}

pub fn configure(config: &mut utoipa_actix_web::service_config::ServiceConfig) {
    config.service(erase);
}
