//! Sessions of the web pages: a staff member signs in with their bearer token and gets a
//! random session value for a cookie. Only hashes are stored — of the session value and of the
//! token — and a session lasts while its token is neither revoked nor replaced, and at most
//! [`SESSION_LIFETIME`].

use std::time::Duration;

use sqlx::PgPool;

use crate::access::hash_token;

/// How long a session lasts after sign-in: a working day, so a laptop left signed in overnight
/// asks for the token again in the morning.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// A session just opened: the cookie's value (shown once, never stored) and its CSRF token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedSession {
    pub session: String,
    pub csrf_token: String,
}

/// Who a session stands for, and the CSRF token its forms must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOwner {
    pub name: String,
    pub roles: Vec<String>,
    pub csrf_token: String,
}

/// Opens a session for `token` if it is an active token; `None` when it is not (unknown or
/// revoked). Expired sessions are swept on the way.
pub async fn open(pool: &PgPool, token: &str) -> Result<Option<OpenedSession>, sqlx::Error> {
    let token_hash = hash_token(token);
    let known: Option<(String,)> =
        sqlx::query_as("SELECT name FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL")
            .bind(&token_hash)
            .fetch_optional(pool)
            .await?;
    if known.is_none() {
        return Ok(None);
    }
    sqlx::query("DELETE FROM ui_sessions WHERE expires_at < now()").execute(pool).await?;
    let opened = OpenedSession { session: random_value(), csrf_token: random_value() };
    sqlx::query(
        "INSERT INTO ui_sessions (session_hash, token_hash, csrf_token, expires_at) \
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
    )
    .bind(hash_token(&opened.session))
    .bind(&token_hash)
    .bind(&opened.csrf_token)
    .bind(SESSION_LIFETIME.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(Some(opened))
}

/// The owner of an open session: `None` when the session is unknown, expired or closed, or its
/// token has since been revoked.
pub async fn find(pool: &PgPool, session: &str) -> Result<Option<SessionOwner>, sqlx::Error> {
    let row: Option<(String, Vec<String>, String)> = sqlx::query_as(
        "SELECT t.name, t.roles, s.csrf_token FROM ui_sessions s \
         JOIN api_tokens t ON t.token_hash = s.token_hash AND t.revoked_at IS NULL \
         WHERE s.session_hash = $1 AND s.expires_at > now()",
    )
    .bind(hash_token(session))
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(name, roles, csrf_token)| SessionOwner { name, roles, csrf_token }))
}

/// Closes a session (signing out); closing an unknown one is not an error.
pub async fn close(pool: &PgPool, session: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM ui_sessions WHERE session_hash = $1").bind(hash_token(session)).execute(pool).await?;
    Ok(())
}

/// 64 hex digits of randomness (two v4 UUIDs, from the system's generator).
fn random_value() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}
