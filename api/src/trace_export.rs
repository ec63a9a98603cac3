//! Optional export of request traces to an OpenTelemetry collector over OTLP/HTTP, as JSON.
//!
//! When `AISC_OTLP_ENDPOINT` is set, [`SpanRecorder`] (a `tracing` layer) keeps every `request`
//! span of the HTTP edge, and the spans opened inside it, until they close, then hands each to a
//! bounded queue; a background task posts the queue in batches to `{endpoint}/v1/traces`.
//! Requests never wait for the collector: a span that finds the queue full is dropped and
//! counted, and so is a batch the collector refuses or does not take in time.
//!
//! In-house rather than the `opentelemetry` crates: they bring hyper, h2, prost and the
//! generated OTLP types (about 30 crates, two to three more minutes of a cold build on two
//! cores), where one span shape, one JSON document and one plain HTTP/1.1 POST (the client
//! webhooks use too, [`crate::http_client`]) do here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The `service.name` of the exported spans unless `AISC_OTLP_SERVICE_NAME` says otherwise.
pub const DEFAULT_SERVICE_NAME: &str = "aisc";
/// Where OTLP/HTTP receivers take traces, below the configured endpoint.
const TRACES_PATH: &str = "/v1/traces";
/// Finished spans waiting for export; beyond this they are dropped (four full batches: a
/// second of a busy service while one export is under way).
const QUEUE_CAPACITY: usize = 2_048;
/// Spans in one POST at most.
const MAX_BATCH_SPANS: usize = 512;
/// How long the first span of a batch waits for others before the batch is sent.
const BATCH_DELAY: Duration = Duration::from_secs(1);
/// One export (connect, send, first line of the answer) gives up after this; its spans are
/// dropped, so a collector that hangs costs at most this much delay to the next batch.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// Failed exports and dropped spans are logged at WARN at most this often, so a collector
/// that is down for an hour writes a line every half minute, not one per batch.
const WARNING_INTERVAL: Duration = Duration::from_secs(30);

/// The span the HTTP edge opens for each request (see `request_context::track_request`).
pub const REQUEST_SPAN_NAME: &str = "request";
pub const REQUEST_SPAN_TARGET: &str = "aisc_api::request_context";

// ---------------------------------------------------------------------------------------------
// The endpoint

/// A collector's OTLP/HTTP base URL (`http://host:port[/prefix]`), resolved to where traces go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpEndpoint {
    /// Host to connect to: a name, or an IP address without brackets.
    connect_host: String,
    port: u16,
    /// The `Host` header: the host as written (brackets around IPv6) and an explicit port.
    host_header: String,
    /// The request path: the URL's path and `/v1/traces`.
    path: String,
}

impl OtlpEndpoint {
    /// Parses `AISC_OTLP_ENDPOINT`; the message of a refusal says what to write instead.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Err("empty; unset it to export no traces, or write e.g. http://127.0.0.1:4318".to_string());
        }
        let url = url::Url::parse(text.trim())
            .map_err(|error| format!("not a URL ({error}); write e.g. http://127.0.0.1:4318"))?;
        match url.scheme() {
            "http" => {}
            "https" => {
                return Err("https is not supported: spans are sent over plain HTTP only; run a collector \
                    (e.g. the OpenTelemetry Collector) on this host or a trusted network and give its \
                    http:// address"
                    .to_string());
            }
            other => return Err(format!("the scheme {other} is not supported; write http://host:port")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("credentials in the URL are not supported (they would travel in clear text)".to_string());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("a query or fragment is not supported; write http://host:port[/path]".to_string());
        }
        let connect_host = match url.host() {
            Some(url::Host::Domain(name)) => name.to_string(),
            Some(url::Host::Ipv4(address)) => address.to_string(),
            Some(url::Host::Ipv6(address)) => address.to_string(),
            None => return Err("no host; write e.g. http://127.0.0.1:4318".to_string()),
        };
        let written_host = url.host_str().unwrap_or(&connect_host).to_string();
        let host_header = match url.port() {
            Some(port) => format!("{written_host}:{port}"),
            None => written_host,
        };
        Ok(Self {
            connect_host,
            port: url.port_or_known_default().unwrap_or(80),
            host_header,
            path: format!("{}{TRACES_PATH}", url.path().trim_end_matches('/')),
        })
    }

    /// The URL spans are posted to, for logs.
    pub fn traces_url(&self) -> String {
        format!("http://{}{}", self.host_header, self.path)
    }
}

