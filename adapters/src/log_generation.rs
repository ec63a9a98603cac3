//! A new generation of the log, for a log written before personal data was sealed.
//!
//! The log refuses UPDATE and DELETE, so plaintext it already holds cannot be sealed in place.
//! The one-off remedy is to copy the log, event by event in `$all` order, into a new, empty
//! database: personal text stored in plaintext is sealed under its data subject's key on the
//! way (at the event type's current schema version), every other event is copied as stored, and
//! each event keeps its stream, version, id, metadata and the time it was first recorded. The
//! new generation's hash chains are computed by its own appends, over the ciphertext. The old
//! generation is verified before anything is copied; its head is reported so that the two can
//! be tied together (seal the old one first, then archive it under the retention rules and drop
//! it: it still holds the plaintext).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aisc_domain::codec::{EventCodec, StoredContext};
use aisc_domain::event_store::{
    EventStore, ExpectedVersion, NewEvent, Position, PositionRange, RecordedEvent, StoreError, StreamAppend,
};
use aisc_domain::personal_data::{DataSubjectId, PersonalDataSealer, SealError, ToSeal, seal_fields};
use aisc_domain::progress::Progress;
use aisc_domain::subsidy::application::ApplicationEvent;
use aisc_domain::subsidy::streams;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::PostgresEventStore;
use crate::personal_data::{Vault, VaultError, shred};

/// Events read from the old generation per page.
const PAGE: usize = 2_000;

/// How long the copy waits for events held back behind a transaction still running in the old
/// generation before giving up: the service must be stopped during the copy.
const STALLED_AFTER: Duration = Duration::from_secs(10);

/// Positions are `transaction id * 2^20 + n` (migration 20261202000001_set_based_append.sql):
/// the events of one original append share the bits above these.
const TRANSACTION_SHIFT: u32 = 20;

#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    #[error(
        "the new generation's database already holds {0} events; a new generation starts from an empty log (give DATABASE_URL a new database)"
    )]
    NotEmpty(i64),
    #[error("the old generation does not verify: {0}; nothing was copied (run `aisc audit verify` against it)")]
    OldLogBroken(String),
    #[error("cannot decode {event_type} at position {position}: {reason}")]
    Undecodable { event_type: String, position: u64, reason: String },
    #[error("cannot read the old generation's data subject keys: {0} (run the copy as the owner of the old log)")]
    OldKeys(sqlx::Error),
    #[error(
        "the data subject keys copied from the old generation do not open with this key-encryption key: {0}; give AISC_KEK_FILE (--kek-file) the old generation's key-encryption key"
    )]
    KeysDoNotOpen(VaultError),
    #[error(
        "the old generation's data subject keys are wrapped under the key-encryption key with id {stored}, not this one (id {given}); give AISC_KEK_FILE (--kek-file) the old generation's key-encryption key (nothing was copied)"
    )]
    OtherKek { stored: String, given: String },
    #[error(
        "a transaction is still writing the old log: stop the service first (events after position {0} stayed held back for {secs} s)",
        secs = STALLED_AFTER.as_secs()
    )]
    OldLogStillWritten(u64),
    #[error(transparent)]
    Sealing(#[from] SealError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the new generation's database: {0}")]
    Database(#[from] sqlx::Error),
}

/// What a re-encryption did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GenerationReport {
    /// Events copied into the new generation.
    pub events: u64,
    /// Of those, events whose plaintext personal fields were sealed.
    pub resealed_events: u64,
    /// The data subjects whose keys (wrapped, or erased) were copied from the old generation.
    pub copied_keys: u64,
    /// The data subjects given keys for the sealed fields (or whose copied keys sealed them).
    pub data_subjects: BTreeSet<DataSubjectId>,
    /// Of the resealed events, those whose plaintext belonged to an erased data subject: sealed
    /// under a key thrown away at once, so it can never be read.
    pub shredded_events: u64,
    /// The erased data subjects whose plaintext was shredded so.
    pub erased_data_subjects: BTreeSet<DataSubjectId>,
    /// The last position of the old generation (its head), as verified before the copy; the
    /// copy stops there.
    pub old_head_position: Option<u64>,
    /// The last position of the new generation.
    pub new_head_position: Option<u64>,
}

