//! Bad input at the HTTP edge: a NUL byte anywhere is a 400 naming the field (never a 500,
//! never an ERROR in the log), authentication comes before any look at the request, the bearer
//! scheme is case-insensitive, identifiers and counts are bounded, and JSON commands need the
//! JSON media type (415 otherwise).

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::{TestApp, TestResponse, http};

/// A 400 problem naming `field`.
#[track_caller]
fn assert_bad_field(response: &TestResponse, field: &str, case: &str) {
    assert_eq!(response.status, 400, "{case}: {}", response.body);
    assert_eq!(response.header("content-type"), Some("application/problem+json"), "{case}");
    assert_eq!(response.json()["errors"][0]["field"], field, "{case}: {}", response.body);
}

async fn post_as(app: &TestApp, role: &str, path: &str, content_type: Option<&str>, body: &str) -> TestResponse {
    let bearer = app.bearer(role);
    let mut headers = vec![("Authorization", bearer.as_str())];
    if let Some(content_type) = content_type {
        headers.push(("Content-Type", content_type));
    }
    http(app.port, "POST", path, &headers, Some(body)).await
}

// ---- Defect 2: a NUL byte in a query or path parameter ----

#[tokio::test]
async fn a_nul_byte_in_a_query_or_path_parameter_is_400_naming_the_parameter() {
    let app = TestApp::spawn().await;
    let reads: [(&str, &str); 16] = [
        ("/api/v1/applications?q=%00", "q"),
        ("/api/v1/applications?q=cantonese%00model", "q"),
        ("/api/v1/applications?category=%00", "category"),
        ("/api/v1/applications?status=%00", "status"),
        ("/api/v1/applications?batch_id=%00", "batch_id"),
        ("/api/v1/batches/%00/queue", "batch_id"),
        ("/api/v1/audit-trail?event_type=%00", "event_type"),
        ("/api/v1/audit-trail?actor=%00", "actor"),
        ("/api/v1/audit-trail?stream_id=%00", "stream_id"),
        ("/api/v1/applications/%00", "application_id"),
        ("/api/v1/applications/%00/usage", "application_id"),
        ("/api/v1/streams/%00", "stream_id"),
        ("/api/v1/kpis?year=%00", "year"),
        ("/api/v1/funding-years/%00", "year"),
        ("/api/v1/funding-years/%00/disbursements", "year"),
        ("/api/v1/events?after=%00", "after"),
    ];
    for (path, field) in reads {
        assert_bad_field(&app.get("auditor", path).await, field, path);
    }
    let commands: [(&str, &str, &str); 4] = [
        ("committee_secretariat", "/api/v1/batches/%00/closure", "batch_id"),
        ("finance_officer", "/api/v1/applications/x1/usage/%00/reversal", "usage_id"),
        ("intake_officer", "/api/v1/applications/%00/withdrawal", "application_id"),
        ("administrator", "/api/v1/projections/%00/rebuild", "name"),
    ];
    for (role, path, field) in commands {
        assert_bad_field(&app.post(role, path, &[], r#"{"reason": "a reason"}"#).await, field, path);
    }
    let csv = "project,service_type,units,period\na1,gpu_node_hour_h800,1,2025-07\n";
    let import = post_as(&app, "finance_officer", "/api/v1/usage-imports?import_id=%00", Some("text/csv"), csv).await;
    assert_bad_field(&import, "import_id", "import_id");
    app.stop().await;
}

/// The real binary's log lines, from both of its output streams.
fn collect_logs(
    child: &mut std::process::Child,
) -> (std::sync::mpsc::Receiver<u16>, Vec<std::thread::JoinHandle<Vec<String>>>) {
    let (port_sender, port_receiver) = std::sync::mpsc::channel();
    let mut readers = Vec::new();
    let streams: [Box<dyn std::io::Read + Send>; 2] =
        [Box::new(child.stdout.take().expect("stdout")), Box::new(child.stderr.take().expect("stderr"))];
    for stream in streams {
        let port_sender = port_sender.clone();
        readers.push(std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let parsed: Value = serde_json::from_str(&line).unwrap_or_default();
                if let Some(port) = parsed["fields"]["port"].as_u64() {
                    let _ = port_sender.send(port as u16);
                }
                lines.push(line);
            }
            lines
        }));
    }
    (port_receiver, readers)
}

