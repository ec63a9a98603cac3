//! Given / when / then: every rule and lifecycle transition of the scheme's decisions. Given
//! events folded into the state a decision reads; when the decision is taken with the outside
//! facts; then its events (for decisions over several streams, each with its stream) or its
//! refusal code.

use std::collections::{BTreeMap, BTreeSet};

use super::application::{
    self as app, AgreementSigned, AmendApplication, ApplicationAmended, ApplicationApproved, ApplicationCompleted,
    ApplicationDeferred, ApplicationEvent as E, ApplicationRejected, ApplicationState, ApplicationSubmitted,
    ApplicationTerminated, ApplicationWithdrawn, ApprovalState, ApproveApplication, ApprovedTerms, AssessmentRecorded,
    ChargeUsage, CheckEligibility, CloseProject, CommitteeRecord, DeferApplication, DisbursementReversed,
    EligibilityConfirmed, Kpis, ProgressReportReviewed, ProgressReportSubmitted, RecordAssessment, RejectApplication,
    ReportState, Reservation, ReverseDisbursement, ReviewProgressReport, RuledIneligible, SignAgreement, Status,
    Submission, SubmitApplication, SubmitProgressReport, Undertakings, UsageCharged, WithdrawApplication,
};
use super::batches::{self, BatchCalendarState, BatchClosed, BatchEvent, BatchOpened, CloseBatch, OpenBatch};
use super::capacity::{
    self, Allocation, CapacityAllocated, CapacityDeclared, CapacityEvent, CapacityRedeployed, CapacityReleased,
    CapacityState, DeclareCapacity, RedeployCapacity,
};
use super::events::SchemeEvent;
use super::funding::{
    self, BudgetLine, FundingEvent, FundingReceived, FundingYearState, RecordFundingReceived, RedirectUnusedSubsidy,
    SubsidyCommitted, SubsidyDisbursed, SubsidyDisbursementReversed, SubsidyReleased, UnusedSubsidyRedirected,
};
use super::prices::{self, PriceEvent, PriceScheduleState, ServiceRateSet, SetServiceRate};
use super::streams;
use super::testing::*;
use super::values::{ApplicantCategory, FinancialYear, Money, Period, RateBps, ServiceType};
use super::{DomainError, Facts};
use crate::codec::{BusinessDate, StoredContext};
use crate::command_service::{Decision, EventCodec, Histories};
use crate::event_store::{Position, RecordedEvent, StreamId};
use crate::personal_data::{DataSubjectId, PersonalText};

const ID: &str = "0b7e5c1a";

/// What a decision over several streams writes.
type Written = Vec<(StreamId, SchemeEvent)>;

/// What a decision on the application alone writes (a usage charge, a reversal).
type Charged = Vec<(StreamId, E)>;

fn fy(text: &str) -> FinancialYear {
    FinancialYear::parse(text).expect("year")
}

// ---- streams ----

fn application() -> StreamId {
    streams::application(ID).expect("stream")
}

fn budget(year: &str) -> StreamId {
    streams::budget(fy(year)).expect("stream")
}

fn capacity_stream() -> StreamId {
    streams::capacity().expect("stream")
}

/// The application events of what a decision wrote, all of which must go to the application.
fn application_events(written: &[(StreamId, SchemeEvent)]) -> Vec<E> {
    written_to(written, &application())
        .into_iter()
        .map(|event| match event {
            SchemeEvent::Application(event) => event,
            other => panic!("{other:?} written to the application stream"),
        })
        .collect()
}

/// The events of a decision that writes the application alone: every one goes to the
/// application's stream, none to a funding year's.
#[track_caller]
fn charged_events(written: &[(StreamId, E)]) -> Vec<E> {
    for (stream, event) in written {
        assert_eq!(*stream, application(), "{event:?} written outside the application");
    }
    written.iter().map(|(_, event)| event.clone()).collect()
}

/// The funding events of what a decision wrote to one budget year.
fn funding_events(written: &[(StreamId, SchemeEvent)], year: &str) -> Vec<FundingEvent> {
    written_to(written, &budget(year))
        .into_iter()
        .map(|event| match event {
            SchemeEvent::Funding(event) => event,
            other => panic!("{other:?} written to a budget stream"),
        })
        .collect()
}

// ---- an application's life ----

fn submitted() -> Vec<E> {
    vec![
        ApplicationSubmitted {
            application_id: ID.into(),
            batch_id: "2025-q2".into(),
            batch_deadline: day(2025, 5, 31),
            submitted_on: day(2025, 5, 2),
            data_subject_id: Some(DataSubjectId::of_application(ID)),
            details: university_submission().into(),
        }
        .into(),
    ]
}

fn eligible() -> Vec<E> {
    let mut events = submitted();
    events.push(EligibilityConfirmed { checked_by: "intake-1".into(), checked_on: day(2025, 6, 2) }.into());
    events
}

fn assessed() -> Vec<E> {
    let mut events = eligible();
    events.push(
        AssessmentRecorded {
            assessed_on: day(2025, 6, 5),
            assessor: "assessor-1".into(),
            scores: scores(),
            total_score: 32,
            recommended_rate: rate(7_000),
            recommended_ceiling: hkd(500_000),
            duration_months: 6,
            conditions: vec![],
            no_conflict_declared: true,
        }
        .into(),
    );
    events
}

fn applicant(today: chrono::NaiveDate) -> Facts {
    facts(today, "applicant-1")
}

fn finance(today: chrono::NaiveDate) -> Facts {
    facts(today, "finance-1")
}

// ---- funding years, capacity, prices ----

fn received(year: FinancialYear, dollars: i64) -> FundingEvent {
    FundingReceived {
        year,
        line: BudgetLine::ComputingPowerSubsidy,
        amount: hkd(dollars),
        line_total: hkd(dollars),
        received_on: year.first_day(),
    }
    .into()
}

/// Funding years 2025-26 and 2026-27, each with `subsidy_dollars` received.
fn budgets(subsidy_dollars: i64) -> BTreeMap<FinancialYear, FundingYearState> {
    budgets_after(subsidy_dollars, &[])
}

/// The funding years as `written` leaves them.
fn budgets_after(
    subsidy_dollars: i64,
    written: &[(StreamId, SchemeEvent)],
) -> BTreeMap<FinancialYear, FundingYearState> {
    ["2025-26", "2026-27"]
        .into_iter()
        .map(|year| {
            let mut events = vec![received(fy(year), subsidy_dollars)];
            events.extend(funding_events(written, year));
            (fy(year), given(&events, funding::apply))
        })
        .collect()
}

/// `units` of capacity in every month from July 2025 to June 2026.
fn capacity_of(units: u64) -> CapacityState {
    capacity_in("2025-07", "2026-06", units)
}

/// `units` of capacity in every month from `first` to `last`.
fn capacity_in(first: &str, last: &str, units: u64) -> CapacityState {
    let events: Vec<CapacityEvent> = Period::range(period(first), period(last))
        .into_iter()
        .map(|month| {
            CapacityDeclared { service_type: gpu(), period: month, units, subsidised_cap: units * 9 / 10 }.into()
        })
        .collect();
    given(&events, capacity::apply)
}

fn allocations(units: u64) -> Vec<Allocation> {
    Period::range(period("2025-07"), period("2025-12"))
        .into_iter()
        .map(|month| Allocation { service_type: gpu(), period: month, units })
        .collect()
}

fn rate_set(cents: i64, effective_from: chrono::NaiveDate) -> PriceEvent {
    ServiceRateSet {
        service_type: gpu(),
        rate_per_unit: Money::from_cents(cents),
        unit: "node-hour".into(),
        effective_from,
    }
    .into()
}

/// HK$42.50 a node-hour from April 2025.
fn price_schedule() -> PriceScheduleState {
    given(&[rate_set(4_250, day(2025, 4, 1))], prices::apply)
}

// ---- the committee ----

/// The approval of 1,000 node-hours a month from July to December 2025. The ceiling is
/// omitted: it is the subsidy of those units, 6,000 × HK$42.50 × the approved rate (at 70 %,
/// HK$178,500.00).
fn approve(rate_bps: u32, exceptional: Option<&str>) -> ApproveApplication {
    ApproveApplication {
        application_id: ID.into(),
        meeting: meeting(),
        rate: rate(rate_bps),
        exceptional_reason: exceptional.map(str::to_string),
        allocations: allocations(1_000),
        ceiling: None,
        start: day(2025, 7, 1),
        end: day(2025, 12, 31),
        conditions: vec!["quarterly progress reports".into()],
    }
}

/// The meeting as the decision records it, by the secretariat.
fn record() -> CommitteeRecord {
    let meeting = meeting();
    CommitteeRecord {
        recorded_by: "secretariat-1".into(),
        meeting_reference: meeting.meeting_reference,
        decided_on: meeting.decided_on,
        members_present: meeting.members_present,
        members_recused: meeting.members_recused,
    }
}

/// The ceiling the default approval (at 70 %) takes: 6,000 × HK$42.50 × 70 % = HK$178,500.00.
const ALLOCATION_SUBSIDY_CENTS: i64 = 17_850_000;

/// What an approval of the application at `events` reads: batch 2025-q2 closed, HK$42.50 a
/// node-hour, HK$1m of subsidy in each year, 10,000 units of capacity a month.
fn approval_state(events: &[E]) -> ApprovalState {
    ApprovalState {
        application: given(events, app::apply),
        calendar: closed_calendar(),
        prices: price_schedule(),
        budgets: budgets(1_000_000),
        capacity: capacity_of(10_000),
    }
}

fn decide_approval(state: &ApprovalState, decision: ApproveApplication) -> Result<Written, DomainError> {
    when_decided(&decision, state, &secretariat())
}

/// The approved terms in what an approval wrote.
#[track_caller]
fn approved_terms(written: &Written) -> ApprovedTerms {
    match &application_events(written)[..] {
        [E::ApplicationApproved(approved)] => approved.terms.clone(),
        other => panic!("expected one approval, got {other:?}"),
    }
}

/// The amounts an approval committed, per budget stream, in cents.
fn committed(written: &Written) -> Vec<(StreamId, i64)> {
    written
        .iter()
        .filter_map(|(stream, event)| match event {
            SchemeEvent::Funding(FundingEvent::SubsidyCommitted(committed)) => {
                Some((stream.clone(), committed.amount.cents()))
            }
            _ => None,
        })
        .collect()
}

fn approval_written() -> Written {
    decide_approval(&approval_state(&assessed()), approve(7_000, None)).expect("approved")
}

fn approved() -> Vec<E> {
    let mut events = assessed();
    events.extend(application_events(&approval_written()));
    events
}

fn signed() -> Vec<E> {
    let mut events = approved();
    events.push(
        AgreementSigned { signed_on: day(2025, 6, 30), reporting_due_dates: vec![day(2025, 10, 15), day(2026, 1, 15)] }
            .into(),
    );
    events
}

// ---- usage ----

fn usage(units: u64, month: &str) -> ChargeUsage {
    ChargeUsage {
        application_id: ID.into(),
        usage_id: format!("u-{month}-{units}"),
        import_id: None,
        service_type: gpu(),
        period: period(month),
        units,
    }
}

/// Charges usage to the application at `events` at HK$42.50 a node-hour: paid from what the
/// application reserved in the usage month's funding year.
fn charge(events: &[E], usage: &ChargeUsage, today: chrono::NaiveDate) -> Result<Charged, DomainError> {
    when_decided(usage, &(given(events, app::apply), price_schedule()), &finance(today))
}

// ---- submission, eligibility, assessment ----

#[test]
fn a_submission_is_placed_in_its_batch_and_validated() {
    let submit = SubmitApplication { application_id: ID.into(), submission: university_submission() };
    let new = (ApplicationState::default(), open_calendar());
    then_events(when_decided(&submit, &new, &applicant(day(2025, 5, 2))), &[(application(), submitted()[0].clone())]);
    then_refused(
        when_decided(&submit, &(given(&submitted(), app::apply), open_calendar()), &applicant(day(2025, 5, 2))),
        "application_exists",
    );

    let mut reversed = university_submission();
    reversed.requested_resources[0].first_period = period("2026-01");
    then_refused(
        when_decided(&SubmitApplication { submission: reversed, ..submit.clone() }, &new, &applicant(day(2025, 5, 2))),
        "invalid_input",
    );
    let mut too_high = university_submission();
    too_high.requested_rate = rate(9_500);
    then_refused(
        when_decided(&SubmitApplication { submission: too_high, ..submit.clone() }, &new, &applicant(day(2025, 5, 2))),
        "rate_above_ceiling",
    );

    // The earliest open batch whose deadline has not passed (§15), and none when none is.
    let two_open = (ApplicationState::default(), given(&[q3_opened(), q2_opened()], batches::apply));
    let placed = when_decided(&submit, &two_open, &applicant(day(2025, 6, 1))).expect("submitted");
    assert!(
        matches!(&placed[..], [(stream, E::ApplicationSubmitted(s))]
            if *stream == application() && s.batch_id == "2025-q3" && s.batch_deadline == day(2025, 8, 31)),
        "{placed:?}"
    );
    then_refused(when_decided(&submit, &new, &applicant(day(2025, 6, 1))), "no_open_batch");
    then_refused(
        when_decided(&submit, &(ApplicationState::default(), closed_calendar()), &applicant(day(2025, 5, 2))),
        "no_open_batch",
    );
}

#[test]
fn amendments_and_withdrawals_only_while_the_batch_is_open() {
    let state = given(&submitted(), app::apply);
    let amend = |submission: Submission| AmendApplication { application_id: ID.into(), submission };
    let mut changed = university_submission();
    changed.team_size = 15;
    then_events(
        when(&amend(changed.clone()), &state, &applicant(day(2025, 5, 31))),
        &[ApplicationAmended {
            amended_on: day(2025, 5, 31),
            data_subject_id: Some(DataSubjectId::of_application(ID)),
            details: changed.clone().into(),
        }
        .into()],
    );
    then_refused(when(&amend(changed), &state, &applicant(day(2025, 6, 1))), "batch_deadline_passed");
    then_refused(when(&amend(university_submission()), &state, &applicant(day(2025, 5, 3))), "no_change");

    let withdraw = |reason: &str| WithdrawApplication { application_id: ID.into(), reason: reason.into() };
    then_refused(when(&withdraw("late"), &state, &applicant(day(2025, 6, 1))), "batch_deadline_passed");
    let withdrawn = when(&withdraw("merged with another project"), &state, &applicant(day(2025, 5, 10)));
    then_events(
        withdrawn.clone(),
        &[ApplicationWithdrawn { reason: "merged with another project".into(), withdrawn_on: day(2025, 5, 10) }.into()],
    );
    let events = [submitted(), withdrawn.expect("withdrawn")].concat();
    let state = given(&events, app::apply);
    assert_eq!(state.status, Status::Withdrawn);
    let refused = then_refused(
        when(&CheckEligibility { application_id: ID.into() }, &state, &facts(day(2025, 6, 2), "intake-1")),
        "application_closed",
    );
    assert!(refused.to_string().contains("withdrawn"));
}

