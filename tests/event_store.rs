//! The PostgreSQL event store against a real database: expected versions, idempotency,
//! multi-stream atomicity, gap-safe `$all`, subscriptions, append-only and tamper evidence.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use aisc_adapters::PostgresEventStore;
use aisc_domain::event_store::{
    ActualVersion, EventStore, ExpectedVersion, NewEvent, Position, PositionRange, ReadDirection, RecordedEvent,
    StoreError, StreamAppend, StreamId, Tampering,
};
use serde_json::json;
use support::TestDatabase;
use uuid::Uuid;

fn stream(name: &str) -> StreamId {
    StreamId::parse(name).expect("valid stream id")
}

fn event(kind: &str, n: i64) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: kind.to_string(),
        schema_version: 1,
        data: json!({ "n": n, "amount_cents": n * 100 }),
        metadata: json!({ "actor": "test", "role": "administrator" }),
    }
}

async fn count_events(store: &PostgresEventStore) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(store.pool()).await.expect("count")
}

async fn read_everything(store: &PostgresEventStore) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    let mut after = Position::START;
    loop {
        let slice = store.read_all(after, 1000).await.expect("read_all");
        if slice.events.is_empty() && !slice.held_back {
            return all;
        }
        if let Some(last) = slice.events.last() {
            after = last.position;
        }
        all.extend(slice.events);
    }
}

async fn with_store<F, Fut>(test: F)
where
    F: FnOnce(PostgresEventStore) -> Fut,
    Fut: Future<Output = ()>,
{
    let database = TestDatabase::create_with_pool_size(40).await;
    let store = PostgresEventStore::new(database.pool.clone()).with_subscription_poll(Duration::from_millis(200));
    test(store).await;
    database.drop_database().await;
}

#[tokio::test]
async fn every_expected_version_case_appends_or_conflicts_without_writing() {
    with_store(|store| async move {
        let s = stream("application-1");
        // A new stream: Any, NoStream succeed; StreamExists and Exact conflict.
        let conflict = store.append(&s, ExpectedVersion::StreamExists, vec![event("A", 0)]).await;
        assert_eq!(
            conflict,
            Err(StoreError::WrongExpectedVersion {
                stream: s.clone(),
                expected: ExpectedVersion::StreamExists,
                actual: ActualVersion::NoStream
            })
        );
        let conflict = store.append(&s, ExpectedVersion::Exact(0), vec![event("A", 0)]).await;
        assert!(matches!(conflict, Err(StoreError::WrongExpectedVersion { actual: ActualVersion::NoStream, .. })));
        assert_eq!(count_events(&store).await, 0, "a conflict writes nothing");
        assert_eq!(store.stream_version(&s).await.expect("version"), None);

        let first =
            store.append(&s, ExpectedVersion::NoStream, vec![event("A", 0), event("A", 1)]).await.expect("no stream");
        assert_eq!((first.first_version, first.last_version), (0, 1));
        let second = store.append(&s, ExpectedVersion::Exact(1), vec![event("B", 2)]).await.expect("exact");
        assert_eq!((second.first_version, second.last_version), (2, 2));
        assert!(second.position > first.position);
        let third = store.append(&s, ExpectedVersion::StreamExists, vec![event("C", 3)]).await.expect("exists");
        assert_eq!(third.last_version, 3);
        let fourth = store.append(&s, ExpectedVersion::Any, vec![event("D", 4)]).await.expect("any");
        assert_eq!(fourth.last_version, 4);
        let other = stream("application-2");
        assert_eq!(
            store.append(&other, ExpectedVersion::Any, vec![event("A", 0)]).await.expect("any new").last_version,
            0
        );

        // Existing stream: NoStream and a stale Exact conflict, naming the actual version.
        let conflict = store.append(&s, ExpectedVersion::NoStream, vec![event("X", 9)]).await;
        assert_eq!(
            conflict,
            Err(StoreError::WrongExpectedVersion {
                stream: s.clone(),
                expected: ExpectedVersion::NoStream,
                actual: ActualVersion::Version(4)
            })
        );
        let conflict = store.append(&s, ExpectedVersion::Exact(2), vec![event("X", 9)]).await;
        assert_eq!(
            conflict,
            Err(StoreError::WrongExpectedVersion {
                stream: s.clone(),
                expected: ExpectedVersion::Exact(2),
                actual: ActualVersion::Version(4)
            })
        );
        let message = conflict.expect_err("conflict").to_string();
        assert!(message.contains("application-1") && message.contains("version 2") && message.contains("version 4"));
        assert_eq!(count_events(&store).await, 6, "conflicts wrote nothing");
        assert_eq!(store.stream_version(&s).await.expect("version"), Some(4));
    })
    .await;
}

