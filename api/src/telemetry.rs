//! Logs through `tracing`, filtered by `RUST_LOG` (default `info`, PostgreSQL's notices from `warn`), always on standard error
//! (standard output is each command's result): human-readable lines on a terminal, JSON lines
//! otherwise, or as `--log-format` says. A line written while a request is served carries the
//! request's span (`request_id`, method, route).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

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

pub fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    // A second initialisation (tests starting several applications) keeps the first.
    let _ = match format.resolved() {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .try_init(),
        LogFormat::Human | LogFormat::Auto => {
            tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init()
        }
    };
}
