//! Usage charges are decided on the application's own stream: concurrent charges on one
//! application are each decided again on fresh state until they are recorded or refused by
//! the scheme's rules (never a 409 without `If-Match`), and no charge or reversal writes to
//! the funding year, whose disbursed total is the read model's.

mod support;

use std::sync::Arc;

use aisc_domain::event_store::{EventStore, PositionRange, StreamId};
use aisc_domain::subsidy::application::SignAgreement;
use aisc_domain::subsidy::values::Money;
use serde_json::{Value, json};
use support::scheme::*;
use support::{TestApp, TestDatabase, TestResponse};
use tokio::sync::Barrier;

const GPU: &str = "gpu_node_hour_h800";

/// The subsidy of `units` July node-hours: HK$42.50 × 70 % = HK$29.75 each.
fn subsidy_of(units: i64) -> i64 {
    units * 2_975
}

/// Applications `ids`, approved (1,000 GPU node-hours a month, July to December 2025, 70 %,
/// ceiling HK$178,500.00) and signed, with a progress report due on 2026-01-15.
async fn signed(scheme: &Scheme, ids: &[&str]) {
    set_up(scheme, hkd(857_000_000)).await;
    for id in ids {
        submitted(scheme, id).await;
    }
    ready_for_committee(scheme, ids).await;
    for id in ids {
        act(scheme, &approval(id, None), "sec-1", "committee_secretariat", committee_day()).await.expect("approve");
        let agreement = SignAgreement {
            application_id: (*id).into(),
            signed_on: day(2025, 6, 30),
            reporting_due_dates: vec![day(2026, 1, 15)],
        };
        act(scheme, &agreement, "sec-1", "committee_secretariat", day(2025, 6, 30)).await.expect("agreement");
    }
}

/// The hash chains of the whole log are intact.
async fn verified(store: &impl EventStore) {
    let report = store.verify(PositionRange::WHOLE_LOG).await.expect("verify");
    assert_eq!(report.first_broken, None, "{report:?}");
}

#[tokio::test]
async fn twenty_concurrent_charges_on_one_application_all_succeed_in_process() {
    // More connections than writers, so the twenty really race for the stream.
    let database = TestDatabase::create_with_pool_size(30).await;
    let scheme = Arc::new(scheme(&database).await);
    signed(&scheme, &["a1"]).await;

    // Twenty charges of 50 node-hours in July: 1,000, the whole allocation, HK$29,750.00.
    let start = Arc::new(Barrier::new(20));
    let mut charges = tokio::task::JoinSet::new();
    for n in 0..20 {
        let (scheme, start) = (scheme.clone(), start.clone());
        charges.spawn(async move {
            let charge = usage("a1", &format!("race-{n:02}"), "2025-07", 50);
            start.wait().await;
            (n, act(&scheme, &charge, "fin-1", "finance_officer", day(2025, 8, 5)).await)
        });
    }
    let outcomes = charges.join_all().await;
    let failed: Vec<_> = outcomes.iter().filter(|(_, outcome)| outcome.is_err()).collect();
    assert!(failed.is_empty(), "every charge is recorded: {failed:?}");

    let (state, version) = scheme.application_state("a1").await.expect("state");
    assert_eq!(state.usage.len(), 20);
    assert!((0..20).all(|n| state.usage.get(&format!("race-{n:02}")).is_some_and(|line| line.units == 50)));
    assert_eq!(state.disbursed, Money::from_cents(subsidy_of(1_000)));
    assert_eq!(disbursed_in(&state, "2025-26"), Money::from_cents(subsidy_of(1_000)));
    // Submitted, eligible, assessed, approved, signed, then the twenty charges.
    assert_eq!(version, Some(4 + 20));
    // Each charge reports its running total: one charge per total, the last the whole.
    let mut totals: Vec<i64> = Vec::new();
    let store = scheme.commands().store();
    let stream = StreamId::parse("application-a1").expect("stream");
    for event in
        store.read_stream(&stream, None, aisc_domain::event_store::ReadDirection::Forward, 100).await.expect("read")
    {
        if event.event_type == "UsageCharged" {
            totals.push(event.data["disbursed_total"].as_i64().expect("disbursed_total"));
        }
    }
    assert_eq!(totals, (1..=20).map(|n| subsidy_of(50 * n)).collect::<Vec<_>>());
    verified(store).await;
    database.drop_database().await;
}

