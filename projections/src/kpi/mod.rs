//! The KPI dashboard's read model: the totals the dashboard is read from (per funding year,
//! metric and dimension), each with its history by position and its parts by business date, so
//! that the dashboard as it stands, as the log stood at a position, and as it stood on a
//! business date are each a read of a few hundred rows, whatever the log's length.
//!
//! `fold` turns an event into changes of the totals' dated parts; `batch` loads what the fold
//! keeps, folds a batch and writes it with a few set-based statements; `queries` answers;
//! `figures` assembles the dashboard from the totals.

use aisc_domain::event_store::RecordedEvent;
use aisc_domain::subsidy::application::ApplicationEvent;
use aisc_domain::subsidy::batches::BatchEvent;
use aisc_domain::subsidy::capacity::CapacityEvent;
use aisc_domain::subsidy::data_subjects::DataSubjectEvent;
use aisc_domain::subsidy::funding::FundingEvent;
use aisc_domain::subsidy::prices::PriceEvent;
use async_trait::async_trait;
use sqlx::PgConnection;

use crate::projection::{BulkLoad, Interest, Projection, ProjectionError, ReadModelTables};

mod batch;
mod bulk;
mod figures;
mod fold;
mod queries;
mod totals;

pub use figures::{BudgetLineFigures, CapacityFigures, CategoryFigures, KpiDashboard, csv_cell, to_csv};
pub use queries::{PastView, dashboard, dashboard_at, year_scope};

pub const NAME: &str = "kpi";

/// The budget line every usage charge is paid from.
const SUBSIDY_LINE: &str = "computing_power_subsidy";

static TABLES: ReadModelTables = ReadModelTables {
    names: &[
        "kpi_totals",
        "kpi_totals_history",
        "kpi_dated_totals",
        "kpi_dated_history",
        "kpi_applications",
        "kpi_charges",
        "kpi_budget_lines",
        "kpi_capacity_months",
    ],
    create: include_str!("tables.sql"),
    indexes: include_str!("indexes.sql"),
};

pub struct Kpi;

#[async_trait]
impl Projection for Kpi {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> i32 {
        1
    }

    fn tables(&self) -> &'static ReadModelTables {
        &TABLES
    }

    /// Applications, funding years and capacity; batches, the price schedule and erasures of
    /// personal data are not counted.
    fn interest(&self, event_type: &str) -> Option<Interest> {
        Interest::declared(
            event_type,
            &[ApplicationEvent::EVENT_TYPES, FundingEvent::EVENT_TYPES, CapacityEvent::EVENT_TYPES],
            &[BatchEvent::EVENT_TYPES, PriceEvent::EVENT_TYPES, DataSubjectEvent::EVENT_TYPES],
        )
    }

    async fn apply(&self, connection: &mut PgConnection, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
        batch::apply(connection, events).await
    }

    fn bulk_load(&self) -> Option<Box<dyn BulkLoad>> {
        Some(Box::<bulk::KpiLoad>::default())
    }
}
