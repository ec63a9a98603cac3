//! Data the first release wrote, read by this one on a real database: events stored at schema
//! version 1 of a type that has since gained its business date (`BatchOpened.opened_on`,
//! `AssessmentRecorded.assessed_on`) are decoded with the Hong Kong day they were recorded on —
//! by the domain's decisions and by the audit trail, caught up and rebuilt.

mod support;

use std::sync::Arc;
use std::time::Duration;

use aisc_adapters::PostgresEventStore;
use aisc_adapters::event_hash::{EventContent, content_digest};
use aisc_domain::command_service::CommandError;
use aisc_domain::event_store::{EventStore, ExpectedVersion, NewEvent, PositionRange, ReadDirection, StreamId};
use aisc_domain::subsidy::DomainError;
use aisc_domain::subsidy::application::{ApplicationEvent, Status};
use aisc_domain::subsidy::batches::{BatchEvent, CloseBatch};
use aisc_domain::subsidy::capacity::DeclareCapacity;
use aisc_domain::subsidy::funding::{BudgetLine, RecordFundingReceived};
use aisc_domain::subsidy::prices::SetServiceRate;
use aisc_domain::subsidy::values::{FinancialYear, Money, Period};
use aisc_projections::ProjectionRunner;
use aisc_projections::applications::Applications;
use aisc_projections::audit_trail::{self, AuditEntry, AuditQuery, AuditTrail};
use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;
use support::TestDatabase;
use support::scheme::*;

/// The Hong Kong calendar day (UTC+8) of an instant.
fn hong_kong_day(instant: DateTime<Utc>) -> NaiveDate {
    instant.with_timezone(&FixedOffset::east_opt(8 * 3600).expect("UTC+8")).date_naive()
}

fn stream(name: &str) -> StreamId {
    StreamId::parse(name).expect("stream")
}

fn v1(event_type: &str, data: Value, actor: &str, role: &str) -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::new_v4(),
        event_type: event_type.into(),
        schema_version: 1,
        data,
        metadata: json!({ "actor": actor, "role": role, "request_id": format!("legacy-{}", uuid::Uuid::new_v4()) }),
    }
}

/// `BatchOpened` as the first release stored it: no `opened_on`.
fn batch_opened_v1() -> NewEvent {
    let data = json!({"batch_id": "2025-q2", "deadline": "2025-05-31", "committee_date": "2025-06-15"});
    v1("BatchOpened", data, "sec-1", "committee_secretariat")
}

/// `AssessmentRecorded` as the first release stored it, by assessor-1: no `assessed_on`.
fn assessment_recorded_v1() -> NewEvent {
    let data = json!({
        "scores": {"d_capability": 7, "a_meets_hong_kong_needs": 5, "b_requirement_reasonable": 5, "c_feasibility_and_outcome": 10},
        "assessor": "assessor-1",
        "conditions": [],
        "total_score": 27,
        "duration_months": 6,
        "recommended_rate": 7000,
        "recommended_ceiling": 50_000_000,
        "no_conflict_declared": true
    });
    v1("AssessmentRecorded", data, "assessor-1", "assessor")
}

fn runner(
    database: &TestDatabase,
    store: &PostgresEventStore,
    projection: Arc<dyn aisc_projections::Projection>,
) -> ProjectionRunner {
    let store: Arc<dyn EventStore> = Arc::new(store.clone());
    ProjectionRunner::new(database.pool.clone(), store, projection)
}

async fn trail(pool: &PgPool, query: AuditQuery) -> Vec<AuditEntry> {
    audit_trail::query(pool, &AuditQuery { limit: 1_000, ..query }).await.expect("audit trail")
}

fn of_stream(name: &str) -> AuditQuery {
    AuditQuery { stream_id: Some(name.into()), ..AuditQuery::default() }
}

fn dated(entries: &[AuditEntry]) -> Vec<(&str, Option<NaiveDate>)> {
    entries.iter().map(|entry| (entry.event_type.as_str(), entry.effective_on)).collect()
}

