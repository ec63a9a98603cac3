//! Keeps one projection up to date.
//!
//! - One instance per projection across processes: the leader holds a session-level advisory
//!   lock on a connection of its own; others wait as standby and take over when it goes.
//! - Catch-up from the checkpoint, then live through a `$all` subscription, in batches; each
//!   batch and the checkpoint move in one transaction, guarded by the checkpoint it started
//!   from, so a crash or a lost lock neither loses nor double-counts an event.
//! - Rebuild without downtime: the whole log is replayed into a fresh schema (read once for
//!   every projection rebuilt together, loaded with `COPY` where the projection can; see
//!   [`crate::replay`]) while queries keep reading the live tables; indexes are built after
//!   the load; then one transaction applies the last events, moves the fresh tables into the
//!   live schema and sets the checkpoint.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aisc_domain::event_store::{EventStore, Position, RecordedEvent};
use sqlx::pool::PoolConnection;
use sqlx::{Acquire, PgConnection, PgPool, Postgres, Row};
use tokio::sync::watch;

use crate::projection::{Projection, ProjectionError};
use crate::replay::{ReplayTarget, replay, task_failed};

/// The schema queries read from. Not `public`: the service may create tables here, and only the
/// owner of the log may create objects in `public` (see
/// `migrations/20261201000001_least_privilege.sql`). Queries name it: `read_models.audit_trail`.
pub const LIVE_SCHEMA: &str = "read_models";

/// The role that owns the read models, whoever runs the projection: any login of the service
/// can then rebuild or drop what another login, or the owner in development, created.
pub const READ_MODEL_OWNER: &str = "aisc_service";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProjectionStatus {
    /// A rebuild has been asked for and not done yet.
    pub rebuild_requested: bool,
    pub name: &'static str,
    /// The version the code applies.
    pub version: i32,
    /// The version the stored read model was built with (`None`: never built).
    pub built_version: Option<i32>,
    pub position: u64,
    /// The log's last position.
    pub head: u64,
    /// Events in the log after the checkpoint (counted up to 1,000,000).
    pub lag_events: u64,
}

pub struct ProjectionRunner {
    pool: PgPool,
    store: Arc<dyn EventStore>,
    projection: Arc<dyn Projection>,
    batch_size: usize,
    standby_poll: Duration,
    /// Told the events replayed by a rebuild.
    progress: Arc<dyn aisc_domain::progress::Progress>,
}

impl ProjectionRunner {
    pub fn new(pool: PgPool, store: Arc<dyn EventStore>, projection: Arc<dyn Projection>) -> Self {
        Self {
            pool,
            store,
            projection,
            batch_size: 500,
            standby_poll: Duration::from_millis(500),
            progress: Arc::new(aisc_domain::progress::Unwatched),
        }
    }

    /// Tells `progress` the events a rebuild has replayed so far.
    pub fn with_progress(mut self, progress: Arc<dyn aisc_domain::progress::Progress>) -> Self {
        self.progress = progress;
        self
    }

    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    pub fn with_standby_poll(mut self, interval: Duration) -> Self {
        self.standby_poll = interval;
        self
    }

