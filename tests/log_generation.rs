//! A log written before personal data was sealed, copied into a new generation by
//! `aisc privacy reencrypt-log`: the plaintext sealed on the way, every event where and when it
//! was, the new generation's chains intact, the old one untouched; keys the old generation
//! already had copied (an erased subject's plaintext shredded), events of Idempotency-Key
//! claims copied past the claim fence (which still holds for the service), one append per
//! original transaction, and a copy that gives up while the old log is still being written.

mod support;

use aisc_adapters::PostgresEventStore;
use aisc_adapters::personal_data::Opened;
use aisc_domain::codec::{EventCodec, StoredContext};
use aisc_domain::event_store::{EventStore, ExpectedVersion, NewEvent, StreamAppend, StreamId};
use aisc_domain::personal_data::{DataSubjectId, seal_fields};
use aisc_domain::subsidy::application::ApplicationEvent;
use chrono::{SubsecRound, Utc};
use serde_json::Value;

const NAME: &str = "Leung Wing Sze";
const EMAIL: &str = "ws.leung@example.edu.hk";
const SUMMARY: &str = "Dr Leung's team adapts a speech model";
const REPORT: &str = "Leung's students finished pre-training";
const REVIEW: &str = "Ask Ms Leung for the utilisation figures";
/// The contact of an application sealed before the copy (its key in the old generation).
const SEALED_NAME: &str = "Ho Ka Yan";
/// The contact of a legacy application whose data subject was erased before the copy.
const ERASED_NAME: &str = "Tsang Siu Ming";
const ERASED_EMAIL: &str = "sm.tsang@example.com.hk";

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

/// An event id as an Idempotency-Key claim makes them: UUID version 8.
fn claimed_event_id() -> uuid::Uuid {
    let id = uuid::Builder::from_custom_bytes(*uuid::Uuid::new_v4().as_bytes()).into_uuid();
    assert_eq!(id.get_version_num(), 8);
    id
}

/// An application submitted with these contact details, stored the way the release before
/// sealing stored it (schema version 2, plaintext).
fn legacy_submission(application_id: &str, name: &str, email: &str) -> NewEvent {
    let mut submitted = fixture("ApplicationSubmitted.v2");
    submitted["application_id"] = application_id.into();
    submitted["contact"] = serde_json::json!({"name": name, "email": email});
    event("ApplicationSubmitted", 2, submitted)
}

/// The same submission as the sealing release writes it: sealed under its subject's key in
/// `vault`, at the current schema version.
async fn sealed_submission(vault: &aisc_adapters::personal_data::Vault, application_id: &str, name: &str) -> NewEvent {
    let legacy = legacy_submission(application_id, name, "hky@example.org.hk");
    let mut decoded = ApplicationEvent::from_stored(
        &legacy.event_type,
        legacy.schema_version,
        &legacy.data,
        StoredContext::new(Utc::now()),
    )
    .expect("decode");
    assert!(decoded.unseal_legacy_for(DataSubjectId::of_application(application_id)));
    seal_fields(vault, decoded.personal_fields()).await.expect("seal");
    NewEvent {
        data: decoded.to_data().expect("encode"),
        schema_version: decoded.schema_version(),
        event_id: claimed_event_id(),
        ..legacy
    }
}

fn opened_submission(
    recorded: &aisc_domain::event_store::RecordedEvent,
) -> (Option<DataSubjectId>, Vec<(String, aisc_domain::personal_data::PersonalText)>) {
    let submitted = ApplicationEvent::from_stored(
        &recorded.event_type,
        recorded.schema_version,
        &recorded.data,
        StoredContext::new(recorded.recorded_at),
    )
    .expect("decode");
    let ApplicationEvent::ApplicationSubmitted(submitted) = submitted else { panic!("{submitted:?}") };
    let fields =
        submitted.details.personal_texts().into_iter().map(|(field, text)| (field.to_string(), text.clone())).collect();
    (submitted.data_subject_id, fields)
}

