//! The batch calendar (§12, §15): applications are open all year, in batches with deadlines;
//! the committee meets per batch. A batch closes at its deadline; its applications are
//! decided only after it closes.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::Facts;
use super::error::DomainError;
use super::streams;
use crate::command_service::StreamDecision;
use crate::event_store::StreamId;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Batch {
    pub deadline: NaiveDate,
    pub committee_date: NaiveDate,
    pub closed: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BatchCalendarState {
    pub batches: BTreeMap<String, Batch>,
}

impl BatchCalendarState {
    /// The earliest open batch whose deadline has not passed on `today` (§15).
    pub fn batch_for(&self, today: NaiveDate) -> Result<(&str, &Batch), DomainError> {
        self.batches
            .iter()
            .filter(|(_, batch)| !batch.closed && batch.deadline >= today)
            .min_by_key(|(id, batch)| (batch.deadline, id.as_str()))
            .map(|(id, batch)| (id.as_str(), batch))
            .ok_or(DomainError::NoOpenBatch { today })
    }

    pub fn get(&self, batch: &str) -> Result<&Batch, DomainError> {
        self.batches.get(batch).ok_or_else(|| DomainError::UnknownBatch { batch: batch.to_string() })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchOpened {
    pub opened_on: NaiveDate,
    pub batch_id: String,
    pub deadline: NaiveDate,
    pub committee_date: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchClosed {
    pub batch_id: String,
    pub closed_on: NaiveDate,
}

crate::event_payloads!(1: BatchClosed);
// Version 1 did not store the day the batch was opened.
crate::business_date_added_in_v2!(BatchOpened: opened_on);
crate::business_dates!(BatchOpened => |e| e.opened_on, BatchClosed => |e| e.closed_on);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchEvent {
    BatchOpened(BatchOpened),
    BatchClosed(BatchClosed),
}

crate::stored_events!(BatchEvent, [BatchOpened, BatchClosed]);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenBatch {
    pub batch_id: String,
    pub deadline: NaiveDate,
    pub committee_date: NaiveDate,
}

impl StreamDecision for OpenBatch {
    type Aggregate = BatchCalendar;
    type Facts = Facts;
    type Error = DomainError;

    fn stream(&self) -> Result<StreamId, DomainError> {
        streams::batches()
    }
    fn decide(&self, state: &BatchCalendarState, facts: &Facts) -> Result<Vec<BatchEvent>, DomainError> {
        let batch_id = &self.batch_id;
        let valid = !batch_id.is_empty()
            && batch_id.len() <= 40
            && batch_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(DomainError::InvalidInput {
                field: "batch_id",
                reason: "letters, digits, - and _, at most 40".into(),
            });
        }
        if state.batches.contains_key(batch_id) {
            return Err(DomainError::BatchExists { batch: batch_id.clone() });
        }
        if self.committee_date <= self.deadline {
            return Err(DomainError::CommitteeBeforeDeadline {
                deadline: self.deadline,
                committee_date: self.committee_date,
            });
        }
        Ok(vec![
            BatchOpened {
                opened_on: facts.today,
                batch_id: batch_id.clone(),
                deadline: self.deadline,
                committee_date: self.committee_date,
            }
            .into(),
        ])
    }
}

/// Closes a batch after its deadline: its applications may then be decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseBatch {
    pub batch_id: String,
}

impl StreamDecision for CloseBatch {
    type Aggregate = BatchCalendar;
    type Facts = Facts;
    type Error = DomainError;

    fn stream(&self) -> Result<StreamId, DomainError> {
        streams::batches()
    }
    fn decide(&self, state: &BatchCalendarState, facts: &Facts) -> Result<Vec<BatchEvent>, DomainError> {
        let batch = state.get(&self.batch_id)?;
        if batch.closed {
            return Err(DomainError::BatchAlreadyClosed { batch: self.batch_id.clone() });
        }
        if facts.today <= batch.deadline {
            return Err(DomainError::DeadlineNotReached {
                batch: self.batch_id.clone(),
                deadline: batch.deadline,
                today: facts.today,
            });
        }
        Ok(vec![BatchClosed { batch_id: self.batch_id.clone(), closed_on: facts.today }.into()])
    }
}

pub fn apply(mut state: BatchCalendarState, event: &BatchEvent) -> BatchCalendarState {
    match event {
        BatchEvent::BatchOpened(e) => {
            state.batches.insert(
                e.batch_id.clone(),
                Batch { deadline: e.deadline, committee_date: e.committee_date, closed: false },
            );
        }
        BatchEvent::BatchClosed(e) => {
            if let Some(batch) = state.batches.get_mut(&e.batch_id) {
                batch.closed = true;
            }
        }
    }
    state
}

pub struct BatchCalendar;

impl crate::command_service::Aggregate for BatchCalendar {
    type State = BatchCalendarState;
    type Event = BatchEvent;
    fn apply(state: BatchCalendarState, event: &BatchEvent) -> BatchCalendarState {
        apply(state, event)
    }
}