#[tokio::test]
async fn a_retried_append_returns_the_first_result_and_writes_nothing() {
    with_store(|store| async move {
        let s = stream("batch-2025-q1");
        let events = vec![event("BatchOpened", 1), event("BatchNoted", 2)];
        let first = store.append(&s, ExpectedVersion::NoStream, events.clone()).await.expect("first");
        // The retry carries the same ids; its expected version is stale now, yet it is no conflict.
        let retry = store.append(&s, ExpectedVersion::NoStream, events.clone()).await.expect("retry");
        assert_eq!(first, retry);
        assert_eq!(count_events(&store).await, 2);

        // The same id with other content is refused, in this stream or another.
        let mut changed = events[0].clone();
        changed.data = json!({ "n": 99 });
        let refused = store.append(&s, ExpectedVersion::Any, vec![changed.clone()]).await;
        assert_eq!(refused, Err(StoreError::EventIdReused { event_id: changed.event_id }));
        let elsewhere = store.append(&stream("batch-2025-q2"), ExpectedVersion::Any, vec![events[0].clone()]).await;
        assert!(matches!(elsewhere, Err(StoreError::EventIdReused { .. })), "{elsewhere:?}");
        // A new event together with an old id is refused too.
        let mixed = store.append(&s, ExpectedVersion::Any, vec![event("New", 3), events[1].clone()]).await;
        assert!(matches!(mixed, Err(StoreError::EventIdReused { .. })), "{mixed:?}");
        assert_eq!(count_events(&store).await, 2);
    })
    .await;
}

#[tokio::test]
async fn a_conflict_on_one_stream_of_a_multi_stream_append_leaves_every_stream_untouched() {
    with_store(|store| async move {
        let budget = stream("budget-2025-26");
        let capacity = stream("capacity-aisc");
        store.append(&budget, ExpectedVersion::NoStream, vec![event("FundingReceived", 1)]).await.expect("budget");
        store.append(&capacity, ExpectedVersion::NoStream, vec![event("CapacityDeclared", 1)]).await.expect("capacity");

        let application = stream("application-7");
        let refused = store
            .append_multi(vec![
                StreamAppend { stream: application.clone(), expected: ExpectedVersion::NoStream, events: vec![event("Approved", 1)] },
                StreamAppend { stream: budget.clone(), expected: ExpectedVersion::Exact(0), events: vec![event("Reserved", 1)] },
                StreamAppend { stream: capacity.clone(), expected: ExpectedVersion::Exact(5), events: vec![event("Allocated", 1)] },
            ])
            .await;
        assert!(
            matches!(&refused, Err(StoreError::WrongExpectedVersion { stream, actual: ActualVersion::Version(0), .. }) if *stream == capacity),
            "{refused:?}"
        );
        assert_eq!(count_events(&store).await, 2);
        assert_eq!(store.stream_version(&application).await.expect("v"), None);
        assert_eq!(store.stream_version(&budget).await.expect("v"), Some(0));

        let results = store
            .append_multi(vec![
                StreamAppend { stream: application.clone(), expected: ExpectedVersion::NoStream, events: vec![event("Approved", 1)] },
                StreamAppend { stream: budget.clone(), expected: ExpectedVersion::Exact(0), events: vec![event("Reserved", 1)] },
                StreamAppend { stream: capacity.clone(), expected: ExpectedVersion::Exact(0), events: vec![event("Allocated", 1)] },
            ])
            .await
            .expect("all three");
        // Results come back in the caller's order; one transaction wrote them all.
        assert_eq!(results.iter().map(|r| r.last_version).collect::<Vec<_>>(), vec![0, 1, 1]);
        assert_eq!(count_events(&store).await, 5);
    })
    .await;
}

