//! Data access requests (PDPO DPP6): everything the scheme holds about one data subject, opened
//! with its key, each value with where it came from in the log (stream, version, position,
//! event), so that the answer to the subject can be checked against the log itself.
//! Administrators only: the answer is personal data in plaintext.

use actix_web::{HttpResponse, get, web};
use aisc_adapters::personal_data::{Opened, Vault, VaultError, key_record, personal_events_of};
use aisc_domain::codec::{BusinessDate, CodecError, EventCodec, StoredContext};
use aisc_domain::personal_data::{DataSubjectId, PersonalText};
use aisc_domain::subsidy::application::ApplicationEvent;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::Principal;
use crate::authorization::{Action, require};
use crate::problem::{ApiError, ProblemDocument};

/// One personal field of one event, opened.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PersonalDataItem {
    /// The stream the event belongs to (`application-{id}`).
    pub stream: String,
    /// The event's version in its stream (from 0).
    pub stream_version: u64,
    /// The event's position in `$all`.
    pub position: u64,
    pub event_id: Uuid,
    pub event_type: String,
    /// When the event was recorded (the log's clock).
    pub recorded_at: DateTime<Utc>,
    /// The event's business date (YYYY-MM-DD).
    pub effective_on: NaiveDate,
    /// The field's name, as bound into its seal: `project_summary`, `contact.name`,
    /// `contact.email`, `undertakings.contribution`, `summary` or `comments`.
    pub field: String,
    /// The plaintext; null once the subject is erased.
    pub value: Option<String>,
    /// True once the subject's key is destroyed: the value can never be read again.
    pub erased: bool,
    /// False for a field stored in plaintext before personal data was sealed: no key covers
    /// it, and erasure cannot reach it until the log moves to a new generation.
    pub sealed: bool,
}

/// The state of a data subject's key.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SubjectKeyState {
    /// `held`, or `erased` once destroyed.
    pub state: String,
    pub created_at: DateTime<Utc>,
    pub erased_at: Option<DateTime<Utc>>,
    /// Who erased it.
    pub erased_by: Option<String>,
    /// Why it was erased.
    pub reason: Option<String>,
}

/// Everything held about a data subject.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SubjectPersonalData {
    pub data_subject_id: Uuid,
    /// The application whose subject it is.
    pub application_id: Option<String>,
    /// The applicant organisation, as last submitted or amended (not personal: context).
    pub organisation: Option<String>,
    /// The project's title, as last submitted or amended (not personal: context).
    pub project_title: Option<String>,
    pub key: SubjectKeyState,
    /// Every personal field of every event naming the subject, in the log's order.
    pub items: Vec<PersonalDataItem>,
}