#[test]
fn eligibility_is_confirmed_or_ruled_out_with_reasons_once() {
    let check = CheckEligibility { application_id: ID.into() };
    let intake = facts(day(2025, 6, 2), "intake-1");
    then_events(
        when(&check, &given(&submitted(), app::apply), &intake),
        &[EligibilityConfirmed { checked_by: "intake-1".into(), checked_on: day(2025, 6, 2) }.into()],
    );
    then_refused(when(&check, &given(&eligible(), app::apply), &facts(day(2025, 6, 3), "intake-1")), "no_change");
    then_refused(when(&check, &ApplicationState::default(), &intake), "unknown_application");

    let ruling = |submission: Submission| {
        let events: Vec<E> = vec![
            ApplicationSubmitted {
                application_id: ID.into(),
                batch_id: "b".into(),
                batch_deadline: day(2025, 5, 31),
                submitted_on: day(2025, 5, 2),
                data_subject_id: Some(DataSubjectId::of_application(ID)),
                details: submission.into(),
            }
            .into(),
        ];
        match when(&check, &given(&events, app::apply), &intake) {
            Ok(mut events) => events.remove(0),
            Err(error) => panic!("{error}"),
        }
    };
    let mut enterprise = university_submission();
    enterprise.category = ApplicantCategory::StrategicEnterprise;
    enterprise.sub_type = "strategic_enterprise".into();
    let E::RuledIneligible(RuledIneligible { reasons, checked_by, .. }) = ruling(enterprise.clone()) else {
        panic!("a strategic enterprise without undertakings is ineligible")
    };
    assert!(reasons[0].contains("undertakings"), "{reasons:?}");
    assert_eq!(checked_by, "intake-1");
    enterprise.undertakings =
        Some(Undertakings { land_in_hong_kong: true, professionals_to_employ: 0, contribution: "x".into() });
    let E::RuledIneligible(RuledIneligible { reasons, .. }) = ruling(enterprise.clone()) else {
        panic!("no professionals stated")
    };
    assert!(reasons[0].contains("professionals"), "{reasons:?}");
    enterprise.undertakings = Some(Undertakings {
        land_in_hong_kong: true,
        professionals_to_employ: 40,
        contribution: "A regional AI lab".into(),
    });
    assert!(matches!(ruling(enterprise), E::EligibilityConfirmed(_)));

    let mut double_funded = university_submission();
    double_funded.other_government_funding = true;
    let E::RuledIneligible(RuledIneligible { reasons, .. }) = ruling(double_funded) else { panic!("double funding") };
    assert!(reasons[0].contains("double funding"));
    let mut not_listed = university_submission();
    not_listed.sub_type = "private_college".into();
    assert!(matches!(ruling(not_listed), E::RuledIneligible(_)));
}

#[test]
fn an_assessment_needs_eligibility_a_no_conflict_declaration_and_valid_scores() {
    let assess = |state: &ApplicationState, no_conflict: bool, a: u8| {
        let mut scores = scores();
        scores.a_meets_hong_kong_needs = a;
        let decision = RecordAssessment {
            application_id: ID.into(),
            scores,
            recommended_rate: rate(7_000),
            recommended_ceiling: hkd(500_000),
            duration_months: 6,
            conditions: vec![],
            no_conflict_declared: no_conflict,
        };
        when(&decision, state, &facts(day(2025, 6, 5), "assessor-1"))
    };
    then_refused(assess(&given(&submitted(), app::apply), true, 8), "wrong_stage");
    let state = given(&eligible(), app::apply);
    then_refused(assess(&state, false, 8), "conflict_of_interest_not_declared");
    then_refused(assess(&state, true, 11), "score_out_of_range");
    // Recorded by the acting assessor, on the day it is recorded (5 June), with the total of
    // the four scores (32).
    then_events(assess(&state, true, 8), &assessed()[2..]);
    let later = when(
        &RecordAssessment {
            application_id: ID.into(),
            scores: scores(),
            recommended_rate: rate(7_000),
            recommended_ceiling: hkd(500_000),
            duration_months: 6,
            conditions: vec![],
            no_conflict_declared: true,
        },
        &state,
        &facts(day(2025, 6, 9), "assessor-1"),
    );
    assert!(
        matches!(&later.as_deref(), Ok([E::AssessmentRecorded(assessment)]) if assessment.assessed_on == day(2025, 6, 9)),
        "{later:?}"
    );
}

// ---- the committee ----

#[test]
fn the_subsidy_rate_is_at_most_70_percent_unless_exceptional_with_a_reason_and_never_above_90() {
    let state = approval_state(&assessed());
    assert!(decide_approval(&state, approve(7_000, None)).is_ok());
    then_refused(decide_approval(&state, approve(7_001, None)), "rate_needs_exceptional_case");
    then_refused(decide_approval(&state, approve(8_500, Some("  "))), "exceptional_without_reason");
    let written = decide_approval(&state, approve(9_000, Some("unique public-health impact"))).expect("exceptional");
    assert!(matches!(&application_events(&written)[..], [E::ApplicationApproved(approved)]
            if approved.terms.rate == RateBps::EXCEPTIONAL_CAP
                && approved.terms.exceptional_reason.as_deref() == Some("unique public-health impact")));
    then_refused(decide_approval(&state, approve(9_001, Some("anything"))), "rate_above_ceiling");
}

#[test]
fn approval_writes_the_application_the_budget_of_each_year_and_capacity_together() {
    let written = decide_approval(&approval_state(&assessed()), approve(7_000, None));
    let mut expected: Written = vec![
        (
            application(),
            SchemeEvent::Application(
                ApplicationApproved {
                    committee: record(),
                    terms: ApprovedTerms {
                        rate: rate(7_000),
                        exceptional_reason: None,
                        allocations: allocations(1_000),
                        ceiling: hkd(178_500),
                        start: day(2025, 7, 1),
                        end: day(2025, 12, 31),
                        conditions: vec!["quarterly progress reports".into()],
                        reservations: vec![Reservation { year: fy("2025-26"), amount: hkd(178_500) }],
                    },
                }
                .into(),
            ),
        ),
        (
            budget("2025-26"),
            SchemeEvent::Funding(
                SubsidyCommitted {
                    committed_on: day(2025, 6, 15),
                    application_id: ID.into(),
                    amount: hkd(178_500),
                    committed_total: hkd(178_500),
                    left: hkd(821_500),
                }
                .into(),
            ),
        ),
    ];
    expected.extend(Period::range(period("2025-07"), period("2025-12")).into_iter().map(|month| {
        let allocated = CapacityAllocated {
            application_id: ID.into(),
            service_type: gpu(),
            period: month,
            units: 1_000,
            allocated_total: 1_000,
            subsidised_cap: 9_000,
        };
        (capacity_stream(), SchemeEvent::Capacity(allocated.into()))
    }));
    then_events(written, &expected);

    // Every stream it writes is in its boundary, so the service appends each at the version read;
    // it also reads the price schedule, for the subsidy of the allocated units.
    let boundary = approve(7_000, None).boundary(&Histories::default()).expect("boundary");
    assert_eq!(
        boundary,
        vec![
            streams::batches().expect("batches"),
            streams::prices().expect("prices"),
            capacity_stream(),
            budget("2025-26")
        ]
    );
    assert_eq!(approve(7_000, None).subject(), Ok(application()));
}

#[test]
fn an_approval_commits_subsidy_on_the_committees_decision_date_not_the_day_it_is_recorded() {
    // Decided on 15 June 2025, recorded by the secretariat on 18 June: every commitment, in
    // each year the approval reserves in, is dated 15 June.
    let state = approval_state(&assessed());
    let recorded_later = facts(day(2025, 6, 18), "secretariat-1");
    for decision in [approve(7_000, None), spanning_two_years(None)] {
        let written = when_decided(&decision, &state, &recorded_later).expect("approved");
        let commitments: Vec<(StreamId, chrono::NaiveDate)> = written
            .iter()
            .filter_map(|(stream, event)| match event {
                SchemeEvent::Funding(FundingEvent::SubsidyCommitted(committed)) => {
                    Some((stream.clone(), committed.committed_on))
                }
                _ => None,
            })
            .collect();
        let years: Vec<StreamId> = committed(&written).into_iter().map(|(stream, _)| stream).collect();
        assert!(!years.is_empty(), "{written:?}");
        assert_eq!(commitments, years.into_iter().map(|stream| (stream, day(2025, 6, 15))).collect::<Vec<_>>());
        // The approval and the commitments take effect on the decision date; the capacity
        // allocated, in the months it is allocated in.
        for (_, event) in &written {
            let expected = match event {
                SchemeEvent::Capacity(CapacityEvent::CapacityAllocated(allocated)) => allocated.period.first_day(),
                _ => day(2025, 6, 15),
            };
            assert_eq!(event.effective_on(), expected, "{event:?}");
        }
    }
}

/// Approved from January to June 2026: 100 node-hours in February 2026 (financial year
/// 2025-26) and 200 in May 2026 (2026-27), at HK$42.50 and 70 %: HK$2,975.00 and HK$5,950.00.
fn spanning_two_years(ceiling: Option<Money>) -> ApproveApplication {
    ApproveApplication {
        start: day(2026, 1, 1),
        end: day(2026, 6, 30),
        allocations: vec![
            Allocation { service_type: gpu(), period: period("2026-02"), units: 100 },
            Allocation { service_type: gpu(), period: period("2026-05"), units: 200 },
        ],
        ceiling,
        ..approve(7_000, None)
    }
}

/// What an approval of a project from July 2025 to June 2028 reads: HK$1m received in each
/// funding year from 2025-26 to 2028-29, 10,000 units of capacity a month, HK$42.50 a node-hour.
fn approval_state_to_2028() -> ApprovalState {
    let funded = |year: &str| (fy(year), given(&[received(fy(year), 1_000_000)], funding::apply));
    ApprovalState {
        budgets: [funded("2025-26"), funded("2026-27"), funded("2027-28"), funded("2028-29")].into_iter().collect(),
        capacity: capacity_in("2025-07", "2028-06", 10_000),
        ..approval_state(&assessed())
    }
}

/// An approval at 70 % from July 2025 to June 2028 of `allocated` node-hours by month.
fn approve_to_2028(allocated: &[(&str, u64)], ceiling: Option<Money>) -> ApproveApplication {
    ApproveApplication {
        allocations: allocated
            .iter()
            .map(|(month, units)| Allocation { service_type: gpu(), period: period(month), units: *units })
            .collect(),
        start: day(2025, 7, 1),
        end: day(2028, 6, 30),
        ceiling,
        ..approve(7_000, None)
    }
}

#[test]
fn earlier_years_take_their_share_rounded_up_unless_those_shares_would_pass_the_ceiling() {
    // 100 node-hours in July of 2025, 2026 and 2027: HK$2,975.00 of subsidy in each of
    // 2025-26, 2026-27 and 2027-28.
    let state = approval_state_to_2028();
    let reserved = |ceiling: Option<i64>| {
        let decision =
            approve_to_2028(&[("2025-07", 100), ("2026-07", 100), ("2027-07", 100)], ceiling.map(Money::from_cents));
        let written = decide_approval(&state, decision).expect("approved");
        let terms = approved_terms(&written);
        let reservations: Vec<(StreamId, i64)> =
            terms.reservations.iter().map(|r| (streams::budget(r.year).expect("stream"), r.amount.cents())).collect();
        assert_eq!(committed(&written), reservations, "each year commits what the application reserves in it");
        assert_eq!(reservations.iter().map(|(_, cents)| cents).sum::<i64>(), terms.ceiling.cents());
        reservations
    };
    // Omitted, the ceiling is the allocation's subsidy: each year reserves its own units' subsidy.
    assert_eq!(
        reserved(None),
        vec![(budget("2025-26"), 297_500), (budget("2026-27"), 297_500), (budget("2027-28"), 297_500)]
    );
    // HK$1,000.01: a third is 33,333.67 cents, rounded up in the earlier years; the last takes the rest.
    assert_eq!(
        reserved(Some(100_001)),
        vec![(budget("2025-26"), 33_334), (budget("2026-27"), 33_334), (budget("2027-28"), 33_333)]
    );
    // Two cents: a cent in each earlier year, nothing left for the last, which reserves nothing.
    assert_eq!(reserved(Some(2)), vec![(budget("2025-26"), 1), (budget("2026-27"), 1)]);
    // One cent: shares rounded up (a cent each) would pass it; rounded down they are nothing,
    // and the last year takes the cent.
    assert_eq!(reserved(Some(1)), vec![(budget("2027-28"), 1)]);
}

#[test]
fn approval_reserves_the_ceiling_in_each_year_in_proportion_to_the_subsidy_allocated_in_it() {
    let state = approval_state(&assessed());
    let spanning = spanning_two_years(Some(Money::from_cents(100_001)));
    let boundary = spanning.boundary(&Histories::default()).expect("boundary");
    assert!(boundary.contains(&budget("2025-26")) && boundary.contains(&budget("2026-27")), "{boundary:?}");
    let written = decide_approval(&state, spanning).expect("approved");
    let streams: Vec<&StreamId> = written.iter().map(|(stream, _)| stream).collect();
    assert_eq!(
        streams,
        [&application(), &budget("2025-26"), &budget("2026-27"), &capacity_stream(), &capacity_stream()]
    );
    // A third of the allocated subsidy falls in 2025-26: HK$1,000.01 / 3 = 33,333.67 cents,
    // rounded up (it is below the HK$2,975.00 of that year's units); the rest goes to the last
    // year, so the parts add up to the ceiling.
    let reserved = committed(&written);
    assert_eq!(reserved, vec![(budget("2025-26"), 33_334), (budget("2026-27"), 66_667)]);
    assert_eq!(reserved.iter().map(|(_, cents)| cents).sum::<i64>(), 100_001);
    assert_eq!(
        approved_terms(&written).reservations,
        vec![
            Reservation { year: fy("2025-26"), amount: Money::from_cents(33_334) },
            Reservation { year: fy("2026-27"), amount: Money::from_cents(66_667) },
        ]
    );
    // Omitted, the ceiling is the allocated subsidy, reserved where it falls.
    let written = decide_approval(&state, spanning_two_years(None)).expect("approved");
    assert_eq!(committed(&written), vec![(budget("2025-26"), 297_500), (budget("2026-27"), 595_000)]);

    // A year whose share is nothing reserves nothing: no commitment is written to it. A
    // ceiling of one cent is a third of a cent in 2025-26, rounded up to the cent; the last
    // year is left nothing.
    let written = decide_approval(&state, spanning_two_years(Some(Money::from_cents(1)))).expect("approved");
    assert_eq!(committed(&written), vec![(budget("2025-26"), 1)]);
    assert!(written_to(&written, &budget("2026-27")).is_empty(), "{written:?}");
    assert_eq!(
        approved_terms(&written).reservations,
        vec![Reservation { year: fy("2025-26"), amount: Money::from_cents(1) }]
    );
}

/// The application at `assessed()`, but submitted to batch 2024-q4 (deadline 30 November 2024)
/// and decided by its committee on 16 December 2024.
fn assessed_in_2024_q4() -> Vec<E> {
    let assessment = assessed().pop().expect("assessment");
    vec![
        ApplicationSubmitted {
            application_id: ID.into(),
            batch_id: "2024-q4".into(),
            batch_deadline: day(2024, 11, 30),
            submitted_on: day(2024, 11, 2),
            data_subject_id: Some(DataSubjectId::of_application(ID)),
            details: university_submission().into(),
        }
        .into(),
        EligibilityConfirmed { checked_by: "intake-1".into(), checked_on: day(2024, 12, 2) }.into(),
        assessment,
    ]
}

