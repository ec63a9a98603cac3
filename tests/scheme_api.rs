//! The scheme over HTTP, as a staff tool drives it: batch opening to completion, the role
//! matrix of every command, optimistic concurrency, idempotent submission, bad inputs, and the
//! scheme's rules (each refusal a 422 with its stable code, nothing written).

mod support;

use serde_json::{Value, json};
use support::{ROLES, TestApp, http};

fn submission() -> Value {
    json!({
        "organisation": "The Chinese University of Hong Kong",
        "category": "local_institution",
        "sub_type": "ugc_funded_university",
        "project_title": "Medical imaging foundation model",
        "project_summary": "Pre-training on de-identified scans.",
        "develops_ai_models": true,
        "requested_resources": [{"service_type": "gpu_node_hour_h800", "first_period": "2025-07", "last_period": "2025-12", "units_per_month": 1000}],
        "requested_rate_bps": 7000,
        "team_size": 14,
        "talents": 9,
        "mainland_or_overseas_team": false,
        "other_government_funding": false,
        "undertakings": null,
        "contact": {"name": "Prof Wong", "email": "wong@cuhk.edu.hk"}
    })
}

/// The committee's approval at 70 % of 1,000 GPU node-hours a month, July to December 2025,
/// decided on 2025-06-15; no ceiling, so the ceiling is the subsidy of those units:
/// 6,000 × HK$42.50 × 70 % = HK$178,500.00.
fn approval() -> Value {
    let allocations: Vec<Value> = ["2025-07", "2025-08", "2025-09", "2025-10", "2025-11", "2025-12"]
        .iter()
        .map(|month| json!({"service_type": "gpu_node_hour_h800", "period": month, "units": 1000}))
        .collect();
    json!({
        "meeting": {"meeting_reference": "AISC-COM-2025-06", "decided_on": "2025-06-15", "members_present": ["m1", "m2", "m3"], "members_recused": ["m4"]},
        "rate_bps": 7000,
        "exceptional_reason": null,
        "allocations": allocations,
        "start": "2025-07-01",
        "end": "2025-12-31",
        "conditions": ["monthly utilisation report"]
    })
}

#[track_caller]
fn ok(response: &support::TestResponse) -> Value {
    assert!(response.status < 300, "{} {}", response.status, response.body);
    response.json()
}

