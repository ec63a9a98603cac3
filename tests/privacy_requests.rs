//! Retention and data access requests (PDPO DPP2 and DPP6): `aisc privacy due` lists exactly
//! the data subjects whose application ended more than the retention period ago and whose key
//! is still held; the access request (over HTTP and on the command line) answers every personal
//! field in plaintext with the event it came from, and shows it erased once the key is gone.

mod support;

use aisc_domain::personal_data::DataSubjectId;
use aisc_domain::subsidy::application::{
    AmendApplication, CheckEligibility, CloseProject, Kpis, RejectApplication, ReviewProgressReport, SignAgreement,
    SubmitApplication, SubmitProgressReport, WithdrawApplication,
};
use serde_json::Value;
use support::scheme::*;
use support::{TestApp, TestDatabase};

/// The ending dates the scenario gives each application.
const WITHDRAWN_ON: (i32, u32, u32) = (2025, 5, 20);
const REJECTED_ON: (i32, u32, u32) = (2025, 6, 15);
const COMPLETED_ON: (i32, u32, u32) = (2026, 1, 31);

fn on((y, m, d): (i32, u32, u32)) -> chrono::NaiveDate {
    day(y, m, d)
}

/// Five applications: `w` withdrawn, `r` rejected, `c` completed (amended, reported on and
/// reviewed on the way), `o` approved and ongoing, `s` submitted and waiting.
async fn scenario(database: &TestDatabase) {
    let scheme = scheme(database).await;
    set_up(&scheme, hkd(10_000_000)).await;
    let intake = ("intake-1", "intake_officer");
    let secretariat = ("sec-1", "committee_secretariat");
    let submit = SubmitApplication { application_id: "w".into(), submission: submission("w") };
    act(&scheme, &submit, intake.0, intake.1, day(2025, 5, 2)).await.expect("submit w");
    let withdraw = WithdrawApplication { application_id: "w".into(), reason: "merged with another project".into() };
    act(&scheme, &withdraw, intake.0, intake.1, on(WITHDRAWN_ON)).await.expect("withdraw");
    for id in ["r", "o"] {
        submitted(&scheme, id).await;
    }
    let submit = SubmitApplication { application_id: "c".into(), submission: submission("c") };
    act(&scheme, &submit, intake.0, intake.1, day(2025, 5, 2)).await.expect("submit c");
    let mut amended = submission("c");
    amended.contact.email = "prof.lee@ust.hk".into();
    let amend = AmendApplication { application_id: "c".into(), submission: amended };
    act(&scheme, &amend, intake.0, intake.1, day(2025, 5, 10)).await.expect("amend");
    let check = CheckEligibility { application_id: "c".into() };
    act(&scheme, &check, intake.0, intake.1, day(2025, 6, 2)).await.expect("eligibility");
    ready_for_committee(&scheme, &["r", "c", "o"]).await;
    let submit = SubmitApplication { application_id: "s".into(), submission: submission("s") };
    act(&scheme, &submit, intake.0, intake.1, day(2025, 6, 20)).await.expect_err("the batch is closed");

    let reject =
        RejectApplication { application_id: "r".into(), meeting: meeting(), reasons: vec!["not justified".into()] };
    act(&scheme, &reject, secretariat.0, secretariat.1, on(REJECTED_ON)).await.expect("reject");
    for id in ["c", "o"] {
        act(&scheme, &approval(id, None), secretariat.0, secretariat.1, committee_day()).await.expect("approve");
    }
    let agreement = SignAgreement {
        application_id: "c".into(),
        signed_on: day(2025, 6, 30),
        reporting_due_dates: vec![day(2025, 10, 15)],
    };
    act(&scheme, &agreement, secretariat.0, secretariat.1, day(2025, 7, 2)).await.expect("agreement");
    let kpis = Kpis {
        ai_models_trained_or_deployed: 1,
        talents_employed: 6,
        mainland_or_overseas_collaborators: 2,
        publications: 1,
        patents: 0,
    };
    let report = SubmitProgressReport {
        application_id: "c".into(),
        due: day(2025, 10, 15),
        kpis,
        summary: "Dr Wong joined; the model is trained.".into(),
    };
    act(&scheme, &report, intake.0, intake.1, day(2025, 10, 16)).await.expect("report");
    let review = ReviewProgressReport {
        application_id: "c".into(),
        due: day(2025, 10, 15),
        accepted: true,
        comments: "Prof Lee's team is on track.".into(),
    };
    act(&scheme, &review, "assessor-2", "assessor", day(2025, 10, 20)).await.expect("review");
    let completion = CloseProject { application_id: "c".into(), termination_reason: None };
    act(&scheme, &completion, secretariat.0, secretariat.1, on(COMPLETED_ON)).await.expect("complete");
}

