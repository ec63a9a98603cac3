//! The one command service: load a stream, fold its state, decide, append at the expected
//! version, and on a conflict load again and decide again (a bounded number of times).
//!
//! Generic over the [`EventStore`] port; decisions stay pure functions of the loaded state.
//! A decision that spans several streams (a committee approval reserving budget and capacity)
//! loads them all and appends to all of them in one atomic multi-stream append, each at the
//! version it was loaded at, so two decisions racing for the same budget cannot both win.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::event_store::{
    ActualVersion, EventStore, ExpectedVersion, NewEvent, Position, ReadDirection, RecordedEvent, StoreError,
    StreamAppend, StreamId,
};

/// Events read per page while loading a stream.
const LOAD_PAGE: usize = 1_000;

/// An event type of the domain, as it is stored: a stable type name, a schema version and
/// its data as JSON.
pub trait EventCodec: Sized {
    fn event_type(&self) -> &'static str;
    fn schema_version(&self) -> u32;
    fn to_data(&self) -> Result<Value, CodecError>;
    fn from_stored(event_type: &str, schema_version: u32, data: &Value) -> Result<Self, CodecError>;
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("cannot {action} event {event_type}: {reason}")]
pub struct CodecError {
    pub action: &'static str,
    pub event_type: String,
    pub reason: String,
}

/// A stream's state folded from its events. A stream is folded by one aggregate type.
pub trait Aggregate: 'static {
    type State: Default + Clone + Send + Sync + 'static;
    type Event: EventCodec;
    fn apply(state: Self::State, event: &Self::Event) -> Self::State;
}

/// Where new event ids come from (an adapter: random or time-ordered UUIDs).
pub trait EventIds: Send + Sync {
    fn next_id(&self) -> Uuid;
}

/// Who asked, and within which request: stored as every event's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandMetadata {
    pub actor: String,
    pub role: String,
    pub request_id: String,
    pub correlation_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
}

/// A stream's events as loaded, with the version they bring it to.
#[derive(Debug, Clone, Default)]
pub struct StreamHistory {
    pub version: Option<u64>,
    pub events: Vec<RecordedEvent>,
}

/// A point in the past: a position of `$all`, or a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// Events at or before this position.
    Position(Position),
    /// Events recorded at or before this moment.
    Time(chrono::DateTime<chrono::Utc>),
}

impl AsOf {
    pub fn includes(&self, event: &RecordedEvent) -> bool {
        match self {
            AsOf::Position(position) => event.position <= *position,
            AsOf::Time(moment) => event.recorded_at <= *moment,
        }
    }
}

impl StreamHistory {
    /// The history as it stood at `as_of`: what an auditor replays first.
    pub fn as_of(&self, as_of: AsOf) -> StreamHistory {
        // A stream's events are in version order, and positions and times grow with versions.
        let events: Vec<RecordedEvent> =
            self.events.iter().take_while(|event| as_of.includes(event)).cloned().collect();
        StreamHistory { version: events.last().map(|event| event.stream_version), events }
    }

    /// The aggregate's state folded from this history.
    pub fn fold<A: Aggregate>(&self) -> Result<A::State, CodecError> {
        self.events.iter().try_fold(A::State::default(), |state, recorded| {
            let event = A::Event::from_stored(&recorded.event_type, recorded.schema_version, &recorded.data)?;
            Ok(A::apply(state, &event))
        })
    }

    fn expected(&self) -> ExpectedVersion {
        self.version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact)
    }
}

/// Streams with at least this many events keep their folded state between commands: the hot
/// ones (capacity, funding years, batches, prices, busy applications) whose every command
/// would otherwise read and fold a history that only grows.
const CACHE_MIN_EVENTS: u64 = 32;

/// Streams whose folded state the service keeps, at most.
const CACHE_MAX_STREAMS: usize = 4_096;

/// A stream's state folded up to a version, kept between commands. Valid for ever: the log is
/// append-only, so the state at a version never changes.
#[derive(Clone)]
struct FoldedState {
    version: u64,
    aggregate: TypeId,
    state: Arc<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for FoldedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FoldedState(version {})", self.version)
    }
}

