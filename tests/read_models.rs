//! The applications read model, the batch queues and the KPI dashboard on a generated scheme:
//! built live while commands run equals rebuilt from scratch; filters, sorting, paging, work
//! queues and the dashboard's figures.

mod support;

use std::sync::Arc;
use std::time::Duration;

use aisc_domain::event_store::{EventStore, Position};
use aisc_domain::subsidy::application::{
    ChargeUsage, CheckEligibility, RejectApplication, ReverseDisbursement, SignAgreement, SubmitApplication,
    WithdrawApplication,
};
use aisc_domain::subsidy::batches::CloseBatch;
use aisc_domain::subsidy::values::{ApplicantCategory, FinancialYear};
use aisc_projections::applications::{self, ApplicationFilter, Applications, Sort};
use aisc_projections::kpi::{self, Kpi, PastView};
use aisc_projections::runner::wait_for_position;
use aisc_projections::{Projection, ProjectionRunner};
use sqlx::PgPool;
use support::TestDatabase;
use support::scheme::*;
use tokio::sync::watch;

const APPLICATIONS: usize = 3_000;

fn category_of(n: usize) -> (ApplicantCategory, &'static str) {
    match n % 4 {
        0 => (ApplicantCategory::LocalInstitution, "ugc_funded_university"),
        1 => (ApplicantCategory::RndCentre, "innohk_centre"),
        2 => (ApplicantCategory::AiStartup, "cyberport_incubatee_or_alumnus"),
        _ => (ApplicantCategory::GovernmentDepartment, "bureau_or_department"),
    }
}

/// Drives `APPLICATIONS` applications to six different stages through the command service.
async fn generate(scheme: &Scheme) -> Vec<String> {
    let ids: Vec<String> = (0..APPLICATIONS).map(|n| format!("gen{n:04}")).collect();
    for (n, id) in ids.iter().enumerate() {
        let mut application =
            submission(&format!("Project {n:04} {}", if n % 10 == 0 { "Cantonese speech" } else { "vision" }));
        let (category, sub_type) = category_of(n);
        application.category = category;
        application.sub_type = sub_type.into();
        let submit = SubmitApplication { application_id: id.clone(), submission: application };
        act(scheme, &submit, "intake-1", "intake_officer", day(2025, 5, 2 + (n % 20) as u32)).await.expect("submit");
    }
    // Every sixth application is withdrawn.
    for id in ids.iter().skip(5).step_by(6) {
        let withdraw = WithdrawApplication { application_id: id.clone(), reason: "merged".into() };
        act(scheme, &withdraw, "intake-1", "intake_officer", day(2025, 5, 25)).await.expect("withdraw");
    }
    let close = CloseBatch { batch_id: "2025-q2".into() };
    act(scheme, &close, "sec-1", "committee_secretariat", day(2025, 6, 1)).await.expect("close");
    for (n, id) in ids.iter().enumerate() {
        if n % 6 == 0 || n % 6 == 5 {
            continue;
        }
        let check = CheckEligibility { application_id: id.clone() };
        act(scheme, &check, "intake-1", "intake_officer", day(2025, 6, 2)).await.expect("eligibility");
    }
    let assessable: Vec<&str> =
        ids.iter().enumerate().filter(|(n, _)| (2..=4).contains(&(n % 6))).map(|(_, id)| id.as_str()).collect();
    assess(scheme, &assessable).await;
    for (n, id) in ids.iter().enumerate() {
        match n % 6 {
            3 => {
                // The ceiling, omitted, is the subsidy of the allocated units: 6 months × 16
                // node-hours × HK$42.50 × 70 % = HK$2,856.00.
                let mut approve = approval(id, None);
                for allocation in &mut approve.allocations {
                    allocation.units = 16;
                }
                act(scheme, &approve, "sec-1", "committee_secretariat", committee_day()).await.expect("approve");
                // Half of them sign and charge July; every fourth of those reverses it.
                if n % 12 == 3 {
                    let agreement = SignAgreement {
                        application_id: id.clone(),
                        signed_on: day(2025, 6, 30),
                        reporting_due_dates: vec![day(2025, 10, 15)],
                    };
                    act(scheme, &agreement, "sec-1", "committee_secretariat", day(2025, 6, 30)).await.expect("sign");
                    let july = ChargeUsage {
                        application_id: id.clone(),
                        usage_id: format!("{id}-2025-07"),
                        import_id: None,
                        service_type: gpu(),
                        period: period("2025-07"),
                        units: 1 + (n % 16) as u64,
                    };
                    act(scheme, &july, "fin-1", "finance_officer", day(2025, 8, 5)).await.expect("usage");
                    if n % 48 == 3 {
                        let reversal = ReverseDisbursement {
                            application_id: id.clone(),
                            usage_id: july.usage_id.clone(),
                            reason: "metering error".into(),
                        };
                        act(scheme, &reversal, "fin-1", "finance_officer", day(2025, 8, 6)).await.expect("reverse");
                    }
                }
            }
            4 => {
                let reject = RejectApplication {
                    application_id: id.clone(),
                    meeting: meeting(),
                    reasons: vec!["not justified".into()],
                };
                act(scheme, &reject, "sec-1", "committee_secretariat", committee_day()).await.expect("reject");
            }
            _ => {}
        }
    }
    ids
}

