//! Retention of personal data (PDPO DPP2): an application's personal data is kept for a period
//! after the application ends, and is then to be erased. This lists the data subjects past that
//! period on a given day; erasing them is another step's (`Vault::erase`).
//!
//! An application ends when its project is completed or terminated, or it is rejected,
//! withdrawn or ruled ineligible; the end is the business date of that event (when it happened,
//! not when it was recorded). The read model of applications does not keep that date for every
//! ending, so it is read from the log, each event decoded through its upcasters.

use aisc_domain::codec::{BusinessDate, CodecError, EventCodec, StoredContext};
use aisc_domain::personal_data::DataSubjectId;
use aisc_domain::subsidy::application::ApplicationEvent;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// Seven years (2,557 days, two of them leap days) after the application ends; see the
/// README's "Retention" for why.
pub const DEFAULT_RETENTION_DAYS: u32 = 2557;

/// The event types that end an application, with how the listing names each ending.
pub const ENDINGS: [(&str, &str); 5] = [
    ("ApplicationCompleted", "completed"),
    ("ApplicationTerminated", "terminated"),
    ("ApplicationRejected", "rejected"),
    ("ApplicationWithdrawn", "withdrawn"),
    ("RuledIneligible", "ineligible"),
];

const APPLICATION_PREFIX: &str = "application-";

/// An application whose retention period has run out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastRetention {
    pub data_subject_id: DataSubjectId,
    pub application_id: String,
    /// `completed`, `terminated`, `rejected`, `withdrawn` or `ineligible`.
    pub ended: &'static str,
    /// The business date of the ending event.
    pub ended_on: NaiveDate,
    /// Days since the retention period ran out (1 on the first day it is due).
    pub days_past: i64,
}

/// The data subjects past retention on a day.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionListing {
    /// Subjects whose key is still held: erasing the key erases their data.
    pub due: Vec<PastRetention>,
    /// Applications holding personal fields stored in plaintext before sealing (with or without
    /// a key for fields sealed since): erasing a key cannot reach that text; the log must move to
    /// a new generation first.
    pub not_sealed: Vec<PastRetention>,
}

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error("cannot read the log or the keys: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot read event {event_id} of {stream}: {error}")]
    Decode { stream: String, event_id: Uuid, error: CodecError },
}

/// The data subjects whose application ended more than `retention_days` days before `today`
/// (an application ended exactly `retention_days` days before is not due yet), whose key is
/// not erased yet, oldest ending first. Subjects already erased are not listed.
pub async fn past_retention(
    pool: &PgPool,
    retention_days: u32,
    today: NaiveDate,
) -> Result<RetentionListing, RetentionError> {
    let ending_types: Vec<&str> = ENDINGS.iter().map(|(event_type, _)| *event_type).collect();
    // The last ending event of each application's stream (an application ends once; the
    // last one is taken should the log ever hold two).
    let rows: Vec<(String, Uuid, String, i32, serde_json::Value, DateTime<Utc>)> = sqlx::query_as(
        "SELECT DISTINCT ON (stream_id) stream_id, event_id, event_type, schema_version, data, recorded_at \
         FROM events WHERE stream_id LIKE 'application-%' AND event_type = ANY($1) \
         ORDER BY stream_id, stream_version DESC",
    )
    .bind(&ending_types)
    .fetch_all(pool)
    .await?;

    let mut ended = Vec::new();
    for (stream, event_id, event_type, schema_version, data, recorded_at) in rows {
        let Some(application_id) = stream.strip_prefix(APPLICATION_PREFIX) else { continue };
        let decode_error = |error| RetentionError::Decode { stream: stream.clone(), event_id, error };
        let schema_version = u32::try_from(schema_version).map_err(|_| {
            decode_error(CodecError {
                action: "decode",
                event_type: event_type.clone(),
                reason: format!("schema version {schema_version}"),
            })
        })?;
        let event = ApplicationEvent::from_stored(&event_type, schema_version, &data, StoredContext::new(recorded_at))
            .map_err(decode_error)?;
        let ended_on = event.effective_on();
        let days_past = (today - ended_on).num_days() - i64::from(retention_days);
        if days_past < 1 {
            continue;
        }
        let how = ENDINGS.iter().find(|(name, _)| *name == event_type).map_or("ended", |(_, how)| *how);
        ended.push(PastRetention {
            data_subject_id: DataSubjectId::of_application(application_id),
            application_id: application_id.to_string(),
            ended: how,
            ended_on,
            days_past,
        });
    }

    let subjects: Vec<Uuid> = ended.iter().map(|past| past.data_subject_id.0).collect();
    // Each subject's key row: held (true), erased (false), or none at all.
    let keys: Vec<(Uuid, bool)> = sqlx::query_as(
        "SELECT data_subject_id, wrapped_key IS NOT NULL FROM data_subject_keys WHERE data_subject_id = ANY($1)",
    )
    .bind(&subjects)
    .fetch_all(pool)
    .await?;
    let held: std::collections::HashMap<Uuid, bool> = keys.into_iter().collect();
    // An application with any personal field still in plaintext is not sealed, whatever its
    // key: one sealed after the upgrade (a later review) does not make the older text erasable.
    let streams: Vec<String> =
        ended.iter().map(|past| format!("{APPLICATION_PREFIX}{}", past.application_id)).collect();
    let plaintext = crate::personal_data::streams_holding_plaintext(pool, &streams).await?;

    let mut listing = RetentionListing::default();
    for past in ended {
        if plaintext.contains(&format!("{APPLICATION_PREFIX}{}", past.application_id)) {
            listing.not_sealed.push(past);
            continue;
        }
        match held.get(&past.data_subject_id.0) {
            Some(true) => listing.due.push(past),
            Some(false) => {}
            None => listing.not_sealed.push(past),
        }
    }
    let order =
        |a: &PastRetention, b: &PastRetention| (a.ended_on, &a.application_id).cmp(&(b.ended_on, &b.application_id));
    listing.due.sort_by(order);
    listing.not_sealed.sort_by(order);
    Ok(listing)
}
