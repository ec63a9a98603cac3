//! What staff ask of the applications read model.

use chrono::NaiveDate;
use serde::Serialize;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};

use super::SUBSIDY_LINE;
use crate::projection::ProjectionError;

/// One row of the applications list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApplicationRow {
    /// 32 lower-case hex digits.
    pub application_id: String,
    /// submitted, eligible, ineligible, assessed, deferred, approved, rejected,
    /// agreement_signed, completed, terminated or withdrawn.
    pub status: String,
    /// The intake batch, e.g. `2025-q3`.
    pub batch_id: String,
    /// The applicant's name.
    pub organisation: String,
    /// local_institution, rnd_centre, government_department, ai_startup or strategic_enterprise.
    pub category: String,
    /// The category's sub-type as the applicant declared it.
    pub sub_type: String,
    pub project_title: String,
    /// The project develops AI models (a §18 indicator).
    pub develops_ai_models: bool,
    /// The team includes members from the Mainland or overseas (a §18 indicator).
    pub mainland_or_overseas_team: bool,
    /// People on the project team.
    pub team_size: i32,
    /// AI talents the project involves (a §18 indicator).
    pub talents: i32,
    /// The subsidy rate asked for, in basis points (7000 = 70 %).
    pub requested_rate_bps: i32,
    /// The business date of the submission (YYYY-MM-DD).
    pub submitted_on: NaiveDate,
    /// The assessor's name, once assessed.
    pub assessed_by: Option<String>,
    /// The assessment's total score, once assessed.
    pub total_score: Option<i32>,
    /// The committee's decision date (YYYY-MM-DD), once decided.
    pub decided_on: Option<NaiveDate>,
    /// The approved subsidy rate in basis points, once approved.
    pub approved_rate_bps: Option<i32>,
    /// The approved subsidy ceiling in HK cents, once approved.
    pub ceiling_cents: Option<i64>,
    /// Subsidy disbursed so far in HK cents (usage charges less reversals).
    pub disbursed_cents: i64,
    /// The project's first day under the funding agreement (YYYY-MM-DD).
    pub project_start: Option<NaiveDate>,
    /// The project's last day under the funding agreement (YYYY-MM-DD).
    pub project_end: Option<NaiveDate>,
    /// The first progress report due and not yet submitted (YYYY-MM-DD).
    pub next_report_due: Option<NaiveDate>,
}

const ROW_COLUMNS: &str = "application_id, status, batch_id, organisation, category, sub_type, project_title, develops_ai_models, \
     mainland_or_overseas_team, team_size, talents, requested_rate_bps, submitted_on, assessed_by, total_score, decided_on, \
     approved_rate_bps, ceiling_cents, disbursed_cents, project_start, project_end, next_report_due";

/// Sort orders of the list; each ends with the id so pages are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    #[default]
    SubmittedOn,
    ProjectTitle,
    Organisation,
    Status,
}

#[derive(Debug, Clone, Default)]
pub struct ApplicationFilter {
    pub status: Option<String>,
    pub category: Option<String>,
    pub batch_id: Option<String>,
    /// Submitted within this financial year (first and last day).
    pub submitted_between: Option<(NaiveDate, NaiveDate)>,
    /// Free text on the project title and the applicant.
    pub text: Option<String>,
    pub sort: Sort,
    pub descending: bool,
    pub offset: u32,
    pub limit: u32,
}

/// A page of the list and the number of matching applications.
pub async fn list(pool: &PgPool, filter: &ApplicationFilter) -> Result<(Vec<ApplicationRow>, i64), ProjectionError> {
    let column = match filter.sort {
        Sort::SubmittedOn => "submitted_on",
        Sort::ProjectTitle => "project_title",
        Sort::Organisation => "organisation",
        Sort::Status => "status",
    };
    let direction = if filter.descending { "DESC" } else { "ASC" };
    let mut page: QueryBuilder<Postgres> =
        QueryBuilder::new(format!("SELECT {ROW_COLUMNS} FROM read_models.applications_view"));
    rebind(&mut page, filter);
    page.push(format!(" ORDER BY {column} {direction}, application_id {direction} LIMIT "))
        .push_bind(i64::from(filter.limit.clamp(1, 500)))
        .push(" OFFSET ")
        .push_bind(i64::from(filter.offset));
    let rows = page.build_query_as::<ApplicationRow>().fetch_all(pool).await?;
    let mut count: QueryBuilder<Postgres> = QueryBuilder::new("SELECT count(*) FROM read_models.applications_view");
    rebind(&mut count, filter);
    let total: i64 = count.build().fetch_one(pool).await?.try_get(0)?;
    Ok((rows, total))
}

