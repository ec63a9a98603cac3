//! The `aisc` binary as an operator meets it: zero configuration, a clear one-line error when
//! PostgreSQL is unreachable, database creation, health, JSON logs and graceful shutdown.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

const AISC: &str = env!("CARGO_BIN_EXE_aisc");

#[test]
fn serve_against_an_unreachable_database_says_where_it_tried_and_exits_non_zero() {
    // Port 1 on loopback: nothing listens there.
    let url = "postgres://postgres:secret@127.0.0.1:1/aisc_subsidy";
    let output = Command::new(AISC)
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
    assert!(
        line.contains("DATABASE_URL"),
        "says how to point it elsewhere: {line}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
}

#[test]
fn a_bad_database_url_is_one_clear_line() {
    let output = Command::new(AISC)
        .args(["migrate", "--database-url", "mysql://nope"])
        .output()
        .expect("run aisc");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("mysql://nope"), "{stderr}");
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["migrate", "--help"],
    ] {
        let output = Command::new(AISC).args(&args).output().expect("run aisc");
        assert!(output.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("Usage"),
            "{args:?}"
        );
    }
}

#[tokio::test]
async fn serve_creates_its_database_answers_health_and_stops_gracefully_on_sigterm() {
    let name = format!("aisc_test_{}_{}", now_secs(), uuid::Uuid::new_v4().simple());
    let url = support::database_url(&support::admin_url(), &name);
    let mut child = Command::new(AISC)
        .args(["serve"])
        .env("DATABASE_URL", &url)
        .env("AISC_BIND", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn aisc serve");

    // The JSON log announces the port it bound.
    let stdout = child.stdout.take().expect("stdout");
    let (port_sender, port_receiver) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let parsed: serde_json::Value =
                serde_json::from_str(&line).expect("every log line is JSON");
            if let Some(port) = parsed["fields"]["port"].as_u64() {
                let _ = port_sender.send(port as u16);
            }
            lines.push(parsed);
        }
        lines
    });
    let port = port_receiver
        .recv_timeout(Duration::from_secs(30))
        .expect("the service reports its port");

    assert_eq!(
        support::http_get(port, "/health/live")
            .await
            .expect("live")
            .0,
        200
    );
    let (status, body) = support::http_get(port, "/health/ready")
        .await
        .expect("ready");
    assert_eq!(status, 200, "{body}");

    let mut admin = PgConnection::connect(&support::admin_url())
        .await
        .expect("admin");
    let created: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .expect("query");
    assert!(created, "serve created its database");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the service did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");
    let logs = reader.join().expect("log reader");
    assert!(
        logs.iter()
            .any(|line| line["fields"]["message"] == "stopped"),
        "logs the stop"
    );

    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await;
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}