fn is_error_line(line: &str) -> bool {
    match serde_json::from_str::<Value>(line) {
        Ok(parsed) => parsed["level"].as_str().is_some_and(|level| level.eq_ignore_ascii_case("error")),
        Err(_) => line.contains(" ERROR ") || line.starts_with("ERROR"),
    }
}

#[tokio::test]
async fn bad_input_with_nul_bytes_is_refused_and_not_logged_as_a_server_error() {
    let database = support::TestDatabase::create().await;
    let roles = [aisc_api::auth::Role::Administrator, aisc_api::auth::Role::Auditor];
    let token = aisc_api::auth::issue(&database.pool, "admin-1", &roles).await.expect("token");
    let bearer = format!("Bearer {token}");
    let mut child = support::aisc()
        .args(["serve"])
        .env("DATABASE_URL", &database.url)
        .env("AISC_BIND", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn aisc serve");
    let (ports, readers) = collect_logs(&mut child);
    let port = ports.recv_timeout(Duration::from_secs(30)).expect("the service reports its port");
    support::wait_until_ready(port).await;

    // A NUL inside a JSON string: the database cannot store it, so it is bad input.
    let rate = r#"{"service_type": "gpu_node_hour_h800", "rate_per_unit_cents": 4250, "unit": "node\u0000hour", "effective_from": "2025-04-01"}"#;
    let headers = [("Authorization", bearer.as_str()), ("Content-Type", "application/json")];
    let refused = http(port, "POST", "/api/v1/price-schedule/rates", &headers, Some(rate)).await;
    assert_bad_field(&refused, "unit", "NUL in a JSON body");
    let query = http(port, "GET", "/api/v1/applications?q=%00", &headers[..1], None).await;
    assert_bad_field(&query, "q", "NUL in a query");
    let path = http(port, "GET", "/api/v1/batches/%00/queue", &headers[..1], None).await;
    assert_bad_field(&path, "batch_id", "NUL in a path");
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&database.pool).await.expect("count");
    assert_eq!(events, 0, "nothing written");

    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    let lines: Vec<String> = readers.into_iter().flat_map(|reader| reader.join().expect("log reader")).collect();
    assert!(lines.iter().any(|line| line.contains("\"status\":400")), "the requests are logged: {lines:#?}");
    let errors: Vec<&String> = lines.iter().filter(|line| is_error_line(line)).collect();
    assert!(errors.is_empty(), "bad input is not a server error: {errors:#?}");
    database.drop_database().await;
}

// ---- Defect 3: authentication first, everywhere; the scheme is case-insensitive ----

