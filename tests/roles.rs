//! Least privilege on a real server: `aisc serve` under a login of `aisc_service` serves end to
//! end yet cannot rewrite the log; the read-only commands work under `aisc_auditor`, which can
//! write nothing; a pending migration stops the service with one line; a migrating owner that
//! is not a superuser is told what it lacks, then migrates.
//!
//! Roles belong to the whole server, so each test makes login roles of its own, with unique
//! names, and drops them at the end (on a failure too, as far as a destructor can; roles left
//! by a test that died are dropped by a later run, as stale databases are).

mod support;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aisc_adapters::PostgresEventStore;
use aisc_adapters::database::MIGRATOR;
use aisc_domain::event_store::{EventStore, ExpectedVersion, NewEvent, StreamId};
use serde_json::Value;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use support::{TestDatabase, admin_url, http, wait_until_ready};

/// The migration that introduced the roles.
const LEAST_PRIVILEGE: i64 = 20261201000001;

/// Login roles of these tests are named `aisc_test_role_<seconds>_<random>`.
const ROLE_PREFIX: &str = "aisc_test_role_";
const STALE_AFTER_SECS: u64 = 3 * 3600;

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

/// A login role of the server, dropped when it goes out of scope.
struct LoginRole {
    name: String,
    password: String,
}

impl LoginRole {
    /// `CREATE ROLE <unique name> LOGIN PASSWORD … <options>`, e.g. `IN ROLE aisc_service`.
    async fn create(options: &str) -> Self {
        let mut admin = admin().await;
        drop_stale_roles(&mut admin).await;
        let name = format!("{ROLE_PREFIX}{}_{}", now_secs(), &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let password = uuid::Uuid::new_v4().simple().to_string();
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE ROLE {name} LOGIN PASSWORD '{password}' {options}")))
            .execute(&mut admin)
            .await
            .expect("create login role");
        Self { name, password }
    }

    /// `database_url` (the owner's) with this role's credentials instead.
    fn url(&self, database_url: &str) -> String {
        let mut url = url::Url::parse(database_url).expect("database URL");
        url.set_username(&self.name).expect("user name");
        url.set_password(Some(&self.password)).expect("password");
        url.to_string()
    }
}

impl Drop for LoginRole {
    fn drop(&mut self) {
        // Drop may run while a test unwinds inside the tokio runtime: do the work on a thread
        // with a runtime of its own.
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut admin) = PgConnection::connect(&admin_url()).await {
                    let _ =
                        sqlx::raw_sql(AssertSqlSafe(format!("DROP ROLE IF EXISTS {name}"))).execute(&mut admin).await;
                }
            });
        })
        .join();
    }
}

async fn drop_stale_roles(admin: &mut PgConnection) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE rolname LIKE 'aisc\\_test\\_role\\_%'")
            .fetch_all(&mut *admin)
            .await
            .unwrap_or_default();
    for name in names {
        let created = name.trim_start_matches(ROLE_PREFIX).split('_').next().and_then(|secs| secs.parse::<u64>().ok());
        if created.is_some_and(|created| created + STALE_AFTER_SECS < now_secs()) {
            let _ = sqlx::raw_sql(AssertSqlSafe(format!("DROP ROLE IF EXISTS {name}"))).execute(&mut *admin).await;
        }
    }
}

async fn admin() -> PgConnection {
    PgConnection::connect(&admin_url()).await.expect("administrative connection")
}

