//! A log written before personal data was sealed, copied into a new generation by
//! `aisc privacy reencrypt-log`: the plaintext sealed on the way, every event where and when it
//! was, the new generation's chains intact, the old one untouched.

mod support;

use aisc_adapters::PostgresEventStore;
use aisc_adapters::personal_data::Opened;
use aisc_domain::codec::{EventCodec, StoredContext};
use aisc_domain::event_store::{EventStore, ExpectedVersion, NewEvent, StreamAppend, StreamId};
use aisc_domain::personal_data::DataSubjectId;
use aisc_domain::subsidy::application::ApplicationEvent;
use serde_json::Value;

const NAME: &str = "Leung Wing Sze";
const EMAIL: &str = "ws.leung@example.edu.hk";
const SUMMARY: &str = "Dr Leung's team adapts a speech model";
const REPORT: &str = "Leung's students finished pre-training";
const REVIEW: &str = "Ask Ms Leung for the utilisation figures";

fn fixture(name: &str) -> Value {
    let path = format!("{}/domain/tests/fixtures/events/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("fixture JSON")
}

fn event(event_type: &str, schema_version: u32, data: Value) -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::new_v4(),
        event_type: event_type.into(),
        schema_version,
        data,
        metadata: serde_json::json!({"actor": "intake-1", "role": "intake_officer"}),
    }
}

/// An application's history as the release before sealing stored it: plaintext personal fields.
fn legacy_history() -> Vec<NewEvent> {
    let mut submitted = fixture("ApplicationSubmitted.v2");
    submitted["application_id"] = "legacy1".into();
    submitted["contact"] = serde_json::json!({"name": NAME, "email": EMAIL});
    submitted["project_summary"] = SUMMARY.into();
    let mut report = fixture("ProgressReportSubmitted.v1");
    report["summary"] = REPORT.into();
    let mut review = fixture("ProgressReportReviewed.v2");
    review["comments"] = REVIEW.into();
    vec![
        event("ApplicationSubmitted", 2, submitted),
        event("EligibilityConfirmed", 1, fixture("EligibilityConfirmed.v1")),
        event("ProgressReportSubmitted", 1, report),
        event("ProgressReportReviewed", 2, review),
    ]
}

fn rows_text(rows: &[(String, i64, uuid::Uuid, String, i32, String)]) -> String {
    rows.iter().map(|row| row.5.clone()).collect::<Vec<_>>().join("\n")
}

async fn events(pool: &sqlx::PgPool) -> Vec<(String, i64, uuid::Uuid, String, i32, String)> {
    sqlx::query_as(
        "SELECT stream_id, stream_version, event_id, recorded_at::text, schema_version, data::text \
           FROM events ORDER BY global_position",
    )
    .fetch_all(pool)
    .await
    .expect("events")
}

