//! Exports that verify on their own: `aisc audit export` writes each event with its stored
//! hash and its predecessor's; `aisc audit verify --file` and the independent
//! `tools/verify_export.py` verify the file without the database and name the same first
//! broken record; and `aisc audit verify` exits with codes a script can trust (README).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use aisc_adapters::PostgresEventStore;
use aisc_adapters::event_hash::{EventContent, chain_hash, content_digest, to_hex};
use aisc_domain::event_store::{
    EventStore, ExpectedVersion, NewEvent, Position, RecordedEvent, StreamAppend, StreamId,
};
use serde_json::{Value, json};

const PYTHON_VERIFIER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/verify_export.py");
/// Nothing listens on port 1: a command that tried to connect would fail.
const UNREACHABLE_DATABASE: &str = "postgres://postgres@127.0.0.1:1/aisc_subsidy";

#[derive(Debug)]
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(mut command: Command) -> Outcome {
    let output = command.output().expect("run the command");
    Outcome {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn aisc(args: &[&str], database_url: &str) -> Outcome {
    let mut command = support::aisc();
    command.args(args).env("DATABASE_URL", database_url);
    run(command)
}

/// `aisc audit verify --file`, with a database URL nothing answers at: it must not matter.
fn verify_file_with_aisc(file: &Path) -> Outcome {
    let path = file.to_str().expect("utf-8 path");
    aisc(&["audit", "verify", "--file", path], UNREACHABLE_DATABASE)
}

fn verify_file_with_python(file: &Path) -> Outcome {
    let mut command = Command::new("python3");
    command.arg(PYTHON_VERIFIER).arg(file).env_remove("DATABASE_URL");
    run(command)
}

/// Both verifiers on one file: the same exit code and the same verdict, word for word.
fn verify_with_both(file: &Path) -> Outcome {
    let binary = verify_file_with_aisc(file);
    let python = verify_file_with_python(file);
    assert_eq!(binary.code, python.code, "exit codes differ on {}: {binary:?} / {python:?}", file.display());
    assert_eq!(binary.stdout, python.stdout, "verdicts differ on {}: {binary:?} / {python:?}", file.display());
    binary
}

/// A file of its own in the temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(label: &str, content: &[u8]) -> Self {
        let path = std::env::temp_dir().join(format!("aisc-{label}-{}.ndjson", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, content).expect("write the temporary file");
        Self(path)
    }

    fn with_lines(label: &str, lines: &[String]) -> Self {
        let mut content = lines.join("\n");
        content.push('\n');
        Self::new(label, content.as_bytes())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A log over three streams with data that exercises the canonical form: escapes, non-ASCII
/// keys and values, 64-bit extremes, nesting; one append of two events, one over two streams.
async fn database_with_history() -> (support::TestDatabase, PostgresEventStore) {
    let database = support::TestDatabase::create().await;
    let store = PostgresEventStore::new(database.pool.clone());
    let event = |n: u64| NewEvent {
        event_id: uuid::Uuid::new_v4(),
        event_type: "NoteRecorded".into(),
        schema_version: 1 + (n % 2) as u32,
        data: json!({
            "n": n,
            "note": format!("café \"{n}\"\n\t\u{1}\u{7f}\u{2028} 😀"),
            "amount_cents": i64::MAX,
            "floor": i64::MIN,
            "ceiling": u64::MAX,
            "nested": {"z": [1, null, true, -5], "é": false, "a": {}, "\u{e000}": []},
        }),
        metadata: json!({ "actor": "intake-1", "role": "intake_officer", "request_id": format!("r-{n}") }),
    };
    for n in 0..7_u64 {
        let stream = StreamId::parse(format!("application-{}", n % 3)).expect("stream");
        store.append(&stream, ExpectedVersion::Any, vec![event(n)]).await.expect("append");
    }
    let stream = StreamId::parse("application-1").expect("stream");
    store.append(&stream, ExpectedVersion::Any, vec![event(7), event(8)]).await.expect("append two");
    store
        .append_multi(vec![
            StreamAppend {
                stream: StreamId::parse("application-0").expect("stream"),
                expected: ExpectedVersion::Any,
                events: vec![event(9)],
            },
            StreamAppend {
                stream: StreamId::parse("application-2").expect("stream"),
                expected: ExpectedVersion::Any,
                events: vec![event(10)],
            },
        ])
        .await
        .expect("append to two streams");
    (database, store)
}

async fn all_events(store: &PostgresEventStore) -> Vec<RecordedEvent> {
    store.read_all(Position::START, 1_000).await.expect("read $all").events
}

fn export_lines(database_url: &str, range: &[&str]) -> Vec<String> {
    let mut args = vec!["audit", "export"];
    args.extend_from_slice(range);
    let export = aisc(&args, database_url);
    assert_eq!(export.code, Some(0), "{export:?}");
    export.stdout.lines().map(str::to_owned).collect()
}

fn parse(line: &str) -> Value {
    serde_json::from_str(line).expect("each line is a JSON object")
}

/// The line of the record's content with `change` applied (the record's keys come out in
/// another order, which the canonical form does not see).
fn edited(line: &str, change: impl FnOnce(&mut Value)) -> String {
    let mut record = parse(line);
    change(&mut record);
    record.to_string()
}

/// What a forger with the file alone can do: recompute the record's own hash after an edit.
fn rehashed(record: &mut Value) {
    let created = chrono::DateTime::parse_from_rfc3339(record["created"].as_str().expect("created"))
        .expect("rfc 3339")
        .with_timezone(&chrono::Utc);
    let digest = content_digest(&EventContent {
        stream_id: record["streamId"].as_str().expect("stream"),
        event_id: uuid::Uuid::parse_str(record["eventId"].as_str().expect("id")).expect("uuid"),
        event_type: record["eventType"].as_str().expect("type"),
        schema_version: u32::try_from(record["schemaVersion"].as_u64().expect("schema")).expect("u32"),
        recorded_at: created,
        data: &record["data"],
        metadata: &record["metadata"],
    });
    let previous = hex_bytes(record["previousHash"].as_str().expect("previous"));
    let hash = chain_hash(
        &previous,
        &digest,
        record["eventNumber"].as_u64().expect("version"),
        record["position"].as_u64().expect("position"),
    );
    record["hash"] = Value::String(to_hex(&hash));
}

fn hex_bytes(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|at| u8::from_str_radix(&text[at..at + 2], 16).expect("hex")).collect()
}

/// The 1-based line of the next record of the same stream after `index` (0-based).
fn successor_in_stream(records: &[Value], index: usize) -> usize {
    let stream = &records[index]["streamId"];
    let offset = records[index + 1..].iter().position(|record| &record["streamId"] == stream).expect("a successor");
    index + 1 + offset + 1
}

#[tokio::test]
async fn every_record_carries_its_stored_hash_and_its_predecessors_and_the_export_verifies_without_the_database() {
    let (database, store) = database_with_history().await;
    let events = all_events(&store).await;
    let lines = export_lines(&database.url, &[]);
    assert_eq!(lines.len(), events.len());
    let records: Vec<Value> = lines.iter().map(|line| parse(line)).collect();

    let stored: Vec<(i64, String)> =
        sqlx::query_as("SELECT global_position, encode(hash, 'hex') FROM events ORDER BY global_position")
            .fetch_all(&database.pool)
            .await
            .expect("stored hashes");
    let mut last_hash_of_stream: std::collections::HashMap<String, String> = Default::default();
    for ((record, event), (position, hash)) in records.iter().zip(&events).zip(&stored) {
        assert_eq!(record["position"], *position);
        assert_eq!(record["hash"], *hash, "the stored hash, in lower-case hex");
        let expected_previous = last_hash_of_stream.get(event.stream.as_str()).cloned().unwrap_or_default();
        assert_eq!(record["previousHash"], expected_previous, "empty for version 0, else the predecessor's hash");
        last_hash_of_stream.insert(event.stream.as_str().to_owned(), hash.clone());
        let created = record["created"].as_str().expect("created");
        assert_eq!(created.len(), "2025-07-01T02:03:04.000005Z".len(), "six fractional digits: {created}");
        let reparsed = chrono::DateTime::parse_from_rfc3339(created).expect("rfc 3339");
        assert_eq!(reparsed.timestamp_micros(), event.recorded_at.timestamp_micros(), "no precision lost");
        assert_eq!(record["schemaVersion"], event.schema_version);
    }

    let file = TempFile::with_lines("whole", &lines);
    let verdict = verify_with_both(&file.0);
    assert_eq!(verdict.code, Some(0), "{verdict:?}");
    assert_eq!(
        verdict.stdout.trim(),
        format!("OK: {} records of 3 streams verified, every hash chain intact", lines.len())
    );

    // The HTTP feed carries the same fields.
    let feed = store.chain_links(&events[..2]).await.expect("links");
    assert_eq!(to_hex(&feed[0].hash), records[0]["hash"].as_str().expect("hash"));
    database.drop_database().await;
}

#[tokio::test]
async fn an_export_of_a_range_verifies_from_the_previous_hash_of_each_streams_first_record() {
    let (database, store) = database_with_history().await;
    let events = all_events(&store).await;
    let from = events[4].position.0.to_string();
    let to = events[9].position.0.to_string();
    let lines = export_lines(&database.url, &["--from", &from, "--to", &to]);
    assert_eq!(lines.len(), 6);
    let file = TempFile::with_lines("range", &lines);
    let verdict = verify_with_both(&file.0);
    assert_eq!(verdict.code, Some(0), "{verdict:?}");
    assert_eq!(
        verdict.stdout.trim(),
        "OK: 6 records of 3 streams verified, every hash chain intact; \
         streams starting after version 0 (anchored on their first record's previousHash): 3"
    );

    // The range still catches a record removed between two others of its stream (removing a
    // stream's first record in the range only moves where that stream starts: undetectable).
    let records: Vec<Value> = lines.iter().map(|line| parse(line)).collect();
    let same_stream = |a: &Value, b: &Value| a["streamId"] == b["streamId"];
    let removed = (1..records.len() - 1)
        .find(|index| {
            records[..*index].iter().any(|r| same_stream(r, &records[*index]))
                && records[index + 1..].iter().any(|r| same_stream(r, &records[*index]))
        })
        .expect("a stream with three records in the range");
    // One line up, once the record before it is gone.
    let successor_line = successor_in_stream(&records, removed) - 1;
    let mut shortened = lines.clone();
    shortened.remove(removed);
    let file = TempFile::with_lines("range-gap", &shortened);
    let verdict = verify_with_both(&file.0);
    assert_eq!(verdict.code, Some(1), "{verdict:?}");
    assert!(verdict.stdout.starts_with(&format!("BROKEN: line {successor_line} (")), "{verdict:?}");
    assert!(verdict.stdout.contains("version gap"), "{verdict:?}");
    database.drop_database().await;
}

#[tokio::test]
async fn the_binary_and_the_python_script_name_the_same_first_broken_record() {
    let (database, _store) = database_with_history().await;
    let lines = export_lines(&database.url, &[]);
    let records: Vec<Value> = lines.iter().map(|line| parse(line)).collect();
    // Line 5 (index 4) has a successor in its stream further down.
    let target = 4;
    let successor_line = successor_in_stream(&records, target);
    let successor = successor_line - 1;

    let with = |index: usize, line: String| {
        let mut changed = lines.clone();
        changed[index] = line;
        changed
    };
    let mut cases: Vec<(&str, Vec<String>, usize, &str)> = vec![
        (
            "data edited",
            with(target, edited(&lines[target], |r| r["data"]["n"] = json!(99))),
            target + 1,
            "content digest mismatch: the record's fields",
        ),
        (
            "metadata edited",
            with(target, edited(&lines[target], |r| r["metadata"]["actor"] = json!("someone-else"))),
            target + 1,
            "content digest mismatch",
        ),
        (
            "a string's escape changed",
            with(target, edited(&lines[target], |r| r["data"]["note"] = json!("café \"4\"\n\t\u{2}\u{7f}\u{2028} 😀"))),
            target + 1,
            "content digest mismatch",
        ),
        (
            "recorded a microsecond later",
            with(
                target,
                edited(&lines[target], |r| {
                    let created = r["created"].as_str().expect("created").to_owned();
                    let later =
                        chrono::DateTime::parse_from_rfc3339(&created).expect("time").with_timezone(&chrono::Utc)
                            + chrono::Duration::microseconds(1);
                    r["created"] = json!(later.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
                }),
            ),
            target + 1,
            "content digest mismatch",
        ),
        (
            "schema version changed",
            with(target, edited(&lines[target], |r| r["schemaVersion"] = json!(7))),
            target + 1,
            "content digest mismatch",
        ),
        (
            "data edited and its hash recomputed",
            with(
                target,
                edited(&lines[target], |r| {
                    r["data"]["n"] = json!(99);
                    rehashed(r);
                }),
            ),
            successor_line,
            "chain break: previousHash is not the hash of version",
        ),
        (
            "a fractional number slipped in",
            with(target, edited(&lines[target], |r| r["data"]["n"] = json!(4.5))),
            target + 1,
            "content digest mismatch: data or metadata holds a number that is not a 64-bit integer",
        ),
        (
            "minus zero slipped in",
            with(target, lines[target].replacen("[1,null", "[-0,null", 1)),
            target + 1,
            "not a 64-bit integer",
        ),
        (
            "a line replaced by garbage",
            with(target, "{\"eventId\": ".to_owned()),
            target + 1,
            "malformed record: not a JSON object",
        ),
        (
            "a hash in upper case",
            with(
                target,
                edited(&lines[target], |r| r["hash"] = json!(r["hash"].as_str().expect("hash").to_uppercase())),
            ),
            target + 1,
            "malformed record: hash is missing or not 64 lower-case hex digits",
        ),
        (
            "an event id in upper case",
            with(
                target,
                edited(&lines[target], |r| r["eventId"] = json!(r["eventId"].as_str().expect("id").to_uppercase())),
            ),
            target + 1,
            "malformed record: eventId is missing or not a hyphenated lower-case UUID",
        ),
        (
            "a version 0 naming a predecessor",
            with(0, edited(&lines[0], |r| r["previousHash"] = r["hash"].clone())),
            1,
            "chain break: version 0 must have an empty previousHash",
        ),
    ];
    // The record removed from the middle of its stream: its successor shows the gap.
    let mut removed = lines.clone();
    removed.remove(target);
    cases.push(("a record removed", removed, successor_line - 1, "version gap: expected version"));
    // The forger also fixed the successor's previousHash: the successor's own hash gives it away.
    let mut relinked = lines.clone();
    let mut forged = parse(&lines[target]);
    forged["data"]["n"] = json!(99);
    rehashed(&mut forged);
    relinked[successor] = edited(&lines[successor], |r| r["previousHash"] = forged["hash"].clone());
    relinked[target] = forged.to_string();
    cases.push(("a forged record and a relinked successor", relinked, successor_line, "content digest mismatch"));
    // Two records of different streams swapped.
    let mut swapped = lines.clone();
    let other = (1..lines.len()).find(|index| records[*index]["streamId"] != records[0]["streamId"]).expect("another");
    swapped.swap(other - 1, other);
    cases.push(("two records swapped", swapped, other + 1, "out of order"));
    // A record repeated right after itself, and further down.
    let mut repeated = lines.clone();
    repeated.insert(target + 1, lines[target].clone());
    cases.push(("a record repeated at once", repeated, target + 2, "duplicate: version"));
    let mut repeated_later = lines.clone();
    repeated_later.push(lines[target].clone());
    cases.push(("a record repeated at the end", repeated_later, lines.len() + 1, "out of order: version"));

    for (name, changed, expected_line, expected_problem) in cases {
        let file = TempFile::with_lines("tampered", &changed);
        let verdict = verify_with_both(&file.0);
        assert_eq!(verdict.code, Some(1), "{name}: {verdict:?}");
        assert!(verdict.stdout.starts_with(&format!("BROKEN: line {expected_line}")), "{name}: {verdict:?}");
        assert!(verdict.stdout.contains(expected_problem), "{name}: expected {expected_problem:?} in {verdict:?}");
        assert_eq!(verdict.stdout.lines().count(), 1, "{name}: one verdict line");
    }

    // Blank lines and CRLF line ends (a file passed through an editor) change nothing.
    let mut edited_by_hand = lines.iter().map(|line| format!("{line}\r")).collect::<Vec<_>>();
    edited_by_hand.insert(3, String::new());
    let file = TempFile::with_lines("crlf", &edited_by_hand);
    let verdict = verify_with_both(&file.0);
    assert_eq!(verdict.code, Some(0), "{verdict:?}");
    database.drop_database().await;
}

#[tokio::test]
async fn audit_verify_exits_0_intact_1_tampered_2_bad_arguments_3_database_unreachable_4_unusable_file_5_otherwise() {
    let (database, store) = database_with_history().await;
    let lines = export_lines(&database.url, &[]);
    let intact = TempFile::with_lines("intact", &lines);
    let intact_path = intact.0.to_str().expect("utf-8 path");

    // 0: intact, from the database and from the file.
    assert_eq!(aisc(&["audit", "verify"], &database.url).code, Some(0));
    assert_eq!(verify_file_with_aisc(&intact.0).code, Some(0));

    // 2: bad arguments; nothing is verified.
    for args in [
        vec!["audit", "verify", "--no-such-flag"],
        vec!["audit", "verify", "--from", "9", "--to", "3"],
        vec!["audit", "verify", "--file", intact_path, "--from", "1"],
        vec!["audit", "verify", "--file"],
        vec!["audit", "verify", "--database-url", "postgres://127.0.0.1:not-a-port/aisc"],
    ] {
        let outcome = aisc(&args, &database.url);
        assert_eq!(outcome.code, Some(2), "{args:?}: {outcome:?}");
        assert_eq!(outcome.stderr.lines().count(), 1, "{args:?}: one line: {outcome:?}");
        assert!(outcome.stdout.is_empty(), "{args:?}: no verdict: {outcome:?}");
    }
    assert_eq!(run_python(&[]).code, Some(2));
    assert_eq!(run_python(&["--help"]).code, Some(2));

    // 3: the database cannot be reached; a verdict of tampering would be a lie.
    let outcome = aisc(&["audit", "verify"], UNREACHABLE_DATABASE);
    assert_eq!(outcome.code, Some(3), "{outcome:?}");
    assert!(outcome.stderr.contains("cannot reach PostgreSQL"), "{outcome:?}");
    assert!(outcome.stdout.is_empty(), "{outcome:?}");

    // 4: no file, a directory, something else than an export, an old export, an empty file.
    let missing = std::env::temp_dir().join(format!("aisc-missing-{}.ndjson", uuid::Uuid::new_v4().simple()));
    let not_an_export = TempFile::new("csv", b"project,service_type,units,period\napp-1,gpu_hour,10,2025-07\n");
    let old_export = TempFile::with_lines(
        "old",
        &lines
            .iter()
            .map(|line| {
                edited(line, |r| {
                    let object = r.as_object_mut().expect("object");
                    object.remove("hash");
                    object.remove("previousHash");
                })
            })
            .collect::<Vec<_>>(),
    );
    let empty = TempFile::new("empty", b"");
    let unusable: [(&Path, &str); 5] = [
        (&missing, "cannot read"),
        (&std::env::temp_dir(), "cannot read"),
        (&not_an_export.0, "is not an export"),
        (&old_export.0, "without hashes"),
        (&empty.0, "holds no records"),
    ];
    for (path, message) in unusable {
        let binary = verify_file_with_aisc(path);
        assert_eq!(binary.code, Some(4), "{}: {binary:?}", path.display());
        assert!(binary.stderr.contains(message), "{}: {binary:?}", path.display());
        assert!(binary.stdout.is_empty(), "{}: no verdict: {binary:?}", path.display());
        let python = verify_file_with_python(path);
        assert_eq!(python.code, Some(4), "{}: {python:?}", path.display());
        assert!(python.stderr.contains(message), "{}: {python:?}", path.display());
    }

    // 5: the check ran but its verdict could not be written.
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
    let outcome = run({
        let mut command = support::aisc();
        command.args(["audit", "verify", "--file", intact_path]).stdout(Stdio::from(full));
        command
    });
    assert_eq!(outcome.code, Some(5), "{outcome:?}");

    // 1: evidence of tampering, from the file and from the database.
    let tampered = TempFile::with_lines("tampered", &{
        let mut changed = lines.clone();
        changed[2] = edited(&lines[2], |r| r["data"]["n"] = json!(-1));
        changed
    });
    assert_eq!(verify_file_with_aisc(&tampered.0).code, Some(1));
    let target = &all_events(&store).await[3];
    support::rewrite_event_behind_triggers(&database.pool, target.event_id, r#"data = '{"n": 1000}'"#).await;
    let outcome = aisc(&["audit", "verify"], &database.url);
    assert_eq!(outcome.code, Some(1), "{outcome:?}");
    assert!(outcome.stdout.starts_with(&format!("BROKEN: event at position {} ", target.position)), "{outcome:?}");
    // An export of the tampered database carries the stored hash, so it fails on its own too.
    let file = TempFile::with_lines("tampered-export", &export_lines(&database.url, &[]));
    let verdict = verify_with_both(&file.0);
    assert_eq!(verdict.code, Some(1), "{verdict:?}");
    assert!(verdict.stdout.contains(&target.event_id.to_string()), "{verdict:?}");
    database.drop_database().await;
}

fn run_python(args: &[&str]) -> Outcome {
    let mut command = Command::new("python3");
    command.arg(PYTHON_VERIFIER).args(args);
    run(command)
}