/// The loaded histories of the streams a multi-stream decision reads: for a stream whose
/// folded state was kept, that state and the events after it.
#[derive(Debug, Default)]
pub struct Histories {
    streams: BTreeMap<StreamId, StreamHistory>,
    bases: BTreeMap<StreamId, FoldedState>,
    folded: Mutex<Vec<(StreamId, FoldedState)>>,
}

impl Histories {
    /// The stream's version as loaded, and the events loaded (after the kept state, if any).
    pub fn get(&self, stream: &StreamId) -> Option<&StreamHistory> {
        self.streams.get(stream)
    }

    /// The state of `stream` (a stream not loaded or without events folds to the default).
    pub fn state<A: Aggregate>(&self, stream: &StreamId) -> Result<A::State, CodecError> {
        let Some(history) = self.streams.get(stream) else { return Ok(A::State::default()) };
        let start = match self.bases.get(stream) {
            None => A::State::default(),
            Some(base) => base
                .state
                .downcast_ref::<A::State>()
                .filter(|_| base.aggregate == TypeId::of::<A>())
                .cloned()
                .ok_or_else(|| CodecError {
                    action: "fold",
                    event_type: stream.to_string(),
                    reason: "the stream's kept state belongs to another aggregate".into(),
                })?,
        };
        let state = history.events.iter().try_fold(start, |state, recorded| {
            let event = A::Event::from_stored(&recorded.event_type, recorded.schema_version, &recorded.data)?;
            Ok::<_, CodecError>(A::apply(state, &event))
        })?;
        if let Some(version) = history.version.filter(|version| version + 1 >= CACHE_MIN_EVENTS)
            && let Ok(mut folded) = self.folded.lock()
        {
            let kept = FoldedState { version, aggregate: TypeId::of::<A>(), state: Arc::new(state.clone()) };
            folded.push((stream.clone(), kept));
        }
        Ok(state)
    }
}

/// New events a decision produced for one stream, encoded for the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    pub stream: StreamId,
    pub events: Vec<(&'static str, u32, Value)>,
}

impl Decided {
    pub fn new<E: EventCodec>(stream: StreamId, events: &[E]) -> Result<Self, CodecError> {
        let events = events
            .iter()
            .map(|event| Ok((event.event_type(), event.schema_version(), event.to_data()?)))
            .collect::<Result<_, CodecError>>()?;
        Ok(Self { stream, events })
    }
}

/// What a command wrote to one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Written {
    /// The stream's version after the command (unchanged if the command wrote nothing).
    pub version: Option<u64>,
    /// The `$all` position of the last event written, for read-your-writes queries.
    pub position: Option<Position>,
}

/// Why a command did not take effect.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError<E> {
    /// The domain refused it.
    #[error("{0}")]
    Rejected(E),
    /// The caller named a version (`If-Match`) that is no longer current, or concurrent
    /// writers kept winning until the retries ran out.
    #[error("stream {stream} was expected at {expected} but is at {actual}")]
    Conflict { stream: StreamId, expected: ExpectedVersion, actual: ActualVersion },
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Store(StoreError),
}

pub struct CommandService<S, I> {
    store: S,
    ids: I,
    max_attempts: usize,
    kept: Mutex<HashMap<StreamId, FoldedState>>,
}

impl<S: EventStore, I: EventIds> CommandService<S, I> {
    pub fn new(store: S, ids: I) -> Self {
        Self { store, ids, max_attempts: 5, kept: Mutex::new(HashMap::new()) }
    }