/// The bulk import's shape: one append over hundreds of streams, some of them new, numbered,
/// positioned and chained as stream-by-stream appends are; a wrong expected version on one
/// stream far down the list writes nothing at all.
#[tokio::test]
async fn an_append_over_300_streams_writes_each_in_order_or_nothing() {
    with_store(|store| async move {
        let names: Vec<StreamId> = (0..300).map(|n| stream(&format!("usage-{n:03}"))).collect();
        // Odd streams exist already, at version n % 3; even ones are new.
        let existing = |n: usize| (n % 2 == 1).then_some((n % 3) as u64);
        for n in (0..300).filter(|n| existing(*n).is_some()) {
            let events = (0..=n % 3).map(|e| event("MeterRead", e as i64)).collect();
            store.append(&names[n], ExpectedVersion::NoStream, events).await.expect("existing stream");
        }
        let before = count_events(&store).await;
        let sizes = |n: usize| 1 + n % 4;
        // In the caller's order, which is not the streams' sorted order.
        let appends: Vec<StreamAppend> = (0..300)
            .rev()
            .map(|n| StreamAppend {
                stream: names[n].clone(),
                expected: existing(n).map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact),
                events: (0..sizes(n)).map(|e| event("UsageCharged", (n * 10 + e) as i64)).collect(),
            })
            .collect();

        // usage-199, the 200th stream in lock order, is at version 1, not 5.
        let mut wrong = appends.clone();
        let at = wrong.iter().position(|a| a.stream == names[199]).expect("usage-199");
        wrong[at].expected = ExpectedVersion::Exact(5);
        let refused = store.append_multi(wrong).await;
        assert_eq!(
            refused,
            Err(StoreError::WrongExpectedVersion {
                stream: names[199].clone(),
                expected: ExpectedVersion::Exact(5),
                actual: ActualVersion::Version(1)
            })
        );
        assert_eq!(count_events(&store).await, before, "a conflict on one stream writes nothing");
        assert_eq!(store.stream_version(&names[0]).await.expect("v"), None, "nor creates a stream");
        assert_eq!(store.stream_version(&names[1]).await.expect("v"), Some(1));

        let results = store.append_multi(appends.clone()).await.expect("300 streams");
        let total: usize = (0..300).map(sizes).sum();
        assert_eq!(count_events(&store).await, before + total as i64);
        // Results come back in the caller's order.
        for (append, result) in appends.iter().zip(&results) {
            let n: usize = append.stream.as_str()["usage-".len()..].parse().expect("n");
            let first = existing(n).map_or(0, |version| version + 1);
            assert_eq!((result.first_version, result.last_version), (first, first + sizes(n) as u64 - 1), "{n}");
        }

        // One transaction wrote them all, stream after stream in sorted order, versions in
        // order within each, at strictly increasing positions.
        let bulk: Vec<RecordedEvent> =
            read_everything(&store).await.into_iter().filter(|e| e.event_type == "UsageCharged").collect();
        let expected_order: Vec<(String, u64)> = (0..300)
            .flat_map(|n| {
                let first = existing(n).map_or(0, |version| version + 1);
                (0..sizes(n) as u64).map(move |e| (format!("usage-{n:03}"), first + e))
            })
            .collect();
        let order: Vec<(String, u64)> = bulk.iter().map(|e| (e.stream.as_str().to_owned(), e.stream_version)).collect();
        assert_eq!(order, expected_order);
        assert!(bulk.windows(2).all(|pair| pair[0].position < pair[1].position));
        assert!(bulk.iter().all(|e| e.position.0 >> 20 == bulk[0].position.0 >> 20), "one transaction");
        assert_eq!(bulk.last().map(|e| e.position.0 - bulk[0].position.0), Some(total as u64 - 1), "no gaps");
        for (append, result) in appends.iter().zip(&results) {
            let last = bulk.iter().rfind(|e| e.stream == append.stream).expect("the stream's last event");
            assert_eq!(result.position, last.position);
        }
        let report = store.verify(PositionRange::WHOLE_LOG).await.expect("verify");
        assert_eq!((report.verified, report.first_broken), (before as u64 + total as u64, None), "hash chains");

        // Sent again, it is a replay: the same answer, nothing written.
        let replay = store.append_multi(appends.clone()).await.expect("replay");
        assert_eq!(replay, results);
        // A replay with one more stream reuses ids under a different append.
        let mut mixed = appends;
        mixed.push(StreamAppend {
            stream: stream("usage-300"),
            expected: ExpectedVersion::NoStream,
            events: vec![event("UsageCharged", 3000)],
        });
        let refused = store.append_multi(mixed).await;
        assert!(matches!(refused, Err(StoreError::EventIdReused { .. })), "{refused:?}");
        assert_eq!(count_events(&store).await, before + total as i64);
    })
    .await;
}

