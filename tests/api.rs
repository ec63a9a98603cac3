//! The HTTP edge on a real server and database: authentication, the authorisation matrix,
//! request ids, problem+json errors, the auditors' event feed and audit trail, metrics.

mod support;

use aisc_adapters::PostgresEventStore;
use aisc_domain::event_store::{EventStore, ExpectedVersion, NewEvent, StreamId};
use serde_json::json;
use support::{ROLES, TestApp, http};

async fn append(app: &TestApp, stream: &str, count: usize) -> u64 {
    let store = PostgresEventStore::new(app.database.pool.clone());
    let mut position = 0;
    for n in 0..count {
        let event = NewEvent {
            event_id: uuid::Uuid::new_v4(),
            event_type: "NoteRecorded".into(),
            schema_version: 1,
            data: json!({ "n": n }),
            metadata: json!({ "actor": "intake_officer-1", "role": "intake_officer", "request_id": format!("r-{n}") }),
        };
        let stream = StreamId::parse(stream).expect("stream");
        position = store.append(&stream, ExpectedVersion::Any, vec![event]).await.expect("append").position.0;
    }
    position
}

/// Every query route, with the roles that may use it.
const QUERY_ROUTES: [(&str, &[&str]); 5] = [
    ("/api/v1/events", &["auditor", "administrator"]),
    ("/api/v1/streams/note-1", &["auditor", "administrator"]),
    ("/api/v1/audit-trail", &["auditor", "administrator"]),
    ("/api/v1/projections", &["auditor", "administrator"]),
    ("/api/v1/audit/verification", &["auditor", "administrator"]),
];