/// A usage charge of `units` July node-hours on `application`, over HTTP as a finance officer.
async fn charge_over_http(port: u16, bearer: &str, application: &str, usage_id: &str, units: u64) -> TestResponse {
    let body = json!({"usage_id": usage_id, "service_type": GPU, "period": "2025-07", "units": units}).to_string();
    let headers = [("Authorization", bearer), ("Content-Type", "application/json")];
    support::http(port, "POST", &format!("/api/v1/applications/{application}/usage"), &headers, Some(&body)).await
}

/// `count` charges of `units` July node-hours each on `application`, sent at once over HTTP;
/// answers each charge's number and response.
async fn race_over_http(app: &TestApp, application: &str, count: usize, units: u64) -> Vec<(usize, TestResponse)> {
    let start = Arc::new(Barrier::new(count));
    let mut charges = tokio::task::JoinSet::new();
    for n in 0..count {
        let (port, bearer, application, start) =
            (app.port, app.bearer("finance_officer"), application.to_string(), start.clone());
        charges.spawn(async move {
            start.wait().await;
            (n, charge_over_http(port, &bearer, &application, &format!("race-{n:02}"), units).await)
        });
    }
    let mut outcomes = charges.join_all().await;
    outcomes.sort_by_key(|(n, _)| *n);
    outcomes
}

/// The last position the log holds.
async fn head(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT max(global_position) FROM events").fetch_one(&app.database.pool).await.expect("head")
}

#[tokio::test]
async fn twenty_concurrent_charges_on_one_application_all_succeed_over_http() {
    let app = TestApp::spawn().await;
    let scheme = scheme(&app.database).await;
    signed(&scheme, &["a1"]).await;
    app.set_day(2025, 8, 5);

    let outcomes = race_over_http(&app, "a1", 20, 50).await;
    for (n, response) in &outcomes {
        assert!(matches!(response.status, 200 | 201), "charge {n}: {} {}", response.status, response.body);
    }
    let positions: Vec<u64> =
        outcomes.iter().map(|(_, response)| response.json()["position"].as_u64().expect("position")).collect();

    let view = app.get("auditor", "/api/v1/applications/a1").await.json();
    assert_eq!(view["state"]["usage"]["lines"], 20, "{view}");
    assert_eq!(view["state"]["disbursed"], subsidy_of(1_000));
    assert_eq!(view["version"], 4 + 20);
    let last = positions.iter().max().expect("positions");
    let usage = app.get("finance_officer", &format!("/api/v1/applications/a1/usage?after_position={last}")).await;
    assert_eq!(usage.status, 200, "{}", usage.body);
    let usage = usage.json();
    assert_eq!(usage["lines"].as_array().map(Vec::len), Some(20), "{usage}");
    assert_eq!(usage["totals"], json!({"units": 1_000, "gross_cents": 4_250_000, "subsidy_cents": subsidy_of(1_000)}));
    // The view summarises the usage per month; the lines are paged, the totals count them all.
    assert_eq!(
        view["state"]["usage"]["by_month"],
        json!([{"service_type": "gpu_node_hour_h800", "period": "2025-07", "units": 1_000}])
    );
    let page = app.get("finance_officer", "/api/v1/applications/a1/usage?offset=15&limit=10").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let page = page.json();
    assert_eq!((&page["total_lines"], &page["offset"], &page["limit"]), (&json!(20), &json!(15), &json!(10)));
    assert_eq!(
        page["lines"],
        json!(usage["lines"].as_array().map(|lines| lines[15..].to_vec())),
        "the last five lines"
    );
    assert_eq!(page["totals"], usage["totals"]);
    for bad in ["limit=0", "limit=501", "offset=-1", "page=2"] {
        let refused = app.get("finance_officer", &format!("/api/v1/applications/a1/usage?{bad}")).await;
        assert_eq!(refused.status, 400, "{bad}: {}", refused.body);
    }
    let year = app.get("finance_officer", &format!("/api/v1/funding-years/2025-26?after_position={last}")).await;
    assert_eq!(year.status, 200, "{}", year.body);
    assert_eq!(year.json()["state"]["disbursed"], subsidy_of(1_000), "{}", year.body);
    verified(scheme.commands().store()).await;
    app.stop().await;
}