    pub fn with_max_attempts(mut self, attempts: usize) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// A decision's encoded events as new events of the store, each with a fresh id.
    fn new_events(&self, events: Vec<(&'static str, u32, Value)>, metadata: &Value) -> Vec<NewEvent> {
        events
            .into_iter()
            .map(|(event_type, schema_version, data)| NewEvent {
                event_id: self.ids.next_id(),
                event_type: event_type.to_owned(),
                schema_version,
                data,
                metadata: metadata.clone(),
            })
            .collect()
    }

    /// Every event of a stream, page by page.
    pub async fn load(&self, stream: &StreamId) -> Result<StreamHistory, StoreError> {
        self.load_after(stream, None).await
    }

    /// The events of a stream after `version` (all of them for `None`); the history's version
    /// is the stream's.
    async fn load_after(&self, stream: &StreamId, version: Option<u64>) -> Result<StreamHistory, StoreError> {
        let mut history = StreamHistory { version, events: Vec::new() };
        loop {
            let from = history.version.map_or(0, |version| version + 1);
            let page = self.store.read_stream(stream, Some(from), ReadDirection::Forward, LOAD_PAGE).await?;
            let full = page.len() == LOAD_PAGE;
            if let Some(last) = page.last() {
                history.version = Some(last.stream_version);
            }
            history.events.extend(page);
            if !full {
                return Ok(history);
            }
        }
    }

    /// The current state of one aggregate and its version (`None`: no stream).
    pub async fn state<A: Aggregate>(&self, stream: &StreamId) -> Result<(A::State, Option<u64>), CommandError<()>> {
        let history = self.load(stream).await.map_err(CommandError::Store)?;
        Ok((history.fold::<A>()?, history.version))
    }

    /// Runs a decision on one stream. With `if_match`, only against that version (no retry);
    /// without it, a conflict loads again and decides again.
    pub async fn execute<A, E, F>(
        &self,
        stream: &StreamId,
        if_match: Option<u64>,
        metadata: &CommandMetadata,
        decide: F,
    ) -> Result<Written, CommandError<E>>
    where
        A: Aggregate,
        F: Fn(&A::State) -> Result<Vec<A::Event>, E>,
    {
        let streams = std::slice::from_ref(stream);
        let if_match = if_match.map(|version| (stream.clone(), version));
        let written = self
            .execute_multi(streams, if_match, metadata, |histories| {
                let state = histories.state::<A>(stream)?;
                let events = decide(&state).map_err(CommandError::Rejected)?;
                Ok(vec![Decided::new(stream.clone(), &events)?])
            })
            .await?;
        Ok(written.into_iter().next().unwrap_or(Written { version: None, position: None }))
    }

    /// Runs a decision over several streams and appends to all of them atomically, each at the
    /// version it was loaded at. Results come back in the order of `streams`.
    pub async fn execute_multi<E, F>(
        &self,
        streams: &[StreamId],
        if_match: Option<(StreamId, u64)>,
        metadata: &CommandMetadata,
        decide: F,
    ) -> Result<Vec<Written>, CommandError<E>>
    where
        F: Fn(&Histories) -> Result<Vec<Decided>, CommandError<E>>,
    {
        let metadata = serde_json::to_value(metadata).map_err(|error| {
            CommandError::Codec(CodecError {
                action: "encode",
                event_type: "metadata".into(),
                reason: error.to_string(),
            })
        })?;
        let mut attempt = 1;
        loop {
            let mut histories = Histories::default();
            for stream in streams {
                let kept = self.kept.lock().ok().and_then(|kept| kept.get(stream).cloned());
                let history =
                    self.load_after(stream, kept.as_ref().map(|k| k.version)).await.map_err(CommandError::Store)?;
                if let Some(kept) = kept {
                    histories.bases.insert(stream.clone(), kept);
                }
                histories.streams.insert(stream.clone(), history);
            }
            if let Some((stream, expected)) = &if_match {
                let actual = histories.get(stream).and_then(|history| history.version);
                if actual != Some(*expected) {
                    return Err(CommandError::Conflict {
                        stream: stream.clone(),
                        expected: ExpectedVersion::Exact(*expected),
                        actual: actual.map_or(ActualVersion::NoStream, ActualVersion::Version),
                    });
                }
            }
            let decided = decide(&histories);
            self.keep(&histories);
            let decided = decided?;
            let appends: Vec<StreamAppend> = decided
                .into_iter()
                .filter(|decision| !decision.events.is_empty())
                .map(|decision| StreamAppend {
                    expected: histories
                        .get(&decision.stream)
                        .map_or(ExpectedVersion::NoStream, StreamHistory::expected),
                    events: self.new_events(decision.events, &metadata),
                    stream: decision.stream,
                })
                .collect();
            let unchanged =
                |stream: &StreamId| Written { version: histories.get(stream).and_then(|h| h.version), position: None };
            if appends.is_empty() {
                return Ok(streams.iter().map(unchanged).collect());
            }
            let appended: Vec<StreamId> = appends.iter().map(|append| append.stream.clone()).collect();
            match self.store.append_multi(appends).await {
                Ok(results) => {
                    let by_stream: BTreeMap<&StreamId, Written> = appended
                        .iter()
                        .zip(results)
                        .map(|(stream, result)| {
                            (stream, Written { version: Some(result.last_version), position: Some(result.position) })
                        })
                        .collect();
                    return Ok(streams
                        .iter()
                        .map(|stream| by_stream.get(stream).copied().unwrap_or(unchanged(stream)))
                        .collect());
                }
                Err(StoreError::WrongExpectedVersion { stream, expected, actual })
                    if if_match.is_some() || attempt >= self.max_attempts =>
                {
                    return Err(CommandError::Conflict { stream, expected, actual });
                }
                Err(StoreError::WrongExpectedVersion { .. }) => attempt += 1,
                Err(other) => return Err(CommandError::Store(other)),
            }
        }
    }
}

impl<S, I> CommandService<S, I> {
    /// Keeps the states a decision folded, for the next command on the same streams.
    fn keep(&self, histories: &Histories) {
        let (Ok(mut folded), Ok(mut kept)) = (histories.folded.lock(), self.kept.lock()) else { return };
        for (stream, state) in folded.drain(..) {
            if kept.len() >= CACHE_MAX_STREAMS && !kept.contains_key(&stream) {
                // Full: make room by forgetting one stream (it is folded again when next used).
                if let Some(forgotten) = kept.keys().next().cloned() {
                    kept.remove(&forgotten);
                }
            }
            if kept.get(&stream).is_none_or(|existing| existing.version < state.version) {
                kept.insert(stream, state);
            }
        }
    }
}

/// Bulk paths (a usage import): many streams loaded in one read, and decisions made over them
/// appended in one transaction at the versions they were loaded at. No retry here: what a
/// conflict means for a batch is the caller's decision.
impl<S: EventStore, I: EventIds> CommandService<S, I> {
    pub async fn load_many(&self, streams: &[StreamId]) -> Result<BTreeMap<StreamId, StreamHistory>, StoreError> {
        let mut histories: BTreeMap<StreamId, StreamHistory> =
            streams.iter().map(|stream| (stream.clone(), StreamHistory::default())).collect();
        for event in self.store.read_streams(streams).await? {
            if let Some(history) = histories.get_mut(&event.stream) {
                history.version = Some(event.stream_version);
                history.events.push(event);
            }
        }
        Ok(histories)
    }

