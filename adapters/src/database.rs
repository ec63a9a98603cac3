//! Connecting to PostgreSQL at start-up: create the database if it is missing, apply the
//! migrations, and say clearly where the service tried when the server cannot be reached.
//!
//! Who may migrate: the role that owns the event log (or, on a database without one yet, a
//! role that may create objects in it) — the owner. The service's login roles (members of
//! `aisc_service`, see `migrations/20261201000001_least_privilege.sql`) may not; they check
//! that the schema is current instead, and refuse to start when it is not.
//!
//! TLS follows the URL's `sslmode` and `sslrootcert` (else PGSSLMODE and PGSSLROOTCERT), as
//! sqlx reads them; the session is encrypted by rustls. What sqlx would only report as a bare
//! I/O error (an unreadable `sslrootcert`, a certificate rustls refuses) is checked or
//! explained here, so that start-up fails with one line an operator can act on.

use std::time::Duration;

use sqlx::migrate::{MigrateDatabase, Migration};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
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
    /// Every transaction of the pool is read-only (`default_transaction_read_only`): the
    /// commands that only read cannot write, whatever role they run as.
    pub read_only: bool,
}

impl DatabaseConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
            statement_timeout: None,
            read_only: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error(
        "cannot reach PostgreSQL at {url}: {reason}; start PostgreSQL there or set DATABASE_URL to a reachable server"
    )]
    Unreachable { url: String, reason: String },
    /// The server was reached but no acceptable TLS session came of it, or the TLS settings
    /// cannot work (a `sslrootcert` that cannot be read): retrying would not help.
    #[error(
        "cannot open a TLS session with PostgreSQL at {url}: {reason}; check sslmode and sslrootcert in DATABASE_URL (or PGSSLMODE and PGSSLROOTCERT)"
    )]
    TlsFailed { url: String, reason: String },
    #[error("DATABASE_URL {url} is not a valid PostgreSQL URL: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot create database at {url}: {reason}")]
    CreateFailed { url: String, reason: String },
    #[error("cannot apply migrations to {url}: {reason}")]
    MigrationFailed { url: String, reason: String },
    /// The connected role does not own the log: only the owner migrates.
    #[error(
        "role {role} does not own the event log at {url}, so it may not migrate it; run `aisc migrate` as the owner role"
    )]
    NotTheOwner { role: String, url: String },
    /// A role that may not migrate met a schema older than its code.
    #[error("{pending} pending at {url} ({names}); run `aisc migrate` as the owner role")]
    MigrationsPending { pending: String, url: String, names: String },
    /// A role that may not migrate cannot even read which migrations were applied: the
    /// database has not been prepared for it (migrated since roles were introduced).
    #[error(
        "role {role} cannot read which migrations {url} has applied ({reason}), so the database is not prepared for it; run `aisc migrate` as the owner role"
    )]
    MigrationsUnreadable { role: String, url: String, reason: String },
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

/// `aisc migrate`: connects, creating the database if it does not exist, and applies the
/// migrations and the grants; refuses, saying so, when the role does not own the log.
pub async fn connect_and_migrate(config: &DatabaseConfig) -> Result<PgPool, DatabaseError> {
    ensure_database_exists(config).await?;
    let pool = connect(config).await?;
    let rights = migration_rights(&pool, config).await?;
    if !rights.may_migrate {
        return Err(DatabaseError::NotTheOwner { role: rights.role, url: redacted(&config.url) });
    }
    migrate(&pool, config).await?;
    Ok(pool)
}

/// `aisc serve` and the commands that write: connects (creating the database if it does not
/// exist) and migrates when the role owns the log, as in development; a role that does not
/// (a login of the service) only checks that no migration is pending, and refuses if one is.
pub async fn connect_and_migrate_if_owner(config: &DatabaseConfig) -> Result<PgPool, DatabaseError> {
    ensure_database_exists(config).await?;
    let pool = connect(config).await?;
    let rights = migration_rights(&pool, config).await?;
    if rights.may_migrate {
        migrate(&pool, config).await?;
    } else {
        require_current_schema(&pool, config, &rights.role).await?;
    }
    Ok(pool)
}