/// Every `/api/v1` route (and some that are not routes), each with a malformed parameter or
/// body that would be refused with a 400, 404, 413 or 415 once the caller is known.
const MALFORMED: [(&str, &str); 45] = [
    ("GET", "/api/v1/events?limit=0"),
    ("GET", "/api/v1/streams/%00"),
    ("GET", "/api/v1/audit-trail?recorded_from=yesterday"),
    ("GET", "/api/v1/projections?colour=blue"),
    ("GET", "/api/v1/audit/verification?from=9&to=3"),
    ("POST", "/api/v1/projections/%00/rebuild"),
    ("GET", "/api/v1/batches?colour=blue"),
    ("POST", "/api/v1/batches"),
    ("POST", "/api/v1/batches/%00/closure"),
    ("POST", "/api/v1/funding-years/2025-27/receipts"),
    ("POST", "/api/v1/funding-years/2025-27/redirection"),
    ("GET", "/api/v1/funding-years/2025-27"),
    ("GET", "/api/v1/funding-years/2025-27/disbursements"),
    ("POST", "/api/v1/price-schedule/rates"),
    ("GET", "/api/v1/price-schedule?colour=blue"),
    ("POST", "/api/v1/capacity"),
    ("GET", "/api/v1/capacity?colour=blue"),
    ("POST", "/api/v1/capacity/redeployments"),
    ("POST", "/api/v1/usage-imports?mode=some&import_id=%00"),
    ("POST", "/api/v1/applications"),
    ("GET", "/api/v1/applications?limit=0&q=%00"),
    ("GET", "/api/v1/kpis?year=2025-27"),
    ("GET", "/api/v1/batches/%00/queue"),
    ("GET", "/api/v1/applications/bad%20id"),
    ("POST", "/api/v1/applications/bad%20id/amendments"),
    ("POST", "/api/v1/applications/bad%20id/withdrawal"),
    ("POST", "/api/v1/applications/bad%20id/eligibility-check"),
    ("POST", "/api/v1/applications/bad%20id/assessment"),
    ("POST", "/api/v1/applications/bad%20id/approval"),
    ("POST", "/api/v1/applications/bad%20id/rejection"),
    ("POST", "/api/v1/applications/bad%20id/deferral"),
    ("POST", "/api/v1/applications/bad%20id/agreement"),
    ("POST", "/api/v1/applications/bad%20id/usage"),
    ("GET", "/api/v1/applications/bad%20id/usage"),
    ("POST", "/api/v1/applications/bad%20id/progress-reports"),
    ("POST", "/api/v1/applications/bad%20id/completion"),
    ("POST", "/api/v1/applications/bad%20id/termination"),
    ("POST", "/api/v1/applications/x1/usage/%00/reversal"),
    ("POST", "/api/v1/applications/bad%20id/usage/u1/reversal"),
    ("POST", "/api/v1/applications/x1/progress-reports/not-a-date/review"),
    ("POST", "/api/v1/applications/bad%20id/progress-reports/2025-10-15/review"),
    ("GET", "/api/v1/no-such-resource"),
    ("GET", "/api/v1/applications/x1/approval"),
    ("POST", "/api/v1/applications/x1"),
    ("GET", "/api/%761/events?limit=0"),
];

#[tokio::test]
async fn without_a_valid_token_every_route_answers_401_before_looking_at_the_request() {
    let app = TestApp::spawn().await;
    let credentials: [Option<&str>; 5] =
        [None, Some("Bearer aisc_forged"), Some("Basic YWxhZGRpbjpvcGVuc2VzYW1l"), Some("Bearer"), Some("")];
    for (method, path) in MALFORMED {
        for credential in credentials {
            let mut headers = vec![("Content-Type", "text/plain")];
            if let Some(credential) = credential {
                headers.push(("Authorization", credential));
            }
            let body = (method == "POST").then_some("not json");
            let response = http(app.port, method, path, &headers, body).await;
            let case = format!("{method} {path} with {credential:?}");
            assert_eq!(response.status, 401, "{case}: {}", response.body);
            assert_eq!(response.header("www-authenticate"), Some("Bearer"), "{case}");
            assert_eq!(response.header("content-type"), Some("application/problem+json"), "{case}");
            assert_eq!(response.json()["status"], 401, "{case}");
        }
    }
    // The OpenAPI document and the operations endpoints stay open.
    for path in ["/api/v1/openapi.json", "/health/live", "/metrics"] {
        assert_eq!(http(app.port, "GET", path, &[], None).await.status, 200, "{path}");
    }
    // Known callers get the validation answer.
    assert_eq!(app.get("auditor", "/api/v1/no-such-resource").await.status, 404);
    assert_eq!(app.get("auditor", "/api/v1/applications/bad%20id").await.status, 400);
    app.stop().await;
}