    /// Keeps a state a bulk path folded itself (from the states it loaded and the events it
    /// appended), so the next command reads only what comes after `version`.
    pub fn remember<A: Aggregate>(&self, stream: &StreamId, version: Option<u64>, state: &A::State) {
        let Some(version) = version.filter(|version| version + 1 >= CACHE_MIN_EVENTS) else { return };
        let histories = Histories::default();
        if let Ok(mut folded) = histories.folded.lock() {
            let kept = FoldedState { version, aggregate: TypeId::of::<A>(), state: Arc::new(state.clone()) };
            folded.push((stream.clone(), kept));
        }
        self.keep(&histories);
    }

    /// The current state of each stream and its version: streams with a kept state read only
    /// the events after it, the others are read together in one query.
    pub async fn current_states<A: Aggregate, E>(
        &self,
        streams: &[StreamId],
    ) -> Result<Vec<(A::State, Option<u64>)>, CommandError<E>> {
        let mut histories = Histories::default();
        let mut cold = Vec::new();
        for stream in streams {
            let kept = self.kept.lock().ok().and_then(|kept| kept.get(stream).cloned());
            match kept {
                Some(kept) if kept.aggregate == TypeId::of::<A>() => {
                    let history = self.load_after(stream, Some(kept.version)).await.map_err(CommandError::Store)?;
                    histories.bases.insert(stream.clone(), kept);
                    histories.streams.insert(stream.clone(), history);
                }
                _ => cold.push(stream.clone()),
            }
        }
        histories.streams.extend(self.load_many(&cold).await.map_err(CommandError::Store)?);
        let states = streams
            .iter()
            .map(|stream| {
                let version = histories.get(stream).and_then(|history| history.version);
                Ok((histories.state::<A>(stream)?, version))
            })
            .collect::<Result<Vec<_>, CodecError>>();
        self.keep(&histories);
        Ok(states?)
    }