#[tokio::test]
async fn plaintext_of_an_older_log_is_sealed_into_a_new_generation_that_verifies() {
    let (old, new) = (support::TestDatabase::create().await, support::TestDatabase::create().await);
    let old_store = PostgresEventStore::new(old.pool.clone());
    let stream = StreamId::parse("application-legacy1").expect("stream");
    let history = legacy_history();
    let (first, rest) = history.split_at(2);
    // Two appends, at two recorded times, as the old service wrote them.
    old_store
        .append_multi(vec![StreamAppend {
            stream: stream.clone(),
            expected: ExpectedVersion::NoStream,
            events: first.to_vec(),
        }])
        .await
        .expect("legacy append");
    old_store
        .append_multi(vec![StreamAppend {
            stream: stream.clone(),
            expected: ExpectedVersion::Exact(1),
            events: rest.to_vec(),
        }])
        .await
        .expect("legacy append");
    // A second application, withdrawn long ago: past retention, but with nothing to erase
    // until its plaintext is sealed.
    let mut withdrawn_submission = fixture("ApplicationSubmitted.v2");
    withdrawn_submission["application_id"] = "legacy2".into();
    old_store
        .append_multi(vec![StreamAppend {
            stream: StreamId::parse("application-legacy2").expect("stream"),
            expected: ExpectedVersion::NoStream,
            events: vec![
                event("ApplicationSubmitted", 2, withdrawn_submission),
                event("ApplicationWithdrawn", 1, fixture("ApplicationWithdrawn.v1")),
            ],
        }])
        .await
        .expect("legacy append");
    let before = events(&old.pool).await;
    assert!(rows_text(&before).contains(NAME), "the old generation holds plaintext");
    let due = |url: &str| -> Value {
        let output = support::aisc()
            .args(["privacy", "due", "--retention-days", "30", "--today", "2026-01-01", "--format", "json"])
            .env("DATABASE_URL", url)
            .output()
            .expect("run aisc");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).expect("JSON")
    };
    let listed = due(&old.url);
    assert_eq!(listed["due"], serde_json::json!([]), "{listed}");
    assert_eq!(listed["not_sealed"][0]["application_id"], "legacy2", "{listed}");

    let run = |from: &str, to: &str| {
        support::aisc()
            .args(["privacy", "reencrypt-log", "--from-database-url", from])
            .env("DATABASE_URL", to)
            .output()
            .expect("run aisc")
    };
    let output = run(&old.url, &new.url);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    assert_eq!(report["events"], 6, "{report}");
    assert_eq!(report["resealed_events"], 4, "{report}");
    let subject = DataSubjectId::of_application("legacy1");
    let mut subjects = vec![subject.to_string(), DataSubjectId::of_application("legacy2").to_string()];
    subjects.sort();
    assert_eq!(report["data_subjects"], serde_json::json!(subjects), "{report}");

    // Every event where and when it was; the personal ones at their current schema version.
    let after = events(&new.pool).await;
    assert_eq!(after.len(), before.len());
    for (old_row, new_row) in before.iter().zip(&after) {
        assert_eq!((&old_row.0, old_row.1, old_row.2, &old_row.3), (&new_row.0, new_row.1, new_row.2, &new_row.3));
    }
    assert_eq!(after.iter().map(|row| row.4).collect::<Vec<_>>(), vec![3, 1, 2, 3, 3, 1]);
    // Sealed, the withdrawn application's subject can now be erased when due.
    let listed = due(&new.url);
    assert_eq!(listed["not_sealed"], serde_json::json!([]), "{listed}");
    assert_eq!(listed["due"][0]["application_id"], "legacy2", "{listed}");
    let text = rows_text(&after);
    for plaintext in [NAME, EMAIL, SUMMARY, REPORT, REVIEW] {
        assert!(!text.contains(plaintext), "{plaintext} left in the new generation's events");
    }
    let dump = std::process::Command::new("pg_dump").args(["--data-only", &new.url]).output().expect("pg_dump");
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    let dump = String::from_utf8_lossy(&dump.stdout);
    for plaintext in [NAME, EMAIL, SUMMARY, REPORT, REVIEW] {
        assert!(!dump.contains(plaintext), "{plaintext} found in the new generation's database");
    }

    // The sealed fields open with the new generation's keys.
    let new_store = PostgresEventStore::new(new.pool.clone());
    let recorded = new_store.read_streams(std::slice::from_ref(&stream)).await.expect("read");
    let submitted = ApplicationEvent::from_stored(
        &recorded[0].event_type,
        recorded[0].schema_version,
        &recorded[0].data,
        StoredContext::new(recorded[0].recorded_at),
    )
    .expect("decode");
    let ApplicationEvent::ApplicationSubmitted(submitted) = submitted else { panic!("{submitted:?}") };
    assert_eq!(submitted.data_subject_id, Some(subject));
    let vault = support::scheme::vault(&new);
    let opened = vault.open_all(submitted.data_subject_id, &submitted.details.personal_texts()).await.expect("open");
    assert_eq!(opened[1], Opened::Text(NAME.into()));
    assert_eq!(opened[2], Opened::Text(EMAIL.into()));

    // The new generation verifies; the old one is untouched; a second run refuses a non-empty log.
    let verify = support::aisc().args(["audit", "verify"]).env("DATABASE_URL", &new.url).output().expect("verify");
    assert_eq!(verify.status.code(), Some(0), "{}", String::from_utf8_lossy(&verify.stderr));
    assert_eq!(events(&old.pool).await, before);
    let again = run(&old.url, &new.url);
    assert_eq!(again.status.code(), Some(2), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds 6 events"));
}
