//! The KPI dashboard (§18, §21, §23), per funding year or for the whole scheme, read from the
//! applications read model: applications received and decided, approval rate, days to
//! decision, the cash flow per budget line, capacity against the 90 % cap, utilisation, and
//! the indicators the paper names. Rates and shares are integer basis points.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Serialize;
use std::sync::Arc;

use aisc_domain::codec::BusinessDate;
use aisc_domain::event_store::{EventStore, Position, RecordedEvent};
use aisc_domain::subsidy::events::SchemeEvent;
use sqlx::{PgConnection, PgPool, Row};

use crate::applications::Applications;
use crate::runner::ProjectionRunner;

use crate::projection::ProjectionError;

/// Decided statuses that mean an approval happened.
const APPROVED: &str = "('approved', 'agreement_signed', 'completed', 'terminated')";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BudgetLineFigures {
    pub line: String,
    pub received_cents: i64,
    pub committed_cents: i64,
    pub disbursed_cents: i64,
    pub redirected_cents: i64,
    /// Received, less committed and redirected.
    pub left_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CapacityFigures {
    pub service_type: String,
    pub capacity_units: i64,
    /// 90 % of capacity (§10).
    pub subsidised_cap_units: i64,
    pub allocated_units: i64,
    pub redeployed_units: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CategoryFigures {
    pub received: i64,
    pub approved: i64,
    pub rejected: i64,
    /// Average approved subsidy rate, rounded to the basis point.
    pub average_approved_rate_bps: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KpiDashboard {
    /// `2025-26`, or `scheme` for the whole scheme.
    pub scope: String,
    pub applications_received: i64,
    pub applications_approved: i64,
    pub applications_rejected: i64,
    /// Approved over decided (approved and rejected).
    pub approval_rate_bps: Option<i64>,
    pub median_days_to_decision: Option<i64>,
    pub by_category: BTreeMap<String, CategoryFigures>,
    pub budget: Vec<BudgetLineFigures>,
    pub capacity: Vec<CapacityFigures>,
    /// Units used over units allocated, approved projects.
    pub utilisation_bps: Option<i64>,
    pub projects_developing_ai_models: i64,
    pub mainland_or_overseas_teams: i64,
    pub talents_involved: i64,
    pub overdue_progress_reports: i64,
}

/// The dashboard for the applications submitted in `year` (all years when `None`), with
/// reports overdue on `today`.
pub async fn dashboard(
    connection: &mut PgConnection,
    year: Option<(String, NaiveDate, NaiveDate)>,
    today: NaiveDate,
) -> Result<KpiDashboard, ProjectionError> {
    dashboard_in(connection, crate::runner::LIVE_SCHEMA, year, today).await
}

/// [`dashboard`] from the applications read model in `schema` (the live one, or a replay's).
async fn dashboard_in(
    connection: &mut PgConnection,
    schema: &str,
    year: Option<(String, NaiveDate, NaiveDate)>,
    today: NaiveDate,
) -> Result<KpiDashboard, ProjectionError> {
    let (scope, first, last) = match &year {
        Some((name, first, last)) => (name.clone(), *first, *last),
        // The whole scheme: any date PostgreSQL can hold.
        None => (
            "scheme".to_string(),
            NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or_default(),
            NaiveDate::from_ymd_opt(9999, 12, 31).unwrap_or_default(),
        ),
    };
    let totals = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) AS received,
                count(*) FILTER (WHERE status IN {APPROVED}) AS approved,
                count(*) FILTER (WHERE status = 'rejected') AS rejected,
                percentile_disc(0.5) WITHIN GROUP (ORDER BY decided_on - submitted_on) AS median_days,
                sum(units_used) FILTER (WHERE status IN {APPROVED})::bigint AS used,
                sum(units_allocated) FILTER (WHERE status IN {APPROVED})::bigint AS allocated,
                count(*) FILTER (WHERE status IN {APPROVED} AND develops_ai_models) AS ai_models,
                count(*) FILTER (WHERE status IN {APPROVED} AND mainland_or_overseas_team) AS mainland_overseas,
                coalesce(sum(talents) FILTER (WHERE status IN {APPROVED}), 0)::bigint AS talents,
                count(*) FILTER (WHERE next_report_due < $3) AS overdue
           FROM {schema}.applications_view WHERE submitted_on BETWEEN $1 AND $2"
    )))
    .bind(first)
    .bind(last)
    .bind(today)
    .fetch_one(&mut *connection)
    .await?;
    let (received, approved, rejected): (i64, i64, i64) =
        (totals.try_get("received")?, totals.try_get("approved")?, totals.try_get("rejected")?);
    let used: Option<i64> = totals.try_get("used")?;
    let allocated: Option<i64> = totals.try_get("allocated")?;
    let ratio = |part: i64, whole: i64| (whole > 0).then(|| (i128::from(part) * 10_000 / i128::from(whole)) as i64);

    let mut by_category = BTreeMap::new();
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT category, count(*) AS received,
                count(*) FILTER (WHERE status IN {APPROVED}) AS approved,
                count(*) FILTER (WHERE status = 'rejected') AS rejected,
                round(avg(approved_rate_bps) FILTER (WHERE status IN {APPROVED}))::bigint AS average_rate
           FROM {schema}.applications_view WHERE submitted_on BETWEEN $1 AND $2 GROUP BY category ORDER BY category"
    )))
    .bind(first)
    .bind(last)
    .fetch_all(&mut *connection)
    .await?;
    for row in rows {
        by_category.insert(
            row.try_get::<String, _>("category")?,
            CategoryFigures {
                received: row.try_get("received")?,
                approved: row.try_get("approved")?,
                rejected: row.try_get("rejected")?,
                average_approved_rate_bps: row.try_get("average_rate")?,
            },
        );
    }

    let budget_rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT line, sum(received_cents)::bigint AS received, sum(committed_cents)::bigint AS committed,
                sum(disbursed_cents)::bigint AS disbursed, sum(redirected_cents)::bigint AS redirected
           FROM {schema}.budget_view WHERE $1::text IS NULL OR year = $1 GROUP BY line ORDER BY line"
    )))
    .bind(year.as_ref().map(|(name, _, _)| name.clone()))
    .fetch_all(&mut *connection)
    .await?;
    let mut budget = Vec::with_capacity(budget_rows.len());
    for row in budget_rows {
        let (received, committed, redirected): (i64, i64, i64) =
            (row.try_get("received")?, row.try_get("committed")?, row.try_get("redirected")?);
        budget.push(BudgetLineFigures {
            line: row.try_get("line")?,
            received_cents: received,
            committed_cents: committed,
            disbursed_cents: row.try_get("disbursed")?,
            redirected_cents: redirected,
            left_cents: received - committed - redirected,
        });
    }

    // Months of the year, as `YYYY-MM`, compare as text.
    let (first_month, last_month) = match &year {
        Some((_, first, last)) => (first.format("%Y-%m").to_string(), last.format("%Y-%m").to_string()),
        None => ("0000-00".to_string(), "9999-99".to_string()),
    };
    let capacity_rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT service_type, sum(capacity)::bigint AS capacity, sum(capacity * 9 / 10)::bigint AS cap,
                sum(allocated)::bigint AS allocated, sum(redeployed)::bigint AS redeployed
           FROM {schema}.capacity_view WHERE period BETWEEN $1 AND $2 GROUP BY service_type ORDER BY service_type"
    )))
    .bind(first_month)
    .bind(last_month)
    .fetch_all(&mut *connection)
    .await?;
    let mut capacity = Vec::with_capacity(capacity_rows.len());
    for row in capacity_rows {
        capacity.push(CapacityFigures {
            service_type: row.try_get("service_type")?,
            capacity_units: row.try_get("capacity")?,
            subsidised_cap_units: row.try_get("cap")?,
            allocated_units: row.try_get("allocated")?,
            redeployed_units: row.try_get("redeployed")?,
        });
    }

    Ok(KpiDashboard {
        scope,
        applications_received: received,
        applications_approved: approved,
        applications_rejected: rejected,
        approval_rate_bps: ratio(approved, approved + rejected),
        median_days_to_decision: totals.try_get::<Option<i32>, _>("median_days")?.map(i64::from),
        by_category,
        budget,
        capacity,
        utilisation_bps: match (used, allocated) {
            (Some(used), Some(allocated)) => ratio(used, allocated),
            _ => None,
        },
        projects_developing_ai_models: totals.try_get("ai_models")?,
        mainland_or_overseas_teams: totals.try_get("mainland_overseas")?,
        talents_involved: totals.try_get("talents")?,
        overdue_progress_reports: totals.try_get("overdue")?,
    })
}