#[tokio::test]
async fn the_bearer_scheme_name_is_case_insensitive() {
    let app = TestApp::spawn().await;
    let token = app.tokens["auditor"].clone();
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        for separator in [" ", "  ", "\t"] {
            let credential = format!("{scheme}{separator}{token}");
            let response = http(app.port, "GET", "/api/v1/events", &[("Authorization", &credential)], None).await;
            assert_eq!(response.status, 200, "{credential:?}: {}", response.body);
        }
    }
    for credential in [token.clone(), format!("Basic {token}"), format!("Bearer{token}"), format!("Bearer x{token}")] {
        let response = http(app.port, "GET", "/api/v1/events", &[("Authorization", &credential)], None).await;
        assert_eq!(response.status, 401, "{credential:?}");
    }
    app.stop().await;
}

// ---- Defect 5: bounded identifiers and counts, and the JSON media type ----

fn approval_with(change: impl FnOnce(&mut Value)) -> String {
    let mut body = json!({
        "meeting": {"meeting_reference": "AISC-COM-2025-06", "decided_on": "2025-06-15", "members_present": ["m1", "m2", "m3"], "members_recused": []},
        "rate_bps": 7000,
        "exceptional_reason": null,
        "allocations": [{"service_type": "gpu_node_hour_h800", "period": "2025-07", "units": 1000}],
        "start": "2025-07-01",
        "end": "2025-07-31",
        "conditions": []
    });
    change(&mut body);
    body.to_string()
}

fn submission_with(change: impl FnOnce(&mut Value)) -> String {
    let mut body = json!({
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
        "undertakings": {"land_in_hong_kong": true, "professionals_to_employ": 3, "contribution": "Local talent"},
        "contact": {"name": "Prof Wong", "email": "wong@cuhk.edu.hk"}
    });
    change(&mut body);
    body.to_string()
}

fn usage(usage_id: &str, units: Value) -> String {
    json!({"usage_id": usage_id, "service_type": "gpu_node_hour_h800", "period": "2025-07", "units": units}).to_string()
}

