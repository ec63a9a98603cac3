//! Signed seals kept outside the database, through the real `aisc` binary: whoever can write
//! the database can recompute the hash chains, but not a seal signed with a key it never had.
//! The two forgeries the chains cannot see — a rewrite with its stream re-chained, and a
//! stream's last event deleted with its head moved back — are made here exactly as a
//! database administrator would make them, and must fail `audit verify --seal`.

mod support;

use std::path::{Path, PathBuf};

use aisc_adapters::event_hash::{EventContent, chain_hash, content_digest};
use aisc_domain::event_store::{EventStore, ExpectedVersion, NewEvent, ReadDirection, RecordedEvent, StreamId};
use sqlx::Row;

/// What a run of `aisc` left: its exit code and its two outputs.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn aisc(args: &[&str], database_url: &str) -> Run {
    let output = support::aisc().args(args).env("DATABASE_URL", database_url).output().expect("run aisc");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A folder of its own for a test's keys and seals, removed when the test ends.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("aisc-seals-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("scratch folder");
        Scratch(path)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A key pair made by `aisc audit keygen` in `scratch`: (private key path, public key path).
fn keygen(scratch: &Scratch, name: &str) -> (String, String) {
    let private_key = scratch.path(&format!("{name}.pem"));
    let run = aisc(&["audit", "keygen", "--out", &private_key], "postgres://unused");
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    (private_key, scratch.path(&format!("{name}.pub")))
}

/// Seals the log with `private_key` and keeps the seal in `scratch` as `name`.
fn seal(database_url: &str, private_key: &str, scratch: &Scratch, name: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["audit", "seal", "--key-file", private_key];
    args.extend_from_slice(extra);
    let run = aisc(&args, database_url);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    std::fs::write(scratch.path(name), &run.stdout).expect("keep the seal");
    serde_json::from_str(&run.stdout).expect("the seal is JSON, alone on standard output")
}

fn verify_with_seal(database_url: &str, seal_file: &str, public_key: &str) -> Run {
    aisc(&["audit", "verify", "--seal", seal_file, "--public-key", public_key], database_url)
}

/// Usage charges on three applications, appended one by one.
async fn charge(store: &aisc_adapters::PostgresEventStore, from: usize, count: usize) {
    for n in from..from + count {
        let stream = StreamId::parse(format!("application-{}", n % 3)).expect("stream");
        let event = NewEvent {
            event_id: uuid::Uuid::new_v4(),
            event_type: "UsageCharged".into(),
            schema_version: 2,
            data: serde_json::json!({
                "usage_id": format!("u-{n}"),
                "service_type": "gpu_node_hour_h800",
                "period": "2025-07",
                "units": 100 + n,
                "amount_cents": 1_250_000 + n,
                "import_id": null,
            }),
            metadata: serde_json::json!({ "actor": "finance-1", "role": "finance_officer" }),
        };
        store.append(&stream, ExpectedVersion::Any, vec![event]).await.expect("append");
    }
}

async fn database_with_charges(count: usize) -> (support::TestDatabase, aisc_adapters::PostgresEventStore) {
    let database = support::TestDatabase::create().await;
    let store = aisc_adapters::PostgresEventStore::new(database.pool.clone());
    charge(&store, 0, count).await;
    (database, store)
}

/// The log's events in position order. Read straight from the table rather than through
/// `read_all`, which may hold events back behind transactions of other tests on the server.
async fn all_events(store: &aisc_adapters::PostgresEventStore) -> Vec<RecordedEvent> {
    let mut events = Vec::new();
    for stream in ["application-0", "application-1", "application-2"] {
        let stream = StreamId::parse(stream).expect("stream");
        events.extend(store.read_stream(&stream, None, ReadDirection::Forward, 1_000).await.expect("read"));
    }
    events.sort_by_key(|event| event.position);
    events
}

