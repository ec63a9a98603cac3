//! What a projection is: a name, a version, what it does with every event type of the domain
//! (handles or ignores; none is left undeclared), its own tables (SQL files beside it), and
//! how it applies a batch of events to them; optionally, a faster way to load them from the
//! whole log during a rebuild.

use aisc_domain::event_store::{EventStore, RecordedEvent, StoreError};
use async_trait::async_trait;
use sqlx::PgConnection;

pub use crate::copy_rows::{CopyField, CopyRows, CopyTarget};

/// The tables a projection owns and the SQL that creates them. Both scripts name tables without
/// a schema: the runner runs them with `search_path` set to the schema being built (the live
/// one, or a fresh one during a rebuild). `indexes` runs after a rebuild has loaded the tables
/// (an index built once over the loaded rows costs less than one maintained row by row). Index
/// names are unique within a schema, so a rebuilt table carries its indexes along when it is
/// swapped in.
#[derive(Debug, Clone, Copy)]
pub struct ReadModelTables {
    pub names: &'static [&'static str],
    /// `CREATE TABLE` statements (with their primary keys).
    pub create: &'static str,
    /// `CREATE INDEX` statements.
    pub indexes: &'static str,
}

/// What a projection does with an event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    Handles,
    Ignores,
}

impl Interest {
    /// `Handles` for a type among `handled`, `Ignores` for one among `ignored`, else undeclared.
    pub fn declared(event_type: &str, handled: &[&[&str]], ignored: &[&[&str]]) -> Option<Interest> {
        let among = |lists: &[&[&str]]| lists.iter().any(|types| types.contains(&event_type));
        if among(handled) {
            Some(Interest::Handles)
        } else if among(ignored) {
            Some(Interest::Ignores)
        } else {
            None
        }
    }
}

#[async_trait]
pub trait Projection: Send + Sync {
    /// Stable name: the checkpoint's key and the advisory lock's.
    fn name(&self) -> &'static str;
    /// Bumped whenever the tables or the way events are applied change: the runner then
    /// rebuilds the read model from the whole log at start-up.
    fn version(&self) -> i32;
    fn tables(&self) -> &'static ReadModelTables;
    /// Its declaration for an event type: every event type of the domain must be declared
    /// handled or ignored (a test fails for one that is neither); `None` for a type it has not
    /// declared, which it is never handed.
    fn interest(&self, event_type: &str) -> Option<Interest>;
    /// Whether the runner hands it events of this type.
    fn handles(&self, event_type: &str) -> bool {
        self.interest(event_type) == Some(Interest::Handles)
    }
    /// Applies events (all of a handled type, in `$all` order) to its tables within the
    /// caller's transaction, whose `search_path` names the schema being written (the live one,
    /// or a rebuild's): statements name tables without a schema.
    async fn apply(&self, connection: &mut PgConnection, events: &[RecordedEvent]) -> Result<(), ProjectionError>;
    /// A rebuild's fast path: a fresh [`BulkLoad`] that folds the whole log in memory and hands
    /// out rows for `COPY`. `None` (the default) rebuilds by calling [`Projection::apply`] on
    /// pages of the log, which is always correct and only slower. A projection that has one
    /// must end up with the same tables either way (live equals rebuilt).
    fn bulk_load(&self) -> Option<Box<dyn BulkLoad>> {
        None
    }
}

/// Loads a projection's fresh tables from the whole log during a rebuild: the runner reads
/// the log once, hands every page to [`BulkLoad::load`] and streams the rows it produces to
/// one `COPY … FROM STDIN` per target table while it reads on; indexes are built afterwards.
/// Memory must stay flat in the log's size: rows that cannot change any more (one per event,
/// say) go out at once; only what later events may still change (a row per application) is
/// kept until [`BulkLoad::finish`].
#[async_trait]
pub trait BulkLoad: Send {
    /// The tables it fills with `COPY`, and their columns; [`CopyRows::push`] names a target
    /// by its index here.
    fn targets(&self) -> &'static [CopyTarget];
    /// Before [`BulkLoad::load`] folds `events`: reads from the log what folding them needs
    /// and the load does not keep (a reversal's charge, earlier in its stream, say), so that
    /// what it keeps stays bounded. Nothing by default.
    async fn look_back(&mut self, _events: &[&RecordedEvent], _store: &dyn EventStore) -> Result<(), ProjectionError> {
        Ok(())
    }
    /// Folds the next events of the log (of handled types, in `$all` order).
    fn load(&mut self, events: &[&RecordedEvent], rows: &mut CopyRows) -> Result<(), ProjectionError>;
    /// The log has been read: hands out the rows it kept.
    fn finish(&mut self, rows: &mut CopyRows) -> Result<(), ProjectionError>;
    /// Once every row is loaded, and before the indexes are built: statements on the loaded
    /// tables (in the caller's transaction, `search_path` set as for `apply`). Nothing by
    /// default.
    async fn after_load(self: Box<Self>, _connection: &mut PgConnection) -> Result<(), ProjectionError> {
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("reading the event log failed: {0}")]
    Store(#[from] StoreError),
    #[error("read model database failure: {0}")]
    Database(#[from] sqlx::Error),
    #[error("projection {projection} cannot apply event at position {position}: {reason}")]
    BadEvent { projection: &'static str, position: u64, reason: String },
    #[error("projection {0} is running in another process")]
    Busy(&'static str),
    #[error("no projection is named {0}")]
    Unknown(String),
}
