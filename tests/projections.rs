//! The projection runner on a real database: live equals rebuilt, crashes neither lose nor
//! double-count, rebuilds keep queries answered, one leader at a time, read-your-writes.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aisc_adapters::PostgresEventStore;
use aisc_domain::event_store::{EventStore, ExpectedVersion, NewEvent, Position, RecordedEvent, StreamId};
use aisc_projections::audit_trail::{self, AuditQuery, AuditTrail};
use aisc_projections::runner::wait_for_position;
use aisc_projections::{Interest, Projection, ProjectionError, ProjectionRunner, ReadModelTables};
use async_trait::async_trait;
use chrono::NaiveDate;
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use support::TestDatabase;
use tokio::sync::watch;
use uuid::Uuid;

/// Counts events per type, by incrementing: an event applied twice would show.
struct TypeCounts {
    version: i32,
    /// Fails the batch after its changes when this many batches remain (0: never).
    fail_after_batches: AtomicUsize,
}

static TYPE_COUNT_TABLES: ReadModelTables = ReadModelTables {
    names: &["type_counts"],
    create: "CREATE TABLE type_counts (event_type text PRIMARY KEY, applied bigint NOT NULL)",
    indexes: "CREATE INDEX type_counts_by_count ON type_counts (applied)",
};

#[async_trait]
impl Projection for TypeCounts {
    fn name(&self) -> &'static str {
        "type_counts"
    }
    fn version(&self) -> i32 {
        self.version
    }
    fn tables(&self) -> &'static ReadModelTables {
        &TYPE_COUNT_TABLES
    }
    fn interest(&self, event_type: &str) -> Option<Interest> {
        Some(if event_type == "Ignored" { Interest::Ignores } else { Interest::Handles })
    }
    async fn apply(&self, connection: &mut PgConnection, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
        for event in events {
            sqlx::query(
                "INSERT INTO type_counts VALUES ($1, 1) \
                 ON CONFLICT (event_type) DO UPDATE SET applied = type_counts.applied + 1",
            )
            .bind(&event.event_type)
            .execute(&mut *connection)
            .await?;
        }
        if self.fail_after_batches.load(Ordering::SeqCst) == 1 {
            self.fail_after_batches.store(0, Ordering::SeqCst);
            return Err(ProjectionError::BadEvent {
                projection: "type_counts",
                position: 0,
                reason: "injected crash".into(),
            });
        }
        let _ = self
            .fail_after_batches
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1).filter(|n| *n > 0));
        Ok(())
    }
}

fn type_counts(version: i32) -> Arc<TypeCounts> {
    Arc::new(TypeCounts { version, fail_after_batches: AtomicUsize::new(0) })
}

fn event(kind: &str, actor: &str) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: kind.to_string(),
        schema_version: 1,
        data: data_of(kind),
        metadata: json!({ "actor": actor, "role": "intake_officer", "request_id": format!("req-{}", Uuid::new_v4()) }),
    }
}

/// Stored data of each kind, in its version 1 shape: the audit trail decodes the scheme's
/// events for their business date, so their data must be what the domain wrote.
fn data_of(kind: &str) -> serde_json::Value {
    match kind {
        // Takes effect on 2025-03-31.
        "ApplicationWithdrawn" => json!({"reason": "applicant withdrew", "withdrawn_on": "2025-03-31"}),
        // On 2024-07-03.
        "EligibilityConfirmed" => json!({"checked_by": "intake-demo", "checked_on": "2024-07-03"}),
        // On the first day of its month, 2024-11-01.
        "UsageCharged" => json!({
            "gross": 994_500, "units": 234, "period": "2024-11", "subsidy": 497_250,
            "usage_id": "demo2024-000000-2024-11", "ceiling_left": 3_533_875,
            "service_type": "gpu_node_hour_h800", "subsidy_rate": 5_000, "rate_per_unit": 4_250,
            "financial_year": "2024-25", "disbursed_total": 2_887_875
        }),
        // Not an event of the scheme: no business date.
        _ => json!({}),
    }
}

const KINDS: [&str; 4] = ["ApplicationWithdrawn", "EligibilityConfirmed", "UsageCharged", "Ignored"];

