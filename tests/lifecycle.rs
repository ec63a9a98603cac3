//! The scheme's commands on the real PostgreSQL store: a full application from submission to
//! completion, and two approvals racing for the last dollars of a funding year.

mod support;

use aisc_adapters::{PostgresEventStore, TimeOrderedEventIds};
use aisc_domain::command_service::{CommandError, CommandMetadata, CommandService};
use aisc_domain::event_store::{EventStore, PositionRange, ReadDirection, StreamId};
use aisc_domain::subsidy::DomainError;
use aisc_domain::subsidy::application::{
    ApplicationCommand, Approve, ChargeUsage, Contact, Kpis, Meeting, RequestedResource, Scores, Status, Submission,
};
use aisc_domain::subsidy::batches::BatchCommand;
use aisc_domain::subsidy::capacity::{Allocation, CapacityCommand};
use aisc_domain::subsidy::funding::{BudgetLine, FundingCommand};
use aisc_domain::subsidy::prices::PriceCommand;
use aisc_domain::subsidy::service::SchemeService;
use aisc_domain::subsidy::values::{ApplicantCategory, FinancialYear, Money, Period, RateBps, ServiceType};
use chrono::NaiveDate;
use support::TestDatabase;

type Scheme = SchemeService<PostgresEventStore, TimeOrderedEventIds>;

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("date")
}

fn gpu() -> ServiceType {
    ServiceType::parse("gpu_node_hour_h800").expect("service")
}

fn period(text: &str) -> Period {
    Period::parse(text).expect("period")
}

fn hkd(dollars: i64) -> Money {
    Money::from_cents(dollars * 100)
}

fn meta(actor: &str, role: &str) -> CommandMetadata {
    CommandMetadata {
        actor: actor.into(),
        role: role.into(),
        request_id: uuid::Uuid::new_v4().to_string(),
        correlation_id: "lifecycle-test".into(),
        causation_id: None,
    }
}

fn submission(title: &str) -> Submission {
    Submission {
        organisation: "The Hong Kong University of Science and Technology".into(),
        category: ApplicantCategory::LocalInstitution,
        sub_type: "ugc_funded_university".into(),
        project_title: title.into(),
        project_summary: "Training a multilingual model for legal documents.".into(),
        develops_ai_models: true,
        requested_resources: vec![RequestedResource {
            service_type: gpu(),
            first_period: period("2025-07"),
            last_period: period("2025-12"),
            units_per_month: 1_000,
        }],
        requested_rate: RateBps::NORMAL_CAP,
        team_size: 10,
        talents: 6,
        mainland_or_overseas_team: true,
        other_government_funding: false,
        undertakings: None,
        contact: Contact { name: "Prof Lee".into(), email: "lee@ust.hk".into() },
    }
}

async fn scheme(database: &TestDatabase) -> Scheme {
    let store = PostgresEventStore::new(database.pool.clone());
    SchemeService::new(CommandService::new(store, TimeOrderedEventIds))
}

/// A batch, funding for 2025-26, a GPU price and capacity for July to December 2025.
async fn set_up(scheme: &Scheme, subsidy: Money) {
    let admin = meta("admin-1", "administrator");
    scheme
        .batches(
            BatchCommand::OpenBatch {
                batch_id: "2025-q2".into(),
                deadline: day(2025, 5, 31),
                committee_date: day(2025, 6, 15),
            },
            &admin,
        )
        .await
        .expect("batch");
    let year = FinancialYear::parse("2025-26").expect("year");
    scheme
        .funding(
            year,
            FundingCommand::RecordFundingReceived {
                year,
                line: BudgetLine::ComputingPowerSubsidy,
                amount: subsidy,
                received_on: day(2025, 4, 1),
            },
            None,
            &meta("finance-1", "finance_officer"),
        )
        .await
        .expect("funding");
    scheme
        .prices(
            PriceCommand::SetRate {
                service_type: gpu(),
                rate_per_unit: Money::from_cents(4_250),
                unit: "node-hour".into(),
                effective_from: day(2025, 4, 1),
            },
            &admin,
        )
        .await
        .expect("price");
    for month in Period::range(period("2025-07"), period("2025-12")) {
        scheme
            .capacity(CapacityCommand::DeclareCapacity { service_type: gpu(), period: month, units: 10_000 }, &admin)
            .await
            .expect("capacity");
    }
}

