//! What both benchmarks share: throughput and latency over a time window, the machine's
//! description, the raw-INSERT yardstick, and writing a section of docs/BENCHMARKS.md.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use aisc_adapters::database::MIGRATOR;
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

#[derive(Clone, Copy, Debug)]
pub struct Throughput {
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub calls: usize,
}

/// The `q` quantile of sorted latencies, in milliseconds.
pub fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)].as_secs_f64() * 1e3
}

/// Runs `workers` loops of `call` for `window`; returns calls/s × `units_per_call`.
pub async fn measure<F, Fut>(window: Duration, workers: usize, units_per_call: usize, call: F) -> Throughput
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
            while started.elapsed() < window {
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
    Throughput {
        per_sec: (latencies.len() * units_per_call) as f64 / elapsed,
        p50_ms: quantile_ms(&latencies, 0.50),
        p99_ms: quantile_ms(&latencies, 0.99),
        calls: latencies.len(),
    }
}

pub fn sample_data(n: u64) -> serde_json::Value {
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

pub fn sample_metadata() -> serde_json::Value {
    json!({ "actor": "bench", "role": "finance_officer", "request_id": Uuid::new_v4().to_string() })
}

/// A table shaped like the log, without its functions and triggers: the yardstick.
pub async fn create_raw_table(pool: &PgPool) {
    sqlx::raw_sql(
        "CREATE TABLE raw_events (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES); \
         CREATE SEQUENCE raw_positions;",
    )
    .execute(pool)
    .await
    .expect("raw table");
}

/// Single-row INSERT transactions into the log-shaped table from `workers` connections.
pub async fn raw_insert(window: Duration, pool: PgPool, workers: usize) -> Throughput {
    measure(window, workers, 1, move |worker, n| {
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

pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines().next().and_then(|line| line.split_whitespace().nth(1)).and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!("{cores} cores, {memory_gib:.0} GiB")
}

/// Replaces the section under `heading` in docs/BENCHMARKS.md, keeping the others.
pub fn write_section(heading: &str, section: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/BENCHMARKS.md");
    let existing = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n\nFigures are ratios measured in one run on one database; absolute numbers vary with the shared machine.\n".to_string());
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

/// A process's peak resident memory so far (`VmHWM`), in MiB.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    proc_status_kib(pid, "VmHWM:").map(|kib| kib / 1024.0)
}

/// A process's resident memory now (`VmRSS`), in MiB.
pub fn rss_mib(pid: u32) -> Option<f64> {
    proc_status_kib(pid, "VmRSS:").map(|kib| kib / 1024.0)
}

fn proc_status_kib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A fresh, migrated database named `name` on `admin_url`'s server, with the raw table; its
/// pool and URL.
pub async fn fresh_database(admin_url: &str, name: &str) -> (PgPool, String) {
    let mut admin = PgConnection::connect(admin_url).await.expect("connect to PostgreSQL");
    for statement in [format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"), format!("CREATE DATABASE {name}")] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&mut admin).await.expect("create bench database");
    }
    let options = admin_url.parse::<PgConnectOptions>().expect("url").database(name);
    let pool = PgPoolOptions::new().max_connections(40).connect_with(options).await.expect("connect");
    MIGRATOR.run(&pool).await.expect("migrate");
    create_raw_table(&pool).await;
    let (base, _) = admin_url.rsplit_once('/').expect("a database URL");
    (pool, format!("{base}/{name}"))
}

/// Drops the benchmark's database once its pool is closed.
/// Keeps the database `name` as `kept_as` (dropping a previous one of that name).
pub async fn keep_database(admin_url: &str, pool: PgPool, name: &str, kept_as: &str) {
    pool.close().await;
    let mut admin = PgConnection::connect(admin_url).await.expect("admin connection");
    for statement in [
        format!("DROP DATABASE IF EXISTS {kept_as} WITH (FORCE)"),
        format!("ALTER DATABASE {name} RENAME TO {kept_as}"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&mut admin).await.expect("keep the database");
    }
    eprintln!("database kept as {kept_as}");
}

pub async fn drop_database(admin_url: &str, pool: PgPool, name: &str) {
    pool.close().await;
    if let Ok(mut admin) = PgConnection::connect(admin_url).await {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
            .execute(&mut admin)
            .await;
    }
}