/// Every command route, with the roles that may use it and a valid body.
const COMMAND_ROUTES: [(&str, &[&str], &str); 1] =
    [("/api/v1/projections/audit_trail/rebuild", &["administrator"], r#"{"reason": "matrix test"}"#)];

async fn wait_until_projections_ran(app: &TestApp) {
    for _ in 0..200 {
        let status = app.get("administrator", "/api/v1/projections").await.json();
        if status["projections"].as_array().is_some_and(|all| all.iter().all(|p| !p["built_version"].is_null())) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the service's projections never ran");
}

async fn post(app: &TestApp, role: &str, path: &str, headers: &[(&str, &str)], body: &str) -> support::TestResponse {
    let bearer = app.bearer(role);
    let mut all = vec![("Authorization", bearer.as_str()), ("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    http(app.port, "POST", path, &all, Some(body)).await
}

#[tokio::test]
async fn every_route_answers_each_role_as_the_matrix_says() {
    let app = TestApp::spawn().await;
    append(&app, "note-1", 2).await;
    for (route, allowed) in QUERY_ROUTES {
        for role in ROLES {
            let response = app.get(role, route).await;
            let expected = if allowed.contains(&role) { 200 } else { 403 };
            assert_eq!(response.status, expected, "{role} on {route}: {}", response.body);
            if expected == 403 {
                assert_eq!(response.header("content-type"), Some("application/problem+json"));
                assert!(response.json()["detail"].as_str().is_some_and(|d| d.contains(role)), "{}", response.body);
            }
        }
        let anonymous = http(app.port, "GET", route, &[], None).await;
        assert_eq!(anonymous.status, 401, "{route}");
        assert_eq!(anonymous.header("www-authenticate"), Some("Bearer"));
        let forged = http(app.port, "GET", route, &[("Authorization", "Bearer aisc_not-a-token")], None).await;
        assert_eq!(forged.status, 401, "{route}");
    }
    wait_until_projections_ran(&app).await;
    for (route, allowed, body) in COMMAND_ROUTES {
        for role in ROLES {
            let response = post(&app, role, route, &[], body).await;
            let allowed = allowed.contains(&role);
            assert!(
                if allowed { response.status < 300 } else { response.status == 403 },
                "{role} on POST {route}: {} {}",
                response.status,
                response.body
            );
        }
        assert_eq!(http(app.port, "POST", route, &[], Some(body)).await.status, 401, "{route}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_revoked_token_is_refused() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("auditor", "/api/v1/events").await.status, 200);
    aisc_api::auth::revoke(&app.database.pool, "auditor-1").await.expect("revoke");
    // The revocation reaches the server's token cache by notification, after the commit.
    let revoked_at = std::time::Instant::now();
    let refused = loop {
        let response = app.get("auditor", "/api/v1/events").await;
        if response.status != 200 || revoked_at.elapsed() > std::time::Duration::from_secs(2) {
            break response;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    assert_eq!(refused.status, 401, "still accepted {:?} after the revocation", revoked_at.elapsed());
    assert_eq!(refused.json()["status"], 401);
    app.stop().await;
}

#[tokio::test]
async fn the_request_id_is_accepted_or_generated_and_always_returned() {
    let app = TestApp::spawn().await;
    let bearer = app.bearer("auditor");
    let given =
        http(app.port, "GET", "/api/v1/events", &[("Authorization", &bearer), ("X-Request-Id", "staff-tool-42")], None)
            .await;
    assert_eq!(given.header("x-request-id"), Some("staff-tool-42"));
    let generated = http(app.port, "GET", "/api/v1/events", &[("Authorization", &bearer)], None).await;
    let id = generated.header("x-request-id").expect("generated id");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    let health = http(app.port, "GET", "/health/live", &[], None).await;
    assert!(health.header("x-request-id").is_some());
    app.stop().await;
}

#[tokio::test]
async fn the_event_feed_pages_all_and_one_stream_in_the_eventstoredb_shape() {
    let app = TestApp::spawn().await;
    append(&app, "note-1", 3).await;
    append(&app, "note-2", 2).await;

    let first = app.get("auditor", "/api/v1/events?limit=2").await;
    assert_eq!(first.status, 200, "{}", first.body);
    let page = first.json();
    let events = page["events"].as_array().expect("events");
    assert_eq!(events.len(), 2);
    for key in [
        "eventId",
        "eventType",
        "streamId",
        "eventNumber",
        "position",
        "schemaVersion",
        "created",
        "data",
        "metadata",
        "hash",
        "previousHash",
    ] {
        assert!(events[0].get(key).is_some(), "{key} in {}", events[0]);
    }
    assert_eq!(events[0]["streamId"], "note-1");
    // Each event carries its hash and its predecessor's, so a page verifies on its own.
    assert_eq!(events[0]["previousHash"], "", "a stream's first event chains from nothing");
    assert_eq!(events[0]["hash"].as_str().map(str::len), Some(64));
    assert_eq!(events[1]["previousHash"], events[0]["hash"]);
    let next = page["next_after"].as_u64().expect("next_after");
    let rest = app.get("auditor", &format!("/api/v1/events?after={next}&limit=10")).await.json();
    assert_eq!(rest["events"].as_array().expect("events").len(), 3);
    assert_eq!(rest["more_pending"], false);

    let stream = app.get("auditor", "/api/v1/streams/note-1?direction=backward&limit=2").await;
    assert_eq!(stream.status, 200);
    assert_eq!(stream.header("etag"), Some("\"2\""));
    let numbers: Vec<u64> = stream.json()["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["eventNumber"].as_u64().expect("n"))
        .collect();
    assert_eq!(numbers, vec![2, 1]);
    let backward = stream.json()["events"].as_array().expect("events").clone();
    assert_eq!(backward[0]["previousHash"], backward[1]["hash"], "the stream page carries the chain too");
    app.stop().await;
}

#[tokio::test]
async fn bad_queries_and_unknown_things_get_problem_details() {
    let app = TestApp::spawn().await;
    append(&app, "note-1", 1).await;
    let cases: [(&str, u16, &str); 7] = [
        ("/api/v1/events?limit=0", 400, "limit"),
        ("/api/v1/events?limit=abc", 400, "limit"),
        ("/api/v1/events?after=-5", 400, "after"),
        ("/api/v1/events?colour=blue", 400, "colour"),
        ("/api/v1/streams/note-404", 404, ""),
        ("/api/v1/audit-trail?recorded_from=yesterday", 400, "recorded_from"),
        ("/api/v1/no-such-resource", 404, ""),
    ];
    for (path, status, field) in cases {
        let response = app.get("auditor", path).await;
        assert_eq!(response.status, status, "{path}: {}", response.body);
        assert_eq!(response.header("content-type"), Some("application/problem+json"), "{path}");
        let problem = response.json();
        assert_eq!(problem["status"], status, "{path}");
        if !field.is_empty() {
            assert_eq!(problem["errors"][0]["field"], field, "{path}: {problem}");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn the_audit_trail_answers_once_it_has_reached_a_given_position() {
    let app = TestApp::spawn().await;
    let position = append(&app, "note-9", 3).await;
    let response = app.get("auditor", &format!("/api/v1/audit-trail?stream_id=note-9&after_position={position}")).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let entries = response.json()["entries"].as_array().expect("entries").clone();
    assert_eq!(entries.len(), 3, "read-your-writes: all three are there");
    assert_eq!(entries[2]["actor"], "intake_officer-1");
    assert_eq!(entries[2]["request_id"], "r-2");
    app.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = TestApp::spawn().await;
    app.get("auditor", "/api/v1/events").await;
    app.get("intake_officer", "/api/v1/events").await;
    let metrics = http(app.port, "GET", "/metrics", &[], None).await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.body.contains("aisc_http_requests_total{route=\"/api/v1/events\",method=\"GET\",status=\"200\"}"),
        "{}",
        metrics.body
    );
    assert!(metrics.body.contains("status=\"403\""));
    assert!(metrics.body.contains("aisc_http_request_duration_seconds_bucket{route=\"/api/v1/events\",le=\"+Inf\"}"));
    assert!(metrics.body.contains("aisc_db_pool_connections{state=\"open\"}"));
    app.stop().await;
}

#[tokio::test]
async fn a_retried_post_with_the_same_idempotency_key_gets_the_first_response() {
    let app = TestApp::spawn().await;
    wait_until_projections_ran(&app).await;
    let route = "/api/v1/projections/audit_trail/rebuild";
    let key = [("Idempotency-Key", "rebuild-2026-11-24")];
    let first = post(&app, "administrator", route, &key, r#"{"reason": "new index"}"#).await;
    assert_eq!(first.status, 202, "{}", first.body);
    assert!(first.header("idempotent-replayed").is_none());
    let retry = post(&app, "administrator", route, &key, r#"{"reason": "new index"}"#).await;
    assert_eq!((retry.status, retry.body.as_str()), (202, first.body.as_str()));
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(retry.header("location"), first.header("location"));

    let reused = post(&app, "administrator", route, &key, r#"{"reason": "another"}"#).await;
    assert_eq!(reused.status, 422, "{}", reused.body);
    assert_eq!(reused.json()["code"], "idempotency_key_reused");
    // Keys belong to their principal: another administrator may use the same key.
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotent_requests")
        .fetch_one(&app.database.pool)
        .await
        .expect("count");
    assert_eq!(stored, 1);
    app.stop().await;
}

#[tokio::test]
async fn bad_command_bodies_get_400_with_the_field_and_oversized_ones_413() {
    let app = TestApp::spawn().await;
    wait_until_projections_ran(&app).await;
    let route = "/api/v1/projections/audit_trail/rebuild";
    let cases: [(&str, u16, &str); 4] = [
        (r#"{"reason": 5}"#, 400, "reason"),
        (r#"{"reason": "x", "colour": "blue"}"#, 400, "colour"),
        (r#"{"reason": "x""#, 400, "body"),
        (r#"{"reason": "x"} trailing"#, 400, "body"),
    ];
    for (body, status, field) in cases {
        let response = post(&app, "administrator", route, &[], body).await;
        assert_eq!(response.status, status, "{body}: {}", response.body);
        assert_eq!(response.header("content-type"), Some("application/problem+json"));
        assert_eq!(response.json()["errors"][0]["field"], field, "{body}: {}", response.body);
    }
    let huge = format!(r#"{{"reason": "{}"}}"#, "x".repeat(300 * 1024));
    let response = post(&app, "administrator", route, &[], &huge).await;
    assert_eq!(response.status, 413, "{}", response.body);
    assert_eq!(response.json()["status"], 413);
    let unknown = post(&app, "administrator", "/api/v1/projections/nothing/rebuild", &[], "{}").await;
    assert_eq!(unknown.status, 404);
    let bad_if_match = post(&app, "administrator", route, &[("If-Match", "yesterday")], "{}").await;
    assert_eq!((bad_if_match.status, bad_if_match.json()["errors"][0]["field"].as_str()), (400, Some("If-Match")));
    app.stop().await;
}

#[tokio::test]
async fn the_verification_endpoint_reports_an_intact_log() {
    let app = TestApp::spawn().await;
    append(&app, "note-3", 4).await;
    let report = app.get("auditor", "/api/v1/audit/verification").await;
    assert_eq!(report.status, 200, "{}", report.body);
    let report = report.json();
    assert_eq!((report["intact"].as_bool(), report["verified"].as_u64()), (Some(true), Some(4)));
    assert_eq!(app.get("auditor", "/api/v1/audit/verification?from=9&to=3").await.status, 400);
    app.stop().await;
}

/// Every route the service registers, as the OpenAPI document should name it, with a concrete
/// path to call.
const EVERY_ROUTE: [(&str, &str, &str); 52] = [
    ("get", "/health/live", "/health/live"),
    ("get", "/health/ready", "/health/ready"),
    ("get", "/metrics", "/metrics"),
    ("get", "/api/v1/openapi.json", "/api/v1/openapi.json"),
    ("get", "/api/v1/events", "/api/v1/events"),
    ("get", "/api/v1/streams/{stream_id}", "/api/v1/streams/note-1"),
    ("get", "/api/v1/audit-trail", "/api/v1/audit-trail"),
    ("get", "/api/v1/projections", "/api/v1/projections"),
    ("get", "/api/v1/audit/verification", "/api/v1/audit/verification"),
    (
        "get",
        "/api/v1/data-subjects/{data_subject_id}/personal-data",
        "/api/v1/data-subjects/6a1c52b0-5d8e-4f7a-9e3b-2c41d07faa19/personal-data",
    ),
    ("get", "/api/v1/exports/applications", "/api/v1/exports/applications"),
    ("get", "/api/v1/exports/disbursements", "/api/v1/exports/disbursements"),
    ("get", "/api/v1/exports/budget", "/api/v1/exports/budget"),
    ("post", "/api/v1/projections/{name}/rebuild", "/api/v1/projections/audit_trail/rebuild"),
    ("get", "/api/v1/batches", "/api/v1/batches"),
    ("post", "/api/v1/batches", "/api/v1/batches"),
    ("post", "/api/v1/batches/{batch_id}/closure", "/api/v1/batches/b1/closure"),
    ("post", "/api/v1/funding-years/{year}/receipts", "/api/v1/funding-years/2025-26/receipts"),
    ("post", "/api/v1/funding-years/{year}/redirection", "/api/v1/funding-years/2025-26/redirection"),
    ("get", "/api/v1/funding-years/{year}", "/api/v1/funding-years/2025-26"),
    ("get", "/api/v1/funding-years/{year}/disbursements", "/api/v1/funding-years/2025-26/disbursements"),
    ("post", "/api/v1/price-schedule/rates", "/api/v1/price-schedule/rates"),
    ("get", "/api/v1/price-schedule", "/api/v1/price-schedule"),
    ("post", "/api/v1/capacity", "/api/v1/capacity"),
    ("post", "/api/v1/usage-imports", "/api/v1/usage-imports"),
    ("get", "/api/v1/capacity", "/api/v1/capacity"),
    ("post", "/api/v1/capacity/redeployments", "/api/v1/capacity/redeployments"),
    ("post", "/api/v1/applications", "/api/v1/applications"),
    (
        "post",
        "/api/v1/data-subjects/{data_subject_id}/erasure",
        "/api/v1/data-subjects/6f1c1d0e-8a39-4e52-9f57-0c3b0e7d4a21/erasure",
    ),
    ("get", "/api/v1/applications", "/api/v1/applications"),
    ("get", "/api/v1/kpis", "/api/v1/kpis"),
    ("get", "/api/v1/batches/{batch_id}/queue", "/api/v1/batches/b1/queue"),
    ("get", "/api/v1/applications/{application_id}", "/api/v1/applications/a1"),
    ("post", "/api/v1/applications/{application_id}/amendments", "/api/v1/applications/a1/amendments"),
    ("post", "/api/v1/applications/{application_id}/withdrawal", "/api/v1/applications/a1/withdrawal"),
    ("post", "/api/v1/applications/{application_id}/eligibility-check", "/api/v1/applications/a1/eligibility-check"),
    ("post", "/api/v1/applications/{application_id}/assessment", "/api/v1/applications/a1/assessment"),
    ("post", "/api/v1/applications/{application_id}/approval", "/api/v1/applications/a1/approval"),
    ("post", "/api/v1/applications/{application_id}/rejection", "/api/v1/applications/a1/rejection"),
    ("post", "/api/v1/applications/{application_id}/deferral", "/api/v1/applications/a1/deferral"),
    ("post", "/api/v1/applications/{application_id}/agreement", "/api/v1/applications/a1/agreement"),
    ("post", "/api/v1/applications/{application_id}/usage", "/api/v1/applications/a1/usage"),
    ("get", "/api/v1/applications/{application_id}/usage", "/api/v1/applications/a1/usage"),
    ("post", "/api/v1/applications/{application_id}/progress-reports", "/api/v1/applications/a1/progress-reports"),
    ("post", "/api/v1/applications/{application_id}/completion", "/api/v1/applications/a1/completion"),
    ("post", "/api/v1/applications/{application_id}/termination", "/api/v1/applications/a1/termination"),
    (
        "post",
        "/api/v1/applications/{application_id}/usage/{usage_id}/reversal",
        "/api/v1/applications/a1/usage/u1/reversal",
    ),
    (
        "post",
        "/api/v1/applications/{application_id}/progress-reports/{due}/review",
        "/api/v1/applications/a1/progress-reports/2025-10-15/review",
    ),
    ("post", "/api/v1/webhooks", "/api/v1/webhooks"),
    ("get", "/api/v1/webhooks", "/api/v1/webhooks"),
    ("get", "/api/v1/webhooks/{webhook_id}", "/api/v1/webhooks/00000000-0000-0000-0000-000000000000"),
    (
        "get",
        "/api/v1/webhooks/{webhook_id}/deliveries",
        "/api/v1/webhooks/00000000-0000-0000-0000-000000000000/deliveries",
    ),
];

/// Follows a local `$ref` such as `#/components/schemas/EventPage`.
fn resolve<'a>(document: &'a serde_json::Value, reference: &str) -> Option<&'a serde_json::Value> {
    reference.strip_prefix("#/")?.split('/').try_fold(document, |node, key| node.get(key))
}

fn collect_refs(node: &serde_json::Value, refs: &mut Vec<String>) {
    match node {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::String(reference)) = map.get("$ref") {
                refs.push(reference.clone());
            }
            map.values().for_each(|value| collect_refs(value, refs));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|value| collect_refs(value, refs)),
        _ => {}
    }
}

#[tokio::test]
async fn the_openapi_document_is_generated_from_the_code_and_covers_every_route() {
    let app = TestApp::spawn().await;
    append(&app, "note-1", 1).await;
    let response = http(app.port, "GET", "/api/v1/openapi.json", &[], None).await;
    assert_eq!(response.status, 200);
    let document = response.json();
    assert!(document["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{}", document["openapi"]);
    assert_eq!(document["info"]["title"], "AISC Subsidy Back Office");
    assert_eq!(document["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let paths = document["paths"].as_object().expect("paths");

    for (method, documented, concrete) in EVERY_ROUTE {
        let operation = &paths.get(documented).unwrap_or_else(|| panic!("{documented} is not documented"))[method];
        assert!(operation.is_object(), "{method} {documented} is not documented");
        assert!(operation["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {documented}");
        if concrete.starts_with("/api/v1/") && documented != "/api/v1/openapi.json" {
            assert!(operation["responses"].get("401").is_some(), "{method} {documented} documents 401");
            assert!(operation["responses"].get("403").is_some(), "{method} {documented} documents 403");
        }
        let bearer = app.bearer("administrator");
        let body = (method == "post").then_some("{}");
        let served = http(app.port, &method.to_uppercase(), concrete, &[("Authorization", &bearer)], body).await;
        assert!(!served.body.contains("no resource at"), "{method} {concrete} is not served: {}", served.body);
    }
    let documented_operations: usize = paths
        .values()
        .map(|item| item.as_object().map_or(0, |ops| ops.keys().filter(|k| *k == "get" || *k == "post").count()))
        .sum();
    assert_eq!(documented_operations, EVERY_ROUTE.len(), "the document names no route the service lacks");

    let mut refs = Vec::new();
    collect_refs(&document, &mut refs);
    assert!(!refs.is_empty());
    for reference in refs {
        assert!(resolve(&document, &reference).is_some(), "dangling {reference}");
    }
    app.stop().await;
}

/// The README's table of refusal codes names every code the domain refuses with, and no other.
#[test]
fn the_readme_lists_every_refusal_code() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    let table: Vec<&str> = readme
        .lines()
        .skip_while(|line| !line.starts_with("| code | refused because |"))
        .take_while(|line| line.starts_with('|'))
        .collect();
    assert!(!table.is_empty(), "README.md has a table headed | code | refused because |");
    let listed: std::collections::BTreeSet<&str> = table
        .iter()
        .skip(2)
        .filter_map(|row| row.split('|').nth(1))
        .flat_map(|codes| codes.split('`').skip(1).step_by(2))
        .collect();
    let codes: std::collections::BTreeSet<&str> =
        aisc_domain::subsidy::error::DomainError::CODES.iter().copied().collect();
    let unlisted: Vec<&&str> = codes.difference(&listed).collect();
    assert!(unlisted.is_empty(), "the README's refusal codes table lacks {unlisted:?}");
    let unknown: Vec<&&str> = listed.difference(&codes).collect();
    assert!(unknown.is_empty(), "the README's refusal codes table names codes the domain lacks: {unknown:?}");
}
