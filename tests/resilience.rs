//! PostgreSQL going away under the running service: requests get a quick 503 with
//! `Retry-After`, and the service recovers by itself when the database is back.

mod support;

use std::time::{Duration, Instant};

use aisc_adapters::{DatabaseConfig, database};
use support::{OutageProxy, TestDatabase, http};

#[tokio::test]
async fn a_database_outage_gives_quick_503s_and_the_service_recovers_by_itself() {
    let test_database = TestDatabase::create().await;
    let token =
        aisc_api::auth::issue(&test_database.pool, "auditor-1", &[aisc_api::auth::Role::Auditor]).await.expect("token");
    let bearer = format!("Bearer {token}");

    let admin: sqlx::postgres::PgConnectOptions = support::admin_url().parse().expect("url");
    let proxy = OutageProxy::start(admin.get_port()).await;
    let through_proxy = format!("postgres://postgres@127.0.0.1:{}/{}", proxy.port, test_database.name);
    let mut config = DatabaseConfig::new(through_proxy.clone());
    config.acquire_timeout = Duration::from_secs(2);
    let pool = database::connect(&config).await.expect("pool through the proxy");
    let mut service = aisc_api::ServiceConfig::new(through_proxy, "127.0.0.1:0");
    service.kek_file = Some(support::TEST_KEK_FILE.into());
    let application = aisc_api::Application::build_with_pool(service, pool).expect("build");
    let port = application.port();
    let server = tokio::spawn(application.run_until_stopped());
    support::wait_until_ready(port).await;

    let ok = http(port, "GET", "/api/v1/events", &[("Authorization", &bearer)], None).await;
    assert_eq!(ok.status, 200, "{}", ok.body);

    proxy.cut();
    for path in ["/api/v1/events", "/api/v1/audit-trail", "/health/ready"] {
        let started = Instant::now();
        let down = http(port, "GET", path, &[("Authorization", &bearer)], None).await;
        let waited = started.elapsed();
        assert_eq!(down.status, 503, "{path}: {}", down.body);
        assert!(waited < Duration::from_secs(5), "{path} answered after {waited:?}");
        eprintln!("database cut: {path} answered {} after {waited:?}", down.status);
        assert!(down.header("retry-after").is_some(), "{path}");
        assert_eq!(down.header("content-type"), Some("application/problem+json"));
        assert!(!down.body.contains("sqlx") && !down.body.contains("os error"), "{}", down.body);
    }
    assert_eq!(http(port, "GET", "/health/live", &[], None).await.status, 200, "alive while the database is down");

    proxy.restore();
    recover_within(port, &bearer, Duration::from_secs(20)).await;
    support::wait_until_ready(port).await;

    server.abort();
    drop(proxy);
    test_database.drop_database().await;
}

#[tokio::test]
async fn a_silent_database_gives_503_at_the_request_deadline_and_the_service_recovers() {
    let test_database = TestDatabase::create().await;
    let token =
        aisc_api::auth::issue(&test_database.pool, "auditor-1", &[aisc_api::auth::Role::Auditor]).await.expect("token");
    let bearer = format!("Bearer {token}");

    let admin: sqlx::postgres::PgConnectOptions = support::admin_url().parse().expect("url");
    let proxy = OutageProxy::start(admin.get_port()).await;
    let through_proxy = format!("postgres://postgres@127.0.0.1:{}/{}", proxy.port, test_database.name);
    let mut config = DatabaseConfig::new(through_proxy.clone());
    config.acquire_timeout = Duration::from_secs(3);
    let pool = database::connect(&config).await.expect("pool through the proxy");
    let mut service = aisc_api::ServiceConfig::new(through_proxy, "127.0.0.1:0");
    service.kek_file = Some(support::TEST_KEK_FILE.into());
    service.limits.deadline = Duration::from_millis(1_000);
    let application = aisc_api::Application::build_with_pool(service, pool).expect("build");
    let port = application.port();
    let server = tokio::spawn(application.run_until_stopped());
    support::wait_until_ready(port).await;
    assert_eq!(http(port, "GET", "/api/v1/events", &[("Authorization", &bearer)], None).await.status, 200);

    // The sockets stay open and nothing comes back: only the deadline ends the wait.
    proxy.black_hole();
    for path in ["/api/v1/events", "/api/v1/audit-trail", "/api/v1/events", "/health/ready"] {
        let started = Instant::now();
        let down = http(port, "GET", path, &[("Authorization", &bearer), ("X-Request-Id", "silent-1")], None).await;
        let waited = started.elapsed();
        assert_eq!(down.status, 503, "{path}: {}", down.body);
        assert!(waited < Duration::from_millis(2_500), "{path} answered after {waited:?}");
        eprintln!("silent database: {path} answered {} after {waited:?}", down.status);
        assert_eq!(down.header("retry-after"), Some("2"), "{path}");
        assert_eq!(down.header("content-type"), Some("application/problem+json"), "{path}");
        assert_eq!(down.header("x-request-id"), Some("silent-1"), "{path}");
    }
    let metrics = http(port, "GET", "/metrics", &[], None).await;
    let exceeded: u64 = metrics
        .body
        .lines()
        .find_map(|line| line.strip_prefix("aisc_request_deadlines_exceeded_total "))
        .and_then(|count| count.trim().parse().ok())
        .expect("the deadline metric");
    assert!(exceeded >= 4, "{}", metrics.body);
    assert_eq!(http(port, "GET", "/health/live", &[], None).await.status, 200, "alive while the database is silent");

    proxy.restore();
    recover_within(port, &bearer, Duration::from_secs(30)).await;
    support::wait_until_ready(port).await;

    server.abort();
    drop(proxy);
    test_database.drop_database().await;
}

/// Waits until the service answers again after the database came back, and prints how long
/// that took (the figure of record of a fault run).
async fn recover_within(port: u16, bearer: &str, limit: Duration) {
    let restored = Instant::now();
    loop {
        let response = http(port, "GET", "/api/v1/events", &[("Authorization", bearer)], None).await;
        if response.status == 200 {
            break;
        }
        assert!(restored.elapsed() < limit, "no recovery: {} {}", response.status, response.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("recovered {:?} after the database came back", restored.elapsed());
}
