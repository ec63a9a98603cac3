//! Notifications to webhooks (`/api/v1/webhooks`): administrators register a URL, a secret
//! and the kinds they want; the service records each notification once — from the log
//! ([`notifications::NotificationRecorder`]) or from the clock ([`scheduler`]) — and delivers
//! it at least once, in order per application, signed ([`delivery`]), to allowed hosts only
//! ([`destination`]).

pub mod delivery;
pub mod destination;
pub mod notifications;
pub mod scheduler;

use std::sync::Arc;
use std::time::Duration;

use aisc_adapters::clock::Clock;
use aisc_domain::event_store::EventStore;
use aisc_projections::ProjectionRunner;
use sqlx::PgPool;
use tokio::sync::watch;

pub use destination::{AllowedHosts, Destination};
pub use notifications::NotificationKind;

/// How webhooks are delivered.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Hosts webhooks may post to; empty: no webhook can be registered.
    pub allowed_hosts: AllowedHosts,
    /// A delivery not done this long after it was recorded is given up (`failed`).
    pub give_up_after: Duration,
    /// The wait before the first retry; it doubles with each failed attempt…
    pub first_retry: Duration,
    /// …up to this.
    pub max_retry: Duration,
    /// An attempt without an answer by then has failed.
    pub attempt_timeout: Duration,
    /// How often the worker looks for due deliveries when it found none.
    pub poll_interval: Duration,
    /// How often the clock's notifications are looked for.
    pub schedule_interval: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            allowed_hosts: AllowedHosts::default(),
            give_up_after: Duration::from_secs(3 * 24 * 3600),
            first_retry: Duration::from_secs(10),
            max_retry: Duration::from_secs(3600),
            attempt_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            schedule_interval: Duration::from_secs(60),
        }
    }
}

/// Starts the recorder of the log's notifications (leading or standing by, as projections
/// do), the scheduler of the clock's and the delivery worker; each stops when `stop` turns true.
pub fn start(
    pool: &PgPool,
    store: Arc<dyn EventStore>,
    settings: WebhookSettings,
    clock: Clock,
    stop: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let recorder = ProjectionRunner::new(pool.clone(), store, Arc::new(notifications::NotificationRecorder));
    let stopped = stop.clone();
    let recording = tokio::spawn(async move { recorder.run(stopped).await });
    let scheduling = tokio::spawn(run_scheduler(pool.clone(), clock, settings.schedule_interval, stop.clone()));
    let delivering = tokio::spawn(run_deliveries(pool.clone(), settings, stop.clone()));
    vec![recording, scheduling, delivering]
}

/// Records the clock's notifications now and every `interval`.
async fn run_scheduler(pool: PgPool, clock: Clock, interval: Duration, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        if let Err(error) = scheduler::record_due_notifications(&pool, clock.today()).await {
            tracing::warn!(error = %error, "cannot record the notifications of the clock; trying again later");
        }
        tokio::select! {
            _ = stop.changed() => {}
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Delivers what is due, again at once while there was some, else after the poll interval.
async fn run_deliveries(pool: PgPool, settings: WebhookSettings, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        let pause = match delivery::deliver_due(&pool, &settings).await {
            Ok(0) => settings.poll_interval,
            Ok(_) => Duration::ZERO,
            Err(error) => {
                tracing::warn!(error = %error, "cannot deliver webhook notifications; trying again later");
                settings.poll_interval
            }
        };
        tokio::select! {
            _ = stop.changed() => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
}
