//! The applications read model staff open every day — a row per application with its stage,
//! applicant, batch, decision and money — and the batch calendar beside it, from which the
//! batch work queues are read.

use aisc_domain::command_service::EventCodec;
use aisc_domain::event_store::RecordedEvent;
use aisc_domain::subsidy::application::ApplicationEvent;
use aisc_domain::subsidy::batches::BatchEvent;
use aisc_domain::subsidy::capacity::CapacityEvent;
use aisc_domain::subsidy::funding::{BudgetLine, FundingEvent};
use async_trait::async_trait;
use chrono::NaiveDate;
use serde::Serialize;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder, Row};

use crate::projection::{Projection, ProjectionError, TableSpec};

pub const NAME: &str = "applications";

const TABLES: &[TableSpec] = &[
    TableSpec {
        name: "applications_view",
        ddl: "CREATE TABLE {schema}.applications_view (
                  application_id            text    PRIMARY KEY,
                  status                    text    NOT NULL,
                  batch_id                  text    NOT NULL,
                  organisation              text    NOT NULL,
                  category                  text    NOT NULL,
                  sub_type                  text    NOT NULL,
                  project_title             text    NOT NULL,
                  develops_ai_models        boolean NOT NULL,
                  mainland_or_overseas_team boolean NOT NULL,
                  team_size                 integer NOT NULL,
                  talents                   integer NOT NULL,
                  requested_rate_bps        integer NOT NULL,
                  submitted_on              date    NOT NULL,
                  assessed_by               text,
                  total_score               integer,
                  decided_on                date,
                  approved_rate_bps         integer,
                  ceiling_cents             bigint,
                  disbursed_cents           bigint  NOT NULL DEFAULT 0,
                  units_allocated           bigint  NOT NULL DEFAULT 0,
                  units_used                bigint  NOT NULL DEFAULT 0,
                  project_start             date,
                  project_end               date,
                  report_due_dates          date[]  NOT NULL DEFAULT '{}',
                  reports_submitted         date[]  NOT NULL DEFAULT '{}',
                  next_report_due           date,
                  last_position             bigint  NOT NULL
              );
              CREATE INDEX applications_view_by_status ON {schema}.applications_view (status, submitted_on);
              CREATE INDEX applications_view_by_batch ON {schema}.applications_view (batch_id, status, submitted_on);
              CREATE INDEX applications_view_by_category ON {schema}.applications_view (category, submitted_on);",
    },
    TableSpec {
        name: "budget_view",
        ddl: "CREATE TABLE {schema}.budget_view (
                  year             text   NOT NULL,
                  line             text   NOT NULL,
                  received_cents   bigint NOT NULL DEFAULT 0,
                  committed_cents  bigint NOT NULL DEFAULT 0,
                  disbursed_cents  bigint NOT NULL DEFAULT 0,
                  redirected_cents bigint NOT NULL DEFAULT 0,
                  PRIMARY KEY (year, line)
              );",
    },
    TableSpec {
        name: "capacity_view",
        ddl: "CREATE TABLE {schema}.capacity_view (
                  service_type text   NOT NULL,
                  period       text   NOT NULL,
                  capacity     bigint NOT NULL DEFAULT 0,
                  allocated    bigint NOT NULL DEFAULT 0,
                  redeployed   bigint NOT NULL DEFAULT 0,
                  PRIMARY KEY (service_type, period)
              );",
    },
    TableSpec {
        name: "batches_view",
        ddl: "CREATE TABLE {schema}.batches_view (
                  batch_id       text    PRIMARY KEY,
                  deadline       date    NOT NULL,
                  committee_date date    NOT NULL,
                  closed         boolean NOT NULL DEFAULT false
              );",
    },
];

