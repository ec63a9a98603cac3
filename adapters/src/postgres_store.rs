//! The PostgreSQL event store.
//!
//! Appends run as one call of the `append_stream` (or, for several streams, `append_streams`)
//! function (one round trip, one implicit
//! transaction): it locks the stream heads, checks idempotency and expected versions,
//! numbers the events and chains their hashes. Readers of `$all` stop at the visibility
//! horizon described in the first migration, so they never skip an event that commits later.
//! A background task coalesces post-commit notifications into `NOTIFY` on [`EVENTS_CHANNEL`].

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use aisc_domain::event_store::{
    ActualVersion, AllSlice, AppendResult, BrokenEvent, EventStore, ExpectedVersion, MAX_EVENTS_PER_APPEND, NewEvent,
    Position, PositionRange, ReadDirection, RecordedEvent, StoreError, StreamAppend, StreamId, Subscription, Tampering,
    VerifyReport,
};
use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use futures_util::TryStreamExt;
use sqlx::postgres::{PgDatabaseError, PgListener, PgRow};
use sqlx::{PgPool, Row};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::event_hash::{
    CHAIN_START, EventContent, LogDigest, LogDigestValue, chain_hash, check_storable, content_digest,
};

/// The channel on which appends are announced.
pub const EVENTS_CHANNEL: &str = "aisc_events";

/// How often an append is retried when a stream's head was written by a transaction with a
/// higher id than its own (rare: the two raced for the stream's lock).
const ORDER_RETRIES: usize = 10;

/// How long the notifier gathers appends before one `NOTIFY`: bounds notifications (each a
/// small transaction) to a few hundred a second under load, at a latency cost of this much.
const NOTIFY_COALESCE: Duration = Duration::from_millis(2);

/// Page size of internal scans (verification, subscriptions).
const SCAN_PAGE: usize = 2_000;

/// The columns every event read selects, for [`recorded_event`].
macro_rules! event_columns {
    () => {
        "global_position, stream_id, stream_version, event_id, event_type, schema_version, data, metadata, recorded_at"
    };
}

/// The PostgreSQL event store. Cheap to clone: clones share the pool and the notifier.
#[derive(Clone)]
pub struct PostgresEventStore {
    pool: PgPool,
    wake_notifier: mpsc::Sender<()>,
    subscription_poll: Duration,
    held_back_wait: Duration,
}

impl PostgresEventStore {
    /// A store over `pool`; must be called within a Tokio runtime (it starts the notifier).
    pub fn new(pool: PgPool) -> Self {
        let (wake_notifier, wakes) = mpsc::channel(1);
        tokio::spawn(run_notifier(pool.clone(), wakes));
        Self {
            pool,
            wake_notifier,
            subscription_poll: Duration::from_millis(500),
            held_back_wait: Duration::from_secs(2),
        }
    }

    /// How long a caught-up subscription waits before reading again without a notification.
    pub fn with_subscription_poll(mut self, interval: Duration) -> Self {
        self.subscription_poll = interval;
        self
    }