#[tokio::test]
async fn of_forty_concurrent_charges_exactly_those_within_the_allocation_succeed_and_the_rest_are_422() {
    let app = TestApp::spawn().await;
    let scheme = scheme(&app.database).await;
    signed(&scheme, &["a1"]).await;
    app.set_day(2025, 8, 5);

    // Forty charges of 30 node-hours against July's 1,000: 33 fit (990), 7 do not.
    let outcomes = race_over_http(&app, "a1", 40, 30).await;
    let (accepted, refused): (Vec<_>, Vec<_>) =
        outcomes.iter().partition(|(_, response)| matches!(response.status, 200 | 201));
    assert_eq!((accepted.len(), refused.len()), (33, 7), "{:?}", refused);
    for (n, response) in &refused {
        assert_eq!(
            (response.status, response.json()["code"].as_str()),
            (422, Some("units_above_allocation")),
            "charge {n}: {}",
            response.body
        );
    }

    let (state, _) = scheme.application_state("a1").await.expect("state");
    assert_eq!(state.usage.len(), 33);
    let charged: std::collections::BTreeSet<String> = state.usage.lines().into_keys().collect();
    let answered: std::collections::BTreeSet<String> = accepted.iter().map(|(n, _)| format!("race-{n:02}")).collect();
    assert_eq!(charged, answered, "exactly the charges answered 2xx are recorded");
    assert_eq!(state.usage.lines().values().map(|line| line.units).sum::<u64>(), 990);
    assert_eq!(state.disbursed, Money::from_cents(subsidy_of(990)));
    let year =
        app.get("finance_officer", &format!("/api/v1/funding-years/2025-26?after_position={}", head(&app).await)).await;
    assert_eq!(year.json()["state"]["disbursed"], subsidy_of(990), "{}", year.body);
    verified(scheme.commands().store()).await;
    app.stop().await;
}