const APPLICATION_EVENTS: [&str; 16] = [
    "ApplicationSubmitted",
    "ApplicationAmended",
    "ApplicationWithdrawn",
    "EligibilityConfirmed",
    "RuledIneligible",
    "AssessmentRecorded",
    "ApplicationApproved",
    "ApplicationRejected",
    "ApplicationDeferred",
    "AgreementSigned",
    "UsageCharged",
    "DisbursementReversed",
    "ProgressReportSubmitted",
    "ProgressReportReviewed",
    "ApplicationCompleted",
    "ApplicationTerminated",
];

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

    fn version(&self) -> i32 {
        2
    }

    fn tables(&self) -> &'static [TableSpec] {
        TABLES
    }

    fn handles(&self, event_type: &str) -> bool {
        APPLICATION_EVENTS.contains(&event_type)
            || FundingEvent::EVENT_TYPES.contains(&event_type)
            || CapacityEvent::EVENT_TYPES.contains(&event_type)
            || event_type == "BatchOpened"
            || event_type == "BatchClosed"
    }

    async fn apply(
        &self,
        connection: &mut PgConnection,
        schema: &str,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        for event in events {
            match event.stream.category() {
                "batches" => apply_batch_event(connection, schema, event).await?,
                "application" => apply_application_event(connection, schema, event).await?,
                "budget" => apply_budget_event(connection, schema, event).await?,
                "capacity" => apply_capacity_event(connection, schema, event).await?,
                _ => {}
            }
        }
        Ok(())
    }
}

async fn apply_batch_event(
    connection: &mut PgConnection,
    schema: &str,
    event: &RecordedEvent,
) -> Result<(), ProjectionError> {
    let decoded = BatchEvent::from_stored(&event.event_type, event.schema_version, &event.data)
        .map_err(|error| bad(event, error))?;
    match decoded {
        BatchEvent::BatchOpened { batch_id, deadline, committee_date } => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {schema}.batches_view (batch_id, deadline, committee_date) VALUES ($1, $2, $3)"
            )))
            .bind(batch_id)
            .bind(deadline)
            .bind(committee_date)
            .execute(&mut *connection)
            .await?;
        }
        BatchEvent::BatchClosed { batch_id, .. } => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE {schema}.batches_view SET closed = true WHERE batch_id = $1"
            )))
            .bind(batch_id)
            .execute(&mut *connection)
            .await?;
        }
    }
    Ok(())
}

