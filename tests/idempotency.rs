//! Idempotency-Keys across crashes. A key's claim is a lease its request renews: when the
//! process holding it dies (kill -9) or the database fails before the outcome is kept, a retry
//! takes the claim over within seconds and answers the first execution's outcome if it
//! committed, or runs the command if it did not; the log never holds two executions of one key
//! (an execution whose claim was taken over cannot commit); and a claim whose request is alive
//! still answers 409 "still running".

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use aisc_adapters::event_ids::ClaimIds;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection, PgPool};
use support::{TestApp, TestDatabase, TestResponse, http};

const RECEIPTS: &str = "/api/v1/funding-years/2025-26/receipts";

/// A funding receipt: a command the domain happily records twice, so a second execution
/// would show in the log.
fn receipt(amount_cents: u64) -> String {
    json!({"line": "computing_power_subsidy", "amount_cents": amount_cents, "received_on": "2025-04-01"}).to_string()
}

async fn count(pool: &PgPool, event_type: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = $1")
        .bind(event_type)
        .fetch_one(pool)
        .await
        .expect("count events")
}

/// Backends of this test's database waiting on a lock, in a statement containing `query`.
async fn waiting(pool: &PgPool, wait_event: &str, query: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' \
         AND ($1 = '' OR wait_event = $1) AND query LIKE '%' || $2 || '%'",
    )
    .bind(wait_event)
    .bind(query)
    .fetch_one(pool)
    .await
    .expect("pg_stat_activity")
}

async fn wait_until_waiting(pool: &PgPool, wait_event: &str, query: &str, backends: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while waiting(pool, wait_event, query).await < backends {
        assert!(Instant::now() < deadline, "no {backends} backend(s) waiting on {wait_event:?} in {query:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A gate on every event appended to the test's database: appends wait at it (holding their
/// streams' heads) while the test holds advisory lock `lock` on `gatekeeper`. Named to fire
/// before the service's own triggers.
async fn close_event_gate(pool: &PgPool, gatekeeper: &mut PgConnection, lock: i64) {
    sqlx::query("SELECT pg_advisory_lock($1)").bind(lock).execute(&mut *gatekeeper).await.expect("lock");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE FUNCTION test_event_gate() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN PERFORM pg_advisory_xact_lock_shared({lock}); RETURN NEW; END $$; \
         CREATE TRIGGER a_test_event_gate BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION test_event_gate();"
    )))
    .execute(pool)
    .await
    .expect("gate");
}

/// Makes keeping a response fail, as a database lost between the append and the keep would;
/// with `lock`, the keep first waits while the test holds that advisory lock.
async fn break_keeping_responses(pool: &PgPool, lock: Option<i64>) {
    let wait = lock.map(|lock| format!("PERFORM pg_advisory_xact_lock({lock});")).unwrap_or_default();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE FUNCTION test_lose_response() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN {wait} RAISE EXCEPTION 'the connection was lost'; END $$; \
         CREATE TRIGGER test_lose_response BEFORE UPDATE ON idempotent_requests FOR EACH ROW \
         WHEN (NEW.status <> 0) EXECUTE FUNCTION test_lose_response();"
    )))
    .execute(pool)
    .await
    .expect("break keeping");
}

async fn repair_keeping_responses(pool: &PgPool) {
    sqlx::raw_sql("DROP TRIGGER test_lose_response ON idempotent_requests; DROP FUNCTION test_lose_response();")
        .execute(pool)
        .await
        .expect("repair keeping");
}