// ---------------------------------------------------------------------------------------------
// The caller's trace context

/// A W3C `traceparent` header: the caller's trace, its span (our request span's parent), and
/// whether the caller samples the trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: u128,
    pub parent_span_id: u64,
    pub sampled: bool,
}

impl TraceParent {
    /// The header as W3C Trace Context level 1 defines it; anything else is ignored (the
    /// request then starts a trace of its own), as the specification asks.
    pub fn parse(header: &str) -> Option<Self> {
        let header = header.trim();
        let mut parts = header.split('-');
        let version = parts.next()?;
        let trace_id = parts.next()?;
        let parent_span_id = parts.next()?;
        let flags = parts.next()?;
        let lower_hex = |text: &str, length: usize| {
            text.len() == length && text.bytes().all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
        };
        if !lower_hex(version, 2) || version == "ff" || !lower_hex(flags, 2) {
            return None;
        }
        // Version 00 has exactly four fields; a later version may append more.
        if version == "00" && parts.next().is_some() {
            return None;
        }
        if !lower_hex(trace_id, 32) || !lower_hex(parent_span_id, 16) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace_id, 16).ok()?;
        let parent_span_id = u64::from_str_radix(parent_span_id, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        (trace_id != 0 && parent_span_id != 0).then_some(Self { trace_id, parent_span_id, sampled: flags & 1 == 1 })
    }
}