/// Appends the filter's conditions with their binds (a builder cannot be reused across queries).
fn rebind(query: &mut QueryBuilder<Postgres>, filter: &ApplicationFilter) {
    query.push(" WHERE true");
    if let Some(status) = &filter.status {
        query.push(" AND status = ").push_bind(status.clone());
    }
    if let Some(category) = &filter.category {
        query.push(" AND category = ").push_bind(category.clone());
    }
    if let Some(batch) = &filter.batch_id {
        query.push(" AND batch_id = ").push_bind(batch.clone());
    }
    if let Some((first, last)) = filter.submitted_between {
        query.push(" AND submitted_on BETWEEN ").push_bind(first).push(" AND ").push_bind(last);
    }
    if let Some(text) = &filter.text {
        // `search_text` is lower-cased by PostgreSQL; the pattern is too, by the same rules.
        let pattern = format!("%{}%", text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        query.push(" AND search_text LIKE lower(").push_bind(pattern).push(")");
    }
}

/// A batch's work: counts per stage and the ordered queues of the intake officers and the
/// committee secretariat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchQueue {
    pub batch_id: String,
    /// The last day to submit into the batch (YYYY-MM-DD).
    pub deadline: NaiveDate,
    /// The day the committee meets on the batch (YYYY-MM-DD).
    pub committee_date: NaiveDate,
    /// Closed to submissions.
    pub closed: bool,
    /// Applications of the batch per status (`submitted`, `eligible`, …).
    pub counts: std::collections::BTreeMap<String, i64>,
    /// Submitted, eligibility not yet ruled — oldest first.
    pub awaiting_eligibility: Vec<String>,
    /// Eligible, not yet assessed.
    pub awaiting_assessment: Vec<String>,
    /// Assessed (or deferred into this batch): for the committee.
    pub ready_for_committee: Vec<String>,
    /// Decided by the committee (approved, rejected, and on from there).
    pub decided: Vec<String>,
    /// Not ready for the committee although its meeting date has passed.
    pub overdue: Vec<String>,
}

pub async fn batch_queue(
    pool: &PgPool,
    batch_id: &str,
    today: NaiveDate,
) -> Result<Option<BatchQueue>, ProjectionError> {
    let Some(batch) = sqlx::query!(
        "SELECT deadline, committee_date, closed FROM read_models.batches_view WHERE batch_id = $1",
        batch_id
    )
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    let rows = sqlx::query!(
        "SELECT application_id, status FROM read_models.applications_view WHERE batch_id = $1 \
         ORDER BY submitted_on, application_id",
        batch_id
    )
    .fetch_all(pool)
    .await?;
    let mut queue = BatchQueue {
        batch_id: batch_id.to_string(),
        deadline: batch.deadline,
        committee_date: batch.committee_date,
        closed: batch.closed,
        counts: Default::default(),
        awaiting_eligibility: vec![],
        awaiting_assessment: vec![],
        ready_for_committee: vec![],
        decided: vec![],
        overdue: vec![],
    };
    for row in rows {
        let (id, status) = (row.application_id, row.status);
        *queue.counts.entry(status.clone()).or_default() += 1;
        let waiting = match status.as_str() {
            "submitted" => Some(&mut queue.awaiting_eligibility),
            "eligible" => Some(&mut queue.awaiting_assessment),
            "assessed" | "deferred" => {
                queue.ready_for_committee.push(id.clone());
                None
            }
            "withdrawn" | "ineligible" => None,
            _ => {
                queue.decided.push(id.clone());
                None
            }
        };
        if let Some(list) = waiting {
            list.push(id.clone());
            if today > queue.committee_date {
                queue.overdue.push(id);
            }
        }
    }
    Ok(Some(queue))
}