#[test]
fn approval_reserves_nothing_in_a_year_where_no_units_are_allocated_even_if_the_period_runs_into_it() {
    // The project runs from January to December 2025, but all its units are allocated in
    // January to March 2025, financial year 2024-25: the whole ceiling is reserved there.
    // (Split by days, 2025-26 would have held 275 of the 365 days' share.)
    let calendar = given(
        &[
            BatchOpened {
                opened_on: day(2024, 9, 1),
                batch_id: "2024-q4".into(),
                deadline: day(2024, 11, 30),
                committee_date: day(2024, 12, 16),
            }
            .into(),
            BatchClosed { batch_id: "2024-q4".into(), closed_on: day(2024, 12, 1) }.into(),
        ],
        batches::apply,
    );
    let funded = |year: &str| (fy(year), given(&[received(fy(year), 1_000_000)], funding::apply));
    let state = ApprovalState {
        application: given(&assessed_in_2024_q4(), app::apply),
        calendar,
        prices: given(&[rate_set(4_250, day(2025, 1, 1))], prices::apply),
        budgets: [funded("2024-25"), funded("2025-26")].into_iter().collect(),
        capacity: capacity_in("2025-01", "2025-12", 10_000),
    };
    let q1 = ApproveApplication {
        meeting: app::CommitteeMeeting { decided_on: day(2024, 12, 16), ..meeting() },
        start: day(2025, 1, 1),
        end: day(2025, 12, 31),
        allocations: Period::range(period("2025-01"), period("2025-03"))
            .into_iter()
            .map(|month| Allocation { service_type: gpu(), period: month, units: 1_000 })
            .collect(),
        ..approve(7_000, None)
    };
    // Only the budget of 2024-25 is read and written.
    assert_eq!(
        q1.boundary(&Histories::default()).expect("boundary"),
        vec![
            streams::batches().expect("batches"),
            streams::prices().expect("prices"),
            capacity_stream(),
            budget("2024-25")
        ]
    );
    let written = when_decided(&q1, &state, &facts(day(2024, 12, 16), "secretariat-1")).expect("approved");
    // 3,000 × HK$42.50 × 70 % = HK$89,250.00, all in 2024-25.
    assert_eq!(committed(&written), vec![(budget("2024-25"), 8_925_000)]);
    assert!(written_to(&written, &budget("2025-26")).is_empty(), "{written:?}");
    let terms = approved_terms(&written);
    assert_eq!(terms.ceiling, hkd(89_250));
    assert_eq!(terms.reservations, vec![Reservation { year: fy("2024-25"), amount: hkd(89_250) }]);
}

#[test]
fn approval_is_refused_when_a_years_budget_is_short_naming_the_year_and_the_amounts() {
    let state = approval_state(&assessed());
    let short = ApprovalState { budgets: budgets(100_000), ..state.clone() };
    then_refused_saying(
        decide_approval(&short, approve(7_000, None)),
        "budget_short",
        &["2025-26", "HK$100,000.00 of computing power subsidy left", "the HK$178,500.00 asked for"],
    );
    let unfunded = ApprovalState { budgets: BTreeMap::new(), ..state.clone() };
    then_refused_saying(
        decide_approval(&unfunded, approve(7_000, None)),
        "budget_short",
        &["funding year 2025-26", "HK$0.00 of computing power subsidy left", "HK$178,500.00"],
    );
    // Each year is funded separately: the year short is the one named.
    let mut only_2025 = budgets(1_000_000);
    only_2025.remove(&fy("2026-27"));
    let refusal = then_refused_saying(
        decide_approval(&ApprovalState { budgets: only_2025, ..state }, spanning_two_years(None)),
        "budget_short",
        &["funding year 2026-27", "HK$5,950.00 asked for"],
    );
    assert!(!refusal.to_string().contains("2025-26"), "{refusal}");
}

#[test]
fn allocations_stay_within_90_percent_of_capacity_in_every_month() {
    let state = approval_state(&assessed());
    // A ceiling below the HK$1,606,500 the units would give, within the HK$1m budget.
    let mut at_cap = approve(7_000, None);
    at_cap.allocations = allocations(9_000);
    at_cap.ceiling = Some(hkd(500_000));
    assert!(decide_approval(&state, at_cap).is_ok());
    let mut over = approve(7_000, None);
    over.allocations = allocations(9_000);
    over.ceiling = Some(hkd(500_000));
    over.allocations[3].units = 9_001;
    then_refused_saying(
        decide_approval(&state, over),
        "capacity_cap_exceeded",
        &["9001 units of gpu_node_hour_h800 in 2025-10", "9000 units are left"],
    );
    // What others already hold counts.
    let held = capacity::apply(
        capacity_of(10_000),
        &CapacityAllocated {
            application_id: "other".into(),
            service_type: gpu(),
            period: period("2025-08"),
            units: 8_500,
            allocated_total: 8_500,
            subsidised_cap: 9_000,
        }
        .into(),
    );
    let refused = decide_approval(&ApprovalState { capacity: held, ..state }, approve(7_000, None));
    then_refused_saying(refused, "capacity_cap_exceeded", &["gpu_node_hour_h800 in 2025-08", "500 units are left"]);
}

#[test]
fn the_assessor_cannot_decide_recused_members_are_not_present_and_a_quorum_is_needed() {
    let state = approval_state(&assessed());
    then_refused(
        when_decided(&approve(7_000, None), &state, &facts(day(2025, 6, 15), "assessor-1")),
        "assessor_cannot_decide",
    );
    let mut recused_present = approve(7_000, None);
    recused_present.meeting.members_present.push("member-d".into());
    then_refused(decide_approval(&state, recused_present), "recused_member_counted_present");
    let mut thin = approve(7_000, None);
    thin.meeting.members_present.truncate(2);
    then_refused(decide_approval(&state, thin), "quorum_not_met");
    let mut counted_twice = approve(7_000, None);
    counted_twice.meeting.members_present = vec!["member-a".into(), "member-a".into(), "member-b".into()];
    then_refused(decide_approval(&state, counted_twice), "quorum_not_met");
    let written = decide_approval(&state, approve(7_000, None)).expect("approved");
    let approved = application_events(&written);
    let [E::ApplicationApproved(approved)] = &approved[..] else { panic!("approved") };
    assert_eq!(approved.committee.members_recused, vec!["member-d".to_string()], "recusals are recorded");
    assert_eq!(approved.committee.recorded_by, "secretariat-1", "recorded by the acting principal");
}

#[test]
fn the_committee_decides_only_after_the_batch_closes_and_can_reject_or_defer() {
    let state = approval_state(&assessed());
    then_refused(
        decide_approval(&ApprovalState { calendar: open_calendar(), ..state.clone() }, approve(7_000, None)),
        "batch_still_open",
    );
    let assessed_state = given(&assessed(), app::apply);
    let reject = RejectApplication {
        application_id: ID.into(),
        meeting: meeting(),
        reasons: vec!["computing need not justified".into()],
    };
    then_refused(when_decided(&reject, &(assessed_state.clone(), open_calendar()), &secretariat()), "batch_still_open");
    then_refused(
        when_decided(
            &RejectApplication { reasons: vec![" ".into()], ..reject.clone() },
            &(assessed_state.clone(), closed_calendar()),
            &secretariat(),
        ),
        "invalid_input",
    );
    let rejected = when_decided(&reject, &(assessed_state.clone(), closed_calendar()), &secretariat());
    then_events(
        rejected.clone(),
        &[(
            application(),
            ApplicationRejected { committee: record(), reasons: vec!["computing need not justified".into()] }.into(),
        )],
    );
    let mut events = assessed();
    events.extend(rejected.expect("rejected").into_iter().map(|(_, event)| event));
    let closed = given(&events, app::apply);
    assert_eq!(closed.status, Status::Rejected);
    let sign = SignAgreement {
        application_id: ID.into(),
        signed_on: day(2025, 7, 1),
        reporting_due_dates: vec![day(2025, 10, 1)],
    };
    then_refused(when(&sign, &closed, &facts(day(2025, 7, 1), "legal-1")), "application_closed");

    let q3_opened = q3_opened();
    let q3_closed: BatchEvent = BatchClosed { batch_id: "2025-q3".into(), closed_on: day(2025, 9, 1) }.into();
    let calendar = given(&[q2_opened(), q2_closed(), q3_opened.clone()], batches::apply);
    let defer = DeferApplication {
        application_id: ID.into(),
        meeting: meeting(),
        reason: "needs a revised budget".into(),
        to_batch_id: "2025-q3".into(),
    };
    let to_earlier = DeferApplication { to_batch_id: "2025-q2".into(), ..defer.clone() };
    then_refused(
        when_decided(&to_earlier, &(assessed_state.clone(), calendar.clone()), &secretariat()),
        "invalid_input",
    );
    let to_unknown = DeferApplication { to_batch_id: "2025-q9".into(), ..defer.clone() };
    then_refused(
        when_decided(&to_unknown, &(assessed_state.clone(), calendar.clone()), &secretariat()),
        "unknown_batch",
    );
    let deferred = when_decided(&defer, &(assessed_state, calendar), &secretariat());
    then_events(
        deferred.clone(),
        &[(
            application(),
            ApplicationDeferred {
                committee: record(),
                reason: "needs a revised budget".into(),
                to_batch_id: "2025-q3".into(),
                to_batch_deadline: day(2025, 8, 31),
            }
            .into(),
        )],
    );
    let mut events = assessed();
    events.extend(deferred.expect("deferred").into_iter().map(|(_, event)| event));
    let deferred_state = given(&events, app::apply);
    assert_eq!((deferred_state.status, deferred_state.batch_id.as_deref()), (Status::Deferred, Some("2025-q3")));
    // Decided in the later batch once it closes, at its committee on 15 September.
    let in_q3 = ApproveApplication {
        meeting: app::CommitteeMeeting { decided_on: day(2025, 9, 15), ..meeting() },
        ..approve(7_000, None)
    };
    let q3_committee = facts(day(2025, 9, 15), "secretariat-1");
    let later_open = given(&[q2_opened(), q2_closed(), q3_opened.clone()], batches::apply);
    let in_later = ApprovalState { application: deferred_state, calendar: later_open, ..state };
    then_refused(when_decided(&in_q3, &in_later, &q3_committee), "batch_still_open");
    let later_closed = given(&[q2_opened(), q2_closed(), q3_opened, q3_closed], batches::apply);
    let in_later = ApprovalState { calendar: later_closed, ..in_later };
    assert!(when_decided(&in_q3, &in_later, &q3_committee).is_ok());
}

#[test]
fn the_ceiling_is_at_most_the_subsidy_of_the_allocated_units_and_is_that_subsidy_when_omitted() {
    let state = approval_state(&assessed());
    let with_ceiling =
        |cents: i64| ApproveApplication { ceiling: Some(Money::from_cents(cents)), ..approve(7_000, None) };
    // 6,000 node-hours × HK$42.50 × 70 % = HK$178,500.00: a cent more is refused.
    then_refused_saying(
        decide_approval(&state, with_ceiling(ALLOCATION_SUBSIDY_CENTS + 1)),
        "ceiling_above_allocation",
        &["a ceiling of HK$178,500.01", "the subsidy of the allocated units, HK$178,500.00", "omit the ceiling"],
    );
    // Exactly that amount, or less, is the ceiling approved and reserved.
    for cents in [ALLOCATION_SUBSIDY_CENTS, 10_000_000] {
        let written = decide_approval(&state, with_ceiling(cents)).expect("approved");
        assert_eq!(approved_terms(&written).ceiling, Money::from_cents(cents));
        assert_eq!(committed(&written), vec![(budget("2025-26"), cents)]);
    }
    then_refused(decide_approval(&state, with_ceiling(0)), "invalid_input");
    // Omitted, the ceiling is that amount, at the approved rate: at 90 %, HK$229,500.00.
    assert_eq!(approved_terms(&approval_written()).ceiling, Money::from_cents(ALLOCATION_SUBSIDY_CENTS));
    let exceptional = decide_approval(&state, approve(9_000, Some("unique public-health impact"))).expect("approved");
    assert_eq!(approved_terms(&exceptional).ceiling, hkd(229_500));

    // Each month's units at the rate in force on the month's first day: HK$39.00 from October.
    // 3,000 × HK$42.50 × 70 % + 3,000 × HK$39.00 × 70 % = HK$89,250 + HK$81,900 = HK$171,150.
    let repriced = ApprovalState {
        prices: given(&[rate_set(4_250, day(2025, 4, 1)), rate_set(3_900, day(2025, 10, 1))], prices::apply),
        ..state.clone()
    };
    let written = decide_approval(&repriced, approve(7_000, None)).expect("approved");
    assert_eq!(approved_terms(&written).ceiling, hkd(171_150));
    then_refused_saying(
        decide_approval(&repriced, with_ceiling(ALLOCATION_SUBSIDY_CENTS)),
        "ceiling_above_allocation",
        &["HK$178,500.00", "HK$171,150.00"],
    );

    // The sum over the allocation is rounded down, once: at HK$42.55, one node-hour in each of
    // July, August and September gives 3 × 2,978.5 cents = HK$89.355, so HK$89.35 (neither
    // HK$89.36, rounded half up, nor 3 × HK$29.78 = HK$89.34, each month rounded down).
    let odd_rate = ApprovalState { prices: given(&[rate_set(4_255, day(2025, 4, 1))], prices::apply), ..state };
    let three_hours = |ceiling: Option<i64>| ApproveApplication {
        allocations: Period::range(period("2025-07"), period("2025-09"))
            .into_iter()
            .map(|month| Allocation { service_type: gpu(), period: month, units: 1 })
            .collect(),
        ceiling: ceiling.map(Money::from_cents),
        ..approve(7_000, None)
    };
    let written = decide_approval(&odd_rate, three_hours(None)).expect("approved");
    assert_eq!(approved_terms(&written).ceiling, Money::from_cents(8_935));
    assert!(decide_approval(&odd_rate, three_hours(Some(8_935))).is_ok());
    then_refused_saying(
        decide_approval(&odd_rate, three_hours(Some(8_936))),
        "ceiling_above_allocation",
        &["a ceiling of HK$89.36", "allocated units, HK$89.35"],
    );
}

#[test]
fn approval_needs_a_rate_in_force_for_every_allocated_service_and_month() {
    let state = approval_state(&assessed());
    // The schedule's rate starts in August 2025: July's units have none.
    let from_august =
        ApprovalState { prices: given(&[rate_set(4_250, day(2025, 8, 1))], prices::apply), ..state.clone() };
    then_refused_saying(
        decide_approval(&from_august, approve(7_000, None)),
        "no_rate_in_force",
        &["gpu_node_hour_h800", "2025-07-01"],
    );
    let unpriced = ApprovalState { prices: PriceScheduleState::default(), ..state.clone() };
    then_refused(decide_approval(&unpriced, approve(7_000, None)), "no_rate_in_force");
    // A service the schedule does not price.
    let mut with_cpu = approve(7_000, None);
    with_cpu.allocations.push(Allocation {
        service_type: ServiceType::parse("cpu_core_hour").expect("service type"),
        period: period("2025-09"),
        units: 10,
    });
    then_refused_saying(decide_approval(&state, with_cpu), "no_rate_in_force", &["cpu_core_hour", "2025-09-01"]);
    // A rate in force from the first day of the first allocated month is enough.
    let from_july = ApprovalState { prices: given(&[rate_set(4_250, day(2025, 7, 1))], prices::apply), ..state };
    let written = decide_approval(&from_july, approve(7_000, None)).expect("approved");
    assert_eq!(approved_terms(&written).ceiling, hkd(178_500));
}

#[test]
fn an_approved_period_runs_at_most_36_months() {
    let state = approval_state(&assessed());
    let ending = |end| ApproveApplication { end, ..approve(7_000, None) };
    // From 1 July 2025, 36 months run to 30 June 2028.
    let written = decide_approval(&state, ending(day(2028, 6, 30))).expect("36 months");
    assert_eq!(approved_terms(&written).end, day(2028, 6, 30));
    let refusal =
        then_refused_saying(decide_approval(&state, ending(day(2028, 7, 1))), "invalid_input", &["36 months"]);
    assert!(matches!(refusal, DomainError::InvalidInput { field: "end", .. }), "{refusal:?}");
}

