//! End-to-end benchmark of the back office against PostgreSQL's own limits, in one run on one
//! database, as ratios (the machine is shared and noisy, so only same-run ratios mean much):
//! raw INSERT and COPY as the yardstick; the generated scheme; commands over HTTP through the
//! real server with auth; the bulk usage import; rebuilding every projection; query and
//! projection-lag latencies; the server's memory.
//!
//! Run: `cargo bench --bench scheme` (uses `DATABASE_URL`'s server, default the local one;
//! creates and drops its own database). `AISC_BENCH_APPLICATIONS` (default 20000) sizes the
//! generated scheme, `AISC_BENCH_WINDOW_SECS` (default 5) each load window,
//! `AISC_BENCH_REBUILD_EVENTS` (default 1000000) the log the last rebuild replays. Writes its table
//! to `docs/BENCHMARKS.md`. `AISC_BENCH_KEEP_AS=name` keeps the database under that name (replacing
//! one of that name) instead of dropping it, to repeat a measurement on the same log.
//!
//! The server runs on the real clock, so the fixtures the HTTP commands need (an open batch,
//! approved projects with signed agreements) are dated from today: a batch closing tomorrow,
//! projects running last month and this month (usage is charged only for a month begun).

mod common;

use std::fmt::Write as _;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aisc_adapters::clock::today_in_hong_kong;
use aisc_adapters::personal_data::{KeyEncryptionKey, Vault};
use aisc_adapters::{PostgresEventStore, TimeOrderedEventIds};
use aisc_api::auth::Role;
use aisc_domain::command_service::{CommandMetadata, CommandService, Decision, Written};
use aisc_domain::subsidy::application::{
    ApproveApplication, CheckEligibility, CommitteeMeeting, RecordAssessment, Scores, SignAgreement,
};
use aisc_domain::subsidy::batches::{CloseBatch, OpenBatch};
use aisc_domain::subsidy::capacity::{Allocation, DeclareCapacity};
use aisc_domain::subsidy::funding::{BudgetLine, RecordFundingReceived};
use aisc_domain::subsidy::prices::SetServiceRate;
use aisc_domain::subsidy::service::{SchemeResult, SchemeService};
use aisc_domain::subsidy::values::{FinancialYear, Money, Period, RateBps, ServiceType};
use aisc_domain::subsidy::{DomainError, Facts};
use chrono::{Datelike, Months, NaiveDate, TimeDelta};
use common::{Throughput, machine, measure, quantile_ms};
use futures_util::StreamExt;
use serde_json::{Value, json};
use sqlx::postgres::PgPoolCopyExt;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const BENCH_DATABASE: &str = "aisc_bench_scheme";
const HEADING: &str = "## End to end";
const AISC: &str = env!("CARGO_BIN_EXE_aisc");
/// The benchmark's key-encryption key of personal data (the suites' test key).
const TEST_KEK_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-kek.hex");

/// The service's binary, run with the benchmark's key-encryption key.
fn aisc() -> Command {
    let mut command = Command::new(AISC);
    command.env("AISC_KEK_FILE", TEST_KEK_FILE);
    command
}
/// The service type of the benchmark's own projects, apart from the generated scheme's GPUs.
const BENCH_SERVICE: &str = "bench_gpu_hour";
/// Projects the HTTP usage charges and the bulk import spread over.
const USAGE_PROJECTS: usize = 256;
const COPY_ROWS: usize = 200_000;
const IMPORT_LINES_PER_FILE: usize = 100_000;
const QUERY_SAMPLES: usize = 300;

type Scheme = SchemeService<PostgresEventStore, TimeOrderedEventIds>;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

fn meta(actor: &str, role: &str) -> CommandMetadata {
    CommandMetadata {
        actor: actor.into(),
        role: role.into(),
        request_id: uuid::Uuid::new_v4().to_string(),
        correlation_id: "bench".into(),
        causation_id: None,
    }
}

// ---- a keep-alive HTTP/1.1 client, enough for this service's responses ----

struct Client {
    connection: BufReader<TcpStream>,
    bearer: String,
}