#[tokio::test]
async fn malformed_appends_are_refused_with_a_reason() {
    with_store(|store| async move {
        let s = stream("application-9");
        let mut fractional = event("Usage", 1);
        fractional.data = json!({ "units": 1.5 });
        let refused = store.append(&s, ExpectedVersion::Any, vec![fractional]).await;
        assert!(matches!(&refused, Err(StoreError::InvalidAppend(m)) if m.contains("fractional")), "{refused:?}");
        assert!(matches!(store.append(&s, ExpectedVersion::Any, vec![]).await, Err(StoreError::InvalidAppend(_))));
        let twice = event("A", 1);
        let refused = store.append(&s, ExpectedVersion::Any, vec![twice.clone(), twice]).await;
        assert!(matches!(refused, Err(StoreError::InvalidAppend(_))));
        let mut bad_type = event("A", 1);
        bad_type.event_type = "has space".into();
        assert!(matches!(
            store.append(&s, ExpectedVersion::Any, vec![bad_type]).await,
            Err(StoreError::InvalidAppend(_))
        ));
        assert_eq!(count_events(&store).await, 0);
    })
    .await;
}

#[tokio::test]
async fn streams_read_forward_and_backward_from_a_version_with_a_limit() {
    with_store(|store| async move {
        let s = stream("application-3");
        let events: Vec<NewEvent> = (0..10).map(|n| event("E", n)).collect();
        store.append(&s, ExpectedVersion::NoStream, events.clone()).await.expect("append");
        store.append(&stream("other-1"), ExpectedVersion::Any, vec![event("X", 0)]).await.expect("other");

        let versions = |events: Vec<RecordedEvent>| events.iter().map(|e| e.stream_version).collect::<Vec<_>>();
        assert_eq!(versions(store.read_stream(&s, None, ReadDirection::Forward, 3).await.expect("r")), vec![0, 1, 2]);
        assert_eq!(
            versions(store.read_stream(&s, Some(7), ReadDirection::Forward, 10).await.expect("r")),
            vec![7, 8, 9]
        );
        assert_eq!(versions(store.read_stream(&s, None, ReadDirection::Backward, 2).await.expect("r")), vec![9, 8]);
        assert_eq!(versions(store.read_stream(&s, Some(1), ReadDirection::Backward, 5).await.expect("r")), vec![1, 0]);
        assert!(store.read_stream(&stream("missing-1"), None, ReadDirection::Forward, 5).await.expect("r").is_empty());

        let read = store.read_stream(&s, Some(4), ReadDirection::Forward, 1).await.expect("r");
        assert_eq!(read[0].event_id, events[4].event_id);
        assert_eq!(read[0].data, events[4].data);
        assert_eq!(read[0].metadata, events[4].metadata);
        assert_eq!(read[0].stream, s);
    })
    .await;
}

#[tokio::test]
async fn read_all_pages_through_the_log_in_position_order() {
    with_store(|store| async move {
        for n in 0..25 {
            store
                .append(&stream(&format!("s-{}", n % 4)), ExpectedVersion::Any, vec![event("E", n)])
                .await
                .expect("append");
        }
        let first = store.read_all(Position::START, 10).await.expect("page");
        assert_eq!(first.events.len(), 10);
        let rest = store.read_all(first.events[9].position, 100).await.expect("page");
        assert_eq!(rest.events.len(), 15);
        assert!(!rest.held_back);
        let all: Vec<_> = first.events.iter().chain(&rest.events).collect();
        assert!(all.windows(2).all(|w| w[0].position < w[1].position));
        assert_eq!(
            all.iter().map(|e| e.data["n"].as_i64().expect("n")).collect::<Vec<_>>(),
            (0..25).collect::<Vec<_>>()
        );
    })
    .await;
}