#[test]
fn a_committee_decision_is_dated_on_or_after_the_batch_deadline_and_not_after_today() {
    let state = approval_state(&assessed());
    let meeting_on = |decided_on| app::CommitteeMeeting { decided_on, ..meeting() };
    let q3_opened = q3_opened();
    let calendar = given(&[q2_opened(), q2_closed(), q3_opened.clone()], batches::apply);
    let with_calendar = ApprovalState { calendar: calendar.clone(), ..state };
    let application_and_calendar = (with_calendar.application.clone(), calendar);
    // The committee's three decisions, dated `decided_on` and recorded on `today`.
    let decide = |decided_on, today| -> [Result<(), DomainError>; 3] {
        let secretariat = facts(today, "secretariat-1");
        let approve = ApproveApplication { meeting: meeting_on(decided_on), ..approve(7_000, None) };
        let reject = RejectApplication {
            application_id: ID.into(),
            meeting: meeting_on(decided_on),
            reasons: vec!["computing need not justified".into()],
        };
        let defer = DeferApplication {
            application_id: ID.into(),
            meeting: meeting_on(decided_on),
            reason: "needs a revised budget".into(),
            to_batch_id: "2025-q3".into(),
        };
        [
            when_decided(&approve, &with_calendar, &secretariat).map(|_| ()),
            when_decided(&reject, &application_and_calendar, &secretariat).map(|_| ()),
            when_decided(&defer, &application_and_calendar, &secretariat).map(|_| ()),
        ]
    };
    // Recorded on 15 June, a decision dated 16 June has not happened yet.
    for refused in decide(day(2025, 6, 16), day(2025, 6, 15)) {
        then_refused_saying(
            refused,
            "date_in_future",
            &["the committee's decision (2025-06-16)", "after today (2025-06-15)"],
        );
    }
    // Batch 2025-q2's deadline is 31 May: a decision dated the day before is refused.
    for refused in decide(day(2025, 5, 30), day(2025, 6, 15)) {
        then_refused_saying(refused, "decided_before_deadline", &["(2025-05-30)", "batch 2025-q2 (2025-05-31)"]);
    }
    // Dated on the deadline, or on the day it is recorded, it is accepted.
    for (decided_on, today) in [(day(2025, 5, 31), day(2025, 6, 15)), (day(2025, 6, 15), day(2025, 6, 15))] {
        for accepted in decide(decided_on, today) {
            assert_eq!(accepted, Ok(()), "decided on {decided_on}, recorded on {today}");
        }
    }

    // A deferred application is decided after the deadline of the batch it was deferred to.
    let mut deferred = assessed();
    deferred.push(
        ApplicationDeferred {
            committee: record(),
            reason: "needs a revised budget".into(),
            to_batch_id: "2025-q3".into(),
            to_batch_deadline: day(2025, 8, 31),
        }
        .into(),
    );
    let q3_closed: BatchEvent = BatchClosed { batch_id: "2025-q3".into(), closed_on: day(2025, 9, 1) }.into();
    let in_q3 = ApprovalState {
        application: given(&deferred, app::apply),
        calendar: given(&[q2_opened(), q2_closed(), q3_opened, q3_closed], batches::apply),
        ..approval_state(&assessed())
    };
    let approve_on = |decided_on| ApproveApplication { meeting: meeting_on(decided_on), ..approve(7_000, None) };
    then_refused_saying(
        when_decided(&approve_on(day(2025, 8, 30)), &in_q3, &facts(day(2025, 9, 15), "secretariat-1")),
        "decided_before_deadline",
        &["batch 2025-q3 (2025-08-31)"],
    );
    assert!(when_decided(&approve_on(day(2025, 8, 31)), &in_q3, &facts(day(2025, 9, 15), "secretariat-1")).is_ok());
}

#[test]
fn the_assessor_is_not_counted_among_the_members_present() {
    let state = approval_state(&assessed());
    // assessor-1 assessed the application: with two members, not a quorum of members who may decide.
    let mut assessor_present = approve(7_000, None);
    assessor_present.meeting.members_present = vec!["member-a".into(), "member-b".into(), "assessor-1".into()];
    then_refused_saying(
        decide_approval(&state, assessor_present.clone()),
        "assessor_counted_present",
        &["assessor-1 assessed this application", "not counted among the members present"],
    );
    let reject = RejectApplication {
        application_id: ID.into(),
        meeting: assessor_present.meeting.clone(),
        reasons: vec!["computing need not justified".into()],
    };
    then_refused(
        when_decided(&reject, &(state.application.clone(), closed_calendar()), &secretariat()),
        "assessor_counted_present",
    );
    // Recording the decision herself stays the assessor's own refusal, and a recused member
    // listed as present stays that one.
    then_refused(
        when_decided(&assessor_present, &state, &facts(day(2025, 6, 15), "assessor-1")),
        "assessor_cannot_decide",
    );
    let mut recused_present = approve(7_000, None);
    recused_present.meeting.members_present.push("member-d".into());
    then_refused(decide_approval(&state, recused_present), "recused_member_counted_present");
    // The assessor recused, with three other members present: accepted.
    let mut assessor_recused = approve(7_000, None);
    assessor_recused.meeting.members_recused.push("assessor-1".into());
    let written = decide_approval(&state, assessor_recused).expect("approved");
    let approved = application_events(&written);
    let [E::ApplicationApproved(approved)] = &approved[..] else { panic!("approved") };
    assert_eq!(approved.committee.members_recused, vec!["member-d".to_string(), "assessor-1".to_string()]);
}

#[test]
fn an_unknown_application_is_refused_naming_the_id_requested() {
    let nobody = ApplicationState::default();
    let unknown = "9c2d4e7f";
    then_refused_saying(
        when(&CheckEligibility { application_id: unknown.into() }, &nobody, &facts(day(2025, 6, 2), "intake-1")),
        "unknown_application",
        &["no application 9c2d4e7f"],
    );
    let approval = ApproveApplication { application_id: unknown.into(), ..approve(7_000, None) };
    then_refused_saying(
        decide_approval(&ApprovalState { application: nobody.clone(), ..approval_state(&assessed()) }, approval),
        "unknown_application",
        &["no application 9c2d4e7f"],
    );
    // Usage of an unknown application is refused as such, before its rate is looked up.
    let charge = ChargeUsage { application_id: unknown.into(), ..usage(10, "2025-07") };
    then_refused_saying(
        when_decided(&charge, &(nobody, PriceScheduleState::default()), &finance(day(2025, 8, 5))),
        "unknown_application",
        &["no application 9c2d4e7f"],
    );
}

// ---- agreement, usage and disbursement, progress reports ----

#[test]
fn the_agreement_sets_the_reporting_schedule_after_the_start() {
    let sign = |due: Vec<chrono::NaiveDate>| SignAgreement {
        application_id: ID.into(),
        signed_on: day(2025, 6, 30),
        reporting_due_dates: due,
    };
    let state = given(&approved(), app::apply);
    let legal = facts(day(2025, 6, 30), "legal-1");
    then_events(
        when(&sign(vec![day(2026, 1, 15), day(2025, 10, 15), day(2026, 1, 15)]), &state, &legal),
        &signed()[signed().len() - 1..],
    );
    then_refused(when(&sign(vec![]), &state, &legal), "invalid_input");
    then_refused(when(&sign(vec![day(2025, 7, 1)]), &state, &legal), "dates_reversed");
    then_refused(when(&sign(vec![day(2025, 10, 15)]), &given(&assessed(), app::apply), &legal), "wrong_stage");
}

#[test]
fn nothing_is_disbursed_before_the_agreement_is_signed() {
    then_refused(charge(&approved(), &usage(10, "2025-07"), day(2025, 8, 5)), "agreement_not_signed");
}

#[test]
fn usage_is_charged_at_the_rate_in_force_times_the_approved_rate() {
    // 333 × HK$42.50 = HK$14,152.50; × 70 % = HK$9,906.75, paid from the year of July 2025.
    let written = charge(&signed(), &usage(333, "2025-07"), day(2025, 8, 5));
    let charged = UsageCharged {
        usage_id: "u-2025-07-333".into(),
        import_id: None,
        service_type: gpu(),
        period: period("2025-07"),
        units: 333,
        rate_per_unit: Money::from_cents(4_250),
        gross: Money::from_cents(1_415_250),
        subsidy_rate: rate(7_000),
        subsidy: Money::from_cents(990_675),
        financial_year: fy("2025-26"),
        disbursed_total: Money::from_cents(990_675),
        ceiling_left: Money::from_cents(ALLOCATION_SUBSIDY_CENTS - 990_675),
    };
    // One event, to the application: the funding year is not written.
    then_events(written, &[(application(), charged.into())]);

    // The rate in force is the schedule's on the first day of the usage month.
    let cheaper = given(&[rate_set(4_250, day(2025, 4, 1)), rate_set(3_900, day(2025, 8, 1))], prices::apply);
    let august = when_decided(
        &usage(100, "2025-08"),
        &(given(&signed(), app::apply), cheaper.clone()),
        &finance(day(2025, 9, 5)),
    )
    .expect("charged");
    assert!(
        matches!(&charged_events(&august)[..], [E::UsageCharged(line)] if line.rate_per_unit.cents() == 3_900 && line.subsidy.cents() == 273_000),
        "{august:?}"
    );
    let july =
        when_decided(&usage(100, "2025-07"), &(given(&signed(), app::apply), cheaper), &finance(day(2025, 9, 5)))
            .expect("charged");
    assert!(matches!(&charged_events(&july)[..], [E::UsageCharged(line)] if line.rate_per_unit.cents() == 4_250));
    then_refused(
        when_decided(
            &usage(100, "2025-07"),
            &(given(&signed(), app::apply), PriceScheduleState::default()),
            &finance(day(2025, 8, 5)),
        ),
        "no_rate_in_force",
    );
}

#[test]
fn usage_is_paid_from_the_funding_year_of_its_month() {
    let mut spanning = approve(7_000, None);
    spanning.start = day(2026, 3, 1);
    spanning.end = day(2026, 4, 30);
    spanning.allocations = vec![
        Allocation { service_type: gpu(), period: period("2026-03"), units: 100 },
        Allocation { service_type: gpu(), period: period("2026-04"), units: 100 },
    ];
    spanning.ceiling = None;
    let approval = decide_approval(&approval_state(&assessed()), spanning).expect("approved");
    let mut events = assessed();
    events.extend(application_events(&approval));
    events.push(AgreementSigned { signed_on: day(2026, 2, 15), reporting_due_dates: vec![day(2026, 6, 15)] }.into());
    // HK$2,975.00 reserved in each year: March 2026 is in 2025-26, April in 2026-27.
    assert_eq!(
        approved_terms(&approval).reservations,
        vec![
            Reservation { year: fy("2025-26"), amount: hkd(2_975) },
            Reservation { year: fy("2026-27"), amount: hkd(2_975) }
        ]
    );

    let april = usage(100, "2026-04");
    assert_eq!(april.financial_year(), fy("2026-27"));
    let state = (given(&events, app::apply), price_schedule());
    let written = when_decided(&april, &state, &finance(day(2026, 5, 5))).expect("charged");
    // 100 × HK$42.50 × 70 % = HK$2,975.00, from what the application holds in 2026-27.
    assert!(
        matches!(&written[..], [(stream, E::UsageCharged(line))]
            if *stream == application() && line.financial_year == fy("2026-27") && line.subsidy == hkd(2_975)),
        "{written:?}"
    );
    events.extend(charged_events(&written));
    let after = given(&events, app::apply);
    assert_eq!(*after.usage.disbursed_by_year(), BTreeMap::from([(fy("2026-27"), hkd(2_975))]));
    assert_eq!(after.usage_year("u-2026-04-100"), Some(fy("2026-27")));
    // What is left to the application is 2025-26's reservation, for March.
    assert_eq!(after.unused_reservations(), vec![Reservation { year: fy("2025-26"), amount: hkd(2_975) }]);
}

#[test]
fn usage_outside_the_period_above_the_allocation_or_beyond_the_ceiling_is_refused() {
    let events = signed();
    // June 2025 is before the approved start (1 July 2025).
    then_refused(charge(&events, &usage(10, "2025-06"), day(2025, 8, 5)), "usage_outside_approved_period");
    then_refused(charge(&events, &usage(1_001, "2025-07"), day(2025, 8, 5)), "units_above_allocation");
    then_refused(charge(&events, &usage(0, "2025-07"), day(2025, 8, 5)), "invalid_input");
    let first = charge(&events, &usage(600, "2025-07"), day(2025, 8, 5)).expect("first");
    let events = [events, charged_events(&first)].concat();
    then_refused(charge(&events, &usage(600, "2025-07"), day(2025, 8, 6)), "no_change");
    let refusal = then_refused(charge(&events, &usage(401, "2025-07"), day(2025, 8, 6)), "units_above_allocation");
    assert!(refusal.to_string().contains("600 used"), "{refusal}");

    // At HK$1,000 a node-hour in August, 1,000 units × 70 % = HK$700,000, above the ceiling.
    let expensive = given(&[rate_set(4_250, day(2025, 4, 1)), rate_set(100_000, day(2025, 8, 1))], prices::apply);
    then_refused_saying(
        when_decided(&usage(1_000, "2025-08"), &(given(&events, app::apply), expensive), &finance(day(2025, 9, 5))),
        "ceiling_exceeded",
        &["HK$700,000.00", "the ceiling of HK$178,500.00", "HK$17,850.00 already disbursed"],
    );
}

#[test]
fn a_disbursement_is_reversed_by_a_new_event_and_only_once() {
    let charged = charge(&signed(), &usage(100, "2025-07"), day(2025, 8, 5)).expect("charged");
    let mut events = signed();
    events.extend(charged_events(&charged));
    let reverse = |usage_id: &str, reason: &str| ReverseDisbursement {
        application_id: ID.into(),
        usage_id: usage_id.into(),
        reason: reason.into(),
    };
    // A decision on the application alone: it reads and writes no funding year.
    assert_eq!(reverse("u-2025-07-100", "x").subject(), Ok(application()));
    assert_eq!(reverse("u-2025-07-100", "x").boundary(&Histories::default()), Ok(vec![]));

    let state = given(&events, app::apply);
    assert_eq!(*state.usage.disbursed_by_year(), BTreeMap::from([(fy("2025-26"), Money::from_cents(297_500))]));
    let written = when_decided(&reverse("u-2025-07-100", "metering error"), &state, &finance(day(2025, 8, 20)));
    let reversed = DisbursementReversed {
        reversed_on: day(2025, 8, 20),
        usage_id: "u-2025-07-100".into(),
        amount: Money::from_cents(297_500),
        units: 100,
        reason: "metering error".into(),
        disbursed_total: Money::ZERO,
    };
    then_events(written.clone(), &[(application(), reversed.into())]);
    then_refused(when_decided(&reverse("u-2025-07-100", " "), &state, &finance(day(2025, 8, 20))), "invalid_input");
    events.extend(charged_events(&written.expect("reversed")));
    let state = given(&events, app::apply);
    // The application's own figures hold the reversal: nothing disbursed, in total or in the
    // year, and the whole reservation of 2025-26 held again.
    assert_eq!(state.disbursed, Money::ZERO);
    assert_eq!(*state.usage.disbursed_by_year(), BTreeMap::new());
    assert_eq!(state.unused_reservations(), vec![Reservation { year: fy("2025-26"), amount: hkd(178_500) }]);
    then_refused(when(&reverse("u-2025-07-100", "again"), &state, &finance(day(2025, 8, 21))), "already_reversed");
    then_refused(when(&reverse("u-none", "x"), &state, &finance(day(2025, 8, 21))), "unknown_usage");
    // The units are free again.
    assert!(charge(&events, &usage(1_000, "2025-07"), day(2025, 8, 7)).is_ok());
}