async fn apply_application_event(
    connection: &mut PgConnection,
    schema: &str,
    event: &RecordedEvent,
) -> Result<(), ProjectionError> {
    use ApplicationEvent as E;
    let decoded = ApplicationEvent::from_stored(&event.event_type, event.schema_version, &event.data)
        .map_err(|error| bad(event, error))?;
    let id = event.stream.as_str().trim_start_matches("application-").to_string();
    let position = to_i64(event.position.0);
    // Every change sets the row's last position; each arm adds its own columns.
    let update = |assignments: &str| {
        format!("UPDATE {schema}.applications_view SET last_position = $2, {assignments} WHERE application_id = $1")
    };
    match decoded {
        E::ApplicationSubmitted { batch_id, submitted_on, submission, .. } => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {schema}.applications_view (application_id, last_position, status, batch_id, organisation, category, sub_type, \
                 project_title, develops_ai_models, mainland_or_overseas_team, team_size, talents, requested_rate_bps, submitted_on) \
                 VALUES ($1, $2, 'submitted', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
            )))
            .bind(&id)
            .bind(position)
            .bind(batch_id)
            .bind(submission.organisation)
            .bind(submission.category.as_str())
            .bind(submission.sub_type)
            .bind(submission.project_title)
            .bind(submission.develops_ai_models)
            .bind(submission.mainland_or_overseas_team)
            .bind(i32::try_from(submission.team_size).unwrap_or(i32::MAX))
            .bind(i32::try_from(submission.talents).unwrap_or(i32::MAX))
            .bind(i32::try_from(submission.requested_rate.bps()).unwrap_or(i32::MAX))
            .bind(submitted_on)
            .execute(&mut *connection)
            .await?;
        }
        E::ApplicationAmended { submission, .. } => {
            sqlx::query(sqlx::AssertSqlSafe(update(
                "organisation = $3, category = $4, sub_type = $5, project_title = $6, develops_ai_models = $7, \
                 mainland_or_overseas_team = $8, team_size = $9, talents = $10, requested_rate_bps = $11",
            )))
            .bind(&id)
            .bind(position)
            .bind(submission.organisation)
            .bind(submission.category.as_str())
            .bind(submission.sub_type)
            .bind(submission.project_title)
            .bind(submission.develops_ai_models)
            .bind(submission.mainland_or_overseas_team)
            .bind(i32::try_from(submission.team_size).unwrap_or(i32::MAX))
            .bind(i32::try_from(submission.talents).unwrap_or(i32::MAX))
            .bind(i32::try_from(submission.requested_rate.bps()).unwrap_or(i32::MAX))
            .execute(&mut *connection)
            .await?;
        }
        E::AssessmentRecorded { assessor, total_score, .. } => {
            sqlx::query(sqlx::AssertSqlSafe(update("status = 'assessed', assessed_by = $3, total_score = $4")))
                .bind(&id)
                .bind(position)
                .bind(assessor)
                .bind(i32::try_from(total_score).unwrap_or(i32::MAX))
                .execute(&mut *connection)
                .await?;
        }
        E::ApplicationApproved { meeting, approval } => {
            let allocated: u64 = approval.allocations.iter().map(|allocation| allocation.units).sum();
            sqlx::query(sqlx::AssertSqlSafe(update(
                "status = 'approved', decided_on = $3, approved_rate_bps = $4, ceiling_cents = $5, project_start = $6, project_end = $7, \
                 units_allocated = $8",
            )))
            .bind(&id)
            .bind(position)
            .bind(meeting.decided_on)
            .bind(i32::try_from(approval.rate.bps()).unwrap_or(i32::MAX))
            .bind(approval.ceiling.cents())
            .bind(approval.start)
            .bind(approval.end)
            .bind(to_i64(allocated))
            .execute(&mut *connection)
            .await?;
        }
        E::ApplicationRejected { meeting, .. } => {
            set_status_on(
                connection,
                &update("status = 'rejected', decided_on = $3"),
                &id,
                position,
                meeting.decided_on,
            )
            .await?;
        }
        E::ApplicationDeferred { to_batch_id, .. } => {
            sqlx::query(sqlx::AssertSqlSafe(update("status = 'deferred', batch_id = $3")))
                .bind(&id)
                .bind(position)
                .bind(to_batch_id)
                .execute(&mut *connection)
                .await?;
        }
        E::AgreementSigned { reporting_due_dates, .. } => {
            sqlx::query(sqlx::AssertSqlSafe(update(
                "status = 'agreement_signed', report_due_dates = $3, next_report_due = (SELECT min(d) FROM unnest($3::date[]) d)",
            )))
            .bind(&id)
            .bind(position)
            .bind(reporting_due_dates)
            .execute(&mut *connection)
            .await?;
        }
        E::UsageCharged { disbursed_total, units, .. } => {
            sqlx::query(sqlx::AssertSqlSafe(update("disbursed_cents = $3, units_used = units_used + $4")))
                .bind(&id)
                .bind(position)
                .bind(disbursed_total.cents())
                .bind(to_i64(units))
                .execute(&mut *connection)
                .await?;
        }
        E::DisbursementReversed { disbursed_total, units, .. } => {
            sqlx::query(sqlx::AssertSqlSafe(update("disbursed_cents = $3, units_used = units_used - $4")))
                .bind(&id)
                .bind(position)
                .bind(disbursed_total.cents())
                .bind(to_i64(units))
                .execute(&mut *connection)
                .await?;
        }
        E::ProgressReportSubmitted { due, .. } => {
            sqlx::query(sqlx::AssertSqlSafe(update(
                "reports_submitted = array_append(reports_submitted, $3), \
                 next_report_due = (SELECT min(d) FROM unnest(report_due_dates) d WHERE d <> ALL (array_append(reports_submitted, $3)))",
            )))
            .bind(&id)
            .bind(position)
            .bind(due)
            .execute(&mut *connection)
            .await?;
        }
        E::ApplicationWithdrawn { .. } => {
            set_status(connection, &update("status = 'withdrawn'"), &id, position).await?
        }
        E::EligibilityConfirmed { .. } => set_status(connection, &update("status = 'eligible'"), &id, position).await?,
        E::RuledIneligible { .. } => set_status(connection, &update("status = 'ineligible'"), &id, position).await?,
        E::ProgressReportReviewed { .. } => set_status(connection, &update("status = status"), &id, position).await?,
        E::ApplicationCompleted { .. } => {
            set_status(connection, &update("status = 'completed', next_report_due = NULL"), &id, position).await?
        }
        E::ApplicationTerminated { .. } => {
            set_status(connection, &update("status = 'terminated', next_report_due = NULL"), &id, position).await?
        }
    }
    Ok(())
}