/// A transaction that holds a lower position commits after a later one: the reader must not
/// hand out the later event first (it would then skip the earlier one).
#[tokio::test]
async fn read_all_never_skips_an_event_that_commits_later_with_a_lower_position() {
    with_store(|store| async move {
        let mut slow = store.pool().begin().await.expect("begin");
        let slow_event = Uuid::new_v4();
        sqlx::query(
            "SELECT * FROM append_stream('slow-1', 0::smallint, -1, 0, ARRAY[$1::uuid], ARRAY['Slow'], ARRAY[1], \
             ARRAY['{}'::jsonb], ARRAY['{}'::jsonb], now(), ARRAY['\\x00'::bytea])",
        )
        .bind(slow_event)
        .execute(&mut *slow)
        .await
        .expect("slow append, uncommitted");

        let fast = store.append(&stream("fast-1"), ExpectedVersion::Any, vec![event("Fast", 1)]).await.expect("fast");
        let slice = store.read_all(Position::START, 100).await.expect("read");
        assert!(slice.events.is_empty(), "the later event must wait for the earlier transaction: {:?}", slice.events);
        assert!(slice.held_back, "the reader is told to come back");

        slow.commit().await.expect("commit slow");
        let slice = store.read_all(Position::START, 100).await.expect("read");
        let ids: Vec<Uuid> = slice.events.iter().map(|e| e.event_id).collect();
        assert_eq!(ids.len(), 2);
        assert_eq!(ids[0], slow_event, "the earlier position comes first");
        assert_eq!(slice.events[1].position, fast.position);
    })
    .await;
}

/// Under a steady stream of appends some transaction is nearly always running: a subscriber
/// hands on what is settled at once instead of waiting for a moment with nothing held back.
#[tokio::test]
async fn a_subscriber_gets_settled_events_while_later_ones_are_held_back() {
    with_store(|store| async move {
        // Waiting for held-back events to settle would take this long.
        let store = store.with_held_back_wait(Duration::from_secs(10));
        let settled = store.append(&stream("settled-1"), ExpectedVersion::Any, vec![event("Settled", 1)]).await;
        let settled = settled.expect("settled append");
        let mut running = store.pool().begin().await.expect("begin");
        sqlx::query("SELECT pg_current_xact_id()").execute(&mut *running).await.expect("a transaction id");
        let held = store.append(&stream("held-1"), ExpectedVersion::Any, vec![event("Held", 2)]).await.expect("held");

        let mut subscription = store.subscribe_all(Position::START).await.expect("subscribe");
        let first = tokio::time::timeout(Duration::from_secs(2), subscription.next())
            .await
            .expect("the settled event is handed on without waiting for the running transaction")
            .expect("next");
        assert_eq!(first.position, settled.position);

        running.rollback().await.expect("end the running transaction");
        let second = tokio::time::timeout(Duration::from_secs(2), subscription.next())
            .await
            .expect("the held-back event once the transaction ended")
            .expect("next");
        assert_eq!(second.position, held.position);
    })
    .await;
}

#[tokio::test]
async fn concurrent_appends_reach_a_subscriber_exactly_once_in_log_order() {
    const TASKS: usize = 8;
    const EVENTS_PER_TASK: usize = 500;
    with_store(|store| async move {
        let mut subscription = store.subscribe_all(Position::START).await.expect("subscribe");
        let total = TASKS * EVENTS_PER_TASK;
        let follower = tokio::spawn(async move {
            let mut received = Vec::with_capacity(total);
            while received.len() < total {
                let next = tokio::time::timeout(Duration::from_secs(60), subscription.next()).await;
                received.push(next.expect("subscriber starved").expect("subscription"));
            }
            received
        });

        let shared = stream("shared-1");
        let store = Arc::new(store);
        let mut writers = Vec::new();
        for task in 0..TASKS {
            let store = store.clone();
            let shared = shared.clone();
            writers.push(tokio::spawn(async move {
                let own = stream(&format!("own-{task}"));
                let mut conflicts = 0_u64;
                for n in 0..EVENTS_PER_TASK {
                    if n % 2 == 0 {
                        store.append(&own, ExpectedVersion::Any, vec![event("Own", n as i64)]).await.expect("own");
                        continue;
                    }
                    let new_event = event("Shared", n as i64);
                    loop {
                        let current = store.stream_version(&shared).await.expect("version");
                        let expected = current.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                        match store.append(&shared, expected, vec![new_event.clone()]).await {
                            Ok(_) => break,
                            Err(StoreError::WrongExpectedVersion { .. }) => conflicts += 1,
                            Err(other) => panic!("append failed: {other}"),
                        }
                    }
                }
                conflicts
            }));
        }
        for writer in writers {
            writer.await.expect("writer");
        }
        let received = follower.await.expect("follower");

        let logged = read_everything(&store).await;
        assert_eq!(logged.len(), total);
        let received_positions: Vec<Position> = received.iter().map(|e| e.position).collect();
        let logged_positions: Vec<Position> = logged.iter().map(|e| e.position).collect();
        assert_eq!(received_positions, logged_positions, "the subscriber saw the log's order");
        let unique: HashSet<Uuid> = received.iter().map(|e| e.event_id).collect();
        assert_eq!(unique.len(), total, "every event exactly once");

        let shared_versions: Vec<u64> =
            logged.iter().filter(|e| e.stream == shared).map(|e| e.stream_version).collect();
        assert_eq!(shared_versions, (0..(TASKS * EVENTS_PER_TASK / 2) as u64).collect::<Vec<_>>(), "gapless, in order");
        let report = store.verify(PositionRange::WHOLE_LOG).await.expect("verify");
        assert_eq!((report.verified, report.first_broken), (total as u64, None));
    })
    .await;
}