async fn table(pool: &PgPool, sql: &'static str) -> Vec<String> {
    let rows: Vec<(String,)> = sqlx::query_as(sql).fetch_all(pool).await.expect("table");
    rows.into_iter().map(|(row,)| row).collect()
}

async fn snapshot(pool: &PgPool) -> Vec<Vec<String>> {
    vec![
        table(pool, "SELECT row_to_json(a)::text FROM (SELECT * FROM read_models.applications_view ORDER BY application_id) a")
            .await,
        table(pool, "SELECT row_to_json(b)::text FROM (SELECT * FROM read_models.batches_view ORDER BY batch_id) b").await,
        table(pool, "SELECT row_to_json(u)::text FROM (SELECT * FROM read_models.usage_view ORDER BY application_id, usage_id) u")
            .await,
        table(pool, "SELECT row_to_json(y)::text FROM (SELECT * FROM read_models.budget_view ORDER BY year, line) y").await,
        table(pool, "SELECT row_to_json(c)::text FROM (SELECT * FROM read_models.capacity_view ORDER BY service_type, period) c")
            .await,
    ]
}

/// Every table of the KPI read model, in key order.
async fn kpi_snapshot(pool: &PgPool) -> Vec<Vec<String>> {
    let mut tables = Vec::new();
    for sql in [
        "SELECT row_to_json(t)::text FROM (SELECT * FROM read_models.kpi_totals ORDER BY year, metric, dimension) t",
        "SELECT row_to_json(t)::text FROM (SELECT * FROM read_models.kpi_totals_history ORDER BY year, metric, dimension, position) t",
        "SELECT row_to_json(t)::text FROM (SELECT * FROM read_models.kpi_dated_totals ORDER BY year, metric, dimension, effective_on) t",
        "SELECT row_to_json(t)::text FROM (SELECT * FROM read_models.kpi_dated_history ORDER BY year, metric, dimension, effective_on, position) t",
        "SELECT row_to_json(t)::text FROM (SELECT * FROM read_models.kpi_applications ORDER BY application_id) t",
        "SELECT row_to_json(t)::text FROM (SELECT * FROM read_models.kpi_charges ORDER BY application_id, usage_id) t",
        "SELECT row_to_json(t)::text FROM (SELECT * FROM read_models.kpi_budget_lines ORDER BY year, line) t",
        "SELECT row_to_json(t)::text FROM (SELECT * FROM read_models.kpi_capacity_months ORDER BY service_type, period) t",
    ] {
        tables.push(table(pool, sql).await);
    }
    tables
}