    /// Appends each decision at the version its stream was loaded at (`None`: no stream yet).
    /// Results come back in the order of `decided`.
    pub async fn append_at<E>(
        &self,
        decided: Vec<(Decided, Option<u64>)>,
        metadata: &CommandMetadata,
    ) -> Result<Vec<Written>, CommandError<E>> {
        let metadata = serde_json::to_value(metadata).map_err(|error| {
            CommandError::Codec(CodecError {
                action: "encode",
                event_type: "metadata".into(),
                reason: error.to_string(),
            })
        })?;
        let appends: Vec<StreamAppend> = decided
            .into_iter()
            .filter(|(decision, _)| !decision.events.is_empty())
            .map(|(decision, loaded_version)| StreamAppend {
                expected: loaded_version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact),
                events: self.new_events(decision.events, &metadata),
                stream: decision.stream,
            })
            .collect();
        if appends.is_empty() {
            return Ok(Vec::new());
        }
        match self.store.append_multi(appends).await {
            Ok(results) => Ok(results
                .into_iter()
                .map(|result| Written { version: Some(result.last_version), position: Some(result.position) })
                .collect()),
            Err(StoreError::WrongExpectedVersion { stream, expected, actual }) => {
                Err(CommandError::Conflict { stream, expected, actual })
            }
            Err(other) => Err(CommandError::Store(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll, Waker};

    use async_trait::async_trait;
    use serde_json::json;

    use super::*;
    use crate::event_store::{AllSlice, AppendResult, PositionRange, Subscription, VerifyReport};

    /// Runs a future that never waits (the in-memory store below answers at once).
    fn block_on<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut context = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
                return output;
            }
        }
    }

    /// An in-memory store with EventStoreDB's expected-version semantics; it can let a rival
    /// writer slip in before the next append, to provoke a conflict.
    #[derive(Default)]
    struct MemoryStore {
        events: Mutex<Vec<RecordedEvent>>,
        rival_writes: AtomicUsize,
        events_read: AtomicUsize,
    }

    impl MemoryStore {
        fn version(events: &[RecordedEvent], stream: &StreamId) -> Option<u64> {
            events.iter().filter(|e| &e.stream == stream).map(|e| e.stream_version).max()
        }

        fn push(events: &mut Vec<RecordedEvent>, stream: &StreamId, event: NewEvent) -> AppendResult {
            let version = Self::version(events, stream).map_or(0, |v| v + 1);
            let position = Position(events.len() as u64 + 1);
            events.push(RecordedEvent {
                position,
                stream: stream.clone(),
                stream_version: version,
                event_id: event.event_id,
                event_type: event.event_type,
                schema_version: event.schema_version,
                data: event.data,
                metadata: event.metadata,
                recorded_at: chrono::DateTime::UNIX_EPOCH,
            });
            AppendResult { first_version: version, last_version: version, position }
        }
    }

