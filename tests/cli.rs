//! The `aisc` binary as an operator meets it: zero configuration, a clear one-line error when
//! PostgreSQL is unreachable, database creation, health, JSON logs and graceful shutdown.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

#[test]
fn serve_against_an_unreachable_database_says_where_it_tried_and_exits_non_zero() {
    // Port 1 on loopback: nothing listens there.
    let url = "postgres://postgres:secret@127.0.0.1:1/aisc_subsidy";
    let output = support::aisc()
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("DATABASE_URL", url)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run aisc");
    assert!(!output.status.success(), "must exit non-zero");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line: {stderr:?}");
    let line = lines[0];
    assert!(line.starts_with("error: "), "{line}");
    assert!(
        line.contains("postgres://postgres:***@127.0.0.1:1/aisc_subsidy"),
        "names the URL, not the password: {line}"
    );
    assert!(!line.contains("secret"));
    assert!(line.contains("DATABASE_URL"), "says how to point it elsewhere: {line}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");
}

#[test]
fn a_bad_database_url_is_one_clear_line() {
    let output = support::aisc().args(["migrate", "--database-url", "mysql://nope"]).output().expect("run aisc");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("mysql://nope"), "{stderr}");
}

#[test]
fn every_subcommand_has_help() {
    for args in [vec!["--help"], vec!["serve", "--help"], vec!["migrate", "--help"]] {
        let output = support::aisc().args(&args).output().expect("run aisc");
        assert!(output.status.success(), "{args:?}");
        assert!(String::from_utf8_lossy(&output.stdout).contains("Usage"), "{args:?}");
    }
}

#[tokio::test]
async fn serve_creates_its_database_answers_health_and_stops_gracefully_on_sigterm() {
    let name = format!("aisc_test_{}_{}", now_secs(), uuid::Uuid::new_v4().simple());
    let url = support::database_url(&support::admin_url(), &name);
    let mut child = support::aisc()
        .args(["serve"])
        .env("DATABASE_URL", &url)
        .env("AISC_BIND", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn aisc serve");

    // The JSON log (standard error, not a terminal) announces the port it bound.
    let stdout = child.stderr.take().expect("stderr");
    let (port_sender, port_receiver) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let parsed: serde_json::Value = serde_json::from_str(&line).expect("every log line is JSON");
            if let Some(port) = parsed["fields"]["port"].as_u64() {
                let _ = port_sender.send(port as u16);
            }
            lines.push(parsed);
        }
        lines
    });
    let port = port_receiver.recv_timeout(Duration::from_secs(30)).expect("the service reports its port");

    assert_eq!(support::http_get(port, "/health/live").await.expect("live").0, 200);
    support::wait_until_ready(port).await;
    let (status, body) = support::http_get(port, "/health/ready").await.expect("ready");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"read_models\":\"built\""), "{body}");

    let mut admin = PgConnection::connect(&support::admin_url()).await.expect("admin");
    let created: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&name)
        .fetch_one(&mut admin)
        .await
        .expect("query");
    assert!(created, "serve created its database");

    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the service did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");
    let logs = reader.join().expect("log reader");
    assert!(logs.iter().any(|line| line["fields"]["message"] == "stopped"), "logs the stop");

    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        .execute(&mut admin)
        .await;
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()
}

async fn database_with_events(count: usize) -> (support::TestDatabase, aisc_adapters::PostgresEventStore) {
    use aisc_domain::event_store::{EventStore, ExpectedVersion, NewEvent, StreamId};
    let database = support::TestDatabase::create().await;
    let store = aisc_adapters::PostgresEventStore::new(database.pool.clone());
    for n in 0..count {
        let stream = StreamId::parse(format!("application-{}", n % 3)).expect("stream");
        // A type outside the scheme: readers that decode the scheme's events (the audit
        // trail dates each one) would refuse `{"n": …}` as an `ApplicationSubmitted`.
        let event = NewEvent {
            event_id: uuid::Uuid::new_v4(),
            event_type: "NoteRecorded".into(),
            schema_version: 1,
            data: serde_json::json!({ "n": n }),
            metadata: serde_json::json!({ "actor": "intake-1", "role": "intake_officer" }),
        };
        store.append(&stream, ExpectedVersion::Any, vec![event]).await.expect("append");
    }
    (database, store)
}