/// Runs `aisc` with `DATABASE_URL`; gives up (killing it) after a minute.
fn aisc(args: &[&str], database_url: &str) -> (bool, String, String) {
    let output = run_at_most(support::aisc().args(args).env("DATABASE_URL", database_url), Duration::from_secs(60));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn run_at_most(command: &mut Command, limit: Duration) -> Output {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start aisc");
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait for aisc").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("aisc {command:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("aisc's output")
}

/// The statement fails for want of a privilege (SQLSTATE 42501), whatever else it would do.
async fn assert_refused(connection: &mut PgConnection, who: &str, statement: &str) {
    match sqlx::raw_sql(AssertSqlSafe(statement.to_string())).execute(&mut *connection).await {
        Err(sqlx::Error::Database(error)) => {
            assert_eq!(error.code().as_deref(), Some("42501"), "{who}: {statement}: {error}")
        }
        other => panic!("{who} was allowed: {statement}: {other:?}"),
    }
}

fn stop(mut child: std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Until the server has ended every session of `role` (a killed service's leadership locks go
/// with them).
async fn wait_for_sessions_to_end(role: &LoginRole) {
    let mut admin = admin().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE usename = $1")
            .bind(&role.name)
            .fetch_one(&mut admin)
            .await
            .expect("sessions");
        if sessions == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "the sessions of {} did not end", role.name);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn post(port: u16, bearer: &str, path: &str, headers: &[(&str, &str)], body: &str) -> support::TestResponse {
    let mut all = vec![("Authorization", bearer), ("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    http(port, "POST", path, &all, Some(body)).await
}

async fn get(port: u16, bearer: &str, path: &str) -> support::TestResponse {
    http(port, "GET", path, &[("Authorization", bearer)], None).await
}

/// `aisc tokens issue` as the role of `database_url`: the token, or the error.
fn issue_token(database_url: &str, name: &str, roles: &str) -> Result<String, String> {
    let (ok, stdout, stderr) = aisc(&["tokens", "issue", "--name", name, "--roles", roles], database_url);
    if ok { Ok(stdout.lines().last().unwrap_or_default().to_string()) } else { Err(stderr) }
}

/// Opens a batch through the service (with an Idempotency-Key, retried once) and reads it
/// back from the read model: the position of the command.
async fn open_batch_and_read_it_back(port: u16, bearer: &str, batch_id: &str) -> u64 {
    let body = format!(r#"{{"batch_id": "{batch_id}", "deadline": "2099-05-31", "committee_date": "2099-06-15"}}"#);
    let key = [("Idempotency-Key", "open-the-batch")];
    let opened = post(port, bearer, "/api/v1/batches", &key, &body).await;
    assert_eq!(opened.status, 201, "{}", opened.body);
    let position = opened.json()["position"].as_u64().expect("the command's position");
    let retried = post(port, bearer, "/api/v1/batches", &key, &body).await;
    assert_eq!((retried.status, retried.header("idempotent-replayed")), (201, Some("true")), "{}", retried.body);
    let queue = get(port, bearer, &format!("/api/v1/batches/{batch_id}/queue?after_position={position}")).await;
    assert_eq!(queue.status, 200, "{}", queue.body);
    assert_eq!(queue.json()["batch_id"], batch_id);
    position
}

async fn checkpoint(database: &TestDatabase, projection: &str) -> i64 {
    sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = $1")
        .bind(projection)
        .fetch_one(&database.pool)
        .await
        .expect("checkpoint")
}

#[tokio::test]
async fn the_service_role_serves_end_to_end_but_cannot_touch_the_history() {
    let database = TestDatabase::create().await;
    let service = LoginRole::create("IN ROLE aisc_service").await;
    let auditor = LoginRole::create("IN ROLE aisc_auditor").await;
    let (service_url, auditor_url) = (service.url(&database.url), auditor.url(&database.url));

    // Tokens are the owner's to issue: the service and the auditor may not mint any.
    let token = issue_token(&database.url, "staff-1", "committee_secretariat,auditor,administrator").expect("owner");
    let bearer = format!("Bearer {token}");
    for url in [&service_url, &auditor_url] {
        let refused = issue_token(url, "minted", "administrator").expect_err("only the owner issues tokens");
        assert!(refused.contains("permission denied"), "{refused}");
    }

    let (server, port) = support::serve_process(&service_url);
    wait_until_ready(port).await;
    let position = open_batch_and_read_it_back(port, &bearer, "roles-q2").await;
    // A rebuild (in a scratch schema the service is given, then swapped in) and a report as it
    // stood (replayed into another scratch schema, then dropped), both by the service.
    let asked = post(port, &bearer, "/api/v1/projections/audit_trail/rebuild", &[], r#"{"reason": "roles"}"#).await;
    assert_eq!(asked.status, 202, "{}", asked.body);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = get(port, &bearer, "/api/v1/projections").await.json();
        let trail = status["projections"].as_array().and_then(|all| all.iter().find(|p| p["name"] == "audit_trail"));
        if trail.is_some_and(|trail| trail["rebuild_requested"] == false) {
            break;
        }
        assert!(Instant::now() < deadline, "the service did not rebuild the audit trail: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let then = get(port, &bearer, &format!("/api/v1/kpis?as_of={position}")).await;
    assert_eq!(then.status, 200, "{}", then.body);
    // The web pages' sessions: opened at sign-in, read on every page, by the service.
    let signed_in = support::http(
        port,
        "POST",
        "/ui/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(&format!("token={token}&next=%2Fui%2Fbatches")),
    )
    .await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    let cookie = signed_in.header("set-cookie").and_then(|value| value.split(';').next()).expect("cookie").to_string();
    let board = support::http(port, "GET", "/ui/batches", &[("Cookie", cookie.as_str())], None).await;
    assert_eq!(board.status, 200, "{}", board.body);
    let owners: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT tableowner::text FROM pg_tables WHERE schemaname = 'read_models'")
            .fetch_all(&database.pool)
            .await
            .expect("owners");
    assert_eq!(owners, ["aisc_service"], "the read models belong to the service's group role, not to a login");
    let scratch: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'rebuild\\_%' OR nspname LIKE 'as\\_of\\_%'",
    )
    .fetch_one(&database.pool)
    .await
    .expect("scratch schemas");
    assert_eq!(scratch, 0, "scratch schemas are dropped");

    // The read-only commands, under the service and under the auditor, the service running.
    for url in [&service_url, &auditor_url] {
        let (ok, stdout, stderr) = aisc(&["audit", "verify"], url);
        assert!(ok && stdout.starts_with("OK: "), "{stdout}{stderr}");
        let (ok, stdout, stderr) = aisc(&["audit", "export"], url);
        assert!(ok, "{stderr}");
        let exported: Vec<Value> =
            stdout.lines().map(|line| serde_json::from_str(line).expect("an NDJSON line")).collect();
        assert!(exported.iter().any(|event| event["eventType"] == "BatchOpened"), "{stdout}");
        let (ok, stdout, stderr) = aisc(&["projections", "status"], url);
        assert!(ok && stdout.contains("applications") && stdout.contains("audit_trail"), "{stdout}{stderr}");
        let (ok, stdout, stderr) = aisc(&["reports", "kpi", "--format", "json"], url);
        assert!(ok, "{stderr}");
        serde_json::from_str::<Value>(&stdout).expect("the dashboard");
    }

    // What the service may not do, whatever it runs.
    let mut as_service = PgConnection::connect(&service_url).await.expect("connect as the service");
    for statement in [
        "UPDATE events SET data = '{}'::jsonb",
        "DELETE FROM events",
        "TRUNCATE events",
        "ALTER TABLE events DISABLE TRIGGER ALL",
        "DROP TRIGGER events_refuse_update_delete ON events",
        "SET session_replication_role = replica",
        "INSERT INTO events SELECT * FROM events LIMIT 1",
        "UPDATE streams SET version = version + 1",
        "DELETE FROM streams",
        "INSERT INTO streams SELECT * FROM streams LIMIT 1",
        "ALTER FUNCTION append_stream SECURITY INVOKER",
        "CREATE OR REPLACE FUNCTION events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$",
        "CREATE TABLE public.planted (x integer)",
        "CREATE SCHEMA planted",
        "INSERT INTO api_tokens (name, token_hash, roles) VALUES ('minted', '\\x00', '{administrator}')",
        "UPDATE api_tokens SET revoked_at = NULL",
        "DELETE FROM idempotent_requests",
        "DELETE FROM projection_checkpoints",
        "DELETE FROM data_subject_keys",
        "UPDATE ui_sessions SET expires_at = now() + interval '10 years'",
    ] {
        assert_refused(&mut as_service, "the service", statement).await;
    }
    // Nor can it have the owner make it a schema outside the read models' scratch names.
    let misuse = sqlx::query("SELECT public.create_read_model_scratch_schema('public')").execute(&mut as_service).await;
    assert!(misuse.is_err_and(|error| error.to_string().contains("not a scratch schema")));
    let _ = as_service.close().await;

    // The auditor writes nothing at all.
    let mut as_auditor = PgConnection::connect(&auditor_url).await.expect("connect as the auditor");
    let read: i64 =
        sqlx::query_scalar("SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM read_models.audit_trail)")
            .fetch_one(&mut as_auditor)
            .await
            .expect("the auditor reads the log and the read models");
    assert!(read >= 2);
    for statement in [
        "INSERT INTO events SELECT * FROM events LIMIT 1",
        "UPDATE events SET data = data",
        "DELETE FROM events",
        "TRUNCATE events",
        "UPDATE streams SET version = version",
        "SELECT append_stream('note-1', 0::smallint, 0, 0, ARRAY[gen_random_uuid()], ARRAY['NoteRecorded'], ARRAY[1], \
         ARRAY['{}'::jsonb], ARRAY['{}'::jsonb], now(), ARRAY['\\x00'::bytea])",
        "UPDATE projection_checkpoints SET position = 0",
        "INSERT INTO projection_checkpoints (name, version, position) VALUES ('planted', 1, 0)",
        "UPDATE idempotent_requests SET status = 0",
        "INSERT INTO api_tokens (name, token_hash, roles) VALUES ('minted', '\\x00', '{administrator}')",
        "SELECT wrapped_key FROM data_subject_keys",
        "SELECT csrf_token FROM ui_sessions",
        "DELETE FROM read_models.audit_trail",
        "UPDATE read_models.applications_view SET status = 'approved'",
        "CREATE TABLE read_models.planted (x integer)",
        "SELECT public.create_read_model_scratch_schema('rebuild_planted')",
        "SET ROLE aisc_service",
        "SET session_replication_role = replica",
    ] {
        assert_refused(&mut as_auditor, "the auditor", statement).await;
    }

    // No service running and an event it has not applied: the auditor's report reads the read
    // model as it stands and says how far behind it is, writing nothing; the service's role
    // brings the read model up to date itself.
    stop(server);
    wait_for_sessions_to_end(&service).await;
    let store = PostgresEventStore::new(database.pool.clone());
    let note = NewEvent {
        event_id: uuid::Uuid::new_v4(),
        event_type: "NoteRecorded".into(),
        schema_version: 1,
        data: serde_json::json!({"n": 1}),
        metadata: serde_json::json!({"actor": "owner", "role": "administrator"}),
    };
    store.append(&StreamId::parse("note-1").expect("stream"), ExpectedVersion::Any, vec![note]).await.expect("append");
    let before = checkpoint(&database, "kpi").await;
    let (ok, _, stderr) = aisc(&["reports", "kpi"], &auditor_url);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("1 event behind the log"), "{stderr}");
    assert_eq!(checkpoint(&database, "kpi").await, before, "the auditor's report wrote nothing");
    let (ok, _, stderr) = aisc(&["reports", "kpi"], &service_url);
    assert!(ok, "{stderr}");
    assert!(checkpoint(&database, "kpi").await > before, "the service's role applied the event");

    // Everything tried above left the history intact.
    let (ok, stdout, _) = aisc(&["audit", "verify"], &auditor_url);
    assert!(ok && stdout.starts_with("OK: "), "{stdout}");

    let _ = as_auditor.close().await;
    database.drop_database().await;
}

#[tokio::test]
async fn a_pending_migration_stops_the_service_with_one_line_until_the_owner_migrates() {
    let service = LoginRole::create("IN ROLE aisc_service").await;

    // A database as the release before the roles left it: the service is not even allowed to
    // read which migrations it has.
    let previous = MIGRATOR.iter().map(|migration| migration.version).filter(|&v| v < LEAST_PRIVILEGE).max();
    let database = TestDatabase::create_migrated_until(previous.expect("a release before the roles")).await;
    let service_url = service.url(&database.url);
    let refused = run_at_most(
        support::aisc().args(["serve"]).env("DATABASE_URL", &service_url).env("AISC_BIND", "127.0.0.1:0"),
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("error: ") && stderr.contains("; run `aisc migrate` as the owner role"), "{stderr}");
    assert!(!stderr.contains(&service.password), "{stderr}");

    // The service may not migrate; the owner does, and the service starts.
    let (ok, _, stderr) = aisc(&["migrate"], &service_url);
    assert!(!ok && stderr.contains("does not own the event log"), "{stderr}");
    assert!(stderr.contains("run `aisc migrate` as the owner role"), "{stderr}");
    let (ok, _, stderr) = aisc(&["migrate"], &database.url);
    assert!(ok, "{stderr}");
    let (server, port) = support::serve_process(&service_url);
    wait_until_ready(port).await;
    stop(server);

    // A migration this binary has and the database has not applied (its record taken away, as
    // a newer release would find it): named, with what to do.
    let last = MIGRATOR.iter().map(|migration| migration.version).max().expect("migrations");
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE TABLE kept_migration AS SELECT * FROM _sqlx_migrations WHERE version = {last}; \
         DELETE FROM _sqlx_migrations WHERE version = {last}"
    )))
    .execute(&database.pool)
    .await
    .expect("take the record away");
    let refused = run_at_most(
        support::aisc().args(["serve"]).env("DATABASE_URL", &service_url).env("AISC_BIND", "127.0.0.1:0"),
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("error: 1 migration pending at "), "{stderr}");
    assert!(
        stderr.contains(&format!("({last} ")) && stderr.ends_with("; run `aisc migrate` as the owner role\n"),
        "{stderr}"
    );
    sqlx::raw_sql("INSERT INTO _sqlx_migrations SELECT * FROM kept_migration; DROP TABLE kept_migration")
        .execute(&database.pool)
        .await
        .expect("put the record back");

    database.drop_database().await;
}

#[tokio::test]
async fn an_owner_that_is_not_a_superuser_is_told_what_it_lacks_then_migrates_for_the_service() {
    let owner = LoginRole::create("NOSUPERUSER NOCREATEROLE").await;
    let service = LoginRole::create("IN ROLE aisc_service").await;
    let mut admin = admin().await;
    // As the README's administrator may: the group roles, when no migration made them yet.
    sqlx::raw_sql(
        "DO $$ BEGIN CREATE ROLE aisc_service NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$; \
         DO $$ BEGIN CREATE ROLE aisc_auditor NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
    )
    .execute(&mut admin)
    .await
    .expect("group roles");
    let name = format!("aisc_test_{}_{}", now_secs(), uuid::Uuid::new_v4().simple());
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name} OWNER {}", owner.name)))
        .execute(&mut admin)
        .await
        .expect("create the owner's database");
    let owner_url = owner.url(&support::database_url(&admin_url(), &name));
    let service_url = service.url(&owner_url);

    // Not a member of aisc_service, and unable to make itself one: one line saying what to do.
    let (ok, _, stderr) = aisc(&["migrate"], &owner_url);
    assert!(!ok, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("GRANT aisc_service TO {};", owner.name)), "{stderr}");
    assert!(!stderr.contains(&owner.password), "{stderr}");

    sqlx::raw_sql(AssertSqlSafe(format!("GRANT aisc_service TO {}", owner.name)))
        .execute(&mut admin)
        .await
        .expect("grant the owner the service's role");
    let (ok, _, stderr) = aisc(&["migrate"], &owner_url);
    assert!(ok, "{stderr}");
    let token = issue_token(&owner_url, "staff-1", "committee_secretariat").expect("the owner issues tokens");

    // Appends run as this owner, not as a superuser: the service writes through them.
    let (server, port) = support::serve_process(&service_url);
    wait_until_ready(port).await;
    open_batch_and_read_it_back(port, &format!("Bearer {token}"), "owned-q2").await;
    stop(server);
    let mut as_service = PgConnection::connect(&service_url).await.expect("connect as the service");
    assert_refused(&mut as_service, "the service", "ALTER TABLE events DISABLE TRIGGER ALL").await;
    drop(as_service);

    let _ =
        sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(&mut admin).await;
}
