//! The event store port: EventStoreDB semantics (streams, expected versions, `$all`,
//! subscriptions, tamper evidence) over plain types.
//!
//! The command side depends on [`EventStore`] and never on a database crate; the PostgreSQL
//! implementation lives in `aisc-adapters`.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest stream id accepted; ids are `category-id` names, never free text.
pub const MAX_STREAM_ID_LEN: usize = 200;

/// Most events one append may carry across all its streams: the low 20 bits of a global
/// position number the events written by one transaction.
pub const MAX_EVENTS_PER_APPEND: usize = 1 << 20;

/// A stream name such as `application-0b7e…` or `budget-2025-26`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamId(String);

impl StreamId {
    /// Accepts a non-empty name of printable ASCII without spaces, at most
    /// [`MAX_STREAM_ID_LEN`] bytes. `$` is reserved for system streams such as `$all`.
    pub fn parse(raw: impl Into<String>) -> Result<Self, InvalidStreamId> {
        let raw = raw.into();
        if raw.is_empty() {
            return Err(InvalidStreamId::Empty);
        }
        if raw.len() > MAX_STREAM_ID_LEN {
            return Err(InvalidStreamId::TooLong { length: raw.len() });
        }
        if raw.starts_with('$') {
            return Err(InvalidStreamId::Reserved(raw));
        }
        if let Some(bad) = raw.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(InvalidStreamId::BadCharacter { stream: raw, character: bad });
        }
        Ok(Self(raw))
    }

    /// The stream's category: the part before the first `-` (the whole name if none).
    pub fn category(&self) -> &str {
        self.0.split_once('-').map_or(&self.0, |(category, _)| category)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for StreamId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for StreamId {
    type Error = InvalidStreamId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<StreamId> for String {
    fn from(value: StreamId) -> Self {
        value.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidStreamId {
    #[error("a stream id must not be empty")]
    Empty,
    #[error("a stream id is at most {MAX_STREAM_ID_LEN} bytes; this one has {length}")]
    TooLong { length: usize },
    #[error("stream ids starting with '$' are reserved for system streams: {0}")]
    Reserved(String),
    #[error("stream id {stream:?} contains {character:?}; use printable ASCII without spaces")]
    BadCharacter { stream: String, character: char },
}

/// A position in `$all`. Positions grow in the order `$all` is read; they are not dense.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Position(pub u64);

impl Position {
    /// Before the first event: reading `$all` after it starts at the beginning.
    pub const START: Position = Position(0);
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What the writer believes about the stream before its append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// Append whatever the stream's state.
    Any,
    /// The stream must not have any event yet.
    NoStream,
    /// The stream must have at least one event.
    StreamExists,
    /// The stream's last event must have exactly this version.
    Exact(u64),
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::StreamExists => f.write_str("an existing stream"),
            ExpectedVersion::Exact(version) => write!(f, "version {version}"),
        }
    }
}

/// The stream's actual state reported by a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActualVersion {
    NoStream,
    Version(u64),
}

impl fmt::Display for ActualVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActualVersion::NoStream => f.write_str("no stream"),
            ActualVersion::Version(version) => write!(f, "version {version}"),
        }
    }
}

/// An event to append. Its id makes a retried append idempotent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub data: serde_json::Value,
    pub metadata: serde_json::Value,
}

/// One stream's part of an append.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamAppend {
    pub stream: StreamId,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

/// What an append wrote to one stream (or, for a retried append, what the first one wrote).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendResult {
    /// Version of the first event written by this append.
    pub first_version: u64,
    /// Version of the stream's last event after the append: the next expected version.
    pub last_version: u64,
    /// Global position of the last event written to this stream.
    pub position: Position,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub position: Position,
    pub stream: StreamId,
    pub stream_version: u64,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub data: serde_json::Value,
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

impl RecordedEvent {
    /// Decodes the event as one of the domain's event types, upcasting older versions.
    pub fn decode<E: crate::codec::EventCodec>(&self) -> Result<E, crate::codec::CodecError> {
        let context = crate::codec::StoredContext::new(self.recorded_at);
        E::from_stored(&self.event_type, self.schema_version, &self.data, context)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadDirection {
    Forward,
    Backward,
}

/// A page of `$all`.
#[derive(Debug, Clone, PartialEq)]
pub struct AllSlice {
    pub events: Vec<RecordedEvent>,
    /// Committed events exist beyond this page that cannot be handed out yet, because a
    /// transaction that may still write a lower position is running: read again shortly.
    pub held_back: bool,
}

/// A range of `$all` positions, both ends inclusive; `None` is open-ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PositionRange {
    pub from: Option<Position>,
    pub to: Option<Position>,
}

impl PositionRange {
    pub const WHOLE_LOG: PositionRange = PositionRange { from: None, to: None };
}

/// Why an event failed verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tampering {
    /// The stored hash is not the hash of the event's content chained to its predecessor.
    HashMismatch,
    /// The stream's versions are not gapless here (an event was removed or renumbered).
    VersionGap { expected_version: u64 },
    /// The stream's head record disagrees with its last event.
    StreamHeadMismatch,
}

/// The first event that does not verify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokenEvent {
    pub position: Position,
    pub stream: String,
    pub stream_version: u64,
    pub event_id: Uuid,
    pub problem: Tampering,
}

