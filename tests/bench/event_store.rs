//! Event store benchmark: the store against PostgreSQL's own limits, in one run, on one
//! database, as ratios (the machine is shared and noisy, so only same-run ratios mean much).
//!
//! Run: `cargo bench --bench event_store` (uses `DATABASE_URL`'s server, default the local
//! one; creates and drops its own database). Writes the table to `docs/BENCHMARKS.md`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aisc_adapters::PostgresEventStore;
use aisc_adapters::database::MIGRATOR;
use aisc_domain::event_store::{EventStore, ExpectedVersion, NewEvent, Position, StreamId};
use futures_util::StreamExt;
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

const WINDOW: Duration = Duration::from_secs(5);
const READ_EVENTS: usize = 1_000_000;
const BENCH_DATABASE: &str = "aisc_bench";

#[derive(Clone, Copy)]
struct Throughput {
    events_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn sample_data(n: u64) -> serde_json::Value {
    json!({
        "application_id": format!("app-{n}"),
        "service_type": "gpu_node_hour_h800",
        "units": 128,
        "rate_cents": 4_250,
        "subsidy_bps": 7_000,
        "subsidy_cents": 380_800,
        "period": "2025-07",
    })
}

fn sample_metadata() -> serde_json::Value {
    json!({ "actor": "bench", "role": "finance_officer", "request_id": Uuid::new_v4().to_string() })
}

fn new_event(n: u64) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "UsageCharged".into(),
        schema_version: 1,
        data: sample_data(n),
        metadata: sample_metadata(),
    }
}