fn subject(application_id: &str) -> DataSubjectId {
    DataSubjectId::of_application(application_id)
}

/// `aisc privacy due` as JSON on `today`.
fn due(database: &TestDatabase, retention_days: Option<u32>, today: chrono::NaiveDate) -> Value {
    let mut command = support::aisc();
    command
        .args(["privacy", "due", "--format", "json", "--today", &today.to_string()])
        .env("DATABASE_URL", &database.url);
    if let Some(days) = retention_days {
        command.args(["--retention-days", &days.to_string()]);
    }
    let output = command.output().expect("run aisc");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("JSON")
}

fn listed(listing: &Value) -> Vec<(String, String, String, i64)> {
    listing["due"]
        .as_array()
        .expect("due")
        .iter()
        .map(|item| {
            assert_eq!(
                item["data_subject_id"].as_str(),
                Some(subject(item["application_id"].as_str().expect("id")).to_string().as_str())
            );
            (
                item["application_id"].as_str().expect("id").to_string(),
                item["ended"].as_str().expect("ended").to_string(),
                item["ended_on"].as_str().expect("ended_on").to_string(),
                item["days_past"].as_i64().expect("days_past"),
            )
        })
        .collect()
}

fn row(id: &str, ended: &str, ended_on: (i32, u32, u32), days_past: i64) -> (String, String, String, i64) {
    (id.into(), ended.into(), on(ended_on).to_string(), days_past)
}

#[tokio::test]
async fn due_lists_the_ended_applications_past_retention_and_not_the_others() {
    let database = TestDatabase::create().await;
    scenario(&database).await;
    let days = 100;
    let after = |date: (i32, u32, u32), n: i64| on(date) + chrono::TimeDelta::days(n);

    // Exactly 100 days after the rejection: the withdrawal (25 days earlier) is due, the
    // rejection not yet.
    let listing = due(&database, Some(days), after(REJECTED_ON, 100));
    assert_eq!(listing["retention_days"], 100);
    assert_eq!(listed(&listing), vec![row("w", "withdrawn", WITHDRAWN_ON, 26)]);
    // A day later the rejection is due, its first day.
    assert_eq!(
        listed(&due(&database, Some(days), after(REJECTED_ON, 101))),
        vec![row("w", "withdrawn", WITHDRAWN_ON, 27), row("r", "rejected", REJECTED_ON, 1)]
    );
    // The completion counts from its business date; the ongoing application never appears.
    assert_eq!(listed(&due(&database, Some(days), after(COMPLETED_ON, 100))).len(), 2);
    assert_eq!(
        listed(&due(&database, Some(days), after(COMPLETED_ON, 101))),
        vec![
            row("w", "withdrawn", WITHDRAWN_ON, 257),
            row("r", "rejected", REJECTED_ON, 231),
            row("c", "completed", COMPLETED_ON, 1)
        ]
    );
    assert_eq!(listing["not_sealed"], serde_json::json!([]), "every application here was sealed");

    // The default is seven years (2,557 days).
    assert_eq!(listed(&due(&database, None, after(WITHDRAWN_ON, 2557))), vec![]);
    assert_eq!(listed(&due(&database, None, after(WITHDRAWN_ON, 2558))), vec![row("w", "withdrawn", WITHDRAWN_ON, 1)]);

    // Once a subject's key is erased it is no longer due.
    let vault = vault(&database);
    vault.erase(subject("w").0, "admin-1", "retention period over").await.expect("erase");
    assert_eq!(
        listed(&due(&database, Some(days), after(COMPLETED_ON, 101))),
        vec![row("r", "rejected", REJECTED_ON, 231), row("c", "completed", COMPLETED_ON, 1)]
    );

    // The text format: one line per subject.
    let output = support::aisc()
        .args(["privacy", "due", "--retention-days", "100", "--today", &after(COMPLETED_ON, 101).to_string()])
        .env("DATABASE_URL", &database.url)
        .output()
        .expect("run aisc");
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains(&format!("{} r rejected 2025-06-15 231 days past", subject("r"))), "{text}");

    // A retention of 0 days is refused.
    let output = support::aisc()
        .args(["privacy", "due", "--retention-days", "0"])
        .env("DATABASE_URL", &database.url)
        .output()
        .expect("run aisc");
    assert_eq!(output.status.code(), Some(2));
    database.drop_database().await;
}