/// The forgery the chains cannot see: as the `postgres` superuser, with the log's triggers
/// off, change an event's data, then recompute its stream's hashes with the store's own
/// functions and move the stream's head to the new last hash.
async fn rewrite_and_rechain(database: &support::TestDatabase, event_id: uuid::Uuid, data: serde_json::Value) {
    let mut connection = database.pool.acquire().await.expect("connection");
    sqlx::query("SET session_replication_role = replica").execute(&mut *connection).await.expect("triggers off");
    let stream: String = sqlx::query_scalar("UPDATE events SET data = $1 WHERE event_id = $2 RETURNING stream_id")
        .bind(&data)
        .bind(event_id)
        .fetch_one(&mut *connection)
        .await
        .expect("rewrite the event");
    let rows = sqlx::query(
        "SELECT global_position, stream_version, event_id, event_type, schema_version, data, metadata, recorded_at \
           FROM events WHERE stream_id = $1 ORDER BY stream_version",
    )
    .bind(&stream)
    .fetch_all(&mut *connection)
    .await
    .expect("the stream");
    let mut previous_hash: Vec<u8> = Vec::new();
    for row in rows {
        let data: serde_json::Value = row.get("data");
        let metadata: serde_json::Value = row.get("metadata");
        let event_type: String = row.get("event_type");
        let schema_version: i32 = row.get("schema_version");
        let version: i64 = row.get("stream_version");
        let position: i64 = row.get("global_position");
        let id: uuid::Uuid = row.get("event_id");
        let digest = content_digest(&EventContent {
            stream_id: &stream,
            event_id: id,
            event_type: &event_type,
            schema_version: u32::try_from(schema_version).expect("schema version"),
            recorded_at: row.get("recorded_at"),
            data: &data,
            metadata: &metadata,
        });
        let hash = chain_hash(&previous_hash, &digest, version as u64, position as u64);
        sqlx::query("UPDATE events SET hash = $1 WHERE event_id = $2")
            .bind(hash.as_slice())
            .bind(id)
            .execute(&mut *connection)
            .await
            .expect("re-chain");
        previous_hash = hash.to_vec();
    }
    sqlx::query("UPDATE streams SET last_hash = $1 WHERE stream_id = $2")
        .bind(&previous_hash)
        .bind(&stream)
        .execute(&mut *connection)
        .await
        .expect("move the head");
    sqlx::query("SET session_replication_role = origin").execute(&mut *connection).await.expect("triggers on");
}

/// The other forgery: delete a stream's last event and move its head back to the one before.
async fn delete_stream_tail(database: &support::TestDatabase, stream: &str) {
    let mut connection = database.pool.acquire().await.expect("connection");
    sqlx::query("SET session_replication_role = replica").execute(&mut *connection).await.expect("triggers off");
    sqlx::query("DELETE FROM events WHERE stream_id = $1 AND stream_version = (SELECT version FROM streams WHERE stream_id = $1)")
        .bind(stream)
        .execute(&mut *connection)
        .await
        .expect("delete the last event");
    sqlx::query(
        "UPDATE streams s SET version = e.stream_version, last_position = e.global_position, last_hash = e.hash \
           FROM events e WHERE s.stream_id = $1 AND e.stream_id = $1 AND e.stream_version = s.version - 1",
    )
    .bind(stream)
    .execute(&mut *connection)
    .await
    .expect("move the head back");
    sqlx::query("SET session_replication_role = origin").execute(&mut *connection).await.expect("triggers on");
}

fn is_hex(text: &str, digits: usize) -> bool {
    text.len() == digits && text.bytes().all(|byte| byte.is_ascii_hexdigit() && !byte.is_ascii_uppercase())
}

#[test]
fn keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites() {
    let scratch = Scratch::new();
    let private_key = scratch.path("seal-key.pem");
    let run = aisc(&["audit", "keygen", "--out", &private_key], "postgres://unused");
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let private_pem = std::fs::read_to_string(&private_key).expect("the private key");
    let public_pem = std::fs::read_to_string(scratch.path("seal-key.pub")).expect("the public key beside it");
    assert!(private_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{private_pem}");
    assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{public_pem}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&private_key).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the private key is its owner's only: {mode:o}");
    }
    let public_key_hex = run.stdout.lines().find_map(|line| line.strip_prefix("public key: ")).expect("printed");
    assert!(is_hex(public_key_hex, 64), "{}", run.stdout);

    // Never over an existing key: a second run is refused and leaves both files as they were.
    let again = aisc(&["audit", "keygen", "--out", &private_key], "postgres://unused");
    assert_eq!(again.code, Some(4), "{}", again.stderr);
    assert_eq!(again.stderr.lines().count(), 1, "{}", again.stderr);
    assert!(again.stderr.contains("already exists") && again.stderr.contains("seal-key.pem"), "{}", again.stderr);
    assert_eq!(std::fs::read_to_string(&private_key).expect("kept"), private_pem);
    // Nor over a public key left where the new one would go; nothing is left behind.
    std::fs::write(scratch.path("other.pub"), "keep me").expect("a file in the way");
    let blocked = aisc(&["audit", "keygen", "--out", &scratch.path("other.pem")], "postgres://unused");
    assert_eq!(blocked.code, Some(4), "{}", blocked.stderr);
    assert!(!Path::new(&scratch.path("other.pem")).exists(), "no private key without its public key");
    assert_eq!(std::fs::read_to_string(scratch.path("other.pub")).expect("kept"), "keep me");
}