/// The dashboard as it stood at `position`: the applications read model is replayed from the
/// log up to that position into a scratch schema, queried there, and dropped.
pub async fn dashboard_as_of(
    pool: &PgPool,
    store: Arc<dyn EventStore>,
    position: Position,
    year: Option<(String, NaiveDate, NaiveDate)>,
    today: NaiveDate,
) -> Result<KpiDashboard, ProjectionError> {
    dashboard_in_the_past(pool, store, PastView { as_of: Some(position), effective_on: None }, year, today).await
}

/// Which past a dashboard is asked for, by either clock or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PastView {
    /// As the log stood at this position (recorded time).
    pub as_of: Option<Position>,
    /// The facts in force on this business date: the events whose business date is on or
    /// before it (a charge counts from its usage month's first day).
    pub effective_on: Option<NaiveDate>,
}

/// The dashboard replayed from the log into a scratch schema as it stood at `past`. With a
/// business date, "today" for overdue reports and the like is that date.
pub async fn dashboard_in_the_past(
    pool: &PgPool,
    store: Arc<dyn EventStore>,
    past: PastView,
    year: Option<(String, NaiveDate, NaiveDate)>,
    today: NaiveDate,
) -> Result<KpiDashboard, ProjectionError> {
    let today = past.effective_on.map_or(today, |date| date.min(today));
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.subsec_nanos());
    let schema = format!("as_of_{}_{nanos}", past.as_of.map_or(0, |position| position.0));
    let runner = ProjectionRunner::new(pool.clone(), store, Arc::new(Applications));
    let keep = |event: &RecordedEvent| match past.effective_on {
        None => true,
        // Only the scheme's events are applied; one that cannot be read fails the replay there.
        Some(date) => event.decode::<SchemeEvent>().map_or(true, |decoded| decoded.effective_on() <= date),
    };
    let replayed = runner.replay_into_where(&schema, past.as_of, &keep).await;
    let outcome = match replayed {
        Ok(_) => {
            let mut connection = pool.acquire().await?;
            dashboard_in(&mut connection, &schema, year, today).await
        }
        Err(error) => Err(error),
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))).execute(pool).await?;
    outcome
}