    pub fn name(&self) -> &'static str {
        self.projection.name()
    }

    /// Runs until `stop` turns true: as standby while another instance leads, as leader once
    /// the lock is free. Failures while leading are logged and the runner starts over.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) {
        let name = self.projection.name();
        while !*stop.borrow() {
            match self.try_lock().await {
                Ok(Some(lock)) => {
                    tracing::info!(projection = name, "leading");
                    let outcome = self.lead(&mut stop).await;
                    release(lock).await;
                    match outcome {
                        Ok(()) => return,
                        Err(error) => {
                            tracing::warn!(projection = name, error = %error, "projection failed; starting over");
                            let position = match &error {
                                ProjectionError::BadEvent { position, .. } => Some(*position),
                                _ => self.checkpoint().await.ok().map(|position| position.0),
                            };
                            crate::health::record_failure(name, position, &error.to_string());
                        }
                    }
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(projection = name, error = %error, "cannot reach the lock; retrying")
                }
            }
            tokio::select! {
                _ = stop.changed() => {}
                _ = tokio::time::sleep(self.standby_poll) => {}
            }
        }
    }

    /// Applies everything up to the log's current end once, then returns the checkpoint
    /// (for command-line jobs). Fails with `Busy` when another process leads.
    pub async fn catch_up(&self) -> Result<Position, ProjectionError> {
        let lock = self.try_lock().await?.ok_or(ProjectionError::Busy(self.projection.name()))?;
        let outcome = async {
            self.prepare().await?;
            let mut position = self.checkpoint().await?;
            loop {
                let slice = self.store.read_all(position, self.batch_size).await?;
                if slice.events.is_empty() {
                    if slice.held_back {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                    return Ok(position);
                }
                position = self.apply_live(position, &slice.events).await?;
            }
        }
        .await;
        release(lock).await;
        outcome
    }

    /// Rebuilds the read model from the whole log. Done here when no other process leads;
    /// otherwise the leader is asked to do it and this waits until it has.
    pub async fn rebuild(&self, wait_at_most: Duration) -> Result<Position, ProjectionError> {
        if let Some(lock) = self.try_lock().await? {
            let outcome = self.rebuild_locked().await;
            release(lock).await;
            return outcome;
        }
        let name = self.projection.name();
        self.request_rebuild().await?;
        tracing::info!(projection = name, "a running service leads the projection: asked it to rebuild, waiting");
        let deadline = Instant::now() + wait_at_most;
        loop {
            let pending: Option<bool> =
                sqlx::query_scalar("SELECT rebuild_requested FROM public.projection_checkpoints WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
            if pending != Some(true) {
                return self.checkpoint().await;
            }
            if Instant::now() > deadline {
                return Err(ProjectionError::Busy(name));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Whether another process (a running service) leads the projection now.
    pub async fn led_elsewhere(&self) -> Result<bool, ProjectionError> {
        match self.try_lock().await? {
            Some(lock) => {
                release(lock).await;
                Ok(false)
            }
            None => Ok(true),
        }
    }

    /// Asks whichever instance leads the projection to rebuild it between two batches.
    /// Returns false when the projection has never run here (nothing to ask yet).
    pub async fn request_rebuild(&self) -> Result<bool, ProjectionError> {
        let asked = sqlx::query("UPDATE public.projection_checkpoints SET rebuild_requested = true WHERE name = $1")
            .bind(self.projection.name())
            .execute(&self.pool)
            .await?;
        Ok(asked.rows_affected() == 1)
    }

    pub async fn status(&self) -> Result<ProjectionStatus, ProjectionError> {
        let row = sqlx::query(
            "SELECT version, position, rebuild_requested FROM public.projection_checkpoints WHERE name = $1",
        )
        .bind(self.projection.name())
        .fetch_optional(&self.pool)
        .await?;
        let (built_version, position, rebuild_requested) = match row {
            Some(row) => (
                Some(row.try_get::<i32, _>("version")?),
                row.try_get::<i64, _>("position")?,
                row.try_get::<bool, _>("rebuild_requested")?,
            ),
            None => (None, 0, false),
        };
        let head: i64 =
            sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM events").fetch_one(&self.pool).await?;
        let lag: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT 1 FROM events WHERE global_position > $1 LIMIT 1000000) behind",
        )
        .bind(position)
        .fetch_one(&self.pool)
        .await?;
        Ok(ProjectionStatus {
            rebuild_requested,
            name: self.projection.name(),
            version: self.projection.version(),
            built_version,
            position: to_u64(position),
            head: to_u64(head),
            lag_events: to_u64(lag),
        })
    }

    async fn lead(&self, stop: &mut watch::Receiver<bool>) -> Result<(), ProjectionError> {
        self.prepare().await?;
        let mut position = self.checkpoint().await?;
        let mut subscription = self.store.subscribe_all(position).await?;
        let mut next_request_check = Instant::now();
        loop {
            if Instant::now() >= next_request_check {
                next_request_check = Instant::now() + Duration::from_secs(1);
                if self.rebuild_requested().await? {
                    position = self.rebuild_locked().await?;
                    subscription = self.store.subscribe_all(position).await?;
                }
            }
            let batch = tokio::select! {
                _ = stop.changed() => return Ok(()),
                _ = tokio::time::sleep_until(next_request_check.into()) => continue,
                batch = subscription.next_batch(self.batch_size) => batch?,
            };
            position = self.apply_live(position, &batch).await?;
        }
    }

    /// Creates the read model on first start, and rebuilds it when its version changed.
    async fn prepare(&self) -> Result<(), ProjectionError> {
        let built: Option<i32> =
            sqlx::query_scalar("SELECT version FROM public.projection_checkpoints WHERE name = $1")
                .bind(self.projection.name())
                .fetch_optional(&self.pool)
                .await?;
        let mut tables_present = true;
        for table in self.projection.tables().names {
            let found: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
                .bind(format!("{LIVE_SCHEMA}.{table}"))
                .fetch_one(&self.pool)
                .await?;
            tables_present &= found.is_some();
        }
        if built != Some(self.projection.version()) || !tables_present {
            tracing::info!(
                projection = self.projection.name(),
                ?built,
                version = self.projection.version(),
                "rebuilding"
            );
            self.rebuild_locked().await?;
        }
        Ok(())
    }

    async fn checkpoint(&self) -> Result<Position, ProjectionError> {
        let position: Option<i64> =
            sqlx::query_scalar("SELECT position FROM public.projection_checkpoints WHERE name = $1")
                .bind(self.projection.name())
                .fetch_optional(&self.pool)
                .await?;
        Ok(Position(position.map_or(0, to_u64)))
    }

    async fn rebuild_requested(&self) -> Result<bool, ProjectionError> {
        let requested: Option<bool> =
            sqlx::query_scalar("SELECT rebuild_requested FROM public.projection_checkpoints WHERE name = $1")
                .bind(self.projection.name())
                .fetch_optional(&self.pool)
                .await?;
        Ok(requested == Some(true))
    }

    /// Applies a batch to the live tables and moves the checkpoint from `from`, in one
    /// transaction. Another instance having moved the checkpoint meanwhile is an error.
    async fn apply_live(&self, from: Position, batch: &[RecordedEvent]) -> Result<Position, ProjectionError> {
        let Some(last) = batch.last() else {
            return Ok(from);
        };
        let mut transaction = self.pool.begin().await?;
        skip_flush_wait(&mut transaction).await?;
        write_into(&mut transaction, LIVE_SCHEMA).await?;
        self.apply_handled(&mut transaction, batch).await?;
        let moved = sqlx::query(
            "UPDATE public.projection_checkpoints SET position = $3, updated_at = now() WHERE name = $1 AND position = $2",
        )
        .bind(self.projection.name())
        .bind(to_i64(from.0))
        .bind(to_i64(last.position.0))
        .execute(&mut *transaction)
        .await?;
        if moved.rows_affected() != 1 {
            return Err(ProjectionError::Busy(self.projection.name()));
        }
        transaction.commit().await?;
        crate::health::record_progress(self.projection.name());
        Ok(last.position)
    }

    /// Applies the events the projection handles; the caller's transaction has set the schema.
    async fn apply_handled(
        &self,
        connection: &mut PgConnection,
        batch: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let handled: Vec<RecordedEvent> =
            batch.iter().filter(|event| self.projection.handles(&event.event_type)).cloned().collect();
        if handled.is_empty() {
            return Ok(());
        }
        self.projection.apply(connection, &handled).await
    }

    /// Creates the projection's tables (without their indexes) in `schema` and replays the log
    /// into them up to `until` (inclusive) or the end (see [`crate::replay`]).
    /// Returns the last position applied and the number of events read.
    pub async fn replay_into(&self, schema: &str, until: Option<Position>) -> Result<(Position, u64), ProjectionError> {
        self.create_scratch(schema).await?;
        let target = ReplayTarget {
            projection: self.projection.as_ref(),
            schema: schema.to_string(),
            batch_size: self.batch_size.max(1_000),
        };
        replay(&self.pool, self.store.clone(), &[target], until, self.progress.as_ref()).await
    }

    /// Creates `schema` afresh with the projection's tables, without their indexes.
    async fn create_scratch(&self, schema: &str) -> Result<(), ProjectionError> {
        // The service may not create schemas: a function running as the owner of the log
        // creates this one (dropping a previous one of that name) for aisc_service. The tables
        // are created as aisc_service, so they belong to it whichever login made them.
        let mut transaction = self.pool.begin().await?;
        act_as_read_model_owner(&mut transaction).await?;
        sqlx::query("SELECT public.create_read_model_scratch_schema($1)")
            .bind(schema)
            .execute(&mut *transaction)
            .await?;
        write_into(&mut transaction, schema).await?;
        sqlx::raw_sql(self.projection.tables().create).execute(&mut *transaction).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Replays the whole log into a fresh schema and swaps it in. Caller holds the lock.
    async fn rebuild_locked(&self) -> Result<Position, ProjectionError> {
        let positions = rebuild_locked_together(&[self]).await?;
        Ok(positions.into_iter().next().unwrap_or(Position::START))
    }

    /// Rebuilds several projections from one read of the log, each into its own scratch schema
    /// and each swapped in with its own checkpoint. A projection another process leads is
    /// asked to rebuild itself and waited for, as [`ProjectionRunner::rebuild`] does. Answers
    /// each projection's checkpoint, in the order of `runners`; the replay's progress goes to
    /// the first runner's watcher.
    pub async fn rebuild_all(
        runners: &[ProjectionRunner],
        wait_at_most: Duration,
    ) -> Result<Vec<Position>, ProjectionError> {
        let mut locks = Vec::new();
        let mut here = Vec::new();
        for runner in runners {
            match runner.try_lock().await {
                Ok(Some(lock)) => {
                    locks.push(lock);
                    here.push(runner);
                }
                Ok(None) => {}
                Err(error) => {
                    for lock in locks {
                        release(lock).await;
                    }
                    return Err(error);
                }
            }
        }
        let rebuilt = rebuild_locked_together(&here).await;
        for lock in locks {
            release(lock).await;
        }
        let mut rebuilt = rebuilt?.into_iter();
        let mut positions = Vec::with_capacity(runners.len());
        for runner in runners {
            let position = if here.iter().any(|done| std::ptr::eq(*done, runner)) {
                rebuilt.next().unwrap_or(Position::START)
            } else {
                runner.rebuild(wait_at_most).await?
            };
            positions.push(position);
        }
        Ok(positions)
    }

    /// In one transaction: applies to the replayed tables in `schema` (indexes built) what was
    /// appended since `position`, moves them into the live schema and sets the checkpoint.
    /// Answers the checkpoint and the events applied.
    async fn swap_in(&self, schema: &str, mut position: Position) -> Result<(Position, u64), ProjectionError> {
        let name = self.projection.name();
        let mut transaction = self.pool.begin().await?;
        write_into(&mut transaction, schema).await?;
        // Whatever was appended since the replay's last page goes in with the swap.
        let mut applied = 0_u64;
        loop {
            let slice = self.store.read_all(position, self.batch_size.max(1_000)).await?;
            let Some(last) = slice.events.last() else {
                break;
            };
            position = last.position;
            applied += slice.events.len() as u64;
            self.apply_handled(&mut transaction, &slice.events).await?;
        }
        let connection = transaction.acquire().await?;
        for table in self.projection.tables().names {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP TABLE IF EXISTS {LIVE_SCHEMA}.{table} CASCADE; ALTER TABLE {schema}.{table} SET SCHEMA {LIVE_SCHEMA}"
            )))
            .execute(&mut *connection)
            .await?;
        }
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema}"))).execute(&mut *connection).await?;
        sqlx::query(
            "INSERT INTO public.projection_checkpoints (name, version, position, rebuild_requested) VALUES ($1, $2, $3, false) \
             ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version, position = EXCLUDED.position, \
             rebuild_requested = false, updated_at = now()",
        )
        .bind(name)
        .bind(self.projection.version())
        .bind(to_i64(position.0))
        .execute(&mut *connection)
        .await?;
        transaction.commit().await?;
        Ok((position, applied))
    }

    /// The projection's advisory lock on a connection of its own, if no one else holds it.
    async fn try_lock(&self) -> Result<Option<PoolConnection<Postgres>>, ProjectionError> {
        let mut connection = self.pool.acquire().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(lock_key(self.projection.name()))
            .fetch_one(&mut *connection)
            .await?;
        Ok(locked.then_some(connection))
    }
}