/// Appends `count` events over 8 concurrent writers and 40 streams.
async fn append_many(store: &PostgresEventStore, count: usize) {
    let mut writers = Vec::new();
    for writer in 0..8 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for n in (writer..count).step_by(8) {
                let stream = StreamId::parse(format!("application-{}", n % 40)).expect("stream");
                let batch = vec![event(KINDS[n % KINDS.len()], &format!("staff-{}", n % 3))];
                store.append(&stream, ExpectedVersion::Any, batch).await.expect("append");
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
}

async fn expected_counts(pool: &PgPool) -> Vec<(String, i64)> {
    sqlx::query_as("SELECT event_type, count(*) FROM events WHERE event_type <> 'Ignored' GROUP BY 1 ORDER BY 1")
        .fetch_all(pool)
        .await
        .expect("counts")
}

async fn projected_counts(pool: &PgPool) -> Vec<(String, i64)> {
    sqlx::query_as("SELECT event_type, applied FROM read_models.type_counts ORDER BY 1")
        .fetch_all(pool)
        .await
        .expect("projected")
}

async fn head(pool: &PgPool) -> Position {
    let head: i64 =
        sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM events").fetch_one(pool).await.expect("head");
    Position(head as u64)
}

async fn wait_caught_up(pool: &PgPool, name: &str) {
    let target = head(pool).await;
    assert!(
        wait_for_position(pool, name, target, Duration::from_secs(60)).await.expect("wait"),
        "{name} did not catch up"
    );
}

struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn start(runner: ProjectionRunner) -> Running {
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(async move { runner.run(stopped).await });
    Running { stop, task }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(10), self.task).await.expect("runner stops").expect("runner task");
    }
}

fn runner(database: &TestDatabase, store: &PostgresEventStore, projection: Arc<dyn Projection>) -> ProjectionRunner {
    let store: Arc<dyn EventStore> = Arc::new(store.clone());
    ProjectionRunner::new(database.pool.clone(), store, projection)
        .with_batch_size(100)
        .with_standby_poll(Duration::from_millis(50))
}

async fn setup() -> (TestDatabase, PostgresEventStore) {
    let database = TestDatabase::create_with_pool_size(30).await;
    let store = PostgresEventStore::new(database.pool.clone()).with_subscription_poll(Duration::from_millis(100));
    (database, store)
}

type AuditRow = (i64, Uuid, String, i64, String, Option<String>, Option<String>, Option<String>, Option<NaiveDate>);

async fn audit_rows(pool: &PgPool) -> Vec<AuditRow> {
    sqlx::query_as(
        "SELECT position, event_id, stream_id, stream_version, event_type, actor, role, request_id, effective_on \
         FROM read_models.audit_trail ORDER BY position",
    )
    .fetch_all(pool)
    .await
    .expect("audit rows")
}

#[tokio::test]
async fn read_models_built_live_equal_read_models_rebuilt_from_scratch() {
    let (database, store) = setup().await;
    append_many(&store, 1_000).await;
    let audit = start(runner(&database, &store, Arc::new(AuditTrail)));
    let counts = start(runner(&database, &store, type_counts(1)));
    // Events keep arriving while the runners follow live.
    append_many(&store, 3_000).await;
    wait_caught_up(&database.pool, audit_trail::NAME).await;
    wait_caught_up(&database.pool, "type_counts").await;
    audit.stop().await;
    counts.stop().await;

    let live_audit = audit_rows(&database.pool).await;
    let live_counts = projected_counts(&database.pool).await;
    assert_eq!(live_audit.len(), 4_000);
    assert_eq!(live_counts, expected_counts(&database.pool).await);

    runner(&database, &store, Arc::new(AuditTrail)).rebuild(Duration::from_secs(60)).await.expect("rebuild audit");
    runner(&database, &store, type_counts(1)).rebuild(Duration::from_secs(60)).await.expect("rebuild counts");
    assert_eq!(audit_rows(&database.pool).await, live_audit);
    assert_eq!(projected_counts(&database.pool).await, live_counts);
    database.drop_database().await;
}