#[test]
fn an_overdue_progress_report_blocks_disbursement_until_it_is_submitted() {
    let late = usage(10, "2025-09");
    let refusal = then_refused(charge(&signed(), &late, day(2025, 10, 16)), "progress_report_overdue");
    assert!(refusal.to_string().contains("2025-10-15"));
    let kpis = Kpis {
        ai_models_trained_or_deployed: 1,
        talents_employed: 8,
        mainland_or_overseas_collaborators: 2,
        publications: 1,
        patents: 0,
    };
    let report = |due: chrono::NaiveDate, summary: &str| SubmitProgressReport {
        application_id: ID.into(),
        due,
        kpis: kpis.clone(),
        summary: summary.into(),
    };
    let submitted_report = when(
        &report(day(2025, 10, 15), "pre-training done"),
        &given(&signed(), app::apply),
        &applicant(day(2025, 10, 16)),
    );
    then_events(
        submitted_report.clone(),
        &[ProgressReportSubmitted {
            due: day(2025, 10, 15),
            kpis: kpis.clone(),
            data_subject_id: Some(DataSubjectId::of_application(ID)),
            summary: PersonalText::unsealed("pre-training done"),
            submitted_on: day(2025, 10, 16),
        }
        .into()],
    );
    let mut events = signed();
    events.extend(submitted_report.expect("report"));
    assert!(charge(&events, &late, day(2025, 10, 16)).is_ok());
    let state = given(&events, app::apply);
    then_refused(
        when(&report(day(2025, 10, 15), "again"), &state, &applicant(day(2025, 10, 17))),
        "report_not_awaiting",
    );
    then_refused(when(&report(day(2025, 11, 1), "x"), &state, &applicant(day(2025, 10, 17))), "unknown_report");

    let review = |accepted: bool, comments: &str| ReviewProgressReport {
        application_id: ID.into(),
        due: day(2025, 10, 15),
        accepted,
        comments: comments.into(),
    };
    let reviewer = facts(day(2025, 10, 20), "reviewer-1");
    then_refused(when(&review(false, " "), &state, &reviewer), "invalid_input");
    let reviewed = when(&review(false, "add utilisation figures"), &state, &reviewer);
    then_events(
        reviewed.clone(),
        &[ProgressReportReviewed {
            reviewed_on: day(2025, 10, 20),
            due: day(2025, 10, 15),
            accepted: false,
            data_subject_id: Some(DataSubjectId::of_application(ID)),
            comments: PersonalText::unsealed("add utilisation figures"),
            reviewed_by: "reviewer-1".into(),
        }
        .into()],
    );
    events.extend(reviewed.expect("review"));
    let state = given(&events, app::apply);
    assert_eq!(state.reports.get(&day(2025, 10, 15)), Some(&ReportState::RevisionRequested));
    then_refused(when(&review(true, ""), &state, &reviewer), "report_not_awaiting");
    // A report sent back for revision is submitted again.
    assert!(when(&report(day(2025, 10, 15), "with utilisation"), &state, &applicant(day(2025, 10, 25))).is_ok());
}

#[test]
fn completion_and_termination_release_the_unused_commitment_and_close_the_application() {
    let charged = charge(&signed(), &usage(1_000, "2025-07"), day(2025, 8, 5)).expect("charged");
    let mut events = signed();
    events.extend(charged_events(&charged));
    let held = budgets_after(1_000_000, &approval_written());
    let state = (given(&events, app::apply), held);
    let close = |reason: Option<&str>| CloseProject {
        application_id: ID.into(),
        termination_reason: reason.map(str::to_string),
    };
    // Which years it reads is known only once the application is loaded.
    assert_eq!(close(None).boundary(&Histories::default()), Ok(vec![]));

    // HK$178,500 reserved, HK$29,750 disbursed (the application's own figure): HK$148,750
    // released to 2025-26.
    let officer = facts(day(2026, 1, 31), "officer-1");
    let released = vec![Reservation { year: fy("2025-26"), amount: Money::from_cents(14_875_000) }];
    let release_on = |released_on| SubsidyReleased {
        released_on,
        application_id: ID.into(),
        amount: Money::from_cents(14_875_000),
        committed_total: Money::from_cents(2_975_000),
        left: Money::from_cents(97_025_000),
    };
    let completed = when_decided(&close(None), &state, &officer);
    then_events(
        completed.clone(),
        &[
            (
                application(),
                SchemeEvent::Application(
                    ApplicationCompleted { completed_on: day(2026, 1, 31), released: released.clone() }.into(),
                ),
            ),
            (budget("2025-26"), SchemeEvent::Funding(release_on(day(2026, 1, 31)).into())),
        ],
    );

    let terminated = when_decided(&close(Some("project abandoned")), &state, &facts(day(2025, 9, 1), "officer-1"));
    then_events(
        terminated,
        &[
            (
                application(),
                SchemeEvent::Application(
                    ApplicationTerminated {
                        reason: "project abandoned".into(),
                        terminated_on: day(2025, 9, 1),
                        released,
                    }
                    .into(),
                ),
            ),
            (budget("2025-26"), SchemeEvent::Funding(release_on(day(2025, 9, 1)).into())),
        ],
    );
    then_refused(when_decided(&close(Some(" ")), &state, &facts(day(2025, 9, 1), "officer-1")), "invalid_input");

    events.extend(application_events(&completed.expect("completed")));
    let done = given(&events, app::apply);
    let later = facts(day(2026, 2, 1), "officer-1");
    for refused in [
        when_decided(&usage(1, "2025-08"), &(done.clone(), price_schedule()), &later).map(|_| ()),
        when_decided(&close(None), &(done.clone(), BTreeMap::new()), &later).map(|_| ()),
        when(&WithdrawApplication { application_id: ID.into(), reason: "x".into() }, &done, &later).map(|_| ()),
    ] {
        then_refused(refused, "application_closed");
    }
}

#[test]
fn a_project_spanning_two_years_releases_what_it_holds_in_each() {
    let spanning = spanning_two_years(Some(Money::from_cents(100_001)));
    let approval = decide_approval(&approval_state(&assessed()), spanning).expect("approved");
    let events = [assessed(), application_events(&approval)].concat();
    let state = (given(&events, app::apply), budgets_after(1_000_000, &approval));
    let terminate = CloseProject { application_id: ID.into(), termination_reason: Some("merged".into()) };
    let written = when_decided(&terminate, &state, &facts(day(2025, 12, 1), "officer-1")).expect("terminated");
    let release = |amount: i64| {
        SchemeEvent::Funding(
            SubsidyReleased {
                released_on: day(2025, 12, 1),
                application_id: ID.into(),
                amount: Money::from_cents(amount),
                committed_total: Money::ZERO,
                left: hkd(1_000_000),
            }
            .into(),
        )
    };
    assert_eq!(written.len(), 3, "{written:?}");
    assert!(matches!(&written[0], (stream, SchemeEvent::Application(E::ApplicationTerminated(t)))
        if *stream == application() && t.released.len() == 2));
    assert_eq!(written[1..], [(budget("2025-26"), release(33_334)), (budget("2026-27"), release(66_667))]);
}

#[test]
fn usage_of_a_month_without_a_rate_is_refused_as_such_whatever_the_applications_stage() {
    // The rate in force is looked up right after the application is found: an application
    // approved but not yet under agreement is told the month has no rate.
    let unpriced = PriceScheduleState::default();
    for events in [approved(), signed()] {
        then_refused_saying(
            when_decided(
                &usage(10, "2025-07"),
                &(given(&events, app::apply), unpriced.clone()),
                &finance(day(2025, 8, 5)),
            ),
            "no_rate_in_force",
            &["gpu_node_hour_h800", "2025-07-01"],
        );
    }
    // Priced, the application's stage decides.
    then_refused(charge(&approved(), &usage(10, "2025-07"), day(2025, 8, 5)), "agreement_not_signed");
}

#[test]
fn usage_is_charged_only_once_its_month_has_begun() {
    then_refused_saying(
        charge(&signed(), &usage(10, "2025-09"), day(2025, 8, 31)),
        "usage_month_not_begun",
        &["usage of 2025-09", "on 2025-08-31", "the month has not begun"],
    );
    // From the month's first day it is charged: 10 × HK$42.50 × 70 % = HK$297.50.
    let written = charge(&signed(), &usage(10, "2025-09"), day(2025, 9, 1)).expect("charged");
    assert!(
        matches!(&charged_events(&written)[..], [E::UsageCharged(line)]
            if line.period == period("2025-09") && line.subsidy == Money::from_cents(29_750)),
        "{written:?}"
    );
}

#[test]
fn usage_subsidy_is_rounded_down_to_the_cent() {
    // At HK$42.55 a node-hour, one node-hour in each of July and August 2025: the allocation's
    // subsidy, and so the ceiling, is 2 × 2,978.5 cents = HK$59.57.
    let prices = given(&[rate_set(4_255, day(2025, 4, 1))], prices::apply);
    let decision = ApproveApplication {
        allocations: vec![
            Allocation { service_type: gpu(), period: period("2025-07"), units: 1 },
            Allocation { service_type: gpu(), period: period("2025-08"), units: 1 },
        ],
        ..approve(7_000, None)
    };
    let state = ApprovalState { prices: prices.clone(), ..approval_state(&assessed()) };
    let approval = decide_approval(&state, decision).expect("approved");
    assert_eq!(approved_terms(&approval).ceiling, Money::from_cents(5_957));
    let mut events = [assessed(), application_events(&approval)].concat();
    events.push(AgreementSigned { signed_on: day(2025, 6, 30), reporting_due_dates: vec![day(2025, 10, 15)] }.into());
    // Each month: 1 × HK$42.55 × 70 % = 2,978.5 cents, paid as HK$29.78 (half up would pay HK$29.79).
    for (month, disbursed_total) in [("2025-07", 2_978), ("2025-08", 5_956)] {
        let written =
            when_decided(&usage(1, month), &(given(&events, app::apply), prices.clone()), &finance(day(2025, 9, 5)))
                .expect("charged");
        let charged = charged_events(&written);
        let [E::UsageCharged(line)] = &charged[..] else { panic!("charged: {written:?}") };
        assert_eq!(
            (line.gross, line.subsidy, line.disbursed_total),
            (Money::from_cents(4_255), Money::from_cents(2_978), Money::from_cents(disbursed_total)),
            "{month}"
        );
        events.extend(charged);
    }
    // Every allocated unit charged stays within the ceiling (half up, HK$59.58 would not).
    assert_eq!(given(&events, app::apply).disbursed, Money::from_cents(5_956));
}

/// The application approved as `decision` decides (on the default approval's state) and
/// under agreement from 30 June 2025, its one progress report due on 30 September 2028.
fn signed_as(decision: ApproveApplication) -> (Vec<E>, ApprovedTerms) {
    let approval = decide_approval(&approval_state(&assessed()), decision).expect("approved");
    let mut events = [assessed(), application_events(&approval)].concat();
    events.push(AgreementSigned { signed_on: day(2025, 6, 30), reporting_due_dates: vec![day(2028, 9, 30)] }.into());
    (events, approved_terms(&approval))
}

/// `units` of `month`'s usage under the id `usage_id`.
fn usage_line(usage_id: &str, units: u64, month: &str) -> ChargeUsage {
    ChargeUsage { usage_id: usage_id.into(), ..usage(units, month) }
}

#[test]
fn a_charge_is_refused_beyond_what_the_application_reserved_in_the_usage_months_year() {
    // 100 node-hours in February 2026 (2025-26) and 200 in May 2026 (2026-27), HK$29.75 of
    // subsidy a node-hour. A ceiling of HK$981.75 is 33 node-hours' worth: a third, HK$327.25
    // (11 node-hours), reserved in 2025-26 and HK$654.50 (22) in 2026-27.
    let (events, terms) = signed_as(spanning_two_years(Some(Money::from_cents(98_175))));
    assert_eq!(
        terms.reservations,
        vec![
            Reservation { year: fy("2025-26"), amount: Money::from_cents(32_725) },
            Reservation { year: fy("2026-27"), amount: Money::from_cents(65_450) },
        ]
    );
    let in_march = day(2026, 3, 5);
    let in_june = day(2026, 6, 5);

    // A charge reaching exactly the year's reservation is accepted.
    let february = charge(&events, &usage(11, "2026-02"), in_march).expect("charged");
    let [E::UsageCharged(line)] = &charged_events(&february)[..] else { panic!("{february:?}") };
    assert_eq!((line.subsidy, line.ceiling_left), (Money::from_cents(32_725), Money::from_cents(65_450)));
    let events = [events, charged_events(&february)].concat();
    // Then nothing more in 2025-26, though the ceiling has HK$654.50 left: usage of February
    // cannot draw on what was reserved in 2026-27.
    then_refused_saying(
        charge(&events, &usage(1, "2026-02"), in_march),
        "year_reservation_exceeded",
        &["a subsidy of HK$29.75", "funding year 2025-26", "(HK$327.25, of which HK$327.25 is disbursed)"],
    );
    // 2026-27's reservation is the application's to use, to the cent.
    let may = charge(&events, &usage(22, "2026-05"), in_june).expect("charged");
    let [E::UsageCharged(line)] = &charged_events(&may)[..] else { panic!("{may:?}") };
    assert_eq!(
        (line.subsidy, line.disbursed_total, line.ceiling_left),
        (Money::from_cents(65_450), Money::from_cents(98_175), Money::ZERO)
    );
    let events = [events, charged_events(&may)].concat();
    then_refused(charge(&events, &usage(1, "2026-05"), in_june), "ceiling_exceeded");

    // A reversal gives the year back what the line took.
    let reversal = ReverseDisbursement {
        application_id: ID.into(),
        usage_id: "u-2026-02-11".into(),
        reason: "metering error".into(),
    };
    let reversed = when(&reversal, &given(&events, app::apply), &finance(in_march)).expect("reversed");
    let events = [events, reversed].concat();
    assert_eq!(given(&events, app::apply).usage.disbursed_by_year().get(&fy("2025-26")), None);
    assert!(charge(&events, &usage_line("u-2026-02-again", 11, "2026-02"), in_march).is_ok());
}

#[test]
fn a_later_years_usage_cannot_draw_on_an_earlier_years_reservation_and_a_cent_over_is_refused() {
    let (events, _) = signed_as(spanning_two_years(Some(Money::from_cents(98_175))));
    // 23 node-hours of May 2026 are HK$684.25: within the ceiling of HK$981.75, above the
    // HK$654.50 reserved in 2026-27, though 2025-26 holds HK$327.25 unused.
    then_refused_saying(
        charge(&events, &usage(23, "2026-05"), day(2026, 6, 5)),
        "year_reservation_exceeded",
        &["a subsidy of HK$684.25", "funding year 2026-27", "(HK$654.50, of which HK$0.00 is disbursed)"],
    );
    assert!(charge(&events, &usage(22, "2026-05"), day(2026, 6, 5)).is_ok());

    // HK$981.72 reserves HK$327.24 in 2025-26: 11 node-hours, HK$327.25, are a cent over.
    let (events, terms) = signed_as(spanning_two_years(Some(Money::from_cents(98_172))));
    assert_eq!(terms.reservations[0], Reservation { year: fy("2025-26"), amount: Money::from_cents(32_724) });
    let refusal = then_refused_saying(
        charge(&events, &usage(11, "2026-02"), day(2026, 3, 5)),
        "year_reservation_exceeded",
        &["a subsidy of HK$327.25", "funding year 2025-26", "(HK$327.24, of which HK$0.00 is disbursed)"],
    );
    assert_eq!(
        refusal,
        DomainError::YearReservationExceeded {
            year: "2025-26".into(),
            requested: "HK$327.25".into(),
            reserved: "HK$327.24".into(),
            disbursed: "HK$0.00".into(),
        }
    );
    assert!(charge(&events, &usage(10, "2026-02"), day(2026, 3, 5)).is_ok());
}