/// The (event type, field, value) of each item, and checks each item's provenance against the
/// log: its stream, version, position and type are those of the event with its id.
async fn items_checked_against_the_log(pool: &sqlx::PgPool, answer: &Value) -> Vec<(String, String, Value)> {
    let mut items = Vec::new();
    let mut last_position = 0;
    for item in answer["items"].as_array().expect("items") {
        let event_id: uuid::Uuid = item["event_id"].as_str().expect("event_id").parse().expect("uuid");
        let (position, stream, version, event_type): (i64, String, i64, String) = sqlx::query_as(
            "SELECT global_position, stream_id, stream_version, event_type FROM events WHERE event_id = $1",
        )
        .bind(event_id)
        .fetch_one(pool)
        .await
        .expect("the event exists");
        assert_eq!(item["position"].as_i64(), Some(position));
        assert_eq!(item["stream"].as_str(), Some(stream.as_str()));
        assert_eq!(item["stream_version"].as_i64(), Some(version));
        assert_eq!(item["event_type"].as_str(), Some(event_type.as_str()));
        assert!(position >= last_position, "in the log's order");
        last_position = position;
        items.push((event_type, item["field"].as_str().expect("field").to_string(), item["value"].clone()));
    }
    items
}

#[tokio::test]
async fn an_access_request_answers_every_field_with_its_event_until_the_subject_is_erased() {
    let app = TestApp::spawn().await;
    scenario(&app.database).await;
    let path = format!("/api/v1/data-subjects/{}/personal-data", subject("c"));

    let response = app.get("administrator", &path).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let answer = response.json();
    assert_eq!(answer["data_subject_id"].as_str(), Some(subject("c").to_string().as_str()));
    assert_eq!(answer["application_id"], "c");
    assert_eq!(answer["project_title"], "c");
    assert_eq!(answer["organisation"], "The Hong Kong University of Science and Technology");
    assert_eq!(answer["key"]["state"], "held");
    let items = items_checked_against_the_log(&app.database.pool, &answer).await;
    let text = |value: &str| Value::String(value.into());
    let summary = "Training a multilingual model for legal documents.";
    assert_eq!(
        items,
        vec![
            ("ApplicationSubmitted".into(), "project_summary".into(), text(summary)),
            ("ApplicationSubmitted".into(), "contact.name".into(), text("Prof Lee")),
            ("ApplicationSubmitted".into(), "contact.email".into(), text("lee@ust.hk")),
            ("ApplicationAmended".into(), "project_summary".into(), text(summary)),
            ("ApplicationAmended".into(), "contact.name".into(), text("Prof Lee")),
            ("ApplicationAmended".into(), "contact.email".into(), text("prof.lee@ust.hk")),
            ("ProgressReportSubmitted".into(), "summary".into(), text("Dr Wong joined; the model is trained.")),
            ("ProgressReportReviewed".into(), "comments".into(), text("Prof Lee's team is on track.")),
        ]
    );
    let first = &answer["items"][0];
    assert_eq!(first["effective_on"], "2025-05-02");
    assert_eq!(first["erased"], false);
    assert_eq!(answer["items"][7]["effective_on"], "2025-10-20");
    // No other subject's fields: `o` was approved in the same meeting.
    let other = app.get("administrator", &format!("/api/v1/data-subjects/{}/personal-data", subject("o"))).await;
    assert_eq!(other.json()["items"].as_array().map(Vec::len), Some(3));

    // The command line answers the same document.
    let directory = std::env::temp_dir().join(format!("aisc-access-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&directory).expect("directory");
    let out = directory.join("c.json");
    let export = |out: &std::path::Path| {
        support::aisc()
            .args(["privacy", "export", "--subject", &subject("c").to_string(), "--out"])
            .arg(out)
            .env("DATABASE_URL", &app.database.url)
            .output()
            .expect("run aisc")
    };
    let output = export(&out);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let exported: Value = serde_json::from_str(&std::fs::read_to_string(&out).expect("file")).expect("JSON");
    assert_eq!(exported, answer);
    let again = export(&out);
    assert_eq!(again.status.code(), Some(4), "never over an existing file");

    // Other roles may not; an unknown subject is 404, a malformed one 400.
    for role in ["intake_officer", "assessor", "committee_secretariat", "finance_officer", "auditor"] {
        assert_eq!(app.get(role, &path).await.status, 403, "{role}");
    }
    let unknown =
        app.get("administrator", &format!("/api/v1/data-subjects/{}/personal-data", uuid::Uuid::new_v4())).await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert_eq!(app.get("administrator", "/api/v1/data-subjects/nope/personal-data").await.status, 400);
    let output = support::aisc()
        .args(["privacy", "export", "--subject", &uuid::Uuid::new_v4().to_string()])
        .env("DATABASE_URL", &app.database.url)
        .output()
        .expect("run aisc");
    assert_eq!(output.status.code(), Some(2), "an unknown subject");

    // Erased: every field null and marked, the key's erasure recorded; no longer due.
    let vault = vault(&app.database);
    vault.erase(subject("c").0, "admin-1", "retention period over").await.expect("erase");
    let erased = app.get("administrator", &path).await.json();
    assert_eq!(erased["key"]["state"], "erased");
    assert_eq!(erased["key"]["erased_by"], "admin-1");
    assert_eq!(erased["key"]["reason"], "retention period over");
    assert!(erased["key"]["erased_at"].is_string());
    let erased_items = items_checked_against_the_log(&app.database.pool, &erased).await;
    assert_eq!(erased_items.len(), 8);
    for item in erased["items"].as_array().expect("items") {
        assert_eq!(item["value"], Value::Null);
        assert_eq!(item["erased"], true);
    }
    let listing = due(&app.database, Some(1), day(2030, 1, 1));
    let ids: Vec<&str> =
        listing["due"].as_array().expect("due").iter().filter_map(|i| i["application_id"].as_str()).collect();
    assert_eq!(ids, vec!["w", "r"]);
    let _ = std::fs::remove_dir_all(&directory);
    app.stop().await;
}

/// `aisc reports kpi` of the whole scheme, as JSON.
fn kpis(database: &TestDatabase) -> Value {
    let output = support::aisc()
        .args(["reports", "kpi", "--format", "json"])
        .env("DATABASE_URL", &database.url)
        .output()
        .expect("run aisc");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("JSON")
}

#[tokio::test]
async fn erase_due_erases_every_subject_past_retention_once_and_leaves_the_figures_alone() {
    let database = TestDatabase::create().await;
    scenario(&database).await;
    let today = (on(COMPLETED_ON) + chrono::TimeDelta::days(101)).to_string();
    let figures_before = kpis(&database);
    let erase_due = || {
        support::aisc()
            .args(["privacy", "erase", "--due", "--retention-days", "100", "--today", &today, "--actor", "dpo-1"])
            .env("DATABASE_URL", &database.url)
            .output()
            .expect("run aisc")
    };
    let first = erase_due();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let said = String::from_utf8_lossy(&first.stdout);
    assert!(said.contains("erased 3 data subject(s) past a retention period of 100 days"), "{said}");
    for id in ["w", "r", "c"] {
        assert!(said.contains(&format!("erased the personal data of data subject {}", subject(id))), "{said}");
    }
    let recorded: Vec<(String, Value)> =
        sqlx::query_as("SELECT stream_id, data FROM events WHERE event_type = 'PersonalDataErased' ORDER BY stream_id")
            .fetch_all(&database.pool)
            .await
            .expect("erasures");
    assert_eq!(recorded.len(), 3);
    for (_, data) in &recorded {
        assert_eq!(data["basis"], "retention_period_ended", "{data}");
        assert_eq!(data["erased_by"], "dpo-1", "{data}");
        assert!(data["reason"].as_str().is_some_and(|reason| reason.contains("retention period of 100 days")));
    }
    assert_eq!(listed(&due(&database, Some(100), on(COMPLETED_ON) + chrono::TimeDelta::days(101))), vec![]);

    // Again: nothing more is due, nothing more is written.
    let again = erase_due();
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(String::from_utf8_lossy(&again.stdout).contains("erased 0 data subject(s)"));
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'PersonalDataErased'")
        .fetch_one(&database.pool)
        .await
        .expect("count");
    assert_eq!(count, 3);

    // The ongoing applications keep their personal data; the scheme's figures are unchanged.
    let held: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT wrapped_key FROM data_subject_keys WHERE data_subject_id = $1")
            .bind(subject("o").0)
            .fetch_one(&database.pool)
            .await
            .expect("key row");
    assert!(held.is_some(), "the ongoing application's key is kept");
    assert_eq!(kpis(&database), figures_before, "KPI and money figures do not depend on personal data");

    // `--due` and `--subject` are one or the other.
    let both = support::aisc()
        .args(["privacy", "erase", "--due", "--subject", &subject("o").to_string(), "--actor", "dpo-1"])
        .env("DATABASE_URL", &database.url)
        .output()
        .expect("run aisc");
    assert_eq!(both.status.code(), Some(2));
    database.drop_database().await;
}

/// The data of a stored fixture of the golden history.
fn fixture(name: &str) -> Value {
    let path = format!("{}/domain/tests/fixtures/events/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("fixture JSON")
}

#[tokio::test]
async fn an_application_with_plaintext_from_before_sealing_is_not_erased_and_its_plaintext_is_exported() {
    use aisc_domain::event_store::{EventStore, ExpectedVersion, NewEvent, StreamAppend, StreamId};
    let app = TestApp::spawn().await;
    let database = &app.database;
    // Submitted and withdrawn before sealing (plaintext), reviewed after (sealed): mixed.
    let mut submitted = fixture("ApplicationSubmitted.v2");
    submitted["application_id"] = "mixed".into();
    submitted["contact"] = serde_json::json!({"name": "Ho Ka Yan", "email": "ky.ho@example.hk"});
    let vault = vault(database);
    let mixed = subject("mixed");
    vault.ensure_subject(mixed.0).await.expect("a key for what is sealed after the upgrade");
    let sealed_comments = vault.seal(mixed.0, "comments", "Ask Ms Ho for the figures").await.expect("seal");
    let mut reviewed = fixture("ProgressReportReviewed.v2");
    reviewed["comments"] = sealed_comments.into();
    reviewed["data_subject_id"] = mixed.to_string().into();
    let new_event = |event_type: &str, schema_version: u32, data: Value| NewEvent {
        event_id: uuid::Uuid::new_v4(),
        event_type: event_type.into(),
        schema_version,
        data,
        metadata: serde_json::json!({"actor": "intake-1"}),
    };
    aisc_adapters::PostgresEventStore::new(database.pool.clone())
        .append_multi(vec![StreamAppend {
            stream: StreamId::parse("application-mixed").expect("stream"),
            expected: ExpectedVersion::NoStream,
            events: vec![
                new_event("ApplicationSubmitted", 2, submitted),
                new_event("ApplicationWithdrawn", 1, fixture("ApplicationWithdrawn.v1")),
                new_event("ProgressReportReviewed", 3, reviewed),
            ],
        }])
        .await
        .expect("append");

    // Past retention, but not erasable by a key: listed as not sealed, not due.
    let listing = due(database, Some(30), on((2026, 1, 1)));
    assert_eq!(listing["due"], serde_json::json!([]), "{listing}");
    assert_eq!(listing["not_sealed"][0]["application_id"], "mixed", "{listing}");

    // Erasure is refused, naming the remedy, and destroys nothing.
    let refused = app
        .post(
            "administrator",
            &format!("/api/v1/data-subjects/{mixed}/erasure"),
            &[],
            r#"{"reason": "request 2026-17", "basis": "data_subject_request"}"#,
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(refused.body.contains("personal_data_not_sealed") && refused.body.contains("reencrypt-log"));
    let output = support::aisc()
        .args(["privacy", "erase", "--subject", &mixed.to_string(), "--reason", "request 2026-17", "--actor", "dpo-1"])
        .env("DATABASE_URL", &database.url)
        .output()
        .expect("run aisc");
    assert_eq!(output.status.code(), Some(2), "{}", String::from_utf8_lossy(&output.stderr));
    let held: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT wrapped_key FROM data_subject_keys WHERE data_subject_id = $1")
            .bind(mixed.0)
            .fetch_one(&database.pool)
            .await
            .expect("key row");
    assert!(held.is_some(), "the key is kept");

    // The access request answers the plaintext too, marked as not sealed.
    let response = app.get("administrator", &format!("/api/v1/data-subjects/{mixed}/personal-data")).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let answer: Value = serde_json::from_str(&response.body).expect("JSON");
    let items: Vec<(String, Value, bool)> = answer["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| (item["field"].as_str().expect("field").to_string(), item["value"].clone(), item["sealed"] == true))
        .collect();
    assert!(items.contains(&("contact.name".into(), "Ho Ka Yan".into(), false)), "{items:?}");
    assert!(items.contains(&("contact.email".into(), "ky.ho@example.hk".into(), false)), "{items:?}");
    assert!(items.contains(&("comments".into(), "Ask Ms Ho for the figures".into(), true)), "{items:?}");
    app.stop().await;
}
