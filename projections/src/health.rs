//! Whether each projection is keeping up, for operators: a projection that fails leads again
//! from its checkpoint, so an event it cannot apply (undecodable, say) stalls it for ever on
//! the same position. Each failure is counted; a failure at the position of the one before is a
//! stall, logged at ERROR with what it is stuck on and shown by `/metrics` until the
//! projection moves again.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

/// A projection's failures as the operator sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectionHealth {
    pub failures_total: u64,
    /// Failures in a row at the same checkpoint position.
    pub consecutive_failures: u64,
    /// The checkpoint position it is stuck at, while stalled.
    pub stalled_at: Option<u64>,
    pub last_error: Option<String>,
    /// The checkpoint position of the last failure.
    pub last_failed_at: Option<u64>,
    pub stalled_since: Option<SystemTime>,
}

impl ProjectionHealth {
    pub fn stalled(&self) -> bool {
        self.stalled_at.is_some()
    }
}

fn registry() -> &'static Mutex<BTreeMap<&'static str, ProjectionHealth>> {
    static REGISTRY: OnceLock<Mutex<BTreeMap<&'static str, ProjectionHealth>>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// A failure of `projection` at `position` (the event it could not apply, or its checkpoint;
/// unknown when the database could not say, and then never the same place as another).
pub fn record_failure(projection: &'static str, position: Option<u64>, error: &str) {
    let Ok(mut registry) = registry().lock() else { return };
    let health = registry.entry(projection).or_default();
    health.failures_total += 1;
    let same_place = position.is_some() && health.last_failed_at == position;
    health.consecutive_failures = if same_place { health.consecutive_failures + 1 } else { 1 };
    health.last_error = Some(error.to_string());
    health.last_failed_at = position;
    if let (true, Some(position)) = (health.consecutive_failures >= 2, position) {
        if health.stalled_at.is_none() {
            health.stalled_since = Some(SystemTime::now());
        }
        health.stalled_at = Some(position);
        tracing::error!(
            projection,
            position,
            consecutive_failures = health.consecutive_failures,
            error,
            "projection stalled: it fails again at the same position; its read model falls behind the log"
        );
    } else {
        health.stalled_at = None;
        health.stalled_since = None;
    }
}

/// `projection` applied events: whatever stalled it is behind it.
pub fn record_progress(projection: &'static str) {
    let Ok(mut registry) = registry().lock() else { return };
    if let Some(health) = registry.get_mut(projection)
        && (health.last_error.is_some() || health.stalled_at.is_some())
    {
        if health.stalled_at.is_some() {
            tracing::info!(projection, "projection moving again");
        }
        health.consecutive_failures = 0;
        health.stalled_at = None;
        health.stalled_since = None;
        health.last_error = None;
        health.last_failed_at = None;
    }
}

/// Every projection that has failed in this process, by name.
pub fn snapshot() -> BTreeMap<&'static str, ProjectionHealth> {
    registry().lock().map(|registry| registry.clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_failure_at_the_same_position_is_a_stall_and_progress_ends_it() {
        let name = "health-test-projection";
        record_failure(name, Some(40), "cannot decode");
        assert!(!snapshot()[name].stalled(), "one failure may be a passing outage");
        record_failure(name, Some(40), "cannot decode");
        let health = &snapshot()[name];
        assert_eq!((health.stalled_at, health.consecutive_failures, health.failures_total), (Some(40), 2, 2));
        record_failure(name, Some(40), "cannot decode");
        assert_eq!(snapshot()[name].consecutive_failures, 3);
        record_progress(name);
        let health = &snapshot()[name];
        assert!(!health.stalled() && health.consecutive_failures == 0 && health.failures_total == 3);
        record_failure(name, Some(40), "database down");
        record_failure(name, Some(41), "database down");
        assert!(!snapshot()[name].stalled(), "failures at different positions are not a stall");
        record_failure(name, None, "database down");
        record_failure(name, None, "database down");
        assert!(!snapshot()[name].stalled(), "failures at unknown positions are not a stall");
    }
}