#[tokio::test]
async fn the_applications_read_model_built_live_equals_a_rebuild_and_answers_staff_queries() {
    let database = TestDatabase::create_with_pool_size(20).await;
    let scheme = scheme(&database).await;
    let store: Arc<dyn EventStore> = Arc::new(scheme.commands().store().clone());
    let projection: Arc<dyn Projection> = Arc::new(Applications);
    let runner = ProjectionRunner::new(database.pool.clone(), store.clone(), projection.clone())
        .with_standby_poll(Duration::from_millis(50));
    let kpi_runner = ProjectionRunner::new(database.pool.clone(), store.clone(), Arc::new(Kpi))
        .with_standby_poll(Duration::from_millis(50));
    let (stop, stopped) = watch::channel(false);
    let kpi_stopped = stopped.clone();
    let live = tokio::spawn(async move { runner.run(stopped).await });
    let kpi_live = tokio::spawn(async move { kpi_runner.run(kpi_stopped).await });

    set_up(&scheme, hkd(857_000_000)).await;
    generate(&scheme).await;
    let head: i64 =
        sqlx::query_scalar("SELECT max(global_position) FROM events").fetch_one(&database.pool).await.expect("head");
    assert!(
        wait_for_position(&database.pool, applications::NAME, Position(head as u64), Duration::from_secs(60))
            .await
            .expect("wait")
    );
    assert!(
        wait_for_position(&database.pool, kpi::NAME, Position(head as u64), Duration::from_secs(60))
            .await
            .expect("wait")
    );
    let _ = stop.send(true);
    live.await.expect("runner");
    kpi_live.await.expect("kpi runner");
    let built_live = snapshot(&database.pool).await;
    let kpi_built_live = kpi_snapshot(&database.pool).await;
    assert_eq!(built_live[0].len(), APPLICATIONS);
    // One July charge per signed agreement (every twelfth application), a quarter of them reversed.
    assert_eq!(built_live[2].len(), APPLICATIONS / 12);
    let reversed = built_live[2].iter().filter(|row| row.contains("\"reversed\":true")).count();
    assert_eq!(reversed, APPLICATIONS / 48 + usize::from(APPLICATIONS % 48 > 3));

    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&database.pool).await.expect("count");
    let started = std::time::Instant::now();
    ProjectionRunner::new(database.pool.clone(), store.clone(), projection)
        .rebuild(Duration::from_secs(60))
        .await
        .expect("rebuild");
    let seconds = started.elapsed().as_secs_f64();
    // A figure for the record, not an assertion: timings belong to the benchmark.
    eprintln!(
        "rebuilt the applications read model from {events} events in {seconds:.2} s ({:.0} events/s)",
        events as f64 / seconds
    );
    assert_eq!(snapshot(&database.pool).await, built_live, "live equals rebuilt");
    let started = std::time::Instant::now();
    ProjectionRunner::new(database.pool.clone(), store, Arc::new(Kpi))
        .rebuild(Duration::from_secs(60))
        .await
        .expect("rebuild the KPI read model");
    eprintln!("rebuilt the KPI read model from {events} events in {:.2} s", started.elapsed().as_secs_f64());
    let kpi_rebuilt = kpi_snapshot(&database.pool).await;
    assert!(kpi_built_live[1].len() > kpi_built_live[0].len(), "a history row per change");
    for (table, (live, rebuilt)) in kpi_built_live.iter().zip(&kpi_rebuilt).enumerate() {
        assert_eq!(live, rebuilt, "KPI table {table}: live equals rebuilt, history and dated parts included");
    }

    let pool = &database.pool;
    let query = |filter: ApplicationFilter| async move { applications::list(pool, &filter).await.expect("list") };
    let all = ApplicationFilter { limit: 500, ..ApplicationFilter::default() };
    let (_, total) = query(all.clone()).await;
    assert_eq!(total, APPLICATIONS as i64);
    for (status, expected) in [
        ("submitted", 500),
        ("eligible", 500),
        ("assessed", 500),
        ("approved", 250),
        ("agreement_signed", 250),
        ("rejected", 500),
        ("withdrawn", 500),
    ] {
        let (rows, count) = query(ApplicationFilter { status: Some(status.into()), ..all.clone() }).await;
        assert_eq!((count, rows.len()), (expected, expected as usize), "{status}");
        assert!(rows.iter().all(|row| row.status == status));
    }
    let (approved, _) = query(ApplicationFilter { status: Some("approved".into()), ..all.clone() }).await;
    assert!(approved.iter().all(|row| row.ceiling_cents == Some(285_600)
        && row.approved_rate_bps == Some(7_000)
        && row.assessed_by.as_deref() == Some("assessor-1")));
    let (startups, count) = query(ApplicationFilter { category: Some("ai_startup".into()), ..all.clone() }).await;
    assert_eq!((count, startups.iter().all(|row| row.sub_type == "cyberport_incubatee_or_alumnus")), (750, true));
    let (speech, count) = query(ApplicationFilter { text: Some("cantonese".into()), ..all.clone() }).await;
    assert_eq!(count, 300);
    assert!(speech.iter().all(|row| row.project_title.contains("Cantonese")));
    let shouted = query(ApplicationFilter { text: Some("CANTONESE Speech".into()), ..all.clone() }).await.1;
    assert_eq!(shouted, 300, "free text ignores case");
    for wildcard in ["%", "_", "cantonese%speech", "\\"] {
        let literal = query(ApplicationFilter { text: Some(wildcard.into()), ..all.clone() }).await.1;
        assert_eq!(literal, 0, "{wildcard:?} is matched as typed, not as a pattern");
    }
    let year = FinancialYear::parse("2025-26").expect("year");
    assert_eq!(
        query(ApplicationFilter { submitted_between: Some((year.first_day(), year.last_day())), ..all.clone() })
            .await
            .1,
        APPLICATIONS as i64
    );
    assert_eq!(
        query(ApplicationFilter {
            submitted_between: Some((year.next().first_day(), year.next().last_day())),
            ..all.clone()
        })
        .await
        .1,
        0
    );

    let (first_page, _) = query(ApplicationFilter {
        sort: Sort::ProjectTitle,
        descending: true,
        limit: 25,
        ..ApplicationFilter::default()
    })
    .await;
    let (second_page, _) = query(ApplicationFilter {
        sort: Sort::ProjectTitle,
        descending: true,
        limit: 25,
        offset: 25,
        ..ApplicationFilter::default()
    })
    .await;
    let titles: Vec<&str> = first_page.iter().chain(&second_page).map(|row| row.project_title.as_str()).collect();
    assert_eq!(titles.len(), 50);
    assert!(titles.windows(2).all(|pair| pair[0] >= pair[1]), "sorted descending across pages");
    assert!(titles[0].starts_with("Project 2999"));

    let queue = applications::batch_queue(pool, "2025-q2", day(2025, 6, 20)).await.expect("queue").expect("batch");
    assert!(queue.closed);
    assert_eq!(queue.awaiting_eligibility.len(), 500);
    assert_eq!(queue.awaiting_assessment.len(), 500);
    assert_eq!(queue.ready_for_committee.len(), 500);
    assert_eq!(queue.decided.len(), 1_000);
    assert_eq!(queue.counts.get("withdrawn"), Some(&500));
    assert_eq!(queue.overdue.len(), 1_000, "not ready although the committee met on 2025-06-15");
    let before_meeting =
        applications::batch_queue(pool, "2025-q2", day(2025, 6, 10)).await.expect("queue").expect("batch");
    assert!(before_meeting.overdue.is_empty());
    assert!(applications::batch_queue(pool, "no-such", day(2025, 6, 10)).await.expect("queue").is_none());

    let mut connection = pool.acquire().await.expect("connection");
    let kpi =
        kpi::dashboard(&mut connection, Some((year.to_string(), year.first_day(), year.last_day())), day(2025, 7, 1))
            .await
            .expect("kpi");
    assert_eq!((kpi.applications_received, kpi.applications_approved, kpi.applications_rejected), (3_000, 500, 500));
    assert_eq!(kpi.approval_rate_bps, Some(5_000));
    assert!(
        kpi.median_days_to_decision.is_some_and(|days| (25..=45).contains(&days)),
        "{:?}",
        kpi.median_days_to_decision
    );
    let subsidy = kpi.budget.iter().find(|line| line.line == "computing_power_subsidy").expect("line");
    // 500 approvals of HK$2,856.00.
    assert_eq!((subsidy.received_cents, subsidy.committed_cents), (85_700_000_000, 142_800_000));
    assert_eq!(subsidy.left_cents, 85_700_000_000 - 142_800_000);
    let gpu_capacity = &kpi.capacity[0];
    assert_eq!(
        (gpu_capacity.capacity_units, gpu_capacity.subsidised_cap_units, gpu_capacity.allocated_units),
        (60_000, 54_000, 48_000)
    );
    // The July charges not reversed, of the 48,000 node-hours allocated.
    let used: u64 = (0..APPLICATIONS).filter(|n| n % 12 == 3 && n % 48 != 3).map(|n| 1 + (n % 16) as u64).sum();
    assert_eq!(used, 2_248);
    assert_eq!(kpi.utilisation_bps, Some((used * 10_000 / 48_000) as i64));
    assert_eq!(
        (kpi.projects_developing_ai_models, kpi.mainland_or_overseas_teams, kpi.talents_involved),
        (500, 500, 3_000)
    );
    assert_eq!(kpi.by_category["rnd_centre"].approved, 250);
    assert_eq!(kpi.by_category["ai_startup"].received, 750);
    assert_eq!(kpi.by_category["rnd_centre"].average_approved_rate_bps, Some(7_000));
    let csv = kpi::to_csv(&kpi);
    assert!(csv.lines().any(|line| line == r#""2025-26","applications_approved","","500""#), "{csv}");
    let whole = kpi::dashboard(&mut connection, None, day(2025, 7, 1)).await.expect("kpi");
    assert_eq!((whole.scope.as_str(), whole.applications_received), ("scheme", 3_000));

    // As it stood just before the first rejection: one approval, no rejection yet.
    let before: i64 =
        sqlx::query_scalar("SELECT min(global_position) - 1 FROM events WHERE event_type = 'ApplicationRejected'")
            .fetch_one(pool)
            .await
            .expect("position");
    let past = PastView { as_of: Some(Position(before as u64)), effective_on: None };
    let then = kpi::dashboard_at(&mut connection, past, None, day(2025, 7, 1)).await.expect("as of");
    assert_eq!((then.applications_received, then.applications_approved, then.applications_rejected), (3_000, 1, 0));
    // On the committee's day every decision is in force; the day before, none.
    let on = |date| PastView { as_of: None, effective_on: Some(date) };
    let decided = kpi::dashboard_at(&mut connection, on(committee_day()), None, day(2025, 7, 1)).await.expect("on");
    assert_eq!((decided.applications_approved, decided.applications_rejected), (500, 500));
    let before_meeting =
        kpi::dashboard_at(&mut connection, on(day(2025, 6, 14)), None, day(2025, 7, 1)).await.expect("on");
    assert_eq!((before_meeting.applications_approved, before_meeting.median_days_to_decision), (0, None));
    drop(connection);
    database.drop_database().await;
}