#[test]
fn every_allocated_unit_is_paid_in_full_when_the_ceiling_is_the_allocations_subsidy() {
    // Allocations over two and three financial years at rates that give fractions of a cent;
    // the ceiling omitted, so it is the allocation's subsidy, rounded down once.
    let exceptional = Some("unique public-health impact");
    let cases = [
        // HK$42.55 at 70 %: 2,978.5 cents a node-hour.
        (
            7_000,
            None,
            vec![(4_255, day(2025, 4, 1))],
            vec![("2026-02", 1), ("2026-03", 3), ("2026-04", 7), ("2027-01", 5)],
        ),
        // HK$33.33, then HK$44.41 from October 2026, at 69.99 %, over three years.
        (
            6_999,
            None,
            vec![(3_333, day(2025, 4, 1)), (4_441, day(2026, 10, 1))],
            vec![
                ("2025-08", 333),
                ("2025-12", 17),
                ("2026-05", 101),
                ("2026-11", 999),
                ("2027-04", 77),
                ("2028-03", 1),
            ],
        ),
        // One cent a unit at 90 %: 0.9 of a cent a unit.
        (9_000, exceptional, vec![(1, day(2025, 4, 1))], vec![("2025-07", 7), ("2026-04", 11), ("2027-06", 13)]),
        // HK$0.07 at 50.01 %: 3.5007 cents a unit, the last year the smallest.
        (5_001, None, vec![(7, day(2025, 4, 1))], vec![("2025-09", 2_999), ("2026-09", 1_001), ("2027-05", 1)]),
        // HK$42.50 at 70 %, whole cents, three years.
        (7_000, None, vec![(4_250, day(2025, 4, 1))], vec![("2025-07", 1_000), ("2026-06", 333), ("2027-12", 7)]),
    ];
    for (bps, reason, rates, allocated) in cases {
        let schedule: PriceScheduleState =
            given(&rates.iter().map(|(cents, from)| rate_set(*cents, *from)).collect::<Vec<_>>(), prices::apply);
        let state = ApprovalState { prices: schedule.clone(), ..approval_state_to_2028() };
        let decision = ApproveApplication {
            rate: rate(bps),
            exceptional_reason: reason.map(str::to_string),
            ..approve_to_2028(&allocated, None)
        };
        let case = format!("{bps} bps at {rates:?}: {allocated:?}");
        let approval = decide_approval(&state, decision).unwrap_or_else(|error| panic!("{case}: {error}"));
        let terms = approved_terms(&approval);

        // The subsidy of each year's units, unrounded (ten-thousandths of a cent), worked out here.
        let mut by_year: BTreeMap<FinancialYear, i128> = BTreeMap::new();
        for (month, units) in &allocated {
            let first_day = period(month).first_day();
            let cents = schedule.rate_in_force(&gpu(), first_day).expect("rate").cents();
            *by_year.entry(FinancialYear::containing(first_day)).or_default() +=
                i128::from(*units) * i128::from(cents) * i128::from(bps);
        }
        let ceiling = by_year.values().sum::<i128>() / 10_000;
        assert_eq!(i128::from(terms.ceiling.cents()), ceiling, "{case}");
        // Each year but the last reserves exactly what its units can draw; the last the rest.
        let (last, _) = by_year.last_key_value().expect("a year");
        let expected: Vec<Reservation> = by_year
            .iter()
            .map(|(year, subsidy)| {
                let earlier: i128 = by_year.iter().filter(|(other, _)| *other != last).map(|(_, s)| s / 10_000).sum();
                let amount = if year == last { ceiling - earlier } else { subsidy / 10_000 };
                Reservation { year: *year, amount: Money::from_cents(i64::try_from(amount).expect("cents")) }
            })
            .filter(|reservation| reservation.amount.cents() > 0)
            .collect();
        assert_eq!(terms.reservations, expected, "{case}");
        assert_eq!(terms.reservations.iter().map(|r| r.amount.cents()).sum::<i64>(), terms.ceiling.cents(), "{case}");

        // Every allocated unit charged month by month, each month in two lines where it can be
        // (so each line is rounded down on its own).
        let mut events = [assessed(), application_events(&approval)].concat();
        events
            .push(AgreementSigned { signed_on: day(2025, 6, 30), reporting_due_dates: vec![day(2028, 9, 30)] }.into());
        let mut lines: Vec<UsageCharged> = Vec::new();
        for (month, units) in &allocated {
            let parts = [units / 3, units - units / 3];
            for (part, units) in parts.into_iter().filter(|units| *units > 0).enumerate() {
                let decision = usage_line(&format!("u-{month}-{part}"), units, month);
                let today = period(month).first_day() + chrono::Days::new(40);
                let written = when_decided(&decision, &(given(&events, app::apply), schedule.clone()), &finance(today))
                    .unwrap_or_else(|error| panic!("{case}: {units} units of {month} refused: {error}"));
                let charged = charged_events(&written);
                let [E::UsageCharged(line)] = &charged[..] else { panic!("{case}: {written:?}") };
                lines.push(line.clone());
                events.extend(charged);
            }
        }
        let paid = given(&events, app::apply);
        let total: i64 = lines.iter().map(|line| line.subsidy.cents()).sum();
        assert_eq!(paid.disbursed.cents(), total, "{case}");
        assert_eq!(lines.last().map(|line| line.disbursed_total.cents()), Some(total), "{case}");
        assert_eq!(
            lines.last().map(|line| line.ceiling_left),
            terms.ceiling.checked_sub(paid.disbursed).ok(),
            "{case}"
        );
        assert!(total <= terms.ceiling.cents(), "{case}: {total} paid");
        let allocated_units: u64 = allocated.iter().map(|(_, units)| units).sum();
        assert_eq!(lines.iter().map(|line| line.units).sum::<u64>(), allocated_units, "{case}");
        for reservation in &terms.reservations {
            let in_year: i64 = lines
                .iter()
                .filter(|line| line.financial_year == reservation.year)
                .map(|line| line.subsidy.cents())
                .sum();
            assert!(in_year <= reservation.amount.cents(), "{case}: {in_year} paid in {}", reservation.year);
            assert_eq!(
                paid.usage.disbursed_by_year().get(&reservation.year).map_or(0, |m| m.cents()),
                in_year,
                "{case}"
            );
        }
    }
}

#[test]
fn a_usage_charge_reads_the_application_and_the_price_schedule_and_writes_only_the_application() {
    let july = usage(100, "2025-07");
    assert_eq!(july.subject(), Ok(application()));
    // The price schedule is read; no funding year is read or written, whatever the month.
    for month in ["2025-07", "2026-02", "2026-05"] {
        assert_eq!(
            usage(100, month).boundary(&Histories::default()),
            Ok(vec![streams::prices().expect("prices")]),
            "{month}"
        );
    }
    let written = charge(&signed(), &july, day(2025, 8, 5)).expect("charged");
    let streams: Vec<&StreamId> = written.iter().map(|(stream, _)| stream).collect();
    assert_eq!(streams, [&application()]);
    // The decision's event is the pure charge, shared with the bulk import.
    let charged = july.charge(&given(&signed(), app::apply), &price_schedule(), day(2025, 8, 5)).expect("charged");
    assert_eq!(written, vec![(application(), charged.into())]);

    // A reversal is a decision on the application alone.
    let reversal =
        ReverseDisbursement { application_id: ID.into(), usage_id: "u-2025-07-100".into(), reason: "x".into() };
    assert_eq!(Decision::subject(&reversal), Ok(application()));
    assert_eq!(reversal.boundary(&Histories::default()), Ok(vec![]));
    let state = given(&[signed(), charged_events(&written)].concat(), app::apply);
    let reversed = when_decided(&reversal, &state, &finance(day(2025, 8, 20))).expect("reversed");
    assert!(
        matches!(&reversed[..], [(stream, E::DisbursementReversed(_))] if *stream == application()),
        "{reversed:?}"
    );
}

#[test]
fn an_imported_line_is_charged_to_the_application_alone_and_held_to_the_years_reservation() {
    use super::usage_import::{ImportStates, LineOutcome, RepeatedLines, UsageLine, decide_line};
    let (events, _) = signed_as(spanning_two_years(Some(Money::from_cents(98_175))));
    let mut states = ImportStates {
        applications: BTreeMap::from([(ID.to_string(), given(&events, app::apply))]),
        prices: price_schedule(),
    };
    let line = |line: usize, units: u64, month: &str| UsageLine {
        line,
        application_id: ID.into(),
        service_type: gpu(),
        units,
        period: period(month),
    };
    // 11 node-hours of February 2026: exactly 2025-26's HK$327.25.
    let outcome = decide_line(&mut states, "run-1", &line(2, 11, "2026-02"), RepeatedLines::Refuse, day(2026, 3, 5));
    let LineOutcome::Charge(event) = outcome else { panic!("charged, not {outcome:?}") };
    assert!(
        matches!(event.as_ref(), E::UsageCharged(charged) if charged.subsidy == Money::from_cents(32_725) && charged.financial_year == fy("2025-26")),
        "{event:?}"
    );
    assert_eq!(states.applications[ID].disbursed, Money::from_cents(32_725), "the state the next line is decided on");
    // The next line of the same year is refused as the decision refuses it.
    let outcome = decide_line(&mut states, "run-1", &line(3, 1, "2026-02"), RepeatedLines::Refuse, day(2026, 3, 5));
    let LineOutcome::Refused(error) = outcome else { panic!("refused, not {outcome:?}") };
    assert_eq!((error.line, error.code), (3, "year_reservation_exceeded"));
    assert!(error.message.contains("funding year 2025-26"), "{}", error.message);
    // And the other year's is there to use.
    assert!(matches!(
        decide_line(&mut states, "run-1", &line(4, 22, "2026-05"), RepeatedLines::Refuse, day(2026, 6, 5)),
        LineOutcome::Charge(_)
    ));
}

#[test]
fn a_dry_run_taken_back_leaves_the_states_deciding_every_line_as_before() {
    use super::usage_import::{ImportStates, LineOutcome, RepeatedLines, UsageLine, decide_line, undo_line};
    let today = day(2025, 9, 5);
    let line = |line: usize, units: u64, month: &str| UsageLine {
        line,
        application_id: ID.into(),
        service_type: gpu(),
        units,
        period: period(month),
    };
    let mut earlier = ImportStates {
        applications: BTreeMap::from([(ID.to_string(), given(&signed(), app::apply))]),
        prices: price_schedule(),
    };
    assert!(matches!(
        decide_line(&mut earlier, "june", &line(2, 100, "2025-07"), RepeatedLines::Refuse, today),
        LineOutcome::Charge(_)
    ));
    let lines = [line(2, 40, "2025-07"), line(3, 100, "2025-07"), line(4, 60, "2025-08"), line(5, 10, "2025-07")];
    let decide_all = |states: &mut ImportStates| {
        lines.iter().map(|line| decide_line(states, "july", line, RepeatedLines::Refuse, today)).collect::<Vec<_>>()
    };
    let mut fresh = earlier.clone();
    let expected = decide_all(&mut fresh);
    assert!(matches!(expected[1], LineOutcome::Refused(_)), "the repeat of june's line: {:?}", expected[1]);

    // The dry run decides on the states themselves, then takes back the lines it charged.
    let mut states = earlier.clone();
    let disbursed_before = states.applications[ID].disbursed;
    let dry = decide_all(&mut states);
    for (line, outcome) in lines.iter().zip(&dry) {
        if matches!(outcome, LineOutcome::Charge(_)) {
            undo_line(&mut states, "july", line, disbursed_before);
        }
    }
    let state = &states.applications[ID];
    assert_eq!(state.disbursed, disbursed_before);
    assert_eq!(state.usage.lines(), earlier.applications[ID].usage.lines(), "only june's line is left");
    assert_eq!(state.units_used(&gpu(), period("2025-07")), 100);
    assert_eq!(state.usage.disbursed_by_year(), earlier.applications[ID].usage.disbursed_by_year());
    assert_eq!(decide_all(&mut states), expected, "the real run decides as if there had been no dry run");
}

#[test]
fn a_line_repeating_another_imports_charge_is_refused_naming_that_import_unless_repeats_are_allowed() {
    use super::usage_import::{ImportStates, LineOutcome, RepeatedLines, UsageLine, decide_line};
    let today = day(2025, 8, 5);
    let line = |line: usize, units: u64| UsageLine {
        line,
        application_id: ID.into(),
        service_type: gpu(),
        units,
        period: period("2025-07"),
    };
    let states_after = |events: &[E]| ImportStates {
        applications: BTreeMap::from([(ID.to_string(), given(events, app::apply))]),
        prices: price_schedule(),
    };
    let mut states = states_after(&signed());
    let first = decide_line(&mut states, "july-scheduler", &line(2, 100), RepeatedLines::Refuse, today);
    let LineOutcome::Charge(first) = first else { panic!("charged, not {first:?}") };
    assert!(
        matches!(first.as_ref(), E::UsageCharged(charged) if charged.import_id.as_deref() == Some("july-scheduler")),
        "the charge records its import: {first:?}"
    );

    // The same usage under another import id: refused, naming the earlier import and its line.
    let repeat = decide_line(&mut states, "july-copy", &line(2, 100), RepeatedLines::Refuse, today);
    let LineOutcome::Refused(error) = repeat else { panic!("refused, not {repeat:?}") };
    assert_eq!((error.line, error.code), (2, "usage_already_imported"));
    assert!(
        error.message.contains("import july-scheduler") && error.message.contains("usage july-scheduler-2"),
        "{}",
        error.message
    );
    // Other units, or another line of the same import, are not repeats: the scheduler may
    // report one month in several lines.
    assert!(matches!(
        decide_line(&mut states, "july-copy", &line(3, 101), RepeatedLines::Refuse, today),
        LineOutcome::Charge(_)
    ));
    assert!(matches!(
        decide_line(&mut states, "july-scheduler", &line(5, 100), RepeatedLines::Refuse, today),
        LineOutcome::Charge(_)
    ));
    // The line the first import charged is still recognised as its own on a re-run.
    assert_eq!(
        decide_line(&mut states, "july-scheduler", &line(2, 100), RepeatedLines::Refuse, today),
        LineOutcome::AlreadyImported
    );
    // The clerk may charge a repeat explicitly.
    let allowed = decide_line(&mut states, "july-copy", &line(4, 100), RepeatedLines::Charge, today);
    assert!(matches!(allowed, LineOutcome::Charge(_)), "{allowed:?}");

    // A charge recorded on its own is no import: the same usage imported after it is charged.
    let mut direct = signed();
    direct.extend(charged_events(&charge(&signed(), &usage(100, "2025-07"), today).expect("charged")));
    let mut states = states_after(&direct);
    assert!(matches!(
        decide_line(&mut states, "july-scheduler", &line(2, 100), RepeatedLines::Refuse, today),
        LineOutcome::Charge(_)
    ));

    // A reversed charge was undone: importing the same usage again is no repeat.
    let mut reversed = signed();
    let mut states = states_after(&reversed);
    let LineOutcome::Charge(first) =
        decide_line(&mut states, "july-scheduler", &line(2, 100), RepeatedLines::Refuse, today)
    else {
        panic!("charged")
    };
    reversed.push(*first);
    let reversal = ReverseDisbursement {
        application_id: ID.into(),
        usage_id: "july-scheduler-2".into(),
        reason: "metering error".into(),
    };
    let state = given(&reversed, app::apply);
    reversed.extend(charged_events(&when_decided(&reversal, &state, &finance(day(2025, 8, 6))).expect("reversed")));
    let mut states = states_after(&reversed);
    assert!(matches!(
        decide_line(&mut states, "july-copy", &line(2, 100), RepeatedLines::Refuse, day(2025, 8, 7)),
        LineOutcome::Charge(_)
    ));
}

#[test]
fn a_progress_report_is_submitted_once_its_period_has_ended() {
    // Reports are due on 15 October 2025 and 15 January 2026; the project ends on 31 December 2025.
    let state = given(&signed(), app::apply);
    let kpis = Kpis {
        ai_models_trained_or_deployed: 1,
        talents_employed: 8,
        mainland_or_overseas_collaborators: 2,
        publications: 1,
        patents: 0,
    };
    let report = |due| SubmitProgressReport {
        application_id: ID.into(),
        due,
        kpis: kpis.clone(),
        summary: "pre-training done".into(),
    };
    // The report due on 15 October covers the project up to that day.
    then_refused_saying(
        when(&report(day(2025, 10, 15)), &state, &applicant(day(2025, 10, 14))),
        "report_period_not_ended",
        &["due on 2025-10-15", "up to 2025-10-15", "today is 2025-10-14"],
    );
    then_events(
        when(&report(day(2025, 10, 15)), &state, &applicant(day(2025, 10, 15))),
        &[ProgressReportSubmitted {
            due: day(2025, 10, 15),
            kpis: kpis.clone(),
            data_subject_id: Some(DataSubjectId::of_application(ID)),
            summary: PersonalText::unsealed("pre-training done"),
            submitted_on: day(2025, 10, 15),
        }
        .into()],
    );
    // The report due after the project ends covers it to its end, 31 December.
    then_refused_saying(
        when(&report(day(2026, 1, 15)), &state, &applicant(day(2025, 12, 30))),
        "report_period_not_ended",
        &["due on 2026-01-15", "up to 2025-12-31", "today is 2025-12-30"],
    );
    assert!(when(&report(day(2026, 1, 15)), &state, &applicant(day(2025, 12, 31))).is_ok());
}