/// A spreadsheet cell that cannot run as a formula: text starting with `=`, `+`, `-`, `@`, a
/// tab or a carriage return is prefixed with `'`; quotes are doubled and the cell quoted.
pub fn csv_cell(text: &str) -> String {
    let guarded =
        if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_string() };
    format!("\"{}\"", guarded.replace('"', "\"\""))
}

/// The dashboard as CSV rows of `metric,dimension,value`.
pub fn to_csv(kpi: &KpiDashboard) -> String {
    let mut rows: Vec<(String, String, String)> = Vec::new();
    let mut push = |metric: &str, dimension: &str, value: Option<i64>| {
        rows.push((metric.to_string(), dimension.to_string(), value.map_or_else(String::new, |v| v.to_string())));
    };
    push("applications_received", "", Some(kpi.applications_received));
    push("applications_approved", "", Some(kpi.applications_approved));
    push("applications_rejected", "", Some(kpi.applications_rejected));
    push("approval_rate_bps", "", kpi.approval_rate_bps);
    push("median_days_to_decision", "", kpi.median_days_to_decision);
    for (category, figures) in &kpi.by_category {
        push("received_by_category", category, Some(figures.received));
        push("approved_by_category", category, Some(figures.approved));
        push("rejected_by_category", category, Some(figures.rejected));
        push("average_approved_rate_bps_by_category", category, figures.average_approved_rate_bps);
    }
    for line in &kpi.budget {
        push("received_cents", &line.line, Some(line.received_cents));
        push("committed_cents", &line.line, Some(line.committed_cents));
        push("disbursed_cents", &line.line, Some(line.disbursed_cents));
        push("redirected_cents", &line.line, Some(line.redirected_cents));
        push("left_cents", &line.line, Some(line.left_cents));
    }
    for service in &kpi.capacity {
        push("capacity_units", &service.service_type, Some(service.capacity_units));
        push("subsidised_cap_units", &service.service_type, Some(service.subsidised_cap_units));
        push("allocated_units", &service.service_type, Some(service.allocated_units));
        push("redeployed_units", &service.service_type, Some(service.redeployed_units));
    }
    push("utilisation_bps", "", kpi.utilisation_bps);
    push("projects_developing_ai_models", "", Some(kpi.projects_developing_ai_models));
    push("mainland_or_overseas_teams", "", Some(kpi.mainland_or_overseas_teams));
    push("talents_involved", "", Some(kpi.talents_involved));
    push("overdue_progress_reports", "", Some(kpi.overdue_progress_reports));
    let mut out =
        format!("{},{},{},{}\n", csv_cell("scope"), csv_cell("metric"), csv_cell("dimension"), csv_cell("value"));
    for (metric, dimension, value) in rows {
        out.push_str(&format!(
            "{},{},{},{}\n",
            csv_cell(&kpi.scope),
            csv_cell(&metric),
            csv_cell(&dimension),
            csv_cell(&value)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::csv_cell;

    #[test]
    fn csv_cells_cannot_become_formulas() {
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("+1"), "\"'+1\"");
        assert_eq!(csv_cell("-5"), "\"'-5\"");
        assert_eq!(csv_cell("@SUM(A1)"), "\"'@SUM(A1)\"");
        assert_eq!(csv_cell("\tx"), "\"'\tx\"");
        assert_eq!(csv_cell("ai_startup"), "\"ai_startup\"");
    }
}