/// The outcome of recomputing the hash chains over a range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Events checked before the first broken one (all of them when nothing is broken).
    pub verified: u64,
    pub first_broken: Option<BrokenEvent>,
}

/// Failures of the event store. A conflict is a normal outcome of optimistic concurrency;
/// the rest are refusals of a malformed append or failures of the store itself.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    #[error("stream {stream} was expected at {expected} but is at {actual}")]
    WrongExpectedVersion { stream: StreamId, expected: ExpectedVersion, actual: ActualVersion },
    #[error("event id {event_id} is already recorded with different content or in another place")]
    EventIdReused { event_id: Uuid },
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    #[error("the event store is unavailable: {0}")]
    Unavailable(String),
    #[error("event store failure: {0}")]
    Failure(String),
}

/// A live subscription to `$all`: catch-up first, then every new event, in order, once.
#[async_trait]
pub trait Subscription: Send {
    /// The next event after the last one returned; waits for one to be committed.
    async fn next(&mut self) -> Result<RecordedEvent, StoreError>;

    /// The next events after the last one returned, at least one and at most `max`, for
    /// consumers that apply events in batches; waits for one to be committed.
    async fn next_batch(&mut self, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        Ok(vec![self.next().await?]).map(|mut batch| {
            batch.truncate(max.max(1));
            batch
        })
    }
}

/// The event store port.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Appends events to one stream if it is at the expected version. Re-sending the same
    /// event ids returns the first result and writes nothing.
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        let mut results = self.append_multi(vec![StreamAppend { stream: stream.clone(), expected, events }]).await?;
        results.pop().ok_or_else(|| StoreError::Failure("the store returned no result for the append".into()))
    }

    /// Appends to several streams in one transaction, each at its own expected version:
    /// all or nothing. Results come back in the order of `appends`.
    async fn append_multi(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError>;

    /// Reads up to `limit` events of a stream starting at version `from` (inclusive),
    /// forward or backward. `from = None` starts at the stream's first (forward) or last
    /// (backward) event. An unknown stream reads as empty.
    async fn read_stream(
        &self,
        stream: &StreamId,
        from: Option<u64>,
        direction: ReadDirection,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Every event of several streams, in stream then version order: bulk paths load many
    /// small streams in one read. Unknown streams read as empty.
    async fn read_streams(&self, streams: &[StreamId]) -> Result<Vec<RecordedEvent>, StoreError> {
        const PAGE: usize = 1_000;
        let mut events = Vec::new();
        for stream in streams {
            let mut from = 0;
            loop {
                let page = self.read_stream(stream, Some(from), ReadDirection::Forward, PAGE).await?;
                let full = page.len() == PAGE;
                if let Some(last) = page.last() {
                    from = last.stream_version + 1;
                }
                events.extend(page);
                if !full {
                    break;
                }
            }
        }
        Ok(events)
    }

    /// The events of several streams, each from its own version on (inclusive), in stream
    /// then version order: a command reads the streams it decides on in one round trip.
    /// Unknown streams read as empty.
    async fn read_streams_from(&self, streams: &[(StreamId, u64)]) -> Result<Vec<RecordedEvent>, StoreError> {
        const PAGE: usize = 1_000;
        let mut events = Vec::new();
        let mut ordered: Vec<&(StreamId, u64)> = streams.iter().collect();
        ordered.sort_by(|a, b| a.0.cmp(&b.0));
        for (stream, from) in ordered {
            let mut from = *from;
            loop {
                let page = self.read_stream(stream, Some(from), ReadDirection::Forward, PAGE).await?;
                let full = page.len() == PAGE;
                if let Some(last) = page.last() {
                    from = last.stream_version + 1;
                }
                events.extend(page);
                if !full {
                    break;
                }
            }
        }
        Ok(events)
    }

    /// The stream's last version, or `None` when it has no event.
    async fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>, StoreError>;

    /// Reads up to `limit` events of `$all` strictly after `after`, in position order. Never
    /// skips an event that commits later: such an event always gets a position beyond what
    /// this read returned.
    async fn read_all(&self, after: Position, limit: usize) -> Result<AllSlice, StoreError>;

    /// Follows `$all` from just after `after`.
    async fn subscribe_all(&self, after: Position) -> Result<Box<dyn Subscription>, StoreError>;

    /// Recomputes the hash chains over `range` and names the first event that does not match.
    async fn verify(&self, range: PositionRange) -> Result<VerifyReport, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_are_printable_names_with_a_category() {
        let id = StreamId::parse("application-0b7e").expect("valid");
        assert_eq!(id.category(), "application");
        assert_eq!(StreamId::parse("budget").expect("valid").category(), "budget");
        assert_eq!(StreamId::parse(""), Err(InvalidStreamId::Empty));
        assert!(matches!(StreamId::parse("$all"), Err(InvalidStreamId::Reserved(_))));
        assert!(matches!(StreamId::parse("a b"), Err(InvalidStreamId::BadCharacter { .. })));
        assert!(matches!(StreamId::parse("x".repeat(201)), Err(InvalidStreamId::TooLong { .. })));
    }

    #[test]
    fn stream_ids_deserialize_through_the_same_validation() {
        let parsed: Result<StreamId, _> = serde_json::from_str("\"batch-2025-q1\"");
        assert_eq!(parsed.expect("valid").as_str(), "batch-2025-q1");
        let refused: Result<StreamId, _> = serde_json::from_str("\"\"");
        assert!(refused.is_err());
    }
}
