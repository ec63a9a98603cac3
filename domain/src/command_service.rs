//! The one command service and the one shape of a decision.
//!
//! A [`Decision`] names the streams it reads (its consistency boundary), folds them into the
//! typed state it decides on, and decides purely from that state and the outside facts it is
//! given, returning the events for each stream. The service runs every decision the same way:
//! load the boundary, fold, decide, append to every stream written at the version it was read
//! at (one atomic multi-stream append), and on a conflict load again and decide again, a
//! bounded number of times. Two decisions racing for the same budget therefore cannot both win.
//! A writer alone on its streams (the demo seed) decides many commands the same way and
//! appends them together with a [`CommandBatch`].
//!
//! Generic over the [`EventStore`] port.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::personal_data::{PersonalDataSealer, PersonalField, PersonalText, SealError, seal_fields};

pub use crate::codec::{CodecError, EventCodec};
use crate::event_store::{
    ActualVersion, EventStore, ExpectedVersion, MAX_EVENTS_PER_APPEND, NewEvent, Position, ReadDirection,
    RecordedEvent, StoreError, StreamAppend, StreamId,
};

/// Events read per page while loading a stream.
const LOAD_PAGE: usize = 1_000;

/// A stream's state folded from its events. A stream is folded by one aggregate type.
pub trait Aggregate: 'static {
    type State: Default + Clone + Send + Sync + 'static;
    type Event: EventCodec;
    fn apply(state: Self::State, event: &Self::Event) -> Self::State;

    /// About how many bytes a state holds, for the bound on the states the service keeps.
    fn kept_bytes(_state: &Self::State) -> usize {
        std::mem::size_of::<Self::State>()
    }
}

/// How long to wait before deciding again after losing a race for a stream (an adapter: a
/// sleep with jitter, so writers that collided do not collide again in step).
#[async_trait::async_trait]
pub trait Backoff: Send + Sync {
    /// Waits before attempt `attempt + 1` (the first retry follows attempt 1).
    async fn pause(&self, attempt: usize);
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

    /// The history of the facts in force on `date` by the scheme's own calendar: the events
    /// whose business date (a decision's meeting, a receipt's day, a charge's usage month…)
    /// is on or before it, in the order they were recorded — a decision taken on 28 March
    /// and recorded on 2 April is in force on 31 March. Combined with [`StreamHistory::as_of`],
    /// the facts in force on a date as the log knew them at a point.
    pub fn effective_on<E: EventCodec + crate::codec::BusinessDate>(
        &self,
        date: chrono::NaiveDate,
    ) -> Result<StreamHistory, CodecError> {
        let mut events = Vec::with_capacity(self.events.len());
        for recorded in &self.events {
            if recorded.decode::<E>()?.effective_on() <= date {
                events.push(recorded.clone());
            }
        }
        Ok(StreamHistory { version: events.last().map(|event| event.stream_version), events })
    }

    /// The aggregate's state folded from this history.
    pub fn fold<A: Aggregate>(&self) -> Result<A::State, CodecError> {
        self.events.iter().try_fold(A::State::default(), |state, recorded| {
            let event = recorded.decode::<A::Event>()?;
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

/// Streams whose folded state the service keeps, at most, by default: the scheme's hot
/// streams and its busiest applications.
const CACHE_MAX_STREAMS: usize = 4_096;

/// What the kept states may hold, about, by default. An application charged hundreds of
/// thousands of usage lines weighs tens of MiB: the bound is on bytes, not only on streams.
const CACHE_MAX_BYTES: usize = 64 << 20;

/// The folded states kept between commands, bounded in streams and in bytes: when full, the
/// least recently used streams are forgotten (folded again from the log when next used).
#[derive(Debug, Default)]
struct KeptStates {
    states: HashMap<StreamId, (FoldedState, u64)>,
    /// Ticks once per use; a state's tick is when it was last used.
    clock: u64,
    bytes: usize,
}

/// The bounds of the kept states.
#[derive(Debug, Clone, Copy)]
struct KeptBounds {
    streams: usize,
    bytes: usize,
}

impl KeptStates {
    /// The kept state of `stream`, marked as just used.
    fn get(&mut self, stream: &StreamId) -> Option<FoldedState> {
        self.clock += 1;
        let clock = self.clock;
        self.states.get_mut(stream).map(|(state, used)| {
            *used = clock;
            state.clone()
        })
    }

    /// Keeps `state` unless a later one is kept; makes room by forgetting the least recently
    /// used streams. A state larger than the whole budget is not kept.
    fn keep(&mut self, stream: StreamId, state: FoldedState, bounds: KeptBounds) {
        self.clock += 1;
        if let Some((existing, used)) = self.states.get_mut(&stream) {
            *used = self.clock;
            if existing.version >= state.version {
                return;
            }
        }
        self.forget(&stream);
        if state.bytes > bounds.bytes {
            return;
        }
        while !self.states.is_empty()
            && (self.states.len() >= bounds.streams || self.bytes + state.bytes > bounds.bytes)
        {
            let Some(oldest) = self.states.iter().min_by_key(|(_, (_, used))| *used).map(|(stream, _)| stream.clone())
            else {
                break;
            };
            self.forget(&oldest);
        }
        self.bytes += state.bytes;
        self.states.insert(stream, (state, self.clock));
    }

    fn forget(&mut self, stream: &StreamId) {
        if let Some((state, _)) = self.states.remove(stream) {
            self.bytes = self.bytes.saturating_sub(state.bytes);
        }
    }
}

/// A stream's state folded up to a version, kept between commands. Valid for ever: the log is
/// append-only, so the state at a version never changes.
#[derive(Clone)]
struct FoldedState {
    version: u64,
    /// [`Aggregate::kept_bytes`] of the state.
    bytes: usize,
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
    /// Records every state folded, not only the hot streams': a batch folds each stream
    /// forward from the state the previous command in it left.
    record_every_state: bool,
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
            let event = recorded.decode::<A::Event>()?;
            Ok::<_, CodecError>(A::apply(state, &event))
        })?;
        if let Some(version) =
            history.version.filter(|version| self.record_every_state || version + 1 >= CACHE_MIN_EVENTS)
            && let Ok(mut folded) = self.folded.lock()
        {
            let kept = FoldedState {
                version,
                bytes: A::kept_bytes(&state),
                aggregate: TypeId::of::<A>(),
                state: Arc::new(state.clone()),
            };
            folded.push((stream.clone(), kept));
        }
        Ok(state)
    }
}

/// A decision: what a command decides, from the streams it reads and the outside facts it is
/// given. Pure: everything it decides on arrives through [`Decision::state`] and `facts`.
pub trait Decision: Sync {
    /// The folded states it decides on (a struct or tuple of aggregate states).
    type State;
    /// Facts from outside the log it needs (today's date, who acts).
    type Facts: Sync;
    /// Every event it may write, across the streams it writes.
    type Event: EventCodec;
    /// Its refusals.
    type Error;

    /// The stream the command is about: `If-Match` refers to it, and the caller is answered
    /// with its version. Always read.
    fn subject(&self) -> Result<StreamId, Self::Error>;

    /// The streams it reads besides the subject: its consistency boundary, which includes
    /// every stream it writes. Called with what has been loaded so far; a decision whose
    /// boundary depends on a stream's state (the funding year of a usage line it reverses)
    /// names the further stream once that state is loaded, and the service reads until the
    /// boundary stops growing.
    fn boundary(&self, loaded: &Histories) -> Result<Vec<StreamId>, Self::Error>;

    /// Folds the loaded streams into its state.
    fn state(&self, loaded: &Histories) -> Result<Self::State, CodecError>;

    /// Whether the subject is a stream this command creates under a fresh id (a submission):
    /// the first attempt then does not read it and appends as its first events; should the
    /// stream exist after all, the append conflicts and the next attempt reads it and decides
    /// again.
    fn creates_subject(&self) -> bool {
        false
    }

    /// The decision itself: the events for each stream (in order), or a refusal. Nothing is
    /// written when it returns no event.
    fn decide(&self, state: &Self::State, facts: &Self::Facts) -> Result<Vec<(StreamId, Self::Event)>, Self::Error>;
}

/// The common case of a decision on one stream folded by one aggregate: implement this and
/// the stream's events become a [`Decision`] with the boundary of that stream alone.
pub trait StreamDecision: Sync {
    type Aggregate: Aggregate;
    type Facts: Sync;
    type Error;

    fn stream(&self) -> Result<StreamId, Self::Error>;