/// Rebuilds `runners` (whose locks the caller holds) from one replay of the log; answers
/// their checkpoints in order.
async fn rebuild_locked_together(runners: &[&ProjectionRunner]) -> Result<Vec<Position>, ProjectionError> {
    let Some(first) = runners.first() else {
        return Ok(Vec::new());
    };
    let started = Instant::now();
    let mut targets = Vec::with_capacity(runners.len());
    for runner in runners {
        let schema = format!("rebuild_{}", runner.projection.name());
        runner.create_scratch(&schema).await?;
        targets.push(ReplayTarget {
            projection: runner.projection.as_ref(),
            schema,
            batch_size: runner.batch_size.max(1_000),
        });
    }
    let (position, replayed) =
        replay(&first.pool, first.store.clone(), &targets, None, first.progress.as_ref()).await?;
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(events = replayed, seconds, position = position.0, "replayed the log; building indexes");
    // Every projection's indexes at once, each on a connection of its own.
    let builds: Vec<_> = runners
        .iter()
        .zip(&targets)
        .map(|(runner, target)| {
            tokio::spawn(build_indexes(runner.pool.clone(), target.schema.clone(), runner.projection.tables().indexes))
        })
        .collect();
    for build in builds {
        build.await.map_err(task_failed)??;
    }
    let mut positions = Vec::with_capacity(runners.len());
    for (runner, target) in runners.iter().zip(&targets) {
        let (reached, tail) = runner.swap_in(&target.schema, position).await?;
        let seconds = started.elapsed().as_secs_f64();
        let name = runner.projection.name();
        tracing::info!(projection = name, events = replayed + tail, seconds, position = reached.0, "rebuilt");
        positions.push(reached);
    }
    Ok(positions)
}