#[tokio::test]
async fn a_runner_killed_mid_batch_neither_loses_nor_double_counts() {
    let (database, store) = setup().await;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move { append_many(&store, 3_000).await })
    };
    // Kill the runner at arbitrary moments while events arrive, then fail one batch after it
    // wrote its changes: each time, the transaction with the checkpoint is lost whole.
    for kill_after_ms in [30_u64, 70, 110, 45, 90] {
        let running = start(runner(&database, &store, type_counts(1)));
        tokio::time::sleep(Duration::from_millis(kill_after_ms)).await;
        running.task.abort();
        let _ = running.task.await;
    }
    writer.await.expect("writer");
    let failing = type_counts(1);
    failing.fail_after_batches.store(3, Ordering::SeqCst);
    let running = start(runner(&database, &store, failing.clone()));
    wait_caught_up(&database.pool, "type_counts").await;
    running.stop().await;
    assert_eq!(failing.fail_after_batches.load(Ordering::SeqCst), 0, "the injected failure happened");
    assert_eq!(projected_counts(&database.pool).await, expected_counts(&database.pool).await);
    database.drop_database().await;
}

#[tokio::test]
async fn queries_get_complete_answers_while_a_rebuild_runs() {
    let (database, store) = setup().await;
    append_many(&store, 4_000).await;
    let first = runner(&database, &store, Arc::new(AuditTrail));
    first.catch_up().await.expect("catch up");

    let stop_queries = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let querying = {
        let pool = database.pool.clone();
        let stop = stop_queries.clone();
        tokio::spawn(async move {
            let mut answered = 0;
            while !stop.load(Ordering::SeqCst) {
                let total: i64 = sqlx::query_scalar("SELECT count(*) FROM read_models.audit_trail")
                    .fetch_one(&pool)
                    .await
                    .expect("query during rebuild");
                assert_eq!(total, 4_000, "a complete answer, from the old tables or the new");
                let page = audit_trail::query(
                    &pool,
                    &AuditQuery { actor: Some("staff-1".into()), limit: 50, ..AuditQuery::default() },
                )
                .await
                .expect("page during rebuild");
                assert_eq!(page.len(), 50);
                answered += 1;
            }
            answered
        })
    };
    runner(&database, &store, Arc::new(AuditTrail)).rebuild(Duration::from_secs(60)).await.expect("rebuild");
    stop_queries.store(true, Ordering::SeqCst);
    let answered = querying.await.expect("queries");
    assert!(answered > 0);
    database.drop_database().await;
}

#[tokio::test]
async fn only_one_runner_projects_and_a_standby_takes_over_when_it_stops() {
    let (database, store) = setup().await;
    append_many(&store, 200).await;
    let first = start(runner(&database, &store, type_counts(1)));
    wait_caught_up(&database.pool, "type_counts").await;
    let second = start(runner(&database, &store, type_counts(1)));
    append_many(&store, 200).await;
    wait_caught_up(&database.pool, "type_counts").await;
    let holders: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(&database.pool)
    .await
    .expect("locks");
    assert_eq!(holders, 1, "one leader");
    // A third instance cannot run the projection by hand either.
    let busy = runner(&database, &store, type_counts(1)).catch_up().await;
    assert!(matches!(busy, Err(ProjectionError::Busy("type_counts"))), "{busy:?}");

    first.stop().await;
    append_many(&store, 200).await;
    wait_caught_up(&database.pool, "type_counts").await;
    assert_eq!(projected_counts(&database.pool).await, expected_counts(&database.pool).await, "the standby took over");
    second.stop().await;
    database.drop_database().await;
}