    #[async_trait]
    impl EventStore for MemoryStore {
        async fn append_multi(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError> {
            let mut events = self.events.lock().expect("lock");
            if self.rival_writes.load(Ordering::SeqCst) > 0 {
                self.rival_writes.fetch_sub(1, Ordering::SeqCst);
                let rival = Added(100).encode(Uuid::from_u128(events.len() as u128 + 1000));
                Self::push(&mut events, &appends[0].stream, rival);
            }
            for append in &appends {
                let actual = Self::version(&events, &append.stream);
                let ok = match append.expected {
                    ExpectedVersion::Any => true,
                    ExpectedVersion::NoStream => actual.is_none(),
                    ExpectedVersion::StreamExists => actual.is_some(),
                    ExpectedVersion::Exact(v) => actual == Some(v),
                };
                if !ok {
                    return Err(StoreError::WrongExpectedVersion {
                        stream: append.stream.clone(),
                        expected: append.expected,
                        actual: actual.map_or(ActualVersion::NoStream, ActualVersion::Version),
                    });
                }
            }
            Ok(appends
                .into_iter()
                .map(|append| {
                    let mut result = None;
                    for event in append.events {
                        let written = Self::push(&mut events, &append.stream, event);
                        result = Some(result.map_or(written, |first: AppendResult| AppendResult {
                            last_version: written.last_version,
                            position: written.position,
                            ..first
                        }));
                    }
                    result.expect("non-empty append")
                })
                .collect())
        }

        async fn read_stream(
            &self,
            stream: &StreamId,
            from: Option<u64>,
            _direction: ReadDirection,
            limit: usize,
        ) -> Result<Vec<RecordedEvent>, StoreError> {
            let events = self.events.lock().expect("lock");
            let page: Vec<RecordedEvent> = events
                .iter()
                .filter(|e| &e.stream == stream && e.stream_version >= from.unwrap_or(0))
                .take(limit)
                .cloned()
                .collect();
            self.events_read.fetch_add(page.len(), Ordering::SeqCst);
            Ok(page)
        }

        async fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>, StoreError> {
            Ok(Self::version(&self.events.lock().expect("lock"), stream))
        }

        async fn read_all(&self, _after: Position, _limit: usize) -> Result<AllSlice, StoreError> {
            Err(StoreError::Failure("not used here".into()))
        }

        async fn subscribe_all(&self, _after: Position) -> Result<Box<dyn Subscription>, StoreError> {
            Err(StoreError::Failure("not used here".into()))
        }

        async fn verify(&self, _range: PositionRange) -> Result<VerifyReport, StoreError> {
            Err(StoreError::Failure("not used here".into()))
        }
    }

    #[derive(Debug, Clone, PartialEq)]
    struct Added(i64);

    impl Added {
        fn encode(&self, id: Uuid) -> NewEvent {
            NewEvent {
                event_id: id,
                event_type: "Added".into(),
                schema_version: 1,
                data: self.to_data().expect("encode"),
                metadata: json!({}),
            }
        }
    }

    impl EventCodec for Added {
        fn event_type(&self) -> &'static str {
            "Added"
        }
        fn schema_version(&self) -> u32 {
            1
        }
        fn to_data(&self) -> Result<Value, CodecError> {
            Ok(json!({ "amount": self.0 }))
        }
        fn from_stored(event_type: &str, _schema_version: u32, data: &Value) -> Result<Self, CodecError> {
            data["amount"].as_i64().map(Added).ok_or_else(|| CodecError {
                action: "decode",
                event_type: event_type.into(),
                reason: "no amount".into(),
            })
        }
    }

    /// A running total that refuses to go above 1,000.
    struct Counter;

    impl Aggregate for Counter {
        type State = i64;
        type Event = Added;
        fn apply(state: i64, event: &Added) -> i64 {
            state + event.0
        }
    }

    fn add(amount: i64) -> impl Fn(&i64) -> Result<Vec<Added>, String> {
        move |total| {
            if total + amount > 1_000 {
                Err(format!("total {total} + {amount} would exceed 1000"))
            } else if amount == 0 {
                Ok(vec![])
            } else {
                Ok(vec![Added(amount)])
            }
        }
    }

    struct SequentialIds(AtomicUsize);

    impl EventIds for SequentialIds {
        fn next_id(&self) -> Uuid {
            Uuid::from_u128(self.0.fetch_add(1, Ordering::SeqCst) as u128 + 1)
        }
    }

    fn service() -> CommandService<MemoryStore, SequentialIds> {
        CommandService::new(MemoryStore::default(), SequentialIds(AtomicUsize::new(0)))
    }

    fn metadata() -> CommandMetadata {
        CommandMetadata {
            actor: "alice".into(),
            role: "finance_officer".into(),
            request_id: "req-1".into(),
            correlation_id: "corr-1".into(),
            causation_id: None,
        }
    }

    fn counter() -> StreamId {
        StreamId::parse("counter-1").expect("stream")
    }