    fn decide(
        &self,
        state: &<Self::Aggregate as Aggregate>::State,
        facts: &Self::Facts,
    ) -> Result<Vec<<Self::Aggregate as Aggregate>::Event>, Self::Error>;
}

impl<D: StreamDecision> Decision for D
where
    <D::Aggregate as Aggregate>::Event: EventCodec,
{
    type State = <D::Aggregate as Aggregate>::State;
    type Facts = D::Facts;
    type Event = <D::Aggregate as Aggregate>::Event;
    type Error = D::Error;

    fn subject(&self) -> Result<StreamId, Self::Error> {
        self.stream()
    }

    fn boundary(&self, _loaded: &Histories) -> Result<Vec<StreamId>, Self::Error> {
        Ok(Vec::new())
    }

    fn state(&self, loaded: &Histories) -> Result<Self::State, CodecError> {
        match self.stream() {
            Ok(stream) => loaded.state::<D::Aggregate>(&stream),
            Err(_) => Ok(Self::State::default()),
        }
    }

    fn decide(&self, state: &Self::State, facts: &Self::Facts) -> Result<Vec<(StreamId, Self::Event)>, Self::Error> {
        let stream = self.stream()?;
        Ok(StreamDecision::decide(self, state, facts)?.into_iter().map(|event| (stream.clone(), event)).collect())
    }
}

/// How many times the boundary may grow after the subject is loaded.
const BOUNDARY_ROUNDS: usize = 3;

/// New events a decision produced for one stream, encoded for the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    pub stream: StreamId,
    pub events: Vec<(&'static str, u32, Value)>,
}

impl Decided {
    /// Groups a decision's events by stream, streams in the order they first appear.
    pub fn group<E: EventCodec>(events: &[(StreamId, E)]) -> Result<Vec<Self>, CodecError> {
        let mut grouped: Vec<Decided> = Vec::new();
        for (stream, event) in events {
            let encoded = (event.event_type(), event.schema_version(), event.to_data()?);
            match grouped.iter_mut().find(|decided| &decided.stream == stream) {
                Some(decided) => decided.events.push(encoded),
                None => grouped.push(Decided { stream: stream.clone(), events: vec![encoded] }),
            }
        }
        Ok(grouped)
    }

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
    /// Personal data it would write could not be sealed (its subject erased, or no key).
    #[error(transparent)]
    PersonalData(#[from] SealError),
}

/// Attempts at a decision whose streams other writers keep changing, by default. Each attempt
/// decides on fresh state, so a command that is valid on the state it finds is decided however
/// many writers share its stream; only an `If-Match` names a version that cannot be retried.
const DEFAULT_ATTEMPTS: usize = 64;

pub struct CommandService<S, I> {
    store: S,
    ids: I,
    max_attempts: usize,
    backoff: Option<Arc<dyn Backoff>>,
    kept: Mutex<KeptStates>,
    kept_bounds: KeptBounds,
    /// Seals the personal fields decisions write; without one, a decision writing personal
    /// data fails rather than store it in plaintext.
    sealer: Option<Arc<dyn PersonalDataSealer>>,
}

impl<S: EventStore, I: EventIds> CommandService<S, I> {
    pub fn new(store: S, ids: I) -> Self {
        Self {
            store,
            ids,
            max_attempts: DEFAULT_ATTEMPTS,
            backoff: None,
            kept: Mutex::new(KeptStates::default()),
            kept_bounds: KeptBounds { streams: CACHE_MAX_STREAMS, bytes: CACHE_MAX_BYTES },
            sealer: None,
        }
    }

    /// Seals the personal fields of every event decided with `sealer`.
    pub fn with_sealer(mut self, sealer: Arc<dyn PersonalDataSealer>) -> Self {
        self.sealer = Some(sealer);
        self
    }

    pub fn with_max_attempts(mut self, attempts: usize) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Keeps the folded states of at most `streams` streams (4,096 by default).
    pub fn with_kept_states(mut self, streams: usize) -> Self {
        self.kept_bounds.streams = streams.max(1);
        self
    }

    /// Keeps folded states of about `bytes` bytes at most (64 MiB by default).
    pub fn with_kept_bytes(mut self, bytes: usize) -> Self {
        self.kept_bounds.bytes = bytes;
        self
    }

    /// Waits between attempts after a conflict (none by default).
    pub fn with_backoff(mut self, backoff: Arc<dyn Backoff>) -> Self {
        self.backoff = Some(backoff);
        self
    }

    /// How many attempts a decision gets before a conflict is given up.
    pub fn max_attempts(&self) -> usize {
        self.max_attempts
    }

    /// Waits as the service waits before attempt `attempt + 1` (for bulk paths that retry
    /// themselves).
    pub async fn back_off(&self, attempt: usize) {
        if let Some(backoff) = &self.backoff {
            backoff.pause(attempt).await;
        }
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

    /// Runs a decision: loads its boundary, folds, decides, and appends every stream it
    /// writes at the version read. With `if_match`, only against that version of the subject
    /// (no retry); without it, a conflict loads again and decides again, up to the bound.
    /// Answers what was written to the subject.
    pub async fn run<D: Decision>(
        &self,
        decision: &D,
        facts: &D::Facts,
        if_match: Option<u64>,
        metadata: &CommandMetadata,
    ) -> Result<Written, CommandError<D::Error>> {
        let subject = decision.subject().map_err(CommandError::Rejected)?;
        let metadata = encode_metadata(metadata)?;
        let mut attempt = 1;
        loop {
            // A new subject is not read on the first attempt: there is nothing to read.
            let unread_subject = attempt == 1 && if_match.is_none() && decision.creates_subject();
            let histories = self.load_boundary(decision, &subject, unread_subject).await?;
            let version_read = histories.get(&subject).and_then(|history| history.version);
            if let Some(expected) = if_match
                && version_read != Some(expected)
            {
                return Err(CommandError::Conflict {
                    stream: subject,
                    expected: ExpectedVersion::Exact(expected),
                    actual: version_read.map_or(ActualVersion::NoStream, ActualVersion::Version),
                });
            }
            let decided = decision
                .state(&histories)
                .map_err(CommandError::Codec)
                .and_then(|state| decision.decide(&state, facts).map_err(CommandError::Rejected));
            self.keep(&histories);
            let mut decided = decided?;
            self.seal_personal_data(&mut decided).await?;
            let decided = Decided::group(&decided)?;
            let mut appends = Vec::with_capacity(decided.len());
            for decision in decided {
                let Some(history) = histories.get(&decision.stream) else {
                    return Err(CommandError::Codec(CodecError {
                        action: "append",
                        event_type: decision.events.first().map_or("", |event| event.0).to_string(),
                        reason: format!("stream {} is outside the decision's boundary", decision.stream),
                    }));
                };
                appends.push(StreamAppend {
                    expected: history.expected(),
                    events: self.new_events(decision.events, &metadata),
                    stream: decision.stream,
                });
            }
            if appends.is_empty() {
                return Ok(Written { version: version_read, position: None });
            }
            let appended: Vec<StreamId> = appends.iter().map(|append| append.stream.clone()).collect();
            match self.store.append_multi(appends).await {
                Ok(results) => {
                    let subject_result = appended.iter().zip(&results).find(|(stream, _)| **stream == subject);
                    // The last position of every stream written, not only the subject's: a
                    // query waiting for it then sees the whole command (its budget and
                    // capacity events too), whichever stream the log placed last.
                    let position = results.iter().map(|result| result.position).max();
                    return Ok(Written {
                        // The subject only read answers the version it was read at.
                        version: subject_result.map_or(version_read, |(_, result)| Some(result.last_version)),
                        position,
                    });
                }
                Err(StoreError::WrongExpectedVersion { stream, expected, actual })
                    if if_match.is_some() || attempt >= self.max_attempts =>
                {
                    return Err(CommandError::Conflict { stream, expected, actual });
                }
                Err(StoreError::WrongExpectedVersion { .. }) => {
                    self.back_off(attempt).await;
                    attempt += 1;
                }
                Err(other) => return Err(CommandError::Store(other)),
            }
        }
    }

    /// Loads the subject, then the boundary, until the boundary stops growing.
    async fn load_boundary<D: Decision>(
        &self,
        decision: &D,
        subject: &StreamId,
        unread_subject: bool,
    ) -> Result<Histories, CommandError<D::Error>> {
        let mut histories = Histories::default();
        let mut wanted = vec![subject.clone()];
        if unread_subject {
            histories.streams.insert(subject.clone(), StreamHistory::default());
            wanted.clear();
        }
        read_with_subject(decision, &histories, &mut wanted);
        for _ in 0..=BOUNDARY_ROUNDS {
            self.load_into(&mut histories, wanted).await.map_err(CommandError::Store)?;
            wanted = streams_not_loaded(decision, &histories).map_err(CommandError::Rejected)?;
            if wanted.is_empty() {
                return Ok(histories);
            }
        }
        Err(CommandError::Codec(CodecError {
            action: "load",
            event_type: subject.to_string(),
            reason: format!("the decision's boundary kept growing after {BOUNDARY_ROUNDS} rounds"),
        }))
    }
}

impl<S: EventStore, I> CommandService<S, I> {
    /// Loads `streams` into `histories` in one read: a stream with a kept state reads only
    /// the events after it.
    async fn load_into(&self, histories: &mut Histories, streams: Vec<StreamId>) -> Result<(), StoreError> {
        if streams.is_empty() {
            return Ok(());
        }
        let mut from = Vec::with_capacity(streams.len());
        for stream in streams {
            let kept = self.kept.lock().ok().and_then(|mut kept| kept.get(&stream));
            let version = kept.as_ref().map(|kept| kept.version);
            from.push((stream.clone(), version.map_or(0, |version| version + 1)));
            if let Some(kept) = kept {
                histories.bases.insert(stream.clone(), kept);
            }
            histories.streams.insert(stream, StreamHistory { version, events: Vec::new() });
        }
        for event in self.store.read_streams_from(&from).await? {
            if let Some(history) = histories.streams.get_mut(&event.stream) {
                history.version = Some(event.stream_version);
                history.events.push(event);
            }
        }
        Ok(())
    }
}

/// Adds to `wanted` the streams `decision` reads whatever its subject holds (its boundary asked
/// before anything is loaded; a boundary that needs the subject first is asked again after),
/// so that they are read in the same round trip as the subject.
fn read_with_subject<D: Decision>(decision: &D, histories: &Histories, wanted: &mut Vec<StreamId>) {
    if let Ok(known_already) = decision.boundary(histories) {
        for stream in known_already {
            if !wanted.contains(&stream) && !histories.streams.contains_key(&stream) {
                wanted.push(stream);
            }
        }
    }
}

/// The streams of the decision's boundary, given what is loaded, that are not loaded yet.
fn streams_not_loaded<D: Decision>(decision: &D, histories: &Histories) -> Result<Vec<StreamId>, D::Error> {
    let boundary = decision.boundary(histories)?;
    let missing: std::collections::BTreeSet<StreamId> =
        boundary.into_iter().filter(|stream| !histories.streams.contains_key(stream)).collect();
    Ok(missing.into_iter().collect())
}

fn encode_metadata<E>(metadata: &CommandMetadata) -> Result<Value, CommandError<E>> {
    serde_json::to_value(metadata).map_err(|error| {
        CommandError::Codec(CodecError { action: "encode", event_type: "metadata".into(), reason: error.to_string() })
    })
}

impl<S, I> CommandService<S, I> {
    /// Seals the personal fields the decided events carry in plaintext, in one call to the
    /// sealer: encoding refuses unsealed text, so nothing personal is stored in the clear.
    async fn seal_personal_data<E: EventCodec, R>(&self, events: &mut [(StreamId, E)]) -> Result<(), CommandError<R>> {
        let fields: Vec<PersonalField<'_>> = events
            .iter_mut()
            .flat_map(|(_, event)| event.personal_fields())
            .filter(|field| matches!(field.text, PersonalText::Unsealed(_)))
            .collect();
        if fields.is_empty() {
            return Ok(());
        }
        let Some(sealer) = &self.sealer else {
            return Err(CommandError::PersonalData(SealError::Unavailable(
                "no key-encryption key was given (AISC_KEK_FILE)".into(),
            )));
        };
        seal_fields(sealer.as_ref(), fields).await.map_err(CommandError::PersonalData)
    }