#[tokio::test]
async fn version_1_events_take_the_hong_kong_day_they_were_recorded_in_decisions_and_the_audit_trail() {
    let database = TestDatabase::create().await;
    let scheme = scheme(&database).await;
    let store = scheme.commands().store().clone();

    // The first release opened the batch; this one records the rest of the set-up.
    let opened = store.append(&stream("batches"), ExpectedVersion::NoStream, vec![batch_opened_v1()]).await;
    opened.expect("append v1 BatchOpened");
    let (admin, role, today) = ("admin-1", "administrator", day(2025, 4, 1));
    let funding = RecordFundingReceived {
        year: FinancialYear::parse("2025-26").expect("year"),
        line: BudgetLine::ComputingPowerSubsidy,
        amount: hkd(857_000_000),
        received_on: day(2025, 4, 1),
    };
    act(&scheme, &funding, "finance-1", "finance_officer", today).await.expect("funding");
    let price = SetServiceRate {
        service_type: gpu(),
        rate_per_unit: Money::from_cents(4_250),
        unit: "node-hour".into(),
        effective_from: day(2025, 4, 1),
    };
    act(&scheme, &price, admin, role, today).await.expect("price");
    for month in Period::range(period("2025-07"), period("2025-12")) {
        let capacity = DeclareCapacity { service_type: gpu(), period: month, units: 10_000 };
        act(&scheme, &capacity, admin, role, today).await.expect("capacity");
    }

    // Submitted into the batch the first release opened (the earliest open one), ruled
    // eligible; the batch closes.
    let id = "legacy-7";
    submitted(&scheme, id).await;
    let (state, _) = scheme.application_state(id).await.expect("state");
    assert_eq!((state.batch_id.as_deref(), state.batch_deadline), (Some("2025-q2"), Some(day(2025, 5, 31))));
    act(&scheme, &CloseBatch { batch_id: "2025-q2".into() }, "sec-1", "committee_secretariat", day(2025, 6, 1))
        .await
        .expect("close the batch opened by the first release");

    // The first release recorded the assessment.
    let application = stream(&format!("application-{id}"));
    store
        .append(&application, ExpectedVersion::Exact(1), vec![assessment_recorded_v1()])
        .await
        .expect("append v1 AssessmentRecorded");
    let (state, version) = scheme.application_state(id).await.expect("state");
    assert_eq!(
        (state.status, state.assessor.as_deref(), state.total_score, version),
        (Status::Assessed, Some("assessor-1"), Some(27), Some(2))
    );

    // The domain decodes both with the Hong Kong day they were recorded on.
    let batches = store.read_stream(&stream("batches"), None, ReadDirection::Forward, 10).await.expect("read");
    let opened_at = batches[0].recorded_at;
    match batches[0].decode::<BatchEvent>().expect("decode v1 BatchOpened") {
        BatchEvent::BatchOpened(event) => {
            assert_eq!((event.batch_id.as_str(), event.opened_on), ("2025-q2", hong_kong_day(opened_at)));
        }
        other => panic!("not the opening: {other:?}"),
    }
    let events = store.read_stream(&application, None, ReadDirection::Forward, 10).await.expect("read");
    let assessed_at = events[2].recorded_at;
    match events[2].decode::<ApplicationEvent>().expect("decode v1 AssessmentRecorded") {
        ApplicationEvent::AssessmentRecorded(event) => {
            assert_eq!((event.assessor.as_str(), event.assessed_on), ("assessor-1", hong_kong_day(assessed_at)));
        }
        other => panic!("not the assessment: {other:?}"),
    }

    // Decisions fold the old assessment: its assessor may not record the decision; the
    // secretariat may.
    let approve = approval(id, None);
    let refused = act(&scheme, &approve, "assessor-1", "committee_secretariat", committee_day()).await;
    assert!(matches!(refused, Err(CommandError::Rejected(DomainError::AssessorCannotDecide { .. }))), "{refused:?}");
    act(&scheme, &approve, "sec-1", "committee_secretariat", committee_day()).await.expect("approve");

    // The audit trail dates them so, caught up from the start and rebuilt from scratch.
    runner(&database, &store, Arc::new(AuditTrail)).catch_up().await.expect("audit trail catches up");
    let expected_batches = [("BatchOpened", Some(hong_kong_day(opened_at))), ("BatchClosed", Some(day(2025, 6, 1)))];
    let expected_application = [
        ("ApplicationSubmitted", Some(day(2025, 5, 2))),
        ("EligibilityConfirmed", Some(day(2025, 6, 2))),
        ("AssessmentRecorded", Some(hong_kong_day(assessed_at))),
        ("ApplicationApproved", Some(committee_day())),
    ];
    let pool = &database.pool;
    let live_batches = trail(pool, of_stream("batches")).await;
    let live_application = trail(pool, of_stream(application.as_str())).await;
    assert_eq!(dated(&live_batches), expected_batches);
    assert_eq!(dated(&live_application), expected_application);
    assert_eq!(live_application[2].recorded_at, assessed_at);

    runner(&database, &store, Arc::new(AuditTrail)).rebuild(Duration::from_secs(60)).await.expect("rebuild");
    assert_eq!(trail(pool, of_stream("batches")).await, live_batches, "rebuilt as built");
    assert_eq!(trail(pool, of_stream(application.as_str())).await, live_application, "rebuilt as built");

    // The applications read model (the batch calendar) decodes them too.
    runner(&database, &store, Arc::new(Applications)).catch_up().await.expect("applications read model catches up");
    database.drop_database().await;
}

/// Appends one event to a new stream through the store's own `append_stream`, as if it had
/// been recorded at `recorded_at`: the store stamps its appends with the present, and these
/// stand for events the first release recorded long ago. The content digest is the store's,
/// so the hash chain verifies.
async fn append_recorded_at(pool: &PgPool, stream: &str, event: &NewEvent, recorded_at: DateTime<Utc>) {
    let digest = content_digest(&EventContent {
        stream_id: stream,
        event_id: event.event_id,
        event_type: &event.event_type,
        schema_version: event.schema_version,
        recorded_at,
        data: &event.data,
        metadata: &event.metadata,
    });
    sqlx::query("SELECT last_position FROM append_stream($1, $2, $3, 0, $4, $5, $6, $7, $8, $9, $10)")
        .bind(stream)
        .bind(1_i16) // no stream yet
        .bind(-1_i64)
        .bind(vec![event.event_id])
        .bind(vec![event.event_type.clone()])
        .bind(vec![i32::try_from(event.schema_version).expect("version")])
        .bind(vec![event.data.clone()])
        .bind(vec![event.metadata.clone()])
        .bind(recorded_at)
        .bind(vec![digest.to_vec()])
        .fetch_one(pool)
        .await
        .expect("append_stream");
}

