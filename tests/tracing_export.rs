//! Trace export as an operator sees it: `aisc serve` with `AISC_OTLP_ENDPOINT` posts a span
//! per request (and the store's spans inside it) to a collector, continuing the caller's W3C
//! trace; a collector that is down or hangs slows no request and is warned of; an https
//! endpoint stops the start with one line.

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{TestDatabase, http};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CALLER_TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";

/// One POST the fake collector received.
#[derive(Debug, Clone)]
struct Received {
    request_line: String,
    content_type: Option<String>,
    body: Value,
}

/// A fake OTLP/HTTP collector: accepts POSTs, keeps their JSON bodies, answers 200.
struct FakeCollector {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
}

impl FakeCollector {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the fake collector");
        let port = listener.local_addr().expect("collector address").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let kept = received.clone();
        tokio::spawn(async move {
            while let Ok((connection, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    if let Some(post) = read_post(connection).await {
                        kept.lock().expect("received posts").push(post);
                    }
                });
            }
        });
        Self { port, received }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every span received so far, with the POST and the resource that carried it.
    fn spans(&self) -> Vec<(Received, Value, Value)> {
        let received = self.received.lock().expect("received posts").clone();
        let mut spans = Vec::new();
        for post in received {
            for resource_spans in post.body["resourceSpans"].as_array().cloned().unwrap_or_default() {
                for scope_spans in resource_spans["scopeSpans"].as_array().cloned().unwrap_or_default() {
                    for span in scope_spans["spans"].as_array().cloned().unwrap_or_default() {
                        spans.push((post.clone(), resource_spans["resource"].clone(), span));
                    }
                }
            }
        }
        spans
    }

    /// Waits until a received span satisfies `wanted`.
    async fn wait_for_span(&self, what: &str, wanted: impl Fn(&Value) -> bool) -> (Received, Value, Value) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(found) = self.spans().into_iter().find(|(_, _, span)| wanted(span)) {
                return found;
            }
            assert!(Instant::now() < deadline, "no span {what} within 20 s; received {:?}", self.spans());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Reads one HTTP/1.1 POST with a Content-Length body, answers 200, and returns it.
async fn read_post(mut connection: TcpStream) -> Option<Received> {
    let mut raw = Vec::new();
    let mut chunk = [0_u8; 4096];
    let head_end = loop {
        if let Some(end) = raw.windows(4).position(|window| window == b"\r\n\r\n") {
            break end;
        }
        let read = connection.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        raw.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut lines = head.lines();
    let request_line = lines.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let header = |name: &str| headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone());
    let length: usize = header("content-length")?.parse().ok()?;
    let mut body = raw[head_end + 4..].to_vec();
    while body.len() < length {
        let read = connection.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..read]);
    }
    let answer =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
    connection.write_all(answer.as_bytes()).await.ok()?;
    let body = serde_json::from_slice(&body).unwrap_or_else(|error| panic!("the body is not JSON: {error}"));
    Some(Received { request_line, content_type: header("content-type"), body })
}

/// `aisc serve` on a free port with `environment`, its JSON log lines collected.
struct Served {
    child: std::process::Child,
    port: u16,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Served {
    fn start(database_url: &str, environment: &[(&str, &str)]) -> Self {
        let mut child = support::aisc()
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env("DATABASE_URL", database_url)
            .envs(environment.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn aisc serve");
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let collected = lines.clone();
        let (port_sender, port_receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let parsed: Value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if let Some(port) = parsed["fields"]["port"].as_u64() {
                    let _ = port_sender.send(port as u16);
                }
                collected.lock().expect("log lines").push(parsed);
            }
        });
        let port = port_receiver.recv_timeout(Duration::from_secs(60)).expect("the service reports its port");
        Self { child, port, lines }
    }