/// Builds a replayed projection's indexes in `schema`, after its rows are loaded.
async fn build_indexes(pool: PgPool, schema: String, indexes: &'static str) -> Result<(), ProjectionError> {
    let mut transaction = pool.begin().await?;
    write_into(&mut transaction, &schema).await?;
    sqlx::raw_sql(indexes).execute(&mut *transaction).await?;
    transaction.commit().await?;
    Ok(())
}

/// The rest of the transaction runs as the role that owns the read models (SET LOCAL ROLE: the
/// connected role is a login of the service, the owner, or a superuser, all of which may).
async fn act_as_read_model_owner(transaction: &mut sqlx::Transaction<'_, Postgres>) -> Result<(), ProjectionError> {
    sqlx::query(sqlx::AssertSqlSafe(format!("SET LOCAL ROLE {READ_MODEL_OWNER}"))).execute(&mut **transaction).await?;
    Ok(())
}

/// The rest of the transaction reads and writes the tables of `schema`: projections name their
/// tables without a schema. The role that owns the read models keeps the schema's objects to
/// itself, so nothing else on the path can stand in for a table.
pub(crate) async fn write_into(
    transaction: &mut sqlx::Transaction<'_, Postgres>,
    schema: &str,
) -> Result<(), ProjectionError> {
    sqlx::query("SELECT set_config('search_path', quote_ident($1), true)")
        .bind(schema)
        .execute(&mut **transaction)
        .await?;
    Ok(())
}

