//! The dashboard as it stands, as the log stood at a position (`as_of`), as it stood on a
//! business date (`effective_on`), or both: each a read of the totals the projection keeps, at
//! a cost set by the number of totals (and of their dated parts), not by the log's length.

use aisc_domain::event_store::Position;
use aisc_domain::subsidy::values::FinancialYear;
use chrono::NaiveDate;
use sqlx::PgConnection;

use super::figures::{KpiDashboard, TotalRow, assemble};
use crate::projection::ProjectionError;

/// Which past a dashboard is asked for, by either clock or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PastView {
    /// As the log stood at this position (recorded time).
    pub as_of: Option<Position>,
    /// The facts in force on this business date: the events whose business date is on or
    /// before it (a charge counts from its usage month's first day).
    pub effective_on: Option<NaiveDate>,
}

/// The dashboard as it stands for the applications submitted in `year` (all years when `None`),
/// with reports overdue on `today`.
pub async fn dashboard(
    connection: &mut PgConnection,
    year: Option<(String, NaiveDate, NaiveDate)>,
    today: NaiveDate,
) -> Result<KpiDashboard, ProjectionError> {
    dashboard_at(connection, PastView::default(), year, today).await
}

/// The dashboard as it stood at `past`. With a business date, "today" for overdue reports is
/// that date (when earlier).
pub async fn dashboard_at(
    connection: &mut PgConnection,
    past: PastView,
    year: Option<(String, NaiveDate, NaiveDate)>,
    today: NaiveDate,
) -> Result<KpiDashboard, ProjectionError> {
    let today = past.effective_on.map_or(today, |date| date.min(today));
    let scope = year.as_ref().map(|(name, _, _)| name.clone());
    let position = past.as_of.map(|position| i64::try_from(position.0).unwrap_or(i64::MAX));
    let rows: Vec<TotalRow> =
        match (position, past.effective_on) {
            (None, None) => {
                sqlx::query_as(
                    "SELECT metric, CASE WHEN metric = 'next_report_due' THEN '' ELSE dimension END AS dimension, \
                        sum(value)::bigint AS value \
                 FROM read_models.kpi_totals \
                 WHERE ($1::text IS NULL OR year = $1) AND (metric <> 'next_report_due' OR dimension < $2) \
                 GROUP BY 1, 2",
                )
                .bind(&scope)
                .bind(today.to_string())
                .fetch_all(&mut *connection)
                .await?
            }
            // One probe per total: its last value at or before the position.
            (Some(position), None) => sqlx::query_as(
                "SELECT t.metric, CASE WHEN t.metric = 'next_report_due' THEN '' ELSE t.dimension END AS dimension, \
                        sum(h.value)::bigint AS value \
                 FROM read_models.kpi_totals t CROSS JOIN LATERAL ( \
                     SELECT value FROM read_models.kpi_totals_history h \
                     WHERE h.year = t.year AND h.metric = t.metric AND h.dimension = t.dimension AND h.position <= $3 \
                     ORDER BY h.position DESC LIMIT 1) h \
                 WHERE ($1::text IS NULL OR t.year = $1) AND (t.metric <> 'next_report_due' OR t.dimension < $2) \
                 GROUP BY 1, 2",
            )
            .bind(&scope)
            .bind(today.to_string())
            .bind(position)
            .fetch_all(&mut *connection)
            .await?,
            // The dated parts on or before the date, as they stand.
            (None, Some(effective_on)) => {
                sqlx::query_as(
                    "SELECT metric, CASE WHEN metric = 'next_report_due' THEN '' ELSE dimension END AS dimension, \
                        sum(value)::bigint AS value \
                 FROM read_models.kpi_dated_totals \
                 WHERE ($1::text IS NULL OR year = $1) AND (metric <> 'next_report_due' OR dimension < $2) \
                   AND effective_on <= $3 \
                 GROUP BY 1, 2",
                )
                .bind(&scope)
                .bind(today.to_string())
                .bind(effective_on)
                .fetch_all(&mut *connection)
                .await?
            }
            // One probe per dated part on or before the date: its last value at or before the position.
            (Some(position), Some(effective_on)) => sqlx::query_as(
                "SELECT t.metric, CASE WHEN t.metric = 'next_report_due' THEN '' ELSE t.dimension END AS dimension, \
                        sum(h.value)::bigint AS value \
                 FROM read_models.kpi_dated_totals t CROSS JOIN LATERAL ( \
                     SELECT value FROM read_models.kpi_dated_history h \
                     WHERE h.year = t.year AND h.metric = t.metric AND h.dimension = t.dimension \
                       AND h.effective_on = t.effective_on AND h.position <= $4 \
                     ORDER BY h.position DESC LIMIT 1) h \
                 WHERE ($1::text IS NULL OR t.year = $1) AND (t.metric <> 'next_report_due' OR t.dimension < $2) \
                   AND t.effective_on <= $3 \
                 GROUP BY 1, 2",
            )
            .bind(&scope)
            .bind(today.to_string())
            .bind(effective_on)
            .bind(position)
            .fetch_all(&mut *connection)
            .await?,
        };
    Ok(assemble(scope.unwrap_or_else(|| "scheme".to_string()), rows))
}

/// The scope of a funding year as the dashboard takes it: its name and first and last days.
pub fn year_scope(year: FinancialYear) -> (String, NaiveDate, NaiveDate) {
    (year.to_string(), year.first_day(), year.last_day())
}