/// A usage charge of an application, as finance officers reconcile it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageLineRow {
    pub usage_id: String,
    /// The AISC service charged, e.g. `gpu_node_hour_h800`.
    pub service_type: String,
    /// The usage month (YYYY-MM).
    pub period: String,
    /// The funding year that pays the subsidy, e.g. `2025-26`.
    pub financial_year: String,
    /// Units of the service used.
    pub units: i64,
    /// Cyberport's rate in force, in HK cents per unit.
    pub rate_per_unit_cents: i64,
    /// Units times rate, in HK cents.
    pub gross_cents: i64,
    /// The approved subsidy rate applied, in basis points.
    pub subsidy_rate_bps: i32,
    /// The subsidy of the line, in HK cents.
    pub subsidy_cents: i64,
    /// Reversed after it was charged; a reversed line counts in no total.
    pub reversed: bool,
    /// Why it was reversed.
    pub reversal_reason: Option<String>,
    /// The position of $all at which the charge was recorded.
    pub charged_position: i64,
}

/// The computing power subsidy disbursed in a funding year: its usage charges, less reversals.
pub async fn disbursed_in_year(pool: &PgPool, year: &str) -> Result<i64, ProjectionError> {
    let disbursed = sqlx::query_scalar!(
        "SELECT disbursed_cents FROM read_models.budget_view WHERE year = $1 AND line = $2",
        year,
        SUBSIDY_LINE
    )
    .fetch_optional(pool)
    .await?;
    Ok(disbursed.unwrap_or(0))
}

/// Whether the read model holds the application.
pub async fn exists(pool: &PgPool, application_id: &str) -> Result<bool, ProjectionError> {
    Ok(sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM read_models.applications_view WHERE application_id = $1) AS "exists!""#,
        application_id
    )
    .fetch_one(pool)
    .await?)
}

/// Every usage charge of an application, by month then usage id.
pub async fn usage_lines(pool: &PgPool, application_id: &str) -> Result<Vec<UsageLineRow>, ProjectionError> {
    Ok(sqlx::query_as!(
        UsageLineRow,
        "SELECT usage_id, service_type, period, financial_year, units, rate_per_unit_cents, gross_cents, \
         subsidy_rate_bps, subsidy_cents, reversed, reversal_reason, charged_position \
         FROM read_models.usage_view WHERE application_id = $1 ORDER BY period, usage_id",
        application_id
    )
    .fetch_all(pool)
    .await?)
}

/// A page of an application's usage charges, with the count and totals of all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsagePage {
    pub lines: Vec<UsageLineRow>,
    /// Every charge, reversed ones included.
    pub total_lines: i64,
    /// Units, gross and subsidy of every charge not reversed.
    pub units: i64,
    pub gross_cents: i64,
    pub subsidy_cents: i64,
}

/// The charges `offset..offset + limit` of an application, by month then usage id, and the
/// totals over all its charges: both read through the usage table's primary key
/// (application_id, usage_id), so an application's thousands of lines cost one range each.
pub async fn usage_page(
    pool: &PgPool,
    application_id: &str,
    offset: u32,
    limit: u32,
) -> Result<UsagePage, ProjectionError> {
    let totals = sqlx::query!(
        r#"SELECT count(*) AS "total_lines!",
             coalesce(sum(units) FILTER (WHERE NOT reversed), 0)::bigint AS "units!",
             coalesce(sum(gross_cents) FILTER (WHERE NOT reversed), 0)::bigint AS "gross_cents!",
             coalesce(sum(subsidy_cents) FILTER (WHERE NOT reversed), 0)::bigint AS "subsidy_cents!"
           FROM read_models.usage_view WHERE application_id = $1"#,
        application_id
    )
    .fetch_one(pool)
    .await?;
    let lines = sqlx::query_as!(
        UsageLineRow,
        "SELECT usage_id, service_type, period, financial_year, units, rate_per_unit_cents, gross_cents, \
         subsidy_rate_bps, subsidy_cents, reversed, reversal_reason, charged_position \
         FROM read_models.usage_view WHERE application_id = $1 ORDER BY period, usage_id OFFSET $2 LIMIT $3",
        application_id,
        i64::from(offset),
        i64::from(limit.clamp(1, 500))
    )
    .fetch_all(pool)
    .await?;
    Ok(UsagePage {
        lines,
        total_lines: totals.total_lines,
        units: totals.units,
        gross_cents: totals.gross_cents,
        subsidy_cents: totals.subsidy_cents,
    })
}

