//! The applications read model staff open every day — a row per application with its stage,
//! applicant, batch, decision and money — and the batch calendar beside it, from which the
//! batch work queues are read.
//!
//! `tables.sql` and `indexes.sql` create its tables; `fold` turns a batch of events into what
//! it changes per row; `write` writes that with a few set-based statements; `queries` answers
//! what staff ask of it.

use aisc_domain::event_store::RecordedEvent;
use aisc_domain::subsidy::application::ApplicationEvent;
use aisc_domain::subsidy::batches::BatchEvent;
use aisc_domain::subsidy::capacity::CapacityEvent;
use aisc_domain::subsidy::data_subjects::DataSubjectEvent;
use aisc_domain::subsidy::funding::FundingEvent;
use aisc_domain::subsidy::prices::PriceEvent;
use aisc_domain::subsidy::streams;
use async_trait::async_trait;
use sqlx::PgConnection;

use crate::projection::{BulkLoad, Interest, Projection, ProjectionError, ReadModelTables};

mod fold;
mod overview;
mod queries;
mod write;

pub use overview::*;
pub use queries::*;

pub const NAME: &str = "applications";

/// The budget line every usage charge is paid from.
const SUBSIDY_LINE: &str = "computing_power_subsidy";

static TABLES: ReadModelTables = ReadModelTables {
    names: &["applications_view", "budget_view", "capacity_view", "usage_view", "batches_view"],
    create: include_str!("tables.sql"),
    indexes: include_str!("indexes.sql"),
};

pub struct Applications;

fn bad(event: &RecordedEvent, reason: impl ToString) -> ProjectionError {
    ProjectionError::BadEvent { projection: NAME, position: event.position.0, reason: reason.to_string() }
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[async_trait]
impl Projection for Applications {
    fn name(&self) -> &'static str {
        NAME
    }

    /// 7: usage lines keep their business date and recorded time (the disbursements export).
    fn version(&self) -> i32 {
        7
    }

    fn tables(&self) -> &'static ReadModelTables {
        &TABLES
    }

    /// Every event of applications, batches, funding years and capacity; the price schedule
    /// is not shown here (each usage charge carries the rate it was charged at), nor erasures
    /// (the one-application view reads them from the key store).
    fn interest(&self, event_type: &str) -> Option<Interest> {
        Interest::declared(
            event_type,
            &[
                ApplicationEvent::EVENT_TYPES,
                BatchEvent::EVENT_TYPES,
                FundingEvent::EVENT_TYPES,
                CapacityEvent::EVENT_TYPES,
            ],
            &[PriceEvent::EVENT_TYPES, DataSubjectEvent::EVENT_TYPES],
        )
    }

    /// Folds the batch in memory per row, then writes each table with one or two statements:
    /// a batch costs a handful of round trips whatever its size.
    async fn apply(&self, connection: &mut PgConnection, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
        fold_page(events)?.write(connection).await
    }

    /// Folds the whole log in memory per row (usage lines excepted: they go out as read) and
    /// loads the tables with `COPY`.
    fn bulk_load(&self) -> Option<Box<dyn BulkLoad>> {
        Some(Box::new(write::RebuildLoad::default()))
    }
}

/// Folds events (of handled types, in log order) per row: a live batch, or a page of a rebuild.
fn fold_page<'e>(events: impl IntoIterator<Item = &'e RecordedEvent>) -> Result<fold::BatchChanges, ProjectionError> {
    let mut changes = fold::BatchChanges::default();
    for event in events {
        match event.stream.category() {
            streams::category::BATCHES => changes.batch_event(event)?,
            streams::category::APPLICATION => changes.application_event(event)?,
            streams::category::BUDGET => changes.budget_event(event)?,
            streams::category::CAPACITY => changes.capacity_event(event)?,
            _ => {}
        }
    }
    Ok(changes)
}
