//! Connecting to PostgreSQL at start-up: create the database if it is missing, apply the
//! migrations, and say clearly where the service tried when the server cannot be reached.

use std::time::Duration;

use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/aisc_subsidy";

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: String,
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before the database counts as down.
    pub acquire_timeout: Duration,
    /// The server cancels a statement that runs longer, and ends a session left idle inside a
    /// transaction that long (so a stuck client cannot hold back readers of `$all`). `None`
    /// for background work: projections, rebuilds and the long commands of the command line.
    pub statement_timeout: Option<Duration>,
}

impl DatabaseConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), max_connections: 16, acquire_timeout: Duration::from_secs(3), statement_timeout: None }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error(
        "cannot reach PostgreSQL at {url}: {reason}; start PostgreSQL there or set DATABASE_URL to a reachable server"
    )]
    Unreachable { url: String, reason: String },
    #[error("DATABASE_URL {url} is not a valid PostgreSQL URL: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot create database at {url}: {reason}")]
    CreateFailed { url: String, reason: String },
    #[error("cannot apply migrations to {url}: {reason}")]
    MigrationFailed { url: String, reason: String },
}

/// The URL with any password replaced, fit for messages and logs.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _password)) => {
                    format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..])
                }
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Connects, creating the database if it does not exist, and applies the migrations.
pub async fn connect_and_migrate(config: &DatabaseConfig) -> Result<PgPool, DatabaseError> {
    ensure_database_exists(config).await?;
    let pool = connect(config).await?;
    MIGRATOR
        .run(&pool)
        .await
        .map_err(|error| DatabaseError::MigrationFailed { url: redacted(&config.url), reason: error.to_string() })?;
    Ok(pool)
}

/// Creates the database named by the URL when the server does not have it yet.
pub async fn ensure_database_exists(config: &DatabaseConfig) -> Result<(), DatabaseError> {
    let url = &config.url;
    parse_options(url)?;
    let exists = with_timeout(config, Postgres::database_exists(url)).await?;
    if !exists {
        tracing::info!(database = %redacted(url), "creating the database");
        match with_timeout(config, Postgres::create_database(url)).await {
            Ok(()) => {}
            // Another instance may have created it at the same moment.
            Err(DatabaseError::Unreachable { reason, .. }) if reason.contains("already exists") => {}
            Err(DatabaseError::Unreachable { reason, .. }) => {
                return Err(DatabaseError::CreateFailed { url: redacted(url), reason });
            }
            Err(other) => return Err(other),
        }
    }
    Ok(())
}

/// A connection pool that fails fast when the server goes away, and reconnects by itself.
pub async fn connect(config: &DatabaseConfig) -> Result<PgPool, DatabaseError> {
    let mut options = parse_options(&config.url)?;
    if let Some(limit) = config.statement_timeout.filter(|limit| !limit.is_zero()) {
        let milliseconds = limit.as_millis().to_string();
        options = options.options([
            ("statement_timeout", milliseconds.as_str()),
            ("idle_in_transaction_session_timeout", milliseconds.as_str()),
        ]);
    }
    let pool = PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout)
        .test_before_acquire(false)
        .connect_lazy_with(options);
    // Prove the server answers now, so start-up fails with a clear message instead of later.
    with_timeout(config, async { sqlx::query("SELECT 1").execute(&pool).await.map(|_| ()) }).await?;
    Ok(pool)
}

fn parse_options(url: &str) -> Result<PgConnectOptions, DatabaseError> {
    url.parse::<PgConnectOptions>()
        .map_err(|error| DatabaseError::InvalidUrl { url: redacted(url), reason: error.to_string() })
}

async fn with_timeout<T>(
    config: &DatabaseConfig,
    operation: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, DatabaseError> {
    let limit = config.acquire_timeout.max(Duration::from_secs(5));
    match tokio::time::timeout(limit, operation).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(DatabaseError::Unreachable { url: redacted(&config.url), reason: one_line(&error) }),
        Err(_) => Err(DatabaseError::Unreachable {
            url: redacted(&config.url),
            reason: format!("no answer within {} s", limit.as_secs()),
        }),
    }
}

/// An error with its causes on one line.
fn one_line(error: &sqlx::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text.replace('\n', " ")
}

/// Whether an error means the database cannot serve now (down, unreachable, shutting down, or
/// a statement cut off by the statement timeout) rather than a fault of the request or code:
/// the caller may retry shortly.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(database) => matches!(
            database.code().as_deref(),
            // admin shutdown, crash shutdown, cannot connect now, connection failures,
            // statement timeout or cancellation, idle-in-transaction timeout
            Some("57P01" | "57P02" | "57P03" | "08000" | "08003" | "08006" | "08001" | "08004" | "57014" | "25P03")
        ),
        _ => false,
    }
}

/// Whether the database answers a trivial query: the readiness probe.
pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(redacted("postgres://app:s3cret@db:5432/x"), "postgres://app:***@db:5432/x");
        assert_eq!(redacted("postgres://postgres@127.0.0.1/x"), "postgres://postgres@127.0.0.1/x");
        assert_eq!(redacted("postgres:///x"), "postgres:///x");
    }
}
