//! Shared helpers of the end-to-end suites: a fresh, migrated database per test.
#![allow(dead_code)]

pub mod scheme;

use std::time::{SystemTime, UNIX_EPOCH};

use aisc_adapters::database::MIGRATOR;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

/// The server the suites create their databases on: `DATABASE_URL` (any database on it
/// serves as the administrative connection), else the local default.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// Databases left behind by suites that failed this long ago are dropped.
const STALE_AFTER_SECS: u64 = 3 * 3600;

/// A database of its own for one test, migrated; dropped by [`TestDatabase::drop_database`].
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

impl TestDatabase {
    pub async fn create() -> Self {
        Self::create_with_pool_size(10).await
    }

    pub async fn create_with_pool_size(max_connections: u32) -> Self {
        let database = Self::create_unmigrated(max_connections).await;
        MIGRATOR.run(&database.pool).await.expect("migrate test database");
        database
    }

    /// A database migrated up to `last_version` only, as an older release left it.
    pub async fn create_migrated_until(last_version: i64) -> Self {
        let database = Self::create_unmigrated(10).await;
        MIGRATOR.run_to(last_version, &database.pool).await.expect("migrate test database");
        database
    }

    async fn create_unmigrated(max_connections: u32) -> Self {
        let admin_url = admin_url();
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|error| panic!("test suites need PostgreSQL at {admin_url}: {error}"));
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs();
        drop_stale_databases(&mut admin, now).await;
        let name = format!("aisc_test_{now}_{}", uuid::Uuid::new_v4().simple());
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let options: PgConnectOptions = admin_url.parse::<PgConnectOptions>().expect("admin url").database(&name);
        let url = database_url(&admin_url, &name);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .connect_with(options)
            .await
            .expect("connect to test database");
        Self { name, url, pool }
    }

    pub async fn drop_database(self) {
        self.pool.close().await;
        if let Ok(mut admin) = PgConnection::connect(&admin_url()).await {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)))
                .execute(&mut admin)
                .await;
        }
    }
}

/// `admin_url` pointing at database `name` instead.
pub fn database_url(admin_url: &str, name: &str) -> String {
    let (base, query) = admin_url.split_once('?').map_or((admin_url, None), |(b, q)| (b, Some(q)));
    let without_db = match base.rfind('/') {
        Some(slash) if base[..slash].contains("://") && slash > base.find("://").map_or(0, |i| i + 2) => &base[..slash],
        _ => base,
    };
    match query {
        Some(query) => format!("{without_db}/{name}?{query}"),
        None => format!("{without_db}/{name}"),
    }
}

async fn drop_stale_databases(admin: &mut PgConnection, now: u64) {
    let names: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'aisc\\_test\\_%'")
        .fetch_all(&mut *admin)
        .await
        .unwrap_or_default();
    for name in names {
        let created = name.split('_').nth(2).and_then(|secs| secs.parse::<u64>().ok());
        if created.is_some_and(|created| created + STALE_AFTER_SECS < now) {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                .execute(&mut *admin)
                .await;
        }
    }
}

/// A plain HTTP/1.1 GET on localhost: status code and body.
pub async fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:?}")))?;
    let body = text.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// An HTTP response as the tests see it.
#[derive(Debug)]
pub struct TestResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl TestResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.body))
    }
}

/// A plain HTTP/1.1 request on localhost (one connection per request).
pub async fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> TestResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect to the service");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method == "POST" {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("receive");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect::<Vec<_>>();
    let chunked =
        headers.iter().any(|(name, value)| name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_string() };
    TestResponse { status, headers, body }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// The real application on port 0 over a fresh database, with a token per role.
pub struct TestApp {
    pub port: u16,
    pub database: TestDatabase,
    pub tokens: std::collections::BTreeMap<&'static str, String>,
    /// The service's today; tests move it.
    pub day: std::sync::Arc<std::sync::Mutex<chrono::NaiveDate>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub const ROLES: [&str; 6] =
    ["intake_officer", "assessor", "committee_secretariat", "finance_officer", "auditor", "administrator"];

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_configured(|_| {}).await
    }

    /// [`TestApp::spawn`] with the service's configuration changed by `configure`.
    pub async fn spawn_configured(configure: impl FnOnce(&mut aisc_api::ServiceConfig)) -> Self {
        let database = TestDatabase::create_with_pool_size(20).await;
        let day =
            std::sync::Arc::new(std::sync::Mutex::new(chrono::NaiveDate::from_ymd_opt(2025, 5, 2).expect("date")));
        let mut config = aisc_api::ServiceConfig::new(database.url.clone(), "127.0.0.1:0");
        config.kek_file = Some(TEST_KEK_FILE.into());
        config.clock = aisc_adapters::clock::Clock::set_by(day.clone());
        configure(&mut config);
        let application =
            aisc_api::Application::build_with_pool(config, database.pool.clone()).expect("build application");
        let port = application.port();
        let server = tokio::spawn(application.run_until_stopped());
        let mut tokens = std::collections::BTreeMap::new();
        for role in ROLES {
            let roles = aisc_api::auth::parse_roles(role).expect("role");
            let token = aisc_api::auth::issue(&database.pool, &format!("{role}-1"), &roles).await.expect("issue token");
            tokens.insert(role, token);
        }
        wait_until_ready(port).await;
        Self { port, database, tokens, day, server }
    }

    pub fn bearer(&self, role: &str) -> String {
        format!("Bearer {}", self.tokens[role])
    }

    pub async fn get(&self, role: &str, path: &str) -> TestResponse {
        http(self.port, "GET", path, &[("Authorization", &self.bearer(role))], None).await
    }

    pub fn set_day(&self, year: i32, month: u32, day: u32) {
        if let Ok(mut today) = self.day.lock() {
            *today = chrono::NaiveDate::from_ymd_opt(year, month, day).expect("date");
        }
    }

    /// POSTs a JSON body as `role`, with extra headers.
    pub async fn post(&self, role: &str, path: &str, headers: &[(&str, &str)], body: &str) -> TestResponse {
        let bearer = self.bearer(role);
        let mut all = vec![("Authorization", bearer.as_str()), ("Content-Type", "application/json")];
        all.extend_from_slice(headers);
        http(self.port, "POST", path, &all, Some(body)).await
    }

    pub async fn stop(self) {
        self.server.abort();
        let _ = self.server.await;
        self.database.drop_database().await;
    }
}

