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

use aisc_domain::codec::{EventCodec, StoredContext};
use aisc_domain::event_store::{
    EventStore, ExpectedVersion, NewEvent, Position, PositionRange, RecordedEvent, StoreError, StreamAppend,
};
use aisc_domain::personal_data::{DataSubjectId, SealError, seal_fields};
use aisc_domain::progress::Progress;
use aisc_domain::subsidy::application::ApplicationEvent;
use aisc_domain::subsidy::streams;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::PostgresEventStore;
use crate::personal_data::Vault;

/// Events read from the old generation per page.
const PAGE: usize = 2_000;

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
    /// The data subjects given keys for the sealed fields.
    pub data_subjects: BTreeSet<DataSubjectId>,
    /// The last position of the old generation (its head), as verified before the copy.
    pub old_head_position: Option<u64>,
    /// The last position of the new generation.
    pub new_head_position: Option<u64>,
}

/// Copies `old` into the empty `new`, sealing plaintext personal fields with `vault` (whose
/// keys live in `new`'s database). `progress` hears the events copied so far.
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
    let mut after = Position(0);
    // Events of one recorded time (one original append) are appended together, as they were.
    let mut group: Vec<RecordedEvent> = Vec::new();
    loop {
        let slice = old.read_all(after, PAGE).await?;
        if slice.events.is_empty() && !slice.held_back {
            break;
        }
        for mut event in slice.events {
            after = event.position;
            if reseal(&mut event, vault, &mut report).await? {
                report.resealed_events += 1;
            }
            if group.first().is_some_and(|first| first.recorded_at != event.recorded_at) {
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
    Ok(report)
}

/// Seals the plaintext personal fields of `event` (an application's events stored before
/// sealing) under its application's data subject, re-encoded at the current schema version.
async fn reseal(
    event: &mut RecordedEvent,
    vault: &Vault,
    report: &mut GenerationReport,
) -> Result<bool, GenerationError> {
    if !ApplicationEvent::EVENT_TYPES.contains(&event.event_type.as_str()) {
        return Ok(false);
    }
    let Some(application_id) = streams::application_id(&event.stream) else { return Ok(false) };
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
        return Ok(false);
    }
    seal_fields(vault, decoded.personal_fields()).await?;
    event.data = decoded.to_data().map_err(|error| undecodable(error.to_string()))?;
    event.schema_version = decoded.schema_version();
    report.data_subjects.insert(subject);
    Ok(true)
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
