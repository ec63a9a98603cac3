//! Every stream of the scheme, named in one place.
//!
//! | stream | holds |
//! |---|---|
//! | `application-{id}` | one application, from submission to completion |
//! | `batches` | the batch calendar (§15) |
//! | `budget-{2025-26}` | one funding year (§16, §23) |
//! | `prices-aisc` | Cyberport's service rates (§14) |
//! | `capacity-aisc` | AISC capacity and subsidised allocations (§10) |
//! | `data-subject-{uuid}` | one data subject's erasure (PDPO) |

use super::error::DomainError;
use super::values::FinancialYear;
use crate::event_store::StreamId;
use crate::personal_data::DataSubjectId;

/// The category (the part before the first `-`) of each kind of stream.
pub mod category {
    pub const APPLICATION: &str = "application";
    pub const BATCHES: &str = "batches";
    pub const BUDGET: &str = "budget";
    pub const PRICES: &str = "prices";
    pub const CAPACITY: &str = "capacity";
    /// `data-subject-{uuid}`: the category is only what precedes the first `-`.
    pub const DATA_SUBJECT: &str = "data";
}

const APPLICATION_PREFIX: &str = "application-";
const BUDGET_PREFIX: &str = "budget-";
const DATA_SUBJECT_PREFIX: &str = "data-subject-";

fn named(name: String) -> Result<StreamId, DomainError> {
    StreamId::parse(name).map_err(|error| DomainError::InvalidInput { field: "id", reason: error.to_string() })
}

/// An application id: letters, digits and `-`, at most 64.
pub fn check_application_id(application_id: &str) -> Result<(), DomainError> {
    let valid = !application_id.is_empty()
        && application_id.len() <= 64
        && application_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(DomainError::InvalidInput { field: "application_id", reason: "letters, digits and -, at most 64".into() })
    }
}

pub fn application(application_id: &str) -> Result<StreamId, DomainError> {
    check_application_id(application_id)?;
    named(format!("{APPLICATION_PREFIX}{application_id}"))
}

/// The application id of an application stream.
pub fn application_id(stream: &StreamId) -> Option<&str> {
    stream.as_str().strip_prefix(APPLICATION_PREFIX)
}

pub fn budget(year: FinancialYear) -> Result<StreamId, DomainError> {
    named(format!("{BUDGET_PREFIX}{year}"))
}

/// The funding year of a budget stream.
pub fn budget_year(stream: &StreamId) -> Option<FinancialYear> {
    stream.as_str().strip_prefix(BUDGET_PREFIX).and_then(|year| FinancialYear::parse(year).ok())
}

pub fn batches() -> Result<StreamId, DomainError> {
    named(category::BATCHES.to_string())
}

pub fn prices() -> Result<StreamId, DomainError> {
    named("prices-aisc".to_string())
}

pub fn capacity() -> Result<StreamId, DomainError> {
    named("capacity-aisc".to_string())
}

pub fn data_subject(subject: DataSubjectId) -> Result<StreamId, DomainError> {
    named(format!("{DATA_SUBJECT_PREFIX}{subject}"))
}

/// The data subject of a data subject stream.
pub fn data_subject_id(stream: &StreamId) -> Option<DataSubjectId> {
    stream.as_str().strip_prefix(DATA_SUBJECT_PREFIX).and_then(|id| id.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_and_their_categories() {
        let year = FinancialYear::parse("2025-26").expect("year");
        let subject: DataSubjectId = "6f1c1d0e-8a39-4e52-9f57-0c3b0e7d4a21".parse().expect("uuid");
        let cases = [
            (application("0b7e").expect("application"), category::APPLICATION, "application-0b7e"),
            (budget(year).expect("budget"), category::BUDGET, "budget-2025-26"),
            (batches().expect("batches"), category::BATCHES, "batches"),
            (prices().expect("prices"), category::PRICES, "prices-aisc"),
            (capacity().expect("capacity"), category::CAPACITY, "capacity-aisc"),
            (
                data_subject(subject).expect("data subject"),
                category::DATA_SUBJECT,
                "data-subject-6f1c1d0e-8a39-4e52-9f57-0c3b0e7d4a21",
            ),
        ];
        for (stream, expected_category, name) in cases {
            assert_eq!(stream.as_str(), name);
            assert_eq!(stream.category(), expected_category);
        }
        assert_eq!(application_id(&application("a-1").expect("a")), Some("a-1"));
        assert_eq!(budget_year(&budget(year).expect("b")), Some(year));
        assert!(application("a b").is_err());
        assert!(application("").is_err());
        assert_eq!(data_subject_id(&data_subject(subject).expect("s")), Some(subject));
        assert_eq!(data_subject_id(&capacity().expect("c")), None);
    }
}