#[tokio::test]
async fn charges_and_reversals_never_write_to_the_funding_year_which_reads_its_total_from_the_read_model() {
    let app = TestApp::spawn().await;
    let scheme = scheme(&app.database).await;
    signed(&scheme, &["a1", "a2"]).await;
    let store = scheme.commands().store();
    let year_stream = StreamId::parse("budget-2025-26").expect("stream");
    let version_before = store.stream_version(&year_stream).await.expect("version");
    // The receipt and two commitments.
    assert_eq!(version_before, Some(2));
    let year_path = "/api/v1/funding-years/2025-26";
    let etag_before = app.get("finance_officer", year_path).await.header("etag").map(str::to_string);
    assert_eq!(etag_before.as_deref(), Some("\"2\""));

    app.set_day(2025, 9, 5);
    let bearer = app.bearer("finance_officer");
    let ok = |response: TestResponse| -> Value {
        assert!(matches!(response.status, 200 | 201), "{} {}", response.status, response.body);
        response.json()
    };
    ok(charge_over_http(app.port, &bearer, "a1", "a1-2025-07", 1_000).await);
    ok(charge_over_http(app.port, &bearer, "a2", "a2-2025-07", 400).await);
    let august = json!({"usage_id": "a2-2025-08", "service_type": GPU, "period": "2025-08", "units": 100}).to_string();
    let charged = ok(app.post("finance_officer", "/api/v1/applications/a2/usage", &[], &august).await);
    // July 1,000 + 400 and August 100 node-hours at HK$29.75.
    let year = app.get("finance_officer", &format!("{year_path}?after_position={}", charged["position"])).await;
    assert_eq!(year.status, 200, "{}", year.body);
    assert_eq!(year.json()["state"]["disbursed"], subsidy_of(1_500), "{}", year.body);

    let reversal = r#"{"reason": "metering error"}"#;
    let reversed =
        ok(app.post("finance_officer", "/api/v1/applications/a2/usage/a2-2025-08/reversal", &[], reversal).await);
    assert_eq!(reversed["stream_id"], "application-a2");
    let year = app.get("finance_officer", &format!("{year_path}?after_position={}", reversed["position"])).await;
    assert_eq!(year.status, 200, "{}", year.body);
    assert_eq!(year.header("etag").map(str::to_string), etag_before, "the funding year's version is unchanged");
    let year = year.json();
    assert_eq!(year["state"]["disbursed"], subsidy_of(1_400), "{year}");
    assert_eq!(year["state"]["committed"], 2 * 17_850_000, "{year}");
    assert_eq!(store.stream_version(&year_stream).await.expect("version"), version_before);
    let (a1, _) = scheme.application_state("a1").await.expect("a1");
    let (a2, _) = scheme.application_state("a2").await.expect("a2");
    assert_eq!(
        disbursed_in(&a1, "2025-26").cents() + disbursed_in(&a2, "2025-26").cents(),
        subsidy_of(1_400),
        "the year's total is its applications' figures"
    );
    verified(store).await;
    app.stop().await;
}

/// A bulk import of one line per transaction races forty single charges on the same
/// application: every conflict is decided again on fresh state, so the import finishes and
/// every line and every single charge is recorded once.
#[tokio::test]
async fn an_import_racing_forty_single_charges_on_one_application_finishes_and_charges_each_once() {
    let database = TestDatabase::create_with_pool_size(50).await;
    let scheme = Arc::new(scheme(&database).await);
    signed(&scheme, &["a1"]).await;
    // Forty lines of 10 node-hours (the import) and forty singles of 10 (July allows 1,000).
    let mut csv = String::from("project,service_type,units,period\n");
    for _ in 0..40 {
        csv.push_str("a1,gpu_node_hour_h800,10,2025-07\n");
    }
    let start = Arc::new(Barrier::new(41));
    let mut singles = tokio::task::JoinSet::new();
    for n in 0..40 {
        let (scheme, start) = (scheme.clone(), start.clone());
        singles.spawn(async move {
            let charge = usage("a1", &format!("single-{n:02}"), "2025-07", 10);
            start.wait().await;
            act(&scheme, &charge, "fin-2", "finance_officer", day(2025, 8, 5)).await
        });
    }
    let request = aisc_domain::subsidy::service::UsageImportRequest {
        import_id: "race",
        csv: &csv,
        mode: aisc_domain::subsidy::usage_import::ImportMode::AllOrNothing,
        repeated_lines: aisc_domain::subsidy::usage_import::RepeatedLines::Refuse,
        today: day(2025, 8, 5),
        batch_lines: 1,
    };
    start.wait().await;
    let report = scheme.import_usage(request, &meta("fin-1", "finance_officer")).await.expect("the import finishes");
    let failed: Vec<_> = singles.join_all().await.into_iter().filter(|outcome| outcome.is_err()).collect();
    assert!(failed.is_empty(), "every single charge is recorded: {failed:?}");
    assert_eq!((report.written, report.refused.len()), (40, 0), "{report:?}");

    let (state, _) = scheme.application_state("a1").await.expect("state");
    assert_eq!(state.usage.len(), 80);
    assert_eq!(state.disbursed, Money::from_cents(subsidy_of(800)));
    verified(scheme.commands().store()).await;
    database.drop_database().await;
}