/// A TCP proxy between the service and PostgreSQL that a test can cut and restore, to cause
/// a database outage without disturbing the server other tests share.
pub struct OutageProxy {
    pub port: u16,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
    silent: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl OutageProxy {
    pub async fn start(target_port: u16) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (cut, cuts) = tokio::sync::watch::channel(0_u64);
        let (silent, silences) = tokio::sync::watch::channel(false);
        let task = {
            let down = down.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    if down.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let mut cuts = cuts.clone();
                    // Only cuts after this connection was opened end it.
                    cuts.borrow_and_update();
                    let silences = silences.clone();
                    tokio::spawn(async move {
                        let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target_port)).await else {
                            return;
                        };
                        let (client_reads, client_writes) = client.into_split();
                        let (server_reads, server_writes) = server.into_split();
                        tokio::select! {
                            _ = forward(client_reads, server_writes, silences.clone()) => {}
                            _ = forward(server_reads, client_writes, silences) => {}
                            _ = cuts.changed() => {}
                        }
                    });
                }
            })
        };
        Self { port, down, cut, silent, task }
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.down.store(true, std::sync::atomic::Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    /// A silent partition: connections stay open (new ones are accepted) but no byte passes
    /// either way until [`OutageProxy::restore`]; then what was held is delivered, as TCP
    /// would once the network heals.
    pub fn black_hole(&self) {
        self.silent.send_replace(true);
    }

    pub fn restore(&self) {
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
        self.silent.send_replace(false);
    }
}

/// Copies one direction of a proxied connection, holding the bytes while the network is silent.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut silent: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0_u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        while *silent.borrow_and_update() {
            if silent.changed().await.is_err() {
                return;
            }
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

impl Drop for OutageProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits until the service says it is ready (its read models are built).
pub async fn wait_until_ready(port: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok((200, _)) = http_get(port, "/health/ready").await {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the service did not become ready within 30 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// `aisc serve` as a process of its own on `database_url`, on a port the system chooses, and
/// that port as the service logs it. Its logs are read for the port, then discarded.
pub fn serve_process(database_url: &str) -> (std::process::Child, u16) {
    serve_process_with(database_url, &[])
}

/// [`serve_process`] with more environment variables (its configuration).
pub fn serve_process_with(database_url: &str, environment: &[(&str, &str)]) -> (std::process::Child, u16) {
    use std::io::BufRead;
    let mut child = aisc()
        .args(["serve"])
        .env("DATABASE_URL", database_url)
        .env("AISC_BIND", "127.0.0.1:0")
        .envs(environment.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn aisc serve");
    // The logs (standard error) announce the port.
    let stdout = child.stderr.take().expect("stderr");
    let (port_sender, port_receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let parsed: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if let Some(port) = parsed["fields"]["port"].as_u64() {
                let _ = port_sender.send(port as u16);
            }
        }
    });
    let port = port_receiver.recv_timeout(std::time::Duration::from_secs(60)).expect("the service's port");
    (child, port)
}

/// Changes a stored event as someone with the owner's rights could: behind the log's
/// append-only triggers (`session_replication_role = replica`) and without re-chaining.
/// `assignments` is the SQL `SET` list, such as `data = '{"n": 1}'`.
pub async fn rewrite_event_behind_triggers(pool: &sqlx::PgPool, event_id: uuid::Uuid, assignments: &str) {
    let mut connection = pool.acquire().await.expect("connection");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET session_replication_role = replica; \
         UPDATE events SET {assignments} WHERE event_id = '{event_id}'; \
         SET session_replication_role = origin;"
    )))
    .execute(&mut *connection)
    .await
    .expect("tamper");
}

/// The key-encryption key of personal data every suite runs with (a test key, never a
/// service's).
pub const TEST_KEK_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-kek.hex");

/// The service's binary, run with the suites' key-encryption key.
pub fn aisc() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_aisc"));
    command.env("AISC_KEK_FILE", TEST_KEK_FILE);
    command
}