/// Retries until the answer is not 409 "still running": the answer and how long it took.
async fn retry_until_run(post: impl AsyncFn() -> TestResponse, within: Duration) -> (TestResponse, Duration) {
    let started = Instant::now();
    loop {
        let response = post().await;
        if response.status != 409 {
            return (response, started.elapsed());
        }
        assert!(response.body.contains("still running"), "{}", response.body);
        assert!(started.elapsed() < within, "still 409 after {:?}: {}", started.elapsed(), response.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An `aisc serve` process on the test database (killed when dropped).
struct Server {
    child: Child,
    port: u16,
    bearer: String,
}

impl Server {
    async fn start(database: &TestDatabase, bearer: &str) -> Self {
        let mut child = support::aisc()
            .args(["serve"])
            .env("DATABASE_URL", &database.url)
            .env("AISC_BIND", "127.0.0.1:0")
            // The tests hold commands at a gate for longer than a request is let run by default.
            .env("AISC_DB_STATEMENT_TIMEOUT_MS", "0")
            .env("AISC_REQUEST_DEADLINE_MS", "120000")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn aisc serve");
        let stdout = child.stderr.take().expect("stderr");
        let (port_sender, port_receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let parsed: Value = serde_json::from_str(&line).unwrap_or_default();
                if let Some(port) = parsed["fields"]["port"].as_u64() {
                    let _ = port_sender.send(port as u16);
                }
            }
        });
        let port = port_receiver.recv_timeout(Duration::from_secs(60)).expect("the service reports its port");
        support::wait_until_ready(port).await;
        Self { child, port, bearer: bearer.to_string() }
    }

    async fn post(&self, path: &str, key: Option<&str>, body: &str) -> TestResponse {
        let mut headers = vec![("Authorization", self.bearer.as_str()), ("Content-Type", "application/json")];
        if let Some(key) = key {
            headers.push(("Idempotency-Key", key));
        }
        http(self.port, "POST", path, &headers, Some(body)).await
    }

    /// kill -9.
    fn kill(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn finance_officer(database: &TestDatabase) -> String {
    let token = aisc_api::auth::issue(&database.pool, "finance-1", &[aisc_api::auth::Role::FinanceOfficer])
        .await
        .expect("token");
    format!("Bearer {token}")
}

#[tokio::test]
async fn a_key_left_claimed_by_a_dead_process_runs_its_command_on_retry() {
    let app = TestApp::spawn().await;
    let key = [("Idempotency-Key", "receipt-2025-04")];
    // The claim as a process killed mid-command left it, before this release: running, and
    // no response kept. Its command never reached the log.
    let body = receipt(100_000);
    let request_hash = Sha256::digest(format!("POST {RECEIPTS}\n{body}").as_bytes()).to_vec();
    sqlx::query(
        "INSERT INTO idempotent_requests (principal, key, request_hash, status, content_type, headers, body) \
         VALUES ('finance_officer-1', 'receipt-2025-04', $1, 0, '', '{}', '')",
    )
    .bind(request_hash)
    .execute(&app.database.pool)
    .await
    .expect("claim");

    let (retry, waited) =
        retry_until_run(async || app.post("finance_officer", RECEIPTS, &key, &body).await, Duration::from_secs(15))
            .await;
    assert_eq!(retry.status, 200, "{}", retry.body);
    assert!(waited < Duration::from_secs(10), "answered after {waited:?}");
    assert_eq!(count(&app.database.pool, "FundingReceived").await, 1, "the command ran once");

    let again = app.post("finance_officer", RECEIPTS, &key, &body).await;
    assert_eq!((again.status, again.body.as_str()), (200, retry.body.as_str()));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(count(&app.database.pool, "FundingReceived").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_process_killed_mid_command_leaves_a_key_that_a_retry_runs_once_within_seconds() {
    let database = TestDatabase::create().await;
    let bearer = finance_officer(&database).await;
    let server = Server::start(&database, &bearer).await;
    assert_eq!(server.post(RECEIPTS, None, &receipt(500_000)).await.status, 200, "the year's stream exists");

    // The keyed command appends and waits at the gate, holding the stream's head: then its
    // process is killed. Its transaction lives on in PostgreSQL, as a dead client's does.
    let mut gatekeeper = PgConnection::connect(&database.url).await.expect("gatekeeper");
    close_event_gate(&database.pool, &mut gatekeeper, 4_242).await;
    let body = receipt(100_000);
    let first = {
        let (port, bearer, body) = (server.port, bearer.clone(), body.clone());
        tokio::spawn(async move {
            let headers =
                [("Authorization", bearer.as_str()), ("Content-Type", "application/json"), ("Idempotency-Key", "r-1")];
            http(port, "POST", RECEIPTS, &headers, Some(&body)).await
        })
    };
    wait_until_waiting(&database.pool, "advisory", "append_stream", 1).await;
    server.kill();
    let killed = Instant::now();
    first.abort();

    // Restarted, the service takes the claim over once its lease has run out (the retry is
    // told 409 with Retry-After until then) and runs the command: its append waits behind the
    // dead process's transaction, still holding the stream's head.
    let server = Server::start(&database, &bearer).await;
    let restarted = killed.elapsed();
    let retry = {
        let server = &server;
        let body = body.clone();
        async move {
            retry_until_run(async || server.post(RECEIPTS, Some("r-1"), &body).await, Duration::from_secs(30)).await
        }
    };
    let taken_over = async {
        wait_until_waiting(&database.pool, "", "append_stream", 2).await;
        let taken_over = killed.elapsed();
        // The dead process's transaction goes on first: the log refuses its event, since its
        // claim was taken over. Then the retry's append commits.
        sqlx::query("SELECT pg_advisory_unlock(4242)").execute(&mut gatekeeper).await.expect("open the gate");
        taken_over
    };
    let ((retry, _), taken_over) = tokio::join!(retry, taken_over);
    let answered = killed.elapsed();
    eprintln!(
        "kill -9 → restarted after {restarted:?}, claim taken over after {taken_over:?}, answered after {answered:?}"
    );
    assert_eq!(retry.status, 200, "{}", retry.body);
    assert!(taken_over < Duration::from_secs(20), "taken over after {taken_over:?}");
    assert_eq!(count(&database.pool, "FundingReceived").await, 2, "the keyed command is in the log once");
    let keyed: uuid::Uuid = sqlx::query_scalar(
        "SELECT event_id FROM events WHERE event_type = 'FundingReceived' ORDER BY global_position DESC LIMIT 1",
    )
    .fetch_one(&database.pool)
    .await
    .expect("event");
    assert_eq!((keyed.get_version_num(), ClaimIds::generation_of(keyed)), (8, 2), "written by the retry: {keyed}");

    let again = server.post(RECEIPTS, Some("r-1"), &body).await;
    assert_eq!((again.status, again.body.as_str()), (200, retry.body.as_str()));
    drop(server);
    drop(gatekeeper);
    database.drop_database().await;
}

#[tokio::test]
async fn a_command_committed_before_its_process_died_answers_its_outcome_on_retry() {
    let database = TestDatabase::create().await;
    let bearer = finance_officer(&database).await;
    let server = Server::start(&database, &bearer).await;
    assert_eq!(server.post(RECEIPTS, None, &receipt(500_000)).await.status, 200);

    // The command commits; keeping its response waits (and will fail); the process is killed.
    let mut gatekeeper = PgConnection::connect(&database.url).await.expect("gatekeeper");
    sqlx::query("SELECT pg_advisory_lock(4343)").execute(&mut gatekeeper).await.expect("lock");
    break_keeping_responses(&database.pool, Some(4_343)).await;
    let body = receipt(100_000);
    let first = {
        let (port, bearer, body) = (server.port, bearer.clone(), body.clone());
        tokio::spawn(async move {
            let headers =
                [("Authorization", bearer.as_str()), ("Content-Type", "application/json"), ("Idempotency-Key", "r-2")];
            http(port, "POST", RECEIPTS, &headers, Some(&body)).await
        })
    };
    wait_until_waiting(&database.pool, "advisory", "UPDATE idempotent_requests", 1).await;
    assert_eq!(count(&database.pool, "FundingReceived").await, 2, "the command committed");
    server.kill();
    let killed = Instant::now();
    first.abort();
    sqlx::query("SELECT pg_advisory_unlock(4343)").execute(&mut gatekeeper).await.expect("unlock");
    repair_keeping_responses(&database.pool).await;

    let server = Server::start(&database, &bearer).await;
    let (retry, _) =
        retry_until_run(async || server.post(RECEIPTS, Some("r-2"), &body).await, Duration::from_secs(30)).await;
    let answered = killed.elapsed();
    eprintln!("kill -9 after the commit → the retry got the first outcome after {answered:?}");
    assert_eq!(retry.status, 200, "{}", retry.body);
    assert_eq!(count(&database.pool, "FundingReceived").await, 2, "not run again");
    let (stream, version, position): (String, i64, i64) = sqlx::query_as(
        "SELECT stream_id, stream_version, global_position FROM events WHERE event_type = 'FundingReceived' \
         ORDER BY global_position DESC LIMIT 1",
    )
    .fetch_one(&database.pool)
    .await
    .expect("event");
    assert_eq!(retry.json(), json!({"stream_id": stream, "version": version, "position": position}));
    assert_eq!(retry.header("etag"), Some(format!("\"{version}\"").as_str()));
    assert_eq!(retry.header("x-stream-id"), Some(stream.as_str()));
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));

    let again = server.post(RECEIPTS, Some("r-2"), &body).await;
    assert_eq!((again.status, again.body.as_str()), (200, retry.body.as_str()));
    drop(server);
    drop(gatekeeper);
    database.drop_database().await;
}

fn submission() -> Value {
    json!({
        "organisation": "The Chinese University of Hong Kong",
        "category": "local_institution",
        "sub_type": "ugc_funded_university",
        "project_title": "Medical imaging foundation model",
        "project_summary": "Pre-training on de-identified scans.",
        "develops_ai_models": true,
        "requested_resources": [{"service_type": "gpu_node_hour_h800", "first_period": "2025-07", "last_period": "2025-12", "units_per_month": 1000}],
        "requested_rate_bps": 7000,
        "team_size": 14,
        "talents": 9,
        "mainland_or_overseas_team": false,
        "other_government_funding": false,
        "undertakings": null,
        "contact": {"name": "Prof Wong", "email": "wong@cuhk.edu.hk"}
    })
}

#[track_caller]
fn ok(response: &TestResponse) -> Value {
    assert!(response.status < 300, "{} {}", response.status, response.body);
    response.json()
}

/// An application assessed in a funded, priced batch with capacity, on its committee's day.
async fn assessed_application(app: &TestApp) -> String {
    ok(&app
        .post(
            "committee_secretariat",
            "/api/v1/batches",
            &[],
            r#"{"batch_id": "2025-q2", "deadline": "2025-05-31", "committee_date": "2025-06-15"}"#,
        )
        .await);
    ok(&app.post("finance_officer", RECEIPTS, &[], &receipt(85_700_000_000)).await);
    ok(&app.post("administrator", "/api/v1/price-schedule/rates", &[], r#"{"service_type": "gpu_node_hour_h800", "rate_per_unit_cents": 4250, "unit": "node-hour", "effective_from": "2025-04-01"}"#).await);
    for month in ["2025-07", "2025-08", "2025-09", "2025-10", "2025-11", "2025-12"] {
        let body = json!({"service_type": "gpu_node_hour_h800", "period": month, "units": 10000}).to_string();
        ok(&app.post("administrator", "/api/v1/capacity", &[], &body).await);
    }
    app.set_day(2025, 5, 2);
    let submitted = app.post("intake_officer", "/api/v1/applications", &[], &submission().to_string()).await;
    assert_eq!(submitted.status, 201, "{}", submitted.body);
    let id = submitted.header("location").expect("Location").rsplit('/').next().expect("id").to_string();
    app.set_day(2025, 6, 2);
    ok(&app.post("intake_officer", &format!("/api/v1/applications/{id}/eligibility-check"), &[], "{}").await);
    let _ = app.post("committee_secretariat", "/api/v1/batches/2025-q2/closure", &[], "{}").await;
    let assessment = json!({"scores": {"a_meets_hong_kong_needs": 8, "b_requirement_reasonable": 7, "c_feasibility_and_outcome": 8, "d_capability": 9}, "recommended_rate_bps": 7000, "recommended_ceiling_cents": 50_000_000, "duration_months": 6, "no_conflict_declared": true});
    ok(&app.post("assessor", &format!("/api/v1/applications/{id}/assessment"), &[], &assessment.to_string()).await);
    app.set_day(2025, 6, 15);
    id
}

#[tokio::test]
async fn a_multi_stream_command_whose_response_could_not_be_kept_is_answered_from_the_log() {
    let app = TestApp::spawn().await;
    let id = assessed_application(&app).await;
    let months = ["2025-07", "2025-08", "2025-09", "2025-10", "2025-11", "2025-12"];
    let allocations: Vec<Value> =
        months.iter().map(|m| json!({"service_type": "gpu_node_hour_h800", "period": m, "units": 1000})).collect();
    let approval = json!({
        "meeting": {"meeting_reference": "AISC-COM-2025-06", "decided_on": "2025-06-15", "members_present": ["m1", "m2", "m3"], "members_recused": ["m4"]},
        "rate_bps": 7000, "exceptional_reason": null, "allocations": allocations,
        "start": "2025-07-01", "end": "2025-12-31", "conditions": ["monthly utilisation report"]
    })
    .to_string();
    let path = format!("/api/v1/applications/{id}/approval");
    let key = [("Idempotency-Key", "committee-2025-06-item-1")];

    // The approval (application, funding year and capacity streams) commits; the database
    // fails when its response is kept. The caller still gets the outcome.
    break_keeping_responses(&app.database.pool, None).await;
    let first = app.post("committee_secretariat", &path, &key, &approval).await;
    assert_eq!(first.status, 200, "the committed outcome is answered: {}", first.body);
    repair_keeping_responses(&app.database.pool).await;

    let started = Instant::now();
    let retry = app.post("committee_secretariat", &path, &key, &approval).await;
    assert!(started.elapsed() < Duration::from_secs(2), "no wait for a lease whose request ended");
    assert_eq!((retry.status, retry.body.as_str()), (200, first.body.as_str()));
    assert_eq!(retry.json()["stream_id"], format!("application-{id}"));
    for header in ["etag", "x-stream-id"] {
        assert_eq!(retry.header(header), first.header(header), "{header}");
    }
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    for event_type in ["ApplicationApproved", "SubsidyCommitted"] {
        assert_eq!(count(&app.database.pool, event_type).await, 1, "{event_type} once");
    }
    let again = app.post("committee_secretariat", &path, &key, &approval).await;
    assert_eq!((again.status, again.body.as_str()), (200, first.body.as_str()));
    app.stop().await;
}

#[tokio::test]
async fn a_live_claim_answers_409_still_running_and_racing_requests_run_once() {
    // The first request is held well past the default request deadline on purpose.
    let app = TestApp::spawn_configured(|config| config.limits.deadline = Duration::from_secs(60)).await;
    let pool = &app.database.pool;
    ok(&app.post("finance_officer", RECEIPTS, &[], &receipt(500_000)).await);
    let mut gatekeeper = PgConnection::connect(&app.database.url).await.expect("gatekeeper");
    close_event_gate(pool, &mut gatekeeper, 4_444).await;
    let key = [("Idempotency-Key", "receipt-live")];
    let body = receipt(100_000);

    let first = app.post("finance_officer", RECEIPTS, &key, &body);
    let others = async {
        wait_until_waiting(pool, "advisory", "append_stream", 1).await;
        let second = app.post("finance_officer", RECEIPTS, &key, &body).await;
        // Longer than a lease: the first request renews its claim while it runs.
        tokio::time::sleep(aisc_api::command::CLAIM_LEASE + Duration::from_secs(1)).await;
        let third = app.post("finance_officer", RECEIPTS, &key, &body).await;
        let other_body = app.post("finance_officer", RECEIPTS, &key, &receipt(7)).await;
        sqlx::query("SELECT pg_advisory_unlock(4444)").execute(&mut gatekeeper).await.expect("open the gate");
        (second, third, other_body)
    };
    let (first, (second, third, other_body)) = tokio::join!(first, others);
    for running in [&second, &third] {
        assert_eq!(running.status, 409, "{}", running.body);
        assert!(running.body.contains("still running"), "{}", running.body);
        let retry_after: u64 = running.header("retry-after").and_then(|v| v.parse().ok()).expect("Retry-After");
        assert!((1..=aisc_api::command::CLAIM_LEASE.as_secs()).contains(&retry_after), "{retry_after}");
    }
    assert_eq!((other_body.status, other_body.json()["code"].as_str()), (422, Some("idempotency_key_reused")));
    assert_eq!(first.status, 200, "{}", first.body);
    let replay = app.post("finance_officer", RECEIPTS, &key, &body).await;
    assert_eq!((replay.status, replay.body.as_str()), (200, first.body.as_str()));
    assert_eq!(count(pool, "FundingReceived").await, 2, "the keyed receipt once");

    // Two identical requests at once: one runs, the other is told it is running or replayed.
    let key = [("Idempotency-Key", "receipt-race")];
    let (a, b) = tokio::join!(
        app.post("finance_officer", RECEIPTS, &key, &body),
        app.post("finance_officer", RECEIPTS, &key, &body)
    );
    let mut statuses = [a.status, b.status];
    statuses.sort_unstable();
    assert!(statuses == [200, 200] || statuses == [200, 409], "{statuses:?} {} {}", a.body, b.body);
    assert_eq!(count(pool, "FundingReceived").await, 3);
    drop(gatekeeper);
    app.stop().await;
}
