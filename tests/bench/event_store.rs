//! Event store benchmark: the store against PostgreSQL's own limits, in one run, on one
//! database, as ratios (the machine is shared and noisy, so only same-run ratios mean much).
//!
//! Run: `cargo bench --bench event_store` (uses `DATABASE_URL`'s server, default the local
//! one; creates and drops its own database). Writes the table to `docs/BENCHMARKS.md`.

mod common;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use aisc_adapters::PostgresEventStore;
use aisc_domain::event_store::{EventStore, ExpectedVersion, NewEvent, Position, StreamAppend, StreamId};
use common::{Throughput, machine, measure, sample_data, sample_metadata};
use futures_util::StreamExt;
use sqlx::PgPool;
use uuid::Uuid;

const WINDOW: Duration = Duration::from_secs(5);
const READ_EVENTS: usize = 1_000_000;
const BENCH_DATABASE: &str = "aisc_bench";
/// The bulk usage import's shape: one append of about 2,000 events over about 256 streams.
const BULK_EVENTS: usize = 2_000;
const BULK_STREAMS: usize = 256;

fn new_event(n: u64) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "UsageCharged".into(),
        schema_version: 1,
        data: sample_data(n),
        metadata: sample_metadata(),
    }
}

async fn raw_insert(pool: PgPool, workers: usize) -> Throughput {
    common::raw_insert(WINDOW, pool, workers).await
}

async fn store_append(store: PostgresEventStore, workers: usize, batch: usize) -> Throughput {
    measure(WINDOW, workers, batch, move |worker, n| {
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

/// One append of `BULK_EVENTS` events over `BULK_STREAMS` streams per call. Each worker appends
/// to its own streams again and again, as an import run does: the first call creates them, the
/// later ones move their heads (expected version `Any`, so replays are looked for too).
async fn store_append_bulk(store: PostgresEventStore, workers: usize) -> Throughput {
    measure(WINDOW, workers, BULK_EVENTS, move |worker, n| {
        let store = store.clone();
        async move {
            let appends = (0..BULK_STREAMS)
                .map(|s| {
                    let count = BULK_EVENTS / BULK_STREAMS + usize::from(s < BULK_EVENTS % BULK_STREAMS);
                    StreamAppend {
                        stream: StreamId::parse(format!("bulk{workers}-{worker}-{s}")).expect("stream"),
                        expected: ExpectedVersion::Any,
                        events: (0..count as u64).map(|e| new_event(n * 8 + e)).collect(),
                    }
                })
                .collect();
            store.append_multi(appends).await.expect("append_multi");
        }
    })
    .await
}

/// The yardstick of the bulk append: the same rows, `BULK_EVENTS` per statement, as one plain
/// multi-row INSERT (from arrays, as the store sends them) into the log-shaped table.
async fn raw_insert_bulk(pool: PgPool, workers: usize) -> Throughput {
    measure(WINDOW, workers, BULK_EVENTS, move |worker, n| {
        let pool = pool.clone();
        async move {
            let first = n as usize * BULK_EVENTS;
            let streams: Vec<String> =
                (0..BULK_EVENTS).map(|i| format!("raw-bulk{workers}-{worker}-{}", i % BULK_STREAMS)).collect();
            let versions: Vec<i64> = (first..first + BULK_EVENTS).map(|v| v as i64).collect();
            let ids: Vec<Uuid> = (0..BULK_EVENTS).map(|_| Uuid::new_v4()).collect();
            let data: Vec<serde_json::Value> = (first..first + BULK_EVENTS).map(|i| sample_data(i as u64)).collect();
            let metadata: Vec<serde_json::Value> = (0..BULK_EVENTS).map(|_| sample_metadata()).collect();
            let hashes: Vec<Vec<u8>> = vec![vec![0_u8; 32]; BULK_EVENTS];
            sqlx::query(
                "INSERT INTO raw_events (global_position, stream_id, stream_version, event_id, event_type, \
                 schema_version, data, metadata, recorded_at, hash) \
                 SELECT nextval('raw_positions'), u.stream_id, u.version, u.event_id, 'UsageCharged', 1, u.data, \
                        u.metadata, now(), u.hash \
                   FROM unnest($1::text[], $2::bigint[], $3::uuid[], $4::jsonb[], $5::jsonb[], $6::bytea[]) \
                        AS u(stream_id, version, event_id, data, metadata, hash)",
            )
            .bind(streams)
            .bind(versions)
            .bind(ids)
            .bind(data)
            .bind(metadata)
            .bind(hashes)
            .execute(&pool)
            .await
            .expect("raw bulk insert");
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

#[tokio::main]
async fn main() {
    let admin_url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    let (pool, _) = common::fresh_database(&admin_url, BENCH_DATABASE).await;
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
            raw.per_sec, single.per_sec, batch.per_sec
        );
        rows.push(format!(
            "| raw single-row INSERT transactions | {workers} | {:.0} | {:.2} | {:.2} | — |",
            raw.per_sec, raw.p50_ms, raw.p99_ms
        ));
        rows.push(format!(
            "| store `append`, 1 event per call, distinct streams | {workers} | {:.0} | {:.2} | {:.2} | {:.2} |",
            single.per_sec,
            single.p50_ms,
            single.p99_ms,
            single.per_sec / raw.per_sec
        ));
        rows.push(format!(
            "| store `append`, 10 events per call | {workers} | {:.0} | {:.2} | {:.2} | {:.2} |",
            batch.per_sec,
            batch.p50_ms,
            batch.p99_ms,
            batch.per_sec / raw.per_sec
        ));
        if workers == 8 {
            ratios.push(("append at 8 tasks / raw INSERT at 8 connections", single.per_sec / raw.per_sec, 0.80));
        }
    }

    for workers in [1, 4] {
        let raw = raw_insert_bulk(pool.clone(), workers).await;
        let bulk = store_append_bulk(store.clone(), workers).await;
        eprintln!(
            "{workers:>2} workers: raw bulk INSERT {:.0}/s, append_multi {BULK_EVENTS} events / {BULK_STREAMS} streams {:.0}/s",
            raw.per_sec, bulk.per_sec
        );
        rows.push(format!(
            "| raw multi-row INSERT (from arrays), 2,000 rows per statement | {workers} | {:.0} | {:.2} | {:.2} | — |",
            raw.per_sec, raw.p50_ms, raw.p99_ms
        ));
        rows.push(format!(
            "| store `append_multi`, 2,000 events over 256 streams per call | {workers} | {:.0} | {:.2} | {:.2} | {:.2} |",
            bulk.per_sec,
            bulk.p50_ms,
            bulk.p99_ms,
            bulk.per_sec / raw.per_sec
        ));
        if workers == 1 {
            ratios.push((
                "append_multi of 2,000 events / 256 streams / raw multi-row INSERT",
                bulk.per_sec / raw.per_sec,
                0.50,
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
    common::write_section("## Event store (issue 2)", &report);

    common::drop_database(&admin_url, pool, BENCH_DATABASE).await;
}

async fn count_bench_events(pool: &PgPool) -> usize {
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(pool).await.expect("count");
    count as usize
}