impl Client {
    async fn connect(port: u16, token: &str) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect to the server");
        stream.set_nodelay(true).expect("nodelay");
        Self { connection: BufReader::new(stream), bearer: format!("Bearer {token}") }
    }

    async fn send(&mut self, method: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            self.bearer,
            body.len()
        );
        let stream = self.connection.get_mut();
        stream.write_all(head.as_bytes()).await.expect("send head");
        stream.write_all(body).await.expect("send body");
        let mut line = String::new();
        self.connection.read_line(&mut line).await.expect("status line");
        let status: u16 = line.split_whitespace().nth(1).and_then(|code| code.parse().ok()).expect("status");
        let mut length = None;
        let mut chunked = false;
        loop {
            line.clear();
            self.connection.read_line(&mut line).await.expect("header");
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap_or((header, ""));
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse::<usize>().ok(),
                "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
                _ => {}
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.connection.read_line(&mut line).await.expect("chunk size");
                let size = usize::from_str_radix(line.trim(), 16).expect("chunk size");
                let mut chunk = vec![0; size + 2];
                self.connection.read_exact(&mut chunk).await.expect("chunk");
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else {
            body.resize(length.unwrap_or(0), 0);
            self.connection.read_exact(&mut body).await.expect("body");
        }
        (status, body)
    }

    async fn get(&mut self, path: &str) -> (u16, Vec<u8>) {
        self.send("GET", path, "application/json", b"").await
    }

    async fn post_json(&mut self, path: &str, body: &Value) -> (u16, Value) {
        let (status, bytes) = self.send("POST", path, "application/json", body.to_string().as_bytes()).await;
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}

