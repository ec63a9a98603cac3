//! What the web pages show beside the lists: the batch calendar, one application's row, the
//! progress reports coming due, and AISC capacity month by month.

use aisc_domain::subsidy::capacity::SUBSIDISED_SHARE_BPS;
use chrono::NaiveDate;
use serde::Serialize;
use sqlx::PgPool;

use super::queries::ApplicationRow;
use crate::projection::ProjectionError;

/// A batch of the calendar (§15).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct BatchRow {
    pub batch_id: String,
    pub deadline: NaiveDate,
    pub committee_date: NaiveDate,
    pub closed: bool,
}

/// Every batch, by deadline.
pub async fn batches(pool: &PgPool) -> Result<Vec<BatchRow>, ProjectionError> {
    Ok(sqlx::query_as::<_, BatchRow>(
        "SELECT batch_id, deadline, committee_date, closed FROM read_models.batches_view ORDER BY deadline, batch_id",
    )
    .fetch_all(pool)
    .await?)
}

/// One application's row of the list.
pub async fn application(pool: &PgPool, application_id: &str) -> Result<Option<ApplicationRow>, ProjectionError> {
    Ok(sqlx::query_as::<_, ApplicationRow>(
        "SELECT application_id, status, batch_id, organisation, category, sub_type, project_title, \
         develops_ai_models, mainland_or_overseas_team, team_size, talents, requested_rate_bps, submitted_on, \
         assessed_by, total_score, decided_on, approved_rate_bps, ceiling_cents, disbursed_cents, project_start, \
         project_end, next_report_due FROM read_models.applications_view WHERE application_id = $1",
    )
    .bind(application_id)
    .fetch_optional(pool)
    .await?)
}

/// A project whose next progress report falls due: while it is overdue, nothing more is charged
/// or disbursed on the project (§21), so the units and subsidy it still has are what it blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ReportDue {
    pub application_id: String,
    pub organisation: String,
    pub project_title: String,
    pub batch_id: String,
    pub due_on: NaiveDate,
    pub reports_submitted: i32,
    pub reports_due_in_total: i32,
    pub units_allocated: i64,
    pub units_used: i64,
    pub ceiling_cents: i64,
    pub disbursed_cents: i64,
}

impl ReportDue {
    /// Allocated units not yet charged: what the overdue report holds back.
    pub fn units_blocked(&self) -> i64 {
        (self.units_allocated - self.units_used).max(0)
    }

    /// The ceiling not yet disbursed.
    pub fn subsidy_blocked_cents(&self) -> i64 {
        (self.ceiling_cents - self.disbursed_cents).max(0)
    }
}

/// Projects under agreement whose next progress report is due on or before `until` (overdue
/// ones first, as they are oldest), earliest first.
pub async fn reports_due(pool: &PgPool, until: NaiveDate) -> Result<Vec<ReportDue>, ProjectionError> {
    Ok(sqlx::query_as::<_, ReportDue>(
        "SELECT application_id, organisation, project_title, batch_id, next_report_due AS due_on, \
         cardinality(reports_submitted) AS reports_submitted, cardinality(report_due_dates) AS reports_due_in_total, \
         units_allocated, units_used, coalesce(ceiling_cents, 0) AS ceiling_cents, disbursed_cents \
         FROM read_models.applications_view \
         WHERE status = 'agreement_signed' AND next_report_due IS NOT NULL AND next_report_due <= $1 \
         ORDER BY next_report_due, application_id",
    )
    .bind(until)
    .fetch_all(pool)
    .await?)
}

/// AISC capacity of a service in a month, and the subsidised units allocated in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct CapacityMonth {
    pub service_type: String,
    pub period: String,
    pub capacity: i64,
    pub allocated: i64,
    pub redeployed: i64,
}

impl CapacityMonth {
    /// At most 90 % of capacity may be subsidised (§10), rounded down to a whole unit, as the
    /// domain decides it.
    pub fn subsidised_cap(&self) -> i64 {
        let cap = i128::from(self.capacity) * i128::from(SUBSIDISED_SHARE_BPS) / 10_000;
        i64::try_from(cap).unwrap_or(i64::MAX)
    }
}

/// Capacity month by month, per service, for the months `first_period..=last_period`
/// (`YYYY-MM`).
pub async fn capacity_months(
    pool: &PgPool,
    first_period: &str,
    last_period: &str,
) -> Result<Vec<CapacityMonth>, ProjectionError> {
    Ok(sqlx::query_as::<_, CapacityMonth>(
        "SELECT service_type, period, capacity, allocated, redeployed FROM read_models.capacity_view \
         WHERE period BETWEEN $1 AND $2 ORDER BY service_type, period",
    )
    .bind(first_period)
    .bind(last_period)
    .fetch_all(pool)
    .await?)
}

/// How many applications stand at each status, of those submitted between the two dates (all
/// when `None`), most frequent first.
pub async fn status_counts(
    pool: &PgPool,
    submitted_between: Option<(NaiveDate, NaiveDate)>,
) -> Result<Vec<(String, i64)>, ProjectionError> {
    let (first, last) = submitted_between.map_or((None, None), |(first, last)| (Some(first), Some(last)));
    Ok(sqlx::query_as::<_, (String, i64)>(
        "SELECT status, count(*) FROM read_models.applications_view \
         WHERE ($1::date IS NULL OR submitted_on >= $1) AND ($2::date IS NULL OR submitted_on <= $2) \
         GROUP BY status ORDER BY count(*) DESC, status",
    )
    .bind(first)
    .bind(last)
    .fetch_all(pool)
    .await?)
}

/// An application's usage in one funding year: its charges not reversed, their units, gross and
/// subsidy, and how many were reversed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct UsageYear {
    pub financial_year: String,
    pub lines: i64,
    pub units: i64,
    pub gross_cents: i64,
    pub subsidy_cents: i64,
    pub reversed_lines: i64,
}

/// An application's usage per funding year, summed in the database over the usage table's
/// primary key range: one row per year however many lines the application charged.
pub async fn usage_by_year(pool: &PgPool, application_id: &str) -> Result<Vec<UsageYear>, ProjectionError> {
    Ok(sqlx::query_as::<_, UsageYear>(
        "SELECT financial_year, \
                count(*) FILTER (WHERE NOT reversed) AS lines, \
                coalesce(sum(units) FILTER (WHERE NOT reversed), 0)::bigint AS units, \
                coalesce(sum(gross_cents) FILTER (WHERE NOT reversed), 0)::bigint AS gross_cents, \
                coalesce(sum(subsidy_cents) FILTER (WHERE NOT reversed), 0)::bigint AS subsidy_cents, \
                count(*) FILTER (WHERE reversed) AS reversed_lines \
         FROM read_models.usage_view WHERE application_id = $1 GROUP BY financial_year ORDER BY financial_year",
    )
    .bind(application_id)
    .fetch_all(pool)
    .await?)
}