#[tokio::test]
async fn update_delete_and_truncate_on_the_log_fail() {
    with_store(|store| async move {
        store.append(&stream("application-1"), ExpectedVersion::Any, vec![event("A", 1)]).await.expect("append");
        for statement in [
            "UPDATE events SET event_type = 'Changed'",
            "DELETE FROM events",
            "TRUNCATE events",
            "TRUNCATE events CASCADE",
        ] {
            let refused = sqlx::query(sqlx::AssertSqlSafe(statement)).execute(store.pool()).await;
            let error = refused.expect_err(statement).to_string();
            assert!(error.contains("append-only"), "{statement}: {error}");
        }
        assert_eq!(count_events(&store).await, 1);
    })
    .await;
}

/// Edits a row behind the append-only trigger's back, as only a superuser could.
async fn tamper(store: &PostgresEventStore, statement: &str) {
    let mut connection = store.pool().acquire().await.expect("connection");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET session_replication_role = replica; {statement}; SET session_replication_role = origin;"
    )))
    .execute(&mut *connection)
    .await
    .expect("tamper");
}

#[tokio::test]
async fn verify_names_exactly_the_event_altered_behind_the_triggers_back() {
    with_store(|store| async move {
        for n in 0..6 {
            for name in ["application-1", "application-2"] {
                store.append(&stream(name), ExpectedVersion::Any, vec![event("E", n)]).await.expect("append");
            }
        }
        let clean = store.verify(PositionRange::WHOLE_LOG).await.expect("verify");
        assert_eq!((clean.verified, clean.first_broken), (12, None));

        let target = store.read_stream(&stream("application-2"), Some(3), ReadDirection::Forward, 1).await.expect("r");
        let target = &target[0];
        tamper(
            &store,
            &format!(
                "UPDATE events SET data = jsonb_set(data, '{{amount_cents}}', '999999') WHERE event_id = '{}'",
                target.event_id
            ),
        )
        .await;
        let report = store.verify(PositionRange::WHOLE_LOG).await.expect("verify");
        let broken = report.first_broken.expect("tampering found");
        assert_eq!((broken.position, broken.event_id), (target.position, target.event_id));
        assert_eq!(broken.problem, Tampering::HashMismatch);
        let events_before = read_everything(&store).await.iter().filter(|e| e.position < target.position).count();
        assert_eq!(report.verified, events_before as u64);

        // A range that starts after the altered event verifies clean, anchored on stored hashes.
        let after =
            store.verify(PositionRange { from: Some(Position(target.position.0 + 1)), to: None }).await.expect("v");
        assert_eq!(after.first_broken, None);
    })
    .await;
}

#[tokio::test]
async fn verify_detects_a_removed_event() {
    with_store(|store| async move {
        let s = stream("application-5");
        for n in 0..4 {
            store.append(&s, ExpectedVersion::Any, vec![event("E", n)]).await.expect("append");
        }
        let removed = store.read_stream(&s, Some(1), ReadDirection::Forward, 1).await.expect("r")[0].clone();
        tamper(&store, &format!("DELETE FROM events WHERE event_id = '{}'", removed.event_id)).await;
        let broken = store.verify(PositionRange::WHOLE_LOG).await.expect("verify").first_broken.expect("broken");
        assert_eq!(broken.stream_version, 2);
        assert_eq!(broken.problem, Tampering::VersionGap { expected_version: 1 });

        let last = store.read_stream(&s, None, ReadDirection::Backward, 1).await.expect("r")[0].clone();
        tamper(&store, &format!("DELETE FROM events WHERE stream_id = '{s}' AND stream_version >= 1")).await;
        let broken = store.verify(PositionRange::WHOLE_LOG).await.expect("verify").first_broken.expect("broken");
        assert_eq!((broken.stream.as_str(), broken.position), (s.as_str(), last.position), "{broken:?}");
    })
    .await;
}