    /// How long `read_all` waits for events held back behind running transactions.
    pub fn with_held_back_wait(mut self, wait: Duration) -> Self {
        self.held_back_wait = wait;
        self
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn append_once(&self, call: &AppendCall) -> Result<Vec<AppendResult>, AppendAttempt> {
        // One stream (by far the most common) goes straight to `append_stream`.
        let query = if call.streams.len() == 1 {
            sqlx::query(
                "SELECT first_version, last_version, last_position \
                   FROM append_stream($1, $2, $3, 0, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&call.streams[0])
            .bind(call.expected_kinds[0])
            .bind(call.expected_versions[0])
            .bind(&call.event_ids)
            .bind(&call.event_types)
            .bind(&call.schema_versions)
            .bind(&call.data)
            .bind(&call.metadata)
            .bind(call.recorded_at)
            .bind(&call.digests)
        } else {
            sqlx::query(
                "SELECT first_version, last_version, last_position \
                   FROM append_streams($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(&call.streams)
            .bind(&call.expected_kinds)
            .bind(&call.expected_versions)
            .bind(&call.counts)
            .bind(&call.event_ids)
            .bind(&call.event_types)
            .bind(&call.schema_versions)
            .bind(&call.data)
            .bind(&call.metadata)
            .bind(call.recorded_at)
            .bind(&call.digests)
        };
        let rows = if call.copying_generation {
            // The copy of a log into a new generation announces itself to the idempotency
            // fence, which lets claimed event ids through for the log's owner only (migration
            // 20261204000006_generation_copy.sql); the setting ends with the transaction.
            async {
                let mut transaction = self.pool.begin().await?;
                sqlx::query("SELECT set_config('aisc.copying_log_generation', 'on', true)")
                    .execute(&mut *transaction)
                    .await?;
                let rows = query.fetch_all(&mut *transaction).await?;
                transaction.commit().await?;
                Ok::<_, sqlx::Error>(rows)
            }
            .await
        } else {
            query.fetch_all(&self.pool).await
        }
        .map_err(|error| classify_append_error(error, call))?;
        rows.iter()
            .map(|row| {
                Ok(AppendResult {
                    first_version: to_u64(row.try_get("first_version")?),
                    last_version: to_u64(row.try_get("last_version")?),
                    position: Position(to_u64(row.try_get("last_position")?)),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(|error| AppendAttempt::Failed(store_error(error)))
    }
}

/// Sends one `NOTIFY` per burst of appends: wake-ups that arrive while one is being sent are
/// folded into the next. Asynchronous commit: a lost notification only delays readers until
/// their next poll, and must not cost a disk flush.
async fn run_notifier(pool: PgPool, mut wakes: mpsc::Receiver<()>) {
    while wakes.recv().await.is_some() {
        // Gather the appends of the next moment into the same notification.
        tokio::time::sleep(NOTIFY_COALESCE).await;
        let _ = wakes.try_recv();
        let sent = sqlx::query("SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, '')")
            .bind(EVENTS_CHANNEL)
            .execute(&pool)
            .await;
        if let Err(error) = sent {
            tracing::warn!(error = %error, "could not notify subscribers; they will poll");
        }
    }
}

/// The arguments of `append_streams`, in the column-per-array form it takes.
struct AppendCall {
    streams: Vec<String>,
    expected_kinds: Vec<i16>,
    expected_versions: Vec<i64>,
    counts: Vec<i32>,
    event_ids: Vec<Uuid>,
    event_types: Vec<String>,
    schema_versions: Vec<i32>,
    data: Vec<serde_json::Value>,
    metadata: Vec<serde_json::Value>,
    recorded_at: DateTime<Utc>,
    digests: Vec<Vec<u8>>,
    /// The copy of a log into a new generation (see [`PostgresEventStore::append_as_recorded_at`]).
    copying_generation: bool,
    /// Expected versions by stream, to report conflicts in the caller's terms.
    expected_by_stream: HashMap<String, ExpectedVersion>,
}

impl AppendCall {
    fn build(appends: Vec<(usize, StreamAppend)>) -> Result<Self, StoreError> {
        // Microseconds: what timestamptz keeps, so the digest is recomputable from the row.
        Self::build_recorded_at(appends, Utc::now().trunc_subsecs(6))
    }

    fn build_recorded_at(
        mut appends: Vec<(usize, StreamAppend)>,
        recorded_at: DateTime<Utc>,
    ) -> Result<Self, StoreError> {
        let total: usize = appends.iter().map(|(_, append)| append.events.len()).sum();
        if appends.is_empty() {
            return Err(StoreError::InvalidAppend("an append needs at least one stream".into()));
        }
        if total > MAX_EVENTS_PER_APPEND {
            return Err(StoreError::InvalidAppend(format!(
                "an append carries at most {MAX_EVENTS_PER_APPEND} events; this one has {total}"
            )));
        }
        // One lock order for every transaction, so concurrent multi-stream appends never deadlock.
        appends.sort_by(|a, b| a.1.stream.cmp(&b.1.stream));
        let mut call = AppendCall {
            streams: Vec::with_capacity(appends.len()),
            expected_kinds: Vec::with_capacity(appends.len()),
            expected_versions: Vec::with_capacity(appends.len()),
            counts: Vec::with_capacity(appends.len()),
            event_ids: Vec::with_capacity(total),
            event_types: Vec::with_capacity(total),
            schema_versions: Vec::with_capacity(total),
            data: Vec::with_capacity(total),
            metadata: Vec::with_capacity(total),
            recorded_at,
            digests: Vec::with_capacity(total),
            copying_generation: false,
            expected_by_stream: HashMap::with_capacity(appends.len()),
        };
        let mut seen_ids = std::collections::HashSet::with_capacity(total);
        for (_, append) in appends {
            let stream = append.stream.as_str();
            if call.expected_by_stream.insert(stream.to_owned(), append.expected).is_some() {
                return Err(StoreError::InvalidAppend(format!("stream {stream} appears twice in one append")));
            }
            if append.events.is_empty() {
                return Err(StoreError::InvalidAppend(format!("the append to {stream} has no events")));
            }
            let (kind, version) = match append.expected {
                ExpectedVersion::Any => (0, -1),
                ExpectedVersion::NoStream => (1, -1),
                ExpectedVersion::StreamExists => (2, -1),
                ExpectedVersion::Exact(version) => (3, to_i64(version)?),
            };
            call.streams.push(stream.to_owned());
            call.expected_kinds.push(kind);
            call.expected_versions.push(version);
            call.counts.push(i32::try_from(append.events.len()).unwrap_or(i32::MAX));
            for event in append.events {
                validate_event(&event)?;
                if !seen_ids.insert(event.event_id) {
                    return Err(StoreError::InvalidAppend(format!(
                        "event id {} appears twice in one append",
                        event.event_id
                    )));
                }
                let digest = content_digest(&EventContent {
                    stream_id: stream,
                    event_id: event.event_id,
                    event_type: &event.event_type,
                    schema_version: event.schema_version,
                    recorded_at,
                    data: &event.data,
                    metadata: &event.metadata,
                });
                call.event_ids.push(event.event_id);
                call.event_types.push(event.event_type);
                call.schema_versions.push(i32::try_from(event.schema_version).unwrap_or(i32::MAX));
                call.data.push(event.data);
                call.metadata.push(event.metadata);
                call.digests.push(digest.to_vec());
            }
        }
        Ok(call)
    }
}

fn validate_event(event: &NewEvent) -> Result<(), StoreError> {
    let kind = &event.event_type;
    if kind.is_empty() || kind.len() > 200 || !kind.chars().all(|c| c.is_ascii_graphic()) {
        return Err(StoreError::InvalidAppend(format!(
            "event type {kind:?} must be 1 to 200 printable ASCII characters without spaces"
        )));
    }
    if event.schema_version == 0 || i32::try_from(event.schema_version).is_err() {
        return Err(StoreError::InvalidAppend(format!(
            "schema version {} of {kind} must be between 1 and {}",
            event.schema_version,
            i32::MAX
        )));
    }
    if !event.metadata.is_object() {
        return Err(StoreError::InvalidAppend(format!("the metadata of {kind} must be a JSON object")));
    }
    check_storable(&event.data, &format!("the data of {kind}"))?;
    check_storable(&event.metadata, &format!("the metadata of {kind}"))
}

enum AppendAttempt {
    /// The append raced another for a stream head and must run again in a new transaction.
    Retry,
    Failed(StoreError),
}

fn classify_append_error(error: sqlx::Error, call: &AppendCall) -> AppendAttempt {
    let Some(pg) = error.as_database_error().and_then(|db| db.try_downcast_ref::<PgDatabaseError>()) else {
        return AppendAttempt::Failed(store_error(error));
    };
    match pg.code() {
        "AE001" => AppendAttempt::Failed(wrong_expected_version(pg.detail().unwrap_or_default(), call)),
        "AE002" => AppendAttempt::Failed(StoreError::EventIdReused {
            event_id: pg.detail().and_then(|id| id.parse().ok()).unwrap_or_else(Uuid::nil),
        }),
        "AE003" => AppendAttempt::Retry,
        // Unique event id: reused by a different append (the same append is a replay).
        "23505" if pg.constraint() == Some("events_event_id_unique") => {
            let event_id = pg
                .detail()
                .and_then(|detail| detail.split(")=(").nth(1))
                .and_then(|rest| rest.split(')').next())
                .and_then(|id| id.parse().ok())
                .unwrap_or_else(Uuid::nil);
            AppendAttempt::Failed(StoreError::EventIdReused { event_id })
        }
        // Two transactions created the same stream head at once, or raced otherwise: retry.
        "23505" | "40001" | "40P01" => AppendAttempt::Retry,
        _ => AppendAttempt::Failed(store_error(error)),
    }
}

fn wrong_expected_version(detail: &str, call: &AppendCall) -> StoreError {
    let parsed: serde_json::Value = serde_json::from_str(detail).unwrap_or_default();
    let stream_name = parsed["stream"].as_str().unwrap_or_default().to_owned();
    let actual = match parsed["actual"].as_i64() {
        Some(version) if version >= 0 => ActualVersion::Version(version as u64),
        _ => ActualVersion::NoStream,
    };
    match (StreamId::parse(stream_name.clone()), call.expected_by_stream.get(&stream_name)) {
        (Ok(stream), Some(expected)) => StoreError::WrongExpectedVersion { stream, expected: *expected, actual },
        _ => StoreError::Failure(format!("unreadable conflict report from the database: {detail}")),
    }
}

/// Maps a database failure to the store's terms: connection trouble is `Unavailable`.
fn store_error(error: sqlx::Error) -> StoreError {
    if crate::database::is_unavailable(&error) {
        return StoreError::Unavailable(match &error {
            sqlx::Error::Database(database) => database.message().to_owned(),
            other => other.to_string(),
        });
    }
    match &error {
        sqlx::Error::Database(database) => StoreError::Failure(database.message().to_owned()),
        _ => StoreError::Failure(error.to_string()),
    }
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

fn to_i64(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::InvalidAppend(format!("version {value} is out of range")))
}

fn clamp_limit(limit: usize) -> i64 {
    i64::try_from(limit.min(100_000)).unwrap_or(100_000)
}

fn recorded_event(row: &PgRow) -> Result<RecordedEvent, StoreError> {
    let read = || -> Result<RecordedEvent, sqlx::Error> {
        let stream: String = row.try_get("stream_id")?;
        let schema_version: i32 = row.try_get("schema_version")?;
        Ok(RecordedEvent {
            position: Position(to_u64(row.try_get("global_position")?)),
            stream: StreamId::parse(stream).map_err(|error| sqlx::Error::Decode(Box::new(error)))?,
            stream_version: to_u64(row.try_get("stream_version")?),
            event_id: row.try_get("event_id")?,
            event_type: row.try_get("event_type")?,
            schema_version: u32::try_from(schema_version).unwrap_or_default(),
            data: row.try_get("data")?,
            metadata: row.try_get("metadata")?,
            recorded_at: row.try_get("recorded_at")?,
        })
    };
    read().map_err(store_error)
}

impl PostgresEventStore {
    /// One append of several streams: built and checked, retried while another transaction's
    /// positions would order it wrongly, then results in the caller's order.
    async fn append_multi_checked(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError> {
        let streams_in_order: Vec<String> = appends.iter().map(|a| a.stream.as_str().to_owned()).collect();
        let call = AppendCall::build(appends.into_iter().enumerate().collect())?;
        self.append_call(streams_in_order, call).await
    }

    /// Appends events as recorded at `recorded_at` rather than now: only for copying a log into
    /// a new generation (`aisc privacy reencrypt-log`), where each event keeps the time it was
    /// first recorded. The new generation's hashes chain as any append's do. Events with ids of
    /// Idempotency-Key claims (the new database holds no claims) pass the claim fence only
    /// when the session's login is a member of the log's owner.
    pub async fn append_as_recorded_at(
        &self,
        appends: Vec<StreamAppend>,
        recorded_at: DateTime<Utc>,
    ) -> Result<Vec<AppendResult>, StoreError> {
        let streams_in_order: Vec<String> = appends.iter().map(|a| a.stream.as_str().to_owned()).collect();
        let mut call = AppendCall::build_recorded_at(appends.into_iter().enumerate().collect(), recorded_at)?;
        call.copying_generation = true;
        let outcome = self.append_call(streams_in_order, call).await;
        log_append_outcome(&outcome);
        outcome
    }

    /// Runs a built append (retried while another transaction's positions would order it
    /// wrongly) and answers in the callers' order of `streams_in_order`.
    async fn append_call(
        &self,
        streams_in_order: Vec<String>,
        call: AppendCall,
    ) -> Result<Vec<AppendResult>, StoreError> {
        let mut attempt = 0;
        let sorted_results = loop {
            match self.append_once(&call).await {
                Ok(results) => break results,
                Err(AppendAttempt::Retry) if attempt < ORDER_RETRIES => attempt += 1,
                Err(AppendAttempt::Retry) => {
                    return Err(StoreError::Failure(format!(
                        "the append lost the race for its streams {ORDER_RETRIES} times; try again"
                    )));
                }
                Err(AppendAttempt::Failed(error)) => return Err(error),
            }
        };
        // Wake subscribers; a full channel means a notification is already due.
        let _ = self.wake_notifier.try_send(());
        // `append_streams` answered in sorted stream order; give results back in the caller's.
        let by_stream: HashMap<&str, AppendResult> =
            call.streams.iter().map(String::as_str).zip(sorted_results).collect();
        streams_in_order
            .iter()
            .map(|stream| {
                by_stream
                    .get(stream.as_str())
                    .copied()
                    .ok_or_else(|| StoreError::Failure(format!("no append result for stream {stream}")))
            })
            .collect()
    }
}

/// Logs a refused or failed append at the level its cause deserves: a version conflict, a
/// reused id or an invalid append is the caller's business (retried, or answered 409/412/422)
/// and is logged at DEBUG; only a failure of the store itself is an ERROR.
fn log_append_outcome<T>(outcome: &Result<T, StoreError>) {
    match outcome {
        Ok(_) => {}
        Err(error @ (StoreError::WrongExpectedVersion { .. } | StoreError::EventIdReused { .. })) => {
            tracing::debug!(%error, "append refused")
        }
        Err(error @ StoreError::InvalidAppend(_)) => tracing::debug!(%error, "append refused"),
        Err(error @ StoreError::Unavailable(_)) => tracing::warn!(%error, "append failed: store unavailable"),
        Err(error @ StoreError::Failure(_)) => tracing::error!(%error, "append failed"),
    }
}

#[async_trait]
impl EventStore for PostgresEventStore {
    #[tracing::instrument(skip_all, fields(streams = appends.len()))]
    async fn append_multi(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError> {
        let outcome = self.append_multi_checked(appends).await;
        log_append_outcome(&outcome);
        outcome
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: Option<u64>,
        direction: ReadDirection,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = match direction {
            ReadDirection::Forward => concat!(
                "SELECT ",
                event_columns!(),
                " FROM events WHERE stream_id = $1 AND stream_version >= $2 ORDER BY stream_version LIMIT $3"
            ),
            ReadDirection::Backward => concat!(
                "SELECT ",
                event_columns!(),
                " FROM events WHERE stream_id = $1 AND stream_version <= $2 ORDER BY stream_version DESC LIMIT $3"
            ),
        };
        let start = match (direction, from) {
            (_, Some(version)) => i64::try_from(version).unwrap_or(i64::MAX),
            (ReadDirection::Forward, None) => 0,
            (ReadDirection::Backward, None) => i64::MAX,
        };
        let rows = sqlx::query(sql)
            .bind(stream.as_str())
            .bind(start)
            .bind(clamp_limit(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        rows.iter().map(recorded_event).collect()
    }

    async fn read_streams(&self, streams: &[StreamId]) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = concat!(
            "SELECT ",
            event_columns!(),
            " FROM events WHERE stream_id = ANY($1) ORDER BY stream_id, stream_version"
        );
        let names: Vec<&str> = streams.iter().map(StreamId::as_str).collect();
        let mut rows = sqlx::query(sql).bind(&names).fetch(&self.pool);
        let mut events = Vec::new();
        while let Some(row) = rows.try_next().await.map_err(store_error)? {
            events.push(recorded_event(&row)?);
        }
        Ok(events)
    }

    async fn read_streams_from(&self, streams: &[(StreamId, u64)]) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = concat!(
            "SELECT ",
            event_columns!(),
            " FROM unnest($1::text[], $2::bigint[]) AS wanted(stream, from_version) ",
            "JOIN events ON events.stream_id = wanted.stream AND events.stream_version >= wanted.from_version ",
            "ORDER BY events.stream_id, events.stream_version"
        );
        let names: Vec<&str> = streams.iter().map(|(stream, _)| stream.as_str()).collect();
        let from: Vec<i64> = streams.iter().map(|(_, from)| i64::try_from(*from).unwrap_or(i64::MAX)).collect();
        let rows = sqlx::query(sql).bind(&names).bind(&from).fetch_all(&self.pool).await.map_err(store_error)?;
        rows.iter().map(recorded_event).collect()
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Option<u64>, StoreError> {
        let version: Option<i64> = sqlx::query_scalar("SELECT version FROM streams WHERE stream_id = $1")
            .bind(stream.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(version.filter(|v| *v >= 0).map(to_u64))
    }

    /// Fills the page: events held back behind a transaction that is still running are
    /// waited for (milliseconds, usually), up to the held-back wait; then the partial page is
    /// returned with `held_back` set.
    async fn read_all(&self, after: Position, limit: usize) -> Result<AllSlice, StoreError> {
        let limit = limit.clamp(1, 100_000);
        let deadline = std::time::Instant::now() + self.held_back_wait;
        let mut pause = Duration::from_millis(1);
        let mut events: Vec<RecordedEvent> = Vec::new();
        let mut waiting_since = None;
        loop {
            let cursor = events.last().map_or(after, |event| event.position);
            let slice = self.read_all_once(cursor, limit - events.len()).await?;
            events.extend(slice.events);
            if events.len() >= limit || !slice.held_back || std::time::Instant::now() >= deadline {
                if let Some(since) = waiting_since {
                    let waited = std::time::Instant::elapsed(&since);
                    if crate::held_back::record(waited) {
                        crate::held_back::warn_long_wait(&self.pool, waited).await;
                    }
                }
                return Ok(AllSlice { events, held_back: slice.held_back });
            }
            waiting_since.get_or_insert_with(std::time::Instant::now);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    async fn subscribe_all(&self, after: Position) -> Result<Box<dyn Subscription>, StoreError> {
        let mut listener = PgListener::connect_with(&self.pool).await.map_err(store_error)?;
        // Listen before the first read, so no notification falls between the two.
        listener.listen(EVENTS_CHANNEL).await.map_err(store_error)?;
        Ok(Box::new(PostgresSubscription { store: self.clone(), listener, last: after, buffer: VecDeque::new() }))
    }

    #[tracing::instrument(skip(self), err(Debug))]
    async fn verify(&self, range: PositionRange) -> Result<VerifyReport, StoreError> {
        Ok(Verifier::new(&self.pool, range).run(&aisc_domain::progress::Unwatched).await?.0)
    }
}

impl PostgresEventStore {
    /// [`EventStore::verify`], telling `progress` the events verified so far.
    pub async fn verify_reporting(
        &self,
        range: PositionRange,
        progress: &dyn aisc_domain::progress::Progress,
    ) -> Result<VerifyReport, StoreError> {
        Ok(Verifier::new(&self.pool, range).run(progress).await?.0)
    }

    /// Verifies the hash chains from the start of the log up to `verify_to` (the whole log,
    /// stream heads included, when `None`) and, in the same pass, computes the log digest of
    /// every event from the start up to `digest_to` (see [`LogDigest`]) — what a seal states.
    /// The digest is `None` when the chains break at or before `digest_to`: the log up to
    /// there cannot be read as one.
    pub async fn verify_and_digest(
        &self,
        verify_to: Option<Position>,
        digest_to: Position,
        progress: &dyn aisc_domain::progress::Progress,
    ) -> Result<(VerifyReport, Option<LogDigestValue>), StoreError> {
        if verify_to.is_some_and(|to| to < digest_to) {
            return Err(StoreError::Failure(format!(
                "cannot digest the log up to {digest_to} while verifying it only up to {}",
                verify_to.map_or(0, |to| to.0)
            )));
        }
        let mut verifier = Verifier::new(&self.pool, PositionRange { from: None, to: verify_to });
        verifier.log_digest = Some((digest_to.0, LogDigest::new()));
        verifier.run(progress).await
    }

    /// How far the log is settled: positions below `horizon` can never gain an event (every
    /// transaction that could write there has ended, and later ones write above it),
    /// `last_event` is the last event below it and `head` the last event of all (0 when there
    /// is none); positions from `frontier` on belong to transactions not yet begun. Read from
    /// one snapshot, as `read_all` reads; a seal covers only positions below `horizon`, or it
    /// could be broken by an event committing later below its position.
    pub async fn settled_head(&self) -> Result<SettledHead, StoreError> {
        let (horizon, frontier, last_event, head): (i64, i64, i64, i64) = sqlx::query_as(concat!(
            "WITH snapshot AS (SELECT pg_current_snapshot() AS taken), ",
            "bounds AS (SELECT pg_snapshot_xmin(taken)::text::bigint * 1048576 AS below, ",
            "pg_snapshot_xmax(taken)::text::bigint * 1048576 AS frontier FROM snapshot) ",
            "SELECT below, frontier, ",
            "(SELECT coalesce(max(global_position), 0) FROM events WHERE global_position < below), ",
            "(SELECT coalesce(max(global_position), 0) FROM events) ",
            "FROM bounds"
        ))
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(SettledHead {
            last_event: Position(to_u64(last_event)),
            head: Position(to_u64(head)),
            horizon: Position(to_u64(horizon)),
            frontier: Position(to_u64(frontier)),
        })
    }

    /// How many events the range holds (for progress shown against a total).
    pub async fn count_in(&self, range: PositionRange) -> Result<u64, StoreError> {
        let count: i64 =
            sqlx::query_scalar("SELECT count(*) FROM events WHERE global_position >= $1 AND global_position <= $2")
                .bind(range.from.map_or(0, |from| i64::try_from(from.0).unwrap_or(i64::MAX)))
                .bind(range.to.map_or(i64::MAX, |to| i64::try_from(to.0).unwrap_or(i64::MAX)))
                .fetch_one(&self.pool)
                .await
                .map_err(store_error)?;
        Ok(to_u64(count))
    }

    /// The position of the last event recorded so far (0 for an empty log).
    pub async fn head_position(&self) -> Result<Position, StoreError> {
        let head: i64 = sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM events")
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(Position(u64::try_from(head).unwrap_or_default()))
    }

    /// The position of the last event recorded at or before `moment` (0 if none was).
    pub async fn last_position_at(&self, moment: chrono::DateTime<chrono::Utc>) -> Result<Position, StoreError> {
        let position: i64 =
            sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM events WHERE recorded_at <= $1")
                .bind(moment)
                .fetch_one(&self.pool)
                .await
                .map_err(store_error)?;
        Ok(Position(u64::try_from(position).unwrap_or_default()))
    }

    /// One read of `$all` up to the visibility horizon.
    async fn read_all_once(&self, after: Position, limit: usize) -> Result<AllSlice, StoreError> {
        // The horizon comes from the statement's own snapshot, the one the scan reads with.
        let sql = concat!(
            "WITH horizon AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint * 1048576 AS below) ",
            "SELECT ",
            event_columns!(),
            " FROM events, horizon WHERE global_position > $1 AND global_position < horizon.below ",
            "ORDER BY global_position LIMIT $2"
        );
        let after_i64 = i64::try_from(after.0).unwrap_or(i64::MAX);
        let limit_i64 = clamp_limit(limit);
        // Decode rows as they arrive, so the client's JSON parsing overlaps the server's scan.
        let mut rows = sqlx::query(sql).bind(after_i64).bind(limit_i64).fetch(&self.pool);
        let mut events = Vec::with_capacity(usize::try_from(limit_i64).unwrap_or(0).min(SCAN_PAGE));
        while let Some(row) = rows.try_next().await.map_err(store_error)? {
            events.push(recorded_event(&row)?);
        }
        drop(rows);
        let held_back = if (events.len() as i64) < limit_i64 {
            let last_returned = events.last().map_or(after_i64, |event| event.position.0 as i64);
            // `max` reads one entry at the end of the primary key; an `EXISTS (… > $1)` gets a
            // generic plan that scans the whole table when nothing is beyond (the caught-up case).
            let head: i64 = sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM events")
                .fetch_one(&self.pool)
                .await
                .map_err(store_error)?;
            head > last_returned
        } else {
            false
        };
        Ok(AllSlice { events, held_back })
    }
}

/// An event's place in its stream's hash chain, as stored: what lets an export be verified
/// without the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLink {
    /// The event's stored hash.
    pub hash: Vec<u8>,
    /// The stored hash of the stream's previous event: [`CHAIN_START`] (empty) for version 0,
    /// and also when the previous event is missing from the log, which then shows as a broken
    /// chain to whoever verifies the export.
    pub previous_hash: Vec<u8>,
}

impl PostgresEventStore {
    /// The stored chain links of `events`, in their order. Read in a statement of its own
    /// (the trait's reads stay as they are): events never change, so the links belong to the
    /// events however long ago they were read.
    pub async fn chain_links(&self, events: &[RecordedEvent]) -> Result<Vec<ChainLink>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let positions: Vec<i64> =
            events.iter().map(|event| i64::try_from(event.position.0).unwrap_or(i64::MAX)).collect();
        // The predecessor is found through the (stream_id, stream_version) unique index.
        let rows: Vec<(i64, Vec<u8>, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT e.global_position, e.hash, p.hash FROM events e \
               LEFT JOIN events p ON p.stream_id = e.stream_id AND p.stream_version = e.stream_version - 1 \
              WHERE e.global_position = ANY($1)",
        )
        .bind(&positions)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        let by_position: HashMap<i64, ChainLink> = rows
            .into_iter()
            .map(|(position, hash, previous)| {
                (position, ChainLink { hash, previous_hash: previous.unwrap_or_else(|| CHAIN_START.to_vec()) })
            })
            .collect();
        positions
            .iter()
            .map(|position| {
                by_position
                    .get(position)
                    .cloned()
                    .ok_or_else(|| StoreError::Failure(format!("the event at position {position} has no stored hash")))
            })
            .collect()
    }
}

/// See [`PostgresEventStore::settled_head`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettledHead {
    pub last_event: Position,
    pub head: Position,
    pub horizon: Position,
    pub frontier: Position,
}

impl SettledHead {
    /// Whether no event can ever be added at or below `position`.
    pub fn settles(&self, position: Position) -> bool {
        position < self.horizon
    }

    /// Whether only transactions running now stand between `position` and its settling;
    /// beyond that, transactions not yet begun would have to end first.
    pub fn settles_once_running_transactions_end(&self, position: Position) -> bool {
        position < self.frontier
    }
}

/// How soon a subscription looks again at events held back behind a running transaction, and
/// the longest it waits between looks.
const HELD_BACK_FIRST_PAUSE: Duration = Duration::from_micros(500);
const HELD_BACK_MAX_PAUSE: Duration = Duration::from_millis(4);

/// A `$all` subscription: reads pages after its last event; when caught up, waits for a
/// notification (or the poll interval); when events are held back behind a running
/// transaction, reads again after a short pause.
struct PostgresSubscription {
    store: PostgresEventStore,
    listener: PgListener,
    last: Position,
    buffer: VecDeque<RecordedEvent>,
}

impl PostgresSubscription {
    /// Fills the buffer with the next page, waiting as long as it takes. What is visible is
    /// handed on at once: under a steady stream of appends some transaction is nearly always
    /// running, so waiting for a page with nothing held back behind one (as `read_all` does
    /// for its callers) would hold every event until a quiet moment.
    async fn fill(&mut self) -> Result<(), StoreError> {
        let mut pause = HELD_BACK_FIRST_PAUSE;
        while self.buffer.is_empty() {
            let slice = self.store.read_all_once(self.last, SCAN_PAGE).await?;
            if !slice.events.is_empty() {
                self.buffer.extend(slice.events);
                return Ok(());
            }
            if slice.held_back {
                // A transaction that started earlier is still running: it ends in
                // milliseconds, usually, so look again soon (reading is one index probe).
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(HELD_BACK_MAX_PAUSE);
                continue;
            }
            // Caught up: wait for an append to be announced, polling as the fallback.
            match tokio::time::timeout(self.store.subscription_poll, self.listener.recv()).await {
                Ok(Ok(_notification)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(error = %error, "subscription listener failed; polling");
                    tokio::time::sleep(self.store.subscription_poll).await;
                }
                Err(_elapsed) => {}
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Subscription for PostgresSubscription {
    async fn next(&mut self) -> Result<RecordedEvent, StoreError> {
        self.fill().await?;
        let event = self.buffer.pop_front().ok_or_else(|| StoreError::Failure("empty subscription buffer".into()))?;
        self.last = event.position;
        Ok(event)
    }

    async fn next_batch(&mut self, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.fill().await?;
        let take = max.max(1).min(self.buffer.len());
        let batch: Vec<RecordedEvent> = self.buffer.drain(..take).collect();
        if let Some(last) = batch.last() {
            self.last = last.position;
        }
        Ok(batch)
    }
}

/// Recomputes the hash chains over a range of `$all`, page by page.
struct Verifier<'a> {
    pool: &'a PgPool,
    range: PositionRange,
    /// Last version and hash seen of each stream in the range.
    heads: HashMap<String, (u64, Vec<u8>)>,
    verified: u64,
    /// When asked for: the log digest of the events up to this position, fed as they pass
    /// the chain check (the range then starts at the beginning of the log).
    log_digest: Option<(u64, LogDigest)>,
}

/// An event's outcome in the chain check.
enum Checked {
    /// Its hash chains to its predecessor; both digests as recomputed.
    Intact {
        content_digest: [u8; 32],
        hash: [u8; 32],
    },
    Broken(Tampering),
}

impl<'a> Verifier<'a> {
    fn new(pool: &'a PgPool, range: PositionRange) -> Self {
        Self { pool, range, heads: HashMap::new(), verified: 0, log_digest: None }
    }

    async fn run(
        mut self,
        progress: &dyn aisc_domain::progress::Progress,
    ) -> Result<(VerifyReport, Option<LogDigestValue>), StoreError> {
        let mut after: i64 = self.range.from.map_or(-1, |from| i64::try_from(from.0).unwrap_or(i64::MAX) - 1);
        let to = self.range.to.map_or(i64::MAX, |to| i64::try_from(to.0).unwrap_or(i64::MAX));
        loop {
            let rows = sqlx::query(concat!(
                "SELECT ",
                event_columns!(),
                ", hash FROM events WHERE global_position > $1 AND global_position <= $2 ",
                "ORDER BY global_position LIMIT $3"
            ))
            .bind(after)
            .bind(to)
            .bind(SCAN_PAGE as i64)
            .fetch_all(self.pool)
            .await
            .map_err(store_error)?;
            let Some(last) = rows.last() else { break };
            after = last.try_get("global_position").map_err(store_error)?;
            for row in &rows {
                let event = recorded_event(row)?;
                let stored_hash: Vec<u8> = row.try_get("hash").map_err(store_error)?;
                match self.check(&event, &stored_hash).await? {
                    Checked::Broken(problem) => {
                        // The log digest cannot be completed past a break before its end.
                        if self.log_digest.as_ref().is_some_and(|(digest_to, _)| event.position.0 <= *digest_to) {
                            self.log_digest = None;
                        }
                        return Ok(self.finish(Some(broken(&event, problem))));
                    }
                    Checked::Intact { content_digest, hash } => {
                        if let Some((digest_to, log_digest)) = &mut self.log_digest
                            && event.position.0 <= *digest_to
                        {
                            log_digest.add(
                                event.position.0,
                                event.stream.as_str(),
                                event.stream_version,
                                &content_digest,
                                &hash,
                            );
                        }
                    }
                }
                self.verified += 1;
            }
            progress.reached(self.verified);
        }
        if self.range.to.is_none()
            && let Some(broken) = self.check_stream_heads().await?
        {
            return Ok(self.finish(Some(broken)));
        }
        Ok(self.finish(None))
    }

    fn finish(self, first_broken: Option<BrokenEvent>) -> (VerifyReport, Option<LogDigestValue>) {
        let report = VerifyReport { verified: self.verified, first_broken };
        (report, self.log_digest.map(|(_, log_digest)| log_digest.finish()))
    }

    async fn check(&mut self, event: &RecordedEvent, stored_hash: &[u8]) -> Result<Checked, StoreError> {
        let stream = event.stream.as_str();
        let previous = match self.heads.get(stream) {
            Some((version, hash)) => Some((*version, hash.clone())),
            None => self.anchor(event).await?,
        };
        let (expected_version, previous_hash) = match previous {
            Some((version, hash)) => (version + 1, hash),
            None => (0, Vec::new()),
        };
        if event.stream_version != expected_version {
            return Ok(Checked::Broken(Tampering::VersionGap { expected_version }));
        }
        let digest = content_digest(&EventContent {
            stream_id: stream,
            event_id: event.event_id,
            event_type: &event.event_type,
            schema_version: event.schema_version,
            recorded_at: event.recorded_at,
            data: &event.data,
            metadata: &event.metadata,
        });
        let expected_hash = chain_hash(&previous_hash, &digest, event.stream_version, event.position.0);
        if expected_hash.as_slice() != stored_hash {
            return Ok(Checked::Broken(Tampering::HashMismatch));
        }
        self.heads.insert(stream.to_owned(), (event.stream_version, stored_hash.to_vec()));
        Ok(Checked::Intact { content_digest: digest, hash: expected_hash })
    }

    /// The stored predecessor of the first event of a stream met in the range: the range
    /// checks from there on (the predecessor is checked by a verification that covers it).
    async fn anchor(&self, event: &RecordedEvent) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        if event.stream_version == 0 {
            return Ok(None);
        }
        if self.range.from.is_none() {
            // Verifying from the start: the stream's first event must be in the range.
            return Ok(None);
        }
        let previous: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT stream_version, hash FROM events WHERE stream_id = $1 AND stream_version = $2")
                .bind(event.stream.as_str())
                .bind(event.stream_version as i64 - 1)
                .fetch_optional(self.pool)
                .await
                .map_err(store_error)?;
        Ok(previous.map(|(version, hash)| (to_u64(version), hash)))
    }

    /// Every stream head must match the last event verified for it, and no head may point
    /// at events that are gone.
    async fn check_stream_heads(&self) -> Result<Option<BrokenEvent>, StoreError> {
        let mut after = String::new();
        loop {
            let heads: Vec<(String, i64, i64, Vec<u8>)> = sqlx::query_as(
                "SELECT stream_id, version, last_position, last_hash FROM streams \
                  WHERE stream_id > $1 AND version >= 0 ORDER BY stream_id LIMIT $2",
            )
            .bind(&after)
            .bind(SCAN_PAGE as i64)
            .fetch_all(self.pool)
            .await
            .map_err(store_error)?;
            let Some(last) = heads.last() else {
                return Ok(None);
            };
            after = last.0.clone();
            for (stream, version, position, hash) in heads {
                let matches = self
                    .heads
                    .get(&stream)
                    .is_some_and(|(seen_version, seen_hash)| *seen_version == to_u64(version) && *seen_hash == hash);
                if !matches {
                    let (stream_version, problem) = match self.heads.get(&stream) {
                        Some((seen_version, _)) if *seen_version < to_u64(version) => {
                            (seen_version + 1, Tampering::VersionGap { expected_version: seen_version + 1 })
                        }
                        _ => (to_u64(version), Tampering::StreamHeadMismatch),
                    };
                    return Ok(Some(BrokenEvent {
                        position: Position(to_u64(position)),
                        stream,
                        stream_version,
                        event_id: Uuid::nil(),
                        problem,
                    }));
                }
            }
        }
    }
}

fn broken(event: &RecordedEvent, problem: Tampering) -> BrokenEvent {
    BrokenEvent {
        position: event.position,
        stream: event.stream.as_str().to_owned(),
        stream_version: event.stream_version,
        event_id: event.event_id,
        problem,
    }
}
