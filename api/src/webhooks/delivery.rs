//! Delivering notifications: at least once, in order per webhook and subject, signed.
//!
//! A worker claims due deliveries with `FOR UPDATE SKIP LOCKED`, never one while an earlier
//! delivery of its webhook about the same subject is pending, and moves each claimed delivery's
//! next attempt past the attempt's time-out before it commits: another instance neither takes
//! the same attempt at once nor passes it. A 2xx answer delivers; anything else, or no answer in
//! time, is retried with exponential backoff and jitter until the give-up horizon, after which
//! the delivery is `failed` and the deliveries after it go out.

use std::time::Duration;

use hmac::{KeyInit, Mac};
use serde_json::{Map, Value};
use sqlx::{PgPool, Row};

use super::WebhookSettings;
use super::destination::Destination;

/// Deliveries claimed at once (attempted concurrently: each is about a different subject).
const CLAIM_BATCH: i64 = 20;

/// Longest error text kept with a delivery.
const MAX_ERROR_CHARS: usize = 500;

/// The header names of a delivery.
pub const SIGNATURE_HEADER: &str = "X-AISC-Signature";
pub const DELIVERY_HEADER: &str = "X-AISC-Delivery";
pub const EVENT_HEADER: &str = "X-AISC-Event";

/// `sha256=<hex>` of the HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(7 + digest.len() * 2);
    hex.push_str("sha256=");
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// The JSON body of a delivery: its id, the kind, and the notification's figures.
pub fn body(delivery_id: uuid::Uuid, kind: &str, payload: &Value) -> Vec<u8> {
    let mut document = Map::new();
    document.insert("delivery_id".into(), Value::String(delivery_id.to_string()));
    document.insert("kind".into(), Value::String(kind.to_string()));
    if let Value::Object(figures) = payload {
        for (key, value) in figures {
            document.insert(key.clone(), value.clone());
        }
    }
    Value::Object(document).to_string().into_bytes()
}

/// The wait before the attempt after `attempts` failed ones: `first_retry` doubling up to
/// `max_retry`, of which a random part (up to a half) is taken off so that deliveries that
/// failed together do not come back together.
pub fn retry_delay(settings: &WebhookSettings, attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(20);
    let bound = settings.first_retry.saturating_mul(1_u32 << doublings).min(settings.max_retry);
    let bound_ms = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX);
    let jitter = random() % (bound_ms / 2 + 1);
    Duration::from_millis(bound_ms - jitter)
}

fn random() -> u64 {
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    let mut word = [0_u8; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(word)
}

/// A delivery claimed for one attempt.
struct Claimed {
    delivery_id: uuid::Uuid,
    attempts: i32,
    kind: String,
    payload: Value,
    url: String,
    secret: String,
}

/// What an attempt came to.
enum Attempt {
    Delivered(u16),
    Refused { status: Option<u16>, error: String },
}

/// Claims the due deliveries and attempts each once; answers how many were attempted.
pub async fn deliver_due(pool: &PgPool, settings: &WebhookSettings) -> Result<usize, sqlx::Error> {
    let lease_ms = i64::try_from((settings.attempt_timeout * 3).as_millis()).unwrap_or(i64::MAX);
    let rows = sqlx::query(
        "WITH due AS ( \
             SELECT d.delivery_id FROM public.webhook_deliveries d \
               JOIN public.webhooks w ON w.webhook_id = d.webhook_id AND w.active \
              WHERE d.status = 'pending' AND d.next_attempt_at <= now() \
                AND NOT EXISTS (SELECT 1 FROM public.webhook_deliveries earlier \
                                 WHERE earlier.webhook_id = d.webhook_id AND earlier.subject = d.subject \
                                   AND earlier.status = 'pending' AND earlier.sequence < d.sequence) \
              ORDER BY d.sequence LIMIT $1 \
              FOR UPDATE OF d SKIP LOCKED \
         ), claimed AS ( \
             UPDATE public.webhook_deliveries d \
                SET attempts = d.attempts + 1, next_attempt_at = now() + $2 * interval '1 millisecond' \
               FROM due WHERE d.delivery_id = due.delivery_id \
             RETURNING d.delivery_id, d.webhook_id, d.notification_id, d.attempts \
         ) \
         SELECT c.delivery_id, c.attempts, n.kind, n.payload, w.url, w.secret \
           FROM claimed c \
           JOIN public.webhook_notifications n ON n.notification_id = c.notification_id \
           JOIN public.webhooks w ON w.webhook_id = c.webhook_id",
    )
    .bind(CLAIM_BATCH)
    .bind(lease_ms)
    .fetch_all(pool)
    .await?;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        claimed.push(Claimed {
            delivery_id: row.try_get("delivery_id")?,
            attempts: row.try_get("attempts")?,
            kind: row.try_get("kind")?,
            payload: row.try_get("payload")?,
            url: row.try_get("url")?,
            secret: row.try_get("secret")?,
        });
    }
    let count = claimed.len();
    let attempts = claimed.into_iter().map(|delivery| async move {
        let outcome = attempt(&delivery, settings).await;
        settle(pool, settings, &delivery, outcome).await
    });
    for settled in futures_util::future::join_all(attempts).await {
        settled?;
    }
    Ok(count)
}

