//! The KPI dashboard in the past, on a scheme whose facts are recorded after their business
//! dates (decisions recorded days after the meeting, usage after its month, a reversal, a
//! termination): as of every position it equals the live dashboard captured right after each
//! command and an in-memory fold of the log up to that position; on a business date, with or
//! without a position, it equals an in-memory fold of the events dated on or before it (what the
//! scratch-schema replay used to compute).

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aisc_domain::codec::BusinessDate;
use aisc_domain::command_service::Decision;
use aisc_domain::event_store::{EventStore, Position, RecordedEvent};
use aisc_domain::subsidy::application::{
    AmendApplication, ApplicationEvent, CheckEligibility, CloseProject, Kpis, RejectApplication, ReverseDisbursement,
    SignAgreement, SubmitApplication, SubmitProgressReport, WithdrawApplication,
};
use aisc_domain::subsidy::batches::{CloseBatch, OpenBatch};
use aisc_domain::subsidy::capacity::{CapacityEvent, DeclareCapacity};
use aisc_domain::subsidy::events::SchemeEvent;
use aisc_domain::subsidy::funding::{BudgetLine, FundingEvent, RecordFundingReceived};
use aisc_domain::subsidy::prices::SetServiceRate;
use aisc_domain::subsidy::values::{ApplicantCategory, FinancialYear, Money, Period};
use aisc_domain::subsidy::{DomainError, Facts, streams};
use aisc_projections::ProjectionRunner;
use aisc_projections::kpi::{self, BudgetLineFigures, CapacityFigures, CategoryFigures, Kpi, KpiDashboard, PastView};
use aisc_projections::runner::wait_for_position;
use chrono::NaiveDate;
use sqlx::PgPool;
use support::TestDatabase;
use support::scheme::*;
use tokio::sync::watch;

/// The day the dashboards count overdue reports on.
fn today() -> NaiveDate {
    day(2025, 11, 20)
}

fn year() -> (String, NaiveDate, NaiveDate) {
    kpi::year_scope(FinancialYear::parse("2025-26").expect("year"))
}

/// The live dashboards (whole scheme, 2025-26) right after a command, and the position it wrote.
struct Captured {
    position: Position,
    scheme: KpiDashboard,
    year: KpiDashboard,
}

struct Driver<'a> {
    scheme: &'a Scheme,
    pool: &'a PgPool,
    captured: Vec<Captured>,
}

impl Driver<'_> {
    /// Runs a command on `today`, waits for the KPI read model to apply it, and captures the
    /// live dashboards.
    async fn run<D>(&mut self, decision: &D, actor: &str, role: &str, today_then: NaiveDate)
    where
        D: Decision<Facts = Facts, Error = DomainError>,
    {
        act(self.scheme, decision, actor, role, today_then).await.expect("command");
        // The log's head, not the position the command answers: a command writing to several
        // streams answers its subject's, and the others' events may come after it.
        let position = self.scheme.commands().store().head_position().await.expect("head");
        assert!(wait_for_position(self.pool, kpi::NAME, position, Duration::from_secs(30)).await.expect("wait"));
        let mut connection = self.pool.acquire().await.expect("connection");
        let scheme = kpi::dashboard(&mut connection, None, today()).await.expect("live");
        let year = kpi::dashboard(&mut connection, Some(year()), today()).await.expect("live");
        self.captured.push(Captured { position, scheme, year });
    }
}

fn categorised(
    title: &str,
    category: ApplicantCategory,
    sub_type: &str,
) -> aisc_domain::subsidy::application::Submission {
    let mut application = submission(title);
    application.category = category;
    application.sub_type = sub_type.into();
    application
}

