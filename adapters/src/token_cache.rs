//! Verified bearer tokens kept in memory, so a request costs no token lookup. A token's
//! revocation reaches every running instance through `LISTEN aisc_tokens` (a trigger on
//! `api_tokens` announces every change, delivered at commit). The cache is trusted only while
//! its listener demonstrably hears the channel: each instance announces a heartbeat on it
//! twice a second, and when none has been heard for [`HEARD_WITHIN`] (a dropped or silently
//! partitioned connection), the cache is emptied and every request is verified against the
//! database until the listener hears again — so a revocation is never missed for longer than
//! that bound. Entries also expire after a fixed time, and the cache holds a bounded number of
//! tokens. Unknown tokens are never cached.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::postgres::PgListener;

use crate::access;

/// The channel the `api_tokens` trigger announces changes on.
pub const TOKENS_CHANNEL: &str = "aisc_tokens";

/// How long a verified token is trusted without being verified again, at most.
const ENTRY_LIFETIME: Duration = Duration::from_secs(300);
/// Tokens kept at most (staff tools: a few hundred in practice).
const MAX_TOKENS: usize = 10_000;
/// Wait before reconnecting a listener that failed.
const RECONNECT_DELAY: Duration = Duration::from_millis(200);
/// How often each instance announces a heartbeat on the channel.
const HEARTBEAT_EVERY: Duration = Duration::from_millis(500);
/// The cache is trusted only while something was heard on the channel this recently.
pub const HEARD_WITHIN: Duration = Duration::from_secs(2);
/// The payload of a heartbeat (a token change announces a hex hash).
const HEARTBEAT: &str = "heartbeat";

/// The name and roles a token stands for.
pub type Verified = (String, Vec<String>);

#[derive(Debug)]
struct Entry {
    verified: Verified,
    at: Instant,
}

#[derive(Debug, Default)]
struct Shared {
    /// Keyed by the token's SHA-256 hash, never the token itself.
    entries: Mutex<HashMap<Vec<u8>, Entry>>,
    /// True while the listener is connected and listening.
    listening: AtomicBool,
    /// When the listener last heard the channel (a heartbeat or a change).
    last_heard: Mutex<Option<Instant>>,
}

impl Shared {
    /// Whether the cache may be trusted now.
    fn trusted(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
            && self.last_heard.lock().ok().and_then(|heard| *heard).is_some_and(|heard| heard.elapsed() < HEARD_WITHIN)
    }

    fn heard(&self) {
        if let Ok(mut heard) = self.last_heard.lock() {
            *heard = Some(Instant::now());
        }
    }

    fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }

    fn forget(&self, hash_hex: &str) {
        self.heard();
        if hash_hex == HEARTBEAT {
            return;
        }
        let Some(hash) = decode_hex(hash_hex) else {
            // Not a hash this code announces: forget everything rather than keep a stale entry.
            self.clear();
            return;
        };
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&hash);
        }
    }
}

#[derive(Debug, Clone)]
pub struct TokenCache {
    pool: PgPool,
    shared: Arc<Shared>,
}

impl TokenCache {
    /// A cache over `pool`'s tokens; call [`TokenCache::listen`] to start trusting it.
    pub fn new(pool: PgPool) -> Self {
        Self { pool, shared: Arc::new(Shared::default()) }
    }

    /// Starts the listener and heartbeat tasks and returns at once: the cache is trusted from
    /// the moment the listener first hears the channel.
    pub fn start(&self) {
        let cache = self.clone();
        tokio::spawn(async move { cache.listen().await });
    }