#[tokio::test]
async fn identifiers_and_counts_out_of_range_are_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    let long = |n: usize| "x".repeat(n);
    let usage_path = "/api/v1/applications/x1/usage";
    let meeting = json!({"meeting_reference": "AISC-COM-2025-06", "decided_on": "2025-06-15", "members_present": ["m1", "m2", "m3"]});
    let kpis = json!({"ai_models_trained_or_deployed": 1, "talents_employed": 2, "mainland_or_overseas_collaborators": 0, "publications": 2_000_000, "patents": 0});
    let cases: Vec<(&str, String, String, &str)> = vec![
        // Usage lines: the id names the line in a URL later, the units fit the ledger with room.
        ("finance_officer", usage_path.into(), usage("", json!(10)), "usage_id"),
        ("finance_officer", usage_path.into(), usage(&long(100_000), json!(10)), "usage_id"),
        ("finance_officer", usage_path.into(), usage(&long(101), json!(10)), "usage_id"),
        ("finance_officer", usage_path.into(), usage("jul/2025", json!(10)), "usage_id"),
        ("finance_officer", usage_path.into(), usage("..", json!(10)), "usage_id"),
        ("finance_officer", usage_path.into(), usage("u1", json!(18_446_744_073_709_551_615_u64)), "units"),
        ("finance_officer", usage_path.into(), usage("u1", json!(1_000_000_001_u64)), "units"),
        (
            "finance_officer",
            format!("/api/v1/applications/x1/usage/{}/reversal", long(101)),
            r#"{"reason": "double charge"}"#.into(),
            "usage_id",
        ),
        // Committee decisions: meeting references, member names, batch ids, allocated units.
        (
            "committee_secretariat",
            "/api/v1/applications/x1/approval".into(),
            approval_with(|b| b["meeting"]["meeting_reference"] = json!(long(101))),
            "meeting.meeting_reference",
        ),
        (
            "committee_secretariat",
            "/api/v1/applications/x1/approval".into(),
            approval_with(|b| b["meeting"]["members_present"][1] = json!("")),
            "meeting.members_present[1]",
        ),
        (
            "committee_secretariat",
            "/api/v1/applications/x1/approval".into(),
            approval_with(|b| b["meeting"]["members_recused"] = json!([long(101)])),
            "meeting.members_recused[0]",
        ),
        (
            "committee_secretariat",
            "/api/v1/applications/x1/approval".into(),
            approval_with(|b| b["allocations"][0]["units"] = json!(1_000_000_001_u64)),
            "allocations[0].units",
        ),
        (
            "committee_secretariat",
            "/api/v1/applications/x1/approval".into(),
            approval_with(|b| b["conditions"] = json!(["ok", long(10_001)])),
            "conditions[1]",
        ),
        (
            "committee_secretariat",
            "/api/v1/applications/x1/deferral".into(),
            json!({"meeting": meeting, "reason": "later", "to_batch_id": long(41)}).to_string(),
            "to_batch_id",
        ),
        (
            "committee_secretariat",
            "/api/v1/batches".into(),
            json!({"batch_id": "2025 q3", "deadline": "2025-08-31", "committee_date": "2025-09-15"}).to_string(),
            "batch_id",
        ),
        ("committee_secretariat", format!("/api/v1/batches/{}/closure", long(41)), "{}".into(), "batch_id"),
        // Set-up: capacity units, redeployment references, service types.
        (
            "administrator",
            "/api/v1/capacity".into(),
            json!({"service_type": "gpu_node_hour_h800", "period": "2025-07", "units": 1_000_000_001_u64}).to_string(),
            "units",
        ),
        (
            "administrator",
            "/api/v1/capacity".into(),
            json!({"service_type": long(65), "period": "2025-07", "units": 10}).to_string(),
            "service_type",
        ),
        (
            "committee_secretariat",
            "/api/v1/capacity/redeployments".into(),
            json!({"service_type": "gpu_node_hour_h800", "period": "2025-07", "units": 10, "decision_reference": long(101)}).to_string(),
            "decision_reference",
        ),
        // Submissions: units per month and head counts.
        (
            "intake_officer",
            "/api/v1/applications".into(),
            submission_with(|b| b["requested_resources"][0]["units_per_month"] = json!(1_000_000_001_u64)),
            "requested_resources[0].units_per_month",
        ),
        (
            "intake_officer",
            "/api/v1/applications".into(),
            submission_with(|b| b["team_size"] = json!(2_000_000)),
            "team_size",
        ),
        (
            "intake_officer",
            "/api/v1/applications".into(),
            submission_with(|b| b["undertakings"]["professionals_to_employ"] = json!(2_000_000)),
            "undertakings.professionals_to_employ",
        ),
        (
            "intake_officer",
            "/api/v1/applications/x1/progress-reports".into(),
            json!({"due": "2025-10-15", "kpis": kpis, "summary": "on track"}).to_string(),
            "kpis.publications",
        ),
        (
            "intake_officer",
            "/api/v1/applications/x1/withdrawal".into(),
            json!({"reason": long(10_001)}).to_string(),
            "reason",
        ),
    ];
    for (role, path, body, field) in cases {
        let response = app.post(role, &path, &[], &body).await;
        let case = format!("{path} {}", &body[..body.len().min(120)]);
        assert_bad_field(&response, field, &case);
    }
    let reads: [(String, &str); 6] = [
        (format!("/api/v1/applications?q={}", long(201)), "q"),
        (format!("/api/v1/applications?batch_id={}", long(41)), "batch_id"),
        (format!("/api/v1/batches/{}/queue", long(41)), "batch_id"),
        (format!("/api/v1/audit-trail?actor={}", long(101)), "actor"),
        (format!("/api/v1/audit-trail?event_type={}", long(101)), "event_type"),
        (format!("/api/v1/audit-trail?stream_id={}", long(201)), "stream_id"),
    ];
    for (path, field) in reads {
        assert_bad_field(&app.get("auditor", &path).await, field, &path);
    }
    let csv = "project,service_type,units,period\na1,gpu_node_hour_h800,1,2025-07\n";
    let import_path = format!("/api/v1/usage-imports?import_id={}", long(49));
    let import = post_as(&app, "finance_officer", &import_path, Some("text/csv"), csv).await;
    assert!(matches!(import.status, 400 | 422), "{}", import.body);
    assert_eq!(import.json()["errors"][0]["field"], "import_id", "{}", import.body);
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&app.database.pool).await.expect("n");
    assert_eq!(events, 0, "nothing written");
    app.stop().await;
}