fn instant(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).expect("time").with_timezone(&Utc)
}

#[tokio::test]
async fn a_version_1_event_takes_the_hong_kong_day_not_the_utc_day_it_was_recorded() {
    let database = TestDatabase::create().await;
    let store = PostgresEventStore::new(database.pool.clone());
    let pool = &database.pool;
    // 23:59:59.999999 on 31 March in Hong Kong (15:59:59.999999 UTC), and midnight starting
    // 1 April in Hong Kong (still 31 March in UTC).
    append_recorded_at(pool, "application-legacy-1", &assessment_recorded_v1(), instant("2025-03-31T15:59:59.999999Z"))
        .await;
    append_recorded_at(pool, "batches", &batch_opened_v1(), instant("2025-03-31T16:00:00Z")).await;
    // An event outside the scheme has no business date.
    let note = NewEvent {
        event_id: uuid::Uuid::new_v4(),
        event_type: "NoteRecorded".into(),
        schema_version: 1,
        data: json!({"text": "not a fact of the scheme"}),
        metadata: json!({"actor": "auditor-1", "role": "auditor"}),
    };
    store.append(&stream("note-1"), ExpectedVersion::NoStream, vec![note]).await.expect("note");
    let report = store.verify(PositionRange::WHOLE_LOG).await.expect("verify");
    assert_eq!((&report.first_broken, report.verified), (&None, 3), "{report:?}");

    let batches = store.read_stream(&stream("batches"), None, ReadDirection::Forward, 10).await.expect("read");
    match batches[0].decode::<BatchEvent>().expect("decode") {
        BatchEvent::BatchOpened(event) => assert_eq!(event.opened_on, day(2025, 4, 1)),
        other => panic!("not the opening: {other:?}"),
    }
    let legacy = store.read_stream(&stream("application-legacy-1"), None, ReadDirection::Forward, 10).await;
    match legacy.expect("read")[0].decode::<ApplicationEvent>().expect("decode") {
        ApplicationEvent::AssessmentRecorded(event) => assert_eq!(event.assessed_on, day(2025, 3, 31)),
        other => panic!("not the assessment: {other:?}"),
    }

    runner(&database, &store, Arc::new(AuditTrail)).catch_up().await.expect("audit trail catches up");
    let all = trail(pool, AuditQuery::default()).await;
    assert_eq!(
        dated(&all),
        [
            ("AssessmentRecorded", Some(day(2025, 3, 31))),
            ("BatchOpened", Some(day(2025, 4, 1))),
            ("NoteRecorded", None)
        ]
    );
    let until = trail(pool, AuditQuery { effective_until: Some(day(2025, 3, 31)), ..AuditQuery::default() }).await;
    assert_eq!(dated(&until), [("AssessmentRecorded", Some(day(2025, 3, 31)))]);
    let from = trail(pool, AuditQuery { effective_from: Some(day(2025, 4, 1)), ..AuditQuery::default() }).await;
    assert_eq!(dated(&from), [("BatchOpened", Some(day(2025, 4, 1)))]);
    // Both were recorded on 31 March by the UTC clock.
    let before =
        trail(pool, AuditQuery { recorded_before: Some(instant("2025-04-01T00:00:00Z")), ..AuditQuery::default() })
            .await;
    assert_eq!(before.len(), 2);
    database.drop_database().await;
}

#[tokio::test]
async fn the_audit_trail_records_an_event_it_cannot_read_without_a_date_and_goes_on() {
    let database = TestDatabase::create().await;
    let store = PostgresEventStore::new(database.pool.clone());
    // A version this code does not know (written by a newer release during an upgrade), then
    // an ordinary event after it.
    let newer = NewEvent { schema_version: 3, ..assessment_recorded_v1() };
    store.append(&stream("application-newer-1"), ExpectedVersion::NoStream, vec![newer]).await.expect("newer");
    store.append(&stream("batches"), ExpectedVersion::NoStream, vec![batch_opened_v1()]).await.expect("batch");

    runner(&database, &store, Arc::new(AuditTrail)).catch_up().await.expect("the trail is not stopped");
    let entries = trail(&database.pool, AuditQuery::default()).await;
    assert_eq!(dated(&entries)[0], ("AssessmentRecorded", None), "recorded, without a date it cannot read");
    assert_eq!(entries.len(), 2, "and the events after it are recorded too: {entries:?}");
    assert_eq!(entries[1].effective_on, Some(hong_kong_day(entries[1].recorded_at)));
}
