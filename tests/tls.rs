//! TLS to PostgreSQL, end to end against the suites' server (`DATABASE_URL`, by default the
//! local one). Debian's cluster runs with `ssl = on` and its self-signed "snakeoil"
//! certificate, which names a host name (`localhost` here) and no IP address; the suites reach
//! the server by IP address (127.0.0.1), so under `verify-full` the name does not match.
//! Each `sslmode` connects, or is refused with one line naming the cause and the URL, as the
//! configuration section of README.md says.

mod support;

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use aisc_adapters::database::{self, DatabaseConfig, DatabaseError};
use sqlx::{Connection, PgConnection, PgPool};

/// A CA certificate that signed nothing the server holds (its key was thrown away).
const UNRELATED_CA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/unrelated-ca.pem");

/// The suites' server (the database of `DATABASE_URL`), with exactly these TLS parameters in
/// place of any the URL had, and reached by `host` when given.
fn server_url(host: Option<&str>, tls_parameters: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(&support::admin_url()).expect("DATABASE_URL is a URL");
    if let Some(host) = host {
        url.set_host(Some(host)).expect("a valid host name");
    }
    url.set_query(None);
    if !tls_parameters.is_empty() {
        url.query_pairs_mut().extend_pairs(tls_parameters);
    }
    url.into()
}

/// The certificate the server presents, read where the server reads it (the suites run on the
/// server's machine). A server without TLS cannot run this suite, so it says so.
async fn server_certificate_file() -> String {
    let admin_url = support::admin_url();
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|error| panic!("the TLS suite needs PostgreSQL at {admin_url}: {error}"));
    let ssl: String = sqlx::query_scalar("SHOW ssl").fetch_one(&mut admin).await.expect("SHOW ssl");
    assert_eq!(ssl, "on", "the TLS suite needs a server with ssl = on (Debian's cluster has it)");
    let file: String =
        sqlx::query_scalar("SHOW ssl_cert_file").fetch_one(&mut admin).await.expect("SHOW ssl_cert_file");
    let absolute = if file.starts_with('/') {
        file
    } else {
        // A relative path is relative to the data directory.
        let data_directory: String =
            sqlx::query_scalar("SHOW data_directory").fetch_one(&mut admin).await.expect("SHOW data_directory");
        format!("{data_directory}/{file}")
    };
    assert!(std::fs::metadata(&absolute).is_ok(), "the server's certificate {absolute} must be readable here");
    absolute
}

/// The service's own connection code, as `aisc serve` and every subcommand use it.
async fn connect(url: &str) -> Result<PgPool, DatabaseError> {
    database::connect(&DatabaseConfig::new(url)).await
}

async fn session_is_encrypted(pool: &PgPool) -> bool {
    sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(pool)
        .await
        .expect("pg_stat_ssl has a row for every backend")
}

/// A refusal as the operator reads it: the TLS variant, on one line, naming the URL without
/// its password.
fn assert_tls_refusal(error: &DatabaseError, url: &str, cause: &str) {
    let line = error.to_string();
    assert!(matches!(error, DatabaseError::TlsFailed { .. }), "a TLS failure, not {error:?}");
    assert!(!line.contains('\n'), "one line: {line}");
    assert!(line.contains(&database::redacted(url)), "names the URL: {line}");
    assert!(line.contains(cause), "names the cause ({cause}): {line}");
}

#[tokio::test]
async fn require_encrypts_the_session() {
    server_certificate_file().await;
    let pool = connect(&server_url(None, &[("sslmode", "require")])).await.expect("connect with sslmode=require");
    assert!(session_is_encrypted(&pool).await, "sslmode=require must give a TLS session");
    pool.close().await;
}

#[tokio::test]
async fn disable_leaves_the_session_unencrypted() {
    let pool = connect(&server_url(None, &[("sslmode", "disable")])).await.expect("connect with sslmode=disable");
    assert!(!session_is_encrypted(&pool).await, "sslmode=disable must not negotiate TLS");
    pool.close().await;
}