#[tokio::test]
async fn values_at_the_bounds_are_accepted() {
    let app = TestApp::spawn().await;
    let capacity = json!({"service_type": "gpu_node_hour_h800", "period": "2025-07", "units": 1_000_000_000_u64});
    let declared = app.post("administrator", "/api/v1/capacity", &[], &capacity.to_string()).await;
    assert_eq!(declared.status, 200, "{}", declared.body);
    let batch_id = format!("2025-q3-{}", "x".repeat(32));
    let batch = json!({"batch_id": batch_id, "deadline": "2025-08-31", "committee_date": "2025-09-15"});
    let opened = app.post("committee_secretariat", "/api/v1/batches", &[], &batch.to_string()).await;
    assert_eq!(opened.status, 201, "{}", opened.body);
    let queue = app.get("auditor", &format!("/api/v1/batches/{batch_id}/queue")).await;
    assert_ne!(queue.status, 400, "{}", queue.body);
    app.stop().await;
}

#[tokio::test]
async fn json_commands_need_the_json_media_type() {
    let app = TestApp::spawn().await;
    let capacity = json!({"service_type": "gpu_node_hour_h800", "period": "2025-07", "units": 100}).to_string();
    for content_type in [
        Some("text/plain"),
        None,
        Some("application/x-www-form-urlencoded"),
        Some("application/json; charset=latin1"),
        Some("text/csv"),
    ] {
        let response = post_as(&app, "administrator", "/api/v1/capacity", content_type, &capacity).await;
        assert_eq!(response.status, 415, "{content_type:?}: {}", response.body);
        assert_eq!(response.header("content-type"), Some("application/problem+json"), "{content_type:?}");
        assert_eq!(response.json()["errors"][0]["field"], "Content-Type", "{}", response.body);
    }
    let rebuild =
        post_as(&app, "administrator", "/api/v1/projections/audit_trail/rebuild", Some("text/plain"), "{}").await;
    assert_eq!(rebuild.status, 415, "{}", rebuild.body);
    let accepted = ["application/json", "application/json; charset=utf-8", "Application/JSON;charset=\"UTF-8\""];
    for (content_type, month) in accepted.into_iter().zip(["2025-07", "2025-08", "2025-09"]) {
        let capacity = json!({"service_type": "gpu_node_hour_h800", "period": month, "units": 100}).to_string();
        let response = post_as(&app, "administrator", "/api/v1/capacity", Some(content_type), &capacity).await;
        assert_eq!(response.status, 200, "{content_type}: {}", response.body);
    }
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&app.database.pool).await.expect("n");
    assert_eq!(events, 3, "the three accepted declarations only");

    // A command of no fields may come without a body, and then without a media type.
    let batch = r#"{"batch_id": "2025-q2", "deadline": "2025-05-31", "committee_date": "2025-06-15"}"#;
    assert_eq!(app.post("committee_secretariat", "/api/v1/batches", &[], batch).await.status, 201);
    app.set_day(2025, 6, 2);
    let closed = post_as(&app, "committee_secretariat", "/api/v1/batches/2025-q2/closure", None, "").await;
    assert_eq!(closed.status, 200, "{}", closed.body);
    // The CSV import keeps its own media type.
    let csv = "project,service_type,units,period\na1,gpu_node_hour_h800,1,2025-07\n";
    let import = post_as(&app, "finance_officer", "/api/v1/usage-imports", Some("text/csv"), csv).await;
    assert_ne!(import.status, 415, "{}", import.body);
    app.stop().await;
}
