//! The scheme's commands on the real PostgreSQL store: a full application from submission to
//! completion, and two approvals racing for the last dollars of a funding year.

mod support;

use aisc_domain::command_service::CommandError;
use aisc_domain::event_store::{EventStore, PositionRange, ReadDirection, StreamId};
use aisc_domain::subsidy::DomainError;
use aisc_domain::subsidy::application::{
    CloseProject, Kpis, ReverseDisbursement, ReviewProgressReport, SignAgreement, Status, SubmitProgressReport,
};
use aisc_domain::subsidy::values::{FinancialYear, Money};
use support::TestDatabase;
use support::scheme::*;

#[tokio::test]
async fn an_application_runs_from_submission_to_completion_on_postgresql() {
    let database = TestDatabase::create().await;
    let scheme = scheme(&database).await;
    set_up(&scheme, hkd(857_000_000)).await;
    let id = "7f3e2a10";
    submitted(&scheme, id).await;
    ready_for_committee(&scheme, &[id]).await;
    let secretariat = ("sec-1", "committee_secretariat");

    // The assessor cannot record the decision.
    let approve = approval(id, None);
    let refused = act(&scheme, &approve, "assessor-1", "committee_secretariat", committee_day()).await;
    assert!(matches!(refused, Err(CommandError::Rejected(DomainError::AssessorCannotDecide { .. }))), "{refused:?}");

    act(&scheme, &approve, secretariat.0, secretariat.1, committee_day()).await.expect("approve");
    // No disbursement before the agreement.
    let (fin, finance) = ("fin-1", "finance_officer");
    let early = act(&scheme, &usage(id, "u1", "2025-07", 100), fin, finance, day(2025, 8, 1)).await;
    assert!(matches!(early, Err(CommandError::Rejected(DomainError::AgreementNotSigned))), "{early:?}");

    let agreement = SignAgreement {
        application_id: id.into(),
        signed_on: day(2025, 6, 30),
        reporting_due_dates: vec![day(2025, 10, 15), day(2026, 1, 15)],
    };
    act(&scheme, &agreement, secretariat.0, secretariat.1, day(2025, 6, 30)).await.expect("agreement");
    act(&scheme, &usage(id, "u-2025-07", "2025-07", 1_000), fin, finance, day(2025, 8, 5)).await.expect("july");
    act(&scheme, &usage(id, "u-2025-08", "2025-08", 800), fin, finance, day(2025, 9, 5)).await.expect("august");
    // The report due 2025-10-15 is overdue on 2025-11-05: disbursement waits for it.
    let october = usage(id, "u-2025-10", "2025-10", 500);
    let blocked = act(&scheme, &october, fin, finance, day(2025, 11, 5)).await;
    assert!(matches!(blocked, Err(CommandError::Rejected(DomainError::ProgressReportOverdue { .. }))), "{blocked:?}");
    let kpis = Kpis {
        ai_models_trained_or_deployed: 1,
        talents_employed: 6,
        mainland_or_overseas_collaborators: 2,
        publications: 1,
        patents: 0,
    };
    let report = SubmitProgressReport {
        application_id: id.into(),
        due: day(2025, 10, 15),
        kpis,
        summary: "first checkpoint".into(),
    };
    act(&scheme, &report, "intake-1", "intake_officer", day(2025, 11, 5)).await.expect("report");
    let review = ReviewProgressReport {
        application_id: id.into(),
        due: day(2025, 10, 15),
        accepted: true,
        comments: String::new(),
    };
    act(&scheme, &review, "assessor-2", "assessor", day(2025, 11, 5)).await.expect("review");
    act(&scheme, &october, fin, finance, day(2025, 11, 5)).await.expect("october");
    let reversal = ReverseDisbursement {
        application_id: id.into(),
        usage_id: "u-2025-08".into(),
        reason: "metering error in August".into(),
    };
    act(&scheme, &reversal, fin, finance, day(2025, 11, 5)).await.expect("reversal");
    let completion = CloseProject { application_id: id.into(), termination_reason: None };
    let written = act(&scheme, &completion, secretariat.0, secretariat.1, day(2026, 1, 31)).await.expect("complete");
    assert!(written.position.is_some());

    let (state, version) = scheme.application_state(id).await.expect("state");
    assert_eq!(state.status, Status::Completed);
    // July 1,000 + October 500 node-hours at HK$42.50, 70 %: HK$44,625.
    assert_eq!(state.disbursed, Money::from_cents(4_462_500));
    assert_eq!(version, Some(11), "twelve events");

    assert_eq!(disbursed_in(&state, "2025-26"), Money::from_cents(4_462_500));

    let (budget, _) = scheme.funding_state(FinancialYear::parse("2025-26").expect("year")).await.expect("budget");
    assert_eq!(budget.committed, Money::from_cents(4_462_500), "the unused commitment was released");
    assert_eq!(budget.subsidy_left(), Money::from_cents(85_700_000_000 - 4_462_500));
    // The charges and the reversal were decided on the application's stream alone: the funding
    // year holds its receipt, the commitment and its release (its disbursed total is the read
    // model's).
    let store = scheme.commands().store();
    let year_stream = StreamId::parse("budget-2025-26").expect("stream");
    let year_events = store.read_stream(&year_stream, None, ReadDirection::Forward, 100).await.expect("read");
    let kinds: Vec<&str> = year_events.iter().map(|event| event.event_type.as_str()).collect();
    assert_eq!(kinds, ["FundingReceived", "SubsidyCommitted", "SubsidyReleased"]);

    // Every event carries who did it; the chains verify.
    let stream = StreamId::parse(format!("application-{id}")).expect("stream");
    let events = store.read_stream(&stream, None, ReadDirection::Forward, 100).await.expect("read");
    assert_eq!(events[0].event_type, "ApplicationSubmitted");
    assert_eq!(events[0].metadata["actor"], "intake-1");
    assert_eq!(events.last().expect("last").event_type, "ApplicationCompleted");
    let report = store.verify(PositionRange::WHOLE_LOG).await.expect("verify");
    assert_eq!(report.first_broken, None);

    // A completed application takes no more commands.
    let after = act(&scheme, &usage(id, "u-2025-11", "2025-11", 1), fin, finance, day(2025, 12, 5)).await;
    assert!(matches!(after, Err(CommandError::Rejected(DomainError::ApplicationClosed { .. }))), "{after:?}");
    database.drop_database().await;
}

#[tokio::test]
async fn two_approvals_racing_for_the_last_dollars_cannot_both_win() {
    let database = TestDatabase::create_with_pool_size(20).await;
    let scheme = scheme(&database).await;
    // HK$200,000 left: room for one approval of HK$178,500 (the subsidy of its allocated
    // units), not two.
    set_up(&scheme, hkd(200_000)).await;
    submitted(&scheme, "a1").await;
    submitted(&scheme, "b2").await;
    ready_for_committee(&scheme, &["a1", "b2"]).await;
    {
        let (a1, b2) = (approval("a1", None), approval("b2", None));
        let (first, second) = tokio::join!(
            act(&scheme, &a1, "sec-1", "committee_secretariat", committee_day()),
            act(&scheme, &b2, "sec-1", "committee_secretariat", committee_day()),
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
        assert_eq!(budget.committed, hkd(178_500));
    }
    database.drop_database().await;
}
