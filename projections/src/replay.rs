//! Replaying the log into fresh tables, for rebuilds and for read models as they stood: one
//! read of the log feeds every projection being replayed, as a pipeline.
//!
//! - A reader task runs ahead on connections of its own, a few large pages at most (memory
//!   stays flat in the log's size).
//! - Each page goes to every projection: a [`BulkLoad`] folds it in memory and its rows stream
//!   to one `COPY … FROM STDIN` per table, each a task on a connection of its own; a
//!   projection without one applies the page with `apply` in a transaction of its own.
//! - Reading, folding and writing overlap: the database scans the log while it parses the
//!   rows of the pages before.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aisc_domain::event_store::{EventStore, Position, RecordedEvent, StoreError};
use aisc_domain::progress::Progress;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::projection::{BulkLoad, CopyRows, CopyTarget, Projection, ProjectionError};
use crate::runner::{skip_flush_wait, write_into};

/// Events per page read. Decoded events are large in memory (their JSON as trees), so a page
/// stays small enough that the pages in flight hold a few MiB.
const PAGE: usize = 1_000;
/// Pages the reader may run ahead of the folding.
const READ_AHEAD: usize = 1;
/// Bytes of encoded rows gathered before they are sent to their table's `COPY`.
const COPY_CHUNK: usize = 256 * 1024;
/// Chunks waiting for each table's `COPY`.
const COPY_QUEUE: usize = 4;
/// How long one transaction of a table's `COPY` may stay open.
const COPY_ROUND: Duration = Duration::from_millis(250);

/// A projection to replay and the schema its fresh tables are in (created, without indexes).
pub(crate) struct ReplayTarget<'a> {
    pub projection: &'a dyn Projection,
    pub schema: String,
    /// Events per transaction when the projection is replayed with `apply`.
    pub batch_size: usize,
}

/// The log from its start up to `until` (inclusive; its end when `None`), applied to each
/// target's schema. Returns the last position read and the number of events read.
pub(crate) async fn replay(
    pool: &PgPool,
    store: Arc<dyn EventStore>,
    targets: &[ReplayTarget<'_>],
    until: Option<Position>,
    progress: &dyn Progress,
) -> Result<(Position, u64), ProjectionError> {
    let (pages, mut arriving) = mpsc::channel(READ_AHEAD);
    let reader = tokio::spawn(read_log(store.clone(), until, pages));
    let mut loads: Vec<Load> = targets.iter().map(|target| Load::new(pool, &store, target)).collect();
    let outcome = async {
        let mut position = Position::START;
        let mut replayed = 0_u64;
        while let Some(page) = arriving.recv().await {
            let page = page?;
            let Some(last) = page.last() else { continue };
            position = last.position;
            replayed += page.len() as u64;
            for load in &mut loads {
                load.page(&page).await?;
            }
            progress.reached(replayed);
        }
        for load in &mut loads {
            load.finish().await?;
        }
        Ok((position, replayed))
    }
    .await;
    drop(arriving);
    match outcome {
        Ok(done) => {
            let _ = reader.await;
            Ok(done)
        }
        Err(error) => {
            reader.abort();
            for load in loads {
                load.abandon();
            }
            Err(error)
        }
    }
}

/// Sends the log page by page until `until` or its end; an error ends the pages.
async fn read_log(
    store: Arc<dyn EventStore>,
    until: Option<Position>,
    pages: mpsc::Sender<Result<Vec<RecordedEvent>, StoreError>>,
) {
    let mut position = Position::START;
    loop {
        let slice = match store.read_all(position, PAGE).await {
            Ok(slice) => slice,
            Err(error) => {
                let _ = pages.send(Err(error)).await;
                return;
            }
        };
        let read = slice.events.len();
        let within: Vec<RecordedEvent> =
            slice.events.into_iter().filter(|event| until.is_none_or(|until| event.position <= until)).collect();
        let Some(last) = within.last() else {
            // Events held back behind a running transaction are waited for; past them is the end.
            if slice.held_back && read == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            return;
        };
        position = last.position;
        let reached_until = within.len() < read;
        if pages.send(Ok(within)).await.is_err() || reached_until {
            return;
        }
    }
}

/// One projection's side of the replay.
struct Load<'a> {
    pool: PgPool,
    store: Arc<dyn EventStore>,
    projection: &'a dyn Projection,
    schema: &'a str,
    batch_size: usize,
    /// Whether the projection handles each event type seen so far.
    handles: HashMap<String, bool>,
    way: Way,
}

enum Way {
    Bulk {
        load: Box<dyn BulkLoad>,
        rows: CopyRows,
        copies: Vec<Option<Copy>>,
    },
    /// Pages applied with `apply`.
    Paged,
}

/// A table's `COPY`, running on a task of its own.
struct Copy {
    chunks: mpsc::Sender<Vec<u8>>,
    task: JoinHandle<Result<(), ProjectionError>>,
}

impl<'a> Load<'a> {
    fn new(pool: &PgPool, store: &Arc<dyn EventStore>, target: &'a ReplayTarget<'_>) -> Self {
        let way = match target.projection.bulk_load() {
            Some(load) => {
                let targets = load.targets().len();
                Way::Bulk { load, rows: CopyRows::new(targets), copies: (0..targets).map(|_| None).collect() }
            }
            None => Way::Paged,
        };
        Self {
            pool: pool.clone(),
            store: store.clone(),
            projection: target.projection,
            schema: &target.schema,
            batch_size: target.batch_size.max(1),
            handles: HashMap::new(),
            way,
        }
    }