/// The commands that only read: connects to an existing database, never creates or migrates
/// it, and makes every transaction read-only.
pub async fn connect_read_only(config: &DatabaseConfig) -> Result<PgPool, DatabaseError> {
    connect(&DatabaseConfig { read_only: true, ..config.clone() }).await
}

/// Applies the migrations, then states every grant again (`aisc_grant_privileges()`, which the
/// migrations define), so that roles recreated or rights taken away by hand are put right.
async fn migrate(pool: &PgPool, config: &DatabaseConfig) -> Result<(), DatabaseError> {
    let failed = |reason: String| DatabaseError::MigrationFailed { url: redacted(&config.url), reason };
    MIGRATOR.run(pool).await.map_err(|error| failed(error.to_string()))?;
    sqlx::query("SELECT aisc_grant_privileges()").execute(pool).await.map_err(|error| failed(one_line(&error)))?;
    Ok(())
}

/// Who is connected, and whether that role may migrate the database.
struct MigrationRights {
    role: String,
    may_migrate: bool,
}

async fn migration_rights(pool: &PgPool, config: &DatabaseConfig) -> Result<MigrationRights, DatabaseError> {
    // The owner of the log, or a role that inherits its rights (a superuser counts as every
    // role); before the log exists, a role that may create objects in the database.
    let row: (String, Option<bool>) = sqlx::query_as(
        "SELECT current_user::text, \
                coalesce(pg_has_role((SELECT relowner FROM pg_class WHERE oid = to_regclass('public.events')), 'USAGE'), \
                         has_database_privilege(current_database(), 'CREATE'))",
    )
    .fetch_one(pool)
    .await
    .map_err(|error| DatabaseError::Unreachable { url: redacted(&config.url), reason: one_line(&error) })?;
    Ok(MigrationRights { role: row.0, may_migrate: row.1.unwrap_or(false) })
}

/// The migrations of this binary the database has not applied.
pub async fn pending_migrations(pool: &PgPool) -> Result<Vec<&'static Migration>, sqlx::Error> {
    let tracked: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations')::text").fetch_one(pool).await?;
    let applied: Vec<i64> = match tracked {
        None => Vec::new(),
        Some(_) => {
            sqlx::query_scalar("SELECT version FROM public._sqlx_migrations WHERE success ORDER BY version")
                .fetch_all(pool)
                .await?
        }
    };
    Ok(MIGRATOR
        .iter()
        .filter(|migration| !migration.migration_type.is_down_migration() && !applied.contains(&migration.version))
        .collect())
}

async fn require_current_schema(pool: &PgPool, config: &DatabaseConfig, role: &str) -> Result<(), DatabaseError> {
    let pending = pending_migrations(pool).await.map_err(|error| match &error {
        sqlx::Error::Database(database) if database.code().as_deref() == Some(INSUFFICIENT_PRIVILEGE) => {
            DatabaseError::MigrationsUnreadable {
                role: role.to_string(),
                url: redacted(&config.url),
                reason: one_line(&error),
            }
        }
        _ => DatabaseError::Unreachable { url: redacted(&config.url), reason: one_line(&error) },
    })?;
    if pending.is_empty() {
        return Ok(());
    }
    let names: Vec<String> =
        pending.iter().map(|migration| format!("{} {}", migration.version, migration.description)).collect();
    Err(DatabaseError::MigrationsPending {
        pending: match pending.len() {
            1 => "1 migration".to_string(),
            count => format!("{count} migrations"),
        },
        url: redacted(&config.url),
        names: names.join(", "),
    })
}