/// A scheme with its facts recorded after their business dates, command by command.
async fn drive(driver: &mut Driver<'_>) {
    let (admin, finance, secretariat, intake) = (
        ("admin-1", "administrator"),
        ("fin-1", "finance_officer"),
        ("sec-1", "committee_secretariat"),
        ("intake-1", "intake_officer"),
    );
    let april = day(2025, 4, 1);
    let batch = OpenBatch { batch_id: "2025-q2".into(), deadline: day(2025, 5, 31), committee_date: day(2025, 6, 15) };
    driver.run(&batch, admin.0, admin.1, april).await;
    let year = FinancialYear::parse("2025-26").expect("year");
    let subsidy = RecordFundingReceived {
        year,
        line: BudgetLine::ComputingPowerSubsidy,
        amount: hkd(10_000_000),
        received_on: april,
    };
    driver.run(&subsidy, finance.0, finance.1, april).await;
    let price = SetServiceRate {
        service_type: gpu(),
        rate_per_unit: Money::from_cents(4_250),
        unit: "node-hour".into(),
        effective_from: april,
    };
    driver.run(&price, admin.0, admin.1, april).await;
    for month in Period::range(period("2025-07"), period("2025-12")) {
        let capacity = DeclareCapacity { service_type: gpu(), period: month, units: 10_000 };
        driver.run(&capacity, admin.0, admin.1, april).await;
    }
    let kinds = [
        (ApplicantCategory::LocalInstitution, "ugc_funded_university"),
        (ApplicantCategory::RndCentre, "innohk_centre"),
        (ApplicantCategory::AiStartup, "cyberport_incubatee_or_alumnus"),
        (ApplicantCategory::GovernmentDepartment, "bureau_or_department"),
    ];
    let ids: Vec<String> = (1..=8).map(|n| format!("k{n}")).collect();
    for (n, id) in ids.iter().enumerate() {
        let (category, sub_type) = kinds[n % kinds.len()];
        let submit = SubmitApplication { application_id: id.clone(), submission: categorised(id, category, sub_type) };
        driver.run(&submit, intake.0, intake.1, day(2025, 5, 2 + n as u32)).await;
    }
    // k2 moves to the start-ups, recorded while the batch is open.
    let amend = AmendApplication {
        application_id: "k2".into(),
        submission: categorised("k2", ApplicantCategory::AiStartup, "cyberport_incubatee_or_alumnus"),
    };
    driver.run(&amend, intake.0, intake.1, day(2025, 5, 15)).await;
    let withdraw = WithdrawApplication { application_id: "k8".into(), reason: "merged".into() };
    driver.run(&withdraw, intake.0, intake.1, day(2025, 5, 20)).await;
    driver.run(&CloseBatch { batch_id: "2025-q2".into() }, secretariat.0, secretariat.1, day(2025, 6, 1)).await;
    for id in &ids[..7] {
        let check = CheckEligibility { application_id: id.clone() };
        driver.run(&check, intake.0, intake.1, day(2025, 6, 2)).await;
    }
    for id in &ids[..6] {
        let assessment = assessment_of(id);
        driver.run(&assessment, "assessor-1", "assessor", day(2025, 6, 5)).await;
    }
    // The meeting decides on 15 June; the secretariat records days later.
    for (id, recorded) in [("k1", day(2025, 6, 20)), ("k2", day(2025, 6, 20)), ("k3", day(2025, 6, 21))] {
        driver.run(&approval(id, None), secretariat.0, secretariat.1, recorded).await;
    }
    let reject =
        RejectApplication { application_id: "k4".into(), meeting: meeting(), reasons: vec!["not justified".into()] };
    driver.run(&reject, secretariat.0, secretariat.1, day(2025, 6, 25)).await;
    driver.run(&approval("k6", None), secretariat.0, secretariat.1, day(2025, 7, 10)).await;
    let (early, late) = (vec![day(2025, 8, 15), day(2025, 10, 15)], vec![day(2025, 10, 15), day(2025, 12, 15)]);
    for (id, signed_on, recorded, dues) in [
        ("k1", day(2025, 6, 30), day(2025, 7, 2), &early),
        ("k2", day(2025, 6, 30), day(2025, 7, 2), &early),
        ("k6", day(2025, 7, 12), day(2025, 7, 12), &late),
    ] {
        let sign = SignAgreement { application_id: id.into(), signed_on, reporting_due_dates: dues.clone() };
        driver.run(&sign, secretariat.0, secretariat.1, recorded).await;
    }
    // Usage counts from its month's first day, charged weeks later.
    for (id, usage_id, month, units, recorded) in
        [("k1", "k1-07", "2025-07", 400, day(2025, 8, 5)), ("k2", "k2-07", "2025-07", 300, day(2025, 8, 5))]
    {
        driver.run(&usage(id, usage_id, month, units), finance.0, finance.1, recorded).await;
    }
    let report = SubmitProgressReport {
        application_id: "k1".into(),
        due: day(2025, 8, 15),
        kpis: Kpis {
            ai_models_trained_or_deployed: 1,
            talents_employed: 6,
            mainland_or_overseas_collaborators: 0,
            publications: 0,
            patents: 0,
        },
        summary: "on track".into(),
    };
    driver.run(&report, "applicant-k1", secretariat.1, day(2025, 8, 20)).await;
    for (id, usage_id, month, units, recorded) in
        [("k1", "k1-08", "2025-08", 500, day(2025, 9, 3)), ("k6", "k6-08", "2025-08", 200, day(2025, 9, 4))]
    {
        driver.run(&usage(id, usage_id, month, units), finance.0, finance.1, recorded).await;
    }
    let reversal =
        ReverseDisbursement { application_id: "k2".into(), usage_id: "k2-07".into(), reason: "metering error".into() };
    driver.run(&reversal, finance.0, finance.1, day(2025, 9, 10)).await;
    let security = RecordFundingReceived {
        year,
        line: BudgetLine::CyberAndDataSecurity,
        amount: hkd(2_000_000),
        received_on: day(2025, 9, 1),
    };
    driver.run(&security, finance.0, finance.1, day(2025, 9, 1)).await;
    let terminate = CloseProject { application_id: "k6".into(), termination_reason: Some("left Hong Kong".into()) };
    driver.run(&terminate, secretariat.0, secretariat.1, day(2025, 10, 1)).await;
}

