//! Data subjects (PDPO): the record that a subject's personal data was erased. The erasure
//! itself is the destruction of the subject's key outside the domain (crypto-shredding); this
//! stream records who erased it, when and on what basis, so the log says why the subject's
//! sealed fields can no longer be read.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::Facts;
use super::error::DomainError;
use super::streams;
use crate::command_service::StreamDecision;
use crate::event_store::StreamId;
use crate::personal_data::DataSubjectId;

/// The longest reason staff may give for an erasure, in characters.
pub const REASON_MAX_CHARS: usize = 500;

/// Why a subject's personal data was erased.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErasureBasis {
    /// The data subject asked for it.
    DataSubjectRequest,
    /// The period the scheme keeps personal data for has ended.
    RetentionPeriodEnded,
}

impl ErasureBasis {
    pub fn as_str(self) -> &'static str {
        match self {
            ErasureBasis::DataSubjectRequest => "data_subject_request",
            ErasureBasis::RetentionPeriodEnded => "retention_period_ended",
        }
    }

    pub fn parse(text: &str) -> Result<Self, DomainError> {
        match text {
            "data_subject_request" => Ok(ErasureBasis::DataSubjectRequest),
            "retention_period_ended" => Ok(ErasureBasis::RetentionPeriodEnded),
            _ => Err(DomainError::InvalidInput {
                field: "basis",
                reason: "data_subject_request or retention_period_ended".into(),
            }),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DataSubjectState {
    /// The business date the subject's personal data was erased, once it was.
    pub erased_on: Option<NaiveDate>,
}

/// A subject's personal data was erased: its key is destroyed, so every field sealed under it
/// reads as erased from now on. `reason` is staff's text and holds no personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonalDataErased {
    pub data_subject_id: DataSubjectId,
    pub erased_on: NaiveDate,
    pub erased_by: String,
    pub basis: ErasureBasis,
    pub reason: String,
}

crate::event_payloads!(1: PersonalDataErased);
crate::business_dates!(PersonalDataErased => |e| e.erased_on);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSubjectEvent {
    PersonalDataErased(PersonalDataErased),
}

crate::stored_events!(DataSubjectEvent, [PersonalDataErased]);

/// Records that a subject's personal data was erased (after its key was destroyed). Recording
/// it again decides nothing, so a retry after a crash between destroying the key and recording
/// the erasure completes it, and a second request does not write a second event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordErasure {
    pub data_subject_id: DataSubjectId,
    pub basis: ErasureBasis,
    pub reason: String,
}

impl RecordErasure {
    /// The reason, checked: 1 to [`REASON_MAX_CHARS`] characters once trimmed.
    pub fn check_reason(reason: &str) -> Result<(), DomainError> {
        let length = reason.trim().chars().count();
        if length == 0 || length > REASON_MAX_CHARS {
            return Err(DomainError::InvalidInput {
                field: "reason",
                reason: format!("1 to {REASON_MAX_CHARS} characters, with no personal data"),
            });
        }
        Ok(())
    }
}

impl StreamDecision for RecordErasure {
    type Aggregate = DataSubject;
    type Facts = Facts;
    type Error = DomainError;

    fn stream(&self) -> Result<StreamId, DomainError> {
        streams::data_subject(self.data_subject_id)
    }

    fn decide(&self, state: &DataSubjectState, facts: &Facts) -> Result<Vec<DataSubjectEvent>, DomainError> {
        Self::check_reason(&self.reason)?;
        if state.erased_on.is_some() {
            return Ok(Vec::new());
        }
        Ok(vec![
            PersonalDataErased {
                data_subject_id: self.data_subject_id,
                erased_on: facts.today,
                erased_by: facts.actor.clone(),
                basis: self.basis,
                reason: self.reason.trim().to_string(),
            }
            .into(),
        ])
    }
}

pub fn apply(mut state: DataSubjectState, event: &DataSubjectEvent) -> DataSubjectState {
    match event {
        DataSubjectEvent::PersonalDataErased(e) => {
            state.erased_on.get_or_insert(e.erased_on);
        }
    }
    state
}

pub struct DataSubject;

impl crate::command_service::Aggregate for DataSubject {
    type State = DataSubjectState;
    type Event = DataSubjectEvent;
    fn apply(state: DataSubjectState, event: &DataSubjectEvent) -> DataSubjectState {
        apply(state, event)
    }
}