#[derive(Debug, thiserror::Error)]
pub enum PersonalDataRequestError {
    #[error("cannot read the log or the keys: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot read event {event_id}: {error}")]
    Decode { event_id: Uuid, error: CodecError },
    #[error(transparent)]
    Vault(#[from] VaultError),
}

impl From<PersonalDataRequestError> for ApiError {
    fn from(error: PersonalDataRequestError) -> Self {
        match error {
            PersonalDataRequestError::Database(error)
            | PersonalDataRequestError::Vault(VaultError::Database(error)) => ApiError::from(error),
            other => ApiError::internal(other),
        }
    }
}

/// Everything held about `subject`, opened with the vault; `None` when the subject is unknown
/// (no key was ever made for it and no event names it).
pub async fn personal_data_of(
    pool: &PgPool,
    vault: &Vault,
    subject: DataSubjectId,
) -> Result<Option<SubjectPersonalData>, PersonalDataRequestError> {
    let key = key_record(pool, subject).await?;
    let rows = personal_events_of(pool, subject).await?;
    let Some((held, created_at, erased_at, erased_by, reason)) = key else {
        if rows.is_empty() {
            return Ok(None);
        }
        // Sealed fields without their key: the vault says so (unknown subject).
        return Err(VaultError::UnknownSubject(subject.0).into());
    };

    let mut answer = SubjectPersonalData {
        data_subject_id: subject.0,
        application_id: None,
        organisation: None,
        project_title: None,
        key: SubjectKeyState {
            state: if held { "held" } else { "erased" }.to_string(),
            created_at,
            erased_at,
            erased_by,
            reason,
        },
        items: Vec::new(),
    };
    for (position, stream, stream_version, event_id, event_type, schema_version, data, recorded_at) in rows {
        let decode_error = |error| PersonalDataRequestError::Decode { event_id, error };
        let version = u32::try_from(schema_version).map_err(|_| {
            decode_error(CodecError {
                action: "decode",
                event_type: event_type.clone(),
                reason: format!("schema version {schema_version}"),
            })
        })?;
        let mut event = ApplicationEvent::from_stored(&event_type, version, &data, StoredContext::new(recorded_at))
            .map_err(decode_error)?;
        let effective_on = event.effective_on();
        match &event {
            ApplicationEvent::ApplicationSubmitted(submitted) => {
                answer.application_id = Some(submitted.application_id.clone());
                answer.organisation = Some(submitted.details.organisation.clone());
                answer.project_title = Some(submitted.details.project_title.clone());
            }
            ApplicationEvent::ApplicationAmended(amended) => {
                answer.organisation = Some(amended.details.organisation.clone());
                answer.project_title = Some(amended.details.project_title.clone());
            }
            _ => {}
        }
        if answer.application_id.is_none() {
            answer.application_id = stream.strip_prefix("application-").map(str::to_string);
        }
        // Plaintext of before sealing is handed to the subject as unsealed text, which opens as itself.
        let sealed = !event.unseal_legacy_for(subject);
        let fields: Vec<(&'static str, PersonalText)> = event
            .personal_fields()
            .into_iter()
            .filter(|field| field.subject == subject)
            .map(|field| (field.field, field.text.clone()))
            .collect();
        let texts: Vec<(&str, &PersonalText)> = fields.iter().map(|(field, text)| (*field, text)).collect();
        let opened = vault.open_all(Some(subject), &texts).await?;
        for ((field, _), opened) in fields.iter().zip(opened) {
            let (value, erased) = match opened {
                Opened::Text(text) => (Some(text), false),
                Opened::Erased => (None, true),
            };
            answer.items.push(PersonalDataItem {
                stream: stream.clone(),
                stream_version: u64::try_from(stream_version).unwrap_or_default(),
                position: u64::try_from(position).unwrap_or_default(),
                event_id,
                event_type: event_type.clone(),
                recorded_at,
                effective_on,
                field: (*field).to_string(),
                value,
                erased,
                sealed,
            });
        }
    }
    Ok(Some(answer))
}

/// `GET /api/v1/data-subjects/{data_subject_id}/personal-data`: a data access request (PDPO
/// DPP6), answered with every personal field held about the subject, in plaintext, with where
/// each came from. Administrators only.
#[utoipa::path(tag = "personal data", params(("data_subject_id" = Uuid, Path, description = "The data subject (the application view names it)")),
    responses((status = 200, description = "Everything held about the subject; erased fields are null with `erased: true`", body = SubjectPersonalData), (status = 400, body = ProblemDocument), (status = 401, body = ProblemDocument), (status = 403, body = ProblemDocument), (status = 404, description = "No such data subject", body = ProblemDocument), (status = 503, body = ProblemDocument)))]
#[get("/data-subjects/{data_subject_id}/personal-data")]
pub async fn subject_personal_data(
    path: web::Path<String>,
    principal: Principal,
    pool: web::Data<PgPool>,
    vault: web::Data<Vault>,
) -> Result<HttpResponse, ApiError> {
    require(&principal, Action::AnswerDataAccessRequest)?;
    let subject: DataSubjectId =
        path.into_inner().parse().map_err(|_| ApiError::bad_field("data_subject_id", "not a UUID"))?;
    let answer = personal_data_of(&pool, &vault, subject)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no data subject {subject}")))?;
    Ok(HttpResponse::Ok().insert_header(("Cache-Control", "no-store")).json(answer))
}
