//! The tables behind the HTTP edge: bearer tokens (only their SHA-256 hash is kept) and the
//! responses kept for `Idempotency-Key` replays.

use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};

pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// A new random token: `aisc_` and 64 hex digits (two v4 UUIDs' worth of randomness).
pub fn new_token() -> String {
    format!("aisc_{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// A token's listing entry (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub name: String,
    pub roles: Vec<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Stores the hash of `token` for `name`; false when an active token already has that name.
/// A revoked token's name may be reused: its old row gives way to the new one.
pub async fn store_token(pool: &PgPool, name: &str, token: &str, roles: &[&str]) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO api_tokens (name, token_hash, roles) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET token_hash = EXCLUDED.token_hash, roles = EXCLUDED.roles, \
         created_at = now(), revoked_at = NULL WHERE api_tokens.revoked_at IS NOT NULL",
    )
    .bind(name)
    .bind(hash_token(token))
    .bind(roles)
    .execute(pool)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Revokes the active token of `name`; false when there is none.
pub async fn revoke_token(pool: &PgPool, name: &str) -> Result<bool, sqlx::Error> {
    let revoked = sqlx::query("UPDATE api_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL")
        .bind(name)
        .execute(pool)
        .await?;
    Ok(revoked.rows_affected() == 1)
}

pub async fn list_tokens(pool: &PgPool) -> Result<Vec<TokenRecord>, sqlx::Error> {
    let rows =
        sqlx::query("SELECT name, roles, created_at, revoked_at FROM api_tokens ORDER BY name").fetch_all(pool).await?;
    rows.iter()
        .map(|row| {
            Ok(TokenRecord {
                name: row.try_get("name")?,
                roles: row.try_get("roles")?,
                created_at: row.try_get("created_at")?,
                revoked_at: row.try_get("revoked_at")?,
            })
        })
        .collect()
}

/// The name and roles an active token stands for.
pub async fn find_token(pool: &PgPool, token: &str) -> Result<Option<(String, Vec<String>)>, sqlx::Error> {
    sqlx::query_as("SELECT name, roles FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL")
        .bind(hash_token(token))
        .fetch_optional(pool)
        .await
}

/// A response kept for replay; `status` is 0 while the first request still runs.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct KeptResponse {
    pub request_hash: Vec<u8>,
    pub status: i16,
    pub content_type: String,
    pub headers: serde_json::Value,
    pub body: Vec<u8>,
}

/// Claims (principal, key) for a request; false when it was claimed before.
pub async fn claim_key(pool: &PgPool, principal: &str, key: &str, request_hash: &[u8]) -> Result<bool, sqlx::Error> {
    let claimed = sqlx::query(
        "INSERT INTO idempotent_requests (principal, key, request_hash, status, content_type, headers, body) \
         VALUES ($1, $2, $3, 0, '', '{}', '') ON CONFLICT (principal, key) DO NOTHING",
    )
    .bind(principal)
    .bind(key)
    .bind(request_hash)
    .execute(pool)
    .await?;
    Ok(claimed.rows_affected() == 1)
}

pub async fn kept_response(pool: &PgPool, principal: &str, key: &str) -> Result<Option<KeptResponse>, sqlx::Error> {
    sqlx::query_as(
        "SELECT request_hash, status, content_type, headers, body FROM idempotent_requests WHERE principal = $1 AND key = $2",
    )
    .bind(principal)
    .bind(key)
    .fetch_optional(pool)
    .await
}

pub async fn keep_response(
    pool: &PgPool,
    principal: &str,
    key: &str,
    status: i16,
    content_type: &str,
    headers: serde_json::Value,
    body: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE idempotent_requests SET status = $3, content_type = $4, headers = $5, body = $6 \
         WHERE principal = $1 AND key = $2",
    )
    .bind(principal)
    .bind(key)
    .bind(status)
    .bind(content_type)
    .bind(headers)
    .bind(body)
    .execute(pool)
    .await?;
    Ok(())
}

/// Frees a claim whose request ended in an outcome a retry could change.
pub async fn release_key(pool: &PgPool, principal: &str, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM idempotent_requests WHERE principal = $1 AND key = $2 AND status = 0")
        .bind(principal)
        .bind(key)
        .execute(pool)
        .await?;
    Ok(())
}