/// A funding year's disbursements in one usage month: charges not reversed, their units, gross
/// and subsidy, and what was reversed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MonthDisbursement {
    /// The usage month (YYYY-MM).
    pub period: String,
    /// The AISC service, e.g. `gpu_node_hour_h800`.
    pub service_type: String,
    /// Usage charges not reversed.
    pub lines: i64,
    /// Units of those charges.
    pub units: i64,
    /// Their gross amount in HK cents.
    pub gross_cents: i64,
    /// Their subsidy in HK cents.
    pub subsidy_cents: i64,
    /// Charges reversed.
    pub reversed_lines: i64,
    /// The subsidy of the reversed charges, in HK cents (not in `subsidy_cents`).
    pub reversed_subsidy_cents: i64,
}

/// The disbursement figures of a funding year, per usage month and service.
pub async fn disbursements(pool: &PgPool, year: &str) -> Result<Vec<MonthDisbursement>, ProjectionError> {
    Ok(sqlx::query_as!(
        MonthDisbursement,
        r#"SELECT period, service_type,
             count(*) FILTER (WHERE NOT reversed) AS "lines!",
             coalesce(sum(units) FILTER (WHERE NOT reversed), 0)::bigint AS "units!",
             coalesce(sum(gross_cents) FILTER (WHERE NOT reversed), 0)::bigint AS "gross_cents!",
             coalesce(sum(subsidy_cents) FILTER (WHERE NOT reversed), 0)::bigint AS "subsidy_cents!",
             count(*) FILTER (WHERE reversed) AS "reversed_lines!",
             coalesce(sum(subsidy_cents) FILTER (WHERE reversed), 0)::bigint AS "reversed_subsidy_cents!"
           FROM read_models.usage_view WHERE financial_year = $1
           GROUP BY period, service_type ORDER BY period, service_type"#,
        year
    )
    .fetch_all(pool)
    .await?)
}

/// Where a page of an export ends: the next page starts after this key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageExportKey {
    pub financial_year: String,
    pub period: String,
    pub application_id: String,
    pub usage_id: String,
}

/// A usage charge as the disbursements export lists it: the usage view's line with its
/// applicant, business date and recorded time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageExportRow {
    pub application_id: String,
    pub organisation: String,
    pub usage_id: String,
    pub period: String,
    pub service_type: String,
    pub units: i64,
    pub rate_per_unit_cents: i64,
    pub gross_cents: i64,
    pub subsidy_rate_bps: i32,
    pub subsidy_cents: i64,
    pub reversed: bool,
    pub financial_year: String,
    pub charged_on: NaiveDate,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
}

impl UsageExportRow {
    pub fn key(&self) -> UsageExportKey {
        UsageExportKey {
            financial_year: self.financial_year.clone(),
            period: self.period.clone(),
            application_id: self.application_id.clone(),
            usage_id: self.usage_id.clone(),
        }
    }
}

