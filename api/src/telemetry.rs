//! Logs through `tracing`, filtered by `RUST_LOG` (default `info`, PostgreSQL's notices from `warn`), always on standard error
//! (standard output is each command's result): human-readable lines on a terminal, JSON lines
//! otherwise, or as `--log-format` says. A line written while a request is served carries the
//! request's span (`request_id`, method, route). `serve` may also export the request spans
//! (see [`crate::trace_export`]).

use std::io::IsTerminal;

use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::trace_export::SpanRecorder;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable on a terminal, JSON otherwise.
    Auto,
    Human,
    Json,
}

impl LogFormat {
    /// The format `Auto` stands for here.
    fn resolved(self) -> LogFormat {
        match self {
            LogFormat::Auto if std::io::stderr().is_terminal() => LogFormat::Human,
            LogFormat::Auto => LogFormat::Json,
            chosen => chosen,
        }
    }
}

/// Without `RUST_LOG`: `info`, but PostgreSQL's notices only from warnings up (applying the
/// migrations notices, at every start, that their own table already exists).
const DEFAULT_FILTER: &str = "info,sqlx::postgres::notice=warn";

/// Installs the logs and, for `serve` with an OTLP endpoint, the recorder of request spans.
/// Each has a filter of its own: `RUST_LOG` chooses the log lines, not the exported spans.
pub fn init_logs(format: LogFormat, span_recorder: Option<SpanRecorder>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let log_lines = match format.resolved() {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
        LogFormat::Human | LogFormat::Auto => {
            tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(filter).boxed()
        }
    };
    let span_export =
        span_recorder.map(|recorder| recorder.with_filter(filter_fn(crate::trace_export::may_be_exported)));
    // A second initialisation (tests starting several applications) keeps the first.
    let _ = tracing_subscriber::registry().with(log_lines).with(span_export).try_init();
}