    #[test]
    fn a_command_appends_at_the_loaded_version_with_its_metadata() {
        let service = service();
        let first = block_on(service.execute::<Counter, _, _>(&counter(), None, &metadata(), add(5))).expect("first");
        assert_eq!(first.version, Some(0));
        let second = block_on(service.execute::<Counter, _, _>(&counter(), None, &metadata(), add(7))).expect("second");
        assert_eq!(second.version, Some(1));
        assert!(second.position > first.position);
        let (total, version) = block_on(service.state::<Counter>(&counter())).expect("state");
        assert_eq!((total, version), (12, Some(1)));
        let stored = service.store().events.lock().expect("lock")[0].metadata.clone();
        assert_eq!(stored["actor"], "alice");
        assert_eq!(stored["role"], "finance_officer");
        assert_eq!(stored["request_id"], "req-1");
    }

    #[test]
    fn a_history_replays_as_it_stood_at_a_position() {
        let service = service();
        let mut positions = Vec::new();
        for amount in [5, 7, 11] {
            let written =
                block_on(service.execute::<Counter, _, _>(&counter(), None, &metadata(), add(amount))).expect("add");
            positions.push(written.position.expect("position"));
        }
        let history = block_on(service.load(&counter())).expect("load");
        let then = history.as_of(AsOf::Position(positions[1]));
        assert_eq!((then.fold::<Counter>().expect("fold"), then.version), (12, Some(1)));
        let before_anything = history.as_of(AsOf::Position(Position(0)));
        assert_eq!((before_anything.fold::<Counter>().expect("fold"), before_anything.version), (0, None));
        let by_time = history.as_of(AsOf::Time(chrono::DateTime::UNIX_EPOCH));
        assert_eq!(by_time.fold::<Counter>().expect("fold"), 23, "every event was recorded at the epoch here");
    }

    #[test]
    fn a_refusal_writes_nothing() {
        let service = service();
        let refused = block_on(service.execute::<Counter, _, _>(&counter(), None, &metadata(), add(5_000)));
        assert!(matches!(refused, Err(CommandError::Rejected(message)) if message.contains("exceed")));
        assert!(service.store().events.lock().expect("lock").is_empty());
    }

    #[test]
    fn a_command_that_decides_nothing_writes_nothing() {
        let service = service();
        block_on(service.execute::<Counter, _, _>(&counter(), None, &metadata(), add(5))).expect("first");
        let unchanged =
            block_on(service.execute::<Counter, _, _>(&counter(), None, &metadata(), add(0))).expect("no-op");
        assert_eq!(unchanged, Written { version: Some(0), position: None });
    }

    #[test]
    fn a_stale_if_match_is_a_conflict_and_is_not_retried() {
        let service = service();
        block_on(service.execute::<Counter, _, _>(&counter(), None, &metadata(), add(5))).expect("first");
        block_on(service.execute::<Counter, _, _>(&counter(), None, &metadata(), add(5))).expect("second");
        let stale = block_on(service.execute::<Counter, _, _>(&counter(), Some(0), &metadata(), add(5)));
        assert_eq!(
            stale,
            Err(CommandError::Conflict {
                stream: counter(),
                expected: ExpectedVersion::Exact(0),
                actual: ActualVersion::Version(1)
            })
        );
        let current =
            block_on(service.execute::<Counter, _, _>(&counter(), Some(1), &metadata(), add(5))).expect("current");
        assert_eq!(current.version, Some(2));
    }

    #[test]
    fn a_conflict_without_if_match_decides_again_on_the_new_state() {
        let service = service();
        block_on(service.execute::<Counter, _, _>(&counter(), None, &metadata(), add(850))).expect("first");
        // A rival adds 100 just before our append: we must decide again, on 950, and refuse.
        service.store().rival_writes.store(1, Ordering::SeqCst);
        let decisions = AtomicUsize::new(0);
        let outcome = block_on(service.execute::<Counter, _, _>(&counter(), None, &metadata(), |total: &i64| {
            decisions.fetch_add(1, Ordering::SeqCst);
            add(100)(total)
        }));
        assert_eq!(decisions.load(Ordering::SeqCst), 2, "decided again after the conflict");
        assert!(matches!(outcome, Err(CommandError::Rejected(_))), "{outcome:?}");
        assert_eq!(block_on(service.state::<Counter>(&counter())).expect("state").0, 950);
    }