#[test]
fn an_agreement_is_signed_on_or_after_the_decision_and_not_after_today() {
    // The committee approved the application on 15 June 2025.
    let state = given(&approved(), app::apply);
    let sign_on = |signed_on| SignAgreement {
        application_id: ID.into(),
        signed_on,
        reporting_due_dates: vec![day(2025, 10, 15)],
    };
    let legal = |today| facts(today, "legal-1");
    then_refused_saying(
        when(&sign_on(day(2025, 7, 2)), &state, &legal(day(2025, 7, 1))),
        "date_in_future",
        &["the agreement (2025-07-02)", "after today (2025-07-01)"],
    );
    then_refused_saying(
        when(&sign_on(day(2025, 6, 14)), &state, &legal(day(2025, 7, 1))),
        "signed_before_decision",
        &["(2025-06-14)", "approved the application (2025-06-15)"],
    );
    // Signed on the day of the decision, recorded that day or later: accepted.
    for today in [day(2025, 6, 15), day(2025, 7, 1)] {
        then_events(
            when(&sign_on(day(2025, 6, 15)), &state, &legal(today)),
            &[AgreementSigned { signed_on: day(2025, 6, 15), reporting_due_dates: vec![day(2025, 10, 15)] }.into()],
        );
    }
}

// ---- funding years, prices, capacity, batches ----

#[test]
fn a_funding_year_records_receipts_and_redirects_unused_subsidy_only_after_it_ends() {
    let year = fy("2025-26");
    let record = |line, amount| RecordFundingReceived { year, line, amount, received_on: day(2025, 4, 1) };
    let received = when(
        &record(BudgetLine::ComputingPowerSubsidy, hkd(857_000_000)),
        &FundingYearState::default(),
        &finance(day(2025, 4, 1)),
    );
    then_events(received.clone(), &[self::received(year, 857_000_000)]);
    let received = received.expect("received");
    let state = given(&received, funding::apply);
    assert_eq!(state.subsidy_left(), hkd(857_000_000));
    then_refused(
        when(&record(BudgetLine::CyberAndDataSecurity, Money::ZERO), &state, &finance(day(2025, 4, 1))),
        "invalid_input",
    );
    let redirect = RedirectUnusedSubsidy { year };
    then_refused(when(&redirect, &state, &finance(day(2026, 3, 31))), "year_not_ended");
    let commit = funding::commit(&state, year, ID, hkd(57_000_000), day(2025, 6, 15)).expect("commit");
    assert!(
        matches!(&commit, FundingEvent::SubsidyCommitted(committed) if committed.committed_on == day(2025, 6, 15)),
        "{commit:?}"
    );
    let state = funding::apply(state, &commit);
    let redirected = when(&redirect, &state, &finance(day(2026, 4, 1)));
    then_events(
        redirected.clone(),
        &[UnusedSubsidyRedirected {
            redirected_on: day(2026, 4, 1),
            amount: hkd(800_000_000),
            to: "publicity_and_talent".into(),
        }
        .into()],
    );
    let closed = given(&[received, vec![commit], redirected.expect("redirected")].concat(), funding::apply);
    then_refused_saying(funding::commit(&closed, year, ID, hkd(1), day(2026, 4, 2)), "year_closed", &["2025-26"]);
    then_refused(when(&redirect, &closed, &finance(day(2026, 4, 2))), "year_closed");
}

#[test]
fn disbursements_the_first_releases_wrote_to_a_funding_year_fold_without_effect() {
    let year = fy("2025-26");
    let commitment =
        funding::commit(&given(&[received(year, 1_000_000)], funding::apply), year, ID, hkd(178_500), day(2025, 6, 15))
            .expect("commit");
    let before = given(&[received(year, 1_000_000), commitment.clone()], funding::apply);
    let [disbursed, reversed] = legacy_disbursement_events();
    let with_history =
        given(&[received(year, 1_000_000), commitment, disbursed.clone(), reversed.clone()], funding::apply);
    assert_eq!(with_history, before);
    assert_eq!(funding::apply(before.clone(), &disbursed), before);
    assert_eq!(with_history.subsidy_left(), hkd(821_500));
    // What the year decides on is unchanged by them: the same commitment is refused or taken.
    then_refused(funding::commit(&with_history, year, ID, hkd(821_501), day(2025, 7, 1)), "budget_short");
    assert!(funding::commit(&with_history, year, ID, hkd(821_500), day(2025, 7, 1)).is_ok());

    // The amounts are the application's own: its charge and reversal carry them.
    let charged = charge(&signed(), &usage(100, "2025-07"), day(2025, 8, 5)).expect("charged");
    let events = [signed(), charged_events(&charged)].concat();
    let state = given(&events, app::apply);
    assert_eq!(state.disbursed, Money::from_cents(297_500));
    assert_eq!(*state.usage.disbursed_by_year(), BTreeMap::from([(year, Money::from_cents(297_500))]));
    assert!(
        matches!(&charged_events(&charged)[..], [E::UsageCharged(line)]
            if line.disbursed_total == Money::from_cents(297_500) && line.financial_year == year),
        "{charged:?}"
    );
}

#[test]
fn a_funding_receipt_is_not_dated_after_today() {
    let year = fy("2025-26");
    let record = |received_on| RecordFundingReceived {
        year,
        line: BudgetLine::ComputingPowerSubsidy,
        amount: hkd(857_000_000),
        received_on,
    };
    let nothing = FundingYearState::default();
    then_refused_saying(
        when(&record(day(2025, 4, 2)), &nothing, &finance(day(2025, 4, 1))),
        "date_in_future",
        &["the funding receipt (2025-04-02)", "after today (2025-04-01)"],
    );
    // Received today, or recorded some days after it was received: accepted, as received.
    for today in [day(2025, 4, 1), day(2025, 4, 10)] {
        then_events(when(&record(day(2025, 4, 1)), &nothing, &finance(today)), &[received(year, 857_000_000)]);
    }
}

#[test]
fn the_rate_in_force_is_the_latest_effective_on_the_day() {
    let set = |state: &PriceScheduleState, cents: i64, from: chrono::NaiveDate| {
        let decision = SetServiceRate {
            service_type: gpu(),
            rate_per_unit: Money::from_cents(cents),
            unit: "node-hour".into(),
            effective_from: from,
        };
        when(&decision, state, &finance(day(2025, 3, 1)))
    };
    let first = set(&PriceScheduleState::default(), 4_250, day(2025, 4, 1));
    then_events(first.clone(), &[rate_set(4_250, day(2025, 4, 1))]);
    let first = first.expect("set");
    let state = given(&first, prices::apply);
    let second = set(&state, 3_900, day(2025, 10, 1)).expect("set");
    let state = given(&[first, second].concat(), prices::apply);
    assert_eq!(state.rate_in_force(&gpu(), day(2025, 9, 30)), Ok(Money::from_cents(4_250)));
    assert_eq!(state.rate_in_force(&gpu(), day(2025, 10, 1)), Ok(Money::from_cents(3_900)));
    then_refused(state.rate_in_force(&gpu(), day(2025, 3, 31)), "no_rate_in_force");
    then_refused(set(&state, 3_900, day(2025, 10, 1)), "no_change");
    then_refused(set(&state, 0, day(2025, 11, 1)), "invalid_input");
    assert!(matches!(&given::<PriceScheduleState, PriceEvent>(&[], prices::apply), s if s.rates.is_empty()));
}

#[test]
fn capacity_not_taken_up_may_be_redeployed_and_no_more() {
    let state = capacity_of(10_000);
    let operations = facts(day(2025, 7, 20), "operations-1");
    let redeploy = |units| RedeployCapacity {
        service_type: gpu(),
        period: period("2025-07"),
        units,
        decision_reference: "AISC-COM-2025-07".into(),
    };
    then_events(
        when(&redeploy(10_000), &state, &operations),
        &[CapacityRedeployed {
            service_type: gpu(),
            period: period("2025-07"),
            units: 10_000,
            decision_reference: "AISC-COM-2025-07".into(),
            redeployed_total: 10_000,
        }
        .into()],
    );
    then_refused(when(&redeploy(10_001), &state, &operations), "redeployment_beyond_untaken");
    then_refused(when(&redeploy(1), &CapacityState::default(), &operations), "no_capacity_declared");
    let declare = |units| DeclareCapacity { service_type: gpu(), period: period("2025-07"), units };
    then_refused(when(&declare(10_000), &state, &operations), "no_change");
    // Capacity cannot be cut below what is already allocated at 90 %.
    let held = capacity::apply(
        state,
        &CapacityAllocated {
            application_id: ID.into(),
            service_type: gpu(),
            period: period("2025-07"),
            units: 9_000,
            allocated_total: 9_000,
            subsidised_cap: 9_000,
        }
        .into(),
    );
    then_refused(when(&declare(9_999), &held, &operations), "capacity_cap_exceeded");
    then_events(
        when(&declare(12_000), &held, &operations),
        &[CapacityDeclared { service_type: gpu(), period: period("2025-07"), units: 12_000, subsidised_cap: 10_800 }
            .into()],
    );
}

#[test]
fn batches_take_applications_in_deadline_order_and_close_only_after_their_deadline() {
    let open = |id: &str, deadline, committee| OpenBatch { batch_id: id.into(), deadline, committee_date: committee };
    let secretariat = facts(day(2025, 4, 1), "secretariat-1");
    let mut events: Vec<BatchEvent> = Vec::new();
    for decision in
        [open("2025-q3", day(2025, 8, 31), day(2025, 9, 15)), open("2025-q2", day(2025, 5, 31), day(2025, 6, 15))]
    {
        events.extend(when(&decision, &given(&events, batches::apply), &secretariat).expect("opened"));
    }
    // Each opened on the day it is recorded, 1 April 2025.
    assert_eq!(events, [q3_opened(), q2_opened()]);
    let calendar: BatchCalendarState = given(&events, batches::apply);
    assert_eq!(calendar.batch_for(day(2025, 5, 1)).expect("batch").0, "2025-q2");
    assert_eq!(calendar.batch_for(day(2025, 6, 1)).expect("batch").0, "2025-q3", "the deadline of 2025-q2 has passed");
    then_refused(calendar.batch_for(day(2025, 9, 1)), "no_open_batch");
    then_refused(when(&open("2025-q2", day(2025, 5, 31), day(2025, 6, 15)), &calendar, &secretariat), "batch_exists");
    then_refused(
        when(&open("2025-q4", day(2025, 11, 30), day(2025, 11, 30)), &calendar, &secretariat),
        "committee_before_deadline",
    );
    then_refused(when(&open("q 4", day(2025, 11, 30), day(2025, 12, 15)), &calendar, &secretariat), "invalid_input");
    let close = CloseBatch { batch_id: "2025-q2".into() };
    then_refused(when(&close, &calendar, &facts(day(2025, 5, 31), "secretariat-1")), "deadline_not_reached");
    let closed = when(&close, &calendar, &facts(day(2025, 6, 1), "secretariat-1"));
    then_events(closed.clone(), &[q2_closed()]);
    let calendar = given(&[events, closed.expect("closed")].concat(), batches::apply);
    then_refused(when(&close, &calendar, &facts(day(2025, 6, 2), "secretariat-1")), "batch_already_closed");
    then_refused(
        when(&CloseBatch { batch_id: "2025-q9".into() }, &calendar, &facts(day(2025, 6, 2), "secretariat-1")),
        "unknown_batch",
    );
    assert_eq!(
        calendar.batch_for(day(2025, 5, 1)).expect("batch").0,
        "2025-q3",
        "a closed batch takes no more applications"
    );
}

/// A funding year's record of the charge of 100 node-hours of July 2025 on 5 August
/// (HK$2,975.00) and of its reversal on 20 August, as the first releases wrote it.
fn legacy_disbursement_events() -> [FundingEvent; 2] {
    [
        SubsidyDisbursed {
            disbursed_on: day(2025, 8, 5),
            application_id: ID.into(),
            usage_id: "u-2025-07-100".into(),
            amount: Money::from_cents(297_500),
            disbursed_total: Money::from_cents(297_500),
        }
        .into(),
        SubsidyDisbursementReversed {
            reversed_on: day(2025, 8, 20),
            application_id: ID.into(),
            usage_id: "u-2025-07-100".into(),
            amount: Money::from_cents(297_500),
            disbursed_total: Money::ZERO,
        }
        .into(),
    ]
}

/// One event of every type of the scheme.
fn one_of_each_event() -> Vec<SchemeEvent> {
    let kpis = Kpis {
        ai_models_trained_or_deployed: 1,
        talents_employed: 8,
        mainland_or_overseas_collaborators: 2,
        publications: 1,
        patents: 0,
    };
    let released = vec![Reservation { year: fy("2025-26"), amount: hkd(470_250) }];
    let lifecycle: Vec<E> = vec![
        ApplicationAmended {
            amended_on: day(2025, 5, 20),
            data_subject_id: Some(DataSubjectId::of_application(ID)),
            details: university_submission().into(),
        }
        .into(),
        ApplicationWithdrawn { reason: "merged".into(), withdrawn_on: day(2025, 5, 21) }.into(),
        RuledIneligible { checked_by: "intake-1".into(), checked_on: day(2025, 6, 2), reasons: vec!["x".into()] }
            .into(),
        ApplicationRejected { committee: record(), reasons: vec!["not justified".into()] }.into(),
        ApplicationDeferred {
            committee: record(),
            reason: "revise".into(),
            to_batch_id: "2025-q3".into(),
            to_batch_deadline: day(2025, 8, 31),
        }
        .into(),
        ProgressReportSubmitted {
            due: day(2025, 10, 15),
            kpis,
            data_subject_id: Some(DataSubjectId::of_application(ID)),
            summary: PersonalText::unsealed("done"),
            submitted_on: day(2025, 10, 1),
        }
        .into(),
        ProgressReportReviewed {
            reviewed_on: day(2025, 10, 20),
            due: day(2025, 10, 15),
            accepted: true,
            data_subject_id: Some(DataSubjectId::of_application(ID)),
            comments: PersonalText::unsealed(""),
            reviewed_by: "reviewer-1".into(),
        }
        .into(),
        ApplicationCompleted { completed_on: day(2026, 1, 31), released: released.clone() }.into(),
        ApplicationTerminated { reason: "abandoned".into(), terminated_on: day(2025, 9, 1), released }.into(),
    ];
    let charged = charge(&signed(), &usage(100, "2025-07"), day(2025, 8, 5)).expect("charged");
    let events = [signed(), charged_events(&charged)].concat();
    let reversal =
        ReverseDisbursement { application_id: ID.into(), usage_id: "u-2025-07-100".into(), reason: "x".into() };
    let reversed = when(&reversal, &given(&events, app::apply), &finance(day(2025, 8, 20))).expect("reversed");
    // The funding year's record of the same charge and reversal, as the first releases wrote
    // it: no decision writes these any more, but they stay readable.
    let [disbursed, reversed_in_year] = legacy_disbursement_events();
    let others: Vec<SchemeEvent> = vec![
        SchemeEvent::Funding(received(fy("2025-26"), 1_000_000)),
        SchemeEvent::Funding(
            SubsidyReleased {
                released_on: day(2026, 1, 31),
                application_id: ID.into(),
                amount: hkd(1),
                committed_total: hkd(2),
                left: hkd(3),
            }
            .into(),
        ),
        SchemeEvent::Funding(
            UnusedSubsidyRedirected {
                redirected_on: day(2026, 4, 1),
                amount: hkd(1),
                to: "publicity_and_talent".into(),
            }
            .into(),
        ),
        SchemeEvent::Capacity(
            CapacityDeclared { service_type: gpu(), period: period("2025-07"), units: 10, subsidised_cap: 9 }.into(),
        ),
        SchemeEvent::Capacity(
            CapacityReleased {
                application_id: ID.into(),
                service_type: gpu(),
                period: period("2025-07"),
                units: 5,
                allocated_total: 0,
            }
            .into(),
        ),
        SchemeEvent::Capacity(
            CapacityRedeployed {
                service_type: gpu(),
                period: period("2025-07"),
                units: 1,
                decision_reference: "AISC-COM-2025-07".into(),
                redeployed_total: 1,
            }
            .into(),
        ),
        SchemeEvent::Batch(q2_opened()),
        SchemeEvent::Batch(q2_closed()),
        SchemeEvent::Price(rate_set(4_250, day(2025, 4, 1))),
        SchemeEvent::DataSubject(erasure::erased(day(2026, 5, 4)).into()),
    ];
    events
        .into_iter()
        .chain(lifecycle)
        .map(SchemeEvent::Application)
        .chain(approval_written().into_iter().map(|(_, event)| event))
        .chain([
            SchemeEvent::Application(charged_events(&charged).remove(0)),
            SchemeEvent::Funding(disbursed),
            SchemeEvent::Application(reversed[0].clone()),
            SchemeEvent::Funding(reversed_in_year),
        ])
        .chain(others)
        .map(sealed_as_stored)
        .collect()
}

