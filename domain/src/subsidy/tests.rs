//! Given / when / then: every rule and lifecycle transition of the scheme's aggregates.

use std::collections::BTreeMap;

use super::application::{
    self as app, ApplicationCommand as C, ApplicationEvent as E, ApplicationState, Approve, ChargeUsage, Kpis, Status,
};
use super::batches::{self, BatchCalendarState, BatchCommand, BatchEvent};
use super::capacity::{self, Allocation, CapacityCommand, CapacityEvent, CapacityState};
use super::funding::{self, BudgetLine, FundingCommand, FundingEvent, FundingYearState};
use super::prices::{self, PriceCommand, PriceEvent, PriceScheduleState};
use super::testing::*;
use super::values::{FinancialYear, Money, Period, RateBps};
use crate::command_service::EventCodec;

const ID: &str = "0b7e5c1a";

fn fy(text: &str) -> FinancialYear {
    FinancialYear::parse(text).expect("year")
}

fn submitted() -> Vec<E> {
    vec![E::ApplicationSubmitted {
        application_id: ID.into(),
        batch_id: "2025-q2".into(),
        batch_deadline: day(2025, 5, 31),
        submitted_on: day(2025, 5, 2),
        submission: university_submission(),
    }]
}

fn eligible() -> Vec<E> {
    let mut events = submitted();
    events.push(E::EligibilityConfirmed { checked_by: "intake-1".into(), checked_on: day(2025, 6, 2) });
    events
}

fn assessed() -> Vec<E> {
    let mut events = eligible();
    events.push(E::AssessmentRecorded {
        assessor: "assessor-1".into(),
        scores: scores(),
        total_score: 32,
        recommended_rate: rate(7_000),
        recommended_ceiling: hkd(500_000),
        duration_months: 6,
        conditions: vec![],
        no_conflict_declared: true,
    });
    events
}

fn budgets(subsidy_dollars: i64) -> BTreeMap<FinancialYear, FundingYearState> {
    [fy("2025-26"), fy("2026-27")]
        .into_iter()
        .map(|year| {
            let state = funding::apply(
                FundingYearState::default(),
                &FundingEvent::FundingReceived {
                    year,
                    line: BudgetLine::ComputingPowerSubsidy,
                    amount: hkd(subsidy_dollars),
                    line_total: hkd(subsidy_dollars),
                    received_on: year.first_day(),
                },
            );
            (year, state)
        })
        .collect()
}