fn assessment_of(id: &str) -> aisc_domain::subsidy::application::RecordAssessment {
    use aisc_domain::subsidy::application::{RecordAssessment, Scores};
    RecordAssessment {
        application_id: id.into(),
        scores: Scores {
            a_meets_hong_kong_needs: 8,
            b_requirement_reasonable: 8,
            c_feasibility_and_outcome: 7,
            d_capability: 9,
        },
        recommended_rate: aisc_domain::subsidy::values::RateBps::NORMAL_CAP,
        recommended_ceiling: hkd(500_000),
        duration_months: 6,
        conditions: vec![],
        no_conflict_declared: true,
    }
}

/// An application as the applications read model kept it, for the reference.
#[derive(Debug, Clone, Default)]
struct ReferenceApplication {
    submitted_on: NaiveDate,
    category: String,
    develops_ai_models: bool,
    mainland_or_overseas_team: bool,
    talents: i64,
    status: &'static str,
    decided_on: Option<NaiveDate>,
    rate_bps: Option<i64>,
    units_allocated: i64,
    units_used: i64,
    due_dates: Vec<NaiveDate>,
    reports: Vec<NaiveDate>,
}

const APPROVED: [&str; 4] = ["approved", "agreement_signed", "completed", "terminated"];
const SUBSIDY_LINE: &str = "computing_power_subsidy";

/// The dashboard folded in memory, event by event, as the old replay computed it: rows per
/// application, budget line, charge and capacity month, then the old queries' aggregates.
#[derive(Default)]
struct Reference {
    applications: BTreeMap<String, ReferenceApplication>,
    /// (year, line) → received, committed, disbursed, redirected.
    budget: BTreeMap<(String, String), [i64; 4]>,
    /// (application, usage id) → financial year, subsidy, reversed.
    charges: BTreeMap<(String, String), (String, i64, bool)>,
    /// (service, period) → capacity, allocated, redeployed.
    capacity: BTreeMap<(String, String), [i64; 3]>,
}

