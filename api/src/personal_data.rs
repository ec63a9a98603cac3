//! Personal data as staff read it, and its erasure: the sealed fields of an application opened with its data
//! subject's key, or null once the subject is erased. Only the one-application view opens
//! them; lists, exports, the event feed and the audit export carry no plaintext (the feed and
//! the export keep the ciphertext the log's hashes cover).

use aisc_adapters::personal_data::{Erasure, Opened, Vault, VaultError, stream_of_subject, streams_holding_plaintext};
use aisc_domain::command_service::{CommandError, CommandMetadata, EventIds};
use aisc_domain::event_store::EventStore;
use aisc_domain::personal_data::DataSubjectId;
use aisc_domain::subsidy::application::ApplicationState;
use aisc_domain::subsidy::data_subjects::RecordErasure;
use aisc_domain::subsidy::service::SchemeService;
use aisc_domain::subsidy::{DomainError, Facts};
use serde_json::Value;

use crate::problem::ApiError;

/// Whether the reader may see personal fields opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonalFields {
    Opened,
    Withheld,
}

/// `state` as JSON with its personal fields opened (null once erased, or withheld from a
/// reader whose role does not need them), naming its data subject and whether it was erased.
pub async fn opened_application(
    state: &ApplicationState,
    vault: &Vault,
    fields: PersonalFields,
) -> Result<Value, ApiError> {
    let mut json = serde_json::to_value(state).map_err(ApiError::internal)?;
    let mut erased = false;
    if let Some(details) = &state.submission
        && fields == PersonalFields::Withheld
    {
        for (field, _) in details.personal_texts() {
            if let Some(slot) = field_mut(&mut json["submission"], field) {
                *slot = Value::Null;
            }
        }
        // Whether the key is erased is not personal: the reader is told either way.
        erased = erased_key(vault, state).await.map_err(ApiError::internal)?;
    } else if let Some(details) = &state.submission {
        let texts = details.personal_texts();
        let opened = vault.open_all(state.data_subject_id, &texts).await.map_err(ApiError::internal)?;
        for ((field, _), opened) in texts.iter().zip(opened) {
            let value = match opened {
                Opened::Text(text) => Value::String(text),
                Opened::Erased => {
                    erased = true;
                    Value::Null
                }
            };
            if let Some(slot) = field_mut(&mut json["submission"], field) {
                *slot = value;
            }
        }
    }
    if let Some(object) = json.as_object_mut() {
        object.insert("personal_data_erased".into(), Value::Bool(erased));
        object.insert("personal_data_withheld".into(), Value::Bool(fields == PersonalFields::Withheld));
    }
    Ok(json)
}

/// Whether the state's data subject had its key destroyed.
async fn erased_key(vault: &Vault, state: &ApplicationState) -> Result<bool, VaultError> {
    let Some(subject) = state.data_subject_id else { return Ok(false) };
    vault.is_erased(subject.0).await
}

/// The value at a dotted path (`contact.name`) of a JSON object.
fn field_mut<'a>(value: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    path.split('.').try_fold(value, |value, key| value.get_mut(key))
}

/// What [`erase_data_subject`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErasureOutcome {
    /// This call destroyed the subject's key.
    Erased,
    /// The key had already been destroyed (the erasure is recorded now if a crash had kept it
    /// from being recorded then).
    AlreadyErased,
}

#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    #[error("no data subject {0} is known")]
    UnknownSubject(DataSubjectId),
    /// The request itself is refused (its reason), before anything is destroyed.
    #[error("{0}")]
    Refused(DomainError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Command(#[from] CommandError<DomainError>),
    /// The subject's application holds personal fields stored in plaintext before sealing.
    #[error(
        "{stream} holds personal data stored before it was sealed, which destroying data subject {subject}'s key cannot erase; move the log to a new generation first (`aisc privacy reencrypt-log`), then erase"
    )]
    NotSealed { subject: DataSubjectId, stream: String },
}

/// Erases a data subject's personal data: destroys its key first, then records the erasure
/// ([`RecordErasure`]) with the command service. In that order, so that the log never says
/// erased while the key still opens the fields; and a retry after a crash between the two finds
/// the key gone and records the erasure then (recording it twice writes nothing). The request is
/// checked before the key is touched.
pub async fn erase_data_subject<S: EventStore, I: EventIds>(
    vault: &Vault,
    scheme: &SchemeService<S, I>,
    erasure: &RecordErasure,
    facts: &Facts,
    meta: &CommandMetadata,
) -> Result<ErasureOutcome, ErasureError> {
    RecordErasure::check_reason(&erasure.reason).map_err(ErasureError::Refused)?;
    let subject = erasure.data_subject_id;
    // Text stored before sealing is beyond any key: erasing the key would leave it and claim
    // the subject erased.
    let stream = stream_of_subject(vault.pool(), subject).await.map_err(VaultError::from)?;
    if let Some(stream) = stream
        && !streams_holding_plaintext(vault.pool(), std::slice::from_ref(&stream))
            .await
            .map_err(VaultError::from)?
            .is_empty()
    {
        return Err(ErasureError::NotSealed { subject, stream });
    }
    let outcome = match vault.erase(subject.0, &facts.actor, erasure.reason.trim()).await? {
        Erasure::Erased => ErasureOutcome::Erased,
        Erasure::AlreadyErased => ErasureOutcome::AlreadyErased,
        Erasure::Unknown => return Err(ErasureError::UnknownSubject(subject)),
    };
    scheme.run(erasure, facts, None, meta).await?;
    Ok(outcome)
}