#[tokio::test]
async fn a_seal_verifies_on_the_intact_log_and_after_more_events_are_appended() {
    let (database, store) = database_with_charges(9).await;
    let scratch = Scratch::new();
    let (private_key, public_key) = keygen(&scratch, "seal-key");
    let sealed = seal(&database.url, &private_key, &scratch, "seal.json", &[]);
    let events = all_events(&store).await;
    assert_eq!(sealed["format"], "aisc-log-seal/1");
    assert_eq!(sealed["algorithm"], "ed25519");
    assert_eq!(sealed["position"], events[8].position.0, "up to the last settled event");
    assert_eq!(sealed["event_count"], 9);
    assert!(is_hex(sealed["digest"].as_str().expect("digest"), 64), "{sealed}");
    assert!(is_hex(sealed["public_key"].as_str().expect("key"), 64), "{sealed}");
    assert!(is_hex(sealed["signature"].as_str().expect("signature"), 128), "{sealed}");
    assert!(chrono::DateTime::parse_from_rfc3339(sealed["sealed_at"].as_str().expect("time")).is_ok(), "{sealed}");

    let run = verify_with_seal(&database.url, &scratch.path("seal.json"), &public_key);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("OK: 9 events verified"), "{}", run.stdout);
    assert!(
        run.stdout.contains(&format!("SEAL OK: the log up to position {} reproduces the seal", events[8].position)),
        "{}",
        run.stdout
    );

    // The log goes on: events after the seal's position are verified but not sealed.
    charge(&store, 9, 4).await;
    let run = verify_with_seal(&database.url, &scratch.path("seal.json"), &public_key);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("OK: 13 events verified") && run.stdout.contains("SEAL OK"), "{}", run.stdout);

    // A seal up to an earlier position covers exactly the events up to there.
    let partial =
        seal(&database.url, &private_key, &scratch, "partial.json", &["--to", &events[4].position.0.to_string()]);
    assert_eq!(partial["event_count"], 5);
    assert_eq!(partial["position"], events[4].position.0);
    let run = verify_with_seal(&database.url, &scratch.path("partial.json"), &public_key);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    database.drop_database().await;
}

#[tokio::test]
async fn a_rewrite_with_its_stream_rechained_passes_the_chains_but_not_the_seal() {
    let (database, store) = database_with_charges(9).await;
    let scratch = Scratch::new();
    let (private_key, public_key) = keygen(&scratch, "seal-key");
    seal(&database.url, &private_key, &scratch, "seal.json", &[]);

    // A charge in the middle of its stream, so re-chaining has later events to redo.
    let target = all_events(&store).await.into_iter().find(|event| event.stream_version == 1).expect("a charge");
    let mut forged = target.data.clone();
    forged["amount_cents"] = serde_json::json!(125);
    rewrite_and_rechain(&database, target.event_id, forged).await;
    let stored: serde_json::Value = sqlx::query_scalar("SELECT data FROM events WHERE event_id = $1")
        .bind(target.event_id)
        .fetch_one(&database.pool)
        .await
        .expect("the forged event");
    assert_eq!(stored["amount_cents"], 125, "the forgery took");

    let chains_only = aisc(&["audit", "verify"], &database.url);
    assert_eq!(chains_only.code, Some(0), "the forgery is good enough for the chains: {}", chains_only.stdout);
    assert_eq!(chains_only.stdout.trim(), "OK: 9 events verified, every hash chain intact");

    let run = verify_with_seal(&database.url, &scratch.path("seal.json"), &public_key);
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    let seal_line = run.stdout.lines().find(|line| line.starts_with("SEAL BROKEN:")).expect("the seal's verdict");
    assert!(seal_line.contains("no longer reproduces the seal") && seal_line.contains("digest"), "{seal_line}");
    assert!(seal_line.contains("9 events where the seal counted 9"), "{seal_line}");
    database.drop_database().await;
}

#[tokio::test]
async fn a_stream_tail_deleted_with_its_head_moved_back_passes_the_chains_but_not_the_seal() {
    let (database, store) = database_with_charges(9).await;
    let scratch = Scratch::new();
    let (private_key, public_key) = keygen(&scratch, "seal-key");
    seal(&database.url, &private_key, &scratch, "seal.json", &[]);
    // Later events do not hide the deletion.
    charge(&store, 9, 2).await;

    delete_stream_tail(&database, "application-2").await;
    let remaining: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&database.pool).await.expect("count");
    assert_eq!(remaining, 10, "the forgery took");

    let chains_only = aisc(&["audit", "verify"], &database.url);
    assert_eq!(chains_only.code, Some(0), "the forgery is good enough for the chains: {}", chains_only.stdout);

    let run = verify_with_seal(&database.url, &scratch.path("seal.json"), &public_key);
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("OK: 10 events verified"), "{}", run.stdout);
    let seal_line = run.stdout.lines().find(|line| line.starts_with("SEAL BROKEN:")).expect("the seal's verdict");
    assert!(seal_line.contains("8 events where the seal counted 9 (1 fewer"), "{seal_line}");
    database.drop_database().await;
}

