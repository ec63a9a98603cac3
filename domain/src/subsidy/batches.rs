//! The batch calendar (§12, §15): applications are open all year, in batches with deadlines;
//! the committee meets per batch. A batch closes at its deadline; its applications are
//! decided only after it closes.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::error::DomainError;

/// The stream of the batch calendar.
pub const STREAM: &str = "batches";

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchCommand {
    OpenBatch { batch_id: String, deadline: NaiveDate, committee_date: NaiveDate },
    CloseBatch { batch_id: String, today: NaiveDate },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum BatchEvent {
    BatchOpened { batch_id: String, deadline: NaiveDate, committee_date: NaiveDate },
    BatchClosed { batch_id: String, closed_on: NaiveDate },
}

crate::stored_events!(BatchEvent, version 1, [BatchOpened, BatchClosed]);

pub fn handle(state: &BatchCalendarState, command: BatchCommand) -> Result<Vec<BatchEvent>, DomainError> {
    match command {
        BatchCommand::OpenBatch { batch_id, deadline, committee_date } => {
            let valid = !batch_id.is_empty()
                && batch_id.len() <= 40
                && batch_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid {
                return Err(DomainError::InvalidInput {
                    field: "batch_id",
                    reason: "letters, digits, - and _, at most 40".into(),
                });
            }
            if state.batches.contains_key(&batch_id) {
                return Err(DomainError::BatchExists { batch: batch_id });
            }
            if committee_date <= deadline {
                return Err(DomainError::CommitteeBeforeDeadline { deadline, committee_date });
            }
            Ok(vec![BatchEvent::BatchOpened { batch_id, deadline, committee_date }])
        }
        BatchCommand::CloseBatch { batch_id, today } => {
            let batch = state.get(&batch_id)?;
            if batch.closed {
                return Err(DomainError::BatchAlreadyClosed { batch: batch_id });
            }
            if today <= batch.deadline {
                return Err(DomainError::DeadlineNotReached { batch: batch_id, deadline: batch.deadline, today });
            }
            Ok(vec![BatchEvent::BatchClosed { batch_id, closed_on: today }])
        }
    }
}

pub fn apply(mut state: BatchCalendarState, event: &BatchEvent) -> BatchCalendarState {
    match event {
        BatchEvent::BatchOpened { batch_id, deadline, committee_date } => {
            state.batches.insert(
                batch_id.clone(),
                Batch { deadline: *deadline, committee_date: *committee_date, closed: false },
            );
        }
        BatchEvent::BatchClosed { batch_id, .. } => {
            if let Some(batch) = state.batches.get_mut(batch_id) {
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