/// SQLSTATE 42501: the role lacks a privilege.
const INSUFFICIENT_PRIVILEGE: &str = "42501";

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
    if config.read_only {
        options = options.options([("default_transaction_read_only", "on")]);
    }
    if !checks_certificate(options.get_ssl_mode()) && root_certificate_setting(&config.url).is_some() {
        // libpq would verify against it under `require`; sqlx does not, so say so rather than
        // let the operator believe the server is authenticated.
        tracing::warn!(
            database = %redacted(&config.url),
            "sslrootcert is set but sslmode is neither verify-ca nor verify-full, so the server's certificate is not checked; use sslmode=verify-full to have it checked"
        );
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
    let options = url
        .parse::<PgConnectOptions>()
        .map_err(|error| DatabaseError::InvalidUrl { url: redacted(url), reason: error.to_string() })?;
    check_root_certificate(url, options.get_ssl_mode())?;
    Ok(options)
}

/// Whether the mode checks the server's certificate (rather than only encrypting).
fn checks_certificate(mode: PgSslMode) -> bool {
    matches!(mode, PgSslMode::VerifyCa | PgSslMode::VerifyFull)
}

/// Where the certificate authorities that sign the server's certificate come from.
#[derive(Debug, PartialEq)]
enum RootCertificateSetting {
    File(String),
    /// PGSSLROOTCERT may hold the PEM itself (sqlx takes a value that looks like PEM as such).
    InlinePem(String),
}

/// The `sslrootcert` sqlx will use: the URL's (sqlx also accepts the spellings `ssl-root-cert`
/// and `ssl-ca`; the last one given wins), else PGSSLROOTCERT.
fn root_certificate_setting(url: &str) -> Option<RootCertificateSetting> {
    let from_url = url::Url::parse(url).ok().and_then(|parsed| {
        parsed
            .query_pairs()
            .filter(|(key, _)| matches!(key.as_ref(), "sslrootcert" | "ssl-root-cert" | "ssl-ca"))
            .last()
            .map(|(_, path)| RootCertificateSetting::File(path.into_owned()))
    });
    from_url.or_else(|| {
        let value = std::env::var("PGSSLROOTCERT").ok()?;
        let trimmed = value.trim();
        Some(if trimmed.starts_with("-----BEGIN") && trimmed.ends_with("-----") {
            RootCertificateSetting::InlinePem(value)
        } else {
            RootCertificateSetting::File(value)
        })
    })
}

const PEM_CERTIFICATE_HEADER: &str = "-----BEGIN CERTIFICATE-----";

/// Under `verify-ca` and `verify-full`, the CA certificate must be there and be PEM: sqlx
/// would report a missing file as a bare "No such file or directory", and would silently
/// ignore a file without a PEM certificate.
fn check_root_certificate(url: &str, mode: PgSslMode) -> Result<(), DatabaseError> {
    if !checks_certificate(mode) {
        return Ok(());
    }
    let refused = |reason: String| DatabaseError::TlsFailed { url: redacted(url), reason };
    let (pem, source) = match root_certificate_setting(url) {
        // sqlx then trusts the bundled public CAs (webpki-roots) alone. Without a host name
        // check that proves nothing: anyone can buy a certificate from a public CA.
        None if matches!(mode, PgSslMode::VerifyCa) => {
            return Err(refused(
                "sslmode=verify-ca needs sslrootcert, the certificate of the CA that signed the server's certificate (or use sslmode=verify-full to trust the public CAs for the server's host name)".to_string(),
            ));
        }
        None => return Ok(()),
        Some(RootCertificateSetting::InlinePem(pem)) => (pem, "the PEM in PGSSLROOTCERT".to_string()),
        Some(RootCertificateSetting::File(path)) => match std::fs::read_to_string(&path) {
            Ok(pem) => (pem, format!("sslrootcert {path}")),
            Err(error) => return Err(refused(format!("cannot read sslrootcert {path}: {error}"))),
        },
    };
    if !pem.contains(PEM_CERTIFICATE_HEADER) {
        return Err(refused(format!("{source} holds no PEM certificate (a {PEM_CERTIFICATE_HEADER} block)")));
    }
    Ok(())
}