impl Reference {
    fn of(events: &[RecordedEvent], until: Position, effective_on: Option<NaiveDate>) -> Reference {
        let mut reference = Reference::default();
        for event in events.iter().filter(|event| event.position <= until) {
            let decoded = event.decode::<SchemeEvent>().expect("a scheme event");
            if effective_on.is_some_and(|date| decoded.effective_on() > date) {
                continue;
            }
            reference.apply(event, decoded);
        }
        reference
    }

    fn apply(&mut self, event: &RecordedEvent, decoded: SchemeEvent) {
        match decoded {
            SchemeEvent::Application(e) => {
                let id = streams::application_id(&event.stream).expect("application").to_string();
                self.application(id, e);
            }
            SchemeEvent::Funding(e) => {
                let year = streams::budget_year(&event.stream).expect("budget").to_string();
                let line = |line: BudgetLine| match line {
                    BudgetLine::ComputingPowerSubsidy => "computing_power_subsidy",
                    BudgetLine::CyberAndDataSecurity => "cyber_and_data_security",
                    BudgetLine::AiEcosystemDevelopment => "ai_ecosystem_development",
                };
                let mut set = |line: &str, figure: usize, value: i64| {
                    self.budget.entry((year.clone(), line.to_string())).or_default()[figure] = value;
                };
                match e {
                    FundingEvent::FundingReceived(e) => set(line(e.line), 0, e.line_total.cents()),
                    FundingEvent::SubsidyCommitted(e) => set(SUBSIDY_LINE, 1, e.committed_total.cents()),
                    FundingEvent::SubsidyReleased(e) => set(SUBSIDY_LINE, 1, e.committed_total.cents()),
                    FundingEvent::UnusedSubsidyRedirected(e) => set(SUBSIDY_LINE, 3, e.amount.cents()),
                    FundingEvent::SubsidyDisbursed(_) | FundingEvent::SubsidyDisbursementReversed(_) => {}
                }
            }
            SchemeEvent::Capacity(e) => {
                let (service, period, figure, value) = match e {
                    CapacityEvent::CapacityDeclared(e) => (e.service_type, e.period, 0, e.units),
                    CapacityEvent::CapacityAllocated(e) => (e.service_type, e.period, 1, e.allocated_total),
                    CapacityEvent::CapacityReleased(e) => (e.service_type, e.period, 1, e.allocated_total),
                    CapacityEvent::CapacityRedeployed(e) => (e.service_type, e.period, 2, e.redeployed_total),
                };
                self.capacity.entry((service.as_str().to_string(), period.to_string())).or_default()[figure] =
                    value as i64;
            }
            SchemeEvent::Batch(_) | SchemeEvent::Price(_) | SchemeEvent::DataSubject(_) => {}
        }
    }