#[tokio::test]
async fn verify_ca_trusts_a_self_signed_server_certificate_given_as_sslrootcert() {
    // rustls (webpki) accepts a self-signed end-entity certificate as its own trust anchor
    // (it is `CA:FALSE`, which matters only for issuers in the chain, not for the anchor).
    let certificate = server_certificate_file().await;
    let url = server_url(None, &[("sslmode", "verify-ca"), ("sslrootcert", &certificate)]);
    let pool = connect(&url).await.expect("verify-ca with the server's own certificate");
    assert!(session_is_encrypted(&pool).await);
    pool.close().await;
}

#[tokio::test]
async fn verify_ca_refuses_a_server_certificate_that_the_given_ca_did_not_sign() {
    server_certificate_file().await;
    let url = server_url(None, &[("sslmode", "verify-ca"), ("sslrootcert", UNRELATED_CA)]);
    let error = connect(&url).await.expect_err("a certificate no trusted CA signed must be refused");
    assert_tls_refusal(&error, &url, "the server's certificate is not signed by the CA in sslrootcert");
}

#[tokio::test]
async fn verify_full_refuses_a_host_name_the_certificate_does_not_name() {
    let certificate = server_certificate_file().await;
    // The server by IP address: the certificate names host names only.
    let url = server_url(None, &[("sslmode", "verify-full"), ("sslrootcert", &certificate)]);
    let error = connect(&url).await.expect_err("a certificate for another name must be refused");
    assert_tls_refusal(&error, &url, "does not name the host of the URL");
}

#[tokio::test]
async fn verify_full_connects_by_the_name_the_certificate_holds() {
    let certificate = server_certificate_file().await;
    // Debian's snakeoil certificate names the machine's host name, which is `localhost` on the
    // machines this suite was written on; elsewhere there is no name to test by.
    let names_localhost = Command::new("openssl")
        .args(["x509", "-noout", "-in", &certificate, "-checkhost", "localhost"])
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).contains("does match"));
    let local_server = url::Url::parse(&support::admin_url())
        .is_ok_and(|admin| admin.host_str().is_some_and(|host| host == "127.0.0.1" || host == "localhost"));
    if !(names_localhost && local_server) {
        eprintln!(
            "skipped: the server's certificate {certificate} does not name localhost, or the server is not local"
        );
        return;
    }
    let url = server_url(Some("localhost"), &[("sslmode", "verify-full"), ("sslrootcert", &certificate)]);
    let pool = connect(&url).await.expect("verify-full by the name in the certificate");
    assert!(session_is_encrypted(&pool).await);
    pool.close().await;
}

#[tokio::test]
async fn an_unreadable_sslrootcert_is_named_before_any_connection() {
    let missing = "/nonexistent/aisc-tests/ca.pem";
    let url = server_url(None, &[("sslmode", "verify-full"), ("sslrootcert", missing)]);
    let error = connect(&url).await.expect_err("an unreadable CA file must be refused");
    assert_tls_refusal(&error, &url, &format!("cannot read sslrootcert {missing}"));
}

#[tokio::test]
async fn verify_ca_without_sslrootcert_is_refused() {
    // Only the public CAs would be left to trust, with no host name check: anyone could pass.
    let url = server_url(None, &[("sslmode", "verify-ca")]);
    let error = connect(&url).await.expect_err("verify-ca without a CA must be refused");
    assert_tls_refusal(&error, &url, "sslmode=verify-ca needs sslrootcert");
}

#[tokio::test]
async fn require_refuses_a_server_that_does_not_offer_tls() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Answers the client's SSLRequest (8 bytes) with 'N', as a server with ssl = off does.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a port");
    let port = listener.local_addr().expect("local address").port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut ssl_request = [0u8; 8];
            if socket.read_exact(&mut ssl_request).await.is_ok() {
                let _ = socket.write_all(b"N").await;
            }
        }
    });
    let url = format!("postgres://postgres@127.0.0.1:{port}/aisc_subsidy?sslmode=require");
    let error = connect(&url).await.expect_err("sslmode=require must not fall back to plain text");
    assert_tls_refusal(&error, &url, "server does not support TLS");
}