    async fn page(&mut self, page: &[RecordedEvent]) -> Result<(), ProjectionError> {
        let projection = self.projection;
        let handles = &mut self.handles;
        let chosen: Vec<&RecordedEvent> = page
            .iter()
            .filter(|event| {
                *handles.entry(event.event_type.clone()).or_insert_with(|| projection.handles(&event.event_type))
            })
            .collect();
        if chosen.is_empty() {
            return Ok(());
        }
        match &mut self.way {
            Way::Bulk { load, rows, .. } => {
                load.look_back(&chosen, self.store.as_ref()).await?;
                load.load(&chosen, rows)?;
                self.send_rows(COPY_CHUNK).await
            }
            Way::Paged => {
                for batch in chosen.chunks(self.batch_size) {
                    let events: Vec<RecordedEvent> = batch.iter().map(|event| (*event).clone()).collect();
                    let mut transaction = self.pool.begin().await?;
                    skip_flush_wait(&mut transaction).await?;
                    write_into(&mut transaction, self.schema).await?;
                    self.projection.apply(&mut transaction, &events).await?;
                    transaction.commit().await?;
                }
                Ok(())
            }
        }
    }

    /// Sends every table's rows gathered past `at_least` bytes to its `COPY`, starting it on
    /// the table's first rows.
    async fn send_rows(&mut self, at_least: usize) -> Result<(), ProjectionError> {
        let Way::Bulk { load, rows, copies } = &mut self.way else {
            return Ok(());
        };
        for (index, chunk) in rows.take(at_least) {
            let (Some(slot), Some(target)) = (copies.get_mut(index), load.targets().get(index)) else {
                continue;
            };
            let copy = slot.get_or_insert_with(|| Copy::start(&self.pool, self.schema, target));
            if copy.chunks.send(chunk).await.is_err() {
                // The COPY ended early: its task says why.
                if let Some(failed) = slot.take() {
                    return Err(failed.failure().await);
                }
            }
        }
        Ok(())
    }

    /// The log has been read: the rows kept are written, every `COPY` is finished, then the
    /// load's own statements run.
    async fn finish(&mut self) -> Result<(), ProjectionError> {
        if let Way::Bulk { load, rows, .. } = &mut self.way {
            load.finish(rows)?;
        }
        self.send_rows(1).await?;
        let Way::Bulk { copies, .. } = &mut self.way else {
            return Ok(());
        };
        for copy in copies.iter_mut().filter_map(Option::take) {
            drop(copy.chunks);
            copy.task.await.map_err(task_failed)??;
        }
        let Way::Bulk { load, .. } = std::mem::replace(&mut self.way, Way::Paged) else {
            return Ok(());
        };
        let mut transaction = self.pool.begin().await?;
        skip_flush_wait(&mut transaction).await?;
        write_into(&mut transaction, self.schema).await?;
        load.after_load(&mut transaction).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Stops its `COPY`s without committing them (the replay failed).
    fn abandon(self) {
        if let Way::Bulk { copies, .. } = self.way {
            for copy in copies.into_iter().flatten() {
                copy.task.abort();
            }
        }
    }
}

impl Copy {
    /// Runs the table's `COPY` in rounds, each its own transaction of at most
    /// [`COPY_ROUND`]: a transaction that has written holds back every reader of `$all` (see
    /// the store's visibility horizon), this replay's own reader and the service's live
    /// projections included, so none is kept open for long.
    fn start(pool: &PgPool, schema: &str, target: &CopyTarget) -> Self {
        let (chunks, mut arriving) = mpsc::channel::<Vec<u8>>(COPY_QUEUE);
        let (pool, schema, statement) = (pool.clone(), schema.to_string(), target.statement());
        let task = tokio::spawn(async move {
            // Each round starts with a chunk in hand, so no transaction waits for the first.
            while let Some(first) = arriving.recv().await {
                let round_ends = tokio::time::Instant::now() + COPY_ROUND;
                let mut transaction = pool.begin().await?;
                skip_flush_wait(&mut transaction).await?;
                write_into(&mut transaction, &schema).await?;
                let mut copy = transaction.copy_in_raw(&statement).await?;
                copy.send(first).await?;
                while let Ok(Some(chunk)) = tokio::time::timeout_at(round_ends, arriving.recv()).await {
                    copy.send(chunk).await?;
                }
                copy.finish().await?;
                transaction.commit().await?;
            }
            Ok(())
        });
        Self { chunks, task }
    }
}

impl Copy {
    /// Why a `COPY` that stopped taking rows stopped.
    async fn failure(self) -> ProjectionError {
        match self.task.await {
            Ok(Err(error)) => error,
            Ok(Ok(())) => ProjectionError::Database(sqlx::Error::Protocol("a COPY ended before its rows".into())),
            Err(error) => task_failed(error),
        }
    }
}

pub(crate) fn task_failed(error: tokio::task::JoinError) -> ProjectionError {
    ProjectionError::Database(sqlx::Error::Protocol(format!("a rebuild task failed: {error}")))
}