    /// Starts the listener task; it reconnects after a failure, emptying the cache meanwhile.
    /// Resolves once the first connection listens (or failed once: the cache then stays
    /// bypassed until a later connection succeeds).
    pub async fn listen(&self) {
        let (ready, first) = tokio::sync::oneshot::channel::<()>();
        let (pool, shared) = (self.pool.clone(), self.shared.clone());
        let heartbeat_pool = self.pool.clone();
        tokio::spawn(async move {
            loop {
                // A failure is the silence the listener notices: nothing to do here.
                let _ = sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(TOKENS_CHANNEL)
                    .bind(HEARTBEAT)
                    .execute(&heartbeat_pool)
                    .await;
                tokio::time::sleep(HEARTBEAT_EVERY).await;
            }
        });
        tokio::spawn(async move {
            let mut ready = Some(ready);
            loop {
                match PgListener::connect_with(&pool).await {
                    Ok(mut listener) => {
                        if listener.listen(TOKENS_CHANNEL).await.is_ok() {
                            // Anything cached before this connection may have missed a change.
                            shared.clear();
                            shared.heard();
                            shared.listening.store(true, Ordering::SeqCst);
                            if let Some(ready) = ready.take() {
                                let _ = ready.send(());
                            }
                            loop {
                                let next = tokio::time::timeout(HEARD_WITHIN, listener.try_recv()).await;
                                match next {
                                    Ok(Ok(Some(notification))) => shared.forget(notification.payload()),
                                    // Dropped, or silent for too long (a partition the socket
                                    // has not noticed): notifications may have been lost.
                                    Ok(Ok(None)) | Ok(Err(_)) | Err(_) => break,
                                }
                            }
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "token cache: cannot listen for revocations; verifying every request")
                    }
                }
                shared.listening.store(false, Ordering::SeqCst);
                shared.clear();
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
                tokio::time::sleep(RECONNECT_DELAY).await;
            }
        });
        let _ = first.await;
    }

    /// The name and roles of an active token: from the cache when it is trusted, else from the
    /// database (and then cached).
    pub async fn verify(&self, token: &str) -> Result<Option<Verified>, sqlx::Error> {
        let hash = access::hash_token(token);
        let trusted = self.shared.trusted();
        if trusted
            && let Ok(entries) = self.shared.entries.lock()
            && let Some(entry) = entries.get(&hash).filter(|entry| entry.at.elapsed() < ENTRY_LIFETIME)
        {
            return Ok(Some(entry.verified.clone()));
        }
        let found = access::find_token(&self.pool, token).await?;
        if let Some(verified) = &found
            && trusted
            && let Ok(mut entries) = self.shared.entries.lock()
        {
            if entries.len() >= MAX_TOKENS {
                entries.retain(|_, entry| entry.at.elapsed() < ENTRY_LIFETIME);
                if entries.len() >= MAX_TOKENS {
                    entries.clear();
                }
            }
            entries.insert(hash, Entry { verified: verified.clone(), at: Instant::now() });
        }
        Ok(found)
    }

    /// Whether the cache is trusted now (its listener hears the channel).
    pub fn is_trusted(&self) -> bool {
        self.shared.trusted()
    }

    /// Tokens cached now.
    pub fn cached(&self) -> usize {
        self.shared.entries.lock().map_or(0, |entries| entries.len())
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|index| u8::from_str_radix(text.get(index..index + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announced_hashes_decode_and_anything_else_is_refused() {
        assert_eq!(decode_hex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(decode_hex("0"), None);
        assert_eq!(decode_hex("zz"), None);
    }

    #[test]
    fn a_change_forgets_its_token_and_a_malformed_one_forgets_every_token() {
        let shared = Shared::default();
        let entry = |name: &str| Entry { verified: (name.into(), vec!["auditor".into()]), at: Instant::now() };
        if let Ok(mut entries) = shared.entries.lock() {
            entries.insert(vec![1, 2], entry("a"));
            entries.insert(vec![3, 4], entry("b"));
        }
        shared.forget("0102");
        assert_eq!(shared.entries.lock().map(|entries| entries.len()).unwrap_or_default(), 1);
        shared.forget("heartbeat");
        assert_eq!(
            shared.entries.lock().map(|entries| entries.len()).unwrap_or_default(),
            1,
            "a heartbeat forgets nothing"
        );
        shared.forget("not hex");
        assert_eq!(shared.entries.lock().map(|entries| entries.len()).unwrap_or_default(), 0);
    }

    #[test]
    fn the_cache_is_trusted_only_while_the_channel_was_heard_lately() {
        let shared = Shared::default();
        assert!(!shared.trusted(), "nothing heard yet");
        shared.listening.store(true, Ordering::SeqCst);
        assert!(!shared.trusted(), "listening, but nothing heard yet");
        shared.heard();
        assert!(shared.trusted());
        if let Ok(mut heard) = shared.last_heard.lock() {
            *heard = Instant::now().checked_sub(HEARD_WITHIN);
        }
        assert!(!shared.trusted(), "silent for too long");
    }
}