#[tokio::test]
async fn a_query_waits_for_the_position_its_command_wrote() {
    let (database, store) = setup().await;
    let running = start(runner(&database, &store, Arc::new(AuditTrail)));
    for n in 0..20 {
        let stream = StreamId::parse(format!("application-{n}")).expect("stream");
        let written = store
            .append(&stream, ExpectedVersion::Any, vec![event("ApplicationWithdrawn", "reader")])
            .await
            .expect("append");
        assert!(
            wait_for_position(&database.pool, audit_trail::NAME, written.position, Duration::from_secs(5))
                .await
                .expect("wait")
        );
        let seen = audit_trail::query(
            &database.pool,
            &AuditQuery { stream_id: Some(stream.to_string()), limit: 10, ..AuditQuery::default() },
        )
        .await
        .expect("query");
        assert_eq!(seen.len(), 1, "the query sees its own write at once");
        assert_eq!(seen[0].position, written.position.0);
        assert_eq!(seen[0].actor.as_deref(), Some("reader"));
    }
    running.stop().await;
    // With no runner, the wait is bounded and says so.
    let written = store
        .append(&StreamId::parse("application-x").expect("s"), ExpectedVersion::Any, vec![event("X", "r")])
        .await
        .expect("append");
    let started = Instant::now();
    assert!(
        !wait_for_position(&database.pool, audit_trail::NAME, written.position, Duration::from_millis(300))
            .await
            .expect("wait")
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    database.drop_database().await;
}

#[tokio::test]
async fn a_projection_whose_version_changed_is_rebuilt_at_start_up() {
    let (database, store) = setup().await;
    append_many(&store, 300).await;
    runner(&database, &store, type_counts(1)).catch_up().await.expect("v1");
    // Damage the read model as a changed projection would find it wrong, then bump the version.
    sqlx::query("UPDATE read_models.type_counts SET applied = applied * 10")
        .execute(&database.pool)
        .await
        .expect("damage");
    let status = runner(&database, &store, type_counts(2)).status().await.expect("status");
    assert_eq!((status.version, status.built_version), (2, Some(1)));
    runner(&database, &store, type_counts(2)).catch_up().await.expect("v2");
    assert_eq!(projected_counts(&database.pool).await, expected_counts(&database.pool).await);
    let status = runner(&database, &store, type_counts(2)).status().await.expect("status");
    assert_eq!((status.built_version, status.lag_events, status.position), (Some(2), 0, status.head));
    database.drop_database().await;
}

#[tokio::test]
async fn the_audit_trail_filters_by_stream_actor_type_and_time_and_pages_by_position() {
    let (database, store) = setup().await;
    append_many(&store, 120).await;
    runner(&database, &store, Arc::new(AuditTrail)).catch_up().await.expect("catch up");
    let pool = &database.pool;
    let all = audit_trail::query(pool, &AuditQuery { limit: 1_000, ..AuditQuery::default() }).await.expect("all");
    assert_eq!(all.len(), 120);
    let by_actor =
        audit_trail::query(pool, &AuditQuery { actor: Some("staff-2".into()), limit: 1_000, ..AuditQuery::default() })
            .await
            .expect("actor");
    assert_eq!(by_actor.len(), 40);
    assert!(
        by_actor.iter().all(|e| e.actor.as_deref() == Some("staff-2") && e.role.as_deref() == Some("intake_officer"))
    );
    let by_type = audit_trail::query(
        pool,
        &AuditQuery { event_type: Some("UsageCharged".into()), limit: 1_000, ..AuditQuery::default() },
    )
    .await
    .expect("type");
    assert_eq!(by_type.len(), 30);
    let by_stream = audit_trail::query(
        pool,
        &AuditQuery { stream_id: Some("application-7".into()), limit: 1_000, ..AuditQuery::default() },
    )
    .await
    .expect("stream");
    assert_eq!(by_stream.len(), 3);
    assert!(by_stream.windows(2).all(|w| w[0].stream_version < w[1].stream_version));

    let first_page =
        audit_trail::query(pool, &AuditQuery { limit: 50, ..AuditQuery::default() }).await.expect("page 1");
    let second_page = audit_trail::query(
        pool,
        &AuditQuery { limit: 50, after_position: first_page[49].position, ..AuditQuery::default() },
    )
    .await
    .expect("page 2");
    assert_eq!(first_page.iter().chain(&second_page).cloned().collect::<Vec<_>>(), all[..100].to_vec());

    let middle = all[60].recorded_at;
    let before =
        audit_trail::query(pool, &AuditQuery { recorded_before: Some(middle), limit: 1_000, ..AuditQuery::default() })
            .await
            .expect("before");
    let from =
        audit_trail::query(pool, &AuditQuery { recorded_from: Some(middle), limit: 1_000, ..AuditQuery::default() })
            .await
            .expect("from");
    assert_eq!(before.len() + from.len(), 120);
    assert!(before.iter().all(|e| e.recorded_at < middle) && from.iter().all(|e| e.recorded_at >= middle));

    // By business date, inclusive at both ends; an event outside the scheme has none and
    // matches no date filter.
    let date = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).expect("date");
    let effective = async |from: Option<NaiveDate>, until: Option<NaiveDate>| {
        audit_trail::query(
            pool,
            &AuditQuery { effective_from: from, effective_until: until, limit: 1_000, ..AuditQuery::default() },
        )
        .await
    };
    let until_2024 = effective(None, Some(date(2024, 12, 31))).await.expect("until 2024");
    assert_eq!(until_2024.len(), 60, "eligibility on 2024-07-03 and November's usage");
    assert!(until_2024.iter().all(|e| matches!(e.event_type.as_str(), "EligibilityConfirmed" | "UsageCharged")));
    let from_2025 = effective(Some(date(2025, 1, 1)), None).await.expect("from 2025");
    assert!(from_2025.len() == 30 && from_2025.iter().all(|e| e.event_type == "ApplicationWithdrawn"));
    let november = effective(Some(date(2024, 11, 1)), Some(date(2024, 11, 1))).await.expect("one day");
    assert!(november.len() == 30 && november.iter().all(|e| e.effective_on == Some(date(2024, 11, 1))));
    assert!(all.iter().filter(|e| e.event_type == "Ignored").all(|e| e.effective_on.is_none()));
    database.drop_database().await;
}

