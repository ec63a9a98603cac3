//! What a projection is: a name, a version, the event types it handles, its own tables, and
//! how it applies a batch of events to them.

use aisc_domain::event_store::{RecordedEvent, StoreError};
use async_trait::async_trait;
use sqlx::PgConnection;

/// One table a projection owns. `ddl` creates it and its indexes with `{schema}` standing for
/// the schema it is built in (the live one, or a fresh one during a rebuild); index names are
/// unique within a schema, so a rebuilt table carries its indexes along when it is swapped in.
#[derive(Debug, Clone, Copy)]
pub struct TableSpec {
    pub name: &'static str,
    pub ddl: &'static str,
}

#[async_trait]
pub trait Projection: Send + Sync {
    /// Stable name: the checkpoint's key and the advisory lock's.
    fn name(&self) -> &'static str;
    /// Bumped whenever the tables or the way events are applied change: the runner then
    /// rebuilds the read model from the whole log at start-up.
    fn version(&self) -> i32;
    fn tables(&self) -> &'static [TableSpec];
    fn handles(&self, event_type: &str) -> bool;
    /// Applies events (all of a handled type, in `$all` order) to the tables in `schema`,
    /// within the caller's transaction.
    async fn apply(
        &self,
        connection: &mut PgConnection,
        schema: &str,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError>;
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