#[tokio::test]
async fn a_server_closing_the_connection_at_the_tls_request_counts_as_a_lost_connection() {
    use tokio::io::AsyncReadExt;
    // A database going down between accept and answer: sqlx reads the missing answer to its
    // SSLRequest as a protocol error, which must still give a 503, not a 500.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a port");
    let port = listener.local_addr().expect("local address").port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut ssl_request = [0u8; 8];
            let _ = socket.read_exact(&mut ssl_request).await;
        }
    });
    for sslmode in ["prefer", "require"] {
        let url = format!("postgres://postgres@127.0.0.1:{port}/aisc_subsidy?sslmode={sslmode}");
        let error = PgConnection::connect(&url).await.expect_err("nothing answers");
        assert!(database::is_unavailable(&error), "{sslmode}: {error:?}");
    }
    // At start-up it reads as the server being unreachable, in words.
    let url = format!("postgres://postgres@127.0.0.1:{port}/aisc_subsidy");
    let error = connect(&url).await.expect_err("nothing answers");
    assert!(matches!(error, DatabaseError::Unreachable { .. }), "{error:?}");
    assert!(
        error.to_string().contains("the server closed the connection without answering the request for TLS"),
        "{error}"
    );
}

#[tokio::test]
async fn aisc_migrate_creates_and_migrates_a_fresh_database_over_tls() {
    server_certificate_file().await;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs();
    // The suites' naming, so that a database left by a failed run is dropped later.
    let name = format!("aisc_test_{now}_{}", uuid::Uuid::new_v4().simple());
    let admin_url = support::admin_url();
    let url = server_url(None, &[("sslmode", "require")]);
    let url = support::database_url(&url, &name);
    let output = support::aisc()
        .args(["migrate", "--database-url", &url])
        .env_remove("PGSSLMODE")
        .env_remove("PGSSLROOTCERT")
        .output()
        .expect("run aisc");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "aisc migrate over sslmode=require: {stderr}");

    let mut admin = PgConnection::connect(&support::database_url(&admin_url, &name)).await.expect("the new database");
    let applied: i64 =
        sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations").fetch_one(&mut admin).await.expect("migrations");
    assert_eq!(applied, database::MIGRATOR.iter().count() as i64, "every migration applied");
    admin.close().await.expect("close");

    let mut admin = PgConnection::connect(&admin_url).await.expect("admin connection");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        .execute(&mut admin)
        .await
        .expect("drop the database");
}

#[test]
fn the_binary_reads_pgsslmode_and_pgsslrootcert_and_fails_in_one_line() {
    // A password in the URL must not reach the message (trust authentication ignores it).
    let mut url = url::Url::parse(&server_url(None, &[])).expect("a URL");
    if url.password().is_none() {
        url.set_password(Some("secret")).expect("a URL with a user takes a password");
    }
    let password = url.password().unwrap_or_default().to_string();
    let url = url.to_string();
    let output = support::aisc()
        .args(["migrate", "--database-url", &url])
        .env("PGSSLMODE", "verify-ca")
        .env("PGSSLROOTCERT", UNRELATED_CA)
        .output()
        .expect("run aisc");
    assert!(!output.status.success(), "must exit non-zero");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line: {stderr:?}");
    let line = lines[0];
    assert!(line.starts_with("error: cannot open a TLS session with PostgreSQL at "), "{line}");
    assert!(line.contains(&database::redacted(&url)), "names the URL: {line}");
    assert!(!line.contains(&password), "never the password: {line}");
    assert!(line.contains("not signed by the CA in sslrootcert"), "names the cause: {line}");
}
