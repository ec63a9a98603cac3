//! The tables behind the HTTP edge: bearer tokens (only their SHA-256 hash is kept) and the
//! claims and kept responses of `Idempotency-Key` requests.

use sha2::{Digest, Sha256};
use sqlx::{FromRow, PgPool, Row};

use crate::event_ids::ClaimIds;

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

/// A response kept for replay.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct KeptResponse {
    pub request_hash: Vec<u8>,
    pub status: i16,
    pub content_type: String,
    pub headers: serde_json::Value,
    pub body: Vec<u8>,
}

/// A running claim of (principal, key) held by one execution of its request: the claim's
/// event tag and the execution's generation (see [`ClaimIds`]). Valid while its lease runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub ids: ClaimIds,
}

/// An event an earlier execution of a claim committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedEvent {
    pub event_id: uuid::Uuid,
    pub stream_id: String,
    pub stream_version: i64,
    pub position: i64,
}

/// What claiming (principal, key) for a request found.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The caller runs the command under this lease: a new claim, or one taken over from an
    /// execution whose lease ran out before it wrote anything.
    Run(Lease),
    /// An execution whose lease ran out had committed these events (in id order, so in the
    /// order it made them) but kept no response: the caller answers from them under this lease
    /// and does not run the command again.
    Committed(Lease, Vec<ClaimedEvent>),
    /// Another execution holds the claim; its lease runs for `remaining` more.
    Running { remaining: std::time::Duration },
    /// The first request's response.
    Kept(KeptResponse),
    /// The key belongs to a different request.
    OtherRequest,
}

/// How long a claim's row may stay locked (by an append of the running execution committing
/// its events) before the claimant is told the request is still running.
const CLAIM_LOCK_TIMEOUT: &str = "2s";

/// Claims (principal, key) for a request whose body and target hash to `request_hash`.
///
/// A key seen for the first time is claimed under a lease of `lease`. A key whose claim is
/// running answers [`Claim::Running`] until its lease runs out; then the claim is taken over:
/// if the execution that held it committed events (`look_for_events`: its command writes
/// events under [`with_claim_ids`](crate::event_ids::with_claim_ids)), they are answered,
/// else the command runs again. Taking over bumps the generation, after which the events of
/// the superseded execution are refused by the log. A key whose running claim expired
/// without events may be taken by a different request, as a key whose request failed.
pub async fn claim_key(
    pool: &PgPool,
    principal: &str,
    key: &str,
    request_hash: &[u8],
    lease: std::time::Duration,
    look_for_events: bool,
) -> Result<Claim, sqlx::Error> {
    let mut transaction = pool.begin().await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("SET LOCAL lock_timeout = '{CLAIM_LOCK_TIMEOUT}'")))
        .execute(&mut *transaction)
        .await?;
    let tag = ClaimIds::new_tag();
    let inserted = sqlx::query(
        "INSERT INTO idempotent_requests \
           (principal, key, request_hash, status, content_type, headers, body, event_tag, generation, lease_until) \
         VALUES ($1, $2, $3, 0, '', '{}', '', $4, 1, clock_timestamp() + $5) \
         ON CONFLICT (principal, key) DO NOTHING",
    )
    .bind(principal)
    .bind(key)
    .bind(request_hash)
    .bind(&tag[..])
    .bind(lease)
    .execute(&mut *transaction)
    .await?;
    if inserted.rows_affected() == 1 {
        transaction.commit().await?;
        return Ok(Claim::Run(Lease { ids: ClaimIds { tag, generation: 1 } }));
    }

    let row = sqlx::query(
        "SELECT request_hash, status, content_type, headers, body, event_tag, \
                lease_until < clock_timestamp() AS lapsed, \
                CASE WHEN lease_until > clock_timestamp() \
                     THEN extract(epoch FROM lease_until - clock_timestamp())::float8 ELSE 0 END AS remaining \
           FROM idempotent_requests WHERE principal = $1 AND key = $2 FOR UPDATE",
    )
    .bind(principal)
    .bind(key)
    .fetch_optional(&mut *transaction)
    .await;
    let row = match row {
        // The row is locked by an append of the running execution, committing right now.
        Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("55P03") => {
            return Ok(Claim::Running { remaining: std::time::Duration::from_secs(1) });
        }
        // Deleted in between (by a release of an earlier version of the service).
        Ok(None) => return Ok(Claim::Running { remaining: std::time::Duration::from_secs(1) }),
        other => other?.ok_or(sqlx::Error::RowNotFound)?,
    };
    let same_request = row.try_get::<Vec<u8>, _>("request_hash")? == request_hash;
    let status: i16 = row.try_get("status")?;
    if status != 0 {
        return Ok(if same_request { Claim::Kept(KeptResponse::from_row(&row)?) } else { Claim::OtherRequest });
    }
    if !row.try_get::<bool, _>("lapsed")? {
        let remaining = std::time::Duration::from_secs_f64(row.try_get::<f64, _>("remaining")?.max(0.0));
        return Ok(if same_request { Claim::Running { remaining } } else { Claim::OtherRequest });
    }

    // The lease ran out: did the execution that held it commit?
    let stored_tag: Option<Vec<u8>> = row.try_get("event_tag")?;
    let stored_tag = stored_tag.and_then(|tag| <[u8; 8]>::try_from(tag.as_slice()).ok());
    let committed = match stored_tag {
        Some(tag) if look_for_events => committed_events(&mut transaction, tag).await?,
        _ => Vec::new(),
    };
    if !committed.is_empty() && !same_request {
        return Ok(Claim::OtherRequest);
    }
    let taken: (i32, Vec<u8>) = sqlx::query_as(
        "UPDATE idempotent_requests \
            SET generation = generation + 1, lease_until = clock_timestamp() + $3, request_hash = $4, \
                event_tag = coalesce(event_tag, $5) \
          WHERE principal = $1 AND key = $2 \
      RETURNING generation, event_tag",
    )
    .bind(principal)
    .bind(key)
    .bind(lease)
    .bind(request_hash)
    .bind(&tag[..])
    .fetch_one(&mut *transaction)
    .await?;
    transaction.commit().await?;
    let tag =
        <[u8; 8]>::try_from(taken.1.as_slice()).map_err(|_| sqlx::Error::Decode("event tag of 8 bytes".into()))?;
    let lease = Lease { ids: ClaimIds { tag, generation: taken.0 } };
    Ok(if committed.is_empty() { Claim::Run(lease) } else { Claim::Committed(lease, committed) })
}