async fn transactions(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(DISTINCT global_position >> 20) FROM events").fetch_one(pool).await.expect("count")
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
    // The sealing release ran against this log before the copy: one application sealed (its
    // key in the old database; its event recorded under an Idempotency-Key, so a version 8 id),
    // and the key of a legacy application's subject made and erased. Both appends share one
    // recorded time, in two transactions.
    let old_vault = support::scheme::vault(&old);
    let sealed = sealed_submission(&old_vault, "sealed3", SEALED_NAME).await;
    let erased_subject = DataSubjectId::of_application("erased4");
    old_vault.ensure_subject(erased_subject.0).await.expect("key");
    old_vault.erase(erased_subject.0, "dpo-1", "data_subject_request").await.expect("erase");
    let same_time = Utc::now().trunc_subsecs(6);
    for (stream, event) in [
        ("application-sealed3", sealed),
        ("application-erased4", legacy_submission("erased4", ERASED_NAME, ERASED_EMAIL)),
    ] {
        old_store
            .append_as_recorded_at(
                vec![StreamAppend {
                    stream: StreamId::parse(stream).expect("stream"),
                    expected: ExpectedVersion::NoStream,
                    events: vec![event],
                }],
                same_time,
            )
            .await
            .expect("append");
    }
    let before = events(&old.pool).await;
    assert!(rows_text(&before).contains(NAME), "the old generation holds plaintext");
    assert!(rows_text(&before).contains(ERASED_NAME), "the old generation holds plaintext");
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
    assert_eq!(report["events"], 8, "{report}");
    assert_eq!(report["resealed_events"], 5, "{report}");
    assert_eq!(report["shredded_events"], 1, "{report}");
    assert_eq!(report["copied_keys"], 2, "{report}");
    assert_eq!(report["erased_data_subjects"], serde_json::json!([erased_subject.to_string()]), "{report}");
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
    assert_eq!(after.iter().map(|row| row.4).collect::<Vec<_>>(), vec![3, 1, 2, 3, 3, 1, 3, 3]);
    // One append per original transaction, even where two share a recorded time.
    assert_eq!(transactions(&new.pool).await, transactions(&old.pool).await);
    // Sealed, the withdrawn application's subject can now be erased when due.
    let listed = due(&new.url);
    assert_eq!(listed["not_sealed"], serde_json::json!([]), "{listed}");
    assert_eq!(listed["due"][0]["application_id"], "legacy2", "{listed}");
    let text = rows_text(&after);
    for plaintext in [NAME, EMAIL, SUMMARY, REPORT, REVIEW, ERASED_NAME, ERASED_EMAIL] {
        assert!(!text.contains(plaintext), "{plaintext} left in the new generation's events");
    }
    let dump = std::process::Command::new("pg_dump").args(["--data-only", &new.url]).output().expect("pg_dump");
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    let dump = String::from_utf8_lossy(&dump.stdout);
    for plaintext in [NAME, EMAIL, SUMMARY, REPORT, REVIEW, ERASED_NAME, ERASED_EMAIL, SEALED_NAME] {
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
    // Sealed before the copy: opens with the key copied from the old generation.
    let sealed_stream = StreamId::parse("application-sealed3").expect("stream");
    let recorded = new_store.read_streams(std::slice::from_ref(&sealed_stream)).await.expect("read");
    assert_eq!(recorded[0].event_id.get_version_num(), 8, "copied with its claimed id");
    let (sealed_subject, fields) = opened_submission(&recorded[0]);
    let fields: Vec<(&str, &aisc_domain::personal_data::PersonalText)> =
        fields.iter().map(|(f, t)| (f.as_str(), t)).collect();
    let opened = vault.open_all(sealed_subject, &fields).await.expect("open");
    assert_eq!(opened[1], Opened::Text(SEALED_NAME.into()));
    // Erased before the copy: its plaintext was sealed under a key nobody has; it stays erased.
    let erased_stream = StreamId::parse("application-erased4").expect("stream");
    let recorded = new_store.read_streams(std::slice::from_ref(&erased_stream)).await.expect("read");
    let (subject_of_erased, fields) = opened_submission(&recorded[0]);
    assert_eq!(subject_of_erased, Some(erased_subject));
    let fields: Vec<(&str, &aisc_domain::personal_data::PersonalText)> =
        fields.iter().map(|(f, t)| (f.as_str(), t)).collect();
    let opened = vault.open_all(subject_of_erased, &fields).await.expect("open");
    assert!(opened.iter().all(|field| *field == Opened::Erased), "{opened:?}");
    let erased_row: (Option<Vec<u8>>, Option<String>) =
        sqlx::query_as("SELECT wrapped_key, erased_by FROM data_subject_keys WHERE data_subject_id = $1")
            .bind(erased_subject.0)
            .fetch_one(&new.pool)
            .await
            .expect("the erased key copied");
    assert_eq!(erased_row, (None, Some("dpo-1".to_string())));

    // The new generation verifies; the old one is untouched; a second run refuses a non-empty log.
    let verify = support::aisc().args(["audit", "verify"]).env("DATABASE_URL", &new.url).output().expect("verify");
    assert_eq!(verify.status.code(), Some(0), "{}", String::from_utf8_lossy(&verify.stderr));
    assert_eq!(events(&old.pool).await, before);
    let again = run(&old.url, &new.url);
    assert_eq!(again.status.code(), Some(2), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds 8 events"));
}

#[tokio::test]
async fn the_copying_setting_lets_claimed_ids_past_the_fence_for_the_owner_only() {
    let database = support::TestDatabase::create().await;
    let stream = |name: &str| StreamId::parse(format!("application-{name}")).expect("stream");
    let claimed = |name: &str| StreamAppend {
        stream: stream(name),
        expected: ExpectedVersion::NoStream,
        events: vec![NewEvent { event_id: claimed_event_id(), ..legacy_submission(name, NAME, EMAIL) }],
    };
    let owner = PostgresEventStore::new(database.pool.clone());
    // Without the setting, a claimed id with no claim is refused, for the owner too.
    let refused = owner.append_multi(vec![claimed("fenced1")]).await.expect_err("no claim");
    assert!(refused.to_string().contains("taken over"), "{refused}");
    // The copy sets it: the owner's append goes through.
    owner.append_as_recorded_at(vec![claimed("copied1")], Utc::now().trunc_subsecs(6)).await.expect("copied");
    // The service may set the same setting, yet the fence still refuses it.
    let service_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .after_connect(|connection, _| {
            Box::pin(async move {
                sqlx::query("SET SESSION AUTHORIZATION aisc_service").execute(connection).await?;
                Ok(())
            })
        })
        .connect(&database.url)
        .await
        .expect("connect");
    let login: String = sqlx::query_scalar("SELECT session_user::text").fetch_one(&service_pool).await.expect("login");
    assert_eq!(login, "aisc_service");
    let service = PostgresEventStore::new(service_pool);
    let refused = service
        .append_as_recorded_at(vec![claimed("fenced2")], Utc::now().trunc_subsecs(6))
        .await
        .expect_err("the service cannot skip the fence");
    assert!(refused.to_string().contains("taken over"), "{refused}");
    assert_eq!(events(&database.pool).await.len(), 1);
}

#[tokio::test]
async fn the_copy_stops_while_a_transaction_is_still_writing_the_old_log() {
    let (old, new) = (support::TestDatabase::create().await, support::TestDatabase::create().await);
    let old_store = PostgresEventStore::new(old.pool.clone());
    // A transaction of the running service, begun (and given an id) before the last append.
    let mut running = old.pool.begin().await.expect("begin");
    sqlx::query("SELECT pg_current_xact_id()").execute(&mut *running).await.expect("xact id");
    old_store
        .append_multi(vec![StreamAppend {
            stream: StreamId::parse("application-legacy1").expect("stream"),
            expected: ExpectedVersion::NoStream,
            events: vec![legacy_submission("legacy1", NAME, EMAIL)],
        }])
        .await
        .expect("append");
    let output = support::aisc()
        .args(["privacy", "reencrypt-log", "--from-database-url", &old.url])
        .env("DATABASE_URL", &new.url)
        .output()
        .expect("run aisc");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("a transaction is still writing the old log: stop the service first"), "{stderr}");
    running.rollback().await.expect("rollback");
    assert!(events(&new.pool).await.is_empty(), "nothing copied");
}

#[tokio::test]
async fn keys_of_the_old_generation_under_another_kek_stop_the_copy_before_anything_is_written() {
    let (old, new) = (support::TestDatabase::create().await, support::TestDatabase::create().await);
    let old_store = PostgresEventStore::new(old.pool.clone());
    let sealed = sealed_submission(&support::scheme::vault(&old), "sealed3", SEALED_NAME).await;
    old_store
        .append_as_recorded_at(
            vec![StreamAppend {
                stream: StreamId::parse("application-sealed3").expect("stream"),
                expected: ExpectedVersion::NoStream,
                events: vec![sealed],
            }],
            Utc::now().trunc_subsecs(6),
        )
        .await
        .expect("append");
    let other_kek = std::env::temp_dir().join(format!("aisc-other-kek-{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&other_kek, "ab".repeat(32)).expect("write a KEK");
    let output = support::aisc()
        .args(["privacy", "reencrypt-log", "--from-database-url", &old.url])
        .env("DATABASE_URL", &new.url)
        .env("AISC_KEK_FILE", &other_kek)
        .output()
        .expect("run aisc");
    let _ = std::fs::remove_file(&other_kek);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("give AISC_KEK_FILE (--kek-file) the old generation's key-encryption key"), "{stderr}");
    let keys: i64 =
        sqlx::query_scalar("SELECT count(*) FROM data_subject_keys").fetch_one(&new.pool).await.expect("count");
    assert_eq!(keys, 0, "no key copied");
    assert!(events(&new.pool).await.is_empty(), "nothing copied");
}