/// One POST of the delivery, if its host is still allowed.
async fn attempt(delivery: &Claimed, settings: &WebhookSettings) -> Attempt {
    let destination = match Destination::parse(&delivery.url) {
        Ok(destination) => destination,
        Err(reason) => return Attempt::Refused { status: None, error: format!("the URL is not valid: {reason}") },
    };
    if !settings.allowed_hosts.allows(&destination) {
        return Attempt::Refused {
            status: None,
            error: format!("{} is not on the allow-list of webhook hosts; nothing was sent", destination.host_header),
        };
    }
    let body = body(delivery.delivery_id, &delivery.kind, &delivery.payload);
    let signature = signature(&delivery.secret, &body);
    let delivery_id = delivery.delivery_id.to_string();
    let headers = [
        (SIGNATURE_HEADER, signature.as_str()),
        (DELIVERY_HEADER, delivery_id.as_str()),
        (EVENT_HEADER, delivery.kind.as_str()),
    ];
    let post = crate::http_client::post(destination.target(), "application/json", &headers, &body);
    match tokio::time::timeout(settings.attempt_timeout, post).await {
        Ok(Ok(status)) if (200..300).contains(&status) => Attempt::Delivered(status),
        Ok(Ok(status)) => Attempt::Refused { status: Some(status), error: format!("answered {status}") },
        Ok(Err(error)) => Attempt::Refused { status: None, error: error.to_string() },
        Err(_) => Attempt::Refused {
            status: None,
            error: format!("no answer within {} ms", settings.attempt_timeout.as_millis()),
        },
    }
}

/// Records the attempt's outcome: delivered, to be retried, or given up.
async fn settle(
    pool: &PgPool,
    settings: &WebhookSettings,
    delivery: &Claimed,
    outcome: Attempt,
) -> Result<(), sqlx::Error> {
    match outcome {
        Attempt::Delivered(status) => {
            sqlx::query(
                "UPDATE public.webhook_deliveries SET status = 'delivered', delivered_at = now(), \
                 last_response_status = $2, last_error = NULL WHERE delivery_id = $1",
            )
            .bind(delivery.delivery_id)
            .bind(i32::from(status))
            .execute(pool)
            .await?;
            crate::metrics::record_webhook_delivery("delivered");
        }
        Attempt::Refused { status, error } => {
            let attempts = u32::try_from(delivery.attempts).unwrap_or(1);
            let delay_ms = i64::try_from(retry_delay(settings, attempts).as_millis()).unwrap_or(i64::MAX);
            let horizon_ms = i64::try_from(settings.give_up_after.as_millis()).unwrap_or(i64::MAX);
            let error: String = error.chars().take(MAX_ERROR_CHARS).collect();
            let gave_up: bool = sqlx::query_scalar(
                "UPDATE public.webhook_deliveries SET \
                     status = CASE WHEN now() + $2 * interval '1 millisecond' > created_at + $3 * interval '1 millisecond' \
                                   THEN 'failed' ELSE 'pending' END, \
                     next_attempt_at = now() + $2 * interval '1 millisecond', \
                     last_response_status = $4, last_error = $5 \
                  WHERE delivery_id = $1 RETURNING status = 'failed'",
            )
            .bind(delivery.delivery_id)
            .bind(delay_ms)
            .bind(horizon_ms)
            .bind(status.map(i32::from))
            .bind(&error)
            .fetch_one(pool)
            .await?;
            if gave_up {
                tracing::warn!(delivery_id = %delivery.delivery_id, kind = %delivery.kind, error = %error, "webhook delivery given up");
                crate::metrics::record_webhook_delivery("failed");
            } else {
                crate::metrics::record_webhook_delivery("retried");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hex_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        let signed = signature("Jefe", b"what do ya want for nothing?");
        assert_eq!(signed, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn retries_back_off_exponentially_with_jitter_up_to_the_cap() {
        let settings = WebhookSettings::default();
        for attempts in 1..=30 {
            let bound = settings.first_retry.saturating_mul(1 << (attempts - 1).min(20)).min(settings.max_retry);
            let delay = retry_delay(&settings, attempts);
            assert!(delay <= bound && delay >= bound / 2, "attempt {attempts}: {delay:?} against {bound:?}");
        }
        let first = retry_delay(&settings, 1);
        assert!(first >= Duration::from_secs(5) && first <= Duration::from_secs(10), "{first:?}");
        assert!(retry_delay(&settings, 30) >= Duration::from_secs(1800), "capped at an hour, less a jitter");
    }

    #[test]
    fn the_body_carries_the_delivery_id_the_kind_and_the_figures() {
        let id = uuid::Uuid::nil();
        let body = body(id, "report.overdue", &serde_json::json!({"application_id": "a-1", "due_on": "2025-10-15"}));
        let parsed: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(parsed["delivery_id"], id.to_string());
        assert_eq!(parsed["kind"], "report.overdue");
        assert_eq!(parsed["application_id"], "a-1");
    }
}
