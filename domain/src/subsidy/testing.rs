use std::fmt::Debug;

use chrono::NaiveDate;

use super::application::{Contact, Meeting, RequestedResource, Scores, Submission};
use super::batches::Batch;
use super::error::DomainError;
use super::values::{ApplicantCategory, Money, Period, RateBps, ServiceType};

/// Folds `events` into a state with `apply`: the "given" of a test.
pub fn given<S: Default, E>(events: &[E], apply: fn(S, &E) -> S) -> S {
    events.iter().fold(S::default(), apply)
}

/// The decision produced exactly these events.
#[track_caller]
pub fn then_events<E: Debug + PartialEq>(result: Result<Vec<E>, DomainError>, expected: &[E]) {
    match result {
        Ok(events) => assert_eq!(events, expected),
        Err(error) => panic!("expected events, got the refusal {:?}: {error}", error.code()),
    }
}

/// The decision was refused with this code.
#[track_caller]
pub fn then_refused<T: Debug>(result: Result<T, DomainError>, code: &str) -> DomainError {
    match result {
        Ok(value) => panic!("expected the refusal {code}, got {value:?}"),
        Err(error) => {
            assert_eq!(error.code(), code, "refused, but for another reason: {error}");
            assert!(!error.to_string().is_empty());
            error
        }
    }
}

pub fn day(year: i32, month: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, day).expect("a valid date")
}

pub fn period(text: &str) -> Period {
    Period::parse(text).expect("a valid period")
}

pub fn gpu() -> ServiceType {
    ServiceType::parse("gpu_node_hour_h800").expect("service type")
}

pub fn rate(bps: u32) -> RateBps {
    RateBps::new(bps).expect("rate")
}

pub fn hkd(dollars: i64) -> Money {
    Money::from_cents(dollars * 100)
}

pub fn university_submission() -> Submission {
    Submission {
        organisation: "The University of Hong Kong".into(),
        category: ApplicantCategory::LocalInstitution,
        sub_type: "ugc_funded_university".into(),
        project_title: "Cantonese speech foundation model".into(),
        project_summary: "Pre-training a speech model for Cantonese public services.".into(),
        develops_ai_models: true,
        requested_resources: vec![RequestedResource {
            service_type: gpu(),
            first_period: period("2025-07"),
            last_period: period("2025-12"),
            units_per_month: 1_000,
        }],
        requested_rate: rate(7_000),
        team_size: 12,
        talents: 8,
        mainland_or_overseas_team: false,
        other_government_funding: false,
        undertakings: None,
        contact: Contact { name: "Dr Chan".into(), email: "chan@hku.hk".into() },
    }
}

pub fn closed_batch() -> Batch {
    Batch { deadline: day(2025, 5, 31), committee_date: day(2025, 6, 15), closed: true }
}

pub fn open_batch() -> Batch {
    Batch { closed: false, ..closed_batch() }
}

pub fn scores() -> Scores {
    Scores { a_meets_hong_kong_needs: 8, b_requirement_reasonable: 7, c_feasibility_and_outcome: 9, d_capability: 8 }
}

pub fn meeting(recorded_by: &str) -> Meeting {
    Meeting {
        recorded_by: recorded_by.into(),
        meeting_reference: "AISC-COM-2025-03".into(),
        decided_on: day(2025, 6, 15),
        members_present: vec!["member-a".into(), "member-b".into(), "member-c".into()],
        members_recused: vec!["member-d".into()],
    }
}