    #[test]
    fn retries_are_bounded() {
        let service = service().with_max_attempts(3);
        service.store().rival_writes.store(10, Ordering::SeqCst);
        let outcome = block_on(service.execute::<Counter, _, _>(&counter(), None, &metadata(), add(1)));
        assert!(matches!(outcome, Err(CommandError::Conflict { .. })), "{outcome:?}");
        assert_eq!(service.store().rival_writes.load(Ordering::SeqCst), 7, "three attempts, no more");
    }

    #[test]
    fn a_multi_stream_decision_appends_to_every_stream_it_names() {
        let service = service();
        let (a, b) = (StreamId::parse("counter-a").expect("a"), StreamId::parse("counter-b").expect("b"));
        let written = block_on(service.execute_multi::<String, _>(&[a.clone(), b.clone()], None, &metadata(), |h| {
            let total_a = h.state::<Counter>(&a)?;
            Ok(vec![Decided::new(a.clone(), &[Added(1)])?, Decided::new(b.clone(), &[Added(total_a + 2), Added(3)])?])
        }))
        .expect("multi");
        assert_eq!(written.iter().map(|w| w.version).collect::<Vec<_>>(), vec![Some(0), Some(1)]);
        assert_eq!(block_on(service.state::<Counter>(&b)).expect("state").0, 5);
    }

    /// Folds the same events as [`Counter`], differently.
    struct Doubler;

    impl Aggregate for Doubler {
        type State = i64;
        type Event = Added;
        fn apply(state: i64, event: &Added) -> i64 {
            state + 2 * event.0
        }
    }

    fn hot_counter(service: &CommandService<MemoryStore, SequentialIds>, events: usize) {
        for _ in 0..events {
            block_on(service.execute::<Counter, _, _>(&counter(), None, &metadata(), add(1))).expect("add");
        }
    }

    #[test]
    fn a_hot_stream_is_read_only_after_its_kept_state() {
        let service = service();
        hot_counter(&service, 40);
        service.store().events_read.store(0, Ordering::SeqCst);
        let seen = AtomicUsize::new(0);
        block_on(service.execute::<Counter, _, _>(&counter(), None, &metadata(), |total: &i64| {
            seen.store(*total as usize, Ordering::SeqCst);
            add(1)(total)
        }))
        .expect("add");
        assert_eq!(seen.load(Ordering::SeqCst), 40, "decided on the whole history");
        assert_eq!(service.store().events_read.load(Ordering::SeqCst), 1, "read only the event after the kept state");
        // A cold stream is read whole every time.
        let cold = StreamId::parse("counter-cold").expect("stream");
        block_on(service.execute::<Counter, _, _>(&cold, None, &metadata(), add(1))).expect("cold");
        service.store().events_read.store(0, Ordering::SeqCst);
        block_on(service.execute::<Counter, _, _>(&cold, None, &metadata(), add(1))).expect("cold");
        assert_eq!(service.store().events_read.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_kept_state_behind_another_writer_catches_up_before_deciding_again() {
        let service = service();
        hot_counter(&service, 40);
        // A rival adds 100 just before our append: the conflict loads the tail after the kept
        // state, rival's event included, and decides again on 140.
        service.store().rival_writes.store(1, Ordering::SeqCst);
        let seen = Mutex::new(Vec::new());
        block_on(service.execute::<Counter, _, _>(&counter(), None, &metadata(), |total: &i64| {
            seen.lock().expect("lock").push(*total);
            add(1)(total)
        }))
        .expect("add");
        assert_eq!(*seen.lock().expect("lock"), vec![40, 140]);
        assert_eq!(block_on(service.state::<Counter>(&counter())).expect("state").0, 141);
        let next = block_on(service.execute::<Counter, _, _>(&counter(), None, &metadata(), add(1))).expect("add");
        assert_eq!(next.version, Some(42));
        assert_eq!(block_on(service.state::<Counter>(&counter())).expect("state").0, 142);
    }

    #[test]
    fn a_kept_state_is_never_served_to_another_aggregate() {
        let service = service();
        hot_counter(&service, 40);
        let other = block_on(service.execute::<Doubler, String, _>(&counter(), None, &metadata(), |_| Ok(vec![])));
        assert!(matches!(other, Err(CommandError::Codec(_))), "{other:?}");
    }
}
