//! Erasure of a data subject's personal data, end to end with the real binary: after the key is
//! destroyed no distinctive personal text is left anywhere in the database (events, read
//! models, stored idempotent responses, the keys table) nor in the service's logs; the views
//! show null, commands that would record more of it are refused, the read models rebuild, and
//! the log and a seal taken before the erasure still verify.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aisc_domain::subsidy::application::{SignAgreement, SubmitApplication, Undertakings};
use aisc_domain::subsidy::values::ApplicantCategory;
use serde_json::{Value, json};
use support::scheme::{self as given, act, day};
use support::{TestResponse, http};

/// Personal text no other fixture holds, to search the database and logs for.
const CONTACT_NAME: &str = "Quillon Vandermeer-Okafor";
const CONTACT_EMAIL: &str = "q.vandermeer@zephyrion-labs.hk";
const SUMMARY: &str = "Zephyrion summary: tidal forecasting with sparse buoys";
const CONTRIBUTION: &str = "Zephyrion contribution: mentoring by Dr Marisol Tavikian";
const REPORT_SUMMARY: &str = "Zephyrion report: Tavikian's team tuned the buoy model";
const REVIEW_COMMENTS: &str = "Zephyrion review: ask Okafor for the raw buoy logs";
const OTHER_CONTACT: &str = "Ignatius Brambleworth";
const OTHER_EMAIL: &str = "ig.brambleworth@example-quasar.hk";
const OTHER_SUMMARY: &str = "Quasar summary: lattice cryptanalysis on GPUs";

const EVERY_DISTINCTIVE_TEXT: [&str; 9] = [
    CONTACT_NAME,
    CONTACT_EMAIL,
    SUMMARY,
    CONTRIBUTION,
    REPORT_SUMMARY,
    REVIEW_COMMENTS,
    OTHER_CONTACT,
    OTHER_EMAIL,
    OTHER_SUMMARY,
];

/// A running `aisc serve`, stopped when dropped: a failing assertion does not leave it behind.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `aisc serve` with its standard output and error written to `log`, and its port.
fn serve_logging_to(database_url: &str, log: &std::path::Path) -> (Served, u16) {
    let file = std::fs::File::create(log).expect("log file");
    let output = file.try_clone().expect("log file");
    let child = support::aisc()
        .args(["serve"])
        .env("DATABASE_URL", database_url)
        .env("AISC_BIND", "127.0.0.1:0")
        .env("AISC_LOG_FORMAT", "json")
        .stdout(output)
        .stderr(file)
        .spawn()
        .expect("spawn aisc serve");
    let served = Served(child);
    let port = logged_port(log);
    (served, port)
}

