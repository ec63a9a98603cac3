//! The wait between attempts at a decision after a conflict: exponential, capped, with full
//! jitter (a uniformly random wait up to the bound), so writers that collided spread out
//! instead of colliding again in step.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use aisc_domain::command_service::Backoff;
use async_trait::async_trait;

#[derive(Debug, Clone, Copy)]
pub struct JitteredBackoff {
    /// The bound of the first wait; it doubles with each attempt.
    pub base: Duration,
    /// The largest bound.
    pub cap: Duration,
}

impl Default for JitteredBackoff {
    fn default() -> Self {
        Self { base: Duration::from_millis(1), cap: Duration::from_millis(50) }
    }
}

impl JitteredBackoff {
    /// The bound of the wait before the attempt after `attempt`.
    pub fn bound(&self, attempt: usize) -> Duration {
        let doublings = u32::try_from(attempt.saturating_sub(1)).unwrap_or(u32::MAX).min(16);
        self.base.saturating_mul(1_u32 << doublings).min(self.cap)
    }
}

/// A random number from the standard library's per-process random keys: enough for jitter.
fn random() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64),
    );
    hasher.finish()
}

#[async_trait]
impl Backoff for JitteredBackoff {
    async fn pause(&self, attempt: usize) {
        let bound = u64::try_from(self.bound(attempt).as_micros()).unwrap_or(u64::MAX).max(1);
        tokio::time::sleep(Duration::from_micros(random() % bound)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_doubles_from_the_base_up_to_the_cap() {
        let backoff = JitteredBackoff::default();
        let bounds: Vec<u128> = (1..=9).map(|attempt| backoff.bound(attempt).as_millis()).collect();
        assert_eq!(bounds, vec![1, 2, 4, 8, 16, 32, 50, 50, 50]);
        assert_eq!(backoff.bound(usize::MAX), Duration::from_millis(50));
    }

    #[test]
    fn waits_are_spread_out() {
        let draws: std::collections::BTreeSet<u64> = (0..64).map(|_| random() % 1_000).collect();
        assert!(draws.len() > 32, "{draws:?}");
    }
}