/// Submitted and eligible, in batch 2025-q2.
async fn submitted(scheme: &Scheme, application_id: &str) {
    scheme
        .submit(application_id, submission(application_id), day(2025, 5, 2), &meta("intake-1", "intake_officer"))
        .await
        .expect("submit");
    scheme
        .application(
            application_id,
            None,
            ApplicationCommand::CheckEligibility { checked_by: "intake-1".into(), today: day(2025, 6, 2) },
            &meta("intake-1", "intake_officer"),
        )
        .await
        .expect("eligibility");
}

/// The batch closes and the applications are assessed: ready for the committee.
async fn ready_for_committee(scheme: &Scheme, application_ids: &[&str]) {
    scheme
        .batches(
            BatchCommand::CloseBatch { batch_id: "2025-q2".into(), today: day(2025, 6, 1) },
            &meta("sec-1", "committee_secretariat"),
        )
        .await
        .expect("close");
    for application_id in application_ids {
        scheme
            .application(
                application_id,
                None,
                ApplicationCommand::RecordAssessment {
                    assessor: "assessor-1".into(),
                    scores: Scores {
                        a_meets_hong_kong_needs: 8,
                        b_requirement_reasonable: 8,
                        c_feasibility_and_outcome: 7,
                        d_capability: 9,
                    },
                    recommended_rate: RateBps::NORMAL_CAP,
                    recommended_ceiling: hkd(500_000),
                    duration_months: 6,
                    conditions: vec!["report utilisation monthly".into()],
                    no_conflict_declared: true,
                },
                &meta("assessor-1", "assessor"),
            )
            .await
            .expect("assessment");
    }
}

fn approval(ceiling: Money) -> Approve {
    Approve {
        decision: Meeting {
            recorded_by: "sec-1".into(),
            meeting_reference: "AISC-COM-2025-06".into(),
            decided_on: day(2025, 6, 15),
            members_present: vec!["m1".into(), "m2".into(), "m3".into(), "m4".into()],
            members_recused: vec!["m5".into()],
        },
        rate: RateBps::NORMAL_CAP,
        exceptional_reason: None,
        allocations: Period::range(period("2025-07"), period("2025-12"))
            .into_iter()
            .map(|p| Allocation { service_type: gpu(), period: p, units: 1_000 })
            .collect(),
        ceiling,
        start: day(2025, 7, 1),
        end: day(2025, 12, 31),
        conditions: vec![],
    }
}

fn usage(usage_id: &str, month: &str, units: u64, today: NaiveDate) -> ChargeUsage {
    ChargeUsage {
        usage_id: usage_id.into(),
        service_type: gpu(),
        period: period(month),
        units,
        rate_in_force: Money::ZERO,
        today,
    }
}