/// Runs `workers` loops of `call` for the window; returns calls/s × `events_per_call`.
async fn measure<F, Fut>(workers: usize, events_per_call: usize, call: F) -> Throughput
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let call = Arc::new(call);
    let started = Instant::now();
    let mut handles = Vec::new();
    for worker in 0..workers {
        let call = call.clone();
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0_u64;
            while started.elapsed() < WINDOW {
                let t = Instant::now();
                call(worker, n).await;
                latencies.push(t.elapsed());
                n += 1;
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for handle in handles {
        latencies.extend(handle.await.expect("worker"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let pick = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)].as_secs_f64() * 1e3;
    Throughput {
        events_per_sec: (latencies.len() * events_per_call) as f64 / elapsed,
        p50_ms: pick(0.50),
        p99_ms: pick(0.99),
    }
}

async fn fresh_database(admin_url: &str) -> PgPool {
    let mut admin = PgConnection::connect(admin_url).await.expect("connect to PostgreSQL");
    for statement in
        [format!("DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)"), format!("CREATE DATABASE {BENCH_DATABASE}")]
    {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&mut admin).await.expect("create bench database");
    }
    let options = admin_url.parse::<PgConnectOptions>().expect("url").database(BENCH_DATABASE);
    let pool = PgPoolOptions::new().max_connections(40).connect_with(options).await.expect("connect");
    MIGRATOR.run(&pool).await.expect("migrate");
    sqlx::raw_sql(
        "CREATE TABLE raw_events (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES); \
         CREATE SEQUENCE raw_positions;",
    )
    .execute(&pool)
    .await
    .expect("raw table");
    pool
}

async fn raw_insert(pool: PgPool, workers: usize) -> Throughput {
    measure(workers, 1, move |worker, n| {
        let pool = pool.clone();
        async move {
            sqlx::query(
                "INSERT INTO raw_events (global_position, stream_id, stream_version, event_id, event_type, \
                 schema_version, data, metadata, recorded_at, hash) \
                 VALUES (nextval('raw_positions'), $1, $2, $3, 'UsageCharged', 1, $4, $5, now(), $6)",
            )
            .bind(format!("raw-{workers}-{worker}"))
            .bind(n as i64)
            .bind(Uuid::new_v4())
            .bind(sample_data(n))
            .bind(sample_metadata())
            .bind(vec![0_u8; 32])
            .execute(&pool)
            .await
            .expect("raw insert");
        }
    })
    .await
}

async fn store_append(store: PostgresEventStore, workers: usize, batch: usize) -> Throughput {
    measure(workers, batch, move |worker, n| {
        let store = store.clone();
        async move {
            // Distinct streams: each call opens a new one, as submissions of new applications do.
            let stream = StreamId::parse(format!("bench{workers}x{batch}-{worker}-{n}")).expect("stream");
            let events = (0..batch as u64).map(new_event).collect();
            store.append(&stream, ExpectedVersion::NoStream, events).await.expect("append");
        }
    })
    .await
}

/// Fills the log to `READ_EVENTS` events through the store, 1,000 events per append.
async fn fill_log(store: &PostgresEventStore, pool: &PgPool) -> f64 {
    let have: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(pool).await.expect("count");
    let missing = READ_EVENTS.saturating_sub(have as usize);
    let started = Instant::now();
    let mut written = 0;
    let mut chunk = 0;
    while written < missing {
        let size = (missing - written).min(1_000);
        let stream = StreamId::parse(format!("fill-{chunk}")).expect("stream");
        store
            .append(&stream, ExpectedVersion::NoStream, (0..size as u64).map(new_event).collect())
            .await
            .expect("fill");
        written += size;
        chunk += 1;
    }
    missing as f64 / started.elapsed().as_secs_f64()
}

async fn read_all_rate(store: &PostgresEventStore) -> (f64, usize) {
    let started = Instant::now();
    let mut after = Position::START;
    let mut count = 0;
    loop {
        let slice = store.read_all(after, 10_000).await.expect("read_all");
        let Some(last) = slice.events.last() else {
            break;
        };
        after = last.position;
        count += slice.events.len();
    }
    (count as f64 / started.elapsed().as_secs_f64(), count)
}

async fn copy_out_rate(pool: &PgPool, expected: usize) -> f64 {
    let mut connection = pool.acquire().await.expect("connection");
    let started = Instant::now();
    let mut stream = connection
        .copy_out_raw(
            "COPY (SELECT global_position, stream_id, stream_version, event_id, event_type, schema_version, \
             data, metadata, recorded_at FROM events ORDER BY global_position) TO STDOUT",
        )
        .await
        .expect("copy out");
    let mut lines = 0;
    while let Some(chunk) = stream.next().await {
        lines += chunk.expect("chunk").iter().filter(|b| **b == b'\n').count();
    }
    assert_eq!(lines, expected, "COPY saw the same rows");
    lines as f64 / started.elapsed().as_secs_f64()
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines().next().and_then(|line| line.split_whitespace().nth(1)).and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!("{cores} cores, {memory_gib:.0} GiB")
}

#[tokio::main]
async fn main() {
    let admin_url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    let pool = fresh_database(&admin_url).await;
    let store = PostgresEventStore::new(pool.clone());
    let server: String = sqlx::query_scalar("SHOW server_version").fetch_one(&pool).await.expect("version");

    let mut rows = Vec::new();
    let mut ratios = Vec::new();
    for workers in [1, 8, 32] {
        let raw = raw_insert(pool.clone(), workers).await;
        let single = store_append(store.clone(), workers, 1).await;
        let batch = store_append(store.clone(), workers, 10).await;
        eprintln!(
            "{workers:>2} workers: raw {:.0}/s, append {:.0}/s, append x10 {:.0}/s",
            raw.events_per_sec, single.events_per_sec, batch.events_per_sec
        );
        rows.push(format!(
            "| raw single-row INSERT transactions | {workers} | {:.0} | {:.2} | {:.2} | — |",
            raw.events_per_sec, raw.p50_ms, raw.p99_ms
        ));
        rows.push(format!(
            "| store `append`, 1 event per call, distinct streams | {workers} | {:.0} | {:.2} | {:.2} | {:.2} |",
            single.events_per_sec,
            single.p50_ms,
            single.p99_ms,
            single.events_per_sec / raw.events_per_sec
        ));
        rows.push(format!(
            "| store `append`, 10 events per call | {workers} | {:.0} | {:.2} | {:.2} | {:.2} |",
            batch.events_per_sec,
            batch.p50_ms,
            batch.p99_ms,
            batch.events_per_sec / raw.events_per_sec
        ));
        if workers == 8 {
            ratios.push((
                "append at 8 tasks / raw INSERT at 8 connections",
                single.events_per_sec / raw.events_per_sec,
                0.80,
            ));
        }
    }

    let fill_rate = fill_log(&store, &pool).await;
    sqlx::query("VACUUM ANALYZE events").execute(&pool).await.expect("vacuum");
    let total = count_bench_events(&pool).await;
    // Warm the cache once so both readers see the same buffers.
    let _ = copy_out_rate(&pool, total).await;
    let copy_rate = copy_out_rate(&pool, total).await;
    let (read_rate, read_count) = read_all_rate(&store).await;
    assert_eq!(read_count, total, "read_all returned every event");
    rows.push(format!("| raw `COPY (SELECT … ORDER BY global_position) TO STDOUT` of {total} events | 1 | {copy_rate:.0} | — | — | — |"));
    rows.push(format!(
        "| store `read_all`, pages of 10,000, {total} events | 1 | {read_rate:.0} | — | — | {:.2} |",
        read_rate / copy_rate
    ));
    rows.push(format!("| (log filled through `append`, 1,000 events per call) | 1 | {fill_rate:.0} | — | — | — |"));
    ratios.push(("read_all / raw COPY TO", read_rate / copy_rate, 0.50));

    let mut report = String::new();
    let _ = writeln!(report, "## Event store (issue 2)\n");
    let _ = writeln!(
        report,
        "Command: `cargo bench --bench event_store` · machine: {} · PostgreSQL {server} · window {} s per figure\n",
        machine(),
        WINDOW.as_secs()
    );
    let _ = writeln!(report, "| measurement | concurrency | events/s | p50 ms | p99 ms | ratio store/raw |");
    let _ = writeln!(report, "|---|---:|---:|---:|---:|---:|");
    for row in &rows {
        let _ = writeln!(report, "{row}");
    }
    let _ = writeln!(report, "\n| target | measured | target | met |");
    let _ = writeln!(report, "|---|---:|---:|---|");
    for (name, ratio, target) in &ratios {
        let _ = writeln!(
            report,
            "| {name} | {:.0} % | ≥ {:.0} % | {} |",
            ratio * 100.0,
            target * 100.0,
            if ratio >= target { "yes" } else { "no" }
        );
    }
    println!("{report}");
    write_report(&report);

    pool.close().await;
    if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)")))
            .execute(&mut admin)
            .await;
    }
}

async fn count_bench_events(pool: &PgPool) -> usize {
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(pool).await.expect("count");
    count as usize
}

/// Replaces this benchmark's section of docs/BENCHMARKS.md, keeping the others.
fn write_report(section: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/BENCHMARKS.md");
    let existing = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n\nFigures are ratios measured in one run on one database; absolute numbers vary with the shared machine.\n".to_string());
    let heading = "## Event store (issue 2)";
    let mut kept = String::new();
    let mut skipping = false;
    for line in existing.lines() {
        if line.starts_with("## ") {
            skipping = line == heading;
        }
        if !skipping {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    let updated = format!("{}\n\n{section}", kept.trim_end());
    std::fs::write(&path, updated).expect("write docs/BENCHMARKS.md");
}