/// A read model's batch does not wait for its WAL to reach the disk. Safe: the batch and its
/// checkpoint commit together, so a crash loses both and the runner applies the batch again;
/// and the rebuild's swap commits synchronously, which flushes every batch before it.
pub(crate) async fn skip_flush_wait(transaction: &mut sqlx::Transaction<'_, Postgres>) -> Result<(), ProjectionError> {
    sqlx::query("SET LOCAL synchronous_commit = off").execute(&mut **transaction).await?;
    Ok(())
}

/// Releases every advisory lock of the connection; a connection that cannot say so is closed,
/// which releases them too.
async fn release(mut connection: PoolConnection<Postgres>) {
    if sqlx::query("SELECT pg_advisory_unlock_all()").execute(&mut *connection).await.is_err() {
        let _ = connection.close().await;
    }
}

/// The advisory lock key of a projection: FNV-1a of its name, in a space of its own.
fn lock_key(name: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in "aisc-projection:".bytes().chain(name.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

/// Waits until the projection named `name` has applied `position`, at most `timeout`.
/// Returns whether it got there (read-your-writes for queries).
pub async fn wait_for_position(
    pool: &PgPool,
    name: &str,
    position: Position,
    timeout: Duration,
) -> Result<bool, ProjectionError> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        let reached: Option<i64> =
            sqlx::query_scalar("SELECT position FROM public.projection_checkpoints WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?;
        if reached.is_some_and(|reached| to_u64(reached) >= position.0) {
            return Ok(true);
        }
        if Instant::now() + pause > deadline {
            return Ok(false);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::lock_key;

    #[test]
    fn lock_keys_differ_by_projection_and_are_stable() {
        assert_ne!(lock_key("audit_trail"), lock_key("applications"));
        assert_eq!(lock_key("audit_trail"), lock_key("audit_trail"));
    }
}