/// Makes `span` (a request span just opened) continue the caller's trace: same trace id, the
/// caller's span as parent. A trace the caller does not sample is not exported either. Does
/// nothing when no span is being recorded (export off).
pub fn continue_trace(span: &tracing::Span, caller: TraceParent) {
    span.with_subscriber(|(id, dispatch)| {
        // The open spans' records live in the registry at the root of the subscriber.
        let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>() else {
            return;
        };
        let Some(span) = registry.span(id) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        if !caller.sampled {
            extensions.remove::<OpenSpan>();
        } else if let Some(open) = extensions.get_mut::<OpenSpan>() {
            open.trace_id = caller.trace_id;
            open.parent_span_id = Some(caller.parent_span_id);
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Recording spans

/// OTLP's span kinds that occur here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Internal = 1,
    Server = 2,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    String(String),
    Int(i64),
    Bool(bool),
    Double(f64),
}

/// A closed span, as exported.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedSpan {
    pub trace_id: u128,
    pub span_id: u64,
    pub parent_span_id: Option<u64>,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: Vec<(&'static str, AttributeValue)>,
    /// OTLP's status ERROR: a request answered 5xx.
    pub error: bool,
}

/// What is known of a span while it is open, kept in the registry's extensions of the span.
struct OpenSpan {
    trace_id: u128,
    span_id: u64,
    parent_span_id: Option<u64>,
    name: &'static str,
    kind: SpanKind,
    start_unix_nanos: u64,
    attributes: Vec<(&'static str, AttributeValue)>,
}

impl OpenSpan {
    fn set(&mut self, key: &'static str, value: AttributeValue) {
        match self.attributes.iter_mut().find(|(name, _)| *name == key) {
            Some(attribute) => attribute.1 = value,
            None => self.attributes.push((key, value)),
        }
    }

    fn attribute(&self, key: &str) -> Option<&AttributeValue> {
        self.attributes.iter().find(|(name, _)| *name == key).map(|(_, value)| value)
    }

    fn finish(self, end_unix_nanos: u64) -> FinishedSpan {
        let name = match self.kind {
            // As OpenTelemetry's HTTP conventions name a server span: `GET /api/v1/applications/{id}`.
            SpanKind::Server => match (self.attribute(HTTP_METHOD), self.attribute(HTTP_ROUTE)) {
                (Some(AttributeValue::String(method)), Some(AttributeValue::String(route))) => {
                    format!("{method} {route}")
                }
                (Some(AttributeValue::String(method)), _) => method.clone(),
                _ => self.name.to_string(),
            },
            SpanKind::Internal => self.name.to_string(),
        };
        let error = self.kind == SpanKind::Server
            && matches!(self.attribute(HTTP_STATUS_CODE), Some(AttributeValue::Int(status)) if *status >= 500);
        FinishedSpan {
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent_span_id: self.parent_span_id,
            name,
            kind: self.kind,
            start_unix_nanos: self.start_unix_nanos,
            end_unix_nanos: end_unix_nanos.max(self.start_unix_nanos),
            attributes: self.attributes,
            error,
        }
    }
}

const HTTP_METHOD: &str = "http.request.method";
const HTTP_ROUTE: &str = "http.route";
const HTTP_STATUS_CODE: &str = "http.response.status_code";

/// The request span's fields under OpenTelemetry's HTTP names; every other field as it is.
fn attribute_name(kind: SpanKind, field: &'static str) -> &'static str {
    match (kind, field) {
        (SpanKind::Server, "method") => HTTP_METHOD,
        (SpanKind::Server, "route") => HTTP_ROUTE,
        (SpanKind::Server, "status") => HTTP_STATUS_CODE,
        _ => field,
    }
}

/// Collects a span's fields as attributes.
struct AttributeVisitor<'a> {
    span: &'a mut OpenSpan,
}

impl AttributeVisitor<'_> {
    fn set(&mut self, field: &Field, value: AttributeValue) {
        let name = attribute_name(self.span.kind, field.name());
        self.span.set(name, value);
    }
}

impl Visit for AttributeVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, AttributeValue::String(value.to_string()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field, AttributeValue::Int(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        let value =
            i64::try_from(value).map_or_else(|_| AttributeValue::String(value.to_string()), AttributeValue::Int);
        self.set(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field, AttributeValue::Bool(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field, AttributeValue::Double(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `%value` fields arrive here too, and print as their Display.
        self.set(field, AttributeValue::String(format!("{value:?}")));
    }
}

/// Spans dropped (queue full, or their batch not taken) and exported since the start; shown
/// at `/metrics`.
static SPANS_EXPORTED: AtomicU64 = AtomicU64::new(0);
static SPANS_DROPPED: AtomicU64 = AtomicU64::new(0);

/// `(exported, dropped)` spans since the start.
pub fn span_counts() -> (u64, u64) {
    (SPANS_EXPORTED.load(Ordering::Relaxed), SPANS_DROPPED.load(Ordering::Relaxed))
}

/// The `tracing` layer that records request spans and their descendants. Give it a per-layer
/// filter of [`may_be_exported`], so events and verbose spans do not reach it.
pub struct SpanRecorder {
    queue: mpsc::Sender<FinishedSpan>,
}

/// The only metadata the recorder wants: spans at INFO or above (a request span, the store's
/// instrumented calls), never events.
pub fn may_be_exported(metadata: &Metadata<'_>) -> bool {
    metadata.is_span() && *metadata.level() <= tracing::Level::INFO
}

fn is_request_span(metadata: &Metadata<'_>) -> bool {
    metadata.name() == REQUEST_SPAN_NAME && metadata.target() == REQUEST_SPAN_TARGET
}

fn unix_nanos_now() -> u64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX)
}

/// Random ids from the version 4 UUIDs the service already makes: 122 random bits, never zero.
fn new_trace_id() -> u128 {
    uuid::Uuid::new_v4().as_u128()
}

fn new_span_id() -> u64 {
    // The low half of a v4 UUID: 62 random bits, and its variant bit makes it non-zero.
    uuid::Uuid::new_v4().as_u64_pair().1
}

impl<S> tracing_subscriber::Layer<S> for SpanRecorder
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
{
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        let Some(span) = context.span(id) else {
            return;
        };
        let parent = span
            .parent()
            .and_then(|parent| parent.extensions().get::<OpenSpan>().map(|open| (open.trace_id, open.span_id)));
        let metadata = attributes.metadata();
        let (trace_id, parent_span_id, kind) = match parent {
            Some((trace_id, parent_span_id)) => {
                let kind = if is_request_span(metadata) { SpanKind::Server } else { SpanKind::Internal };
                (trace_id, Some(parent_span_id), kind)
            }
            None if is_request_span(metadata) => (new_trace_id(), None, SpanKind::Server),
            // Outside any request (the projections, start-up): not exported.
            None => return,
        };
        let mut open = OpenSpan {
            trace_id,
            span_id: new_span_id(),
            parent_span_id,
            name: metadata.name(),
            kind,
            start_unix_nanos: unix_nanos_now(),
            attributes: Vec::new(),
        };
        attributes.record(&mut AttributeVisitor { span: &mut open });
        span.extensions_mut().insert(open);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, context: Context<'_, S>) {
        let Some(span) = context.span(id) else {
            return;
        };
        if let Some(open) = span.extensions_mut().get_mut::<OpenSpan>() {
            values.record(&mut AttributeVisitor { span: open });
        }
    }

    fn on_close(&self, id: Id, context: Context<'_, S>) {
        let Some(span) = context.span(&id) else {
            return;
        };
        let Some(open) = span.extensions_mut().remove::<OpenSpan>() else {
            return;
        };
        // Never wait here: this runs on the thread that served the request.
        if self.queue.try_send(open.finish(unix_nanos_now())).is_err() {
            SPANS_DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The OTLP/JSON document

fn encode_attribute(key: &str, value: &AttributeValue) -> Value {
    let value = match value {
        AttributeValue::String(text) => json!({ "stringValue": text }),
        // Protobuf's JSON mapping writes 64-bit integers as strings.
        AttributeValue::Int(number) => json!({ "intValue": number.to_string() }),
        AttributeValue::Bool(flag) => json!({ "boolValue": flag }),
        AttributeValue::Double(number) => json!({ "doubleValue": number }),
    };
    json!({ "key": key, "value": value })
}

fn encode_span(span: &FinishedSpan) -> Value {
    let mut encoded = json!({
        "traceId": format!("{:032x}", span.trace_id),
        "spanId": format!("{:016x}", span.span_id),
        "name": span.name,
        "kind": span.kind as u8,
        "startTimeUnixNano": span.start_unix_nanos.to_string(),
        "endTimeUnixNano": span.end_unix_nanos.to_string(),
        "attributes": span.attributes.iter().map(|(key, value)| encode_attribute(key, value)).collect::<Vec<_>>(),
        // Status code 2 is ERROR; unset otherwise (a 4xx is the caller's error, not the server's).
        "status": if span.error { json!({ "code": 2 }) } else { json!({}) },
    });
    if let Some(parent) = span.parent_span_id {
        encoded["parentSpanId"] = json!(format!("{parent:016x}"));
    }
    encoded
}

/// An `ExportTraceServiceRequest` in OTLP's JSON encoding.
pub fn encode_batch(service_name: &str, spans: &[FinishedSpan]) -> Value {
    json!({
        "resourceSpans": [{
            "resource": {
                "attributes": [
                    encode_attribute("service.name", &AttributeValue::String(service_name.to_string())),
                    encode_attribute("service.version", &AttributeValue::String(env!("CARGO_PKG_VERSION").to_string())),
                ],
            },
            "scopeSpans": [{
                "scope": { "name": "aisc", "version": env!("CARGO_PKG_VERSION") },
                "spans": spans.iter().map(encode_span).collect::<Vec<_>>(),
            }],
        }],
    })
}

// ---------------------------------------------------------------------------------------------
// The exporter

/// Starts exporting: the layer to install, and the handle that flushes at shutdown. Call within
/// the Tokio runtime.
pub fn start(endpoint: OtlpEndpoint, service_name: String) -> (SpanRecorder, ExportHandle) {
    let (queue, queued) = mpsc::channel(QUEUE_CAPACITY);
    let (stop, stop_requested) = watch::channel(false);
    let traces_url = endpoint.traces_url();
    let exporter = Exporter { endpoint, service_name, queued, stop_requested, warnings: WarningThrottle::default() };
    let task = tokio::spawn(exporter.run());
    (SpanRecorder { queue }, ExportHandle { stop, task, traces_url })
}

/// Stops the exporter after a last export.
pub struct ExportHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    traces_url: String,
}

impl ExportHandle {
    /// Where the spans go, for logs.
    pub fn traces_url(&self) -> &str {
        &self.traces_url
    }

    /// Exports what is queued and stops, waiting at most `timeout` (a stop is not held up by a
    /// collector that is down).
    pub async fn flush_and_stop(self, timeout: Duration) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(timeout, self.task).await.is_err() {
            tracing::warn!("the last request traces were not exported in time");
        }
    }
}

struct Exporter {
    endpoint: OtlpEndpoint,
    service_name: String,
    queued: mpsc::Receiver<FinishedSpan>,
    stop_requested: watch::Receiver<bool>,
    warnings: WarningThrottle,
}

/// Whether a batch was gathered in full time, or a stop asked for the last export.
enum Gathered {
    Batch,
    Stop,
}

impl Exporter {
    async fn run(mut self) {
        let mut batch = Vec::with_capacity(MAX_BATCH_SPANS);
        loop {
            let gathered = self.gather(&mut batch).await;
            if !batch.is_empty() {
                self.export(&mut batch).await;
            }
            if let Gathered::Stop = gathered {
                break;
            }
        }
        // What closed before the stop.
        while let Ok(span) = self.queued.try_recv() {
            batch.push(span);
            if batch.len() == MAX_BATCH_SPANS {
                self.export(&mut batch).await;
            }
        }
        if !batch.is_empty() {
            self.export(&mut batch).await;
        }
    }

    /// Waits for a first span, then for more during [`BATCH_DELAY`] or until the batch is full.
    async fn gather(&mut self, batch: &mut Vec<FinishedSpan>) -> Gathered {
        tokio::select! {
            // A dropped handle stops the exporter too.
            _ = self.stop_requested.changed() => return Gathered::Stop,
            received = self.queued.recv_many(batch, MAX_BATCH_SPANS) => if received == 0 { return Gathered::Stop },
        }
        let deadline = Instant::now() + BATCH_DELAY;
        while batch.len() < MAX_BATCH_SPANS {
            let room = MAX_BATCH_SPANS - batch.len();
            tokio::select! {
                _ = self.stop_requested.changed() => return Gathered::Stop,
                () = tokio::time::sleep_until(deadline) => break,
                received = self.queued.recv_many(batch, room) => if received == 0 { return Gathered::Stop },
            }
        }
        Gathered::Batch
    }

    /// Posts the batch (emptying it); a failure drops its spans and may warn.
    async fn export(&mut self, batch: &mut Vec<FinishedSpan>) {
        let count = batch.len() as u64;
        let body = encode_batch(&self.service_name, batch).to_string();
        batch.clear();
        let failure = match tokio::time::timeout(EXPORT_TIMEOUT, post_json(&self.endpoint, body.as_bytes())).await {
            Ok(Ok(status)) if (200..300).contains(&status) => None,
            Ok(Ok(status)) => Some(format!("the collector answered {status}")),
            Ok(Err(error)) => Some(error.to_string()),
            Err(_) => Some(format!("no answer within {} s", EXPORT_TIMEOUT.as_secs())),
        };
        match &failure {
            None => {
                SPANS_EXPORTED.fetch_add(count, Ordering::Relaxed);
            }
            Some(_) => {
                SPANS_DROPPED.fetch_add(count, Ordering::Relaxed);
            }
        }
        self.warnings.after_export(&self.endpoint, failure);
    }
}

/// Warns of failed exports and dropped spans at most every [`WARNING_INTERVAL`], with what
/// happened since the last warning.
#[derive(Default)]
struct WarningThrottle {
    last_warning: Option<Instant>,
    failed_exports: u64,
    last_failure: Option<String>,
    dropped_at_last_warning: u64,
}

impl WarningThrottle {
    fn after_export(&mut self, endpoint: &OtlpEndpoint, failure: Option<String>) {
        if let Some(reason) = failure {
            self.failed_exports += 1;
            self.last_failure = Some(reason);
        }
        let dropped = SPANS_DROPPED.load(Ordering::Relaxed);
        let dropped_since = dropped.saturating_sub(self.dropped_at_last_warning);
        let due = self.last_warning.is_none_or(|last| last.elapsed() >= WARNING_INTERVAL);
        if dropped_since == 0 || !due {
            return;
        }
        tracing::warn!(
            endpoint = %endpoint.traces_url(),
            failed_exports = self.failed_exports,
            dropped_spans = dropped_since,
            last_failure = self.last_failure.as_deref().unwrap_or("none: the queue was full (the collector is slow)"),
            "request traces dropped"
        );
        self.last_warning = Some(Instant::now());
        self.failed_exports = 0;
        self.last_failure = None;
        self.dropped_at_last_warning = dropped;
    }
}

/// One `POST` over a connection of its own; the status code of the answer.
async fn post_json(endpoint: &OtlpEndpoint, body: &[u8]) -> std::io::Result<u16> {
    let target = crate::http_client::Target {
        connect_host: &endpoint.connect_host,
        port: endpoint.port,
        host_header: &endpoint.host_header,
        path: &endpoint.path,
        tls: false,
    };
    crate::http_client::post(target, "application/json", &[], body).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    const CALLER_TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_batch_is_an_otlp_json_export_request() {
        let span = FinishedSpan {
            trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736,
            span_id: 0x1,
            parent_span_id: Some(0x00f067aa0ba902b7),
            name: "GET /api/v1/applications/{id}".to_string(),
            kind: SpanKind::Server,
            start_unix_nanos: 1_700_000_000_000_000_000,
            end_unix_nanos: 1_700_000_000_250_000_000,
            attributes: vec![
                ("request_id", AttributeValue::String("r-1".to_string())),
                (HTTP_STATUS_CODE, AttributeValue::Int(503)),
                ("cached", AttributeValue::Bool(false)),
                ("ratio", AttributeValue::Double(0.5)),
            ],
            error: true,
        };
        let child = FinishedSpan {
            span_id: 0x2,
            parent_span_id: None,
            name: "append_multi".to_string(),
            kind: SpanKind::Internal,
            attributes: Vec::new(),
            error: false,
            ..span.clone()
        };
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            encode_batch("aisc-test", &[span, child]),
            json!({"resourceSpans": [{
                "resource": {"attributes": [
                    {"key": "service.name", "value": {"stringValue": "aisc-test"}},
                    {"key": "service.version", "value": {"stringValue": version}},
                ]},
                "scopeSpans": [{
                    "scope": {"name": "aisc", "version": version},
                    "spans": [
                        {
                            "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
                            "spanId": "0000000000000001",
                            "parentSpanId": "00f067aa0ba902b7",
                            "name": "GET /api/v1/applications/{id}",
                            "kind": 2,
                            "startTimeUnixNano": "1700000000000000000",
                            "endTimeUnixNano": "1700000000250000000",
                            "attributes": [
                                {"key": "request_id", "value": {"stringValue": "r-1"}},
                                {"key": "http.response.status_code", "value": {"intValue": "503"}},
                                {"key": "cached", "value": {"boolValue": false}},
                                {"key": "ratio", "value": {"doubleValue": 0.5}},
                            ],
                            "status": {"code": 2},
                        },
                        {
                            "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
                            "spanId": "0000000000000002",
                            "name": "append_multi",
                            "kind": 1,
                            "startTimeUnixNano": "1700000000000000000",
                            "endTimeUnixNano": "1700000000250000000",
                            "attributes": [],
                            "status": {},
                        },
                    ],
                }],
            }]})
        );
    }

    #[test]
    fn a_w3c_traceparent_is_read_and_anything_else_ignored() {
        assert_eq!(
            TraceParent::parse(CALLER_TRACE),
            Some(TraceParent {
                trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736,
                parent_span_id: 0x00f067aa0ba902b7,
                sampled: true
            })
        );
        let unsampled = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
        assert_eq!(unsampled.map(|parent| parent.sampled), Some(false));
        // A later version may carry more fields.
        assert!(TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").is_some());
        for invalid in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(invalid), None, "{invalid:?}");
        }
    }

    #[test]
    fn an_endpoint_is_plain_http_and_traces_go_below_it() {
        let endpoint = OtlpEndpoint::parse("http://127.0.0.1:4318").expect("valid");
        assert_eq!(endpoint.traces_url(), "http://127.0.0.1:4318/v1/traces");
        assert_eq!((endpoint.connect_host.as_str(), endpoint.port), ("127.0.0.1", 4318));
        let prefixed = OtlpEndpoint::parse("http://collector.internal/otlp/").expect("valid");
        assert_eq!(prefixed.traces_url(), "http://collector.internal/otlp/v1/traces");
        assert_eq!(prefixed.port, 80);
        let ipv6 = OtlpEndpoint::parse("http://[::1]:4318").expect("valid");
        assert_eq!((ipv6.connect_host.as_str(), ipv6.host_header.as_str()), ("::1", "[::1]:4318"));
        let refused = OtlpEndpoint::parse("https://collector:4318").expect_err("https");
        assert!(refused.starts_with("https is not supported"), "{refused}");
        for invalid in ["127.0.0.1:4318", "ftp://host", "http://user:secret@host", "http://host/?a=b", ""] {
            assert!(OtlpEndpoint::parse(invalid).is_err(), "{invalid:?}");
        }
    }

    #[test]
    fn a_status_line_gives_its_code() {
        assert_eq!(crate::http_client::status_code(b"HTTP/1.1 200 OK"), Some(200));
        assert_eq!(crate::http_client::status_code(b"HTTP/1.0 503 Service Unavailable"), Some(503));
        assert_eq!(crate::http_client::status_code(b"SSH-2.0-OpenSSH"), None);
    }

    /// A request span as `track_request` opens it, a span of the store inside it, and a span
    /// outside any request; what the recorder queues when they close.
    fn recorded(caller: Option<TraceParent>, capacity: usize) -> Vec<FinishedSpan> {
        let (queue, mut queued) = mpsc::channel(capacity);
        let subscriber = tracing_subscriber::registry().with(SpanRecorder { queue });
        tracing::subscriber::with_default(subscriber, || {
            let request = tracing::info_span!(
                target: REQUEST_SPAN_TARGET,
                REQUEST_SPAN_NAME,
                request_id = "r-7",
                method = "POST",
                route = "/api/v1/batches",
                status = tracing::field::Empty
            );
            if let Some(caller) = caller {
                continue_trace(&request, caller);
            }
            request.in_scope(|| {
                let _store = tracing::info_span!("append_multi", streams = 1_u64).entered();
            });
            request.record("status", 503_u16);
            drop(request);
            let _projection = tracing::info_span!("catch_up").entered();
        });
        let mut spans = Vec::new();
        while let Ok(span) = queued.try_recv() {
            spans.push(span);
        }
        spans
    }

    #[test]
    fn a_request_span_and_its_children_are_recorded_and_nothing_else() {
        let spans = recorded(None, 16);
        let [child, request] = spans.as_slice() else { panic!("two spans, not {spans:?}") };
        assert_eq!(request.name, "POST /api/v1/batches");
        assert_eq!(request.kind, SpanKind::Server);
        assert_eq!(request.parent_span_id, None);
        assert!(request.error, "a 503 is the server's error");
        assert_eq!(
            request.attributes,
            vec![
                ("request_id", AttributeValue::String("r-7".to_string())),
                (HTTP_METHOD, AttributeValue::String("POST".to_string())),
                (HTTP_ROUTE, AttributeValue::String("/api/v1/batches".to_string())),
                (HTTP_STATUS_CODE, AttributeValue::Int(503)),
            ]
        );
        assert!(request.end_unix_nanos >= request.start_unix_nanos);
        assert_eq!(child.name, "append_multi");
        assert_eq!(child.kind, SpanKind::Internal);
        assert_eq!(child.trace_id, request.trace_id);
        assert_eq!(child.parent_span_id, Some(request.span_id));
        assert_eq!(child.attributes, vec![("streams", AttributeValue::Int(1))]);
    }

    #[test]
    fn a_request_continues_the_callers_trace_unless_the_caller_does_not_sample_it() {
        let caller = TraceParent::parse(CALLER_TRACE).expect("valid");
        let spans = recorded(Some(caller), 16);
        assert_eq!(spans.len(), 2);
        assert!(spans.iter().all(|span| span.trace_id == caller.trace_id));
        assert_eq!(spans[1].parent_span_id, Some(caller.parent_span_id));

        let unsampled = TraceParent { sampled: false, ..caller };
        assert_eq!(recorded(Some(unsampled), 16), Vec::new());
    }

    #[test]
    fn spans_that_find_the_queue_full_are_dropped_and_counted() {
        let (_, dropped_before) = span_counts();
        let spans = recorded(None, 1);
        assert_eq!(spans.len(), 1, "the queue holds one");
        let (_, dropped_after) = span_counts();
        assert!(dropped_after > dropped_before, "the other is counted as dropped");
    }
}