fn line_name(line: BudgetLine) -> &'static str {
    match line {
        BudgetLine::ComputingPowerSubsidy => "computing_power_subsidy",
        BudgetLine::CyberAndDataSecurity => "cyber_and_data_security",
        BudgetLine::AiEcosystemDevelopment => "ai_ecosystem_development",
    }
}

async fn apply_budget_event(
    connection: &mut PgConnection,
    schema: &str,
    event: &RecordedEvent,
) -> Result<(), ProjectionError> {
    let decoded = FundingEvent::from_stored(&event.event_type, event.schema_version, &event.data)
        .map_err(|error| bad(event, error))?;
    let year = event.stream.as_str().trim_start_matches("budget-").to_string();
    // Every budget fact but receipts concerns the computing power subsidy line.
    let (line, column, value) = match decoded {
        FundingEvent::FundingReceived { line, line_total, .. } => {
            (line_name(line), "received_cents", line_total.cents())
        }
        FundingEvent::SubsidyCommitted { committed_total, .. }
        | FundingEvent::SubsidyReleased { committed_total, .. } => {
            ("computing_power_subsidy", "committed_cents", committed_total.cents())
        }
        FundingEvent::SubsidyDisbursed { disbursed_total, .. }
        | FundingEvent::SubsidyDisbursementReversed { disbursed_total, .. } => {
            ("computing_power_subsidy", "disbursed_cents", disbursed_total.cents())
        }
        FundingEvent::UnusedSubsidyRedirected { amount, .. } => {
            ("computing_power_subsidy", "redirected_cents", amount.cents())
        }
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {schema}.budget_view (year, line, {column}) VALUES ($1, $2, $3) \
         ON CONFLICT (year, line) DO UPDATE SET {column} = EXCLUDED.{column}"
    )))
    .bind(year)
    .bind(line)
    .bind(value)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

async fn apply_capacity_event(
    connection: &mut PgConnection,
    schema: &str,
    event: &RecordedEvent,
) -> Result<(), ProjectionError> {
    let decoded = CapacityEvent::from_stored(&event.event_type, event.schema_version, &event.data)
        .map_err(|error| bad(event, error))?;
    let (service, period, column, value) = match decoded {
        CapacityEvent::CapacityDeclared { service_type, period, units, .. } => {
            (service_type, period, "capacity", units)
        }
        CapacityEvent::CapacityAllocated { service_type, period, allocated_total, .. }
        | CapacityEvent::CapacityReleased { service_type, period, allocated_total, .. } => {
            (service_type, period, "allocated", allocated_total)
        }
        CapacityEvent::CapacityRedeployed { service_type, period, redeployed_total, .. } => {
            (service_type, period, "redeployed", redeployed_total)
        }
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {schema}.capacity_view (service_type, period, {column}) VALUES ($1, $2, $3) \
         ON CONFLICT (service_type, period) DO UPDATE SET {column} = EXCLUDED.{column}"
    )))
    .bind(service.as_str())
    .bind(period.to_string())
    .bind(to_i64(value))
    .execute(&mut *connection)
    .await?;
    Ok(())
}

async fn set_status(connection: &mut PgConnection, sql: &str, id: &str, position: i64) -> Result<(), ProjectionError> {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).bind(id).bind(position).execute(&mut *connection).await?;
    Ok(())
}