// ---- processes ----

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    async fn start(database_url: &str) -> Self {
        let port = free_port();
        let child = aisc()
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("AISC_BIND", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aisc serve");
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            if let Ok(mut client) = TcpStream::connect(("127.0.0.1", port)).await {
                let _ = client.write_all(b"GET /health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
                let mut answer = String::new();
                let _ = client.read_to_string(&mut answer).await;
                if answer.starts_with("HTTP/1.1 200") {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "the server did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { child, port }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits: the service finishes in-flight requests and stops its projections.
    async fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `aisc` with `args` to completion; returns the wall time and the peak resident memory
/// observed (MiB).
async fn run_aisc(database_url: &str, args: &[&str]) -> (Duration, f64) {
    let started = Instant::now();
    let mut child = aisc()
        .args(args)
        .env("DATABASE_URL", database_url)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run aisc");
    let mut peak: f64 = 0.0;
    loop {
        if let Some(now) = common::peak_rss_mib(child.id()) {
            peak = peak.max(now);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "aisc {args:?} failed: {status}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (started.elapsed(), peak)
}

// ---- the yardstick: COPY in and out ----

async fn copy_in_rate(pool: &PgPool) -> f64 {
    let mut text = String::with_capacity(COPY_ROWS * 400);
    for n in 0..COPY_ROWS {
        let data = common::sample_data(n as u64).to_string().replace('\\', "\\\\");
        let metadata = common::sample_metadata().to_string();
        let _ = writeln!(
            text,
            "{}\tcopy-{}\t{}\t{}\tUsageCharged\t1\t{data}\t{metadata}\t2025-08-05 00:00:00+00\t\\\\x{}",
            10_000_000 + n,
            n / 10,
            n % 10,
            uuid::Uuid::new_v4(),
            "00".repeat(32)
        );
    }
    let started = Instant::now();
    let mut copy = pool
        .copy_in_raw(
            "COPY raw_events (global_position, stream_id, stream_version, event_id, event_type, schema_version, \
             data, metadata, recorded_at, hash) FROM STDIN",
        )
        .await
        .expect("copy in");
    copy.send(text.as_bytes()).await.expect("copy data");
    let rows = copy.finish().await.expect("copy finish");
    assert_eq!(rows as usize, COPY_ROWS);
    COPY_ROWS as f64 / started.elapsed().as_secs_f64()
}

async fn copy_out_rate(pool: &PgPool) -> (f64, usize) {
    let started = Instant::now();
    let mut stream =
        pool.copy_out_raw("COPY (SELECT * FROM events ORDER BY global_position) TO STDOUT").await.expect("copy out");
    let mut lines = 0;
    while let Some(chunk) = stream.next().await {
        lines += chunk.expect("chunk").iter().filter(|b| **b == b'\n').count();
    }
    (lines as f64 / started.elapsed().as_secs_f64(), lines)
}

// ---- fixtures dated from today ----

struct Fixture {
    today: NaiveDate,
    batch_id: String,
    /// The first of the two months the benchmark's projects run: last month.
    period: Period,
}

/// Runs a decision as `actor` in `role` on `today` (the acting principal is also the
/// events' metadata).
async fn act<D>(scheme: &Scheme, decision: &D, actor: &str, role: &str, today: NaiveDate) -> SchemeResult<Written>
where
    D: Decision<Facts = Facts, Error = DomainError>,
{
    scheme.run(decision, &Facts::new(today, actor), None, &meta(actor, role)).await
}

async fn open_intake(scheme: &Scheme) -> Fixture {
    let today = today_in_hong_kong();
    let start = (today - Months::new(1)).with_day0(0).unwrap_or(today);
    let period = Period::of(start);
    let admin = ("bench-admin", "administrator");
    let service = ServiceType::parse(BENCH_SERVICE).expect("service");
    let price = SetServiceRate {
        service_type: service.clone(),
        rate_per_unit: Money::from_cents(1_000),
        unit: "node-hour".into(),
        effective_from: NaiveDate::from_ymd_opt(2024, 4, 1).expect("date"),
    };
    act(scheme, &price, admin.0, admin.1, today).await.expect("price");
    for month in [period, Period::of(start + Months::new(1))] {
        let capacity = DeclareCapacity { service_type: service.clone(), period: month, units: 1_000_000_000 };
        act(scheme, &capacity, admin.0, admin.1, today).await.expect("capacity");
    }
    for year in [FinancialYear::containing(start), FinancialYear::containing(start + Months::new(1))] {
        let funding = RecordFundingReceived {
            year,
            line: BudgetLine::ComputingPowerSubsidy,
            amount: Money::from_cents(2_000_000_000 * 100),
            received_on: today,
        };
        act(scheme, &funding, "bench-finance", "finance_officer", today).await.expect("funding");
    }
    let batch_id = format!("bench-{today}");
    let batch = OpenBatch {
        batch_id: batch_id.clone(),
        deadline: today + TimeDelta::days(1),
        committee_date: today + TimeDelta::days(2),
    };
    act(scheme, &batch, "bench-secretariat", "committee_secretariat", today).await.expect("batch");
    Fixture { today, batch_id, period }
}

fn submission_body(fixture: &Fixture, n: u64) -> Value {
    json!({
        "organisation": format!("Benchmark Lab {}", n % 97),
        "category": "ai_startup",
        "sub_type": "cyberport_incubatee_or_alumnus",
        "project_title": format!("Load test project {n}"),
        "project_summary": "A generated submission of the benchmark.",
        "develops_ai_models": true,
        "requested_resources": [{"service_type": BENCH_SERVICE, "first_period": fixture.period.to_string(), "last_period": fixture.period.to_string(), "units_per_month": 100_000}],
        "requested_rate_bps": 7000,
        "team_size": 8,
        "talents": 5,
        "mainland_or_overseas_team": false,
        "other_government_funding": false,
        "undertakings": null,
        "contact": {"name": "Bench", "email": "bench@example.org"}
    })
}

/// Approved projects with signed agreements running the fixture's month and the next, for
/// the usage charges and the import. Closes the intake batch.
async fn usage_projects(scheme: &Scheme, fixture: &Fixture, port: u16, token: &str) -> Vec<String> {
    let mut client = Client::connect(port, token).await;
    let mut ids = Vec::new();
    for n in 0..USAGE_PROJECTS {
        let (status, body) =
            client.post_json("/api/v1/applications", &submission_body(fixture, 9_000_000 + n as u64)).await;
        assert_eq!(status, 201, "{body}");
        let stream = body["stream_id"].as_str().expect("stream id");
        ids.push(stream.trim_start_matches("application-").to_string());
    }
    let deadline = fixture.today + TimeDelta::days(1);
    let secretariat = ("bench-secretariat", "committee_secretariat");
    for id in &ids {
        let check = CheckEligibility { application_id: id.clone() };
        act(scheme, &check, "bench-intake", "intake_officer", deadline).await.expect("eligibility");
    }
    let close = CloseBatch { batch_id: fixture.batch_id.clone() };
    act(scheme, &close, secretariat.0, secretariat.1, deadline + TimeDelta::days(1)).await.expect("close");
    let service = ServiceType::parse(BENCH_SERVICE).expect("service");
    let start = fixture.period.first_day();
    let end = start + Months::new(2) - TimeDelta::days(1);
    let committee_day = fixture.today + TimeDelta::days(2);
    for id in &ids {
        let assessment = RecordAssessment {
            application_id: id.clone(),
            scores: Scores {
                a_meets_hong_kong_needs: 8,
                b_requirement_reasonable: 8,
                c_feasibility_and_outcome: 8,
                d_capability: 8,
            },
            recommended_rate: RateBps::NORMAL_CAP,
            recommended_ceiling: Money::from_cents(200_000_000),
            duration_months: 2,
            conditions: vec![],
            no_conflict_declared: true,
        };
        act(scheme, &assessment, "bench-assessor", "assessor", deadline + TimeDelta::days(1))
            .await
            .expect("assessment");
        let approve = ApproveApplication {
            application_id: id.clone(),
            meeting: CommitteeMeeting {
                meeting_reference: "AISC-COM-BENCH".into(),
                decided_on: committee_day,
                members_present: vec!["m1".into(), "m2".into(), "m3".into()],
                members_recused: vec![],
            },
            rate: RateBps::NORMAL_CAP,
            exceptional_reason: None,
            allocations: Period::range(fixture.period, Period::of(end))
                .into_iter()
                .map(|period| Allocation { service_type: service.clone(), period, units: 200_000 })
                .collect(),
            // Below the subsidy of the allocated units (400,000 × HK$10.00 × 70 % = HK$2,800,000).
            ceiling: Some(Money::from_cents(200_000_000)),
            start,
            end,
            conditions: vec![],
        };
        act(scheme, &approve, secretariat.0, secretariat.1, committee_day).await.expect("approve");
        let signed_on = fixture.today + TimeDelta::days(3);
        let agreement =
            SignAgreement { application_id: id.clone(), signed_on, reporting_due_dates: vec![start + Months::new(3)] };
        act(scheme, &agreement, secretariat.0, secretariat.1, signed_on).await.expect("agreement");
    }
    ids
}

// ---- loads ----

/// Commands from `clients` keep-alive connections for the window; non-2xx answers counted.
async fn http_load<F>(port: u16, token: &str, window: Duration, clients: usize, request: F) -> (Throughput, usize)
where
    F: Fn(usize, u64) -> (String, Value) + Send + Sync + 'static,
{
    let failures = Arc::new(AtomicUsize::new(0));
    let request = Arc::new(request);
    let mut connections = Vec::new();
    for _ in 0..clients {
        connections.push(Arc::new(tokio::sync::Mutex::new(Client::connect(port, token).await)));
    }
    let counted = failures.clone();
    let throughput = measure(window, clients, 1, move |worker, n| {
        let client = connections[worker].clone();
        let (path, body) = request(worker, n);
        let failures = counted.clone();
        async move {
            let (status, answer) = client.lock().await.post_json(&path, &body).await;
            if !(200..300).contains(&status) && failures.fetch_add(1, Ordering::Relaxed) < 3 {
                eprintln!("  {status} {path}: {answer}");
            }
        }
    })
    .await;
    (throughput, failures.load(Ordering::Relaxed))
}

/// p50/p99 of one GET, sequentially.
async fn query_latency(client: &mut Client, path: &str) -> (f64, f64) {
    let (status, body) = client.get(path).await;
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    let mut latencies = Vec::with_capacity(QUERY_SAMPLES);
    for _ in 0..QUERY_SAMPLES {
        let started = Instant::now();
        let (status, _) = client.get(path).await;
        latencies.push(started.elapsed());
        assert_eq!(status, 200);
    }
    latencies.sort();
    (quantile_ms(&latencies, 0.50), quantile_ms(&latencies, 0.99))
}

async fn wait_for_projections(pool: &PgPool) {
    let head: i64 =
        sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM events").fetch_one(pool).await.expect("head");
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let behind: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_checkpoints WHERE position < $1")
            .bind(head)
            .fetch_one(pool)
            .await
            .expect("checkpoints");
        if behind == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "the projections did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Submissions paced at `rate` per second from 8 clients; for each, the time from the
/// response to every read model having applied its position.
async fn projection_lag(
    pool: &PgPool,
    port: u16,
    token: &str,
    fixture: &Arc<Fixture>,
    rate: f64,
    window: Duration,
) -> (f64, f64, usize) {
    const CLIENTS: usize = 8;
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<(i64, Instant)>();
    let interval = Duration::from_secs_f64(CLIENTS as f64 / rate.max(1.0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..CLIENTS {
        let sender = sender.clone();
        let fixture = fixture.clone();
        let mut client = Client::connect(port, token).await;
        workers.push(tokio::spawn(async move {
            // Staggered so the clients do not fire together.
            let mut next = started + interval.mul_f64(worker as f64 / CLIENTS as f64);
            let mut n = 0_u64;
            while started.elapsed() < window {
                tokio::time::sleep_until(next.into()).await;
                next += interval;
                let (status, body) = client
                    .post_json(
                        "/api/v1/applications",
                        &submission_body(&fixture, 5_000_000 + worker as u64 * 1_000_000 + n),
                    )
                    .await;
                n += 1;
                if status == 201
                    && let Some(position) = body["position"].as_i64()
                {
                    let _ = sender.send((position, Instant::now()));
                }
            }
        }));
    }
    drop(sender);
    let mut observer = PgConnection::connect_with(&pool.connect_options()).await.expect("observer");
    let mut pending: Vec<(i64, Instant)> = Vec::new();
    let mut lags = Vec::new();
    let mut open = true;
    while open || !pending.is_empty() {
        loop {
            match receiver.try_recv() {
                Ok(item) => pending.push(item),
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let visible: i64 = sqlx::query_scalar("SELECT coalesce(min(position), 0) FROM projection_checkpoints")
            .fetch_one(&mut observer)
            .await
            .expect("checkpoint");
        let now = Instant::now();
        pending.retain(|(position, answered)| {
            if *position <= visible {
                lags.push(now.saturating_duration_since(*answered));
                false
            } else {
                true
            }
        });
        if started.elapsed() > window + Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for worker in workers {
        let _ = worker.await;
    }
    lags.sort();
    (quantile_ms(&lags, 0.50), quantile_ms(&lags, 0.99), lags.len())
}

async fn count_events(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(pool).await.expect("count")
}

fn verdict(met: bool) -> &'static str {
    if met { "yes" } else { "**no**" }
}

#[tokio::main]
async fn main() {
    let admin_url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    let applications = env_number("AISC_BENCH_APPLICATIONS", 20_000);
    let window = Duration::from_secs(env_number("AISC_BENCH_WINDOW_SECS", 5));
    // The log the final rebuild replays holds at least this many events.
    let rebuild_events = env_number("AISC_BENCH_REBUILD_EVENTS", 1_000_000) as i64;
    let (pool, database_url) = common::fresh_database(&admin_url, BENCH_DATABASE).await;
    let postgres: String = sqlx::query_scalar("SHOW server_version").fetch_one(&pool).await.expect("version");
    let mut rows: Vec<String> = Vec::new();
    let mut targets: Vec<(String, String, String, bool)> = Vec::new();

    // The yardstick.
    let raw8 = common::raw_insert(window, pool.clone(), 8).await;
    let raw32 = common::raw_insert(window, pool.clone(), 32).await;
    let copy_in = copy_in_rate(&pool).await;
    eprintln!("raw INSERT 8: {:.0}/s, 32: {:.0}/s; COPY in {copy_in:.0} rows/s", raw8.per_sec, raw32.per_sec);
    rows.push(format!(
        "| raw single-row INSERT transactions, 8 connections | {:.0}/s | {:.2} | {:.2} | — |",
        raw8.per_sec, raw8.p50_ms, raw8.p99_ms
    ));
    rows.push(format!(
        "| raw single-row INSERT transactions, 32 connections | {:.0}/s | {:.2} | {:.2} | — |",
        raw32.per_sec, raw32.p50_ms, raw32.p99_ms
    ));
    rows.push(format!("| raw `COPY … FROM STDIN`, {COPY_ROWS} log-shaped rows | {copy_in:.0} rows/s | — | — | — |"));

    // The generated scheme, through the command service.
    let (seeded, seed_peak) = run_aisc(
        &database_url,
        &["demo", "seed", "--applications", &applications.to_string(), "--years", "3", "--seed", "2024"],
    )
    .await;
    let seeded_events = count_events(&pool).await;
    eprintln!("seeded {applications} applications: {seeded_events} events in {:.1} s", seeded.as_secs_f64());
    rows.push(format!(
        "| `aisc demo seed --applications {applications}` (every command decided by the command service, appended in batches of up to 500 commands) | {:.0} events/s ({seeded_events} events, {:.0} s, peak {seed_peak:.0} MiB) | — | — | — |",
        seeded_events as f64 / seeded.as_secs_f64(),
        seeded.as_secs_f64()
    ));
    let (first_rebuild, first_rebuild_peak) = run_aisc(&database_url, &["projections", "rebuild"]).await;
    eprintln!(
        "rebuild of {seeded_events} events: {:.1} s, peak {first_rebuild_peak:.0} MiB",
        first_rebuild.as_secs_f64()
    );

    // The server, with a token per role it needs.
    let server = Server::start(&database_url).await;
    let intake = aisc_api::auth::issue(&pool, "bench-intake", &[Role::IntakeOfficer]).await.expect("token");
    let finance = aisc_api::auth::issue(&pool, "bench-finance", &[Role::FinanceOfficer]).await.expect("token");
    let auditor = aisc_api::auth::issue(&pool, "bench-auditor", &[Role::Auditor]).await.expect("token");
    let kek = KeyEncryptionKey::load(std::path::Path::new(TEST_KEK_FILE)).expect("the benchmark's KEK");
    let scheme: Scheme = SchemeService::new(
        CommandService::new(PostgresEventStore::new(pool.clone()), TimeOrderedEventIds)
            .with_sealer(Arc::new(Vault::new(pool.clone(), kek))),
    );
    let fixture = Arc::new(open_intake(&scheme).await);

    // Submissions over HTTP.
    let mut submit8 = None;
    let mut submit8_refused = 0;
    for clients in [1, 8, 32] {
        let fixture = fixture.clone();
        let (throughput, failed) = http_load(server.port, &intake, window, clients, move |worker, n| {
            (
                "/api/v1/applications".to_string(),
                submission_body(&fixture, (clients * 100_000 + worker * 10_000) as u64 * 10 + n),
            )
        })
        .await;
        eprintln!(
            "submit x{clients}: {:.0}/s p50 {:.1} p99 {:.1} ms, {failed} failed",
            throughput.per_sec, throughput.p50_ms, throughput.p99_ms
        );
        rows.push(format!(
            "| HTTP submit-application, {clients} clients ({failed} of {} refused) | {:.0}/s | {:.2} | {:.2} | {:.2} of raw INSERT at 8 |",
            throughput.calls, throughput.per_sec, throughput.p50_ms, throughput.p99_ms, throughput.per_sec / raw8.per_sec
        ));
        if clients == 8 {
            submit8 = Some(throughput);
            submit8_refused = failed;
        }
    }
    let submit8 = submit8.expect("measured at 8 clients");
    let rss_after_submit = common::rss_mib(server.pid()).unwrap_or(f64::NAN);

    // Projection lag at half the submission throughput.
    wait_for_projections(&pool).await;
    let (lag50, lag99, lag_samples) =
        projection_lag(&pool, server.port, &intake, &fixture, submit8.per_sec / 2.0, window).await;
    eprintln!(
        "projection lag at {:.0}/s: p50 {lag50:.1} p99 {lag99:.1} ms ({lag_samples} commands)",
        submit8.per_sec / 2.0
    );
    rows.push(format!(
        "| projection lag, submissions paced at {:.0}/s (half of 8 clients), {lag_samples} commands | — | {lag50:.2} | {lag99:.2} | — |",
        submit8.per_sec / 2.0
    ));

    // Usage charges over HTTP on projects running last month and this month.
    let projects = Arc::new(usage_projects(&scheme, &fixture, server.port, &intake).await);
    let mut usage8 = None;
    let mut usage8_refused = 0;
    for clients in [1, 8, 32] {
        let projects = projects.clone();
        let period = fixture.period.to_string();
        let (throughput, failed) = http_load(server.port, &finance, window, clients, move |worker, n| {
            let project = &projects[(worker * 31 + n as usize) % projects.len()];
            (
                format!("/api/v1/applications/{project}/usage"),
                json!({"usage_id": format!("http-{clients}-{worker}-{n}"), "service_type": BENCH_SERVICE, "period": period, "units": 1}),
            )
        })
        .await;
        eprintln!(
            "usage x{clients}: {:.0}/s p50 {:.1} p99 {:.1} ms, {failed} failed",
            throughput.per_sec, throughput.p50_ms, throughput.p99_ms
        );
        rows.push(format!(
            "| HTTP record-usage, {clients} clients ({failed} of {} refused) | {:.0}/s | {:.2} | {:.2} | {:.2} of raw INSERT at 8 |",
            throughput.calls, throughput.per_sec, throughput.p50_ms, throughput.p99_ms, throughput.per_sec / raw8.per_sec
        ));
        if clients == 8 {
            usage8 = Some(throughput);
            usage8_refused = failed;
        }
    }
    let usage8 = usage8.expect("measured at 8 clients");

    // The bulk import over HTTP: files of 100,000 lines until the log holds enough events
    // for the rebuild figure (at least one file).
    let so_far = count_events(&pool).await;
    // One event a line: a charge is appended to its application's stream only.
    let files = ((rebuild_events - so_far).max(1) as usize).div_ceil(IMPORT_LINES_PER_FILE).max(1);
    let mut import_client = Client::connect(server.port, &finance).await;
    let mut imported = 0_usize;
    let mut import_time = Duration::ZERO;
    for file in 0..files {
        let mut csv = String::from("project,service_type,units,period\n");
        for line in 0..IMPORT_LINES_PER_FILE {
            let project = &projects[(line + file) % projects.len()];
            let period =
                if line % 2 == 0 { fixture.period } else { Period::of(fixture.period.first_day() + Months::new(1)) };
            let _ = writeln!(csv, "{project},{BENCH_SERVICE},{},{period}", 1 + line % 3);
        }
        // Each file charges the projects the same few small usages as the files before it, so
        // its lines repeat earlier imports' charges on purpose: the import is told to charge them.
        let path = format!("/api/v1/usage-imports?import_id=bench-{file}&allow_repeated_lines=true");
        let started = Instant::now();
        let (status, body) = import_client.send("POST", &path, "text/csv", csv.as_bytes()).await;
        import_time += started.elapsed();
        let report: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["written"].as_u64(), Some(IMPORT_LINES_PER_FILE as u64), "{}", report["refused"]);
        imported += IMPORT_LINES_PER_FILE;
    }
    let import_rate = imported as f64 / import_time.as_secs_f64();
    let import_peak = common::peak_rss_mib(server.pid()).unwrap_or(f64::NAN);
    eprintln!("imported {imported} lines at {import_rate:.0} lines/s, server peak {import_peak:.0} MiB");
    rows.push(format!(
        "| bulk usage import over HTTP, {files} file(s) of {IMPORT_LINES_PER_FILE} lines (1 event a line) | {import_rate:.0} lines/s | — | — | {:.2} of COPY in (lines/rows, one event each); server peak RSS {import_peak:.0} MiB |",
        import_rate / copy_in
    ));

    // Every load leaves a log whose hash chains verify (`aisc audit verify` exits 0 only then).
    let events_verified = count_events(&pool).await;
    let (verify_time, _) = run_aisc(&database_url, &["audit", "verify"]).await;
    eprintln!("audit verify: {events_verified} events intact in {:.1} s", verify_time.as_secs_f64());
    rows.push(format!(
        "| `aisc audit verify` after every load above | {events_verified} events intact | — | — | {:.0} events/s |",
        events_verified as f64 / verify_time.as_secs_f64()
    ));

    // Queries on the generated scheme.
    wait_for_projections(&pool).await;
    let mut reader = Client::connect(server.port, &auditor).await;
    let busiest_batch: String = sqlx::query_scalar(
        "SELECT batch_id FROM read_models.applications_view WHERE batch_id NOT LIKE 'bench-%' \
         GROUP BY batch_id ORDER BY count(*) DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .expect("a batch");
    let middle: i64 = sqlx::query_scalar(
        "SELECT global_position FROM events ORDER BY global_position OFFSET (SELECT count(*) / 2 FROM events) LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .expect("middle");
    let busiest_application: String = sqlx::query_scalar(
        "SELECT application_id FROM read_models.usage_view GROUP BY application_id ORDER BY count(*) DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .expect("an application charged for usage");
    let total_applications: i64 =
        sqlx::query_scalar("SELECT count(*) FROM read_models.applications_view").fetch_one(&pool).await.expect("count");
    let queries = [
        (
            "application list (status approved, 50 a page, by title)",
            "/api/v1/applications?status=approved&sort=project_title&limit=50".to_string(),
        ),
        (
            "application list, free text matching a quarter (`vision`)",
            "/api/v1/applications?q=vision&limit=50".to_string(),
        ),
        (
            "application list, free text matching a few (`imaging 12`)",
            "/api/v1/applications?q=imaging%2012&limit=50".to_string(),
        ),
        ("batch work queue, the largest generated batch", format!("/api/v1/batches/{busiest_batch}/queue")),
        ("KPI dashboard, whole scheme", "/api/v1/kpis".to_string()),
        ("KPI dashboard, funding year 2025-26", "/api/v1/kpis?year=2025-26".to_string()),
        ("audit trail page of 100", format!("/api/v1/audit-trail?after={middle}&limit=100")),
        ("one application, the one with the most usage charges", format!("/api/v1/applications/{busiest_application}")),
        (
            "its usage lines, a page of 100 from the 1,000th",
            format!("/api/v1/applications/{busiest_application}/usage?offset=1000&limit=100"),
        ),
    ];
    let mut worst_query: f64 = 0.0;
    for (name, path) in &queries {
        let (p50, p99) = query_latency(&mut reader, path).await;
        worst_query = worst_query.max(p99);
        eprintln!("{name}: p50 {p50:.2} p99 {p99:.2} ms");
        rows.push(format!("| query: {name}, {total_applications} applications | — | {p50:.2} | {p99:.2} | — |"));
    }
    // The past without replaying: the dashboard as the log stood at its middle position.
    let log_events = count_events(&pool).await;
    let (as_of_p50, as_of_p99) = query_latency(&mut reader, &format!("/api/v1/kpis?as_of={middle}")).await;
    eprintln!("KPI as_of the middle of {log_events} events: p50 {as_of_p50:.2} p99 {as_of_p99:.2} ms");
    rows.push(format!(
        "| query: KPI dashboard `as_of` the middle position of a {log_events}-event log | — | {as_of_p50:.2} | {as_of_p99:.2} | — |"
    ));
    let server_peak = common::peak_rss_mib(server.pid()).unwrap_or(f64::NAN);
    let server_now = common::rss_mib(server.pid()).unwrap_or(f64::NAN);
    rows.push(format!("| server memory: peak RSS over the run (after the submission loads {rss_after_submit:.0} MiB; now {server_now:.0} MiB) | {server_peak:.0} MiB | — | — | — |"));
    server.stop().await;

    // Rebuild every projection from the whole log, the server stopped.
    let final_events = count_events(&pool).await;
    let (rebuild, rebuild_peak) = run_aisc(&database_url, &["projections", "rebuild"]).await;
    let rebuild_rate = final_events as f64 / rebuild.as_secs_f64();
    let (copy_out, _) = copy_out_rate(&pool).await;
    eprintln!("rebuild of {final_events} events: {rebuild_rate:.0} events/s, peak {rebuild_peak:.0} MiB");
    rows.push(format!(
        "| rebuild of every projection (`aisc projections rebuild`), {seeded_events} events | {:.0} events/s | — | — | peak {first_rebuild_peak:.0} MiB |",
        seeded_events as f64 / first_rebuild.as_secs_f64()
    ));
    rows.push(format!(
        "| rebuild of every projection, {final_events} events | {rebuild_rate:.0} events/s | — | — | peak {rebuild_peak:.0} MiB; {:.2} of `COPY (SELECT * FROM events) TO STDOUT` ({copy_out:.0} rows/s) |",
        rebuild_rate / copy_out
    ));

    let http_ratio = submit8.per_sec / raw8.per_sec;
    let usage_ratio = usage8.per_sec / raw8.per_sec;
    let seed_rate = seeded_events as f64 / seeded.as_secs_f64();
    let mut target = |name: String, measured: String, wanted: &str, met: bool| {
        targets.push((name, measured, wanted.to_string(), met));
    };
    // Issue 12: the write path.
    target(
        "HTTP submit at 8 clients / raw INSERT at 8".into(),
        format!("{http_ratio:.2}"),
        "≥ 0.45 (goal 0.60)",
        http_ratio >= 0.45,
    );
    target(
        "HTTP submit at 8 clients: p99, refused".into(),
        format!("{:.1} ms, {submit8_refused}", submit8.p99_ms),
        "≤ 20 ms, 0",
        submit8.p99_ms <= 20.0 && submit8_refused == 0,
    );
    target(
        "HTTP record-usage at 8 clients, distinct applications / raw INSERT at 8".into(),
        format!("{usage_ratio:.2}"),
        "≥ 0.30",
        usage_ratio >= 0.30,
    );
    target(
        "HTTP record-usage at 8 clients: p99, refused".into(),
        format!("{:.1} ms, {usage8_refused}", usage8.p99_ms),
        "≤ 20 ms, 0",
        usage8.p99_ms <= 20.0 && usage8_refused == 0,
    );
    target(
        "bulk import / raw COPY in".into(),
        format!("{:.2}", import_rate / copy_in),
        "≥ 0.5",
        import_rate / copy_in >= 0.5,
    );
    target("bulk import".into(), format!("{import_rate:.0} lines/s"), "≥ 50,000 lines/s", import_rate >= 50_000.0);
    target(
        format!("server peak RSS through an import of {imported} lines"),
        format!("{import_peak:.0} MiB"),
        "≤ 150 MiB",
        import_peak <= 150.0,
    );
    target("`aisc demo seed`".into(), format!("{seed_rate:.0} events/s"), "≥ 5,000 events/s", seed_rate >= 5_000.0);
    // Issue 15: the read side.
    target(
        "rebuild / raw COPY out".into(),
        format!("{:.2} ({rebuild_rate:.0} events/s)", rebuild_rate / copy_out),
        "≥ 0.5 and ≥ 100,000 events/s",
        rebuild_rate / copy_out >= 0.5 && rebuild_rate >= 100_000.0,
    );
    target(
        format!("rebuild peak RSS, {final_events} events"),
        format!("{rebuild_peak:.0} MiB ({first_rebuild_peak:.0} MiB at {seeded_events} events)"),
        "≤ 64 MiB at any log size",
        rebuild_peak <= 64.0 && first_rebuild_peak <= 64.0,
    );
    target("worst read route p99".into(), format!("{worst_query:.1} ms"), "≤ 10 ms", worst_query <= 10.0);
    target(
        format!("KPI `as_of` a middle position, {log_events}-event log, p99"),
        format!("{as_of_p99:.1} ms"),
        "≤ 50 ms",
        as_of_p99 <= 50.0,
    );
    target("projection lag p99".into(), format!("{lag99:.1} ms"), "≤ 100 ms", lag99 <= 100.0);

    let mut report = String::new();
    let _ = writeln!(report, "{HEADING}\n");
    let _ = writeln!(
        report,
        "Command: `{}cargo bench --bench scheme` · machine: {} · PostgreSQL {postgres} · window {} s per load · {applications} generated applications · server and benchmark on the same machine\n",
        ["AISC_BENCH_APPLICATIONS", "AISC_BENCH_WINDOW_SECS", "AISC_BENCH_REBUILD_EVENTS"]
            .iter()
            .filter_map(|name| std::env::var(name).ok().map(|value| format!("{name}={value} ")))
            .collect::<String>(),
        machine(),
        window.as_secs()
    );
    let _ = writeln!(report, "| measurement | throughput | p50 ms | p99 ms | ratio / note |");
    let _ = writeln!(report, "|---|---:|---:|---:|---|");
    for row in &rows {
        let _ = writeln!(report, "{row}");
    }
    let _ = writeln!(report, "\n| target | measured | target | met |");
    let _ = writeln!(report, "|---|---:|---|---|");
    for (name, measured, target, met) in &targets {
        let _ = writeln!(report, "| {name} | {measured} | {target} | {} |", verdict(*met));
    }
    println!("{report}");
    common::write_section(HEADING, &report);

    match std::env::var("AISC_BENCH_KEEP_AS") {
        Ok(name) => common::keep_database(&admin_url, pool, BENCH_DATABASE, &name).await,
        Err(_) => common::drop_database(&admin_url, pool, BENCH_DATABASE).await,
    }
}