/// Applications only through `apply`: the default rebuild, without the projection's bulk load.
struct ApplyOnly(Arc<dyn Projection>);

#[async_trait]
impl Projection for ApplyOnly {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn version(&self) -> i32 {
        self.0.version()
    }
    fn tables(&self) -> &'static ReadModelTables {
        self.0.tables()
    }
    fn interest(&self, event_type: &str) -> Option<Interest> {
        self.0.interest(event_type)
    }
    async fn apply(&self, connection: &mut PgConnection, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
        self.0.apply(connection, events).await
    }
}

/// Every row of every read-model table of `projections`, as JSON text, table by table.
async fn every_row(pool: &PgPool, projections: &[Arc<dyn Projection>]) -> Vec<(String, Vec<String>)> {
    let mut tables = Vec::new();
    for projection in projections {
        for table in projection.tables().names {
            let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT row_to_json(t)::text AS row FROM read_models.{table} t ORDER BY row"
            )))
            .fetch_all(pool)
            .await
            .expect("rows");
            tables.push((table.to_string(), rows));
        }
    }
    tables
}

#[tokio::test]
async fn rebuilding_every_projection_in_one_pass_equals_applying_the_log_in_live_batches() {
    use support::scheme::scheme;

    let (database, store) = setup().await;
    let projections: Vec<Arc<dyn Projection>> = aisc_projections::all();
    let running: Vec<Running> =
        projections.iter().map(|projection| start(runner(&database, &store, projection.clone()))).collect();
    // A seeded scheme, applied live in batches as it is written (reversals of charges are
    // compared in tests/read_models.rs: the seed completes every project, so none is left to
    // reverse here).
    let scheme = scheme(&database).await;
    aisc_domain::demo::seed(&scheme, 150, 3, 7).await.expect("seed");
    for projection in &projections {
        wait_caught_up(&database.pool, projection.name()).await;
    }
    for running in running {
        running.stop().await;
    }
    let live = every_row(&database.pool, &projections).await;
    assert!(live.iter().all(|(_, rows)| !rows.is_empty()), "every table has rows");

    let runners: Vec<ProjectionRunner> =
        projections.iter().map(|projection| runner(&database, &store, projection.clone())).collect();
    let positions = ProjectionRunner::rebuild_all(&runners, Duration::from_secs(60)).await.expect("rebuild all");
    assert!(positions.iter().all(|position| *position == positions[0]) && positions[0] == head(&database.pool).await);
    let rebuilt = every_row(&database.pool, &projections).await;
    for ((table, live_rows), (_, rebuilt_rows)) in live.iter().zip(&rebuilt) {
        assert_eq!(live_rows.len(), rebuilt_rows.len(), "{table}: as many rows");
        for (live_row, rebuilt_row) in live_rows.iter().zip(rebuilt_rows) {
            assert_eq!(live_row, rebuilt_row, "{table}: live equals rebuilt");
        }
    }

    // The default rebuild, through `apply` in pages, agrees too.
    for projection in &projections {
        let apply_only: Arc<dyn Projection> = Arc::new(ApplyOnly(projection.clone()));
        runner(&database, &store, apply_only).rebuild(Duration::from_secs(60)).await.expect("rebuild with apply");
    }
    assert_eq!(every_row(&database.pool, &projections).await, live, "rebuilt with apply equals live");
    database.drop_database().await;
}