/// The events of any execution of the claim tagged `tag`, in id order.
async fn committed_events(connection: &mut sqlx::PgConnection, tag: [u8; 8]) -> Result<Vec<ClaimedEvent>, sqlx::Error> {
    let (low, high) = ClaimIds::range(tag);
    let rows = sqlx::query(
        "SELECT event_id, stream_id, stream_version, global_position FROM events \
          WHERE event_id BETWEEN $1 AND $2 ORDER BY event_id",
    )
    .bind(low)
    .bind(high)
    .fetch_all(connection)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(ClaimedEvent {
                event_id: row.try_get("event_id")?,
                stream_id: row.try_get("stream_id")?,
                stream_version: row.try_get("stream_version")?,
                position: row.try_get("global_position")?,
            })
        })
        .collect()
}

/// Pushes the lease of a running claim forward; false when the claim is no longer this
/// execution's (taken over, or its response kept).
pub async fn renew_lease(
    pool: &PgPool,
    principal: &str,
    key: &str,
    lease: &Lease,
    duration: std::time::Duration,
) -> Result<bool, sqlx::Error> {
    let renewed = sqlx::query(
        "UPDATE idempotent_requests SET lease_until = clock_timestamp() + $4 \
          WHERE principal = $1 AND key = $2 AND generation = $3 AND status = 0",
    )
    .bind(principal)
    .bind(key)
    .bind(lease.ids.generation)
    .bind(duration)
    .execute(pool)
    .await?;
    Ok(renewed.rows_affected() == 1)
}

/// Keeps the response of the execution holding `lease`; false when the claim is no longer
/// its own (a retry took it over).
#[allow(clippy::too_many_arguments)]
pub async fn keep_response(
    pool: &PgPool,
    principal: &str,
    key: &str,
    lease: &Lease,
    status: i16,
    content_type: &str,
    headers: serde_json::Value,
    body: &[u8],
) -> Result<bool, sqlx::Error> {
    let kept = sqlx::query(
        "UPDATE idempotent_requests SET status = $4, content_type = $5, headers = $6, body = $7, \
                lease_until = '-infinity' \
          WHERE principal = $1 AND key = $2 AND generation = $3 AND status = 0",
    )
    .bind(principal)
    .bind(key)
    .bind(lease.ids.generation)
    .bind(status)
    .bind(content_type)
    .bind(headers)
    .bind(body)
    .execute(pool)
    .await?;
    Ok(kept.rows_affected() == 1)
}

/// Ends the lease of a claim whose execution ended in an outcome a retry could change, so a
/// retry may run at once. The row stays: should the outcome have hidden a commit (a
/// connection lost while committing), the retry finds the events and answers them. False
/// when the claim is no longer this execution's.
pub async fn release_key(pool: &PgPool, principal: &str, key: &str, lease: &Lease) -> Result<bool, sqlx::Error> {
    let released = sqlx::query(
        "UPDATE idempotent_requests SET lease_until = '-infinity' \
          WHERE principal = $1 AND key = $2 AND generation = $3 AND status = 0",
    )
    .bind(principal)
    .bind(key)
    .bind(lease.ids.generation)
    .execute(pool)
    .await?;
    Ok(released.rows_affected() == 1)
}