#[tokio::test]
async fn a_log_whose_chains_are_broken_is_not_sealed() {
    let (database, store) = database_with_charges(3).await;
    let scratch = Scratch::new();
    let (private_key, _) = keygen(&scratch, "seal-key");
    // Altered behind the triggers' back, without re-chaining: the chains see it.
    let target = &all_events(&store).await[1];
    support::rewrite_event_behind_triggers(
        &database.pool,
        target.event_id,
        r#"metadata = '{"actor": "someone-else"}'"#,
    )
    .await;

    let run = aisc(&["audit", "seal", "--key-file", &private_key], &database.url);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "no seal: {}", run.stdout);
    let error = run.stderr.lines().find(|line| line.starts_with("error: ")).expect("the refusal");
    assert!(
        error.contains("refusing to seal a broken log")
            && error.contains(&format!("position {}", target.position))
            && error.contains("HashMismatch"),
        "{error}"
    );
    database.drop_database().await;
}

#[tokio::test]
async fn a_seal_altered_after_signing_or_checked_with_another_key_is_refused() {
    let (database, _store) = database_with_charges(4).await;
    let scratch = Scratch::new();
    let (private_key, public_key) = keygen(&scratch, "seal-key");
    let (_, other_public_key) = keygen(&scratch, "other-key");
    let sealed = seal(&database.url, &private_key, &scratch, "seal.json", &[]);

    let write_altered = |name: &str, change: &dyn Fn(&mut serde_json::Value)| {
        let mut altered = sealed.clone();
        change(&mut altered);
        std::fs::write(scratch.path(name), altered.to_string()).expect("write");
        scratch.path(name)
    };
    let signature = sealed["signature"].as_str().expect("signature").to_string();
    let flipped = format!("{}{}", if signature.starts_with('0') { "1" } else { "0" }, &signature[1..]);
    let tampered_signature = write_altered("signature.json", &|seal| seal["signature"] = flipped.clone().into());
    // A forger who removed an event would want the seal to count one fewer.
    let tampered_count = write_altered("count.json", &|seal| seal["event_count"] = 3.into());

    for seal_file in [&tampered_signature, &tampered_count] {
        let run = verify_with_seal(&database.url, seal_file, &public_key);
        assert_eq!(run.code, Some(1), "{seal_file}: {}{}", run.stdout, run.stderr);
        assert!(run.stdout.starts_with("SEAL INVALID:") && run.stdout.contains("signature"), "{}", run.stdout);
    }
    let run = verify_with_seal(&database.url, &scratch.path("seal.json"), &other_public_key);
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.starts_with("SEAL INVALID:") && run.stdout.contains("signed by the key"), "{}", run.stdout);
    database.drop_database().await;
}

#[tokio::test]
async fn missing_or_wrong_files_are_one_line_errors_that_do_not_exit_1() {
    let (database, _store) = database_with_charges(2).await;
    let scratch = Scratch::new();
    let (private_key, public_key) = keygen(&scratch, "seal-key");
    seal(&database.url, &private_key, &scratch, "seal.json", &[]);
    std::fs::write(scratch.path("not-a-seal.json"), "{\"hello\": 1}").expect("write");
    let missing = scratch.path("missing.pem");
    let seal_file = scratch.path("seal.json");
    let not_a_seal = scratch.path("not-a-seal.json");

    let cases: [(Vec<&str>, i32, &str); 7] = [
        (vec!["audit", "seal", "--key-file", &missing], 4, "cannot read the private key file"),
        (vec!["audit", "seal", "--key-file", &public_key], 2, "holds a public key"),
        (vec!["audit", "verify", "--seal", &seal_file, "--public-key", &missing], 4, "cannot read the public key file"),
        (vec!["audit", "verify", "--seal", &seal_file, "--public-key", &private_key], 2, "holds a private key"),
        (vec!["audit", "verify", "--seal", &missing, "--public-key", &public_key], 4, "cannot read the seal file"),
        (vec!["audit", "verify", "--seal", &not_a_seal, "--public-key", &public_key], 2, "is not a seal"),
        (vec!["audit", "verify", "--seal", &seal_file], 2, "--public-key"),
    ];
    for (args, code, says) in cases {
        let run = aisc(&args, &database.url);
        assert_eq!(run.code, Some(code), "{args:?}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: one line: {}", run.stderr);
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
    }

    // A private key others can read still seals, with a warning.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&private_key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let run = aisc(&["audit", "seal", "--key-file", &private_key], &database.url);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        assert!(run.stderr.contains("chmod 600"), "{}", run.stderr);
    }

    // A position no seal can cover yet: events may still be written at or below it.
    let run = aisc(&["audit", "seal", "--key-file", &private_key, "--to", "4611686018427387904"], &database.url);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("cannot seal up to position 4611686018427387904"), "{}", run.stderr);
    database.drop_database().await;
}