/// Batch, funding, price and capacity, as the set-up roles record them.
async fn set_up(app: &TestApp) {
    ok(&app
        .post(
            "committee_secretariat",
            "/api/v1/batches",
            &[],
            r#"{"batch_id": "2025-q2", "deadline": "2025-05-31", "committee_date": "2025-06-15"}"#,
        )
        .await);
    ok(&app
        .post(
            "finance_officer",
            "/api/v1/funding-years/2025-26/receipts",
            &[],
            r#"{"line": "computing_power_subsidy", "amount_cents": 85700000000, "received_on": "2025-04-01"}"#,
        )
        .await);
    ok(&app.post("administrator", "/api/v1/price-schedule/rates", &[], r#"{"service_type": "gpu_node_hour_h800", "rate_per_unit_cents": 4250, "unit": "node-hour", "effective_from": "2025-04-01"}"#).await);
    for month in ["2025-07", "2025-08", "2025-09", "2025-10", "2025-11", "2025-12"] {
        let body = json!({"service_type": "gpu_node_hour_h800", "period": month, "units": 10000}).to_string();
        ok(&app.post("administrator", "/api/v1/capacity", &[], &body).await);
    }
}

/// Submitted (on 2025-05-02), eligible, batch closed, assessed: returns the application id,
/// on the day the committee decides (2025-06-15).
async fn assessed_application(app: &TestApp) -> String {
    app.set_day(2025, 5, 2);
    let submitted = app.post("intake_officer", "/api/v1/applications", &[], &submission().to_string()).await;
    assert_eq!(submitted.status, 201, "{}", submitted.body);
    let location = submitted.header("location").expect("Location").to_string();
    let id = location.rsplit('/').next().expect("id").to_string();
    app.set_day(2025, 6, 2);
    ok(&app.post("intake_officer", &format!("/api/v1/applications/{id}/eligibility-check"), &[], "{}").await);
    let _ = app.post("committee_secretariat", "/api/v1/batches/2025-q2/closure", &[], "{}").await;
    let assessment = json!({"scores": {"a_meets_hong_kong_needs": 8, "b_requirement_reasonable": 7, "c_feasibility_and_outcome": 8, "d_capability": 9}, "recommended_rate_bps": 7000, "recommended_ceiling_cents": 50_000_000, "duration_months": 6, "no_conflict_declared": true});
    ok(&app.post("assessor", &format!("/api/v1/applications/{id}/assessment"), &[], &assessment.to_string()).await);
    app.set_day(2025, 6, 15);
    id
}

#[tokio::test]
async fn a_staff_tool_drives_an_application_from_batch_opening_to_completion() {
    let app = TestApp::spawn().await;
    set_up(&app).await;
    let id = assessed_application(&app).await;
    let base = format!("/api/v1/applications/{id}");

    let approved =
        ok(&app.post("committee_secretariat", &format!("{base}/approval"), &[], &approval().to_string()).await);
    assert_eq!(approved["stream_id"], format!("application-{id}"));
    assert!(approved["position"].as_u64().is_some());
    let terms = app.get("auditor", &base).await.json()["state"]["approval"].clone();
    assert_eq!(terms["ceiling"], 17_850_000, "no ceiling sent: the subsidy of the allocated units, {terms}");
    assert_eq!(terms["reservations"], json!([{"year": "2025-26", "amount": 17_850_000}]));
    app.set_day(2025, 6, 30);
    let agreement = r#"{"signed_on": "2025-06-30", "reporting_due_dates": ["2025-10-15", "2026-01-15"]}"#;
    ok(&app.post("committee_secretariat", &format!("{base}/agreement"), &[], agreement).await);

    app.set_day(2025, 8, 5);
    let usage =
        r#"{"usage_id": "sched-2025-07", "service_type": "gpu_node_hour_h800", "period": "2025-07", "units": 1000}"#;
    ok(&app.post("finance_officer", &format!("{base}/usage"), &[], usage).await);
    app.set_day(2025, 11, 5);
    let october =
        r#"{"usage_id": "sched-2025-10", "service_type": "gpu_node_hour_h800", "period": "2025-10", "units": 400}"#;
    let blocked = app.post("finance_officer", &format!("{base}/usage"), &[], october).await;
    assert_eq!(
        (blocked.status, blocked.json()["code"].as_str()),
        (422, Some("progress_report_overdue")),
        "{}",
        blocked.body
    );
    let report = json!({"due": "2025-10-15", "kpis": {"ai_models_trained_or_deployed": 1, "talents_employed": 9, "mainland_or_overseas_collaborators": 0, "publications": 2, "patents": 1}, "summary": "checkpoint one"});
    ok(&app.post("intake_officer", &format!("{base}/progress-reports"), &[], &report.to_string()).await);
    ok(&app
        .post("assessor", &format!("{base}/progress-reports/2025-10-15/review"), &[], r#"{"accepted": true}"#)
        .await);
    ok(&app.post("finance_officer", &format!("{base}/usage"), &[], october).await);
    ok(&app
        .post(
            "finance_officer",
            &format!("{base}/usage/sched-2025-10/reversal"),
            &[],
            r#"{"reason": "double-metered"}"#,
        )
        .await);
    app.set_day(2026, 1, 31);
    let completed = ok(&app.post("committee_secretariat", &format!("{base}/completion"), &[], "{}").await);

    let view = app.get("auditor", &base).await;
    assert_eq!(view.status, 200);
    assert_eq!(view.header("etag"), Some(format!("\"{}\"", completed["version"]).as_str()));
    let state = view.json();
    assert_eq!(state["state"]["status"], "completed");
    // 1,000 node-hours at HK$42.50 and 70 %: HK$29,750.00.
    assert_eq!(state["state"]["disbursed"], 2_975_000);
    // The year's disbursed total is the read model's, once it has the completion's position.
    let year = app
        .get("finance_officer", &format!("/api/v1/funding-years/2025-26?after_position={}", completed["position"]))
        .await;
    assert_eq!(year.status, 200, "{}", year.body);
    let year = year.json();
    assert_eq!(year["state"]["disbursed"], 2_975_000);
    assert_eq!(year["state"]["committed"], 2_975_000, "the unused commitment was released");

    // The read models have it once they reach the position the command returned.
    let listed = app
        .get("auditor", &format!("/api/v1/applications?status=completed&after_position={}", completed["position"]))
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let listed = listed.json();
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["items"][0]["application_id"], id.as_str());
    assert_eq!(listed["items"][0]["disbursed_cents"], 2_975_000);
    let queue = app
        .get(
            "committee_secretariat",
            &format!("/api/v1/batches/2025-q2/queue?after_position={}", completed["position"]),
        )
        .await;
    assert_eq!(queue.status, 200, "{}", queue.body);
    assert_eq!(queue.json()["decided"][0], id.as_str());

    // Finance officers read each charge's units, rate, gross amount and subsidy, and the
    // funding year's disbursement figures, from the read model.
    let usage = app.get("finance_officer", &format!("{base}/usage?after_position={}", completed["position"])).await;
    assert_eq!(usage.status, 200, "{}", usage.body);
    let usage = usage.json();
    let july = &usage["lines"][0];
    assert_eq!(
        (&july["usage_id"], &july["units"], &july["rate_per_unit_cents"], &july["gross_cents"]),
        (&json!("sched-2025-07"), &json!(1_000), &json!(4_250), &json!(4_250_000)),
        "{usage}"
    );
    assert_eq!(
        (&july["subsidy_rate_bps"], &july["subsidy_cents"], &july["reversed"]),
        (&json!(7_000), &json!(2_975_000), &json!(false))
    );
    let october = &usage["lines"][1];
    assert_eq!(
        (&october["usage_id"], &october["gross_cents"], &october["subsidy_cents"], &october["reversed"]),
        (&json!("sched-2025-10"), &json!(1_700_000), &json!(1_190_000), &json!(true))
    );
    assert_eq!(october["reversal_reason"], "double-metered");
    assert_eq!(usage["totals"], json!({"units": 1_000, "gross_cents": 4_250_000, "subsidy_cents": 2_975_000}));
    let disbursements = app.get("finance_officer", "/api/v1/funding-years/2025-26/disbursements").await;
    assert_eq!(disbursements.status, 200, "{}", disbursements.body);
    let disbursements = disbursements.json();
    assert_eq!(disbursements["totals"], json!({"units": 1_000, "gross_cents": 4_250_000, "subsidy_cents": 2_975_000}));
    let months = disbursements["months"].as_array().expect("months");
    assert_eq!(months.len(), 2, "{disbursements}");
    assert_eq!(
        (&months[0]["period"], &months[0]["lines"], &months[0]["gross_cents"]),
        (&json!("2025-07"), &json!(1), &json!(4_250_000))
    );
    assert_eq!(
        (&months[1]["period"], &months[1]["lines"], &months[1]["reversed_lines"], &months[1]["reversed_subsidy_cents"]),
        (&json!("2025-10"), &json!(0), &json!(1), &json!(1_190_000))
    );
    assert_eq!(app.get("finance_officer", "/api/v1/applications/nobody/usage").await.status, 404);
    assert_eq!(app.get("finance_officer", "/api/v1/funding-years/2025/disbursements").await.status, 400);
    // The application's own view summarises its usage; its lines are paged above.
    let summary = &app.get("finance_officer", &base).await.json()["state"]["usage"];
    assert_eq!(
        summary,
        &json!({
            "lines": 2,
            "reversed_lines": 1,
            "by_month": [{"service_type": "gpu_node_hour_h800", "period": "2025-07", "units": 1_000}],
            "disbursed_by_year": {"2025-26": 2_975_000}
        })
    );

    let kpis = app
        .get("finance_officer", &format!("/api/v1/kpis?year=2025-26&after_position={}", completed["position"]))
        .await;
    assert_eq!(kpis.status, 200, "{}", kpis.body);
    let kpis = kpis.json();
    assert_eq!((kpis["applications_received"].as_i64(), kpis["applications_approved"].as_i64()), (Some(1), Some(1)));
    assert_eq!(kpis["utilisation_bps"], 1_666, "1,000 of 6,000 allocated node-hours used");
    assert_eq!(app.get("auditor", "/api/v1/kpis?year=2025").await.status, 400);
    let then = app.get("auditor", &format!("/api/v1/kpis?year=2025-26&as_of={}", approved["position"])).await;
    assert_eq!(then.status, 200, "{}", then.body);
    assert_eq!(then.json()["utilisation_bps"], 0, "as it stood at the approval: nothing used yet");
    let long_ago = app.get("auditor", "/api/v1/kpis?as_of=2000-01-01T00:00:00Z").await;
    assert_eq!((long_ago.status, long_ago.json()["applications_received"].as_i64()), (200, Some(0)));
    assert_eq!(app.get("auditor", "/api/v1/kpis?as_of=yesterday").await.status, 400);
    let bad_sort = app.get("auditor", "/api/v1/applications?sort=colour").await;
    assert_eq!((bad_sort.status, bad_sort.json()["errors"][0]["field"].as_str()), (400, Some("sort")));

    // As it stood right after the approval.
    let then = app.get("auditor", &format!("{base}?as_of={}", approved["position"])).await.json();
    assert_eq!(then["state"]["status"], "approved");
    // The audit trail names who did what.
    let trail = app
        .get(
            "auditor",
            &format!("/api/v1/audit-trail?stream_id=application-{id}&after_position={}", completed["position"]),
        )
        .await
        .json();
    let actors: Vec<&str> =
        trail["entries"].as_array().expect("entries").iter().map(|e| e["actor"].as_str().unwrap_or("")).collect();
    assert_eq!(actors.first(), Some(&"intake_officer-1"));
    assert!(
        actors.contains(&"assessor-1")
            && actors.contains(&"committee_secretariat-1")
            && actors.contains(&"finance_officer-1")
    );
    app.stop().await;
}

/// A page of the audit trail as `(event type, effective_on)`, `"null"` for no business date.
#[track_caller]
fn dated(page: &support::TestResponse) -> Vec<(String, String)> {
    assert_eq!(page.status, 200, "{}", page.body);
    page.json()["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| {
            let effective_on = entry["effective_on"].as_str().unwrap_or("null");
            (entry["event_type"].as_str().unwrap_or_default().to_string(), effective_on.to_string())
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected.iter().map(|(kind, date)| (kind.to_string(), date.to_string())).collect()
}

/// Both clocks of the audit trail: each fact takes effect on its business date — the
/// committee's decision date, the signing date, the usage month's first day, the server's day
/// for what takes effect as it is recorded — whatever day it was recorded on;
/// `effective_until` answers "as it stood on" that date, `recorded_before` "as recorded by".
#[tokio::test]
async fn the_audit_trail_dates_each_fact_by_when_it_takes_effect_and_when_it_was_recorded() {
    let app = TestApp::spawn().await;
    // On 2025-05-02: the batch opens; the application is submitted. On 2025-06-02: ruled
    // eligible, the batch closes, assessed.
    set_up(&app).await;
    let id = assessed_application(&app).await;
    let base = format!("/api/v1/applications/{id}");
    // The committee decided on 2025-06-15; the secretariat records it on 2025-06-20.
    app.set_day(2025, 6, 20);
    ok(&app.post("committee_secretariat", &format!("{base}/approval"), &[], &approval().to_string()).await);
    // Signed on 2025-06-28, recorded on 2025-06-30.
    app.set_day(2025, 6, 30);
    let agreement = r#"{"signed_on": "2025-06-28", "reporting_due_dates": ["2025-10-15", "2026-01-15"]}"#;
    ok(&app.post("committee_secretariat", &format!("{base}/agreement"), &[], agreement).await);
    // On 2025-09-03 August's usage is charged, then July's, late.
    app.set_day(2025, 9, 3);
    let august =
        r#"{"usage_id": "sched-2025-08", "service_type": "gpu_node_hour_h800", "period": "2025-08", "units": 500}"#;
    ok(&app.post("finance_officer", &format!("{base}/usage"), &[], august).await);
    let july =
        r#"{"usage_id": "sched-2025-07", "service_type": "gpu_node_hour_h800", "period": "2025-07", "units": 1000}"#;
    ok(&app.post("finance_officer", &format!("{base}/usage"), &[], july).await);
    app.set_day(2025, 9, 10);
    let reversal = r#"{"reason": "double-metered"}"#;
    ok(&app.post("finance_officer", &format!("{base}/usage/sched-2025-08/reversal"), &[], reversal).await);
    app.set_day(2025, 10, 15);
    let report = json!({"due": "2025-10-15", "kpis": {"ai_models_trained_or_deployed": 1, "talents_employed": 9, "mainland_or_overseas_collaborators": 0, "publications": 2, "patents": 1}, "summary": "checkpoint one"});
    ok(&app.post("intake_officer", &format!("{base}/progress-reports"), &[], &report.to_string()).await);
    app.set_day(2025, 10, 20);
    ok(&app
        .post("assessor", &format!("{base}/progress-reports/2025-10-15/review"), &[], r#"{"accepted": true}"#)
        .await);
    app.set_day(2026, 1, 31);
    let completed = ok(&app.post("committee_secretariat", &format!("{base}/completion"), &[], "{}").await);

    let trail = format!("/api/v1/audit-trail?stream_id=application-{id}");
    let everything = app.get("auditor", &format!("{trail}&after_position={}", completed["position"])).await;
    assert_eq!(
        dated(&everything),
        pairs(&[
            ("ApplicationSubmitted", "2025-05-02"),
            ("EligibilityConfirmed", "2025-06-02"),
            ("AssessmentRecorded", "2025-06-02"),
            ("ApplicationApproved", "2025-06-15"),
            ("AgreementSigned", "2025-06-28"),
            ("UsageCharged", "2025-08-01"),
            ("UsageCharged", "2025-07-01"),
            ("DisbursementReversed", "2025-09-10"),
            ("ProgressReportSubmitted", "2025-10-15"),
            ("ProgressReportReviewed", "2025-10-20"),
            ("ApplicationCompleted", "2026-01-31"),
        ]),
        "{}",
        everything.body
    );
    let entries = everything.json()["entries"].as_array().expect("entries").clone();
    assert!(
        entries.windows(2).all(|pair| pair[0]["recorded_at"].as_str() < pair[1]["recorded_at"].as_str()),
        "recorded in the order of the log: {}",
        everything.body
    );

    // As it stood on a date: the facts taking effect up to it, whenever they were recorded.
    let until = async |date: &str| app.get("auditor", &format!("{trail}&effective_until={date}")).await;
    let first_three = pairs(&[
        ("ApplicationSubmitted", "2025-05-02"),
        ("EligibilityConfirmed", "2025-06-02"),
        ("AssessmentRecorded", "2025-06-02"),
    ]);
    assert_eq!(dated(&until("2025-06-14").await), first_three, "the decision takes effect on its date");
    let mut decided = first_three.clone();
    decided.push(("ApplicationApproved".into(), "2025-06-15".into()));
    assert_eq!(dated(&until("2025-06-15").await), decided, "recorded on 2025-06-20, decided on 2025-06-15");
    let end_of_july = until("2025-07-31").await;
    let mut july_stood = decided.clone();
    july_stood.extend(pairs(&[("AgreementSigned", "2025-06-28"), ("UsageCharged", "2025-07-01")]));
    assert_eq!(dated(&end_of_july), july_stood, "July's usage, charged after August's, without August's");
    let july_entry = end_of_july.json()["entries"][5].clone();
    assert_eq!(july_entry["stream_version"], entries[6]["stream_version"], "{july_entry}");

    // As recorded by a time: what the log held then, whatever dates the facts take effect on.
    let july_recorded_at = entries[6]["recorded_at"].as_str().expect("recorded_at").replace('+', "%2B");
    let recorded = app.get("auditor", &format!("{trail}&recorded_before={july_recorded_at}")).await;
    let mut as_recorded = decided.clone();
    as_recorded.extend(pairs(&[("AgreementSigned", "2025-06-28"), ("UsageCharged", "2025-08-01")]));
    assert_eq!(dated(&recorded), as_recorded, "August's usage was recorded before July's: {}", recorded.body);

    // A range of dates, inclusive at both ends; one day is a range.
    let autumn = app.get("auditor", &format!("{trail}&effective_from=2025-09-01&effective_until=2025-10-20")).await;
    assert_eq!(
        dated(&autumn),
        pairs(&[
            ("DisbursementReversed", "2025-09-10"),
            ("ProgressReportSubmitted", "2025-10-15"),
            ("ProgressReportReviewed", "2025-10-20"),
        ])
    );
    let one_day = app.get("auditor", &format!("{trail}&effective_from=2025-06-15&effective_until=2025-06-15")).await;
    assert_eq!(dated(&one_day), pairs(&[("ApplicationApproved", "2025-06-15")]));
    let from = app.get("auditor", &format!("{trail}&effective_from=2025-10-16")).await;
    assert_eq!(
        dated(&from),
        pairs(&[("ProgressReportReviewed", "2025-10-20"), ("ApplicationCompleted", "2026-01-31")])
    );

    // The budget's commitment takes effect on the committee's decision date; its other facts on
    // the day they happened (received on, released at completion). Usage charges and their
    // reversals are the application's, not the funding year's.
    let budget = app.get("auditor", "/api/v1/audit-trail?stream_id=budget-2025-26").await;
    assert_eq!(
        dated(&budget),
        pairs(&[
            ("FundingReceived", "2025-04-01"),
            ("SubsidyCommitted", "2025-06-15"),
            ("SubsidyReleased", "2026-01-31"),
        ]),
        "{}",
        budget.body
    );
    let batches = app.get("auditor", "/api/v1/audit-trail?stream_id=batches").await;
    assert_eq!(dated(&batches), pairs(&[("BatchOpened", "2025-05-02"), ("BatchClosed", "2025-06-02")]));
    let declared = app.get("auditor", "/api/v1/audit-trail?stream_id=capacity-aisc&event_type=CapacityDeclared").await;
    let months: Vec<String> = dated(&declared).into_iter().map(|(_, date)| date).collect();
    assert_eq!(months, ["2025-07-01", "2025-08-01", "2025-09-01", "2025-10-01", "2025-11-01", "2025-12-01"]);

    // A range that ends before it starts, or a date that is not one, is a bad request.
    for (query, field) in [
        ("effective_from=2025-06-16&effective_until=2025-06-15", "effective_until"),
        ("effective_until=2025-02-30", "effective_until"),
        ("effective_from=15/06/2025", "effective_from"),
    ] {
        let bad = app.get("auditor", &format!("{trail}&{query}")).await;
        assert_eq!(bad.status, 400, "{query}: {}", bad.body);
        assert_eq!(bad.header("content-type"), Some("application/problem+json"), "{query}");
        assert_eq!(bad.json()["errors"][0]["field"], field, "{query}: {}", bad.body);
    }
    app.stop().await;
}

/// Every scheme command route with the only role that may use it.
const COMMANDS: [(&str, &str); 22] = [
    ("/api/v1/batches", "committee_secretariat"),
    ("/api/v1/batches/2025-q2/closure", "committee_secretariat"),
    ("/api/v1/funding-years/2025-26/receipts", "finance_officer"),
    ("/api/v1/funding-years/2025-26/redirection", "finance_officer"),
    ("/api/v1/price-schedule/rates", "administrator"),
    ("/api/v1/capacity", "administrator"),
    ("/api/v1/capacity/redeployments", "committee_secretariat"),
    ("/api/v1/applications", "intake_officer"),
    ("/api/v1/applications/x1/amendments", "intake_officer"),
    ("/api/v1/applications/x1/withdrawal", "intake_officer"),
    ("/api/v1/applications/x1/eligibility-check", "intake_officer"),
    ("/api/v1/applications/x1/assessment", "assessor"),
    ("/api/v1/applications/x1/approval", "committee_secretariat"),
    ("/api/v1/applications/x1/agreement", "committee_secretariat"),
    ("/api/v1/applications/x1/usage", "finance_officer"),
    ("/api/v1/applications/x1/progress-reports", "intake_officer"),
    ("/api/v1/applications/x1/completion", "committee_secretariat"),
    ("/api/v1/applications/x1/rejection", "committee_secretariat"),
    ("/api/v1/applications/x1/deferral", "committee_secretariat"),
    ("/api/v1/applications/x1/termination", "committee_secretariat"),
    ("/api/v1/applications/x1/usage/u1/reversal", "finance_officer"),
    ("/api/v1/applications/x1/progress-reports/2025-10-15/review", "assessor"),
];

#[tokio::test]
async fn every_command_refuses_malformed_unknown_and_oversized_bodies() {
    let app = TestApp::spawn().await;
    let huge = format!(r#"{{"reason": "{}"}}"#, "x".repeat(300_000));
    for (route, role) in COMMANDS {
        let malformed = app.post(role, route, &[], "{,").await;
        assert_eq!(
            (malformed.status, malformed.json()["errors"][0]["field"].as_str()),
            (400, Some("body")),
            "{route}: {}",
            malformed.body
        );
        let unknown = app.post(role, route, &[], r#"{"surprise": true}"#).await;
        assert_eq!(unknown.status, 400, "{route}: {}", unknown.body);
        assert_eq!(unknown.header("content-type"), Some("application/problem+json"));
        let not_json = app.post(role, route, &[], "[1, 2]").await;
        assert_eq!(not_json.status, 400, "{route}: {}", not_json.body);
        assert_eq!(app.post(role, route, &[], &huge).await.status, 413, "{route}");
    }
    app.stop().await;
}

#[tokio::test]
async fn every_command_route_admits_only_its_role() {
    let app = TestApp::spawn().await;
    for (route, allowed) in COMMANDS {
        for role in ROLES {
            let response = app.post(role, route, &[], "{}").await;
            if role == allowed {
                assert_ne!(response.status, 403, "{role} may use {route}: {}", response.body);
                assert_ne!(response.status, 401);
            } else {
                assert_eq!(response.status, 403, "{role} on {route}: {}", response.body);
            }
        }
        assert_eq!(http(app.port, "POST", route, &[], Some("{}")).await.status, 401, "{route}");
    }
    for route in [
        "/api/v1/batches",
        "/api/v1/price-schedule",
        "/api/v1/capacity",
        "/api/v1/applications/x1",
        "/api/v1/funding-years/2025-26",
    ] {
        for role in ROLES {
            assert_ne!(app.get(role, route).await.status, 403, "every role reads {route}");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn a_stale_if_match_gets_412_and_of_two_concurrent_updates_exactly_one_wins() {
    let app = TestApp::spawn().await;
    set_up(&app).await;
    app.set_day(2025, 5, 2);
    let submitted = app.post("intake_officer", "/api/v1/applications", &[], &submission().to_string()).await;
    let id = submitted.header("location").expect("location").rsplit('/').next().expect("id").to_string();
    let etag = app
        .get("intake_officer", &format!("/api/v1/applications/{id}"))
        .await
        .header("etag")
        .expect("etag")
        .to_string();
    assert_eq!(etag, "\"0\"");

    let mut amended = submission();
    amended["team_size"] = json!(20);
    let path = format!("/api/v1/applications/{id}/amendments");
    let first = app.post("intake_officer", &path, &[("If-Match", &etag)], &amended.to_string()).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.header("etag"), Some("\"1\""));
    amended["team_size"] = json!(21);
    let stale = app.post("intake_officer", &path, &[("If-Match", &etag)], &amended.to_string()).await;
    assert_eq!(stale.status, 412, "{}", stale.body);
    assert_eq!(stale.json()["current_version"], 1);

    // Two staff amend at once, both from version 1: exactly one wins.
    let (mut left, mut right) = (submission(), submission());
    left["team_size"] = json!(30);
    right["team_size"] = json!(31);
    let (left, right) = (left.to_string(), right.to_string());
    let (a, b) = tokio::join!(
        app.post("intake_officer", &path, &[("If-Match", "\"1\"")], &left),
        app.post("intake_officer", &path, &[("If-Match", "\"1\"")], &right),
    );
    let statuses = [a.status, b.status];
    assert!(statuses.contains(&200) && statuses.contains(&412), "{statuses:?} {} {}", a.body, b.body);
    app.stop().await;
}

#[tokio::test]
async fn a_submission_retried_with_its_idempotency_key_is_recorded_once() {
    let app = TestApp::spawn().await;
    set_up(&app).await;
    app.set_day(2025, 5, 2);
    let key = [("Idempotency-Key", "intake-form-8812")];
    let first = app.post("intake_officer", "/api/v1/applications", &key, &submission().to_string()).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let retry = app.post("intake_officer", "/api/v1/applications", &key, &submission().to_string()).await;
    assert_eq!((retry.status, retry.body.as_str()), (201, first.body.as_str()));
    assert_eq!(retry.header("location"), first.header("location"));
    let submitted: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'ApplicationSubmitted'")
        .fetch_one(&app.database.pool)
        .await
        .expect("count");
    assert_eq!(submitted, 1, "one set of events");
    let mut other = submission();
    other["team_size"] = json!(3);
    let reused = app.post("intake_officer", "/api/v1/applications", &key, &other.to_string()).await;
    assert_eq!((reused.status, reused.json()["code"].as_str()), (422, Some("idempotency_key_reused")));
    app.stop().await;
}

#[tokio::test]
async fn bad_inputs_get_the_documented_status_and_a_problem_body() {
    let app = TestApp::spawn().await;
    set_up(&app).await;
    let id = assessed_application(&app).await;
    let approval_path = format!("/api/v1/applications/{id}/approval");
    let with = |field: &str, value: Value| {
        let mut body = approval();
        body[field] = value;
        body.to_string()
    };
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("malformed JSON", r#"{"rate_bps": 7000"#.to_string(), 400, "body"),
        ("wrong type", with("rate_bps", json!("seventy")), 400, "rate_bps"),
        (
            "missing field",
            {
                let mut b = approval();
                b.as_object_mut().expect("object").remove("end");
                b.to_string()
            },
            400,
            "end",
        ),
        ("unknown field", with("bonus", json!(1)), 400, "bonus"),
        ("negative money", with("ceiling_cents", json!(-5)), 400, "ceiling_cents"),
        ("overflowing money", with("ceiling_cents", json!(18_446_744_073_709_551_615_u64)), 400, "ceiling_cents"),
        ("rate beyond 100 %", with("rate_bps", json!(12_000)), 400, "rate_bps"),
        ("bad date", with("start", json!("2025-02-30")), 400, "start"),
        (
            "bad month",
            {
                let mut b = approval();
                b["allocations"][0]["period"] = json!("2025-13");
                b.to_string()
            },
            400,
            "allocations[0].period",
        ),
        ("rate above 90 %", with("rate_bps", json!(9_500)), 422, "rate_above_ceiling"),
        ("above 70 % without a reason", with("rate_bps", json!(8_000)), 422, "rate_needs_exceptional_case"),
        ("dates reversed", with("end", json!("2025-06-30")), 422, "dates_reversed"),
    ];
    for (case, body, status, detail) in cases {
        let response = app.post("committee_secretariat", &approval_path, &[], &body).await;
        assert_eq!(response.status, status, "{case}: {}", response.body);
        assert_eq!(response.header("content-type"), Some("application/problem+json"), "{case}");
        let problem = response.json();
        if status == 400 {
            assert_eq!(problem["errors"][0]["field"], detail, "{case}: {problem}");
        } else {
            assert_eq!(problem["code"], detail, "{case}: {problem}");
        }
        assert!(!response.body.contains("sqlx") && !response.body.contains("panicked"), "{case}");
    }
    let unknown =
        app.post("committee_secretariat", "/api/v1/applications/nosuch/approval", &[], &approval().to_string()).await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert_eq!(app.get("auditor", "/api/v1/applications/nosuch").await.status, 404);
    let huge = format!(r#"{{"reason": "{}"}}"#, "x".repeat(300_000));
    assert_eq!(
        app.post("intake_officer", &format!("/api/v1/applications/{id}/withdrawal"), &[], &huge).await.status,
        413
    );
    let bad_year = app.post("finance_officer", "/api/v1/funding-years/2025-27/receipts", &[], "{}").await;
    assert_eq!((bad_year.status, bad_year.json()["errors"][0]["field"].as_str()), (400, Some("year")));
    app.stop().await;
}

// ---- The scheme's rules: each refusal is a 422 with its stable code, and nothing is written ----

/// How many events the log holds.
async fn events(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&app.database.pool).await.expect("count events")
}

/// The application's `ETag` (its version).
async fn etag(app: &TestApp, id: &str) -> String {
    let view = app.get("auditor", &format!("/api/v1/applications/{id}")).await;
    assert_eq!(view.status, 200, "{}", view.body);
    view.header("etag").expect("ETag").to_string()
}

/// Posts a command the scheme must refuse: 422 with the stable `code` in a problem body, and
/// nothing written (the log holds as many events as before). Answers the problem document.
async fn refused(app: &TestApp, role: &str, path: &str, body: &Value, code: &str) -> Value {
    let before = events(app).await;
    let response = app.post(role, path, &[], &body.to_string()).await;
    assert_eq!((response.status, response.json()["code"].as_str()), (422, Some(code)), "{path}: {}", response.body);
    assert_eq!(response.header("content-type"), Some("application/problem+json"), "{path}");
    assert_eq!(events(app).await, before, "{code}: nothing written");
    response.json()
}

/// Declares 10,000 GPU node-hours of capacity in each of `months`.
async fn capacity(app: &TestApp, months: &[&str]) {
    for month in months {
        let body = json!({"service_type": "gpu_node_hour_h800", "period": month, "units": 10000}).to_string();
        ok(&app.post("administrator", "/api/v1/capacity", &[], &body).await);
    }
}

/// Rule: the ceiling is at most the subsidy of the allocated units, each month at the rate in
/// force then, rounded down to the cent.
#[tokio::test]
async fn an_approval_ceiling_above_the_subsidy_of_the_allocated_units_is_refused() {
    let app = TestApp::spawn().await;
    set_up(&app).await;
    // From October a node-hour costs HK$42.55.
    let october_rate = r#"{"service_type": "gpu_node_hour_h800", "rate_per_unit_cents": 4255, "unit": "node-hour", "effective_from": "2025-10-01"}"#;
    ok(&app.post("administrator", "/api/v1/price-schedule/rates", &[], october_rate).await);
    let id = assessed_application(&app).await;
    let path = format!("/api/v1/applications/{id}/approval");
    let mut body = approval();
    body["allocations"][5]["units"] = json!(999);
    // July to September: 3,000 × HK$42.50 × 70 % = HK$89,250.00; October and November:
    // 2,000 × HK$42.55 × 70 % = HK$59,570.00; December: 999 × HK$42.55 × 70 % = HK$29,755.215.
    // In all HK$178,575.215, rounded down: HK$178,575.21.
    let version = etag(&app, &id).await;
    body["ceiling_cents"] = json!(17_857_522);
    let problem = refused(&app, "committee_secretariat", &path, &body, "ceiling_above_allocation").await;
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("HK$178,575.22") && detail.contains("HK$178,575.21"), "{detail}");
    assert_eq!(etag(&app, &id).await, version, "the application is unchanged");

    body["ceiling_cents"] = json!(17_857_521);
    ok(&app.post("committee_secretariat", &path, &[], &body.to_string()).await);
    let terms = app.get("auditor", &format!("/api/v1/applications/{id}")).await.json()["state"]["approval"].clone();
    assert_eq!(terms["ceiling"], 17_857_521, "{terms}");
    app.stop().await;
}

/// Rule: the ceiling is reserved in each financial year in proportion to the subsidy of the
/// units allocated in that year's months, not to the days of the period.
#[tokio::test]
async fn the_ceiling_is_reserved_per_financial_year_as_the_allocated_units_fall() {
    let app = TestApp::spawn().await;
    set_up(&app).await;
    capacity(&app, &["2026-01", "2026-02", "2026-03", "2026-04"]).await;
    let id = assessed_application(&app).await;
    let receipt = r#"{"line": "computing_power_subsidy", "amount_cents": 1000000, "received_on": "2025-06-15"}"#;
    ok(&app.post("finance_officer", "/api/v1/funding-years/2026-27/receipts", &[], receipt).await);
    let path = format!("/api/v1/applications/{id}/approval");
    // January to June 2026 (90 days in 2025-26, 91 in 2026-27), with 3,000 node-hours in
    // January to March and 500 in April: 6/7 of the subsidy falls in 2025-26, 1/7 in 2026-27.
    let mut body = approval();
    body["allocations"] = json!([
        {"service_type": "gpu_node_hour_h800", "period": "2026-01", "units": 1000},
        {"service_type": "gpu_node_hour_h800", "period": "2026-02", "units": 1000},
        {"service_type": "gpu_node_hour_h800", "period": "2026-03", "units": 1000},
        {"service_type": "gpu_node_hour_h800", "period": "2026-04", "units": 500},
    ]);
    body["start"] = json!("2026-01-01");
    body["end"] = json!("2026-06-30");
    body["ceiling_cents"] = json!(10_000_000);
    // HK$100,000.00 × 6/7 = HK$85,714.285…, rounded up to HK$85,714.29 in 2025-26 (below the
    // HK$89,250.00 its units can draw); the rest, HK$14,285.71, in 2026-27, where HK$10,000.00
    // is all there is.
    let version = etag(&app, &id).await;
    let problem = refused(&app, "committee_secretariat", &path, &body, "budget_short").await;
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("2026-27") && detail.contains("HK$14,285.71") && detail.contains("HK$10,000.00"),
        "{detail}"
    );
    assert_eq!(etag(&app, &id).await, version, "the application is unchanged");

    // With HK$20,000.00 in 2026-27 it fits (by days, about HK$50,276 would have fallen there).
    ok(&app.post("finance_officer", "/api/v1/funding-years/2026-27/receipts", &[], receipt).await);
    ok(&app.post("committee_secretariat", &path, &[], &body.to_string()).await);
    let terms = app.get("auditor", &format!("/api/v1/applications/{id}")).await.json()["state"]["approval"].clone();
    assert_eq!(
        terms["reservations"],
        json!([{"year": "2025-26", "amount": 8_571_429}, {"year": "2026-27", "amount": 1_428_571}]),
        "{terms}"
    );
    for (year, committed) in [("2025-26", 8_571_429), ("2026-27", 1_428_571)] {
        let budget = app.get("finance_officer", &format!("/api/v1/funding-years/{year}")).await.json();
        assert_eq!(budget["state"]["committed"], committed, "{year}: {budget}");
    }
    app.stop().await;
}

/// Rule: a charge takes its subsidy from what the application reserved in the usage month's
/// financial year; it may not draw more there, even while the ceiling still has room.
#[tokio::test]
async fn a_charge_beyond_the_years_reservation_is_refused_while_the_ceiling_has_room() {
    let app = TestApp::spawn().await;
    set_up(&app).await;
    capacity(&app, &["2026-01", "2026-02", "2026-03", "2026-04"]).await;
    let id = assessed_application(&app).await;
    let receipt = r#"{"line": "computing_power_subsidy", "amount_cents": 2000000, "received_on": "2025-06-15"}"#;
    ok(&app.post("finance_officer", "/api/v1/funding-years/2026-27/receipts", &[], receipt).await);
    // January to March 2026 (3,000 node-hours, HK$89,250.00 of subsidy) in 2025-26, April (500)
    // in 2026-27, under a ceiling of HK$100,000.00: HK$85,714.29 is reserved in 2025-26 and
    // HK$14,285.71 in 2026-27.
    let mut body = approval();
    body["allocations"] = json!([
        {"service_type": "gpu_node_hour_h800", "period": "2026-01", "units": 1000},
        {"service_type": "gpu_node_hour_h800", "period": "2026-02", "units": 1000},
        {"service_type": "gpu_node_hour_h800", "period": "2026-03", "units": 1000},
        {"service_type": "gpu_node_hour_h800", "period": "2026-04", "units": 500},
    ]);
    body["start"] = json!("2026-01-01");
    body["end"] = json!("2026-06-30");
    body["ceiling_cents"] = json!(10_000_000);
    let base = format!("/api/v1/applications/{id}");
    ok(&app.post("committee_secretariat", &format!("{base}/approval"), &[], &body.to_string()).await);
    let terms = app.get("auditor", &base).await.json()["state"]["approval"].clone();
    assert_eq!(
        terms["reservations"],
        json!([{"year": "2025-26", "amount": 8_571_429}, {"year": "2026-27", "amount": 1_428_571}]),
        "{terms}"
    );
    app.set_day(2025, 6, 30);
    let agreement = r#"{"signed_on": "2025-06-30", "reporting_due_dates": ["2026-07-15"]}"#;
    ok(&app.post("committee_secretariat", &format!("{base}/agreement"), &[], agreement).await);

    app.set_day(2026, 4, 2);
    let charge = |usage_id: &str, month: &str, units: u64| json!({"usage_id": usage_id, "service_type": "gpu_node_hour_h800", "period": month, "units": units});
    // January and February: 2 × 1,000 × HK$42.50 × 70 % = HK$59,500.00 of the HK$85,714.29.
    for month in ["2026-01", "2026-02"] {
        ok(&app.post("finance_officer", &format!("{base}/usage"), &[], &charge(month, month, 1000).to_string()).await);
    }
    // March's 1,000 node-hours are within the allocation, and their HK$29,750.00 within the
    // ceiling (HK$40,500.00 left), but not within 2025-26's reservation (HK$26,214.29 left).
    let version = etag(&app, &id).await;
    let usage = format!("{base}/usage");
    let problem =
        refused(&app, "finance_officer", &usage, &charge("2026-03", "2026-03", 1000), "year_reservation_exceeded")
            .await;
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("2025-26")
            && detail.contains("HK$29,750.00")
            && detail.contains("HK$85,714.29")
            && detail.contains("HK$59,500.00"),
        "{detail}"
    );
    assert_eq!(etag(&app, &id).await, version, "the application is unchanged");
    // 880 node-hours (HK$26,180.00) fit; 2 more (HK$59.50) do not fit in the HK$34.29 left.
    let fits = ok(&app.post("finance_officer", &usage, &[], &charge("2026-03", "2026-03", 880).to_string()).await);
    refused(&app, "finance_officer", &usage, &charge("2026-03b", "2026-03", 2), "year_reservation_exceeded").await;
    let state = app.get("auditor", &base).await.json()["state"].clone();
    assert_eq!(state["disbursed"], 8_568_000, "{state}");
    assert_eq!(state["usage"]["lines"], 3, "{state}");
    let year =
        app.get("finance_officer", &format!("/api/v1/funding-years/2025-26?after_position={}", fits["position"])).await;
    assert_eq!(year.status, 200, "{}", year.body);
    assert_eq!(year.json()["state"]["disbursed"], 8_568_000, "{}", year.body);
    app.stop().await;
}

/// Rule: an approved period runs at most 36 months.
#[tokio::test]
async fn an_approved_period_longer_than_36_months_is_refused() {
    let app = TestApp::spawn().await;
    set_up(&app).await;
    let id = assessed_application(&app).await;
    let path = format!("/api/v1/applications/{id}/approval");
    let version = etag(&app, &id).await;
    let mut body = approval();
    // 2025-07-01 to 2028-07-01 is 36 months and a day.
    body["end"] = json!("2028-07-01");
    let problem = refused(&app, "committee_secretariat", &path, &body, "invalid_input").await;
    assert_eq!(problem["errors"][0]["field"], "end", "{problem}");
    assert_eq!(etag(&app, &id).await, version, "the application is unchanged");
    // To 2028-06-30: 36 months exactly.
    body["end"] = json!("2028-06-30");
    ok(&app.post("committee_secretariat", &path, &[], &body.to_string()).await);
    app.stop().await;
}

/// Rule: the facts recorded have happened, in order — committee decisions not after today nor
/// before the batch's deadline, agreements not after today nor before the decision, funding
/// receipts not after today, usage only of a month begun, progress reports once their period
/// has ended (today being the service's clock).
#[tokio::test]
async fn dates_after_today_or_out_of_order_are_refused() {
    let app = TestApp::spawn().await;
    set_up(&app).await;
    let id = assessed_application(&app).await;
    let later_batch = r#"{"batch_id": "2025-q3", "deadline": "2025-08-31", "committee_date": "2025-09-15"}"#;
    ok(&app.post("committee_secretariat", "/api/v1/batches", &[], later_batch).await);
    let base = format!("/api/v1/applications/{id}");
    let secretariat = "committee_secretariat";
    let meeting = |decided_on: &str| {
        let mut meeting = approval()["meeting"].clone();
        meeting["decided_on"] = json!(decided_on);
        meeting
    };
    let version = etag(&app, &id).await;

    // The committee decides on 2025-06-15: not on the 14th, nor before the deadline (2025-05-31).
    app.set_day(2025, 6, 14);
    for (decided_on, code) in [("2025-06-15", "date_in_future"), ("2025-05-30", "decided_before_deadline")] {
        let mut approve = approval();
        approve["meeting"] = meeting(decided_on);
        refused(&app, secretariat, &format!("{base}/approval"), &approve, code).await;
        let reject = json!({"meeting": meeting(decided_on), "reasons": ["not justified"]});
        refused(&app, secretariat, &format!("{base}/rejection"), &reject, code).await;
        let defer = json!({"meeting": meeting(decided_on), "reason": "more detail", "to_batch_id": "2025-q3"});
        refused(&app, secretariat, &format!("{base}/deferral"), &defer, code).await;
    }
    assert_eq!(etag(&app, &id).await, version, "the application is unchanged");
    app.set_day(2025, 6, 15);
    ok(&app.post(secretariat, &format!("{base}/approval"), &[], &approval().to_string()).await);

    // The agreement is signed on 2025-06-30: not before that day, nor dated before the decision.
    let version = etag(&app, &id).await;
    let agreement =
        |signed_on: &str| json!({"signed_on": signed_on, "reporting_due_dates": ["2025-10-15", "2026-01-15"]});
    refused(&app, secretariat, &format!("{base}/agreement"), &agreement("2025-06-30"), "date_in_future").await;
    app.set_day(2025, 6, 30);
    refused(&app, secretariat, &format!("{base}/agreement"), &agreement("2025-06-14"), "signed_before_decision").await;
    assert_eq!(etag(&app, &id).await, version, "the application is unchanged");
    ok(&app.post(secretariat, &format!("{base}/agreement"), &[], &agreement("2025-06-30").to_string()).await);

    // Funding received tomorrow has not been received.
    let receipt = json!({"line": "computing_power_subsidy", "amount_cents": 100_000, "received_on": "2025-07-01"});
    refused(&app, "finance_officer", "/api/v1/funding-years/2025-26/receipts", &receipt, "date_in_future").await;

    // August's usage from 1 August.
    app.set_day(2025, 7, 31);
    let version = etag(&app, &id).await;
    let august =
        json!({"usage_id": "sched-2025-08", "service_type": "gpu_node_hour_h800", "period": "2025-08", "units": 100});
    refused(&app, "finance_officer", &format!("{base}/usage"), &august, "usage_month_not_begun").await;
    assert_eq!(etag(&app, &id).await, version, "the application is unchanged");
    app.set_day(2025, 8, 1);
    ok(&app.post("finance_officer", &format!("{base}/usage"), &[], &august.to_string()).await);

    // The report due 2025-10-15 from that day; the final one, due after the project ends on
    // 2025-12-31, from its end.
    let report = |due: &str| json!({"due": due, "kpis": {"ai_models_trained_or_deployed": 1, "talents_employed": 9, "mainland_or_overseas_collaborators": 0, "publications": 0, "patents": 0}, "summary": "progress"});
    let reports = format!("{base}/progress-reports");
    for (today, due, ends) in
        [((2025, 10, 14), "2025-10-15", (2025, 10, 15)), ((2025, 12, 30), "2026-01-15", (2025, 12, 31))]
    {
        app.set_day(today.0, today.1, today.2);
        let version = etag(&app, &id).await;
        refused(&app, "intake_officer", &reports, &report(due), "report_period_not_ended").await;
        assert_eq!(etag(&app, &id).await, version, "the application is unchanged");
        app.set_day(ends.0, ends.1, ends.2);
        ok(&app.post("intake_officer", &reports, &[], &report(due).to_string()).await);
    }
    app.stop().await;
}

/// Rule: the application's assessor is not counted among the members present to decide it,
/// nor is a recused member; and a quorum of members without conflict must be present.
#[tokio::test]
async fn a_committee_counting_the_assessor_present_is_refused() {
    let app = TestApp::spawn().await;
    set_up(&app).await;
    let id = assessed_application(&app).await;
    let later_batch = r#"{"batch_id": "2025-q3", "deadline": "2025-08-31", "committee_date": "2025-09-15"}"#;
    ok(&app.post("committee_secretariat", "/api/v1/batches", &[], later_batch).await);
    let base = format!("/api/v1/applications/{id}");
    let version = etag(&app, &id).await;
    // assessor-1 assessed the application; without them, m1 to m3 would be a quorum.
    let meeting = json!({"meeting_reference": "AISC-COM-2025-06", "decided_on": "2025-06-15", "members_present": ["m1", "m2", "m3", "assessor-1"], "members_recused": ["m4"]});
    let mut approve = approval();
    approve["meeting"] = meeting.clone();
    let reject = json!({"meeting": meeting.clone(), "reasons": ["not justified"]});
    let defer = json!({"meeting": meeting, "reason": "more detail", "to_batch_id": "2025-q3"});
    for (decision, body) in [("approval", approve), ("rejection", reject), ("deferral", defer)] {
        let problem =
            refused(&app, "committee_secretariat", &format!("{base}/{decision}"), &body, "assessor_counted_present")
                .await;
        assert!(problem["detail"].as_str().unwrap_or_default().contains("assessor-1"), "{problem}");
    }
    // m4 declared a conflict: listed present, it is refused, not quietly left out.
    let mut recused_present = approval();
    recused_present["meeting"]["members_present"] = json!(["m1", "m2", "m3", "m4"]);
    let problem = refused(
        &app,
        "committee_secretariat",
        &format!("{base}/approval"),
        &recused_present,
        "recused_member_counted_present",
    )
    .await;
    assert!(problem["detail"].as_str().unwrap_or_default().contains("m4"), "{problem}");
    let mut two_present = approval();
    two_present["meeting"]["members_present"] = json!(["m1", "m2"]);
    refused(&app, "committee_secretariat", &format!("{base}/approval"), &two_present, "quorum_not_met").await;
    assert_eq!(etag(&app, &id).await, version, "the application is unchanged");
    ok(&app.post("committee_secretariat", &format!("{base}/approval"), &[], &approval().to_string()).await);
    app.stop().await;
}

/// Rule: a month's allocations stay within 90 % of AISC capacity (§10); the refusal names the
/// service, the month and the units left.
#[tokio::test]
async fn an_allocation_beyond_90_percent_of_capacity_is_refused_naming_the_units_left() {
    let app = TestApp::spawn().await;
    set_up(&app).await;
    let id = assessed_application(&app).await;
    let base = format!("/api/v1/applications/{id}");
    let version = etag(&app, &id).await;
    // 10,000 node-hours are declared in October: 9,000 may be allocated.
    let mut beyond = approval();
    beyond["allocations"][3]["units"] = json!(9_001);
    let problem =
        refused(&app, "committee_secretariat", &format!("{base}/approval"), &beyond, "capacity_cap_exceeded").await;
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("gpu_node_hour_h800 in 2025-10") && detail.contains("9000 units are left"), "{detail}");
    assert_eq!(etag(&app, &id).await, version, "the application is unchanged");
    app.stop().await;
}

/// Rule: a usage line's subsidy is rounded down to the cent, and amounts in messages read as
/// staff write them (HK$5,273,972.61).
#[tokio::test]
async fn usage_subsidy_is_rounded_down_and_messages_show_amounts_as_staff_read_them() {
    let app = TestApp::spawn().await;
    set_up(&app).await;
    let october_rate = r#"{"service_type": "gpu_node_hour_h800", "rate_per_unit_cents": 4255, "unit": "node-hour", "effective_from": "2025-10-01"}"#;
    ok(&app.post("administrator", "/api/v1/price-schedule/rates", &[], october_rate).await);
    let id = assessed_application(&app).await;
    let base = format!("/api/v1/applications/{id}");
    let version = etag(&app, &id).await;
    let mut too_much = approval();
    too_much["ceiling_cents"] = json!(527_397_261);
    let problem =
        refused(&app, "committee_secretariat", &format!("{base}/approval"), &too_much, "ceiling_above_allocation")
            .await;
    // 3,000 × HK$42.50 × 70 % + 3,000 × HK$42.55 × 70 % = HK$178,605.00.
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("a ceiling of HK$5,273,972.61 ") && detail.contains("HK$178,605.00"), "{detail}");
    assert_eq!(etag(&app, &id).await, version, "the application is unchanged");

    ok(&app.post("committee_secretariat", &format!("{base}/approval"), &[], &approval().to_string()).await);
    app.set_day(2025, 6, 30);
    let agreement = r#"{"signed_on": "2025-06-30", "reporting_due_dates": ["2026-01-15"]}"#;
    ok(&app.post("committee_secretariat", &format!("{base}/agreement"), &[], agreement).await);
    app.set_day(2025, 11, 5);
    // 3 node-hours × HK$42.55 × 70 % = HK$89.355: HK$89.35 (half up would pay HK$89.36).
    let october =
        r#"{"usage_id": "sched-2025-10", "service_type": "gpu_node_hour_h800", "period": "2025-10", "units": 3}"#;
    let charged = ok(&app.post("finance_officer", &format!("{base}/usage"), &[], october).await);
    let state = app.get("auditor", &base).await.json()["state"].clone();
    assert_eq!(state["usage"]["disbursed_by_year"]["2025-26"], 8_935, "{state}");
    assert_eq!(state["disbursed"], 8_935);
    let year = app
        .get("finance_officer", &format!("/api/v1/funding-years/2025-26?after_position={}", charged["position"]))
        .await
        .json();
    assert_eq!(year["state"]["disbursed"], 8_935, "{year}");
    app.stop().await;
}

/// Rule: a command or a query on an unknown application answers 404 naming the id.
#[tokio::test]
async fn an_unknown_application_is_404_naming_its_id_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    set_up(&app).await;
    let before = events(&app).await;
    let id = "a7c0ffee-no-such";
    let base = format!("/api/v1/applications/{id}");
    let agreement = json!({"signed_on": "2025-06-30", "reporting_due_dates": ["2025-10-15"]});
    let usage = json!({"usage_id": "u1", "service_type": "gpu_node_hour_h800", "period": "2025-07", "units": 1});
    for (role, path, body) in [
        ("committee_secretariat", format!("{base}/approval"), approval()),
        ("committee_secretariat", format!("{base}/agreement"), agreement),
        ("finance_officer", format!("{base}/usage"), usage),
        ("intake_officer", format!("{base}/withdrawal"), json!({"reason": "merged"})),
    ] {
        let response = app.post(role, &path, &[], &body.to_string()).await;
        assert_eq!(response.status, 404, "{path}: {}", response.body);
        assert_eq!(response.header("content-type"), Some("application/problem+json"), "{path}");
        assert!(response.json()["detail"].as_str().unwrap_or_default().contains(id), "{path}: {}", response.body);
    }
    let view = app.get("auditor", &base).await;
    assert_eq!(view.status, 404, "{}", view.body);
    assert!(view.json()["detail"].as_str().unwrap_or_default().contains(id), "{}", view.body);
    assert_eq!(events(&app).await, before, "nothing written");
    app.stop().await;
}

/// The scheme's clock beside the log's: a decision taken on 15 June and recorded on 20 June is
/// in force "as at" 15 June, while the log at a position before it did not know it yet.
#[tokio::test]
async fn applications_and_kpis_are_asked_as_they_stood_on_a_business_date() {
    let app = TestApp::spawn().await;
    set_up(&app).await;
    let id = assessed_application(&app).await;
    let base = format!("/api/v1/applications/{id}");
    let before_the_record = app.get("auditor", "/api/v1/events?limit=1000").await.json();
    let last_before = before_the_record["events"]
        .as_array()
        .and_then(|events| events.last())
        .and_then(|event| event["position"].as_u64())
        .expect("a position before the approval is recorded");
    app.set_day(2025, 6, 20);
    ok(&app.post("committee_secretariat", &format!("{base}/approval"), &[], &approval().to_string()).await);

    let status_on = async |date: &str| {
        let response = app.get("auditor", &format!("{base}?effective_on={date}")).await;
        (response.status, response.json()["state"]["status"].as_str().map(str::to_owned))
    };
    assert_eq!(status_on("2025-06-14").await, (200, Some("assessed".to_string())));
    assert_eq!(status_on("2025-06-15").await, (200, Some("approved".to_string())), "in force from its meeting's day");
    let unsubmitted = app.get("auditor", &format!("{base}?effective_on=2025-05-01")).await;
    assert_eq!(unsubmitted.status, 404, "{}", unsubmitted.body);
    assert!(unsubmitted.body.contains("not yet submitted on 2025-05-01"), "{}", unsubmitted.body);
    let both = app.get("auditor", &format!("{base}?effective_on=2025-06-30&as_of={last_before}")).await;
    assert_eq!(both.json()["state"]["status"], "assessed", "the log at that position did not know the decision yet");
    let bad = app.get("auditor", &format!("{base}?effective_on=30/06/2025")).await;
    assert_eq!((bad.status, bad.json()["errors"][0]["field"].as_str()), (400, Some("effective_on")));

    let approved_on = async |query: &str| {
        let response = app.get("auditor", &format!("/api/v1/kpis?year=2025-26&{query}")).await;
        assert_eq!(response.status, 200, "{query}: {}", response.body);
        let kpis = response.json();
        (kpis["applications_received"].as_i64(), kpis["applications_approved"].as_i64())
    };
    assert_eq!(approved_on("effective_on=2025-06-14").await, (Some(1), Some(0)));
    assert_eq!(approved_on("effective_on=2025-06-15").await, (Some(1), Some(1)));
    assert_eq!(approved_on("effective_on=2025-04-30").await, (Some(0), Some(0)), "nothing submitted yet");
    assert_eq!(approved_on(&format!("effective_on=2025-06-30&as_of={last_before}")).await, (Some(1), Some(0)));
    assert_eq!(app.get("auditor", "/api/v1/kpis?effective_on=31-03-2025").await.status, 400);
    app.stop().await;
}

/// Expensive reads are bounded per role: with a share of one, the auditors' second dashboard in
/// the past while their first still runs is answered 429 with Retry-After, while a finance
/// officer's is answered, and so is the auditors' live dashboard; once the first is done, the
/// auditors' next is answered again.
#[tokio::test]
async fn expensive_reads_beyond_a_roles_share_are_answered_429_and_other_roles_are_unaffected() {
    let app = TestApp::spawn_configured(|config| config.limits.expensive_reads_per_role = 1).await;
    set_up(&app).await;
    let (port, bearer) = (app.port, app.bearer("auditor"));
    // Holds the auditors' place for the read-your-writes wait (3 s): the log never reaches
    // that position, so it ends 503.
    let first = tokio::spawn(async move {
        let headers = [("Authorization", bearer.as_str())];
        http(port, "GET", "/api/v1/kpis?as_of=1&after_position=9000000000000000000", &headers, None).await
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let refused = app.get("auditor", "/api/v1/kpis?effective_on=2025-06-30").await;
    if first.is_finished() {
        let first = first.await.expect("first read");
        panic!("the first read should still run: {} {}", first.status, first.body);
    }
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.header("content-type"), Some("application/problem+json"));
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.json()["status"], 429);
    assert!(refused.json()["detail"].as_str().unwrap_or_default().contains("auditor"), "{}", refused.body);
    let other_role = app.get("finance_officer", "/api/v1/kpis?effective_on=2025-06-30").await;
    assert_eq!(other_role.status, 200, "{}", other_role.body);
    let live = app.get("auditor", "/api/v1/kpis").await;
    assert_eq!(live.status, 200, "the live dashboard is not an expensive read: {}", live.body);
    assert_eq!(first.await.expect("first read").status, 503);
    let again = app.get("auditor", "/api/v1/kpis?effective_on=2025-06-30").await;
    assert_eq!(again.status, 200, "the place is given back: {}", again.body);
    app.stop().await;
}