async fn with_timeout<T>(
    config: &DatabaseConfig,
    operation: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, DatabaseError> {
    let limit = config.acquire_timeout.max(Duration::from_secs(5));
    match tokio::time::timeout(limit, operation).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(match tls_failure(&error, root_certificate_setting(&config.url).is_some()) {
            Some(reason) => DatabaseError::TlsFailed { url: redacted(&config.url), reason },
            None => DatabaseError::Unreachable { url: redacted(&config.url), reason: unreachable_reason(&error) },
        }),
        Err(_) => Err(DatabaseError::Unreachable {
            url: redacted(&config.url),
            reason: format!("no answer within {} s", limit.as_secs()),
        }),
    }
}

/// Why the TLS session failed, in words an operator can act on; `None` when the failure is not
/// about TLS.
fn tls_failure(error: &sqlx::Error, has_root_certificate: bool) -> Option<String> {
    // sqlx passes a handshake rustls refused as an I/O error wrapping the rustls error, and
    // a TLS problem of its own (a server that does not offer TLS) as `Error::Tls`.
    let refused_by_rustls = match error {
        sqlx::Error::Io(io_error) => io_error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        sqlx::Error::Tls(inner) => inner.downcast_ref::<rustls::Error>(),
        _ => None,
    };
    match (refused_by_rustls, error) {
        (Some(rustls_error), _) => Some(explain_rustls_error(rustls_error, has_root_certificate)),
        (None, sqlx::Error::Tls(inner)) => Some(inner.to_string().replace('\n', " ")),
        (None, _) => None,
    }
}

fn explain_rustls_error(error: &rustls::Error, has_root_certificate: bool) -> String {
    use rustls::CertificateError;
    let detail = error.to_string().replace('\n', " ");
    match error {
        // BadSignature: a CA of the same name as the issuer, but not the key that signed it.
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::BadSignature) => {
            if has_root_certificate {
                format!("the server's certificate is not signed by the CA in sslrootcert ({detail})")
            } else {
                format!(
                    "the server's certificate is not signed by a public CA; give the CA that signed it as sslrootcert ({detail})"
                )
            }
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "the server's certificate does not name the host of the URL, which sslmode=verify-full requires; connect by a name the certificate holds ({detail})"
        ),
        rustls::Error::InvalidCertificate(_) => format!("the server's certificate is refused ({detail})"),
        _ => detail,
    }
}

fn unreachable_reason(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Protocol(message) if message.starts_with(CLOSED_AT_THE_TLS_REQUEST) => {
            "the server closed the connection without answering the request for TLS".to_string()
        }
        _ => one_line(error),
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

/// Whether an error means the database cannot serve now (no connection could be had or it
/// was lost, the server is shutting down, or a statement was cut off by the statement
/// timeout) rather than a fault of the request or code: worth a 503, and a retry shortly.
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
        // Where TLS may be used, sqlx first asks the server for it and reads a one-byte answer
        // without noticing the end of the stream: a server (or proxy) that closes the
        // connection at that moment shows up as this protocol error, not as an I/O error.
        sqlx::Error::Protocol(message) => message.starts_with(CLOSED_AT_THE_TLS_REQUEST),
        _ => false,
    }
}

const CLOSED_AT_THE_TLS_REQUEST: &str = "unexpected response from SSLRequest: 0x00";

/// Whether the database answers a trivial query: the readiness probe.
pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::{RootCertificateSetting, redacted, root_certificate_setting};

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(redacted("postgres://app:s3cret@db:5432/x"), "postgres://app:***@db:5432/x");
        assert_eq!(redacted("postgres://postgres@127.0.0.1/x"), "postgres://postgres@127.0.0.1/x");
        assert_eq!(redacted("postgres:///x"), "postgres:///x");
    }

    #[test]
    fn the_last_root_certificate_in_the_url_wins_in_any_of_its_spellings() {
        let url = "postgres://db/x?sslmode=verify-ca&ssl-ca=/first.pem&sslrootcert=%2Fetc%2Fca%20file.pem";
        assert_eq!(root_certificate_setting(url), Some(RootCertificateSetting::File("/etc/ca file.pem".into())));
        let url = "postgres://db/x?sslrootcert=/first.pem&ssl-root-cert=/second.pem";
        assert_eq!(root_certificate_setting(url), Some(RootCertificateSetting::File("/second.pem".into())));
    }
}
