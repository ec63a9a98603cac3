//! The service's configuration: environment variables and flags, checked at start-up, and
//! the limits they set honoured by the running binary.

mod support;

use std::time::{Duration, Instant};

use support::{TestDatabase, http};

/// Arguments, environment, and the flag the refusal must name.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn an_invalid_value_stops_the_start_with_one_clear_line() {
    let cases: [Case; 5] = [
        (&["serve", "--http-workers", "0"], &[], "--http-workers"),
        (&["serve"], &[("AISC_HTTP_WORKERS", "many")], "--http-workers"),
        (&["serve"], &[("AISC_DB_POOL_SIZE", "-1")], "--db-pool-size"),
        (&["serve", "--request-deadline-ms", "5s"], &[], "--request-deadline-ms"),
        (&["audit", "verify", "--log-format", "xml"], &[], "--log-format"),
    ];
    for (args, environment, named) in cases {
        let output = support::aisc()
            .args(args)
            .envs(environment.iter().copied())
            .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/never_reached")
            .output()
            .expect("run aisc");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?} {environment:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?} {environment:?}: one line, not {stderr:?}");
        assert!(stderr.starts_with("error: ") && stderr.contains(named), "{args:?} {environment:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

#[tokio::test]
async fn the_configured_limits_hold_in_the_running_service() {
    let database = TestDatabase::create().await;
    let token = aisc_api::auth::issue(
        &database.pool,
        "secretariat-1",
        &[aisc_api::auth::Role::CommitteeSecretariat, aisc_api::auth::Role::Auditor],
    )
    .await
    .expect("token");
    let bearer = format!("Bearer {token}");
    let (mut child, port) = support::serve_process_with(
        &database.url,
        &[("AISC_MAX_BODY_BYTES", "1024"), ("AISC_DB_STATEMENT_TIMEOUT_MS", "300"), ("AISC_HTTP_WORKERS", "3")],
    );
    support::wait_until_ready(port).await;

    // A command body over the configured size is refused before it is read to the end.
    let padding = "x".repeat(2_000);
    let body =
        format!(r#"{{"batch_id":"b1","deadline":"2025-01-01","committee_date":"2025-02-01","note":"{padding}"}}"#);
    let large = http(
        port,
        "POST",
        "/api/v1/batches",
        &[("Authorization", &bearer), ("Content-Type", "application/json")],
        Some(&body),
    )
    .await;
    assert_eq!(large.status, 413, "{}", large.body);
    assert!(large.body.contains("1024 bytes"), "{}", large.body);

    // A statement blocked behind a lock is cut off by the statement timeout: a quick 503, long
    // before the request deadline (5 s by default), and nothing half-done.
    let mut blocker = database.pool.begin().await.expect("begin");
    sqlx::query("LOCK TABLE events IN ACCESS EXCLUSIVE MODE").execute(&mut *blocker).await.expect("lock");
    let started = Instant::now();
    let blocked = http(port, "GET", "/api/v1/events", &[("Authorization", &bearer)], None).await;
    assert_eq!(blocked.status, 503, "{}", blocked.body);
    assert!(started.elapsed() < Duration::from_secs(3), "answered after {:?}", started.elapsed());
    assert!(blocked.header("retry-after").is_some());
    blocker.rollback().await.expect("release the lock");
    let served = http(port, "GET", "/api/v1/events", &[("Authorization", &bearer)], None).await;
    assert_eq!(served.status, 200, "{}", served.body);

    let _ = child.kill();
    let _ = child.wait();
    database.drop_database().await;
}
