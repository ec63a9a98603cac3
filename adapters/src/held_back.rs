//! The held-back wait of `$all`. A reader of `$all` stops before the oldest transaction still
//! running on the server (its events could still commit below the positions already seen), so
//! one long write transaction anywhere on the server — a migration, a stuck session, someone's
//! open `psql` — delays every projection and subscriber. Each wait is counted for `/metrics`;
//! a long one is logged (at most every few seconds) naming the backend that pins the horizon,
//! from `pg_stat_activity`, so an operator can see who to ask or what to end.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::PgPool;

/// A wait at least this long is logged with the pinning backend.
pub const LONG_WAIT: Duration = Duration::from_millis(500);
/// At most one such log line per this interval.
const WARN_EVERY: Duration = Duration::from_secs(10);

static WAITS: AtomicU64 = AtomicU64::new(0);
static WAIT_MICROS: AtomicU64 = AtomicU64::new(0);
static LONG_WAITS: AtomicU64 = AtomicU64::new(0);
static LAST_WARNED: Mutex<Option<Instant>> = Mutex::new(None);

/// The waits of this process so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeldBackStats {
    pub waits: u64,
    pub wait_seconds: f64,
    pub long_waits: u64,
}

pub fn stats() -> HeldBackStats {
    HeldBackStats {
        waits: WAITS.load(Ordering::Relaxed),
        wait_seconds: WAIT_MICROS.load(Ordering::Relaxed) as f64 / 1e6,
        long_waits: LONG_WAITS.load(Ordering::Relaxed),
    }
}

/// Counts a wait; true when it was long and a log line is due.
pub(crate) fn record(wait: Duration) -> bool {
    WAITS.fetch_add(1, Ordering::Relaxed);
    WAIT_MICROS.fetch_add(u64::try_from(wait.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    if wait < LONG_WAIT {
        return false;
    }
    LONG_WAITS.fetch_add(1, Ordering::Relaxed);
    let Ok(mut last) = LAST_WARNED.lock() else { return false };
    if last.is_some_and(|at| at.elapsed() < WARN_EVERY) {
        return false;
    }
    *last = Some(Instant::now());
    true
}

/// The server backend whose running transaction holds the horizon back.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PinningBackend {
    pub pid: i32,
    pub user_name: Option<String>,
    pub application_name: Option<String>,
    pub client_addr: Option<String>,
    pub state: Option<String>,
    /// How long its transaction has been open.
    pub transaction_seconds: f64,
    /// The start of what it runs or last ran.
    pub query: Option<String>,
}

/// The oldest transaction on the server that has written (holds a transaction id): the one
/// that sets the snapshot horizon `$all` stops at. Transaction ids are server-wide, so it may
/// belong to another database.
pub async fn pinning_backend(pool: &PgPool) -> Result<Option<PinningBackend>, sqlx::Error> {
    sqlx::query_as(
        "SELECT pid, usename::text AS user_name, application_name, client_addr::text AS client_addr, state, \
                coalesce(extract(epoch FROM clock_timestamp() - xact_start), 0)::float8 AS transaction_seconds, \
                left(query, 200) AS query \
           FROM pg_stat_activity \
          WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() \
          ORDER BY age(backend_xid) DESC \
          LIMIT 1",
    )
    .fetch_optional(pool)
    .await
}

/// Logs a long wait with the backend that caused it.
pub(crate) async fn warn_long_wait(pool: &PgPool, wait: Duration) {
    let waited_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
    match pinning_backend(pool).await {
        Ok(Some(backend)) => tracing::warn!(
            waited_ms,
            pid = backend.pid,
            user = backend.user_name.as_deref().unwrap_or(""),
            application = backend.application_name.as_deref().unwrap_or(""),
            client = backend.client_addr.as_deref().unwrap_or(""),
            state = backend.state.as_deref().unwrap_or(""),
            transaction_seconds = backend.transaction_seconds,
            query = backend.query.as_deref().unwrap_or(""),
            "readers of $all held back by a long transaction"
        ),
        // A role without pg_read_all_stats (the service's) sees no transaction id of another
        // role's sessions, so the culprit may be there and hidden.
        Ok(None) => tracing::warn!(
            waited_ms,
            "readers of $all held back; the transaction has since ended, or belongs to a role whose sessions this one may not see (grant it pg_read_all_stats)"
        ),
        Err(error) => {
            tracing::warn!(waited_ms, error = %error, "readers of $all held back; pg_stat_activity unreadable")
        }
    }
}
