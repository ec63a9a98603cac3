//! Prometheus metrics at `/metrics`: requests by route, method and status, a latency
//! histogram by route, append conflicts, requests cut off at their deadline, the held-back
//! waits of `$all`, projections' failures and stalls, webhook deliveries by outcome, exported and dropped trace spans, and the
//! database pool.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use actix_web::{HttpResponse, get, web};
use sqlx::PgPool;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

#[derive(Default)]
struct Registry {
    requests: BTreeMap<(String, String, u16), u64>,
    /// Per route: bucket counts, count, sum in seconds.
    latency: BTreeMap<String, ([u64; BUCKETS.len()], u64, f64)>,
    append_conflicts: u64,
    deadlines_exceeded: u64,
    /// Webhook delivery attempts by outcome: delivered, retried, failed (given up).
    webhook_deliveries: BTreeMap<&'static str, u64>,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(Registry::default()))
}

pub fn record_request(method: &str, route: &str, status: u16, elapsed: Duration) {
    let Ok(mut registry) = registry().lock() else {
        return;
    };
    *registry.requests.entry((route.to_string(), method.to_string(), status)).or_default() += 1;
    let seconds = elapsed.as_secs_f64();
    let entry = registry.latency.entry(route.to_string()).or_default();
    for (bucket, bound) in entry.0.iter_mut().zip(BUCKETS) {
        if seconds <= bound {
            *bucket += 1;
        }
    }
    entry.1 += 1;
    entry.2 += seconds;
}

pub fn record_append_conflict() {
    if let Ok(mut registry) = registry().lock() {
        registry.append_conflicts += 1;
    }
}

pub fn record_deadline_exceeded() {
    if let Ok(mut registry) = registry().lock() {
        registry.deadlines_exceeded += 1;
    }
}

/// A webhook delivery attempt's outcome: `delivered`, `retried` or `failed` (given up).
pub fn record_webhook_delivery(outcome: &'static str) {
    if let Ok(mut registry) = registry().lock() {
        *registry.webhook_deliveries.entry(outcome).or_default() += 1;
    }
}

fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Prometheus metrics.
#[utoipa::path(tag = "operations", security(()), responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
#[get("/metrics")]
pub async fn metrics(pool: web::Data<PgPool>) -> HttpResponse {
    let mut out = String::new();
    if let Ok(registry) = registry().lock() {
        let _ = writeln!(out, "# HELP aisc_http_requests_total HTTP requests by route, method and status.");
        let _ = writeln!(out, "# TYPE aisc_http_requests_total counter");
        for ((route, method, status), count) in &registry.requests {
            let _ = writeln!(
                out,
                "aisc_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {count}",
                label(route),
                label(method)
            );
        }
        let _ = writeln!(out, "# HELP aisc_http_request_duration_seconds HTTP request latency by route.");
        let _ = writeln!(out, "# TYPE aisc_http_request_duration_seconds histogram");
        for (route, (buckets, count, sum)) in &registry.latency {
            let route = label(route);
            for (bound, bucket) in BUCKETS.iter().zip(buckets) {
                let _ = writeln!(
                    out,
                    "aisc_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {bucket}"
                );
            }
            let _ = writeln!(out, "aisc_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}");
            let _ = writeln!(out, "aisc_http_request_duration_seconds_sum{{route=\"{route}\"}} {sum}");
            let _ = writeln!(out, "aisc_http_request_duration_seconds_count{{route=\"{route}\"}} {count}");
        }
        let _ = writeln!(out, "# HELP aisc_append_conflicts_total Commands refused for a concurrent change.");
        let _ = writeln!(out, "# TYPE aisc_append_conflicts_total counter");
        let _ = writeln!(out, "aisc_append_conflicts_total {}", registry.append_conflicts);
        let _ = writeln!(out, "# HELP aisc_request_deadlines_exceeded_total Requests answered 503 at their deadline.");
        let _ = writeln!(out, "# TYPE aisc_request_deadlines_exceeded_total counter");
        let _ = writeln!(out, "aisc_request_deadlines_exceeded_total {}", registry.deadlines_exceeded);
        let _ = writeln!(
            out,
            "# HELP aisc_webhook_deliveries_total Webhook delivery attempts by outcome (delivered, retried, failed: given up)."
        );
        let _ = writeln!(out, "# TYPE aisc_webhook_deliveries_total counter");
        for outcome in ["delivered", "retried", "failed"] {
            let count = registry.webhook_deliveries.get(outcome).copied().unwrap_or_default();
            let _ = writeln!(out, "aisc_webhook_deliveries_total{{outcome=\"{outcome}\"}} {count}");
        }
    }
    let held_back = aisc_adapters::held_back::stats();
    let _ = writeln!(out, "# HELP aisc_all_held_back_waits_total Reads of $all that waited for a running transaction.");
    let _ = writeln!(out, "# TYPE aisc_all_held_back_waits_total counter");
    let _ = writeln!(out, "aisc_all_held_back_waits_total {}", held_back.waits);
    let _ = writeln!(
        out,
        "# HELP aisc_all_held_back_wait_seconds_total Time reads of $all waited for running transactions."
    );
    let _ = writeln!(out, "# TYPE aisc_all_held_back_wait_seconds_total counter");
    let _ = writeln!(out, "aisc_all_held_back_wait_seconds_total {}", held_back.wait_seconds);
    let _ = writeln!(
        out,
        "# HELP aisc_all_held_back_long_waits_total Waits of $all over {} ms (each logged with the pinning backend).",
        aisc_adapters::held_back::LONG_WAIT.as_millis()
    );
    let _ = writeln!(out, "# TYPE aisc_all_held_back_long_waits_total counter");
    let _ = writeln!(out, "aisc_all_held_back_long_waits_total {}", held_back.long_waits);
    let health = aisc_projections::health::snapshot();
    let _ = writeln!(out, "# HELP aisc_projection_failures_total Failures of a projection (it then leads again).");
    let _ = writeln!(out, "# TYPE aisc_projection_failures_total counter");
    for projection in aisc_projections::all() {
        let failures = health.get(projection.name()).map_or(0, |health| health.failures_total);
        let _ = writeln!(out, "aisc_projection_failures_total{{projection=\"{}\"}} {failures}", projection.name());
    }
    let _ = writeln!(
        out,
        "# HELP aisc_projection_stalled 1 while a projection fails again at the same position (an event it cannot apply)."
    );
    let _ = writeln!(out, "# TYPE aisc_projection_stalled gauge");
    for projection in aisc_projections::all() {
        let stalled = health.get(projection.name()).is_some_and(|health| health.stalled());
        let _ = writeln!(out, "aisc_projection_stalled{{projection=\"{}\"}} {}", projection.name(), u8::from(stalled));
    }
    let (spans_exported, spans_dropped) = crate::trace_export::span_counts();
    let _ = writeln!(out, "# HELP aisc_trace_spans_exported_total Request spans taken by the OTLP collector.");
    let _ = writeln!(out, "# TYPE aisc_trace_spans_exported_total counter");
    let _ = writeln!(out, "aisc_trace_spans_exported_total {spans_exported}");
    let _ = writeln!(
        out,
        "# HELP aisc_trace_spans_dropped_total Request spans dropped: the export queue full, or the collector down or refusing."
    );
    let _ = writeln!(out, "# TYPE aisc_trace_spans_dropped_total counter");
    let _ = writeln!(out, "aisc_trace_spans_dropped_total {spans_dropped}");
    let _ = writeln!(out, "# HELP aisc_db_pool_connections Database connections open, and idle.");
    let _ = writeln!(out, "# TYPE aisc_db_pool_connections gauge");
    let _ = writeln!(out, "aisc_db_pool_connections{{state=\"open\"}} {}", pool.size());
    let _ = writeln!(out, "aisc_db_pool_connections{{state=\"idle\"}} {}", pool.num_idle());
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(out)
}