    /// Keeps the states a decision folded, for the next command on the same streams.
    fn keep(&self, histories: &Histories) {
        let (Ok(mut folded), Ok(mut kept)) = (histories.folded.lock(), self.kept.lock()) else { return };
        for (stream, state) in folded.drain(..) {
            kept.keep(stream, state, self.kept_bounds);
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
            let kept = FoldedState {
                version,
                bytes: A::kept_bytes(state),
                aggregate: TypeId::of::<A>(),
                state: Arc::new(state.clone()),
            };
            folded.push((stream.clone(), kept));
        }
        self.keep(&histories);
    }

    /// Forgets the kept states of `streams`: a bulk path that took them over and changes them
    /// in place hands them back with [`CommandService::remember`].
    pub fn forget(&self, streams: &[StreamId]) {
        if let Ok(mut kept) = self.kept.lock() {
            for stream in streams {
                kept.forget(stream);
            }
        }
    }

    /// The current state of each stream and its version: streams with a kept state read only
    /// the events after it. Each stream is folded page by page as it is read, so a stream of
    /// a million events is never held in memory whole (only its state is).
    pub async fn current_states<A: Aggregate, E>(
        &self,
        streams: &[StreamId],
    ) -> Result<Vec<(A::State, Option<u64>)>, CommandError<E>> {
        let mut states = Vec::with_capacity(streams.len());
        for stream in streams {
            let kept = self.kept.lock().ok().and_then(|mut kept| kept.get(stream));
            let base = kept.and_then(|kept| {
                let state = kept.state.downcast_ref::<A::State>().filter(|_| kept.aggregate == TypeId::of::<A>())?;
                Some((state.clone(), kept.version))
            });
            let (mut state, mut version) = match base {
                Some((state, version)) => (state, Some(version)),
                None => (A::State::default(), None),
            };
            loop {
                let from = version.map_or(0, |version| version + 1);
                let page = self
                    .store
                    .read_stream(stream, Some(from), ReadDirection::Forward, LOAD_PAGE)
                    .await
                    .map_err(CommandError::Store)?;
                let full = page.len() == LOAD_PAGE;
                for recorded in &page {
                    state = A::apply(state, &recorded.decode::<A::Event>().map_err(CommandError::Codec)?);
                    version = Some(recorded.stream_version);
                }
                if !full {
                    break;
                }
            }
            self.remember::<A>(stream, version, &state);
            states.push((state, version));
        }
        Ok(states)
    }

    /// Appends each decision at the version its stream was loaded at (`None`: no stream yet).
    /// Results come back in the order of `decided`.
    pub async fn append_at<E>(
        &self,
        decided: Vec<(Decided, Option<u64>)>,
        metadata: &CommandMetadata,
    ) -> Result<Vec<Written>, CommandError<E>> {
        let metadata = encode_metadata(metadata)?;
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

/// Many commands as one unit of work, for a writer that is alone on its streams (the demo
/// seed): each command is decided by its own [`Decision`], exactly as [`CommandService::run`]
/// decides it, but against the states folded so far in the batch — the events of the commands
/// before it included — and nothing is written until [`CommandBatch::commit`] appends every
/// stream written in one multi-stream append, at the version it was first read at.
///
/// No retry: a conflict at commit means another writer changed a stream the batch writes, and
/// the batch's decisions were taken on a state that is no longer current; the caller is told
/// and nothing of the batch is written. A stream the batch only reads is not version-checked
/// (as with `run`). A batch dropped without a commit writes nothing. It holds the state of
/// every stream it has read until it is dropped: a long writer starts a new batch now and then.
pub struct CommandBatch<'a, S, I> {
    service: &'a CommandService<S, I>,
    streams: HashMap<StreamId, BatchStream>,
    /// The streams with events to append, in the order first written.
    written: Vec<StreamId>,
    pending_events: usize,
    pending_commands: usize,
    max_events: usize,
}

/// A stream as the batch knows it.
#[derive(Debug)]
struct BatchStream {
    /// The version it was read at (or last committed at): the expected version of its append.
    read_at: Option<u64>,
    /// Its version with the events decided in the batch.
    version: Option<u64>,
    /// Its state folded up to a version: kept by the service, or folded by a command of the batch.
    base: Option<FoldedState>,
    /// Its events after `base` (all of them without one), read or decided.
    tail: Vec<RecordedEvent>,
    /// The events decided in the batch and not committed yet.
    new_events: Vec<NewEvent>,
}

/// What a batch's commit wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Committed {
    /// Commands that decided events since the previous commit.
    pub commands: usize,
    pub events: usize,
    pub streams: usize,
    /// The `$all` position of the last event written (none when nothing was pending).
    pub position: Option<Position>,
}

impl<S: EventStore, I: EventIds> CommandService<S, I> {
    /// A batch of commands decided one after another and appended together.
    #[must_use = "a batch writes nothing until it is committed"]
    pub fn batch(&self) -> CommandBatch<'_, S, I> {
        CommandBatch {
            service: self,
            streams: HashMap::new(),
            written: Vec::new(),
            pending_events: 0,
            pending_commands: 0,
            max_events: MAX_EVENTS_PER_APPEND,
        }
    }

    /// Keeps a state a batch folded and committed, as `run` keeps the hot streams' states.
    fn keep_committed(&self, stream: &StreamId, state: &FoldedState) {
        if state.version + 1 < CACHE_MIN_EVENTS {
            return;
        }
        if let Ok(mut kept) = self.kept.lock() {
            kept.keep(stream.clone(), state.clone(), self.kept_bounds);
        }
    }
}

impl<S: EventStore, I: EventIds> CommandBatch<'_, S, I> {
    /// Commits automatically before a command whose events would take one append beyond
    /// `events` (the store's [`MAX_EVENTS_PER_APPEND`] at most, and by default).
    pub fn with_max_events(mut self, events: usize) -> Self {
        self.max_events = events.clamp(1, MAX_EVENTS_PER_APPEND);
        self
    }

    /// Commands decided and not committed yet (those that decided no event are not counted).
    pub fn pending_commands(&self) -> usize {
        self.pending_commands
    }

    /// Events decided and not committed yet.
    pub fn pending_events(&self) -> usize {
        self.pending_events
    }

    /// Decides one command against the batch's states and keeps its events for the commit.
    /// A refusal (or any error) leaves nothing of the command in the batch. Answers the
    /// subject's version once the batch is committed (`None`: no stream).
    ///
    /// Should the command's events not fit in the append with those pending, the pending ones
    /// are committed first; a failure of that commit is this call's error (see
    /// [`CommandBatch::commit`]).
    pub async fn run<D: Decision>(
        &mut self,
        decision: &D,
        facts: &D::Facts,
        metadata: &CommandMetadata,
    ) -> Result<Option<u64>, CommandError<D::Error>> {
        let subject = decision.subject().map_err(CommandError::Rejected)?;
        let metadata = encode_metadata(metadata)?;
        let (histories, created) = self.load_boundary(decision, &subject).await?;
        let decided = decision
            .state(&histories)
            .map_err(CommandError::Codec)
            .and_then(|state| decision.decide(&state, facts).map_err(CommandError::Rejected));
        self.keep(&histories);
        let mut decided = decided?;
        self.service.seal_personal_data(&mut decided).await?;
        let decided = Decided::group(&decided)?;
        if let Some(outside) = decided.iter().find(|decided| !histories.streams.contains_key(&decided.stream)) {
            return Err(CommandError::Codec(CodecError {
                action: "append",
                event_type: outside.events.first().map_or("", |event| event.0).to_string(),
                reason: format!("stream {} is outside the decision's boundary", outside.stream),
            }));
        }
        let events: usize = decided.iter().map(|decided| decided.events.len()).sum();
        if events == 0 {
            return Ok(self.streams.get(&subject).and_then(|stream| stream.version));
        }
        if events > self.max_events {
            return Err(CommandError::Store(StoreError::InvalidAppend(format!(
                "one command decided {events} events; an append carries at most {}",
                self.max_events
            ))));
        }
        if self.pending_events + events > self.max_events {
            self.commit::<D::Error>().await?;
        }
        if let Some(created) = created.filter(|created| decided.iter().any(|decided| &decided.stream == created)) {
            // Not read: the append expects no stream, and conflicts at commit if it exists.
            self.streams.insert(
                created,
                BatchStream { read_at: None, version: None, base: None, tail: Vec::new(), new_events: Vec::new() },
            );
        }
        for decided in decided {
            let new_events = self.service.new_events(decided.events, &metadata);
            let Some(stream) = self.streams.get_mut(&decided.stream) else { continue };
            if stream.new_events.is_empty() {
                self.written.push(decided.stream.clone());
            }
            for event in new_events {
                let version = stream.version.map_or(0, |version| version + 1);
                stream.tail.push(RecordedEvent {
                    // Not written yet: no position; the epoch, as only upcasters read the time
                    // and these events are of the current schema.
                    position: Position(0),
                    stream: decided.stream.clone(),
                    stream_version: version,
                    event_id: event.event_id,
                    event_type: event.event_type.clone(),
                    schema_version: event.schema_version,
                    data: event.data.clone(),
                    metadata: event.metadata.clone(),
                    recorded_at: chrono::DateTime::UNIX_EPOCH,
                });
                stream.version = Some(version);
                stream.new_events.push(event);
            }
        }
        self.pending_events += events;
        self.pending_commands += 1;
        Ok(self.streams.get(&subject).and_then(|stream| stream.version))
    }

