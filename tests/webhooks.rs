//! Notifications to webhooks, end to end: a local receiver gets signed notifications of
//! decisions recorded through the API, in order per application, retried under the same
//! delivery id until it answers 2xx; the clock's notifications are recorded once per due date;
//! destinations off the allow-list are refused; only administrators manage webhooks.

mod support;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{KeyInit, Mac};
use serde_json::{Value, json};
use support::{ROLES, TestApp, http};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "a-webhook-secret-of-some-length";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    /// Header names in lower case.
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }
}

/// A webhook receiver on a local port: records each request and answers the next status of its
/// script (200 once the script is used up).
struct Receiver {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    statuses: Arc<Mutex<VecDeque<u16>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(script: &[u16]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the receiver");
        let port = listener.local_addr().expect("address").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let statuses = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<u16>>()));
        let (log, answers) = (received.clone(), statuses.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (log, answers) = (log.clone(), answers.clone());
                tokio::spawn(async move {
                    let Some(request) = read_request(&mut socket).await else { return };
                    let status = answers.lock().expect("script").pop_front().unwrap_or(200);
                    log.lock().expect("log").push(request);
                    let answer =
                        format!("HTTP/1.1 {status} Scripted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        Self { port, received, statuses, task }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/aisc", self.port)
    }

    fn allowed_host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("log").clone()
    }

    /// Waits until `count` requests have come (at most 20 s), and answers them all.
    async fn wait_for(&self, count: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            assert!(Instant::now() < deadline, "{count} requests expected, {} came: {received:#?}", received.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one HTTP/1.1 request: its headers and a body of `Content-Length` bytes.
async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<Received> {
    let mut data = Vec::new();
    let mut chunk = [0_u8; 4096];
    let head_end = loop {
        if let Some(end) = data.windows(4).position(|window| window == b"\r\n\r\n") {
            break end;
        }
        let read = socket.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        data.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8(data[..head_end].to_vec()).ok()?;
    let mut headers = BTreeMap::new();
    for line in head.split("\r\n").skip(1) {
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let length: usize = headers.get("content-length")?.parse().ok()?;
    let mut body = data[head_end + 4..].to_vec();
    while body.len() < length {
        let read = socket.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..read]);
    }
    Some(Received { headers, body })
}

/// `sha256=<hex>` of the HMAC-SHA256 of `body` under `secret`, computed here independently of
/// the service.
fn expected_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|byte| format!("{byte:02x}")).collect();
    format!("sha256={hex}")
}

/// The service allowing `allowed` hosts, retrying after 300 ms, looking for due deliveries every
/// 50 ms, and leaving the clock's notifications to the tests (after the first run at start).
async fn app_allowing(allowed: &str) -> TestApp {
    let allowed = allowed.to_string();
    TestApp::spawn_configured(move |config| {
        config.webhooks.allowed_hosts = aisc_api::webhooks::AllowedHosts::parse(&allowed).expect("allow-list");
        config.webhooks.first_retry = Duration::from_millis(300);
        config.webhooks.poll_interval = Duration::from_millis(50);
        config.webhooks.attempt_timeout = Duration::from_secs(2);
        config.webhooks.schedule_interval = Duration::from_secs(3600);
    })
    .await
}

async fn register(app: &TestApp, url: &str, kinds: &[&str]) -> String {
    let body = json!({"url": url, "secret": SECRET, "event_kinds": kinds}).to_string();
    let registered = app.post("administrator", "/api/v1/webhooks", &[], &body).await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    let location = registered.header("location").expect("Location").to_string();
    let view = registered.json();
    assert_eq!(location, format!("/api/v1/webhooks/{}", view["webhook_id"].as_str().expect("id")));
    assert!(!registered.body.contains(SECRET), "the secret is never answered: {}", registered.body);
    location
}

#[track_caller]
fn ok(response: &support::TestResponse) -> Value {
    assert!(response.status < 300, "{} {}", response.status, response.body);
    response.json()
}

/// Batch, funding, price and capacity, as the set-up roles record them.
async fn set_up(app: &TestApp) {
    app.set_day(2025, 4, 1);
    ok(&app
        .post(
            "committee_secretariat",
            "/api/v1/batches",
            &[],
            r#"{"batch_id": "2025-q2", "deadline": "2025-05-31", "committee_date": "2025-06-15"}"#,
        )
        .await);
    ok(&app
        .post(
            "finance_officer",
            "/api/v1/funding-years/2025-26/receipts",
            &[],
            r#"{"line": "computing_power_subsidy", "amount_cents": 85700000000, "received_on": "2025-04-01"}"#,
        )
        .await);
    ok(&app.post("administrator", "/api/v1/price-schedule/rates", &[], r#"{"service_type": "gpu_node_hour_h800", "rate_per_unit_cents": 4250, "unit": "node-hour", "effective_from": "2025-04-01"}"#).await);
    for month in ["2025-07", "2025-08", "2025-09", "2025-10", "2025-11", "2025-12"] {
        let body = json!({"service_type": "gpu_node_hour_h800", "period": month, "units": 10000}).to_string();
        ok(&app.post("administrator", "/api/v1/capacity", &[], &body).await);
    }
}

/// Submitted, eligible, batch closed, assessed: the application's id, on the committee's day.
async fn assessed_application(app: &TestApp, title: &str) -> String {
    app.set_day(2025, 5, 2);
    let submission = json!({
        "organisation": "The Chinese University of Hong Kong",
        "category": "local_institution",
        "sub_type": "ugc_funded_university",
        "project_title": title,
        "project_summary": "Pre-training on de-identified scans.",
        "develops_ai_models": true,
        "requested_resources": [{"service_type": "gpu_node_hour_h800", "first_period": "2025-07", "last_period": "2025-12", "units_per_month": 1000}],
        "requested_rate_bps": 7000,
        "team_size": 14,
        "talents": 9,
        "mainland_or_overseas_team": false,
        "other_government_funding": false,
        "undertakings": null,
        "contact": {"name": "Prof Wong", "email": "wong@cuhk.edu.hk"}
    });
    let submitted = app.post("intake_officer", "/api/v1/applications", &[], &submission.to_string()).await;
    assert_eq!(submitted.status, 201, "{}", submitted.body);
    let id = submitted.header("location").expect("Location").rsplit('/').next().expect("id").to_string();
    app.set_day(2025, 6, 2);
    ok(&app.post("intake_officer", &format!("/api/v1/applications/{id}/eligibility-check"), &[], "{}").await);
    let _ = app.post("committee_secretariat", "/api/v1/batches/2025-q2/closure", &[], "{}").await;
    let assessment = json!({"scores": {"a_meets_hong_kong_needs": 8, "b_requirement_reasonable": 7, "c_feasibility_and_outcome": 8, "d_capability": 9}, "recommended_rate_bps": 7000, "recommended_ceiling_cents": 50_000_000, "duration_months": 6, "no_conflict_declared": true});
    ok(&app.post("assessor", &format!("/api/v1/applications/{id}/assessment"), &[], &assessment.to_string()).await);
    app.set_day(2025, 6, 15);
    id
}

/// The committee's approval at 70 % of 1,000 GPU node-hours a month, July to December 2025:
/// the ceiling is 6,000 × HK$42.50 × 70 % = HK$178,500.00.
fn approval() -> String {
    let allocations: Vec<Value> = ["2025-07", "2025-08", "2025-09", "2025-10", "2025-11", "2025-12"]
        .iter()
        .map(|month| json!({"service_type": "gpu_node_hour_h800", "period": month, "units": 1000}))
        .collect();
    json!({
        "meeting": {"meeting_reference": "AISC-COM-2025-06", "decided_on": "2025-06-15", "members_present": ["m1", "m2", "m3"], "members_recused": ["m4"]},
        "rate_bps": 7000,
        "exceptional_reason": null,
        "allocations": allocations,
        "start": "2025-07-01",
        "end": "2025-12-31",
        "conditions": []
    })
    .to_string()
}

const AGREEMENT: &str = r#"{"signed_on": "2025-06-30", "reporting_due_dates": ["2025-10-15", "2026-01-15"]}"#;

async fn deliveries(app: &TestApp, webhook: &str) -> Value {
    ok(&app.get("administrator", &format!("{webhook}/deliveries")).await)
}

#[tokio::test]
async fn a_decision_recorded_through_the_api_reaches_the_receiver_signed_and_is_listed() {
    let receiver = Receiver::start(&[]).await;
    let app = app_allowing(&receiver.allowed_host()).await;
    let webhook = register(&app, &receiver.url(), &["decision.recorded"]).await;
    set_up(&app).await;
    let id = assessed_application(&app, "Medical imaging foundation model").await;
    ok(&app.post("committee_secretariat", &format!("/api/v1/applications/{id}/approval"), &[], &approval()).await);

    let received = receiver.wait_for(1).await;
    let delivery = &received[0];
    assert_eq!(delivery.header("x-aisc-signature"), expected_signature(SECRET, &delivery.body));
    assert_ne!(delivery.header("x-aisc-signature"), expected_signature("another secret, as long", &delivery.body));
    assert_eq!(delivery.header("x-aisc-event"), "decision.recorded");
    assert_eq!(delivery.header("content-type"), "application/json");
    let body = delivery.json();
    assert_eq!(
        body,
        json!({
            "delivery_id": delivery.header("x-aisc-delivery"),
            "kind": "decision.recorded",
            "application_id": id,
            "occurred_on": "2025-06-15",
            "outcome": "approved",
            "approved_rate_bps": 7000,
            "ceiling_cents": 17_850_000,
            "project_start": "2025-07-01",
            "project_end": "2025-12-31",
        })
    );

    // Not subscribed to agreements: the signature of the agreement is not sent.
    app.set_day(2025, 6, 30);
    ok(&app.post("committee_secretariat", &format!("/api/v1/applications/{id}/agreement"), &[], AGREEMENT).await);
    let listed = deliveries(&app, &webhook).await;
    assert_eq!(listed["total"], 1, "{listed}");
    let item = &listed["items"][0];
    assert_eq!(item["delivery_id"], body["delivery_id"]);
    assert_eq!(
        (item["kind"].as_str(), item["status"].as_str(), item["attempts"].as_i64()),
        (Some("decision.recorded"), Some("delivered"), Some(1))
    );
    assert_eq!(item["subject"], format!("application:{id}"));
    assert_eq!(item["last_response_status"], 200);
    assert!(item["delivered_at"].is_string() && item["next_attempt_at"].is_null(), "{item}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 1, "only the kinds asked for are delivered");

    // A rebuild replays the whole log through the recorder: nothing is recorded or sent twice.
    let store: Arc<dyn aisc_domain::event_store::EventStore> =
        Arc::new(aisc_adapters::PostgresEventStore::new(app.database.pool.clone()));
    let recorder = aisc_projections::ProjectionRunner::new(
        app.database.pool.clone(),
        store,
        Arc::new(aisc_api::webhooks::notifications::NotificationRecorder),
    );
    recorder.rebuild(Duration::from_secs(20)).await.expect("rebuild the recorder");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(deliveries(&app, &webhook).await["total"], 1);
    assert_eq!(receiver.received().len(), 1);

    // Listing pages and filters; a deactivated webhook keeps its deliveries.
    let page = ok(&app.get("administrator", &format!("{webhook}/deliveries?status=pending&limit=10")).await);
    assert_eq!((page["total"].as_i64(), page["limit"].as_i64()), (Some(0), Some(10)));
    let bad = app.get("administrator", &format!("{webhook}/deliveries?status=lost")).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    let bearer = app.bearer("administrator");
    let deactivated = http(app.port, "DELETE", &webhook, &[("Authorization", &bearer)], None).await;
    assert_eq!(
        (deactivated.status, deactivated.json()["active"].as_bool()),
        (200, Some(false)),
        "{}",
        deactivated.body
    );
    assert_eq!(deliveries(&app, &webhook).await["total"], 1);
    let listed = ok(&app.get("administrator", "/api/v1/webhooks").await);
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
    assert!(!listed.to_string().contains(SECRET));
    app.stop().await;
}

#[tokio::test]
async fn a_failed_delivery_is_retried_under_its_id_and_holds_back_later_news_of_its_application() {
    // The first attempt is answered 500, the retry 200.
    let receiver = Receiver::start(&[500]).await;
    let app = app_allowing(&receiver.allowed_host()).await;
    let webhook = register(&app, &receiver.url(), &["decision.recorded", "agreement.signed"]).await;
    set_up(&app).await;
    let id = assessed_application(&app, "Cantonese speech model").await;
    ok(&app.post("committee_secretariat", &format!("/api/v1/applications/{id}/approval"), &[], &approval()).await);
    app.set_day(2025, 6, 30);
    ok(&app.post("committee_secretariat", &format!("/api/v1/applications/{id}/agreement"), &[], AGREEMENT).await);

    let received = receiver.wait_for(3).await;
    let kinds: Vec<&str> = received.iter().map(|request| request.header("x-aisc-event")).collect();
    assert_eq!(kinds, ["decision.recorded", "decision.recorded", "agreement.signed"], "in order per application");
    assert_eq!(received[0].header("x-aisc-delivery"), received[1].header("x-aisc-delivery"), "the retry keeps its id");
    assert_eq!(received[0].body, received[1].body);
    assert_ne!(received[1].header("x-aisc-delivery"), received[2].header("x-aisc-delivery"));
    assert_eq!(received[2].json()["report_due_dates"], json!(["2025-10-15", "2026-01-15"]));
    assert_eq!(received[2].json()["occurred_on"], "2025-06-30");
    for request in &received {
        assert_eq!(request.header("x-aisc-signature"), expected_signature(SECRET, &request.body));
    }

    let listed = deliveries(&app, &webhook).await;
    let items = listed["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{listed}");
    // Newest first: the agreement, then the decision tried twice.
    assert_eq!((items[0]["kind"].as_str(), items[0]["attempts"].as_i64()), (Some("agreement.signed"), Some(1)));
    assert_eq!((items[1]["kind"].as_str(), items[1]["attempts"].as_i64()), (Some("decision.recorded"), Some(2)));
    assert!(items.iter().all(|item| item["status"] == "delivered"), "{listed}");
    let metrics = support::http_get(app.port, "/metrics").await.expect("metrics").1;
    assert!(metrics.contains("aisc_webhook_deliveries_total{outcome=\"retried\"}"), "{metrics}");
    app.stop().await;
}

#[tokio::test]
async fn a_delivery_past_the_give_up_horizon_fails_and_the_queue_moves_on() {
    let receiver = Receiver::start(&[503, 503, 503, 503, 503, 503, 503, 503]).await;
    let allowed = receiver.allowed_host();
    let app = TestApp::spawn_configured(move |config| {
        config.webhooks.allowed_hosts = aisc_api::webhooks::AllowedHosts::parse(&allowed).expect("allow-list");
        config.webhooks.first_retry = Duration::from_millis(200);
        config.webhooks.give_up_after = Duration::from_millis(100);
        config.webhooks.poll_interval = Duration::from_millis(50);
        config.webhooks.schedule_interval = Duration::from_secs(3600);
    })
    .await;
    let webhook = register(&app, &receiver.url(), &["decision.recorded", "agreement.signed"]).await;
    set_up(&app).await;
    let id = assessed_application(&app, "Legal text retrieval").await;
    ok(&app.post("committee_secretariat", &format!("/api/v1/applications/{id}/approval"), &[], &approval()).await);
    let received = receiver.wait_for(1).await;
    assert_eq!(received[0].header("x-aisc-event"), "decision.recorded");
    let deadline = Instant::now() + Duration::from_secs(10);
    let item = loop {
        let listed = deliveries(&app, &webhook).await;
        if listed["items"][0]["status"] == "failed" {
            break listed["items"][0].clone();
        }
        assert!(Instant::now() < deadline, "never given up: {listed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((item["attempts"].as_i64(), item["last_response_status"].as_i64()), (Some(1), Some(503)), "{item}");
    assert_eq!(item["last_error"], "answered 503");
    // The next notification of the application is not held back by one given up.
    *receiver.statuses.lock().expect("script") = VecDeque::new();
    app.set_day(2025, 6, 30);
    ok(&app.post("committee_secretariat", &format!("/api/v1/applications/{id}/agreement"), &[], AGREEMENT).await);
    let received = receiver.wait_for(2).await;
    assert_eq!(received[1].header("x-aisc-event"), "agreement.signed");
    app.stop().await;
}

#[tokio::test]
async fn the_clocks_notifications_are_recorded_once_per_due_date() {
    let receiver = Receiver::start(&[]).await;
    let app = app_allowing(&receiver.allowed_host()).await;
    let webhook =
        register(&app, &receiver.url(), &["report.due_in_7_days", "report.overdue", "batch.deadline_in_3_days"]).await;
    set_up(&app).await;
    let pool = app.database.pool.clone();
    let record = |day: chrono::NaiveDate| {
        let pool = pool.clone();
        async move { aisc_api::webhooks::scheduler::record_due_notifications(&pool, day).await.expect("scheduler") }
    };
    let day = |y, m, d| chrono::NaiveDate::from_ymd_opt(y, m, d).expect("date");
    wait_for_read_model(&app, "SELECT count(*) FROM read_models.batches_view").await;

    // The batch closes on 2025-05-31: announced from 3 days before, once.
    assert_eq!(record(day(2025, 5, 27)).await, 0, "four days before: nothing");
    assert_eq!(record(day(2025, 5, 28)).await, 1);
    assert_eq!(record(day(2025, 5, 28)).await, 0, "the scheduler running twice records nothing more");
    assert_eq!(record(day(2025, 5, 30)).await, 0, "nor on a later day");
    let received = receiver.wait_for(1).await;
    assert_eq!(received[0].header("x-aisc-event"), "batch.deadline_in_3_days");
    let batch = received[0].json();
    assert_eq!((batch["batch_id"].as_str(), batch["due_on"].as_str()), (Some("2025-q2"), Some("2025-05-31")));

    // An agreement with reports due 2025-10-15 and 2026-01-15.
    let id = assessed_application(&app, "Traffic forecasting").await;
    ok(&app.post("committee_secretariat", &format!("/api/v1/applications/{id}/approval"), &[], &approval()).await);
    app.set_day(2025, 6, 30);
    ok(&app.post("committee_secretariat", &format!("/api/v1/applications/{id}/agreement"), &[], AGREEMENT).await);
    wait_for_read_model(&app, "SELECT count(*) FROM read_models.applications_view WHERE next_report_due IS NOT NULL")
        .await;
    assert_eq!(record(day(2025, 10, 7)).await, 0, "eight days before: nothing");
    assert_eq!(record(day(2025, 10, 8)).await, 1);
    assert_eq!(record(day(2025, 10, 8)).await, 0);
    assert_eq!(record(day(2025, 10, 15)).await, 0, "due today: already announced");
    assert_eq!(record(day(2025, 10, 16)).await, 1, "a day late: overdue");
    assert_eq!(record(day(2025, 10, 20)).await, 0, "overdue once per due date");
    let received = receiver.wait_for(3).await;
    let due = received[1].json();
    assert_eq!(received[1].header("x-aisc-event"), "report.due_in_7_days");
    assert_eq!((due["application_id"].as_str(), due["due_on"].as_str()), (Some(id.as_str()), Some("2025-10-15")));
    assert_eq!(received[2].header("x-aisc-event"), "report.overdue");
    assert_eq!(received[2].json()["due_on"], "2025-10-15");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_notifications")
        .fetch_one(&app.database.pool)
        .await
        .expect("count");
    assert_eq!(stored, 3);
    assert_eq!(deliveries(&app, &webhook).await["total"], 3);
    app.stop().await;
}

/// Waits until `count_query` counts a row (the read models have caught up).
async fn wait_for_read_model(app: &TestApp, count_query: &'static str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let count: i64 = sqlx::query_scalar(count_query).fetch_one(&app.database.pool).await.unwrap_or_default();
        if count > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "the read model never showed a row for {count_query}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn destinations_off_the_allow_list_and_bad_bodies_are_refused() {
    let app = app_allowing("hooks.example.org,127.0.0.1:9000").await;
    let post = |body: Value| {
        let body = body.to_string();
        let app = &app;
        async move { app.post("administrator", "/api/v1/webhooks", &[], &body).await }
    };
    for url in
        ["http://127.0.0.1:9001/x", "http://10.0.0.1/", "https://hooks.example.org:8443/", "http://localhost:9000/"]
    {
        let refused = post(json!({"url": url, "secret": SECRET, "event_kinds": ["report.overdue"]})).await;
        assert_eq!(refused.status, 422, "{url}: {}", refused.body);
        assert_eq!(refused.json()["code"], "webhook_destination_not_allowed", "{url}");
        assert_eq!(refused.header("content-type"), Some("application/problem+json"));
    }
    let cases = [
        (json!({"url": "ftp://hooks.example.org/", "secret": SECRET, "event_kinds": ["report.overdue"]}), "url"),
        (json!({"url": "https://u:p@hooks.example.org/", "secret": SECRET, "event_kinds": ["report.overdue"]}), "url"),
        (json!({"url": "https://hooks.example.org/", "secret": "short", "event_kinds": ["report.overdue"]}), "secret"),
        (json!({"url": "https://hooks.example.org/", "secret": SECRET, "event_kinds": []}), "event_kinds"),
        (
            json!({"url": "https://hooks.example.org/", "secret": SECRET, "event_kinds": ["report.late"]}),
            "event_kinds[0]",
        ),
        (
            json!({"url": "https://hooks.example.org/", "secret": SECRET, "event_kinds": ["report.overdue", "report.overdue"]}),
            "event_kinds[1]",
        ),
        (
            json!({"url": "https://hooks.example.org/", "secret": SECRET, "event_kinds": ["report.overdue"], "x": 1}),
            "x",
        ),
        (json!({"secret": SECRET, "event_kinds": ["report.overdue"]}), "url"),
    ];
    for (body, field) in cases {
        let refused = post(body.clone()).await;
        assert_eq!(refused.status, 400, "{body}: {}", refused.body);
        assert_eq!(refused.json()["errors"][0]["field"], field, "{body}: {}", refused.body);
    }
    let accepted =
        post(json!({"url": "https://hooks.example.org/aisc", "secret": SECRET, "event_kinds": ["report.overdue"]}))
            .await;
    assert_eq!(accepted.status, 201, "{}", accepted.body);
    let missing = app.get("administrator", "/api/v1/webhooks/00000000-0000-0000-0000-000000000000").await;
    assert_eq!(missing.status, 404);
    assert_eq!(app.get("administrator", "/api/v1/webhooks/not-a-uuid").await.status, 400);
    app.stop().await;

    // No allow-list: no webhook at all.
    let app = app_allowing("").await;
    let refused = app
        .post(
            "administrator",
            "/api/v1/webhooks",
            &[],
            &json!({"url": "https://hooks.example.org/", "secret": SECRET, "event_kinds": ["report.overdue"]})
                .to_string(),
        )
        .await;
    assert_eq!((refused.status, refused.json()["code"].as_str()), (422, Some("webhook_destination_not_allowed")));
    app.stop().await;
}

#[tokio::test]
async fn a_host_taken_off_the_allow_list_receives_nothing_more() {
    use aisc_api::webhooks::notifications::{NewNotification, NotificationKind, record};
    use aisc_api::webhooks::{AllowedHosts, WebhookSettings, delivery::deliver_due};

    // The worker is driven by hand here, on the tables alone, with two allow-lists: the one a
    // webhook was registered under, and a later one without its host.
    let receiver = Receiver::start(&[]).await;
    let database = support::TestDatabase::create().await;
    sqlx::query(
        "INSERT INTO webhooks (webhook_id, url, secret, event_kinds, created_by, from_position) \
         VALUES (gen_random_uuid(), $1, $2, '{report.overdue}', 'admin-1', 0)",
    )
    .bind(receiver.url())
    .bind(SECRET)
    .execute(&database.pool)
    .await
    .expect("webhook");
    let overdue = NewNotification {
        kind: NotificationKind::ReportOverdue,
        subject: "application:a-1".into(),
        occurred_on: chrono::NaiveDate::from_ymd_opt(2025, 10, 15).expect("date"),
        source: None,
        payload: json!({"application_id": "a-1", "due_on": "2025-10-15"}),
    };
    let mut connection = database.pool.acquire().await.expect("connection");
    assert!(record(&mut connection, &overdue).await.expect("record"));
    assert!(!record(&mut connection, &overdue).await.expect("record again"), "recorded once");
    drop(connection);
    let settings = |hosts: &str| WebhookSettings {
        allowed_hosts: AllowedHosts::parse(hosts).expect("allow-list"),
        first_retry: Duration::ZERO,
        ..WebhookSettings::default()
    };

    assert_eq!(deliver_due(&database.pool, &settings("hooks.example.org")).await.expect("deliver"), 1);
    let (status, error): (String, Option<String>) = sqlx::query_as("SELECT status, last_error FROM webhook_deliveries")
        .fetch_one(&database.pool)
        .await
        .expect("row");
    assert_eq!(status, "pending");
    assert!(error.as_deref().is_some_and(|error| error.contains("allow-list")), "{error:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(receiver.received().is_empty(), "nothing is sent to a host off the list");

    assert_eq!(deliver_due(&database.pool, &settings(&receiver.allowed_host())).await.expect("deliver"), 1);
    let received = receiver.wait_for(1).await;
    assert_eq!(received[0].header("x-aisc-event"), "report.overdue");
    let status: String =
        sqlx::query_scalar("SELECT status FROM webhook_deliveries").fetch_one(&database.pool).await.expect("row");
    assert_eq!(status, "delivered");
    database.drop_database().await;
}

#[tokio::test]
async fn only_administrators_manage_webhooks() {
    let app = app_allowing("hooks.example.org").await;
    let body =
        json!({"url": "https://hooks.example.org/", "secret": SECRET, "event_kinds": ["report.overdue"]}).to_string();
    let id = "00000000-0000-0000-0000-000000000000";
    for role in ROLES.iter().filter(|role| **role != "administrator") {
        let bearer = format!("Bearer {}", app.tokens[role]);
        let auth = [("Authorization", bearer.as_str()), ("Content-Type", "application/json")];
        for (method, path, body) in [
            ("POST", "/api/v1/webhooks".to_string(), Some(body.as_str())),
            ("GET", "/api/v1/webhooks".to_string(), None),
            ("GET", format!("/api/v1/webhooks/{id}"), None),
            ("DELETE", format!("/api/v1/webhooks/{id}"), None),
            ("GET", format!("/api/v1/webhooks/{id}/deliveries"), None),
        ] {
            let refused = http(app.port, method, &path, &auth, body).await;
            assert_eq!(refused.status, 403, "{role} {method} {path}: {}", refused.body);
        }
    }
    let anonymous = http(app.port, "GET", "/api/v1/webhooks", &[], None).await;
    assert_eq!(anonymous.status, 401);
    app.stop().await;
}