    fn application(&mut self, id: String, event: ApplicationEvent) {
        use ApplicationEvent as E;
        if let E::ApplicationSubmitted(e) = &event {
            let details = &e.details;
            self.applications.insert(
                id.clone(),
                ReferenceApplication {
                    submitted_on: e.submitted_on,
                    category: details.category.as_str().to_string(),
                    develops_ai_models: details.develops_ai_models,
                    mainland_or_overseas_team: details.mainland_or_overseas_team,
                    talents: i64::from(details.talents),
                    status: "submitted",
                    ..ReferenceApplication::default()
                },
            );
            return;
        }
        match &event {
            E::UsageCharged(e) => {
                let year = e.financial_year.to_string();
                self.charges.insert((id.clone(), e.usage_id.clone()), (year.clone(), e.subsidy.cents(), false));
                self.budget.entry((year, SUBSIDY_LINE.into())).or_default()[2] += e.subsidy.cents();
            }
            E::DisbursementReversed(e) => {
                if let Some((year, subsidy, reversed)) = self.charges.get_mut(&(id.clone(), e.usage_id.clone()))
                    && !*reversed
                {
                    *reversed = true;
                    self.budget.entry((year.clone(), SUBSIDY_LINE.into())).or_default()[2] -= *subsidy;
                }
            }
            _ => {}
        }
        let Some(application) = self.applications.get_mut(&id) else {
            return;
        };
        match event {
            E::ApplicationSubmitted(_) | E::ProgressReportReviewed(_) => {}
            E::ApplicationAmended(e) => {
                application.category = e.details.category.as_str().to_string();
                application.develops_ai_models = e.details.develops_ai_models;
                application.mainland_or_overseas_team = e.details.mainland_or_overseas_team;
                application.talents = i64::from(e.details.talents);
            }
            E::ApplicationWithdrawn(_) => application.status = "withdrawn",
            E::EligibilityConfirmed(_) => application.status = "eligible",
            E::RuledIneligible(_) => application.status = "ineligible",
            E::AssessmentRecorded(_) => application.status = "assessed",
            E::ApplicationDeferred(_) => application.status = "deferred",
            E::ApplicationCompleted(_) => application.status = "completed",
            E::ApplicationTerminated(_) => application.status = "terminated",
            E::ApplicationApproved(e) => {
                application.status = "approved";
                application.decided_on = Some(e.committee.decided_on);
                application.rate_bps = Some(i64::from(e.terms.rate.bps()));
                application.units_allocated = e.terms.allocations.iter().map(|a| a.units as i64).sum();
            }
            E::ApplicationRejected(e) => {
                application.status = "rejected";
                application.decided_on = Some(e.committee.decided_on);
            }
            E::AgreementSigned(e) => {
                application.status = "agreement_signed";
                application.due_dates = e.reporting_due_dates;
            }
            E::UsageCharged(e) => application.units_used += e.units as i64,
            E::DisbursementReversed(e) => application.units_used -= e.units as i64,
            E::ProgressReportSubmitted(e) => application.reports.push(e.due),
        }
    }