    async fn wait_for_line(&self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(line) = self.lines.lock().expect("log lines").iter().find(|line| wanted(line)) {
                return line.clone();
            }
            assert!(Instant::now() < deadline, "no log line {what} within 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn count_lines(&self, wanted: impl Fn(&Value) -> bool) -> usize {
        self.lines.lock().expect("log lines").iter().filter(|line| wanted(line)).count()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of attribute `key` of an OTLP span or resource.
fn attribute<'a>(item: &'a Value, key: &str) -> Option<&'a Value> {
    item["attributes"].as_array()?.iter().find(|attribute| attribute["key"] == key).map(|attribute| &attribute["value"])
}

fn has_request_id(span: &Value, request_id: &str) -> bool {
    attribute(span, "request_id").is_some_and(|value| value["stringValue"] == request_id)
}

#[tokio::test]
async fn a_request_is_exported_as_a_span_of_the_callers_trace_with_its_store_span() {
    let collector = FakeCollector::start().await;
    let database = TestDatabase::create().await;
    let token = aisc_api::auth::issue(&database.pool, "secretariat-1", &[aisc_api::auth::Role::CommitteeSecretariat])
        .await
        .expect("token");
    let bearer = format!("Bearer {token}");
    let endpoint = collector.endpoint();
    let server =
        Served::start(&database.url, &[("AISC_OTLP_ENDPOINT", &endpoint), ("AISC_OTLP_SERVICE_NAME", "aisc-e2e")]);
    support::wait_until_ready(server.port).await;

    let traceparent = format!("00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-01");
    let created = http(
        server.port,
        "POST",
        "/api/v1/batches",
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
            ("X-Request-Id", "otel-e2e-1"),
            ("traceparent", &traceparent),
        ],
        Some(r#"{"batch_id":"b1","deadline":"2025-01-01","committee_date":"2025-02-01"}"#),
    )
    .await;
    assert!((200..300).contains(&created.status), "{} {}", created.status, created.body);
    assert_eq!(created.header("traceparent"), None, "the trace context is not returned");

    let (post, resource, span) =
        collector.wait_for_span("of the request", |span| has_request_id(span, "otel-e2e-1")).await;
    assert_eq!(post.request_line, "POST /v1/traces HTTP/1.1");
    assert_eq!(post.content_type.as_deref(), Some("application/json"));
    assert_eq!(attribute(&resource, "service.name"), Some(&serde_json::json!({"stringValue": "aisc-e2e"})));
    assert_eq!(span["traceId"], CALLER_TRACE_ID, "{span}");
    assert_eq!(span["parentSpanId"], CALLER_SPAN_ID, "{span}");
    assert_eq!(span["kind"], 2, "a server span: {span}");
    assert_eq!(span["name"], "POST /api/v1/batches", "{span}");
    assert_eq!(attribute(&span, "http.request.method"), Some(&serde_json::json!({"stringValue": "POST"})));
    assert_eq!(attribute(&span, "http.route"), Some(&serde_json::json!({"stringValue": "/api/v1/batches"})));
    assert_eq!(
        attribute(&span, "http.response.status_code"),
        Some(&serde_json::json!({"intValue": created.status.to_string()}))
    );
    let nanos = |field: &str| span[field].as_str().and_then(|text| text.parse::<u64>().ok()).expect("a time");
    assert!(nanos("startTimeUnixNano") <= nanos("endTimeUnixNano"), "{span}");
    assert!(nanos("startTimeUnixNano") > 1_600_000_000_000_000_000, "unix nanoseconds: {span}");

    // The append the command made, inside the request: a span of the same trace, under it.
    let request_span_id = span["spanId"].clone();
    let (_, _, append) =
        collector.wait_for_span("of the append", |child| child["parentSpanId"] == request_span_id).await;
    assert_eq!(append["name"], "append_multi", "{append}");
    assert_eq!(append["traceId"], CALLER_TRACE_ID, "{append}");
    assert_eq!(append["kind"], 1, "an internal span: {append}");

    // A request without a trace context starts a trace of its own.
    let (_, _, ready) = collector
        .wait_for_span("of a readiness check", |span| {
            attribute(span, "http.route").is_some_and(|route| route["stringValue"] == "/health/ready")
        })
        .await;
    assert_ne!(ready["traceId"], CALLER_TRACE_ID);
    assert!(ready.get("parentSpanId").is_none(), "{ready}");
    assert_eq!(server.count_lines(is_drop_warning), 0, "every span was taken");

    drop(server);
    database.drop_database().await;
}

/// Every request of a burst is answered at once, whatever the collector does.
async fn assert_answered_promptly(port: u16) {
    let started = Instant::now();
    for round in 0..100 {
        let asked = Instant::now();
        let request_id = format!("prompt-{round}");
        let answered = http(port, "GET", "/health/live", &[("X-Request-Id", &request_id)], None).await;
        assert_eq!(answered.status, 200, "{}", answered.body);
        assert!(asked.elapsed() < Duration::from_secs(1), "request {round} answered after {:?}", asked.elapsed());
    }
    assert!(started.elapsed() < Duration::from_secs(10), "100 requests took {:?}", started.elapsed());
}

fn is_drop_warning(line: &Value) -> bool {
    line["level"] == "WARN" && line["fields"]["message"] == "request traces dropped"
}

#[tokio::test]
async fn a_collector_down_or_hanging_slows_no_request_and_is_warned_of() {
    let database = TestDatabase::create().await;

    // Down: nothing listens on the port (the connection is refused).
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let closed_port = closed.local_addr().expect("address").port();
    drop(closed);
    let down = Served::start(&database.url, &[("AISC_OTLP_ENDPOINT", &format!("http://127.0.0.1:{closed_port}"))]);
    support::wait_until_ready(down.port).await;
    assert_answered_promptly(down.port).await;
    let warning = down.wait_for_line("of the refused export", is_drop_warning).await;
    assert!(warning["fields"]["dropped_spans"].as_u64().is_some_and(|dropped| dropped > 0), "{warning}");
    assert_eq!(warning["fields"]["endpoint"], format!("http://127.0.0.1:{closed_port}/v1/traces"), "{warning}");
    // Still answering after the failed exports, and warned of once, not per batch.
    assert_answered_promptly(down.port).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(down.count_lines(is_drop_warning), 1, "one warning per interval");
    let metrics = http(down.port, "GET", "/metrics", &[], None).await;
    let dropped = metrics
        .body
        .lines()
        .find_map(|line| line.strip_prefix("aisc_trace_spans_dropped_total "))
        .and_then(|value| value.trim().parse::<u64>().ok());
    assert!(dropped.is_some_and(|dropped| dropped > 0), "{}", metrics.body);
    drop(down);

    // Hanging: the collector accepts connections and never answers.
    let hanging = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hanging_port = hanging.local_addr().expect("address").port();
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((connection, _)) = hanging.accept().await {
            connections.push(connection);
        }
    });
    let stuck = Served::start(&database.url, &[("AISC_OTLP_ENDPOINT", &format!("http://127.0.0.1:{hanging_port}"))]);
    support::wait_until_ready(stuck.port).await;
    assert_answered_promptly(stuck.port).await;
    // The export under way waits for its timeout meanwhile; then it is given up and warned of.
    let warning = stuck.wait_for_line("of the export without answer", is_drop_warning).await;
    assert_eq!(warning["fields"]["last_failure"], "no answer within 5 s", "{warning}");
    assert_answered_promptly(stuck.port).await;

    drop(stuck);
    held.abort();
    database.drop_database().await;
}

#[test]
fn an_https_endpoint_stops_the_start_with_one_clear_line() {
    let output = support::aisc()
        .args(["serve"])
        .env("AISC_OTLP_ENDPOINT", "https://collector.example:4318")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/never_reached")
        .output()
        .expect("run aisc");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line, not {stderr:?}");
    assert!(stderr.starts_with("error: ") && stderr.contains("--otlp-endpoint"), "{stderr}");
    assert!(stderr.contains("https is not supported"), "{stderr}");
}