async fn set_status_on(
    connection: &mut PgConnection,
    sql: &str,
    id: &str,
    position: i64,
    day: NaiveDate,
) -> Result<(), ProjectionError> {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .bind(id)
        .bind(position)
        .bind(day)
        .execute(&mut *connection)
        .await?;
    Ok(())
}

/// One row of the applications list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ApplicationRow {
    pub application_id: String,
    pub status: String,
    pub batch_id: String,
    pub organisation: String,
    pub category: String,
    pub sub_type: String,
    pub project_title: String,
    pub develops_ai_models: bool,
    pub mainland_or_overseas_team: bool,
    pub team_size: i32,
    pub talents: i32,
    pub requested_rate_bps: i32,
    pub submitted_on: NaiveDate,
    pub assessed_by: Option<String>,
    pub total_score: Option<i32>,
    pub decided_on: Option<NaiveDate>,
    pub approved_rate_bps: Option<i32>,
    pub ceiling_cents: Option<i64>,
    pub disbursed_cents: i64,
    pub project_start: Option<NaiveDate>,
    pub project_end: Option<NaiveDate>,
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
    let mut page: QueryBuilder<Postgres> = QueryBuilder::new(format!("SELECT {ROW_COLUMNS} FROM applications_view"));
    rebind(&mut page, filter);
    page.push(format!(" ORDER BY {column} {direction}, application_id {direction} LIMIT "))
        .push_bind(i64::from(filter.limit.clamp(1, 500)))
        .push(" OFFSET ")
        .push_bind(i64::from(filter.offset));
    let rows = page.build_query_as::<ApplicationRow>().fetch_all(pool).await?;
    let mut count: QueryBuilder<Postgres> = QueryBuilder::new("SELECT count(*) FROM applications_view");
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
        let pattern = format!("%{}%", text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        query
            .push(" AND (project_title ILIKE ")
            .push_bind(pattern.clone())
            .push(" OR organisation ILIKE ")
            .push_bind(pattern)
            .push(")");
    }
}

/// A batch's work: counts per stage and the ordered queues of the intake officers and the
/// committee secretariat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchQueue {
    pub batch_id: String,
    pub deadline: NaiveDate,
    pub committee_date: NaiveDate,
    pub closed: bool,
    pub counts: std::collections::BTreeMap<String, i64>,
    /// Submitted, eligibility not yet ruled — oldest first.
    pub awaiting_eligibility: Vec<String>,
    /// Eligible, not yet assessed.
    pub awaiting_assessment: Vec<String>,
    /// Assessed (or deferred into this batch): for the committee.
    pub ready_for_committee: Vec<String>,
    pub decided: Vec<String>,
    /// Not ready for the committee although its meeting date has passed.
    pub overdue: Vec<String>,
}

pub async fn batch_queue(
    pool: &PgPool,
    batch_id: &str,
    today: NaiveDate,
) -> Result<Option<BatchQueue>, ProjectionError> {
    let Some(batch) = sqlx::query("SELECT deadline, committee_date, closed FROM batches_view WHERE batch_id = $1")
        .bind(batch_id)
        .fetch_optional(pool)
        .await?
    else {
        return Ok(None);
    };
    let (deadline, committee_date, closed): (NaiveDate, NaiveDate, bool) =
        (batch.try_get("deadline")?, batch.try_get("committee_date")?, batch.try_get("closed")?);
    let rows = sqlx::query("SELECT application_id, status FROM applications_view WHERE batch_id = $1 ORDER BY submitted_on, application_id")
        .bind(batch_id)
        .fetch_all(pool)
        .await?;
    let mut queue = BatchQueue {
        batch_id: batch_id.to_string(),
        deadline,
        committee_date,
        closed,
        counts: Default::default(),
        awaiting_eligibility: vec![],
        awaiting_assessment: vec![],
        ready_for_committee: vec![],
        decided: vec![],
        overdue: vec![],
    };
    for row in rows {
        let (id, status): (String, String) = (row.try_get("application_id")?, row.try_get("status")?);
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
            if today > committee_date {
                queue.overdue.push(id);
            }
        }
    }
    Ok(Some(queue))
}