    /// The old queries over the rows: applications submitted in the year, the year's budget
    /// rows, the year's capacity months.
    fn dashboard(&self, year: Option<&(String, NaiveDate, NaiveDate)>, today: NaiveDate) -> KpiDashboard {
        let in_scope: Vec<&ReferenceApplication> = self
            .applications
            .values()
            .filter(|a| year.is_none_or(|(_, first, last)| (*first..=*last).contains(&a.submitted_on)))
            .collect();
        let approved: Vec<&&ReferenceApplication> = in_scope.iter().filter(|a| APPROVED.contains(&a.status)).collect();
        let rejected = in_scope.iter().filter(|a| a.status == "rejected").count() as i64;
        let ratio = |part: i64, whole: i64| (whole > 0).then(|| part * 10_000 / whole);
        let mut days: Vec<i64> =
            in_scope.iter().filter_map(|a| a.decided_on.map(|decided| (decided - a.submitted_on).num_days())).collect();
        days.sort_unstable();
        let mut by_category = BTreeMap::new();
        for application in &in_scope {
            let figures = by_category.entry(application.category.clone()).or_insert((0, 0, 0, 0, 0));
            figures.0 += 1;
            if APPROVED.contains(&application.status) {
                figures.1 += 1;
                if let Some(rate) = application.rate_bps {
                    figures.3 += rate;
                    figures.4 += 1;
                }
            }
            if application.status == "rejected" {
                figures.2 += 1;
            }
        }
        let by_category = by_category
            .into_iter()
            .map(|(category, (received, approved, rejected, rate_sum, rates))| {
                let average = (rates > 0).then(|| (2 * rate_sum + rates) / (2 * rates));
                (category, CategoryFigures { received, approved, rejected, average_approved_rate_bps: average })
            })
            .collect();
        let mut lines: BTreeMap<String, [i64; 4]> = BTreeMap::new();
        for ((row_year, line), figures) in &self.budget {
            if year.is_none_or(|(name, _, _)| name == row_year) {
                let sum = lines.entry(line.clone()).or_default();
                for (total, figure) in sum.iter_mut().zip(figures) {
                    *total += figure;
                }
            }
        }
        let budget = lines
            .into_iter()
            .map(|(line, [received, committed, disbursed, redirected])| BudgetLineFigures {
                line,
                received_cents: received,
                committed_cents: committed,
                disbursed_cents: disbursed,
                redirected_cents: redirected,
                left_cents: received - committed - redirected,
            })
            .collect();
        let mut services: BTreeMap<String, [i64; 4]> = BTreeMap::new();
        for ((service, month), [capacity, allocated, redeployed]) in &self.capacity {
            let first_day = Period::parse(month).expect("period").first_day();
            if year.is_none_or(|(_, first, last)| (*first..=*last).contains(&first_day)) {
                let sum = services.entry(service.clone()).or_default();
                sum[0] += capacity;
                sum[1] += capacity * 9 / 10;
                sum[2] += allocated;
                sum[3] += redeployed;
            }
        }
        let capacity = services
            .into_iter()
            .map(|(service_type, [capacity, cap, allocated, redeployed])| CapacityFigures {
                service_type,
                capacity_units: capacity,
                subsidised_cap_units: cap,
                allocated_units: allocated,
                redeployed_units: redeployed,
            })
            .collect();
        let used: i64 = approved.iter().map(|a| a.units_used).sum();
        let allocated: i64 = approved.iter().map(|a| a.units_allocated).sum();
        let overdue = in_scope
            .iter()
            .filter(|a| {
                let next = if ["completed", "terminated"].contains(&a.status) {
                    None
                } else {
                    a.due_dates.iter().filter(|due| !a.reports.contains(due)).min()
                };
                next.is_some_and(|due| *due < today)
            })
            .count() as i64;
        KpiDashboard {
            scope: year.map_or_else(|| "scheme".to_string(), |(name, _, _)| name.clone()),
            applications_received: in_scope.len() as i64,
            applications_approved: approved.len() as i64,
            applications_rejected: rejected,
            approval_rate_bps: ratio(approved.len() as i64, approved.len() as i64 + rejected),
            median_days_to_decision: (!days.is_empty()).then(|| days[days.len().div_ceil(2) - 1]),
            by_category,
            budget,
            capacity,
            utilisation_bps: if approved.is_empty() { None } else { ratio(used, allocated) },
            projects_developing_ai_models: approved.iter().filter(|a| a.develops_ai_models).count() as i64,
            mainland_or_overseas_teams: approved.iter().filter(|a| a.mainland_or_overseas_team).count() as i64,
            talents_involved: approved.iter().map(|a| a.talents).sum(),
            overdue_progress_reports: overdue,
        }
    }
}

async fn all_events(store: &dyn EventStore) -> Vec<RecordedEvent> {
    let mut events = Vec::new();
    let mut after = Position::START;
    loop {
        let slice = store.read_all(after, 1_000).await.expect("read");
        let Some(last) = slice.events.last() else {
            return events;
        };
        after = last.position;
        events.extend(slice.events);
    }
}