fn aisc(args: &[&str], database_url: &str) -> (bool, String, String) {
    let output = support::aisc().args(args).env("DATABASE_URL", database_url).output().expect("run aisc");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn audit_verify_says_ok_with_the_count_or_names_the_tampered_event() {
    let (database, store) = database_with_events(9).await;
    let (ok, stdout, _) = aisc(&["audit", "verify"], &database.url);
    assert!(ok, "{stdout}");
    assert_eq!(stdout.trim(), "OK: 9 events verified, every hash chain intact");

    use aisc_domain::event_store::{EventStore, Position};
    let events = store.read_all(Position::START, 100).await.expect("read").events;
    let target = &events[4];
    support::rewrite_event_behind_triggers(
        &database.pool,
        target.event_id,
        r#"metadata = '{"actor": "someone-else", "role": "intake_officer"}'"#,
    )
    .await;
    let (ok, stdout, _) = aisc(&["audit", "verify"], &database.url);
    assert!(!ok, "tampering fails the verification");
    assert!(stdout.starts_with(&format!("BROKEN: event at position {} ", target.position)), "{stdout}");
    assert!(stdout.contains(&target.event_id.to_string()) && stdout.contains("HashMismatch"), "{stdout}");

    // A range ending before the tampered event is clean.
    let before = (target.position.0 - 1).to_string();
    let (ok, stdout, _) = aisc(&["audit", "verify", "--to", &before], &database.url);
    assert!(ok, "{stdout}");
    assert!(stdout.starts_with("OK: 4 events verified"), "{stdout}");
    let (ok, _, stderr) = aisc(&["audit", "verify", "--from", "9", "--to", "3"], &database.url);
    assert!(!ok && stderr.lines().count() == 1 && stderr.contains("--from 9 is after --to 3"), "{stderr}");
    database.drop_database().await;
}

#[tokio::test]
async fn audit_export_writes_the_history_as_eventstoredb_shaped_ndjson() {
    let (database, store) = database_with_events(7).await;
    use aisc_domain::event_store::{EventStore, Position};
    let events = store.read_all(Position::START, 100).await.expect("read").events;

    let (ok, stdout, stderr) = aisc(&["audit", "export"], &database.url);
    assert!(ok, "{stderr}");
    let lines: Vec<serde_json::Value> =
        stdout.lines().map(|line| serde_json::from_str(line).expect("each line is JSON")).collect();
    assert_eq!(lines.len(), 7);
    let first = &lines[0];
    assert_eq!(first["eventId"], events[0].event_id.to_string());
    assert_eq!(first["eventType"], "NoteRecorded");
    assert_eq!(first["streamId"], "application-0");
    assert_eq!(first["eventNumber"], 0);
    assert_eq!(first["position"], events[0].position.0);
    assert_eq!(first["data"]["n"], 0);
    assert_eq!(first["metadata"]["actor"], "intake-1");
    assert!(first["created"].as_str().is_some_and(|created| created.contains('T')));

    let from = events[2].position.0.to_string();
    let to = events[4].position.0.to_string();
    let (ok, stdout, _) = aisc(&["audit", "export", "--from", &from, "--to", &to], &database.url);
    assert!(ok);
    let positions: Vec<u64> = stdout
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).expect("json")["position"].as_u64().expect("position")
        })
        .collect();
    assert_eq!(positions, events[2..=4].iter().map(|e| e.position.0).collect::<Vec<_>>());
    database.drop_database().await;
}

#[tokio::test]
async fn long_commands_show_progress_and_logs_on_standard_error_only() {
    let (database, _store) = database_with_events(12).await;
    for (args, label) in [
        (vec!["audit", "export"], "audit export: done, 12 of 12 events (100%)"),
        (vec!["audit", "verify"], "audit verify: done, 12 of 12 events (100%)"),
        (
            vec!["projections", "rebuild", "audit_trail"],
            "projections rebuild audit_trail: done, 12 of 12 events (100%)",
        ),
    ] {
        let (ok, stdout, stderr) = aisc(&args, &database.url);
        assert!(ok, "{args:?}: {stderr}");
        assert!(stderr.lines().any(|line| line.starts_with(label)), "{args:?}: {stderr}");
        assert!(!stdout.contains("done,") && !stdout.contains("events/s"), "{args:?}: progress on standard output");
    }

    // Logs are JSON lines when standard error is not a terminal, or as --log-format says.
    let (ok, stdout, stderr) = aisc(&["migrate"], &database.url);
    assert!(ok && stdout.is_empty(), "{stdout}");
    let logged: serde_json::Value =
        serde_json::from_str(stderr.lines().last().expect("a log line")).expect("a JSON log line");
    assert_eq!(logged["fields"]["message"], "migrations applied");
    let (ok, stdout, stderr) = aisc(&["migrate", "--log-format", "human"], &database.url);
    assert!(ok && stdout.is_empty(), "{stdout}");
    let line = stderr.lines().last().expect("a log line");
    assert!(line.contains("INFO") && line.contains("migrations applied"), "{line}");
    assert!(serde_json::from_str::<serde_json::Value>(line).is_err(), "human-readable: {line}");
    database.drop_database().await;
}

#[tokio::test]
async fn projections_status_and_rebuild_report_what_they_did() {
    let (database, _store) = database_with_events(5).await;
    let (ok, stdout, _) = aisc(&["projections", "status"], &database.url);
    assert!(ok);
    assert!(stdout.lines().any(|line| line.starts_with("audit_trail") && line.contains("never")), "{stdout}");

    let (ok, stdout, stderr) = aisc(&["projections", "rebuild", "audit_trail"], &database.url);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("rebuilt audit_trail up to position "), "{stdout}");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM read_models.audit_trail")
        .fetch_one(&database.pool)
        .await
        .expect("rows");
    assert_eq!(rows, 5);
    let (ok, stdout, _) = aisc(&["projections", "status"], &database.url);
    assert!(ok);
    let line = stdout.lines().find(|line| line.starts_with("audit_trail")).expect("status line");
    assert!(line.split_whitespace().last() == Some("0"), "no lag after the rebuild: {line}");

    let (ok, _, stderr) = aisc(&["projections", "rebuild", "no_such"], &database.url);
    assert!(!ok);
    assert_eq!(stderr.trim(), "error: no projection is named no_such");
    database.drop_database().await;
}