fn capacity_of(units: u64) -> CapacityState {
    let events: Vec<CapacityEvent> = Period::range(period("2025-07"), period("2026-06"))
        .into_iter()
        .map(|month| CapacityEvent::CapacityDeclared {
            service_type: gpu(),
            period: month,
            units,
            subsidised_cap: units * 9 / 10,
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

fn approve(rate_bps: u32, exceptional: Option<&str>) -> Approve {
    Approve {
        decision: meeting("secretariat-1"),
        rate: rate(rate_bps),
        exceptional_reason: exceptional.map(str::to_string),
        allocations: allocations(1_000),
        ceiling: hkd(500_000),
        start: day(2025, 7, 1),
        end: day(2025, 12, 31),
        conditions: vec!["quarterly progress reports".into()],
    }
}

fn decide(state: &ApplicationState, command: Approve) -> Result<app::ApprovalOutcome, super::DomainError> {
    app::decide_approval(state, &closed_batch(), &budgets(1_000_000), &capacity_of(10_000), command)
}

fn approved() -> Vec<E> {
    let mut events = assessed();
    let outcome = decide(&given(&events, app::apply), approve(7_000, None)).expect("approved");
    events.extend(outcome.application);
    events
}

fn signed() -> Vec<E> {
    let mut events = approved();
    events.push(E::AgreementSigned {
        signed_on: day(2025, 6, 30),
        reporting_due_dates: vec![day(2025, 10, 15), day(2026, 1, 15)],
    });
    events
}

fn usage(units: u64, month: &str, today: chrono::NaiveDate) -> ChargeUsage {
    ChargeUsage {
        usage_id: format!("u-{month}-{units}"),
        service_type: gpu(),
        period: period(month),
        units,
        rate_in_force: Money::from_cents(4_250),
        today,
    }
}

fn budget_2025() -> FundingYearState {
    budgets(1_000_000).remove(&fy("2025-26")).expect("year")
}

// ---- submission, eligibility, assessment ----

#[test]
fn a_submission_is_placed_in_its_batch_and_validated() {
    let state = ApplicationState::default();
    let command = C::Submit {
        application_id: ID.into(),
        submission: university_submission(),
        today: day(2025, 5, 2),
        batch_id: "2025-q2".into(),
        batch_deadline: day(2025, 5, 31),
    };
    then_events(app::handle(&state, command.clone()), &submitted());
    then_refused(app::handle(&given(&submitted(), app::apply), command), "application_exists");

    let mut reversed = university_submission();
    reversed.requested_resources[0].first_period = period("2026-01");
    let refused = app::handle(
        &state,
        C::Submit {
            application_id: ID.into(),
            submission: reversed,
            today: day(2025, 5, 2),
            batch_id: "b".into(),
            batch_deadline: day(2025, 5, 31),
        },
    );
    then_refused(refused, "invalid_input");
    let mut too_high = university_submission();
    too_high.requested_rate = rate(9_500);
    let refused = app::handle(
        &state,
        C::Submit {
            application_id: ID.into(),
            submission: too_high,
            today: day(2025, 5, 2),
            batch_id: "b".into(),
            batch_deadline: day(2025, 5, 31),
        },
    );
    then_refused(refused, "rate_above_ceiling");
}

#[test]
fn amendments_and_withdrawals_only_while_the_batch_is_open() {
    let state = given(&submitted(), app::apply);
    let mut changed = university_submission();
    changed.team_size = 15;
    then_events(
        app::handle(&state, C::Amend { submission: changed.clone(), today: day(2025, 5, 31) }),
        &[E::ApplicationAmended { amended_on: day(2025, 5, 31), submission: changed.clone() }],
    );
    then_refused(
        app::handle(&state, C::Amend { submission: changed, today: day(2025, 6, 1) }),
        "batch_deadline_passed",
    );
    then_refused(
        app::handle(&state, C::Amend { submission: university_submission(), today: day(2025, 5, 3) }),
        "no_change",
    );
    then_refused(
        app::handle(&state, C::Withdraw { reason: "late".into(), today: day(2025, 6, 1) }),
        "batch_deadline_passed",
    );
    let withdrawn =
        app::handle(&state, C::Withdraw { reason: "merged with another project".into(), today: day(2025, 5, 10) })
            .expect("withdraw");
    let mut events = submitted();
    events.extend(withdrawn);
    let state = given(&events, app::apply);
    assert_eq!(state.status, Status::Withdrawn);
    let refused = then_refused(
        app::handle(&state, C::CheckEligibility { checked_by: "i".into(), today: day(2025, 6, 2) }),
        "application_closed",
    );
    assert!(refused.to_string().contains("withdrawn"));
}

#[test]
fn eligibility_is_confirmed_or_ruled_out_with_reasons_once() {
    let state = given(&submitted(), app::apply);
    then_events(
        app::handle(&state, C::CheckEligibility { checked_by: "intake-1".into(), today: day(2025, 6, 2) }),
        &[E::EligibilityConfirmed { checked_by: "intake-1".into(), checked_on: day(2025, 6, 2) }],
    );
    let eligible_state = given(&eligible(), app::apply);
    then_refused(
        app::handle(&eligible_state, C::CheckEligibility { checked_by: "intake-1".into(), today: day(2025, 6, 3) }),
        "no_change",
    );

    let check = |submission: super::application::Submission| {
        let events = vec![E::ApplicationSubmitted {
            application_id: ID.into(),
            batch_id: "b".into(),
            batch_deadline: day(2025, 5, 31),
            submitted_on: day(2025, 5, 2),
            submission,
        }];
        match app::handle(
            &given(&events, app::apply),
            C::CheckEligibility { checked_by: "intake-1".into(), today: day(2025, 6, 2) },
        ) {
            Ok(mut events) => events.remove(0),
            Err(error) => panic!("{error}"),
        }
    };
    let mut enterprise = university_submission();
    enterprise.category = super::values::ApplicantCategory::StrategicEnterprise;
    enterprise.sub_type = "strategic_enterprise".into();
    let E::RuledIneligible { reasons, .. } = check(enterprise.clone()) else {
        panic!("a strategic enterprise without undertakings is ineligible")
    };
    assert!(reasons[0].contains("undertakings"), "{reasons:?}");
    enterprise.undertakings = Some(super::application::Undertakings {
        land_in_hong_kong: true,
        professionals_to_employ: 0,
        contribution: "x".into(),
    });
    let E::RuledIneligible { reasons, .. } = check(enterprise.clone()) else { panic!("no professionals stated") };
    assert!(reasons[0].contains("professionals"), "{reasons:?}");
    enterprise.undertakings = Some(super::application::Undertakings {
        land_in_hong_kong: true,
        professionals_to_employ: 40,
        contribution: "A regional AI lab".into(),
    });
    assert!(matches!(check(enterprise), E::EligibilityConfirmed { .. }));

    let mut double_funded = university_submission();
    double_funded.other_government_funding = true;
    let E::RuledIneligible { reasons, .. } = check(double_funded) else { panic!("double funding") };
    assert!(reasons[0].contains("double funding"));
    let mut not_listed = university_submission();
    not_listed.sub_type = "private_college".into();
    assert!(matches!(check(not_listed), E::RuledIneligible { .. }));
}

#[test]
fn an_assessment_needs_eligibility_a_no_conflict_declaration_and_valid_scores() {
    let assess = |state: &ApplicationState, no_conflict: bool, a: u8| {
        let mut scores = scores();
        scores.a_meets_hong_kong_needs = a;
        app::handle(
            state,
            C::RecordAssessment {
                assessor: "assessor-1".into(),
                scores,
                recommended_rate: rate(7_000),
                recommended_ceiling: hkd(500_000),
                duration_months: 6,
                conditions: vec![],
                no_conflict_declared: no_conflict,
            },
        )
    };
    then_refused(assess(&given(&submitted(), app::apply), true, 8), "wrong_stage");
    let state = given(&eligible(), app::apply);
    then_refused(assess(&state, false, 8), "conflict_of_interest_not_declared");
    then_refused(assess(&state, true, 11), "score_out_of_range");
    let events = assess(&state, true, 8).expect("assessed");
    assert!(matches!(&events[0], E::AssessmentRecorded { total_score: 32, .. }));
}

// ---- the committee ----

#[test]
fn the_subsidy_rate_is_at_most_70_percent_unless_exceptional_with_a_reason_and_never_above_90() {
    let state = given(&assessed(), app::apply);
    assert!(decide(&state, approve(7_000, None)).is_ok());
    then_refused(decide(&state, approve(7_001, None)), "rate_needs_exceptional_case");
    then_refused(decide(&state, approve(8_500, Some("  "))), "exceptional_without_reason");
    let outcome = decide(&state, approve(9_000, Some("unique public-health impact"))).expect("exceptional");
    assert!(
        matches!(&outcome.application[0], E::ApplicationApproved { approval, .. } if approval.rate == RateBps::EXCEPTIONAL_CAP)
    );
    then_refused(decide(&state, approve(9_001, Some("anything"))), "rate_above_ceiling");
}

#[test]
fn approval_reserves_the_ceiling_in_each_year_it_spans_and_is_refused_when_the_budget_is_short() {
    let state = given(&assessed(), app::apply);
    let mut spanning = approve(7_000, None);
    spanning.start = day(2026, 1, 1);
    spanning.end = day(2026, 6, 30);
    spanning.allocations = vec![Allocation { service_type: gpu(), period: period("2026-02"), units: 100 }];
    spanning.ceiling = Money::from_cents(10_000_001);
    let outcome = decide(&state, spanning).expect("approved");
    let reserved: Vec<(FinancialYear, i64)> = outcome
        .budgets
        .iter()
        .map(|(year, event)| match event {
            FundingEvent::SubsidyCommitted { amount, .. } => (*year, amount.cents()),
            other => panic!("{other:?}"),
        })
        .collect();
    // 90 days in 2025-26, 91 in 2026-27; the parts add up to the ceiling to the cent.
    assert_eq!(reserved, vec![(fy("2025-26"), 4_972_376), (fy("2026-27"), 5_027_625)]);
    assert_eq!(reserved.iter().map(|(_, cents)| cents).sum::<i64>(), 10_000_001);

    let short =
        app::decide_approval(&state, &closed_batch(), &budgets(400_000), &capacity_of(10_000), approve(7_000, None));
    let refusal = then_refused(short, "budget_short");
    assert!(refusal.to_string().contains("2025-26"));
}

#[test]
fn allocations_stay_within_90_percent_of_capacity_in_every_month() {
    let state = given(&assessed(), app::apply);
    let mut at_cap = approve(7_000, None);
    at_cap.allocations = allocations(9_000);
    assert!(decide(&state, at_cap).is_ok());
    let mut over = approve(7_000, None);
    over.allocations = allocations(9_000);
    over.allocations[3].units = 9_001;
    let refusal = then_refused(decide(&state, over), "capacity_cap_exceeded");
    assert!(refusal.to_string().contains("2025-10"), "{refusal}");
    // What others already hold counts.
    let held = capacity::apply(
        capacity_of(10_000),
        &CapacityEvent::CapacityAllocated {
            application_id: "other".into(),
            service_type: gpu(),
            period: period("2025-08"),
            units: 8_500,
            allocated_total: 8_500,
            subsidised_cap: 9_000,
        },
    );
    let refused = app::decide_approval(&state, &closed_batch(), &budgets(1_000_000), &held, approve(7_000, None));
    then_refused(refused, "capacity_cap_exceeded");
}

#[test]
fn the_assessor_cannot_decide_recused_members_are_not_present_and_a_quorum_is_needed() {
    let state = given(&assessed(), app::apply);
    let mut by_assessor = approve(7_000, None);
    by_assessor.decision.recorded_by = "assessor-1".into();
    then_refused(decide(&state, by_assessor), "assessor_cannot_decide");
    let mut recused_present = approve(7_000, None);
    recused_present.decision.members_present.push("member-d".into());
    then_refused(decide(&state, recused_present), "recused_member_counted_present");
    let mut thin = approve(7_000, None);
    thin.decision.members_present.truncate(2);
    then_refused(decide(&state, thin), "quorum_not_met");
    let outcome = decide(&state, approve(7_000, None)).expect("approved");
    let E::ApplicationApproved { meeting, .. } = &outcome.application[0] else { panic!("approved") };
    assert_eq!(meeting.members_recused, vec!["member-d".to_string()], "recusals are recorded");
}

#[test]
fn the_committee_decides_only_after_the_batch_closes_and_can_reject_or_defer() {
    let state = given(&assessed(), app::apply);
    then_refused(
        app::decide_approval(&state, &open_batch(), &budgets(1_000_000), &capacity_of(10_000), approve(7_000, None)),
        "batch_still_open",
    );
    let rejected = app::handle(
        &state,
        C::Reject {
            decision: meeting("secretariat-1"),
            reasons: vec!["computing need not justified".into()],
            batch: closed_batch(),
        },
    )
    .expect("reject");
    let mut events = assessed();
    events.extend(rejected);
    let closed = given(&events, app::apply);
    assert_eq!(closed.status, Status::Rejected);
    then_refused(
        app::handle(
            &closed,
            C::SignAgreement { signed_on: day(2025, 7, 1), reporting_due_dates: vec![day(2025, 10, 1)] },
        ),
        "application_closed",
    );

    let later = super::batches::Batch { deadline: day(2025, 8, 31), committee_date: day(2025, 9, 15), closed: false };
    let deferred = app::handle(
        &state,
        C::Defer {
            decision: meeting("secretariat-1"),
            reason: "needs a revised budget".into(),
            batch: closed_batch(),
            to_batch_id: "2025-q3".into(),
            to_batch: later.clone(),
        },
    )
    .expect("defer");
    let mut events = assessed();
    events.extend(deferred);
    let deferred_state = given(&events, app::apply);
    assert_eq!((deferred_state.status, deferred_state.batch_id.as_deref()), (Status::Deferred, Some("2025-q3")));
    // Decided in the later batch once it closes.
    let later_closed = super::batches::Batch { closed: true, ..later };
    assert!(
        app::decide_approval(
            &deferred_state,
            &later_closed,
            &budgets(1_000_000),
            &capacity_of(10_000),
            approve(7_000, None)
        )
        .is_ok()
    );
}

// ---- agreement, usage and disbursement, progress reports ----

#[test]
fn nothing_is_disbursed_before_the_agreement_is_signed() {
    let state = given(&approved(), app::apply);
    then_refused(
        app::charge_usage(&state, &budget_2025(), usage(10, "2025-07", day(2025, 8, 5))),
        "agreement_not_signed",
    );
}

#[test]
fn usage_is_charged_at_the_rate_in_force_times_the_approved_rate_rounded_half_up() {
    let state = given(&signed(), app::apply);
    let (event, budget_event) =
        app::charge_usage(&state, &budget_2025(), usage(333, "2025-07", day(2025, 8, 5))).expect("charged");
    // 333 × HK$42.50 = HK$14,152.50; × 70 % = HK$9,906.75.
    let E::UsageCharged { gross, subsidy, financial_year, ceiling_left, .. } = &event else { panic!("{event:?}") };
    assert_eq!((gross.cents(), subsidy.cents()), (1_415_250, 990_675));
    assert_eq!(*financial_year, fy("2025-26"));
    assert_eq!(ceiling_left.cents(), 50_000_000 - 990_675);
    assert!(matches!(budget_event, FundingEvent::SubsidyDisbursed { amount, .. } if amount.cents() == 990_675));
}

#[test]
fn usage_outside_the_period_above_the_allocation_or_beyond_the_ceiling_is_refused() {
    let state = given(&signed(), app::apply);
    then_refused(
        app::charge_usage(&state, &budget_2025(), usage(10, "2026-01", day(2025, 8, 5))),
        "usage_outside_approved_period",
    );
    then_refused(
        app::charge_usage(&state, &budget_2025(), usage(1_001, "2025-07", day(2025, 8, 5))),
        "units_above_allocation",
    );
    let (first, _) = app::charge_usage(&state, &budget_2025(), usage(600, "2025-07", day(2025, 8, 5))).expect("first");
    let mut events = signed();
    events.push(first);
    let state = given(&events, app::apply);
    let refusal = then_refused(
        app::charge_usage(&state, &budget_2025(), usage(401, "2025-07", day(2025, 8, 6))),
        "units_above_allocation",
    );
    assert!(refusal.to_string().contains("600 used"), "{refusal}");

    let mut expensive = usage(1_000, "2025-08", day(2025, 9, 5));
    expensive.rate_in_force = hkd(1_000);
    then_refused(app::charge_usage(&state, &budget_2025(), expensive), "ceiling_exceeded");
}

#[test]
fn a_disbursement_is_reversed_by_a_new_event_and_only_once() {
    let state = given(&signed(), app::apply);
    let (charged, _) =
        app::charge_usage(&state, &budget_2025(), usage(100, "2025-07", day(2025, 8, 5))).expect("charged");
    let mut events = signed();
    events.push(charged);
    let state = given(&events, app::apply);
    let (reversal, budget_event) =
        app::reverse_disbursement(&state, &budget_2025(), "u-2025-07-100", "metering error".into()).expect("reversed");
    assert!(
        matches!(&reversal, E::DisbursementReversed { amount, disbursed_total, .. } if amount.cents() == 297_500 && disbursed_total.cents() == 0)
    );
    assert!(matches!(budget_event, FundingEvent::SubsidyDisbursementReversed { .. }));
    events.push(reversal);
    let state = given(&events, app::apply);
    assert_eq!(state.disbursed, Money::ZERO);
    then_refused(
        app::reverse_disbursement(&state, &budget_2025(), "u-2025-07-100", "again".into()),
        "already_reversed",
    );
    then_refused(app::reverse_disbursement(&state, &budget_2025(), "u-none", "x".into()), "unknown_usage");
    // The units are free again.
    assert!(app::charge_usage(&state, &budget_2025(), usage(1_000, "2025-07", day(2025, 8, 7))).is_ok());
}

#[test]
fn an_overdue_progress_report_blocks_disbursement_until_it_is_submitted() {
    let state = given(&signed(), app::apply);
    let late = usage(10, "2025-09", day(2025, 10, 16));
    let refusal = then_refused(app::charge_usage(&state, &budget_2025(), late.clone()), "progress_report_overdue");
    assert!(refusal.to_string().contains("2025-10-15"));
    let kpis = Kpis {
        ai_models_trained_or_deployed: 1,
        talents_employed: 8,
        mainland_or_overseas_collaborators: 2,
        publications: 1,
        patents: 0,
    };
    let report = app::handle(
        &state,
        C::SubmitProgressReport {
            due: day(2025, 10, 15),
            kpis: kpis.clone(),
            summary: "pre-training done".into(),
            today: day(2025, 10, 16),
        },
    )
    .expect("report");
    let mut events = signed();
    events.extend(report);
    let state = given(&events, app::apply);
    assert!(app::charge_usage(&state, &budget_2025(), late).is_ok());
    then_refused(
        app::handle(
            &state,
            C::SubmitProgressReport {
                due: day(2025, 10, 15),
                kpis: kpis.clone(),
                summary: "again".into(),
                today: day(2025, 10, 17),
            },
        ),
        "report_not_awaiting",
    );
    then_refused(
        app::handle(
            &state,
            C::SubmitProgressReport { due: day(2025, 11, 1), kpis, summary: "x".into(), today: day(2025, 10, 17) },
        ),
        "unknown_report",
    );

    then_refused(
        app::handle(
            &state,
            C::ReviewProgressReport {
                due: day(2025, 10, 15),
                accepted: false,
                comments: " ".into(),
                reviewed_by: "r".into(),
            },
        ),
        "invalid_input",
    );
    let reviewed = app::handle(
        &state,
        C::ReviewProgressReport {
            due: day(2025, 10, 15),
            accepted: false,
            comments: "add utilisation figures".into(),
            reviewed_by: "reviewer-1".into(),
        },
    )
    .expect("review");
    events.extend(reviewed);
    let state = given(&events, app::apply);
    assert_eq!(state.reports.get(&day(2025, 10, 15)), Some(&super::application::ReportState::RevisionRequested));
}

#[test]
fn completion_and_termination_release_the_unused_commitment_and_close_the_application() {
    let state = given(&signed(), app::apply);
    let (charged, _) =
        app::charge_usage(&state, &budget_2025(), usage(1_000, "2025-07", day(2025, 8, 5))).expect("charged");
    let mut events = signed();
    events.push(charged);
    let state = given(&events, app::apply);
    let mut held = budgets(1_000_000);
    let committed = funding::commit(&held[&fy("2025-26")], ID, hkd(500_000)).expect("commit");
    held.insert(fy("2025-26"), funding::apply(held[&fy("2025-26")].clone(), &committed));

    let (completed, releases) = app::close_project(&state, &held, day(2026, 1, 31), None).expect("complete");
    // HK$500,000 reserved, HK$29,750 disbursed: HK$470,250 released.
    assert!(matches!(&completed, E::ApplicationCompleted { released, .. } if released[0].amount.cents() == 47_025_000));
    assert!(
        matches!(&releases[0].1, FundingEvent::SubsidyReleased { amount, committed_total, .. } if amount.cents() == 47_025_000 && committed_total.cents() == 2_975_000)
    );

    let (terminated, _) =
        app::close_project(&state, &held, day(2025, 9, 1), Some("project abandoned".into())).expect("terminate");
    assert!(matches!(terminated, E::ApplicationTerminated { .. }));
    then_refused(app::close_project(&state, &held, day(2025, 9, 1), Some(" ".into())), "invalid_input");
    events.push(completed);
    let done = given(&events, app::apply);
    for refused in [
        app::charge_usage(&done, &budget_2025(), usage(1, "2025-08", day(2025, 9, 1))).map(|_| ()),
        app::close_project(&done, &held, day(2026, 2, 1), None).map(|_| ()),
        app::handle(&done, C::Withdraw { reason: "x".into(), today: day(2026, 2, 1) }).map(|_| ()),
    ] {
        then_refused(refused, "application_closed");
    }
}

// ---- funding years, prices, capacity, batches ----

#[test]
fn a_funding_year_records_receipts_and_redirects_unused_subsidy_only_after_it_ends() {
    let year = fy("2025-26");
    let received = funding::handle(
        &FundingYearState::default(),
        FundingCommand::RecordFundingReceived {
            year,
            line: BudgetLine::ComputingPowerSubsidy,
            amount: hkd(857_000_000),
            received_on: day(2025, 4, 1),
        },
    )
    .expect("received");
    let state = given(&received, funding::apply);
    assert_eq!(state.subsidy_left(), hkd(857_000_000));
    then_refused(
        funding::handle(
            &state,
            FundingCommand::RecordFundingReceived {
                year,
                line: BudgetLine::CyberAndDataSecurity,
                amount: Money::ZERO,
                received_on: day(2025, 4, 1),
            },
        ),
        "invalid_input",
    );
    then_refused(
        funding::handle(&state, FundingCommand::RedirectUnusedSubsidy { today: day(2026, 3, 31) }),
        "year_not_ended",
    );
    let commit = funding::commit(&state, ID, hkd(57_000_000)).expect("commit");
    let state = funding::apply(state, &commit);
    let redirected =
        funding::handle(&state, FundingCommand::RedirectUnusedSubsidy { today: day(2026, 4, 1) }).expect("redirect");
    assert_eq!(
        redirected,
        vec![FundingEvent::UnusedSubsidyRedirected { amount: hkd(800_000_000), to: "publicity_and_talent".into() }]
    );
    let closed = given(&[received, vec![commit], redirected].concat(), funding::apply);
    then_refused(funding::commit(&closed, ID, hkd(1)), "year_closed");
    then_refused(
        funding::handle(&closed, FundingCommand::RedirectUnusedSubsidy { today: day(2026, 4, 2) }),
        "year_closed",
    );
}

#[test]
fn the_rate_in_force_is_the_latest_effective_on_the_day() {
    let set = |state: &PriceScheduleState, cents: i64, from: chrono::NaiveDate| {
        prices::handle(
            state,
            PriceCommand::SetRate {
                service_type: gpu(),
                rate_per_unit: Money::from_cents(cents),
                unit: "node-hour".into(),
                effective_from: from,
            },
        )
    };
    let first = set(&PriceScheduleState::default(), 4_250, day(2025, 4, 1)).expect("set");
    let state = given(&first, prices::apply);
    let second = set(&state, 3_900, day(2025, 10, 1)).expect("set");
    let state = given(&[first, second].concat(), prices::apply);
    assert_eq!(state.rate_in_force(&gpu(), day(2025, 9, 30)), Ok(Money::from_cents(4_250)));
    assert_eq!(state.rate_in_force(&gpu(), day(2025, 10, 1)), Ok(Money::from_cents(3_900)));
    then_refused(state.rate_in_force(&gpu(), day(2025, 3, 31)), "no_rate_in_force");
    then_refused(set(&state, 3_900, day(2025, 10, 1)), "no_change");
    assert!(matches!(&given::<PriceScheduleState, PriceEvent>(&[], prices::apply), s if s.rates.is_empty()));
}

#[test]
fn capacity_not_taken_up_may_be_redeployed_and_no_more() {
    let state = capacity_of(10_000);
    let redeploy = |units| CapacityCommand::RedeployCapacity {
        service_type: gpu(),
        period: period("2025-07"),
        units,
        decision_reference: "AISC-COM-2025-07".into(),
    };
    assert!(capacity::handle(&state, redeploy(10_000)).is_ok());
    then_refused(capacity::handle(&state, redeploy(10_001)), "redeployment_beyond_untaken");
    then_refused(capacity::handle(&CapacityState::default(), redeploy(1)), "no_capacity_declared");
    then_refused(
        capacity::handle(
            &state,
            CapacityCommand::DeclareCapacity { service_type: gpu(), period: period("2025-07"), units: 10_000 },
        ),
        "no_change",
    );
}

#[test]
fn batches_take_applications_in_deadline_order_and_close_only_after_their_deadline() {
    let open = |id: &str, deadline, committee| BatchCommand::OpenBatch {
        batch_id: id.into(),
        deadline,
        committee_date: committee,
    };
    let mut events: Vec<BatchEvent> = Vec::new();
    for command in
        [open("2025-q3", day(2025, 8, 31), day(2025, 9, 15)), open("2025-q2", day(2025, 5, 31), day(2025, 6, 15))]
    {
        events.extend(batches::handle(&given(&events, batches::apply), command).expect("opened"));
    }
    let calendar: BatchCalendarState = given(&events, batches::apply);
    assert_eq!(calendar.batch_for(day(2025, 5, 1)).expect("batch").0, "2025-q2");
    assert_eq!(calendar.batch_for(day(2025, 6, 1)).expect("batch").0, "2025-q3", "the deadline of 2025-q2 has passed");
    then_refused(calendar.batch_for(day(2025, 9, 1)), "no_open_batch");
    then_refused(batches::handle(&calendar, open("2025-q2", day(2025, 5, 31), day(2025, 6, 15))), "batch_exists");
    then_refused(
        batches::handle(&calendar, open("2025-q4", day(2025, 11, 30), day(2025, 11, 30))),
        "committee_before_deadline",
    );
    then_refused(
        batches::handle(&calendar, BatchCommand::CloseBatch { batch_id: "2025-q2".into(), today: day(2025, 5, 31) }),
        "deadline_not_reached",
    );
    let closed =
        batches::handle(&calendar, BatchCommand::CloseBatch { batch_id: "2025-q2".into(), today: day(2025, 6, 1) })
            .expect("closed");
    let calendar = given(&[events, closed].concat(), batches::apply);
    then_refused(
        batches::handle(&calendar, BatchCommand::CloseBatch { batch_id: "2025-q2".into(), today: day(2025, 6, 2) }),
        "batch_already_closed",
    );
    assert_eq!(
        calendar.batch_for(day(2025, 5, 1)).expect("batch").0,
        "2025-q3",
        "a closed batch takes no more applications"
    );
}

#[test]
fn events_round_trip_through_their_stored_form() {
    for event in approved().into_iter().chain(signed().into_iter().skip(4)) {
        let data = event.to_data().expect("encode");
        assert!(data.get("type").is_none(), "the type is stored apart from the data");
        let back = E::from_stored(event.event_type(), 1, &data).expect("decode");
        assert_eq!(back, event);
    }
    let refused = E::from_stored("NoSuchEvent", 1, &serde_json::json!({}));
    assert!(refused.is_err());
}