#[tokio::test]
async fn an_application_runs_from_submission_to_completion_on_postgresql() {
    let database = TestDatabase::create().await;
    let scheme = scheme(&database).await;
    set_up(&scheme, hkd(857_000_000)).await;
    let id = "7f3e2a10";
    submitted(&scheme, id).await;
    ready_for_committee(&scheme, &[id]).await;

    // The assessor cannot record the decision.
    let mut by_assessor = approval(hkd(500_000));
    by_assessor.decision.recorded_by = "assessor-1".into();
    let refused = scheme.approve(id, None, by_assessor, &meta("assessor-1", "committee_secretariat")).await;
    assert!(matches!(refused, Err(CommandError::Rejected(DomainError::AssessorCannotDecide { .. }))), "{refused:?}");

    scheme.approve(id, None, approval(hkd(500_000)), &meta("sec-1", "committee_secretariat")).await.expect("approve");
    // No disbursement before the agreement.
    let early =
        scheme.charge_usage(id, usage("u1", "2025-07", 100, day(2025, 8, 1)), &meta("fin-1", "finance_officer")).await;
    assert!(matches!(early, Err(CommandError::Rejected(DomainError::AgreementNotSigned))), "{early:?}");

    scheme
        .application(
            id,
            None,
            ApplicationCommand::SignAgreement {
                signed_on: day(2025, 6, 30),
                reporting_due_dates: vec![day(2025, 10, 15), day(2026, 1, 15)],
            },
            &meta("sec-1", "committee_secretariat"),
        )
        .await
        .expect("agreement");
    let finance = meta("fin-1", "finance_officer");
    scheme.charge_usage(id, usage("u-2025-07", "2025-07", 1_000, day(2025, 8, 5)), &finance).await.expect("july");
    scheme.charge_usage(id, usage("u-2025-08", "2025-08", 800, day(2025, 9, 5)), &finance).await.expect("august");
    // The report due 2025-10-15 is overdue on 2025-11-05: disbursement waits for it.
    let blocked = scheme.charge_usage(id, usage("u-2025-10", "2025-10", 500, day(2025, 11, 5)), &finance).await;
    assert!(matches!(blocked, Err(CommandError::Rejected(DomainError::ProgressReportOverdue { .. }))), "{blocked:?}");
    let kpis = Kpis {
        ai_models_trained_or_deployed: 1,
        talents_employed: 6,
        mainland_or_overseas_collaborators: 2,
        publications: 1,
        patents: 0,
    };
    scheme
        .application(
            id,
            None,
            ApplicationCommand::SubmitProgressReport {
                due: day(2025, 10, 15),
                kpis,
                summary: "first checkpoint".into(),
                today: day(2025, 11, 5),
            },
            &meta("intake-1", "intake_officer"),
        )
        .await
        .expect("report");
    scheme
        .application(
            id,
            None,
            ApplicationCommand::ReviewProgressReport {
                due: day(2025, 10, 15),
                accepted: true,
                comments: String::new(),
                reviewed_by: "reviewer-1".into(),
            },
            &meta("assessor-2", "assessor"),
        )
        .await
        .expect("review");
    scheme.charge_usage(id, usage("u-2025-10", "2025-10", 500, day(2025, 11, 5)), &finance).await.expect("october");
    scheme.reverse_disbursement(id, "u-2025-08", "metering error in August", &finance).await.expect("reversal");
    let written = scheme
        .close_project(id, day(2026, 1, 31), None, &meta("sec-1", "committee_secretariat"))
        .await
        .expect("complete");
    assert!(written.position.is_some());

    let (state, version) = scheme.application_state(id).await.expect("state");
    assert_eq!(state.status, Status::Completed);
    // July 1,000 + October 500 node-hours at HK$42.50, 70 %: HK$44,625.
    assert_eq!(state.disbursed, Money::from_cents(4_462_500));
    assert_eq!(version, Some(11), "twelve events");

    let (budget, _) = scheme.funding_state(FinancialYear::parse("2025-26").expect("year")).await.expect("budget");
    assert_eq!(budget.disbursed, Money::from_cents(4_462_500));
    assert_eq!(budget.committed, Money::from_cents(4_462_500), "the unused commitment was released");
    assert_eq!(budget.subsidy_left(), Money::from_cents(85_700_000_000 - 4_462_500));

    // Every event carries who did it; the chains verify.
    let store = scheme.commands().store();
    let stream = StreamId::parse(format!("application-{id}")).expect("stream");
    let events = store.read_stream(&stream, None, ReadDirection::Forward, 100).await.expect("read");
    assert_eq!(events[0].event_type, "ApplicationSubmitted");
    assert_eq!(events[0].metadata["actor"], "intake-1");
    assert_eq!(events.last().expect("last").event_type, "ApplicationCompleted");
    let report = store.verify(PositionRange::WHOLE_LOG).await.expect("verify");
    assert_eq!(report.first_broken, None);

    // A completed application takes no more commands.
    let after = scheme.charge_usage(id, usage("u-2025-11", "2025-11", 1, day(2025, 12, 5)), &finance).await;
    assert!(matches!(after, Err(CommandError::Rejected(DomainError::ApplicationClosed { .. }))), "{after:?}");
    database.drop_database().await;
}

#[tokio::test]
async fn two_approvals_racing_for_the_last_dollars_cannot_both_win() {
    let database = TestDatabase::create_with_pool_size(20).await;
    let scheme = scheme(&database).await;
    // HK$600,000 left: room for one HK$500,000 approval, not two.
    set_up(&scheme, hkd(600_000)).await;
    submitted(&scheme, "a1").await;
    submitted(&scheme, "b2").await;
    ready_for_committee(&scheme, &["a1", "b2"]).await;
    {
        let secretariat = meta("sec-1", "committee_secretariat");
        let (first, second) = tokio::join!(
            scheme.approve("a1", None, approval(hkd(500_000)), &secretariat),
            scheme.approve("b2", None, approval(hkd(500_000)), &secretariat),
        );
        let outcomes = [first, second];
        let winners = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
        assert_eq!(winners, 1, "exactly one approval wins: {outcomes:?}");
        let loser = outcomes.into_iter().find_map(Result::err).expect("a loser");
        assert!(
            matches!(loser, CommandError::Rejected(DomainError::BudgetShort { .. })),
            "the loser is told the budget is short: {loser:?}"
        );
        let (budget, _) = scheme.funding_state(FinancialYear::parse("2025-26").expect("year")).await.expect("budget");
        assert_eq!(budget.committed, hkd(500_000));
    }
    database.drop_database().await;
}