#[tokio::test]
async fn tokens_are_issued_once_listed_without_secrets_and_revoked() {
    let database = support::TestDatabase::create().await;
    let (ok, stdout, stderr) =
        aisc(&["tokens", "issue", "--name", "first-admin", "--roles", "administrator,auditor"], &database.url);
    assert!(ok, "{stderr}");
    let token = stdout.lines().last().expect("token line").trim().to_string();
    assert!(token.starts_with("aisc_") && token.len() == 69, "the token is the last line: {stdout}");
    let principal = aisc_api::auth::authenticate(&database.pool, &token).await.expect("auth").expect("known token");
    assert_eq!(principal.name, "first-admin");

    let (ok, _, stderr) = aisc(&["tokens", "issue", "--name", "first-admin", "--roles", "auditor"], &database.url);
    assert!(!ok && stderr.contains("already exists"), "{stderr}");
    let (ok, _, stderr) = aisc(&["tokens", "issue", "--name", "x", "--roles", "king"], &database.url);
    assert!(!ok && stderr.lines().count() == 1 && stderr.contains("unknown role"), "{stderr}");

    let (ok, stdout, _) = aisc(&["tokens", "list"], &database.url);
    assert!(ok);
    let line = stdout.lines().find(|line| line.starts_with("first-admin")).expect("listed");
    assert!(line.contains("auditor,administrator") && line.contains("active"), "{line}");
    assert!(!stdout.contains(&token[5..]), "the list never shows a token");

    let (ok, stdout, _) = aisc(&["tokens", "revoke", "--name", "first-admin"], &database.url);
    assert!(ok, "{stdout}");
    assert!(aisc_api::auth::authenticate(&database.pool, &token).await.expect("auth").is_none());
    let (_, stdout, _) = aisc(&["tokens", "list"], &database.url);
    assert!(stdout.lines().any(|line| line.starts_with("first-admin") && line.contains("revoked")), "{stdout}");
    let (ok, _, stderr) = aisc(&["tokens", "revoke", "--name", "nobody"], &database.url);
    assert!(!ok && stderr.contains("no active token is named nobody"), "{stderr}");
    database.drop_database().await;
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish_before_the_service_exits() {
    let database = support::TestDatabase::create().await;
    let token =
        aisc_api::auth::issue(&database.pool, "auditor-1", &[aisc_api::auth::Role::Auditor]).await.expect("token");
    let (mut child, port) = support::serve_process(&database.url);

    // A query waiting (about 3 s) for a position the read model will never reach is in flight
    // when the service is told to stop.
    let bearer = format!("Bearer {token}");
    let in_flight = tokio::spawn(async move {
        support::http(
            port,
            "GET",
            "/api/v1/audit-trail?after_position=4000000000000000",
            &[("Authorization", &bearer)],
            None,
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let response = in_flight.await.expect("request task");
    assert_eq!(response.status, 503, "the in-flight request got its answer: {}", response.body);
    assert!(response.header("retry-after").is_some());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the service did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    database.drop_database().await;
}

#[tokio::test]
async fn reports_kpi_writes_the_dashboard_as_csv_or_json() {
    let database = support::TestDatabase::create().await;
    let scheme = support::scheme::scheme(&database).await;
    support::scheme::set_up(&scheme, support::scheme::hkd(857_000_000)).await;
    support::scheme::submitted(&scheme, "k1").await;
    support::scheme::ready_for_committee(&scheme, &["k1"]).await;
    let approve = support::scheme::approval("k1", None);
    support::scheme::act(&scheme, &approve, "sec-1", "committee_secretariat", support::scheme::committee_day())
        .await
        .expect("approve");

    let (ok, csv, stderr) = aisc(&["reports", "kpi", "--year", "2025-26", "--format", "csv"], &database.url);
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], r#""scope","metric","dimension","value""#);
    assert!(lines.contains(&r#""2025-26","applications_approved","","1""#), "{csv}");
    // The ceiling, omitted, is the subsidy of the allocated units: HK$178,500.00.
    assert!(lines.contains(&r#""2025-26","committed_cents","computing_power_subsidy","17850000""#), "{csv}");
    let (ok, json, _) = aisc(&["reports", "kpi", "--format", "json"], &database.url);
    assert!(ok);
    let dashboard: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!((dashboard["scope"].as_str(), dashboard["applications_received"].as_i64()), (Some("scheme"), Some(1)));
    let (ok, _, stderr) = aisc(&["reports", "kpi", "--year", "2025"], &database.url);
    assert!(!ok && stderr.lines().count() == 1 && stderr.contains("2025-26"), "{stderr}");
    database.drop_database().await;
}