/// The event with its personal fields sealed, as the command service stores it (sealed text
/// here is a stand-in: what is tested is its place in the stored form).
fn sealed_as_stored(mut event: SchemeEvent) -> SchemeEvent {
    for field in event.personal_fields() {
        *field.text = PersonalText::Sealed(format!("xc1.sealed-{}-{}", field.subject, field.field));
    }
    event
}

/// A stored event's context: recorded at `at` (RFC 3339).
fn recorded_at(at: &str) -> StoredContext {
    StoredContext::new(at.parse().expect("an RFC 3339 time"))
}

#[test]
fn events_round_trip_through_their_stored_form() {
    let events = one_of_each_event();
    let types: BTreeSet<&str> = events.iter().map(|event| event.event_type()).collect();
    assert_eq!(types, SchemeEvent::event_types().collect::<BTreeSet<_>>(), "one of every event type");
    // Data at the current version is read as stored, whenever it was recorded.
    let contexts = [recorded_at("2025-03-31T17:00:00Z"), recorded_at("2026-12-31T23:59:59Z")];
    for event in events {
        let data = event.to_data().expect("encode");
        assert!(data.get("type").is_none(), "the type is stored apart from the data");
        for context in contexts {
            let back = SchemeEvent::from_stored(event.event_type(), event.schema_version(), &data, context);
            assert_eq!(back.as_ref(), Ok(&event), "recorded at {}", context.recorded_at);
        }
        let newer = SchemeEvent::from_stored(event.event_type(), event.schema_version() + 1, &data, contexts[0]);
        assert!(newer.is_err(), "{} from a newer schema is refused, not guessed at", event.event_type());
        if let SchemeEvent::Application(event) = &event {
            assert_eq!(
                E::from_stored(event.event_type(), event.schema_version(), &data, contexts[0]).as_ref(),
                Ok(event)
            );
        }
    }
    assert!(E::from_stored("NoSuchEvent", 1, &serde_json::json!({}), contexts[0]).is_err());
    assert!(SchemeEvent::from_stored("NoSuchEvent", 1, &serde_json::json!({}), contexts[0]).is_err());
    assert!(
        E::from_stored(
            "BatchOpened",
            q2_opened().schema_version(),
            &q2_opened().to_data().expect("encode"),
            contexts[0]
        )
        .is_err(),
        "not an application event"
    );
}

#[test]
fn every_event_takes_effect_on_its_business_date_and_a_monthly_fact_on_its_months_first_day() {
    let events = one_of_each_event();
    let dated: Vec<(&str, chrono::NaiveDate)> =
        events.iter().map(|event| (event.event_type(), event.effective_on())).collect();
    let allocated: Vec<(&str, chrono::NaiveDate)> = Period::range(period("2025-07"), period("2025-12"))
        .into_iter()
        .map(|month| ("CapacityAllocated", month.first_day()))
        .collect();
    let expected: Vec<(&str, chrono::NaiveDate)> = [
        // The application's life to its first charge and reversal.
        ("ApplicationSubmitted", day(2025, 5, 2)),
        ("EligibilityConfirmed", day(2025, 6, 2)),
        ("AssessmentRecorded", day(2025, 6, 5)),
        ("ApplicationApproved", day(2025, 6, 15)),
        ("AgreementSigned", day(2025, 6, 30)),
        ("UsageCharged", day(2025, 7, 1)), // usage of July 2025, charged on 5 August
        ("ApplicationAmended", day(2025, 5, 20)),
        ("ApplicationWithdrawn", day(2025, 5, 21)),
        ("RuledIneligible", day(2025, 6, 2)),
        ("ApplicationRejected", day(2025, 6, 15)),
        ("ApplicationDeferred", day(2025, 6, 15)),
        ("ProgressReportSubmitted", day(2025, 10, 1)),
        ("ProgressReportReviewed", day(2025, 10, 20)),
        ("ApplicationCompleted", day(2026, 1, 31)),
        ("ApplicationTerminated", day(2025, 9, 1)),
        // The approval, recorded on the day of the committee: the application, the budget,
        // then capacity in each month allocated.
        ("ApplicationApproved", day(2025, 6, 15)),
        ("SubsidyCommitted", day(2025, 6, 15)),
    ]
    .into_iter()
    .chain(allocated)
    .chain([
        // The charge of July 2025's usage on 5 August and its reversal on 20 August (each
        // followed by the funding year's record of it, as the first releases wrote it).
        ("UsageCharged", day(2025, 7, 1)),
        ("SubsidyDisbursed", day(2025, 8, 5)),
        ("DisbursementReversed", day(2025, 8, 20)),
        ("SubsidyDisbursementReversed", day(2025, 8, 20)),
        // Funding years, capacity of July 2025, batches and prices.
        ("FundingReceived", day(2025, 4, 1)),
        ("SubsidyReleased", day(2026, 1, 31)),
        ("UnusedSubsidyRedirected", day(2026, 4, 1)),
        ("CapacityDeclared", day(2025, 7, 1)),
        ("CapacityReleased", day(2025, 7, 1)),
        ("CapacityRedeployed", day(2025, 7, 1)),
        ("BatchOpened", day(2025, 4, 1)),
        ("BatchClosed", day(2025, 6, 1)),
        ("ServiceRateSet", day(2025, 4, 1)),
        ("PersonalDataErased", day(2026, 5, 4)),
    ])
    .collect();
    assert_eq!(dated, expected);
    let types: BTreeSet<&str> = expected.iter().map(|(event_type, _)| *event_type).collect();
    assert_eq!(types, SchemeEvent::event_types().collect::<BTreeSet<_>>(), "a date for every event type");
    // Each aggregate's events have the same date as the scheme's.
    for event in &events {
        let date = match event {
            SchemeEvent::Application(event) => event.effective_on(),
            SchemeEvent::Batch(event) => event.effective_on(),
            SchemeEvent::Capacity(event) => event.effective_on(),
            SchemeEvent::DataSubject(event) => event.effective_on(),
            SchemeEvent::Funding(event) => event.effective_on(),
            SchemeEvent::Price(event) => event.effective_on(),
        };
        assert_eq!(date, event.effective_on(), "{event:?}");
    }
}

/// The types whose first version did not store their business date, and its field.
// (`ProgressReportReviewed` too, whose v2 → v3 step seals its comments: its v1 and v2 golden
// fixtures decode through both steps.)
const BUSINESS_DATE_ADDED_IN_V2: [(&str, &str); 8] = [
    ("AssessmentRecorded", "assessed_on"),
    ("DisbursementReversed", "reversed_on"),
    ("SubsidyCommitted", "committed_on"),
    ("SubsidyReleased", "released_on"),
    ("SubsidyDisbursed", "disbursed_on"),
    ("SubsidyDisbursementReversed", "reversed_on"),
    ("UnusedSubsidyRedirected", "redirected_on"),
    ("BatchOpened", "opened_on"),
];

#[test]
fn the_stored_context_dates_an_event_by_the_hong_kong_day_it_was_recorded() {
    // Hong Kong is UTC+8 all year: its day starts at 16:00 UTC the day before.
    for (at, hong_kong_day) in [
        ("2025-03-31T00:00:00Z", day(2025, 3, 31)),
        ("2025-03-31T15:59:59Z", day(2025, 3, 31)),
        ("2025-03-31T16:00:00Z", day(2025, 4, 1)),
        ("2025-03-31T17:00:00Z", day(2025, 4, 1)),
        ("2025-12-31T16:30:00Z", day(2026, 1, 1)),
        ("2025-07-01T00:30:00+08:00", day(2025, 7, 1)),
    ] {
        assert_eq!(recorded_at(at).recorded_on(), hong_kong_day, "recorded at {at}");
    }
}

#[test]
fn a_version_1_event_without_its_business_date_takes_the_hong_kong_day_it_was_recorded() {
    let events = one_of_each_event();
    // Recorded at 1 am on 1 April 2025 in Hong Kong: still 31 March in UTC.
    let context = recorded_at("2025-03-31T17:00:00Z");
    for (event_type, field) in BUSINESS_DATE_ADDED_IN_V2 {
        let event = events.iter().find(|event| event.event_type() == event_type).expect("one of each event");
        assert_eq!(event.schema_version(), 2, "{event_type} stores its {field} from version 2");
        let mut current = event.to_data().expect("encode");
        let date = current.as_object_mut().and_then(|fields| fields.remove(field));
        assert!(date.is_some_and(|date| date.is_string()), "{event_type} stores its business date as {field}");
        let version_1 = current;

        let upcast = SchemeEvent::from_stored(event_type, 1, &version_1, context).expect("decode v1");
        assert_eq!(upcast.effective_on(), day(2025, 4, 1), "{event_type}");
        // Nothing else changes: the event is the one stored, dated the day it was recorded.
        let mut expected = version_1.clone();
        expected[field] = serde_json::json!("2025-04-01");
        assert_eq!(upcast.to_data(), Ok(expected), "{event_type}");
        // A day earlier in Hong Kong, a day earlier in the event.
        let day_before = SchemeEvent::from_stored(event_type, 1, &version_1, recorded_at("2025-03-31T15:59:59Z"));
        assert_eq!(day_before.map(|event| event.effective_on()), Ok(day(2025, 3, 31)), "{event_type}");

        // Version 1 data never held the date: data that does is refused, not overwritten.
        let mut holding_a_date = version_1.clone();
        holding_a_date[field] = serde_json::json!("2024-01-02");
        match SchemeEvent::from_stored(event_type, 1, &holding_a_date, context) {
            Ok(event) => panic!("{event_type} v1 with {field} was accepted as {event:?}"),
            Err(error) => {
                assert_eq!(error.event_type, event_type);
                let message = error.to_string();
                assert!(message.contains(field) && message.contains("v1"), "{message}");
            }
        }
        // And version 2 data without its date is refused, not dated.
        let refused = SchemeEvent::from_stored(event_type, 2, &version_1, context);
        assert!(refused.as_ref().is_err_and(|error| error.to_string().contains(field)), "{event_type}: {refused:?}");
    }
    // The types still at version 1 stored their business date from the first: read as stored.
    for event in events.iter().filter(|event| event.schema_version() == 1) {
        let data = event.to_data().expect("encode");
        let read = SchemeEvent::from_stored(event.event_type(), 1, &data, context);
        assert_eq!(read.as_ref(), Ok(event), "{} is read as stored", event.event_type());
    }
}

#[test]
fn a_recorded_event_is_decoded_with_the_time_it_was_recorded() {
    let mut opened = q2_opened().to_data().expect("encode");
    opened.as_object_mut().expect("an object").remove("opened_on");
    let recorded = RecordedEvent {
        position: Position(7),
        stream: streams::batches().expect("stream"),
        stream_version: 1,
        event_id: uuid::Uuid::nil(),
        event_type: "BatchOpened".into(),
        schema_version: 1,
        data: opened,
        metadata: serde_json::json!({}),
        recorded_at: "2025-03-31T17:00:00Z".parse().expect("time"),
    };
    let expected = BatchOpened {
        opened_on: day(2025, 4, 1),
        batch_id: "2025-q2".into(),
        deadline: day(2025, 5, 31),
        committee_date: day(2025, 6, 15),
    };
    assert_eq!(recorded.decode::<BatchEvent>(), Ok(expected.clone().into()));
    assert_eq!(recorded.decode::<SchemeEvent>(), Ok(SchemeEvent::Batch(expected.into())));
}

/// Erasure of a data subject's personal data (the record of it; the key is destroyed outside).
mod erasure {
    use super::*;
    use crate::command_service::StreamDecision;
    use crate::subsidy::data_subjects::{self, ErasureBasis, PersonalDataErased, RecordErasure};

    fn subject() -> DataSubjectId {
        DataSubjectId::of_application(ID)
    }

    pub(super) fn erased(on: chrono::NaiveDate) -> PersonalDataErased {
        PersonalDataErased {
            data_subject_id: subject(),
            erased_on: on,
            erased_by: "admin@cyberport.hk".into(),
            basis: ErasureBasis::DataSubjectRequest,
            reason: "Request DSR-2026-014".into(),
        }
    }

    fn record_erasure(reason: &str) -> RecordErasure {
        RecordErasure { data_subject_id: subject(), basis: ErasureBasis::DataSubjectRequest, reason: reason.into() }
    }

    #[test]
    fn an_erasure_is_recorded_on_the_subjects_stream_with_who_when_and_why() {
        let decision = record_erasure("  Request DSR-2026-014 ");
        assert_eq!(StreamDecision::stream(&decision).expect("stream").as_str(), format!("data-subject-{}", subject()));
        let state = given(&[], data_subjects::apply);
        then_events(
            when(&decision, &state, &facts(day(2026, 5, 4), "admin@cyberport.hk")),
            &[erased(day(2026, 5, 4)).into()],
        );
    }

    #[test]
    fn a_second_erasure_of_the_same_subject_decides_nothing() {
        let state = given(&[erased(day(2026, 5, 4)).into()], data_subjects::apply);
        assert_eq!(state.erased_on, Some(day(2026, 5, 4)));
        then_events(when(&record_erasure("Again"), &state, &facts(day(2026, 6, 1), "admin@cyberport.hk")), &[]);
        // Folding a repeated event keeps the first date.
        let twice = given(&[erased(day(2026, 5, 4)).into(), erased(day(2026, 6, 1)).into()], data_subjects::apply);
        assert_eq!(twice.erased_on, Some(day(2026, 5, 4)));
    }

    #[test]
    fn an_erasure_needs_a_reason_of_at_most_500_characters() {
        let state = given(&[], data_subjects::apply);
        let today = facts(day(2026, 5, 4), "admin@cyberport.hk");
        then_refused_saying(when(&record_erasure("   "), &state, &today), "invalid_input", &["reason", "500"]);
        then_refused(when(&record_erasure(&"x".repeat(501)), &state, &today), "invalid_input");
        assert_eq!(when(&record_erasure(&"é".repeat(500)), &state, &today).map(|events| events.len()), Ok(1));
    }

    #[test]
    fn erasure_bases_are_stored_by_their_names() {
        for basis in [ErasureBasis::DataSubjectRequest, ErasureBasis::RetentionPeriodEnded] {
            assert_eq!(ErasureBasis::parse(basis.as_str()), Ok(basis));
            assert_eq!(serde_json::to_value(basis).expect("json"), serde_json::json!(basis.as_str()));
        }
        then_refused(ErasureBasis::parse("because"), "invalid_input");
    }
}