/// The port the service's logs announce, within a minute.
fn logged_port(log: &std::path::Path) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let reader = BufReader::new(std::fs::File::open(log).expect("log file"));
        let port = reader.lines().map_while(Result::ok).find_map(|line| {
            let parsed: Value = serde_json::from_str(&line).unwrap_or_default();
            parsed["fields"]["port"].as_u64()
        });
        if let Some(port) = port {
            return port as u16;
        }
        assert!(Instant::now() < deadline, "no port logged: {}", std::fs::read_to_string(log).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn aisc(args: &[&str], database_url: &str) -> (Option<i32>, String, String) {
    let output = support::aisc().args(args).env("DATABASE_URL", database_url).output().expect("run aisc");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

struct Caller {
    port: u16,
    tokens: std::collections::BTreeMap<&'static str, String>,
}

impl Caller {
    async fn post(&self, role: &str, path: &str, headers: &[(&str, &str)], body: &str) -> TestResponse {
        let bearer = format!("Bearer {}", self.tokens[role]);
        let mut all = vec![("Authorization", bearer.as_str()), ("Content-Type", "application/json")];
        all.extend_from_slice(headers);
        http(self.port, "POST", path, &all, Some(body)).await
    }

    async fn get(&self, role: &str, path: &str) -> TestResponse {
        let bearer = format!("Bearer {}", self.tokens[role]);
        http(self.port, "GET", path, &[("Authorization", &bearer)], None).await
    }
}

#[track_caller]
fn ok(response: &TestResponse) -> Value {
    assert!(response.status < 300, "{} {}", response.status, response.body);
    response.json()
}

#[track_caller]
fn refused(response: &TestResponse, status: u16, code: &str) {
    assert_eq!(response.status, status, "{}", response.body);
    assert_eq!(response.json()["code"], code, "{}", response.body);
}

fn pg_dump(database_url: &str) -> String {
    let output = Command::new("pg_dump")
        .args(["--data-only", database_url])
        .stderr(Stdio::piped())
        .output()
        .expect("run pg_dump");
    assert!(output.status.success(), "pg_dump: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn erased_event_count(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'PersonalDataErased'")
        .fetch_one(pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn an_erased_subject_leaves_no_personal_text_in_the_database_or_logs_and_the_log_still_verifies() {
    let database = support::TestDatabase::create().await;
    let scratch = std::env::temp_dir().join(format!("aisc-erasure-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&scratch).expect("scratch");
    let path = |name: &str| scratch.join(name).to_string_lossy().into_owned();

    // A strategic enterprise's application, submitted, approved and under agreement in 2025
    // (the service's own clock is today's, so its past is recorded through the command service).
    let scheme = given::scheme(&database).await;
    given::set_up(&scheme, given::hkd(10_000_000)).await;
    let id = "erasure-a";
    let mut submission = given::submission("Tidal forecasting");
    submission.category = ApplicantCategory::StrategicEnterprise;
    submission.sub_type = "strategic_enterprise".into();
    submission.project_summary = SUMMARY.into();
    submission.contact.name = CONTACT_NAME.into();
    submission.contact.email = CONTACT_EMAIL.into();
    submission.undertakings =
        Some(Undertakings { land_in_hong_kong: true, professionals_to_employ: 12, contribution: CONTRIBUTION.into() });
    let submit = SubmitApplication { application_id: id.into(), submission };
    act(&scheme, &submit, "intake-1", "intake_officer", day(2025, 5, 2)).await.expect("submit");
    let check = aisc_domain::subsidy::application::CheckEligibility { application_id: id.into() };
    act(&scheme, &check, "intake-1", "intake_officer", day(2025, 6, 2)).await.expect("eligibility");
    given::ready_for_committee(&scheme, &[id]).await;
    act(&scheme, &given::approval(id, None), "sec-1", "committee_secretariat", given::committee_day())
        .await
        .expect("approval");
    let agreement = SignAgreement {
        application_id: id.into(),
        signed_on: day(2025, 6, 30),
        reporting_due_dates: vec![day(2025, 10, 15), day(2026, 1, 15), day(2026, 4, 15)],
    };
    act(&scheme, &agreement, "sec-1", "committee_secretariat", day(2025, 6, 30)).await.expect("agreement");

    let log = scratch.join("serve.log");
    let (server, port) = serve_logging_to(&database.url, &log);
    let mut tokens = std::collections::BTreeMap::new();
    for role in support::ROLES {
        let roles = aisc_api::auth::parse_roles(role).expect("role");
        tokens.insert(role, aisc_api::auth::issue(&database.pool, &format!("{role}-1"), &roles).await.expect("token"));
    }
    let app = Caller { port, tokens };
    support::wait_until_ready(port).await;
    let base = format!("/api/v1/applications/{id}");

    // Over HTTP: a progress report and its review with personal text, under Idempotency-Keys
    // (so their responses are stored), and another application submitted today into an open
    // batch (amendable, for the refusal after its erasure).
    let report = json!({"due": "2025-10-15", "kpis": {"ai_models_trained_or_deployed": 1, "talents_employed": 9, "mainland_or_overseas_collaborators": 0, "publications": 2, "patents": 1}, "summary": REPORT_SUMMARY});
    ok(&app
        .post(
            "intake_officer",
            &format!("{base}/progress-reports"),
            &[("Idempotency-Key", "report-1")],
            &report.to_string(),
        )
        .await);
    let review = json!({"accepted": false, "comments": REVIEW_COMMENTS});
    ok(&app
        .post(
            "assessor",
            &format!("{base}/progress-reports/2025-10-15/review"),
            &[("Idempotency-Key", "review-1")],
            &review.to_string(),
        )
        .await);
    let second_report = json!({"due": "2026-01-15", "kpis": {"ai_models_trained_or_deployed": 1, "talents_employed": 9, "mainland_or_overseas_collaborators": 0, "publications": 2, "patents": 1}, "summary": "the second quarter"});
    ok(&app.post("intake_officer", &format!("{base}/progress-reports"), &[], &second_report.to_string()).await);

    let today = aisc_adapters::clock::today_in_hong_kong();
    let open_batch = json!({"batch_id": "open-now", "deadline": (today + chrono::Days::new(30)).to_string(), "committee_date": (today + chrono::Days::new(45)).to_string()});
    ok(&app.post("committee_secretariat", "/api/v1/batches", &[], &open_batch.to_string()).await);
    let other = json!({
        "organisation": "Quasar Lattice Ltd", "category": "local_institution", "sub_type": "ugc_funded_university",
        "project_title": "Lattice cryptanalysis", "project_summary": OTHER_SUMMARY, "develops_ai_models": true,
        "requested_resources": [{"service_type": "gpu_node_hour_h800", "first_period": "2025-07", "last_period": "2025-12", "units_per_month": 100}],
        "requested_rate_bps": 7000, "team_size": 4, "talents": 2, "mainland_or_overseas_team": false,
        "other_government_funding": false, "undertakings": null,
        "contact": {"name": OTHER_CONTACT, "email": OTHER_EMAIL}
    });
    let submitted = app
        .post("intake_officer", "/api/v1/applications", &[("Idempotency-Key", "submit-other")], &other.to_string())
        .await;
    assert_eq!(submitted.status, 201, "{}", submitted.body);
    let other_base = submitted.header("location").expect("Location").to_string();

    // Before: the staff who deal with the applicant read the plaintext; an auditor, who works
    // on the figures, reads the application with its personal fields withheld.
    let withheld = ok(&app.get("auditor", &base).await);
    assert_eq!(withheld["state"]["personal_data_withheld"], true, "{withheld}");
    assert_eq!(withheld["state"]["submission"]["contact"]["name"], Value::Null, "{withheld}");
    let view = ok(&app.get("intake_officer", &base).await);
    let state = &view["state"];
    assert_eq!(state["personal_data_withheld"], false, "{view}");
    assert_eq!(state["submission"]["contact"]["name"], CONTACT_NAME, "{view}");
    assert_eq!(state["submission"]["undertakings"]["contribution"], CONTRIBUTION);
    assert_eq!(state["personal_data_erased"], false);
    let subject = state["data_subject_id"].as_str().expect("data_subject_id").to_string();
    let other_subject =
        ok(&app.get("auditor", &other_base).await)["state"]["data_subject_id"].as_str().expect("id").to_string();
    let dump = pg_dump(&database.url);
    assert!(!dump.contains(CONTACT_NAME), "sealed from the start: the contact is never stored in plaintext");

    // A seal of the log before the erasure.
    let (private_key, public_key) = (path("seal-key.pem"), path("seal-key.pub"));
    let (code, _, stderr) = aisc(&["audit", "keygen", "--out", &private_key], &database.url);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, seal, stderr) = aisc(&["audit", "seal", "--key-file", &private_key], &database.url);
    assert_eq!(code, Some(0), "{stderr}");
    std::fs::write(path("seal.json"), &seal).expect("seal file");

    // Only an administrator erases; an unknown subject is 404; a bad body 400 or 422.
    let erasure = |subject: &str| format!("/api/v1/data-subjects/{subject}/erasure");
    let body = json!({"reason": "Request DSR-2026-014", "basis": "data_subject_request"}).to_string();
    for role in ["intake_officer", "assessor", "committee_secretariat", "finance_officer", "auditor"] {
        assert_eq!(app.post(role, &erasure(&subject), &[], &body).await.status, 403, "{role}");
    }
    refused(
        &app.post("administrator", &erasure(&uuid::Uuid::new_v4().to_string()), &[], &body).await,
        404,
        "unknown_data_subject",
    );
    assert_eq!(app.post("administrator", &erasure("not-a-uuid"), &[], &body).await.status, 400);
    let unknown_field = json!({"reason": "x", "basis": "data_subject_request", "name": "x"}).to_string();
    assert_eq!(app.post("administrator", &erasure(&subject), &[], &unknown_field).await.status, 400);
    let bad_basis = json!({"reason": "x", "basis": "because"}).to_string();
    assert_eq!(app.post("administrator", &erasure(&subject), &[], &bad_basis).await.status, 400);
    let blank = json!({"reason": "  ", "basis": "data_subject_request"}).to_string();
    refused(&app.post("administrator", &erasure(&subject), &[], &blank).await, 422, "invalid_input");
    assert_eq!(erased_event_count(&database.pool).await, 0, "nothing erased by a refused request");
    assert_eq!(ok(&app.get("auditor", &base).await)["state"]["personal_data_erased"], false);

    // The erasure, then again: one event.
    let erased = ok(&app.post("administrator", &erasure(&subject), &[], &body).await);
    assert_eq!(erased, json!({"data_subject_id": subject, "erased": true, "already_erased": false}));
    let again = ok(&app.post("administrator", &erasure(&subject), &[], &body).await);
    assert_eq!(again["already_erased"], true, "{again}");
    assert_eq!(erased_event_count(&database.pool).await, 1, "a second erasure writes nothing");
    let retention =
        json!({"reason": "Retention period of 7 years ended", "basis": "retention_period_ended"}).to_string();
    ok(&app.post("administrator", &erasure(&other_subject), &[], &retention).await);

    // After: null in the view, even for those who may read personal data; nothing more of the
    // subject is recorded.
    let view = ok(&app.get("intake_officer", &base).await);
    let state = &view["state"];
    assert_eq!(state["personal_data_erased"], true, "{view}");
    for field in [
        "/submission/contact/name",
        "/submission/contact/email",
        "/submission/project_summary",
        "/submission/undertakings/contribution",
    ] {
        assert_eq!(state.pointer(field), Some(&Value::Null), "{field}: {view}");
    }
    assert_eq!(state["submission"]["project_title"], "Tidal forecasting", "what is not personal stays");
    let third_report = json!({"due": "2026-04-15", "kpis": {"ai_models_trained_or_deployed": 1, "talents_employed": 9, "mainland_or_overseas_collaborators": 0, "publications": 2, "patents": 1}, "summary": "more"});
    refused(
        &app.post("intake_officer", &format!("{base}/progress-reports"), &[], &third_report.to_string()).await,
        422,
        "personal_data_erased",
    );
    let review_second = json!({"accepted": true, "comments": "fine"});
    refused(
        &app.post("assessor", &format!("{base}/progress-reports/2026-01-15/review"), &[], &review_second.to_string())
            .await,
        422,
        "personal_data_erased",
    );
    let mut amended = other.clone();
    amended["project_summary"] = json!("amended summary");
    refused(
        &app.post("intake_officer", &format!("{other_base}/amendments"), &[], &amended.to_string()).await,
        422,
        "personal_data_erased",
    );

    // No distinctive text anywhere in the database nor in the service's logs.
    let dump = pg_dump(&database.url);
    assert!(dump.contains("PersonalDataErased"), "the dump holds the log");
    assert!(dump.contains("Tidal forecasting"), "and the read models, with what is not personal in plaintext");
    let logs = std::fs::read_to_string(&log).expect("logs");
    assert!(logs.contains("erasure"), "the logs hold the requests");
    for text in EVERY_DISTINCTIVE_TEXT {
        assert!(!dump.contains(text), "the database still holds {text:?}");
        assert!(!logs.contains(text), "the service's logs hold {text:?}");
    }

    // The lists and views survive a rebuild of the read models.
    let (code, _, stderr) = aisc(&["projections", "rebuild"], &database.url);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(ok(&app.get("auditor", &base).await)["state"]["personal_data_erased"], true);
    let list = ok(&app.get("auditor", "/api/v1/applications").await);
    assert!(list.to_string().contains(id), "{list}");
    ok(&app.get("auditor", "/api/v1/kpis").await);

    // The chains still verify, and so does the seal taken before the erasure.
    let (code, stdout, stderr) = aisc(&["audit", "verify"], &database.url);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let (code, stdout, stderr) =
        aisc(&["audit", "verify", "--seal", &path("seal.json"), "--public-key", &public_key], &database.url);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    // An export of the log verifies on its own, and it and the event feed carry the ciphertext
    // the hashes cover, never the text.
    let (code, export, stderr) = aisc(&["audit", "export"], &database.url);
    assert_eq!(code, Some(0), "{stderr}");
    std::fs::write(path("export.ndjson"), &export).expect("write the export");
    let (code, stdout, stderr) = aisc(&["audit", "verify", "--file", &path("export.ndjson")], &database.url);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let feed = ok(&app.get("auditor", &format!("/api/v1/streams/application-{id}")).await).to_string();
    assert!(feed.contains("xc1."), "the feed shows the sealed fields as stored: {feed}");
    for text in EVERY_DISTINCTIVE_TEXT {
        assert!(!export.contains(text), "the export holds {text:?}");
        assert!(!feed.contains(text), "the feed holds {text:?}");
    }

    drop(server);
    let _ = std::fs::remove_dir_all(&scratch);
    database.drop_database().await;
}

#[tokio::test]
async fn the_command_line_erases_once_and_tells_an_unknown_subject_and_bad_arguments() {
    let database = support::TestDatabase::create().await;
    let scheme = given::scheme(&database).await;
    given::set_up(&scheme, given::hkd(10_000_000)).await;
    given::submitted(&scheme, "cli-a").await;
    let subject = aisc_domain::personal_data::DataSubjectId::of_application("cli-a").to_string();
    let erase = |subject: &str, extra: &[&str]| {
        let mut args = vec!["privacy", "erase", "--subject", subject, "--reason", "DSR-2026-020", "--actor", "dpo-1"];
        args.extend_from_slice(extra);
        aisc(&args, &database.url)
    };

    let (code, stdout, stderr) = erase(&subject, &["--basis", "retention_period_ended"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("erased the personal data"), "{stdout}");
    let (code, stdout, stderr) = erase(&subject, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("already erased"), "{stdout}");
    assert_eq!(erased_event_count(&database.pool).await, 1);
    let basis: String = sqlx::query_scalar("SELECT data->>'basis' FROM events WHERE event_type = 'PersonalDataErased'")
        .fetch_one(&database.pool)
        .await
        .expect("event");
    assert_eq!(basis, "retention_period_ended");

    // A crash after the key was destroyed and before the erasure was recorded: the retry
    // records it.
    given::submitted(&scheme, "cli-b").await;
    let crashed = aisc_domain::personal_data::DataSubjectId::of_application("cli-b");
    given::vault(&database).erase(crashed.0, "dpo-1", "DSR-2026-021").await.expect("key destroyed");
    assert_eq!(erased_event_count(&database.pool).await, 1, "not recorded yet");
    let (code, stdout, stderr) = erase(&crashed.to_string(), &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("already erased"), "{stdout}");
    assert_eq!(erased_event_count(&database.pool).await, 2, "the retry recorded the erasure");

    let (code, _, stderr) = erase(&uuid::Uuid::new_v4().to_string(), &[]);
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("no data subject"), "{stderr}");
    let (code, _, stderr) = erase("not-a-uuid", &[]);
    assert_eq!(code, Some(2), "{stderr}");
    let (code, _, stderr) = erase(&subject, &["--basis", "because"]);
    assert_eq!(code, Some(2), "{stderr}");
    let (code, _, stderr) =
        aisc(&["privacy", "erase", "--subject", &subject, "--reason", " ", "--actor", "dpo-1"], &database.url);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    database.drop_database().await;
}
