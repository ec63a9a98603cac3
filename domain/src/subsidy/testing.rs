//! Given / when / then for the scheme's decisions: fold the given events into the state a
//! decision reads, decide with the outside facts, and compare the events (per stream) or the
//! refusal code.

use std::fmt::Debug;

use chrono::NaiveDate;

use super::Facts;
use super::application::{CommitteeMeeting, Contact, RequestedResource, Scores, Submission};
use super::batches::{self, BatchCalendarState, BatchClosed, BatchEvent, BatchOpened};
use super::error::DomainError;
use super::values::{ApplicantCategory, Money, Period, RateBps, ServiceType};
use crate::command_service::{Aggregate, Decision, StreamDecision};
use crate::event_store::StreamId;

/// Folds `events` into a state with `apply`: the "given" of a test.
pub fn given<S: Default, E>(events: &[E], apply: fn(S, &E) -> S) -> S {
    events.iter().fold(S::default(), apply)
}

/// The outside facts a decision is taken with: the business date and who acts.
pub fn facts(today: NaiveDate, actor: &str) -> Facts {
    Facts::new(today, actor)
}

/// A one-stream decision on `state`: its events, for its one stream (the "when").
pub fn when<D>(
    decision: &D,
    state: &<D::Aggregate as Aggregate>::State,
    facts: &Facts,
) -> Result<Vec<<D::Aggregate as Aggregate>::Event>, DomainError>
where
    D: StreamDecision<Facts = Facts, Error = DomainError>,
{
    StreamDecision::decide(decision, state, facts)
}

/// Any decision on `state`: its events, each with the stream it is written to (the "when"
/// of a decision over several streams).
pub fn when_decided<D>(decision: &D, state: &D::State, facts: &Facts) -> Result<Vec<(StreamId, D::Event)>, DomainError>
where
    D: Decision<Facts = Facts, Error = DomainError>,
{
    Decision::decide(decision, state, facts)
}

/// The decision produced exactly these events (bare, or with their streams).
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

/// The decision was refused with this code, and its message (what staff read) says each of
/// `phrases`: the dates, amounts or names they need to act on it.
#[track_caller]
pub fn then_refused_saying<T: Debug>(result: Result<T, DomainError>, code: &str, phrases: &[&str]) -> DomainError {
    let error = then_refused(result, code);
    let message = error.to_string();
    for phrase in phrases {
        assert!(message.contains(phrase), "the {code} message does not say {phrase:?}: {message}");
    }
    error
}

/// The events of `written` that go to `stream`, in order.
pub fn written_to<E: Clone>(written: &[(StreamId, E)], stream: &StreamId) -> Vec<E> {
    written.iter().filter(|(to, _)| to == stream).map(|(_, event)| event.clone()).collect()
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

/// Batch 2025-q2 opened on 1 April 2025: deadline 31 May 2025, committee on 15 June.
pub fn q2_opened() -> BatchEvent {
    BatchOpened {
        opened_on: day(2025, 4, 1),
        batch_id: "2025-q2".into(),
        deadline: day(2025, 5, 31),
        committee_date: day(2025, 6, 15),
    }
    .into()
}

/// Batch 2025-q3 opened on 1 April 2025: deadline 31 August 2025, committee on 15 September.
pub fn q3_opened() -> BatchEvent {
    BatchOpened {
        opened_on: day(2025, 4, 1),
        batch_id: "2025-q3".into(),
        deadline: day(2025, 8, 31),
        committee_date: day(2025, 9, 15),
    }
    .into()
}

/// Batch 2025-q2 closed after its deadline.
pub fn q2_closed() -> BatchEvent {
    BatchClosed { batch_id: "2025-q2".into(), closed_on: day(2025, 6, 1) }.into()
}

/// The calendar with batch 2025-q2 open.
pub fn open_calendar() -> BatchCalendarState {
    given(&[q2_opened()], batches::apply)
}

/// The calendar with batch 2025-q2 closed: its applications may be decided.
pub fn closed_calendar() -> BatchCalendarState {
    given(&[q2_opened(), q2_closed()], batches::apply)
}

pub fn scores() -> Scores {
    Scores { a_meets_hong_kong_needs: 8, b_requirement_reasonable: 7, c_feasibility_and_outcome: 9, d_capability: 8 }
}

/// A quorate meeting, member-d recused; who records it is the acting principal.
pub fn meeting() -> CommitteeMeeting {
    CommitteeMeeting {
        meeting_reference: "AISC-COM-2025-03".into(),
        decided_on: day(2025, 6, 15),
        members_present: vec!["member-a".into(), "member-b".into(), "member-c".into()],
        members_recused: vec!["member-d".into()],
    }
}

/// The secretariat recording a committee decision on the meeting's day.
pub fn secretariat() -> Facts {
    facts(day(2025, 6, 15), "secretariat-1")
}