    /// The state of one aggregate as the batch has it (its decided events included) and its
    /// version: what the caller needs to choose its next command.
    pub async fn state<A: Aggregate, E>(
        &mut self,
        stream: &StreamId,
    ) -> Result<(A::State, Option<u64>), CommandError<E>> {
        self.read(std::slice::from_ref(stream)).await.map_err(CommandError::Store)?;
        let mut histories = Histories { record_every_state: true, ..Histories::default() };
        self.show(&mut histories, stream);
        let state = histories.state::<A>(stream);
        self.keep(&histories);
        Ok((state?, self.streams.get(stream).and_then(|stream| stream.version)))
    }

    /// Appends every stream written since the last commit in one multi-stream append, each at
    /// the version it was read at. The batch then goes on from the states it has folded (the
    /// hot streams' are also kept by the service, as `run` keeps them). On a failure nothing
    /// is written and the batch is emptied: its states included events that were not written.
    pub async fn commit<E>(&mut self) -> Result<Committed, CommandError<E>> {
        let mut appends = Vec::with_capacity(self.written.len());
        for name in std::mem::take(&mut self.written) {
            let Some(stream) = self.streams.get_mut(&name) else { continue };
            appends.push(StreamAppend {
                expected: stream.read_at.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact),
                events: std::mem::take(&mut stream.new_events),
                stream: name,
            });
        }
        let committed = Committed {
            commands: std::mem::take(&mut self.pending_commands),
            events: std::mem::take(&mut self.pending_events),
            streams: appends.len(),
            position: None,
        };
        if appends.is_empty() {
            return Ok(committed);
        }
        let appended: Vec<StreamId> = appends.iter().map(|append| append.stream.clone()).collect();
        match self.service.store.append_multi(appends).await {
            Ok(results) => {
                for name in &appended {
                    if let Some(stream) = self.streams.get_mut(name) {
                        stream.read_at = stream.version;
                    }
                }
                // Every state the batch folded is now of written events: keep the hot ones.
                for (name, stream) in &self.streams {
                    if let Some(base) = &stream.base {
                        self.service.keep_committed(name, base);
                    }
                }
                Ok(Committed { position: results.iter().map(|result| result.position).max(), ..committed })
            }
            Err(error) => {
                self.streams.clear();
                Err(match error {
                    StoreError::WrongExpectedVersion { stream, expected, actual } => {
                        CommandError::Conflict { stream, expected, actual }
                    }
                    other => CommandError::Store(other),
                })
            }
        }
    }

    /// Reads the streams the batch does not know yet, in one round trip: each after the state
    /// the service kept of it, if any.
    async fn read(&mut self, streams: &[StreamId]) -> Result<(), StoreError> {
        let mut from = Vec::new();
        for stream in streams {
            if self.streams.contains_key(stream) || from.iter().any(|(known, _)| known == stream) {
                continue;
            }
            let kept = self.service.kept.lock().ok().and_then(|mut kept| kept.get(stream));
            let version = kept.as_ref().map(|kept| kept.version);
            from.push((stream.clone(), version.map_or(0, |version| version + 1)));
            let unread =
                BatchStream { read_at: version, version, base: kept, tail: Vec::new(), new_events: Vec::new() };
            self.streams.insert(stream.clone(), unread);
        }
        if from.is_empty() {
            return Ok(());
        }
        let events = match self.service.store.read_streams_from(&from).await {
            Ok(events) => events,
            Err(error) => {
                // Not read after all: forget them, so that a later command reads them again.
                for (stream, _) in &from {
                    self.streams.remove(stream);
                }
                return Err(error);
            }
        };
        for event in events {
            if let Some(stream) = self.streams.get_mut(&event.stream) {
                stream.read_at = Some(event.stream_version);
                stream.version = Some(event.stream_version);
                stream.tail.push(event);
            }
        }
        Ok(())
    }

    /// Shows a stream the batch knows to a decision: its folded state and the events after it.
    fn show(&self, histories: &mut Histories, name: &StreamId) {
        if let Some(stream) = self.streams.get(name) {
            histories
                .streams
                .insert(name.clone(), StreamHistory { version: stream.version, events: stream.tail.clone() });
            if let Some(base) = &stream.base {
                histories.bases.insert(name.clone(), base.clone());
            }
        }
    }

    /// Folds forward from the states a decision folded: the next command on the stream folds
    /// only the events after them.
    fn keep(&mut self, histories: &Histories) {
        let Ok(mut folded) = histories.folded.lock() else { return };
        for (name, state) in folded.drain(..) {
            let Some(stream) = self.streams.get_mut(&name) else { continue };
            if stream.version == Some(state.version) {
                stream.tail.retain(|event| event.stream_version > state.version);
                stream.base = Some(state);
            }
        }
    }