/// Copies `old` into the empty `new`, sealing plaintext personal fields with `vault` (whose
/// keys live in `new`'s database; the old generation's keys are copied there first).
/// `progress` hears the events copied so far.
pub async fn reencrypt_into_new_generation(
    old: &PostgresEventStore,
    new: &PostgresEventStore,
    vault: &Vault,
    progress: &dyn Progress,
) -> Result<GenerationReport, GenerationError> {
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(new.pool()).await?;
    if held > 0 {
        return Err(GenerationError::NotEmpty(held));
    }
    let verified = old.verify(PositionRange::default()).await?;
    if let Some(broken) = verified.first_broken {
        return Err(GenerationError::OldLogBroken(format!(
            "{:?} at position {} ({} version {}, event {})",
            broken.problem, broken.position.0, broken.stream, broken.stream_version, broken.event_id
        )));
    }
    let old_head_position: Option<u64> =
        sqlx::query_scalar::<_, Option<i64>>("SELECT max(global_position) FROM events")
            .fetch_one(old.pool())
            .await?
            .and_then(|position| u64::try_from(position).ok());
    let mut report = GenerationReport { old_head_position, ..GenerationReport::default() };
    report.copied_keys = copy_data_subject_keys(old, new, vault).await?;
    vault.check().await.map_err(GenerationError::KeysDoNotOpen)?;
    let Some(head) = old_head_position else { return Ok(report) };

    let mut after = Position(0);
    // The events of one original append (one transaction, one recorded time) are appended
    // together, as they were.
    let mut group: Vec<RecordedEvent> = Vec::new();
    let mut held_back_since: Option<Instant> = None;
    'copy: while after.0 < head {
        let slice = old.read_all(after, PAGE).await?;
        if slice.events.is_empty() {
            if !slice.held_back {
                // Nothing more is committed (the verified events cannot have gone).
                break;
            }
            if held_back_since.get_or_insert_with(Instant::now).elapsed() > STALLED_AFTER {
                return Err(GenerationError::OldLogStillWritten(after.0));
            }
            continue;
        }
        held_back_since = None;
        for mut event in slice.events {
            if event.position.0 > head {
                break 'copy;
            }
            after = event.position;
            reseal(&mut event, vault, &mut report).await?;
            if group.first().is_some_and(|first| !same_append(first, &event)) {
                report.new_head_position = append_group(new, std::mem::take(&mut group)).await?;
            }
            group.push(event);
            report.events += 1;
        }
        progress.reached(report.events);
    }
    if !group.is_empty() {
        report.new_head_position = append_group(new, group).await?;
    }
    progress.reached(report.events);
    Ok(report)
}

/// Whether two events (in `$all` order) were written by one append: the same transaction and
/// the same recorded time.
fn same_append(first: &RecordedEvent, next: &RecordedEvent) -> bool {
    first.position.0 >> TRANSACTION_SHIFT == next.position.0 >> TRANSACTION_SHIFT
        && first.recorded_at == next.recorded_at
}

/// A data subject's key row, as stored.
#[derive(sqlx::FromRow)]
struct KeyRow {
    data_subject_id: Uuid,
    kek_id: String,
    wrapped_key: Option<Vec<u8>>,
    created_at: DateTime<Utc>,
    erased_at: Option<DateTime<Utc>>,
    erased_by: Option<String>,
    erasure_reason: Option<String>,
}

/// Copies every data subject key of the old generation (if it has any: a log from before
/// sealing has no keys table) into the new one as it is, erased ones included, so fields the
/// old generation already sealed open in the new one and an erased subject stays erased. The
/// new generation holds no events yet, so a key it holds can have sealed nothing: the old
/// generation's row wins. Keys wrapped under another KEK than `vault`'s are refused before
/// anything is written.
async fn copy_data_subject_keys(
    old: &PostgresEventStore,
    new: &PostgresEventStore,
    vault: &Vault,
) -> Result<u64, GenerationError> {
    let has_keys: bool = sqlx::query_scalar("SELECT to_regclass('public.data_subject_keys') IS NOT NULL")
        .fetch_one(old.pool())
        .await
        .map_err(GenerationError::OldKeys)?;
    if !has_keys {
        return Ok(0);
    }
    let rows: Vec<KeyRow> = sqlx::query_as(
        "SELECT data_subject_id, kek_id, wrapped_key, created_at, erased_at, erased_by, erasure_reason \
           FROM data_subject_keys ORDER BY data_subject_id",
    )
    .fetch_all(old.pool())
    .await
    .map_err(GenerationError::OldKeys)?;
    let given = vault.kek_id();
    if let Some(other) = rows.iter().find(|row| row.wrapped_key.is_some() && row.kek_id != given) {
        return Err(GenerationError::OtherKek { stored: other.kek_id.clone(), given });
    }
    let mut transaction = new.pool().begin().await?;
    for row in &rows {
        sqlx::query(
            "INSERT INTO data_subject_keys \
                    (data_subject_id, kek_id, wrapped_key, created_at, erased_at, erased_by, erasure_reason) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (data_subject_id) DO UPDATE SET \
                    kek_id = EXCLUDED.kek_id, wrapped_key = EXCLUDED.wrapped_key, created_at = EXCLUDED.created_at, \
                    erased_at = EXCLUDED.erased_at, erased_by = EXCLUDED.erased_by, \
                    erasure_reason = EXCLUDED.erasure_reason",
        )
        .bind(row.data_subject_id)
        .bind(&row.kek_id)
        .bind(&row.wrapped_key)
        .bind(row.created_at)
        .bind(row.erased_at)
        .bind(&row.erased_by)
        .bind(&row.erasure_reason)
        .execute(&mut *transaction)
        .await?;
    }
    transaction.commit().await?;
    Ok(u64::try_from(rows.len()).unwrap_or(u64::MAX))
}