#[tokio::test]
async fn the_dashboard_as_of_any_position_and_on_any_date_equals_the_log_folded_that_far() {
    let database = TestDatabase::create_with_pool_size(10).await;
    let scheme = scheme(&database).await;
    let store: Arc<dyn EventStore> = Arc::new(scheme.commands().store().clone());
    let runner = ProjectionRunner::new(database.pool.clone(), store.clone(), Arc::new(Kpi))
        .with_standby_poll(Duration::from_millis(50));
    let (stop, stopped) = watch::channel(false);
    let live = tokio::spawn(async move { runner.run(stopped).await });
    let mut driver = Driver { scheme: &scheme, pool: &database.pool, captured: Vec::new() };
    drive(&mut driver).await;
    let captured = std::mem::take(&mut driver.captured);
    let _ = stop.send(true);
    live.await.expect("runner");

    let pool = &database.pool;
    let mut connection = pool.acquire().await.expect("connection");
    let year = year();
    let mut at = async |as_of: Option<Position>,
                        effective_on: Option<NaiveDate>,
                        scope: Option<&(String, NaiveDate, NaiveDate)>| {
        kpi::dashboard_at(&mut connection, PastView { as_of, effective_on }, scope.cloned(), today())
            .await
            .expect("dashboard")
    };

    // The figures the scheme should show, as the live dashboard ends.
    let last = captured.last().expect("commands ran");
    assert_eq!((last.year.applications_received, last.year.applications_approved), (8, 4));
    assert_eq!(last.year.by_category["ai_startup"].received, 3, "k3, k7, and k2 amended into the start-ups");
    assert_eq!(last.year.utilisation_bps, Some((400 + 500 + 200) * 10_000 / 24_000));
    assert_eq!(last.year.overdue_progress_reports, 2, "k1's of 15 October, k2's of 15 August; k6 is terminated");
    assert_eq!(last.year.budget.len(), 2, "{:?}", last.year.budget);

    for captured in &captured {
        let position = Some(captured.position);
        assert_eq!(at(position, None, None).await, captured.scheme, "as of {}", captured.position.0);
        assert_eq!(at(position, None, Some(&year)).await, captured.year, "as of {}", captured.position.0);
    }

    let events = all_events(store.as_ref()).await;
    let head = events.last().expect("events").position;
    // Exact at every position, inside a command's events too.
    for event in &events {
        let reference = Reference::of(&events, event.position, None);
        let position = Some(event.position);
        assert_eq!(
            at(position, None, Some(&year)).await,
            reference.dashboard(Some(&year), today()),
            "as of {}",
            event.position.0
        );
        assert_eq!(at(position, None, None).await, reference.dashboard(None, today()), "as of {}", event.position.0);
    }

    // Every business date the facts name, the day before each, and the year's month ends.
    let mut dates: Vec<NaiveDate> = events
        .iter()
        .map(|event| event.decode::<SchemeEvent>().expect("event").effective_on())
        .flat_map(|date| [date, date.pred_opt().expect("a day before")])
        .chain(Period::range(period("2025-04"), period("2026-03")).into_iter().map(|month| month.first_day()))
        .collect();
    dates.sort_unstable();
    dates.dedup();
    for date in &dates {
        let reference = Reference::of(&events, head, Some(*date));
        let today_then = (*date).min(today());
        assert_eq!(at(None, Some(*date), Some(&year)).await, reference.dashboard(Some(&year), today_then), "on {date}");
        assert_eq!(at(None, Some(*date), None).await, reference.dashboard(None, today_then), "on {date}");
    }
    // Both clocks: a position every few events, on a date every few weeks.
    for event in events.iter().step_by(5).chain(std::iter::once(events.last().expect("events"))) {
        for date in dates.iter().step_by(4) {
            let reference = Reference::of(&events, event.position, Some(*date));
            let today_then = (*date).min(today());
            assert_eq!(
                at(Some(event.position), Some(*date), Some(&year)).await,
                reference.dashboard(Some(&year), today_then),
                "as of {} on {date}",
                event.position.0
            );
        }
    }
    // A decision recorded on 20 June is in force from the meeting's day, 15 June; the log at a
    // position before its record did not know it.
    let approved_then = |dashboard: KpiDashboard| dashboard.applications_approved;
    assert_eq!(approved_then(at(None, Some(day(2025, 6, 15)), None).await), 4);
    assert_eq!(approved_then(at(None, Some(day(2025, 6, 14)), None).await), 0);
    let first_approval = events
        .iter()
        .find(|event| event.event_type == "ApplicationApproved")
        .map(|event| Position(event.position.0 - 1))
        .expect("an approval");
    assert_eq!(approved_then(at(Some(first_approval), Some(day(2025, 12, 31)), None).await), 0);
    drop(connection);
    database.drop_database().await;
}