    /// The decision's subject, then its boundary until it stops growing, as `run` loads them
    /// but from the batch's states. Answers also the subject when the decision creates it and
    /// the batch does not know it: it is not read (as on `run`'s first attempt).
    async fn load_boundary<D: Decision>(
        &mut self,
        decision: &D,
        subject: &StreamId,
    ) -> Result<(Histories, Option<StreamId>), CommandError<D::Error>> {
        let mut histories = Histories { record_every_state: true, ..Histories::default() };
        let mut wanted = vec![subject.clone()];
        let mut created = None;
        if decision.creates_subject() && !self.streams.contains_key(subject) {
            histories.streams.insert(subject.clone(), StreamHistory::default());
            created = Some(subject.clone());
            wanted.clear();
        }
        read_with_subject(decision, &histories, &mut wanted);
        for _ in 0..=BOUNDARY_ROUNDS {
            self.read(&wanted).await.map_err(CommandError::Store)?;
            for stream in &wanted {
                self.show(&mut histories, stream);
            }
            wanted = streams_not_loaded(decision, &histories).map_err(CommandError::Rejected)?;
            if wanted.is_empty() {
                return Ok((histories, created));
            }
        }
        Err(CommandError::Codec(CodecError {
            action: "load",
            event_type: subject.to_string(),
            reason: format!("the decision's boundary kept growing after {BOUNDARY_ROUNDS} rounds"),
        }))
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
    /// writer slip in before the next append (to the first stream appended, or to
    /// `rival_stream`), to provoke a conflict.
    #[derive(Default)]
    struct MemoryStore {
        events: Mutex<Vec<RecordedEvent>>,
        rival_writes: AtomicUsize,
        rival_stream: Mutex<Option<StreamId>>,
        events_read: AtomicUsize,
        /// Calls of `read_stream`, whatever they found.
        stream_reads: AtomicUsize,
        appends: AtomicUsize,
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

        /// The events stored in `stream`, decoded.
        fn added(&self, stream: &StreamId) -> Vec<Added> {
            let events = self.events.lock().expect("lock");
            events.iter().filter(|e| &e.stream == stream).map(|e| e.decode::<Added>().expect("decode")).collect()
        }
    }

    #[async_trait]
    impl EventStore for MemoryStore {
        async fn append_multi(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError> {
            self.appends.fetch_add(1, Ordering::SeqCst);
            let mut events = self.events.lock().expect("lock");
            if self.rival_writes.load(Ordering::SeqCst) > 0 {
                self.rival_writes.fetch_sub(1, Ordering::SeqCst);
                let rival = Added(100).encode(Uuid::from_u128(events.len() as u128 + 1000));
                let target = self.rival_stream.lock().expect("lock").clone();
                Self::push(&mut events, target.as_ref().unwrap_or(&appends[0].stream), rival);
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
            self.stream_reads.fetch_add(1, Ordering::SeqCst);
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
        fn from_stored(
            event_type: &str,
            _schema_version: u32,
            data: &Value,
            _context: crate::codec::StoredContext,
        ) -> Result<Self, CodecError> {
            data["amount"].as_i64().map(Added).ok_or_else(|| CodecError {
                action: "decode",
                event_type: event_type.into(),
                reason: "no amount".into(),
            })
        }
    }

    /// A running total.
    struct Counter;

    impl Aggregate for Counter {
        type State = i64;
        type Event = Added;
        fn apply(state: i64, event: &Added) -> i64 {
            state + event.0
        }
    }

    /// Adds `amount` to a counter, refusing to take it above 1,000; adding 0 decides nothing.
    /// Remembers every total it decided on.
    struct Add {
        stream: StreamId,
        amount: i64,
        seen: Mutex<Vec<i64>>,
    }

    impl Add {
        fn seen(&self) -> Vec<i64> {
            self.seen.lock().expect("lock").clone()
        }
    }

    fn add(amount: i64) -> Add {
        add_to(counter(), amount)
    }

    fn add_to(stream: StreamId, amount: i64) -> Add {
        Add { stream, amount, seen: Mutex::new(Vec::new()) }
    }

    impl StreamDecision for Add {
        type Aggregate = Counter;
        type Facts = ();
        type Error = String;

        fn stream(&self) -> Result<StreamId, String> {
            Ok(self.stream.clone())
        }

        fn decide(&self, total: &i64, _facts: &()) -> Result<Vec<Added>, String> {
            self.seen.lock().expect("lock").push(*total);
            if total + self.amount > 1_000 {
                Err(format!("total {total} + {} would exceed 1000", self.amount))
            } else if self.amount == 0 {
                Ok(vec![])
            } else {
                Ok(vec![Added(self.amount)])
            }
        }
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

    /// Reads a counter stream as a [`Doubler`] and decides nothing.
    struct ReadDoubled(StreamId);

    impl StreamDecision for ReadDoubled {
        type Aggregate = Doubler;
        type Facts = ();
        type Error = String;

        fn stream(&self) -> Result<StreamId, String> {
            Ok(self.0.clone())
        }

        fn decide(&self, _total: &i64, _facts: &()) -> Result<Vec<Added>, String> {
            Ok(vec![])
        }
    }

    /// A decision over two counters: it reads `read` (besides its subject) and writes the
    /// events `write` makes of the two totals.
    struct Pair {
        subject: StreamId,
        read: StreamId,
        write: fn(&Pair, i64, i64) -> Vec<(StreamId, Added)>,
        seen: Mutex<Vec<(i64, i64)>>,
    }

    impl Pair {
        fn new(subject: &StreamId, read: &StreamId, write: fn(&Pair, i64, i64) -> Vec<(StreamId, Added)>) -> Self {
            Pair { subject: subject.clone(), read: read.clone(), write, seen: Mutex::new(Vec::new()) }
        }

        fn seen(&self) -> Vec<(i64, i64)> {
            self.seen.lock().expect("lock").clone()
        }
    }

    impl Decision for Pair {
        type State = (i64, i64);
        type Facts = ();
        type Event = Added;
        type Error = String;

        fn subject(&self) -> Result<StreamId, String> {
            Ok(self.subject.clone())
        }

        fn boundary(&self, _loaded: &Histories) -> Result<Vec<StreamId>, String> {
            Ok(vec![self.read.clone()])
        }

        fn state(&self, loaded: &Histories) -> Result<(i64, i64), CodecError> {
            Ok((loaded.state::<Counter>(&self.subject)?, loaded.state::<Counter>(&self.read)?))
        }

        fn decide(&self, (subject, read): &(i64, i64), _facts: &()) -> Result<Vec<(StreamId, Added)>, String> {
            self.seen.lock().expect("lock").push((*subject, *read));
            Ok((self.write)(self, *subject, *read))
        }
    }

    /// A decision whose boundary is known only once its subject is loaded: the subject's
    /// total names the further counter it adds 1 to (`counter-{total}`).
    struct FollowTotal {
        subject: StreamId,
        boundaries: Mutex<Vec<Vec<StreamId>>>,
    }

    impl FollowTotal {
        fn further(&self, loaded: &Histories) -> Result<Option<StreamId>, CodecError> {
            let total = loaded.state::<Counter>(&self.subject)?;
            Ok((total > 0).then(|| StreamId::parse(format!("counter-{total}")).expect("stream")))
        }
    }

    impl Decision for FollowTotal {
        type State = Option<(StreamId, i64)>;
        type Facts = ();
        type Event = Added;
        type Error = String;

        fn subject(&self) -> Result<StreamId, String> {
            Ok(self.subject.clone())
        }

        fn boundary(&self, loaded: &Histories) -> Result<Vec<StreamId>, String> {
            let boundary: Vec<StreamId> = self.further(loaded).map_err(|e| e.to_string())?.into_iter().collect();
            self.boundaries.lock().expect("lock").push(boundary.clone());
            Ok(boundary)
        }

        fn state(&self, loaded: &Histories) -> Result<Self::State, CodecError> {
            match self.further(loaded)? {
                Some(stream) => {
                    let total = loaded.state::<Counter>(&stream)?;
                    Ok(Some((stream, total)))
                }
                None => Ok(None),
            }
        }

        fn decide(&self, state: &Self::State, _facts: &()) -> Result<Vec<(StreamId, Added)>, String> {
            let (stream, total) = state.clone().ok_or("the subject names no further counter")?;
            Ok(vec![(stream, Added(total + 1))])
        }
    }

    /// A decision whose boundary names a new stream every time it is asked.
    struct Endless;

    impl Decision for Endless {
        type State = ();
        type Facts = ();
        type Event = Added;
        type Error = String;

        fn subject(&self) -> Result<StreamId, String> {
            Ok(counter())
        }

        fn boundary(&self, loaded: &Histories) -> Result<Vec<StreamId>, String> {
            let known = (0..).take_while(|n| loaded.get(&numbered(*n)).is_some()).count();
            Ok(vec![numbered(known)])
        }

        fn state(&self, _loaded: &Histories) -> Result<(), CodecError> {
            Ok(())
        }

        fn decide(&self, _state: &(), _facts: &()) -> Result<Vec<(StreamId, Added)>, String> {
            Ok(vec![(counter(), Added(1))])
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

    fn named(name: &str) -> StreamId {
        StreamId::parse(name).expect("stream")
    }

    fn numbered(n: usize) -> StreamId {
        StreamId::parse(format!("endless-{n}")).expect("stream")
    }

    /// Runs a decision without `If-Match`.
    fn run<D: Decision<Facts = ()>>(
        service: &CommandService<MemoryStore, SequentialIds>,
        decision: &D,
    ) -> Result<Written, CommandError<D::Error>> {
        block_on(service.run(decision, &(), None, &metadata()))
    }

    fn total(service: &CommandService<MemoryStore, SequentialIds>, stream: &StreamId) -> (i64, Option<u64>) {
        block_on(service.state::<Counter>(stream)).expect("state")
    }

    #[test]
    fn a_command_appends_at_the_loaded_version_with_its_metadata() {
        let service = service();
        let first = run(&service, &add(5)).expect("first");
        assert_eq!(first.version, Some(0));
        let second = run(&service, &add(7)).expect("second");
        assert_eq!(second.version, Some(1));
        assert!(second.position > first.position);
        assert_eq!(total(&service, &counter()), (12, Some(1)));
        let stored = service.store().events.lock().expect("lock")[0].metadata.clone();
        assert_eq!(stored["actor"], "alice");
        assert_eq!(stored["role"], "finance_officer");
        assert_eq!(stored["request_id"], "req-1");
    }

    #[test]
    fn a_stream_decision_is_a_decision_on_its_stream_alone() {
        let decision = add(5);
        assert_eq!(Decision::subject(&decision), Ok(counter()));
        assert_eq!(Decision::boundary(&decision, &Histories::default()), Ok(vec![]));
        assert_eq!(Decision::decide(&decision, &3, &()), Ok(vec![(counter(), Added(5))]));
        assert_eq!(StreamDecision::decide(&decision, &3, &()), Ok(vec![Added(5)]));
    }

    #[test]
    fn a_history_replays_as_it_stood_at_a_position() {
        let service = service();
        let mut positions = Vec::new();
        for amount in [5, 7, 11] {
            let written = run(&service, &add(amount)).expect("add");
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
        let refused = run(&service, &add(5_000));
        assert!(matches!(refused, Err(CommandError::Rejected(message)) if message.contains("exceed")));
        assert!(service.store().events.lock().expect("lock").is_empty());
        assert_eq!(service.store().appends.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_command_that_decides_nothing_writes_nothing() {
        let service = service();
        run(&service, &add(5)).expect("first");
        let unchanged = run(&service, &add(0)).expect("no-op");
        assert_eq!(unchanged, Written { version: Some(0), position: None });
        assert_eq!(service.store().appends.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_stale_if_match_is_a_conflict_and_is_not_retried() {
        let service = service();
        run(&service, &add(5)).expect("first");
        run(&service, &add(5)).expect("second");
        let stale = add(5);
        let outcome = block_on(service.run(&stale, &(), Some(0), &metadata()));
        assert_eq!(
            outcome,
            Err(CommandError::Conflict {
                stream: counter(),
                expected: ExpectedVersion::Exact(0),
                actual: ActualVersion::Version(1)
            })
        );
        assert!(stale.seen().is_empty(), "a stale If-Match is refused before deciding");
        let current = block_on(service.run(&add(5), &(), Some(1), &metadata())).expect("current");
        assert_eq!(current.version, Some(2));
        // A rival writing between our read and our append: with If-Match, no second attempt.
        service.store().rival_writes.store(1, Ordering::SeqCst);
        let raced = add(5);
        let outcome = block_on(service.run(&raced, &(), Some(2), &metadata()));
        assert!(matches!(outcome, Err(CommandError::Conflict { .. })), "{outcome:?}");
        assert_eq!(raced.seen(), vec![15], "decided once");
        assert_eq!(total(&service, &counter()), (115, Some(3)));
    }

    #[test]
    fn a_conflict_without_if_match_decides_again_on_the_new_state() {
        let service = service();
        run(&service, &add(850)).expect("first");
        // A rival adds 100 just before our append: we must decide again, on 950, and refuse.
        service.store().rival_writes.store(1, Ordering::SeqCst);
        let decision = add(100);
        let outcome = run(&service, &decision);
        assert_eq!(decision.seen(), vec![850, 950], "decided again after the conflict");
        assert!(matches!(outcome, Err(CommandError::Rejected(_))), "{outcome:?}");
        assert_eq!(total(&service, &counter()).0, 950);
    }

    #[test]
    fn retries_are_bounded() {
        let service = service().with_max_attempts(3);
        service.store().rival_writes.store(10, Ordering::SeqCst);
        let decision = add(1);
        let outcome = run(&service, &decision);
        assert!(matches!(outcome, Err(CommandError::Conflict { .. })), "{outcome:?}");
        assert_eq!(service.store().rival_writes.load(Ordering::SeqCst), 7, "three attempts, no more");
        assert_eq!(decision.seen().len(), 3);
    }

    /// A wait that only records the attempts it follows.
    #[derive(Default)]
    struct RecordedBackoff(Mutex<Vec<usize>>);

    impl RecordedBackoff {
        fn attempts(&self) -> Vec<usize> {
            self.0.lock().expect("lock").clone()
        }
    }

    #[async_trait]
    impl Backoff for RecordedBackoff {
        async fn pause(&self, attempt: usize) {
            self.0.lock().expect("lock").push(attempt);
        }
    }

    fn service_with_backoff() -> (CommandService<MemoryStore, SequentialIds>, Arc<RecordedBackoff>) {
        let backoff = Arc::new(RecordedBackoff::default());
        (service().with_backoff(backoff.clone()), backoff)
    }

    /// Adds one more than the subject's total to it, whatever the total: never refused.
    fn outbid(a: &StreamId, b: &StreamId) -> Pair {
        Pair::new(a, b, |pair, subject, _| vec![(pair.subject.clone(), Added(subject + 1))])
    }

    #[test]
    fn by_default_a_decision_outlasts_many_rival_writers_and_decides_on_the_final_state() {
        let service = service();
        let (a, b) = (named("counter-a"), named("counter-b"));
        // A rival adds 100 to the subject before each of our first 20 appends.
        service.store().rival_writes.store(20, Ordering::SeqCst);
        let decision = outbid(&a, &b);
        let written = run(&service, &decision).expect("decided at the 21st attempt");
        let totals: Vec<i64> = decision.seen().into_iter().map(|(subject, _)| subject).collect();
        assert_eq!(totals, (0..=20).map(|rivals| rivals * 100).collect::<Vec<_>>(), "each attempt on fresh state");
        assert_eq!(service.store().rival_writes.load(Ordering::SeqCst), 0, "every rival wrote");
        assert_eq!(written.version, Some(20));
        assert_eq!(total(&service, &a), (2_000 + 2_001, Some(20)), "decided on the state the rivals left");
        assert_eq!(service.store().added(&a).last(), Some(&Added(2_001)));
    }

    #[test]
    fn by_default_a_decision_is_attempted_64_times_before_the_conflict_is_reported() {
        let service = service();
        service.store().rival_writes.store(100, Ordering::SeqCst);
        let decision = outbid(&named("counter-a"), &named("counter-b"));
        let outcome = run(&service, &decision);
        assert!(matches!(outcome, Err(CommandError::Conflict { .. })), "{outcome:?}");
        assert_eq!(decision.seen().len(), 64);
        assert_eq!(service.store().rival_writes.load(Ordering::SeqCst), 36, "64 appends tried, no more");
        assert!(service.store().added(&named("counter-a")).iter().all(|added| *added == Added(100)), "only rivals");
    }

    #[test]
    fn the_backoff_waits_once_before_each_retry_numbered_by_the_attempt_lost() {
        let (service, backoff) = service_with_backoff();
        // No conflict, no wait.
        run(&service, &add(1)).expect("first");
        assert_eq!(backoff.attempts(), Vec::<usize>::new());
        // Three rivals: three waits, after attempts 1, 2 and 3; the fourth attempt wins.
        service.store().rival_writes.store(3, Ordering::SeqCst);
        let decision = add(1);
        run(&service, &decision).expect("decided again");
        assert_eq!(decision.seen(), vec![1, 101, 201, 301]);
        assert_eq!(backoff.attempts(), vec![1, 2, 3]);
    }

    #[test]
    fn no_wait_follows_the_last_attempt_a_refusal_or_a_stale_if_match() {
        let backoff = Arc::new(RecordedBackoff::default());
        let service = service().with_max_attempts(3).with_backoff(backoff.clone());
        service.store().rival_writes.store(10, Ordering::SeqCst);
        let outcome = run(&service, &add(1));
        assert!(matches!(outcome, Err(CommandError::Conflict { .. })), "{outcome:?}");
        assert_eq!(backoff.attempts(), vec![1, 2], "no wait after the third and last attempt");

        // With If-Match, a conflict is the caller's: no retry and no wait.
        let (service, backoff) = service_with_backoff();
        run(&service, &add(5)).expect("first");
        service.store().rival_writes.store(1, Ordering::SeqCst);
        let raced = add(5);
        let outcome = block_on(service.run(&raced, &(), Some(0), &metadata()));
        assert!(matches!(outcome, Err(CommandError::Conflict { .. })), "{outcome:?}");
        assert_eq!(raced.seen(), vec![5], "decided once");
        assert_eq!(backoff.attempts(), Vec::<usize>::new());

        // A conflict, then a refusal on the new state: one wait, for the one retry.
        let (service, backoff) = service_with_backoff();
        run(&service, &add(850)).expect("first");
        service.store().rival_writes.store(1, Ordering::SeqCst);
        let refused = run(&service, &add(100));
        assert!(matches!(refused, Err(CommandError::Rejected(_))), "{refused:?}");
        assert_eq!(backoff.attempts(), vec![1]);
    }

    #[test]
    fn a_multi_stream_decision_appends_to_every_stream_it_names() {
        let service = service();
        let (a, b) = (named("counter-a"), named("counter-b"));
        run(&service, &add_to(b.clone(), 4)).expect("b exists");
        let appends_before = service.store().appends.load(Ordering::SeqCst);
        let decision = Pair::new(&a, &b, |pair, subject, _| {
            vec![
                (pair.subject.clone(), Added(1)),
                (pair.read.clone(), Added(subject + 2)),
                (pair.read.clone(), Added(3)),
            ]
        });
        let written = run(&service, &decision).expect("multi");
        assert_eq!(written.version, Some(0), "answers the subject's version");
        assert_eq!(decision.seen(), vec![(0, 4)], "decided on both streams");
        assert_eq!(service.store().appends.load(Ordering::SeqCst), appends_before + 1, "one atomic append");
        assert_eq!(total(&service, &a), (1, Some(0)));
        assert_eq!(total(&service, &b), (9, Some(2)));
        assert_eq!(service.store().added(&b), vec![Added(4), Added(2), Added(3)], "in the order decided");
        assert_eq!(
            written.position,
            Some(Position(4)),
            "the position of the last event written (the read stream's, after the subject's)"
        );
    }

    #[test]
    fn a_multi_stream_conflict_on_any_written_stream_decides_again() {
        let service = service();
        let (a, b) = (named("counter-a"), named("counter-b"));
        run(&service, &add_to(b.clone(), 4)).expect("b exists");
        // The rival writes to b, which the decision writes: the append at b's version fails.
        *service.store().rival_stream.lock().expect("lock") = Some(b.clone());
        service.store().rival_writes.store(1, Ordering::SeqCst);
        let decision =
            Pair::new(&a, &b, |pair, _, read| vec![(pair.subject.clone(), Added(read)), (pair.read.clone(), Added(1))]);
        run(&service, &decision).expect("decided again");
        assert_eq!(decision.seen(), vec![(0, 4), (0, 104)]);
        assert_eq!(service.store().added(&a), vec![Added(104)], "nothing of the first attempt was written");
        assert_eq!(total(&service, &b).0, 105);
    }

    #[test]
    fn a_stream_only_read_is_not_version_checked() {
        let service = service();
        let (a, b) = (named("counter-a"), named("counter-b"));
        run(&service, &add_to(b.clone(), 4)).expect("b exists");
        // A rival writes to b, which the decision only reads: no conflict, no second decision.
        *service.store().rival_stream.lock().expect("lock") = Some(b.clone());
        service.store().rival_writes.store(1, Ordering::SeqCst);
        let decision = Pair::new(&a, &b, |pair, _, read| vec![(pair.subject.clone(), Added(read))]);
        let written = run(&service, &decision).expect("written");
        assert_eq!(decision.seen(), vec![(0, 4)], "decided once");
        assert_eq!(service.store().rival_writes.load(Ordering::SeqCst), 0, "the rival did write");
        assert_eq!(written.version, Some(0));
        assert_eq!(service.store().added(&a), vec![Added(4)]);
        assert_eq!(total(&service, &b), (104, Some(1)));
    }

    #[test]
    fn a_decision_that_only_reads_its_subject_answers_its_version() {
        let service = service();
        let (a, b) = (named("counter-a"), named("counter-b"));
        run(&service, &add_to(a.clone(), 4)).expect("a");
        run(&service, &add_to(a.clone(), 4)).expect("a");
        let decision = Pair::new(&a, &b, |pair, subject, _| vec![(pair.read.clone(), Added(subject))]);
        let written = run(&service, &decision).expect("written");
        assert_eq!(written.version, Some(1), "the subject's version, unchanged");
        let b_position = service.store().events.lock().expect("lock").last().map(|e| e.position);
        assert_eq!(written.position, b_position, "the position written, for read-your-writes");
        assert_eq!(total(&service, &b), (8, Some(0)));
    }

    #[test]
    fn a_boundary_that_grows_once_the_subject_is_loaded_reads_and_writes_the_further_stream() {
        let service = service();
        run(&service, &add_to(named("counter-7"), 10)).expect("the further counter");
        run(&service, &add_to(named("counter-a"), 7)).expect("the subject names counter-7");
        let decision = FollowTotal { subject: named("counter-a"), boundaries: Mutex::new(Vec::new()) };
        let written = run(&service, &decision).expect("written");
        assert_eq!(written.version, Some(0), "the subject, only read");
        let last = service.store().events.lock().expect("lock").last().map(|e| e.position);
        assert_eq!(written.position, last);
        assert_eq!(
            *decision.boundaries.lock().expect("lock"),
            vec![vec![], vec![named("counter-7")], vec![named("counter-7")]],
            "asked first before anything is loaded (for the streams it reads whatever the subject holds), \
             then again with the further stream loaded, until it stopped growing"
        );
        assert_eq!(total(&service, &named("counter-7")), (21, Some(1)), "decided on the further stream's state");
        // Its write is version-checked at the version read.
        *service.store().rival_stream.lock().expect("lock") = Some(named("counter-7"));
        service.store().rival_writes.store(1, Ordering::SeqCst);
        run(&service, &decision).expect("decided again");
        assert_eq!(service.store().added(&named("counter-7")), vec![Added(10), Added(11), Added(100), Added(122)]);
    }

    #[test]
    fn a_boundary_that_keeps_growing_is_refused() {
        let service = service();
        let outcome = run(&service, &Endless);
        assert!(
            matches!(&outcome, Err(CommandError::Codec(error)) if error.reason.contains("kept growing")),
            "{outcome:?}"
        );
        assert!(service.store().events.lock().expect("lock").is_empty());
    }

    #[test]
    fn a_write_outside_the_boundary_is_refused_and_writes_nothing() {
        let service = service();
        let (a, b, c) = (named("counter-a"), named("counter-b"), named("counter-c"));
        let decision =
            Pair::new(&a, &b, |pair, _, _| vec![(pair.subject.clone(), Added(1)), (named("counter-c"), Added(1))]);
        let outcome = run(&service, &decision);
        assert!(
            matches!(&outcome, Err(CommandError::Codec(error)) if error.reason.contains("outside the decision's boundary")),
            "{outcome:?}"
        );
        assert!(service.store().events.lock().expect("lock").is_empty());
        assert_eq!(service.store().appends.load(Ordering::SeqCst), 0);
        assert_eq!(total(&service, &c), (0, None));
    }

    fn hot_counter(service: &CommandService<MemoryStore, SequentialIds>, events: usize) {
        for _ in 0..events {
            run(service, &add(1)).expect("add");
        }
    }

    #[test]
    fn a_hot_stream_is_read_only_after_its_kept_state() {
        let service = service();
        hot_counter(&service, 40);
        service.store().events_read.store(0, Ordering::SeqCst);
        let decision = add(1);
        run(&service, &decision).expect("add");
        assert_eq!(decision.seen(), vec![40], "decided on the whole history");
        assert_eq!(service.store().events_read.load(Ordering::SeqCst), 1, "read only the event after the kept state");
        // A cold stream is read whole every time.
        let cold = named("counter-cold");
        run(&service, &add_to(cold.clone(), 1)).expect("cold");
        service.store().events_read.store(0, Ordering::SeqCst);
        run(&service, &add_to(cold, 1)).expect("cold");
        assert_eq!(service.store().events_read.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_kept_state_behind_another_writer_catches_up_before_deciding_again() {
        let service = service();
        hot_counter(&service, 40);
        // A rival adds 100 just before our append: the conflict loads the tail after the kept
        // state, rival's event included, and decides again on 140.
        service.store().rival_writes.store(1, Ordering::SeqCst);
        let decision = add(1);
        run(&service, &decision).expect("add");
        assert_eq!(decision.seen(), vec![40, 140]);
        assert_eq!(total(&service, &counter()).0, 141);
        let next = run(&service, &add(1)).expect("add");
        assert_eq!(next.version, Some(42));
        assert_eq!(total(&service, &counter()).0, 142);
    }

    #[test]
    fn a_kept_state_is_never_served_to_another_aggregate() {
        let service = service();
        hot_counter(&service, 40);
        let other = run(&service, &ReadDoubled(counter()));
        assert!(matches!(other, Err(CommandError::Codec(_))), "{other:?}");
    }

    /// Creates a counter stream: refused when the stream already has events.
    struct CreateCounter(StreamId);

    impl Decision for CreateCounter {
        type State = i64;
        type Facts = ();
        type Event = Added;
        type Error = String;

        fn subject(&self) -> Result<StreamId, String> {
            Ok(self.0.clone())
        }
        fn boundary(&self, _loaded: &Histories) -> Result<Vec<StreamId>, String> {
            Ok(Vec::new())
        }
        fn state(&self, loaded: &Histories) -> Result<i64, CodecError> {
            Ok(loaded.get(&self.0).map_or(0, |history| history.events.len() as i64))
        }
        fn creates_subject(&self) -> bool {
            true
        }
        fn decide(&self, existing: &i64, _facts: &()) -> Result<Vec<(StreamId, Added)>, String> {
            if *existing > 0 {
                return Err(format!("{} exists", self.0));
            }
            Ok(vec![(self.0.clone(), Added(1))])
        }
    }

    #[test]
    fn a_stream_a_command_creates_is_not_read_first() {
        let service = service();
        let fresh = StreamId::parse("counter-fresh").expect("stream");
        let written = run(&service, &CreateCounter(fresh.clone())).expect("created");
        assert_eq!(written.version, Some(0));
        assert_eq!(service.store().stream_reads.load(Ordering::SeqCst), 0, "the new stream was not read");
        // The same id again: the append conflicts, the next attempt reads the stream and refuses.
        let again = run(&service, &CreateCounter(fresh.clone()));
        assert!(matches!(&again, Err(CommandError::Rejected(message)) if message.contains("exists")), "{again:?}");
        assert_eq!(block_on(service.state::<Counter>(&fresh)).expect("state"), (1, Some(0)), "written once");
    }

    #[test]
    fn the_least_recently_used_kept_state_is_forgotten_first() {
        let service = service().with_kept_states(2);
        let stream = |name: &str| StreamId::parse(format!("counter-{name}")).expect("stream");
        for name in ["a", "b"] {
            for _ in 0..40 {
                run(&service, &add_to(stream(name), 1)).expect("add");
            }
        }
        // `a` is used again, then a third hot stream takes the place of the least recent, `b`.
        run(&service, &add_to(stream("a"), 1)).expect("a");
        for _ in 0..40 {
            run(&service, &add_to(stream("c"), 1)).expect("add");
        }
        let reads = |name: &str| {
            service.store().events_read.store(0, Ordering::SeqCst);
            run(&service, &add_to(stream(name), 1)).expect("add");
            service.store().events_read.load(Ordering::SeqCst)
        };
        assert_eq!(reads("a"), 1, "a was kept: only the event after its state is read");
        assert_eq!(reads("c"), 1, "c was kept");
        assert_eq!(reads("b"), 40, "b was forgotten and read whole");
    }

    #[test]
    fn kept_states_are_bounded_in_bytes_and_a_state_above_the_bound_is_not_kept() {
        // A counter's state weighs 8 bytes: room for two.
        let service = service().with_kept_bytes(20);
        let stream = |name: &str| StreamId::parse(format!("counter-{name}")).expect("stream");
        for name in ["a", "b", "c"] {
            for _ in 0..40 {
                run(&service, &add_to(stream(name), 1)).expect("add");
            }
        }
        let reads = |service: &CommandService<MemoryStore, SequentialIds>, name: &str| {
            service.store().events_read.store(0, Ordering::SeqCst);
            run(service, &add_to(stream(name), 1)).expect("add");
            service.store().events_read.load(Ordering::SeqCst)
        };
        assert_eq!(reads(&service, "c"), 1, "c was kept");
        assert_eq!(reads(&service, "b"), 1, "b was kept");
        assert_eq!(reads(&service, "a"), 40, "a made room for c and was read whole");

        let tiny = self::service().with_kept_bytes(4);
        for _ in 0..40 {
            run(&tiny, &add_to(stream("a"), 1)).expect("add");
        }
        assert_eq!(reads(&tiny, "a"), 40, "a state larger than the bound is never kept: read whole");
    }

    /// Decides a command in a batch, as request `request`.
    fn batch_run<D: Decision<Facts = ()>>(
        batch: &mut CommandBatch<'_, MemoryStore, SequentialIds>,
        decision: &D,
        request: &str,
    ) -> Result<Option<u64>, CommandError<D::Error>> {
        let metadata = CommandMetadata { request_id: request.into(), ..metadata() };
        block_on(batch.run(decision, &(), &metadata))
    }

    /// The request ids and event ids stored in `stream`, in order.
    fn stored(service: &CommandService<MemoryStore, SequentialIds>, stream: &StreamId) -> Vec<(String, u128)> {
        let events = service.store().events.lock().expect("lock");
        events
            .iter()
            .filter(|event| &event.stream == stream)
            .map(|event| {
                (event.metadata["request_id"].as_str().unwrap_or_default().to_string(), event.event_id.as_u128())
            })
            .collect()
    }

    #[test]
    fn a_batch_decides_each_command_on_the_events_decided_before_it_in_the_batch() {
        // Given a counter at 100
        let service = service();
        run(&service, &add(100)).expect("before the batch");
        // When a batch adds 300 and 400, then 300 more
        let mut batch = service.batch();
        let (first, second, third) = (add(300), add(400), add(300));
        assert_eq!(batch_run(&mut batch, &first, "req-a"), Ok(Some(1)), "the subject's version once committed");
        assert_eq!(batch_run(&mut batch, &second, "req-b"), Ok(Some(2)));
        let refused = batch_run(&mut batch, &third, "req-c");
        // Then each decided on the total the ones before it left, and the third is refused on 800
        assert!(matches!(&refused, Err(CommandError::Rejected(message)) if message.contains("800")), "{refused:?}");
        assert_eq!((first.seen(), second.seen(), third.seen()), (vec![100], vec![400], vec![800]));
        // And a decision over two streams sees the other stream's events decided in the batch
        let a = named("counter-a");
        let pair = Pair::new(&a, &counter(), |pair, _, read| vec![(pair.subject.clone(), Added(read))]);
        batch_run(&mut batch, &pair, "req-d").expect("pair");
        assert_eq!(pair.seen(), vec![(0, 800)]);
        assert_eq!(block_on(batch.state::<Counter, String>(&a)), Ok((800, Some(0))), "the batch's state");
        assert_eq!(service.store().events.lock().expect("lock").len(), 1, "nothing written before the commit");
        block_on(batch.commit::<String>()).expect("commit");
        assert_eq!(total(&service, &counter()), (800, Some(2)));
        assert_eq!(total(&service, &a), (800, Some(0)));
    }

    #[test]
    fn a_batch_commits_every_stream_it_wrote_in_one_append_with_each_commands_ids_and_metadata() {
        // Given b with one event (id 1)
        let service = service();
        let (a, b) = (named("counter-a"), named("counter-b"));
        run(&service, &add_to(b.clone(), 4)).expect("b exists");
        let appends_before = service.store().appends.load(Ordering::SeqCst);
        // When three commands write a, b, then both, and the batch is committed
        let mut batch = service.batch();
        batch_run(&mut batch, &add_to(a.clone(), 1), "req-1").expect("a");
        batch_run(&mut batch, &add_to(b.clone(), 2), "req-2").expect("b");
        let both =
            Pair::new(&a, &b, |pair, _, _| vec![(pair.subject.clone(), Added(3)), (pair.read.clone(), Added(5))]);
        batch_run(&mut batch, &both, "req-3").expect("both");
        assert_eq!((batch.pending_commands(), batch.pending_events()), (3, 4));
        assert_eq!(service.store().appends.load(Ordering::SeqCst), appends_before, "nothing appended yet");
        let committed = block_on(batch.commit::<String>()).expect("commit");
        // Then one append wrote them all, each stream in the order decided, each event with its
        // command's metadata and the id it was given when decided
        assert_eq!(committed, Committed { commands: 3, events: 4, streams: 2, position: Some(Position(5)) });
        assert_eq!(service.store().appends.load(Ordering::SeqCst), appends_before + 1, "one append");
        assert_eq!(service.store().added(&a), vec![Added(1), Added(3)]);
        assert_eq!(service.store().added(&b), vec![Added(4), Added(2), Added(5)]);
        let request = |id: &str, event: u128| (id.to_string(), event);
        assert_eq!(stored(&service, &a), vec![request("req-1", 2), request("req-3", 4)]);
        assert_eq!(stored(&service, &b), vec![request("req-1", 1), request("req-2", 3), request("req-3", 5)]);
        // And a commit with nothing pending appends nothing
        assert_eq!(block_on(batch.commit::<String>()), Ok(Committed::default()));
        assert_eq!(service.store().appends.load(Ordering::SeqCst), appends_before + 1);
    }

    #[test]
    fn a_refusal_in_a_batch_leaves_nothing_of_that_command_in_the_batch() {
        // Given a batch that added 300
        let service = service();
        let (a, c) = (named("counter-a"), named("counter-c"));
        let mut batch = service.batch();
        batch_run(&mut batch, &add(300), "req-1").expect("first");
        // When a command is refused by its decision, one writes outside its boundary, and a
        // created stream is refused the second time
        let refused = batch_run(&mut batch, &add(5_000), "req-2");
        assert!(matches!(refused, Err(CommandError::Rejected(_))), "{refused:?}");
        let outside = Pair::new(&a, &counter(), |pair, _, _| {
            vec![(pair.subject.clone(), Added(1)), (named("counter-c"), Added(1))]
        });
        let outcome = batch_run(&mut batch, &outside, "req-3");
        assert!(
            matches!(&outcome, Err(CommandError::Codec(error)) if error.reason.contains("outside the decision's boundary")),
            "{outcome:?}"
        );
        // Then the batch is as the first command left it
        assert_eq!((batch.pending_commands(), batch.pending_events()), (1, 1));
        let next = add(300);
        batch_run(&mut batch, &next, "req-4").expect("next");
        assert_eq!(next.seen(), vec![300]);
        assert_eq!(block_on(batch.state::<Counter, String>(&a)), Ok((0, None)));
        block_on(batch.commit::<String>()).expect("commit");
        assert_eq!(total(&service, &counter()), (600, Some(1)));
        assert_eq!((total(&service, &a), total(&service, &c)), ((0, None), (0, None)));
    }

    #[test]
    fn a_conflict_at_commit_writes_nothing_of_the_batch_and_is_not_retried() {
        // Given a batch that wrote a and b, b read at version 0
        let service = service();
        let (a, b) = (named("counter-a"), named("counter-b"));
        run(&service, &add_to(b.clone(), 4)).expect("b exists");
        let mut batch = service.batch();
        let (to_a, to_b) = (add_to(a.clone(), 1), add_to(b.clone(), 2));
        batch_run(&mut batch, &to_a, "req-1").expect("a");
        batch_run(&mut batch, &to_b, "req-2").expect("b");
        let appends_before = service.store().appends.load(Ordering::SeqCst);
        // When a rival writes to b just before the commit
        *service.store().rival_stream.lock().expect("lock") = Some(b.clone());
        service.store().rival_writes.store(1, Ordering::SeqCst);
        let outcome = block_on(batch.commit::<String>());
        // Then the caller sees the conflict, nothing of the batch is written, nothing decided again
        assert!(matches!(&outcome, Err(CommandError::Conflict { stream, .. }) if *stream == b), "{outcome:?}");
        assert_eq!(service.store().appends.load(Ordering::SeqCst), appends_before + 1, "no second append");
        assert_eq!(service.store().added(&a), vec![]);
        assert_eq!(service.store().added(&b), vec![Added(4), Added(100)], "the rival's event only");
        assert_eq!((to_a.seen(), to_b.seen()), (vec![0], vec![4]));
        // And the batch is emptied: its next command reads b as the rival left it
        assert_eq!((batch.pending_commands(), batch.pending_events()), (0, 0));
        let again = add_to(b.clone(), 2);
        batch_run(&mut batch, &again, "req-3").expect("again");
        assert_eq!(again.seen(), vec![104]);
        block_on(batch.commit::<String>()).expect("commit");
        assert_eq!(service.store().added(&b), vec![Added(4), Added(100), Added(2)]);
    }

    #[test]
    fn a_committed_batch_leaves_its_hot_states_kept_for_the_next_batch_and_run() {
        // Given a batch of 40 commands on one counter, committed
        let service = service();
        let mut batch = service.batch();
        for n in 0..40 {
            batch_run(&mut batch, &add(1), &format!("req-{n}")).expect("add");
        }
        assert_eq!(service.store().events_read.load(Ordering::SeqCst), 0, "the counter was empty");
        assert_eq!(service.store().stream_reads.load(Ordering::SeqCst), 1, "read once");
        block_on(batch.commit::<String>()).expect("commit");
        // When a new batch and then `run` add to it
        service.store().events_read.store(0, Ordering::SeqCst);
        let mut next = service.batch();
        let decision = add(1);
        batch_run(&mut next, &decision, "req-40").expect("add");
        block_on(next.commit::<String>()).expect("commit");
        // Then each read only the event after the state kept
        assert_eq!(decision.seen(), vec![40]);
        assert_eq!(service.store().events_read.load(Ordering::SeqCst), 1, "only the last event of the first batch");
        service.store().events_read.store(0, Ordering::SeqCst);
        run(&service, &add(1)).expect("run");
        assert_eq!(service.store().events_read.load(Ordering::SeqCst), 1);
        assert_eq!(total(&service, &counter()), (42, Some(41)));
    }

    #[test]
    fn a_batch_commits_by_itself_before_a_command_would_take_its_append_beyond_the_limit() {
        // Given a batch of at most 3 events per append holding 3
        let service = service();
        let mut batch = service.batch().with_max_events(3);
        for n in 0..3 {
            batch_run(&mut batch, &add(1), &format!("req-{n}")).expect("add");
        }
        assert_eq!(service.store().appends.load(Ordering::SeqCst), 0);
        // When a fourth command decides one more
        batch_run(&mut batch, &add(1), "req-3").expect("add");
        // Then the three were committed first, and the fourth waits for the next commit
        assert_eq!(service.store().appends.load(Ordering::SeqCst), 1);
        assert_eq!((batch.pending_commands(), batch.pending_events()), (1, 1));
        assert_eq!(total(&service, &counter()), (3, Some(2)));
        // And a command deciding more than one append may carry is refused, the batch unchanged
        let a = named("counter-a");
        let too_many = Pair::new(&a, &counter(), |pair, _, _| vec![(pair.subject.clone(), Added(1)); 4]);
        let outcome = batch_run(&mut batch, &too_many, "req-4");
        assert!(matches!(outcome, Err(CommandError::Store(StoreError::InvalidAppend(_)))), "{outcome:?}");
        assert_eq!(batch.pending_events(), 1);
        block_on(batch.commit::<String>()).expect("commit");
        assert_eq!(total(&service, &counter()), (4, Some(3)));
        assert_eq!(service.store().appends.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_stream_a_batch_creates_is_not_read_and_the_commands_after_see_it() {
        // Given a fresh stream created in a batch
        let service = service();
        let fresh = named("counter-fresh");
        let mut batch = service.batch();
        assert_eq!(batch_run(&mut batch, &CreateCounter(fresh.clone()), "req-1"), Ok(Some(0)));
        assert_eq!(service.store().stream_reads.load(Ordering::SeqCst), 0, "not read");
        // When it is created again in the same batch, then it is refused on the batch's state
        let again = batch_run(&mut batch, &CreateCounter(fresh.clone()), "req-2");
        assert!(matches!(&again, Err(CommandError::Rejected(message)) if message.contains("exists")), "{again:?}");
        block_on(batch.commit::<String>()).expect("commit");
        // When another batch creates it without reading it, then its commit conflicts
        let mut late = service.batch();
        batch_run(&mut late, &CreateCounter(fresh.clone()), "req-3").expect("decided unread");
        let outcome = block_on(late.commit::<String>());
        assert!(matches!(outcome, Err(CommandError::Conflict { .. })), "{outcome:?}");
        assert_eq!(total(&service, &fresh), (1, Some(0)), "written once");
    }
}