/// Seals fields of an erased data subject under keys thrown away at once (see [`shred`]).
struct Shredder;

#[async_trait::async_trait]
impl PersonalDataSealer for Shredder {
    async fn seal(&self, fields: &[ToSeal<'_>]) -> Result<Vec<String>, SealError> {
        fields
            .iter()
            .map(|field| {
                shred(field.subject.0, field.field, field.plaintext)
                    .map_err(|error| SealError::Unavailable(error.to_string()))
            })
            .collect()
    }
}

/// Seals the plaintext personal fields of `event` (an application's events stored before
/// sealing) under its application's data subject, re-encoded at the current schema version;
/// the plaintext of an erased subject is shredded instead (sealed under a key nobody keeps).
async fn reseal(
    event: &mut RecordedEvent,
    vault: &Vault,
    report: &mut GenerationReport,
) -> Result<(), GenerationError> {
    if !ApplicationEvent::EVENT_TYPES.contains(&event.event_type.as_str()) {
        return Ok(());
    }
    let Some(application_id) = streams::application_id(&event.stream) else { return Ok(()) };
    let undecodable = |reason: String| GenerationError::Undecodable {
        event_type: event.event_type.clone(),
        position: event.position.0,
        reason,
    };
    let mut decoded = ApplicationEvent::from_stored(
        &event.event_type,
        event.schema_version,
        &event.data,
        StoredContext::new(event.recorded_at),
    )
    .map_err(|error| undecodable(error.to_string()))?;
    let subject = DataSubjectId::of_application(application_id);
    if !decoded.unseal_legacy_for(subject) {
        return Ok(());
    }
    match seal_fields(vault, decoded.personal_fields()).await {
        Ok(()) => {
            report.data_subjects.insert(subject);
        }
        Err(SealError::Erased(_)) => {
            seal_fields(&Shredder, decoded.personal_fields()).await?;
            report.shredded_events += 1;
            report.erased_data_subjects.insert(subject);
        }
        Err(other) => return Err(other.into()),
    }
    event.data = decoded.to_data().map_err(|error| undecodable(error.to_string()))?;
    event.schema_version = decoded.schema_version();
    report.resealed_events += 1;
    Ok(())
}

/// Appends one original append's events to the new generation at their versions, as recorded
/// when they were first written; answers the last position written.
async fn append_group(new: &PostgresEventStore, group: Vec<RecordedEvent>) -> Result<Option<u64>, GenerationError> {
    let Some(recorded_at): Option<DateTime<Utc>> = group.first().map(|event| event.recorded_at) else {
        return Ok(None);
    };
    let mut appends: Vec<StreamAppend> = Vec::new();
    for event in group {
        let new_event = NewEvent {
            event_id: event.event_id,
            event_type: event.event_type,
            schema_version: event.schema_version,
            data: event.data,
            metadata: event.metadata,
        };
        match appends.iter_mut().find(|append| append.stream == event.stream) {
            Some(append) => append.events.push(new_event),
            None => appends.push(StreamAppend {
                expected: match event.stream_version {
                    0 => ExpectedVersion::NoStream,
                    version => ExpectedVersion::Exact(version - 1),
                },
                stream: event.stream,
                events: vec![new_event],
            }),
        }
    }
    let results = new.append_as_recorded_at(appends, recorded_at).await?;
    Ok(results.iter().map(|result| result.position.0).max())
}
