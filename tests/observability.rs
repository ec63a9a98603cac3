//! What an operator sees: every log line of a request carries its id, a projection stuck on
//! an event it cannot apply raises a metric and an error log, and a long transaction that
//! holds readers of `$all` back is counted and named. The tests of this file run one at a time:
//! each holds or watches server-wide state (the oldest transaction, a projection's health).

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aisc_adapters::PostgresEventStore;
use aisc_domain::event_store::{EventStore, ExpectedVersion, NewEvent, Position, StreamId};
use serde_json::{Value, json};
use support::{TestDatabase, http};

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `aisc serve` with its log lines (standard error) collected as they come.
struct LoggedServer {
    child: std::process::Child,
    port: u16,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl LoggedServer {
    fn start(database_url: &str, log_filter: &str) -> Self {
        let mut child = support::aisc()
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env("DATABASE_URL", database_url)
            .env("RUST_LOG", log_filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn aisc serve");
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (port_sender, port_receiver) = std::sync::mpsc::channel();
        let collected = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let parsed: Value = serde_json::from_str(&line).expect("every log line is JSON when not on a terminal");
                if let Some(port) = parsed["fields"]["port"].as_u64() {
                    let _ = port_sender.send(port as u16);
                }
                collected.lock().expect("log lines").push(parsed);
            }
        });
        let port = port_receiver.recv_timeout(Duration::from_secs(60)).expect("the service reports its port");
        Self { child, port, lines }
    }

    fn lines(&self) -> Vec<Value> {
        self.lines.lock().expect("log lines").clone()
    }

    /// Waits until a log line satisfies `wanted`.
    async fn wait_for_line(&self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(line) = self.lines().into_iter().find(|line| wanted(line)) {
                return line;
            }
            assert!(Instant::now() < deadline, "no log line {what} within 20 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for LoggedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn every_log_line_of_a_request_carries_its_id_and_a_stalled_projection_is_raised() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let database = TestDatabase::create().await;
    let token =
        aisc_api::auth::issue(&database.pool, "intake-1", &[aisc_api::auth::Role::IntakeOfficer]).await.expect("token");
    let bearer = format!("Bearer {token}");
    let server = LoggedServer::start(&database.url, "info,sqlx=debug");
    support::wait_until_ready(server.port).await;

    // A read model gone from under the service: the request answers 503 and warns, and that
    // line, like the queries the request ran, carries the request's id.
    sqlx::query("ALTER TABLE read_models.applications_view RENAME TO applications_view_away")
        .execute(&database.pool)
        .await
        .expect("hide the read model");
    let headers = [("Authorization", bearer.as_str()), ("X-Request-Id", "trace-me-1")];
    let answered = http(server.port, "GET", "/api/v1/applications", &headers, None).await;
    assert_eq!(answered.status, 503, "{}", answered.body);
    let warning = server
        .wait_for_line("warning of the missing read model", |line| {
            line["level"] == "WARN" && line["fields"]["message"] == "a read model is not built yet"
        })
        .await;
    assert_eq!(warning["span"]["request_id"], "trace-me-1", "{warning}");
    assert_eq!(warning["span"]["route"], "/api/v1/applications", "{warning}");
    let queries: Vec<Value> = server
        .lines()
        .into_iter()
        .filter(|line| line["target"] == "sqlx::query" && line["span"]["request_id"] == "trace-me-1")
        .collect();
    assert!(!queries.is_empty(), "the request's queries are logged within its span");
    server
        .wait_for_line("of the request", |line| {
            line["fields"]["message"] == "request"
                && line["fields"]["request_id"] == "trace-me-1"
                && line["fields"]["status"] == 503
        })
        .await;
    sqlx::query("ALTER TABLE read_models.applications_view_away RENAME TO applications_view")
        .execute(&database.pool)
        .await
        .expect("restore the read model");

    // An event the applications projection cannot decode: it stops there, again and again.
    let store = PostgresEventStore::new(database.pool.clone());
    let written = store
        .append(
            &StreamId::parse("application-broken-1").expect("stream"),
            ExpectedVersion::NoStream,
            vec![NewEvent {
                event_id: uuid::Uuid::new_v4(),
                event_type: "ApplicationSubmitted".into(),
                schema_version: 2,
                data: json!({ "not": "a submission" }),
                metadata: json!({ "actor": "someone", "role": "administrator" }),
            }],
        )
        .await
        .expect("append");
    let stalled = server
        .wait_for_line("of the stall", |line| {
            line["level"] == "ERROR" && line["fields"]["projection"] == "applications"
        })
        .await;
    assert_eq!(stalled["fields"]["position"].as_u64(), Some(written.position.0), "{stalled}");
    let metrics = http(server.port, "GET", "/metrics", &[], None).await;
    assert_eq!(metric(&metrics.body, "aisc_projection_stalled{projection=\"applications\"}"), Some(1.0));
    assert_eq!(metric(&metrics.body, "aisc_projection_stalled{projection=\"audit_trail\"}"), Some(0.0));
    assert!(
        metric(&metrics.body, "aisc_projection_failures_total{projection=\"applications\"}").unwrap_or(0.0) >= 2.0,
        "{}",
        metrics.body
    );
    drop(server);
    database.drop_database().await;
}

/// An open write transaction anywhere on the server holds readers of `$all` back: the wait is
/// counted (for `/metrics`) and the backend holding it is found in `pg_stat_activity`.
#[tokio::test]
async fn a_held_back_wait_is_counted_and_the_pinning_backend_named() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let database = TestDatabase::create().await;
    let store = PostgresEventStore::new(database.pool.clone()).with_held_back_wait(Duration::from_millis(700));
    let mut pinning = store.pool().begin().await.expect("begin");
    sqlx::query("SET LOCAL application_name = 'long-migration'").execute(&mut *pinning).await.expect("name");
    let pinning_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut *pinning).await.expect("pid");
    // Any write transaction pins the horizon once it holds a transaction id.
    sqlx::query("SELECT pg_current_xact_id()").execute(&mut *pinning).await.expect("take a transaction id");

    let stream = StreamId::parse("after-the-pin").expect("stream");
    let event = NewEvent {
        event_id: uuid::Uuid::new_v4(),
        event_type: "Later".into(),
        schema_version: 1,
        data: json!({}),
        metadata: json!({ "actor": "test", "role": "administrator" }),
    };
    store.append(&stream, ExpectedVersion::Any, vec![event]).await.expect("append");
    let before = aisc_adapters::held_back::stats();
    let slice = store.read_all(Position::START, 100).await.expect("read");
    assert!(slice.events.is_empty() && slice.held_back, "{:?}", slice.events);
    let after = aisc_adapters::held_back::stats();
    assert!(after.waits > before.waits, "{before:?} {after:?}");
    assert!(after.long_waits > before.long_waits, "a 700 ms wait is a long one: {after:?}");
    assert!(after.wait_seconds >= before.wait_seconds + 0.6, "{before:?} {after:?}");

    // Other work on the server (another test's database being dropped, say) may hold an
    // older transaction for a moment; ours stays open until it is the oldest.
    let named_by = Instant::now() + Duration::from_secs(10);
    let backend = loop {
        let backend = aisc_adapters::held_back::pinning_backend(store.pool())
            .await
            .expect("pg_stat_activity")
            .expect("a backend pins the horizon");
        if backend.pid == pinning_pid || Instant::now() > named_by {
            break backend;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(backend.pid, pinning_pid, "{backend:?}");
    assert_eq!(backend.application_name.as_deref(), Some("long-migration"));
    assert!(backend.transaction_seconds >= 0.6, "{backend:?}");

    pinning.rollback().await.expect("end the pin");
    let slice = store.read_all(Position::START, 100).await.expect("read");
    assert_eq!(slice.events.len(), 1);
    database.drop_database().await;
}