/// A page of usage charges (of one funding year, or all) after `after`, in the order of the
/// index `usage_view_by_year`: each page is one index range scan, so an export of any length
/// reads in bounded memory and holds no transaction open between pages.
pub async fn usage_export_page(
    pool: &PgPool,
    year: Option<&str>,
    after: Option<&UsageExportKey>,
    limit: i64,
) -> Result<Vec<UsageExportRow>, ProjectionError> {
    let empty = String::new();
    let (after_year, after_period, after_application, after_usage) = match after {
        Some(key) => (&key.financial_year, &key.period, &key.application_id, &key.usage_id),
        None => (&empty, &empty, &empty, &empty),
    };
    let rows = match year {
        Some(year) => {
            // Within a year the key's year is that year; the page starts after the rest of it.
            let (period, application, usage) =
                if after.is_some() { (after_period, after_application, after_usage) } else { (&empty, &empty, &empty) };
            sqlx::query_as!(
                UsageExportRow,
                r#"SELECT u.application_id, a.organisation AS "organisation!", u.usage_id, u.period, u.service_type,
                     u.units, u.rate_per_unit_cents, u.gross_cents, u.subsidy_rate_bps, u.subsidy_cents, u.reversed,
                     u.financial_year, u.charged_on, u.recorded_at
                   FROM read_models.usage_view u
                   JOIN read_models.applications_view a ON a.application_id = u.application_id
                   WHERE u.financial_year = $1 AND (u.period, u.application_id, u.usage_id) > ($2, $3, $4)
                   ORDER BY u.period, u.application_id, u.usage_id LIMIT $5"#,
                year,
                period,
                application,
                usage,
                limit
            )
            .fetch_all(pool)
            .await?
        }
        None => {
            sqlx::query_as!(
                UsageExportRow,
                r#"SELECT u.application_id, a.organisation AS "organisation!", u.usage_id, u.period, u.service_type,
                     u.units, u.rate_per_unit_cents, u.gross_cents, u.subsidy_rate_bps, u.subsidy_cents, u.reversed,
                     u.financial_year, u.charged_on, u.recorded_at
                   FROM read_models.usage_view u
                   JOIN read_models.applications_view a ON a.application_id = u.application_id
                   WHERE (u.financial_year, u.period, u.application_id, u.usage_id) > ($1, $2, $3, $4)
                   ORDER BY u.financial_year, u.period, u.application_id, u.usage_id LIMIT $5"#,
                after_year,
                after_period,
                after_application,
                after_usage,
                limit
            )
            .fetch_all(pool)
            .await?
        }
    };
    Ok(rows)
}

/// A page of applications (submitted within `submitted_between`, or all) after the
/// (submission date, id) `after`, in the order of the index `applications_view_by_submission`.
pub async fn applications_export_page(
    pool: &PgPool,
    submitted_between: Option<(NaiveDate, NaiveDate)>,
    after: Option<(NaiveDate, &str)>,
    limit: i64,
) -> Result<Vec<ApplicationRow>, ProjectionError> {
    let (first, last) = submitted_between.unzip();
    let (after_day, after_id) = after.unzip();
    Ok(sqlx::query_as!(
        ApplicationRow,
        "SELECT application_id, status, batch_id, organisation, category, sub_type, project_title, develops_ai_models, \
           mainland_or_overseas_team, team_size, talents, requested_rate_bps, submitted_on, assessed_by, total_score, \
           decided_on, approved_rate_bps, ceiling_cents, disbursed_cents, project_start, project_end, next_report_due \
         FROM read_models.applications_view \
         WHERE ($1::date IS NULL OR submitted_on BETWEEN $1 AND $2) \
           AND ($3::date IS NULL OR (submitted_on, application_id) > ($3, $4)) \
         ORDER BY submitted_on, application_id LIMIT $5",
        first,
        last,
        after_day,
        after_id,
        limit
    )
    .fetch_all(pool)
    .await?)
}

/// A funding year's budget line as the read model has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BudgetLineRow {
    pub year: String,
    pub line: String,
    pub received_cents: i64,
    pub committed_cents: i64,
    pub disbursed_cents: i64,
    pub redirected_cents: i64,
}

/// The budget lines of one funding year, or of all, by year and line.
pub async fn budget_lines(pool: &PgPool, year: Option<&str>) -> Result<Vec<BudgetLineRow>, ProjectionError> {
    Ok(sqlx::query_as!(
        BudgetLineRow,
        "SELECT year, line, received_cents, committed_cents, disbursed_cents, redirected_cents \
         FROM read_models.budget_view WHERE ($1::text IS NULL OR year = $1) ORDER BY year, line",
        year
    )
    .fetch_all(pool)
    .await?)
}
