//! The applications read model staff open every day — a row per application with its stage,
//! applicant, batch, decision and money — and the batch calendar beside it, from which the
//! batch work queues are read.

use aisc_domain::event_store::RecordedEvent;
use aisc_domain::subsidy::application::ApplicationEvent;
use aisc_domain::subsidy::batches::BatchEvent;
use aisc_domain::subsidy::capacity::CapacityEvent;
use aisc_domain::subsidy::funding::{BudgetLine, FundingEvent};
use aisc_domain::subsidy::prices::PriceEvent;
use aisc_domain::subsidy::streams;
use async_trait::async_trait;
use chrono::NaiveDate;
use serde::Serialize;
use std::collections::BTreeMap;

use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder, Row};

use crate::projection::{Interest, Projection, ProjectionError, TableSpec};

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
        name: "usage_view",
        ddl: "CREATE TABLE {schema}.usage_view (
                  application_id      text    NOT NULL,
                  usage_id            text    NOT NULL,
                  service_type        text    NOT NULL,
                  period              text    NOT NULL,
                  financial_year      text    NOT NULL,
                  units               bigint  NOT NULL,
                  rate_per_unit_cents bigint  NOT NULL,
                  gross_cents         bigint  NOT NULL,
                  subsidy_rate_bps    integer NOT NULL,
                  subsidy_cents       bigint  NOT NULL,
                  reversed            boolean NOT NULL DEFAULT false,
                  reversal_reason     text,
                  charged_position    bigint  NOT NULL,
                  PRIMARY KEY (application_id, usage_id)
              );
              CREATE INDEX usage_view_by_year ON {schema}.usage_view (financial_year, period);",
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
        4
    }

    fn tables(&self) -> &'static [TableSpec] {
        TABLES
    }

    /// Every event of applications, batches, funding years and capacity; the price schedule
    /// is not shown here (each usage charge carries the rate it was charged at).
    fn interest(&self, event_type: &str) -> Option<Interest> {
        Interest::declared(
            event_type,
            &[
                ApplicationEvent::EVENT_TYPES,
                BatchEvent::EVENT_TYPES,
                FundingEvent::EVENT_TYPES,
                CapacityEvent::EVENT_TYPES,
            ],
            &[PriceEvent::EVENT_TYPES],
        )
    }

    /// Folds the batch in memory per row, then writes each table with one or two statements:
    /// a batch costs a handful of round trips whatever its size.
    async fn apply(
        &self,
        connection: &mut PgConnection,
        schema: &str,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let mut changes = BatchChanges::default();
        for event in events {
            match event.stream.category() {
                streams::category::BATCHES => changes.batch_event(event)?,
                streams::category::APPLICATION => changes.application_event(event)?,
                streams::category::BUDGET => changes.budget_event(event)?,
                streams::category::CAPACITY => changes.capacity_event(event)?,
                _ => {}
            }
        }
        changes.write(connection, schema).await
    }
}

/// A new application row, from its submission.
#[derive(Debug, Clone)]
struct NewApplication {
    batch_id: String,
    submitted_on: NaiveDate,
    organisation: String,
    category: String,
    sub_type: String,
    project_title: String,
    develops_ai_models: bool,
    mainland_or_overseas_team: bool,
    team_size: i32,
    talents: i32,
    requested_rate_bps: i32,
}

/// What a batch's events change in one application row; `None` leaves a column as it is.
#[derive(Debug, Clone, Default)]
struct ApplicationChange {
    last_position: i64,
    status: Option<&'static str>,
    batch_id: Option<String>,
    organisation: Option<String>,
    category: Option<String>,
    sub_type: Option<String>,
    project_title: Option<String>,
    develops_ai_models: Option<bool>,
    mainland_or_overseas_team: Option<bool>,
    team_size: Option<i32>,
    talents: Option<i32>,
    requested_rate_bps: Option<i32>,
    assessed_by: Option<String>,
    total_score: Option<i32>,
    decided_on: Option<NaiveDate>,
    approved_rate_bps: Option<i32>,
    ceiling_cents: Option<i64>,
    project_start: Option<NaiveDate>,
    project_end: Option<NaiveDate>,
    units_allocated: Option<i64>,
    disbursed_cents: Option<i64>,
    units_used_delta: i64,
    report_due_dates: Option<Vec<NaiveDate>>,
    reports_submitted: Vec<NaiveDate>,
}

/// Totals of a funding year's line, or of a service type's month: the last value of each.
#[derive(Debug, Clone, Copy, Default)]
struct Totals([Option<i64>; 4]);

/// A batch of events folded per row, in log order.
#[derive(Debug, Default)]
struct BatchChanges {
    batches_opened: Vec<(String, NaiveDate, NaiveDate)>,
    batches_closed: Vec<String>,
    new_applications: BTreeMap<String, NewApplication>,
    applications: BTreeMap<String, ApplicationChange>,
    budget: BTreeMap<(String, &'static str), Totals>,
    capacity: BTreeMap<(String, String), Totals>,
    usage_charged: Vec<UsageRow>,
    /// (application, usage id, reason) of each reversal, in log order.
    usage_reversed: Vec<(String, String, String)>,
}

const SUBSIDY_LINE: &str = "computing_power_subsidy";

/// A usage charge as finance officers read it: units, rate, gross and subsidy.
#[derive(Debug, Clone)]
struct UsageRow {
    application_id: String,
    usage_id: String,
    service_type: String,
    period: String,
    financial_year: String,
    units: i64,
    rate_per_unit_cents: i64,
    gross_cents: i64,
    subsidy_rate_bps: i32,
    subsidy_cents: i64,
    charged_position: i64,
}

fn clamp_i32(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

fn dates_text(dates: &[NaiveDate]) -> String {
    dates.iter().map(NaiveDate::to_string).collect::<Vec<_>>().join(",")
}

impl BatchChanges {
    fn batch_event(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        match event.decode::<BatchEvent>().map_err(|error| bad(event, error))? {
            BatchEvent::BatchOpened(e) => self.batches_opened.push((e.batch_id, e.deadline, e.committee_date)),
            BatchEvent::BatchClosed(e) => self.batches_closed.push(e.batch_id),
        }
        Ok(())
    }

    fn application_event(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        use ApplicationEvent as E;
        let decoded = event.decode::<ApplicationEvent>().map_err(|error| bad(event, error))?;
        let id = streams::application_id(&event.stream).unwrap_or_default().to_string();
        if let E::ApplicationSubmitted(submitted) = &decoded {
            let submission = &submitted.details;
            self.new_applications.insert(
                id.clone(),
                NewApplication {
                    batch_id: submitted.batch_id.clone(),
                    submitted_on: submitted.submitted_on,
                    organisation: submission.organisation.clone(),
                    category: submission.category.as_str().to_string(),
                    sub_type: submission.sub_type.clone(),
                    project_title: submission.project_title.clone(),
                    develops_ai_models: submission.develops_ai_models,
                    mainland_or_overseas_team: submission.mainland_or_overseas_team,
                    team_size: clamp_i32(submission.team_size),
                    talents: clamp_i32(submission.talents),
                    requested_rate_bps: clamp_i32(submission.requested_rate.bps()),
                },
            );
        }
        let change = self.applications.entry(id.clone()).or_default();
        change.last_position = to_i64(event.position.0);
        match decoded {
            E::ApplicationSubmitted(_) => {}
            E::ApplicationAmended(amended) => {
                let submission = amended.details;
                change.organisation = Some(submission.organisation);
                change.category = Some(submission.category.as_str().to_string());
                change.sub_type = Some(submission.sub_type);
                change.project_title = Some(submission.project_title);
                change.develops_ai_models = Some(submission.develops_ai_models);
                change.mainland_or_overseas_team = Some(submission.mainland_or_overseas_team);
                change.team_size = Some(clamp_i32(submission.team_size));
                change.talents = Some(clamp_i32(submission.talents));
                change.requested_rate_bps = Some(clamp_i32(submission.requested_rate.bps()));
            }
            E::AssessmentRecorded(e) => {
                change.status = Some("assessed");
                change.assessed_by = Some(e.assessor);
                change.total_score = Some(clamp_i32(e.total_score));
            }
            E::ApplicationApproved(e) => {
                let approval = e.terms;
                change.status = Some("approved");
                change.decided_on = Some(e.committee.decided_on);
                change.approved_rate_bps = Some(clamp_i32(approval.rate.bps()));
                change.ceiling_cents = Some(approval.ceiling.cents());
                change.project_start = Some(approval.start);
                change.project_end = Some(approval.end);
                change.units_allocated = Some(to_i64(approval.allocations.iter().map(|a| a.units).sum()));
            }
            E::ApplicationRejected(e) => {
                change.status = Some("rejected");
                change.decided_on = Some(e.committee.decided_on);
            }
            E::ApplicationDeferred(e) => {
                change.status = Some("deferred");
                change.batch_id = Some(e.to_batch_id);
            }
            E::AgreementSigned(e) => {
                change.status = Some("agreement_signed");
                change.report_due_dates = Some(e.reporting_due_dates);
            }
            E::UsageCharged(e) => {
                change.disbursed_cents = Some(e.disbursed_total.cents());
                change.units_used_delta += to_i64(e.units);
                self.usage_charged.push(UsageRow {
                    application_id: id,
                    usage_id: e.usage_id,
                    service_type: e.service_type.as_str().to_string(),
                    period: e.period.to_string(),
                    financial_year: e.financial_year.to_string(),
                    units: to_i64(e.units),
                    rate_per_unit_cents: e.rate_per_unit.cents(),
                    gross_cents: e.gross.cents(),
                    subsidy_rate_bps: clamp_i32(e.subsidy_rate.bps()),
                    subsidy_cents: e.subsidy.cents(),
                    charged_position: to_i64(event.position.0),
                });
            }
            E::DisbursementReversed(e) => {
                change.disbursed_cents = Some(e.disbursed_total.cents());
                change.units_used_delta -= to_i64(e.units);
                self.usage_reversed.push((id, e.usage_id, e.reason));
            }
            E::ProgressReportSubmitted(e) => change.reports_submitted.push(e.due),
            E::ApplicationWithdrawn(_) => change.status = Some("withdrawn"),
            E::EligibilityConfirmed(_) => change.status = Some("eligible"),
            E::RuledIneligible(_) => change.status = Some("ineligible"),
            E::ProgressReportReviewed(_) => {}
            E::ApplicationCompleted(_) => change.status = Some("completed"),
            E::ApplicationTerminated(_) => change.status = Some("terminated"),
        }
        Ok(())
    }

    fn budget_event(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        let decoded = event.decode::<FundingEvent>().map_err(|error| bad(event, error))?;
        let year = streams::budget_year(&event.stream).map(|year| year.to_string()).unwrap_or_default();
        // Every budget fact but receipts concerns the computing power subsidy line.
        let (line, column, value) = match decoded {
            FundingEvent::FundingReceived(e) => (line_name(e.line), 0, e.line_total.cents()),
            FundingEvent::SubsidyCommitted(e) => ("computing_power_subsidy", 1, e.committed_total.cents()),
            FundingEvent::SubsidyReleased(e) => ("computing_power_subsidy", 1, e.committed_total.cents()),
            // Disbursements are counted from the applications' own charges and reversals (the
            // first releases also wrote them here; counting both would count them twice).
            FundingEvent::SubsidyDisbursed(_) | FundingEvent::SubsidyDisbursementReversed(_) => return Ok(()),
            FundingEvent::UnusedSubsidyRedirected(e) => ("computing_power_subsidy", 3, e.amount.cents()),
        };
        self.budget.entry((year, line)).or_default().0[column] = Some(value);
        Ok(())
    }

    fn capacity_event(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        let decoded = event.decode::<CapacityEvent>().map_err(|error| bad(event, error))?;
        let (service, period, column, value) = match decoded {
            CapacityEvent::CapacityDeclared(e) => (e.service_type, e.period, 0, e.units),
            CapacityEvent::CapacityAllocated(e) => (e.service_type, e.period, 1, e.allocated_total),
            CapacityEvent::CapacityReleased(e) => (e.service_type, e.period, 1, e.allocated_total),
            CapacityEvent::CapacityRedeployed(e) => (e.service_type, e.period, 2, e.redeployed_total),
        };
        self.capacity.entry((service.as_str().to_string(), period.to_string())).or_default().0[column] =
            Some(to_i64(value));
        Ok(())
    }

    async fn write(self, connection: &mut PgConnection, schema: &str) -> Result<(), ProjectionError> {
        if !self.batches_opened.is_empty() {
            let (ids, deadlines, committees): (Vec<String>, Vec<NaiveDate>, Vec<NaiveDate>) =
                self.batches_opened.into_iter().fold((vec![], vec![], vec![]), |mut all, (id, deadline, committee)| {
                    all.0.push(id);
                    all.1.push(deadline);
                    all.2.push(committee);
                    all
                });
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {schema}.batches_view (batch_id, deadline, committee_date) \
                 SELECT * FROM unnest($1::text[], $2::date[], $3::date[])"
            )))
            .bind(ids)
            .bind(deadlines)
            .bind(committees)
            .execute(&mut *connection)
            .await?;
        }
        if !self.batches_closed.is_empty() {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE {schema}.batches_view SET closed = true WHERE batch_id = ANY($1)"
            )))
            .bind(self.batches_closed)
            .execute(&mut *connection)
            .await?;
        }
        write_new_applications(connection, schema, self.new_applications).await?;
        write_application_changes(connection, schema, self.applications).await?;
        let mut disbursed: BTreeMap<String, i64> = BTreeMap::new();
        for charge in &self.usage_charged {
            *disbursed.entry(charge.financial_year.clone()).or_default() += charge.subsidy_cents;
        }
        for (year, subsidy) in write_usage(connection, schema, self.usage_charged, self.usage_reversed).await? {
            *disbursed.entry(year).or_default() -= subsidy;
        }
        add_disbursed(connection, schema, disbursed).await?;
        let budget = self.budget.into_iter().map(|((year, line), totals)| ((year, line.to_string()), totals)).collect();
        write_totals(connection, schema, "budget_view", ["year", "line"], BUDGET_COLUMNS, budget).await?;
        write_totals(connection, schema, "capacity_view", ["service_type", "period"], CAPACITY_COLUMNS, self.capacity)
            .await?;
        Ok(())
    }
}

const BUDGET_COLUMNS: [&str; 4] = ["received_cents", "committed_cents", "disbursed_cents", "redirected_cents"];
/// The fourth is unused: capacity rows have three totals.
const CAPACITY_COLUMNS: [&str; 4] = ["capacity", "allocated", "redeployed", ""];

async fn write_new_applications(
    connection: &mut PgConnection,
    schema: &str,
    rows: BTreeMap<String, NewApplication>,
) -> Result<(), ProjectionError> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<&String> = rows.keys().collect();
    let column = |pick: fn(&NewApplication) -> String| rows.values().map(pick).collect::<Vec<String>>();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {schema}.applications_view (application_id, last_position, status, batch_id, organisation, category, \
         sub_type, project_title, develops_ai_models, mainland_or_overseas_team, team_size, talents, requested_rate_bps, submitted_on) \
         SELECT id, 0, 'submitted', batch, organisation, category, sub_type, title, ai, team, size, talents, rate, submitted \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::boolean[], $8::boolean[], \
         $9::int[], $10::int[], $11::int[], $12::date[]) \
         AS u(id, batch, organisation, category, sub_type, title, ai, team, size, talents, rate, submitted)"
    )))
    .bind(ids.clone())
    .bind(column(|row| row.batch_id.clone()))
    .bind(column(|row| row.organisation.clone()))
    .bind(column(|row| row.category.clone()))
    .bind(column(|row| row.sub_type.clone()))
    .bind(column(|row| row.project_title.clone()))
    .bind(rows.values().map(|row| row.develops_ai_models).collect::<Vec<_>>())
    .bind(rows.values().map(|row| row.mainland_or_overseas_team).collect::<Vec<_>>())
    .bind(rows.values().map(|row| row.team_size).collect::<Vec<_>>())
    .bind(rows.values().map(|row| row.talents).collect::<Vec<_>>())
    .bind(rows.values().map(|row| row.requested_rate_bps).collect::<Vec<_>>())
    .bind(rows.values().map(|row| row.submitted_on).collect::<Vec<_>>())
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// One UPDATE for every changed row: a column the batch did not touch keeps its value; the
/// next report due is recomputed from the due dates and the reports submitted.
async fn write_application_changes(
    connection: &mut PgConnection,
    schema: &str,
    changes: BTreeMap<String, ApplicationChange>,
) -> Result<(), ProjectionError> {
    if changes.is_empty() {
        return Ok(());
    }
    let rows: Vec<&ApplicationChange> = changes.values().collect();
    let texts = |pick: fn(&ApplicationChange) -> Option<String>| rows.iter().map(|c| pick(c)).collect::<Vec<_>>();
    let ints = |pick: fn(&ApplicationChange) -> Option<i32>| rows.iter().map(|c| pick(c)).collect::<Vec<_>>();
    let bigints = |pick: fn(&ApplicationChange) -> Option<i64>| rows.iter().map(|c| pick(c)).collect::<Vec<_>>();
    let bools = |pick: fn(&ApplicationChange) -> Option<bool>| rows.iter().map(|c| pick(c)).collect::<Vec<_>>();
    let dates = |pick: fn(&ApplicationChange) -> Option<NaiveDate>| rows.iter().map(|c| pick(c)).collect::<Vec<_>>();
    let new_dues = "coalesce(string_to_array(u.dues, ',')::date[], v.report_due_dates)";
    let new_reports = "v.reports_submitted || coalesce(string_to_array(u.reports, ',')::date[], '{}')";
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {schema}.applications_view v SET \
           last_position = u.last_position, status = coalesce(u.status, v.status), batch_id = coalesce(u.batch_id, v.batch_id), \
           organisation = coalesce(u.organisation, v.organisation), category = coalesce(u.category, v.category), \
           sub_type = coalesce(u.sub_type, v.sub_type), project_title = coalesce(u.project_title, v.project_title), \
           develops_ai_models = coalesce(u.ai, v.develops_ai_models), \
           mainland_or_overseas_team = coalesce(u.team, v.mainland_or_overseas_team), \
           team_size = coalesce(u.team_size, v.team_size), talents = coalesce(u.talents, v.talents), \
           requested_rate_bps = coalesce(u.requested_rate, v.requested_rate_bps), \
           assessed_by = coalesce(u.assessed_by, v.assessed_by), total_score = coalesce(u.total_score, v.total_score), \
           decided_on = coalesce(u.decided_on, v.decided_on), approved_rate_bps = coalesce(u.approved_rate, v.approved_rate_bps), \
           ceiling_cents = coalesce(u.ceiling, v.ceiling_cents), project_start = coalesce(u.start, v.project_start), \
           project_end = coalesce(u.finish, v.project_end), units_allocated = coalesce(u.allocated, v.units_allocated), \
           disbursed_cents = coalesce(u.disbursed, v.disbursed_cents), units_used = v.units_used + u.used_delta, \
           report_due_dates = {new_dues}, reports_submitted = {new_reports}, \
           next_report_due = CASE WHEN coalesce(u.status, v.status) IN ('completed', 'terminated') THEN NULL \
             ELSE (SELECT min(d) FROM unnest({new_dues}) d WHERE d <> ALL ({new_reports})) END \
         FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], \
           $9::boolean[], $10::boolean[], $11::int[], $12::int[], $13::int[], $14::text[], $15::int[], $16::date[], \
           $17::int[], $18::bigint[], $19::date[], $20::date[], $21::bigint[], $22::bigint[], $23::bigint[], \
           $24::text[], $25::text[]) \
           AS u(application_id, last_position, status, batch_id, organisation, category, sub_type, project_title, \
           ai, team, team_size, talents, requested_rate, assessed_by, total_score, decided_on, \
           approved_rate, ceiling, start, finish, allocated, disbursed, used_delta, dues, reports) \
         WHERE v.application_id = u.application_id"
    )))
    .bind(changes.keys().collect::<Vec<_>>())
    .bind(rows.iter().map(|c| c.last_position).collect::<Vec<_>>())
    .bind(rows.iter().map(|c| c.status).collect::<Vec<_>>())
    .bind(texts(|c| c.batch_id.clone()))
    .bind(texts(|c| c.organisation.clone()))
    .bind(texts(|c| c.category.clone()))
    .bind(texts(|c| c.sub_type.clone()))
    .bind(texts(|c| c.project_title.clone()))
    .bind(bools(|c| c.develops_ai_models))
    .bind(bools(|c| c.mainland_or_overseas_team))
    .bind(ints(|c| c.team_size))
    .bind(ints(|c| c.talents))
    .bind(ints(|c| c.requested_rate_bps))
    .bind(texts(|c| c.assessed_by.clone()))
    .bind(ints(|c| c.total_score))
    .bind(dates(|c| c.decided_on))
    .bind(ints(|c| c.approved_rate_bps))
    .bind(bigints(|c| c.ceiling_cents))
    .bind(dates(|c| c.project_start))
    .bind(dates(|c| c.project_end))
    .bind(bigints(|c| c.units_allocated))
    .bind(bigints(|c| c.disbursed_cents))
    .bind(rows.iter().map(|c| c.units_used_delta).collect::<Vec<_>>())
    .bind(texts(|c| c.report_due_dates.as_deref().map(dates_text)))
    .bind(texts(|c| (!c.reports_submitted.is_empty()).then(|| dates_text(&c.reports_submitted))))
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// Adds each funding year's change in disbursed subsidy to its computing power subsidy line.
async fn add_disbursed(
    connection: &mut PgConnection,
    schema: &str,
    mut disbursed: BTreeMap<String, i64>,
) -> Result<(), ProjectionError> {
    disbursed.retain(|_, delta| *delta != 0);
    if disbursed.is_empty() {
        return Ok(());
    }
    let years: Vec<&String> = disbursed.keys().collect();
    let deltas: Vec<i64> = disbursed.values().copied().collect();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {schema}.budget_view (year, line) SELECT year, $2 FROM unnest($1::text[]) AS u(year) \
         ON CONFLICT DO NOTHING"
    )))
    .bind(&years)
    .bind(SUBSIDY_LINE)
    .execute(&mut *connection)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {schema}.budget_view b SET disbursed_cents = b.disbursed_cents + u.delta \
         FROM unnest($1::text[], $2::bigint[]) AS u(year, delta) WHERE b.year = u.year AND b.line = $3"
    )))
    .bind(&years)
    .bind(deltas)
    .bind(SUBSIDY_LINE)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// Inserts the charges, then marks the reversed ones (a charge and its reversal may come in
/// the same batch); answers the financial year and subsidy of each line reversed.
async fn write_usage(
    connection: &mut PgConnection,
    schema: &str,
    charged: Vec<UsageRow>,
    reversed: Vec<(String, String, String)>,
) -> Result<Vec<(String, i64)>, ProjectionError> {
    if !charged.is_empty() {
        let texts = |pick: fn(&UsageRow) -> &str| charged.iter().map(|row| pick(row).to_string()).collect::<Vec<_>>();
        let bigints = |pick: fn(&UsageRow) -> i64| charged.iter().map(pick).collect::<Vec<_>>();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {schema}.usage_view (application_id, usage_id, service_type, period, financial_year, units, \
             rate_per_unit_cents, gross_cents, subsidy_rate_bps, subsidy_cents, charged_position) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], \
             $7::bigint[], $8::bigint[], $9::int[], $10::bigint[], $11::bigint[])"
        )))
        .bind(texts(|row| &row.application_id))
        .bind(texts(|row| &row.usage_id))
        .bind(texts(|row| &row.service_type))
        .bind(texts(|row| &row.period))
        .bind(texts(|row| &row.financial_year))
        .bind(bigints(|row| row.units))
        .bind(bigints(|row| row.rate_per_unit_cents))
        .bind(bigints(|row| row.gross_cents))
        .bind(charged.iter().map(|row| row.subsidy_rate_bps).collect::<Vec<_>>())
        .bind(bigints(|row| row.subsidy_cents))
        .bind(bigints(|row| row.charged_position))
        .execute(&mut *connection)
        .await?;
    }
    if !reversed.is_empty() {
        let (applications, rest): (Vec<String>, Vec<(String, String)>) =
            reversed.into_iter().map(|(application, usage, reason)| (application, (usage, reason))).unzip();
        let (usages, reasons): (Vec<String>, Vec<String>) = rest.into_iter().unzip();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {schema}.usage_view v SET reversed = true, reversal_reason = u.reason \
             FROM unnest($1::text[], $2::text[], $3::text[]) AS u(application_id, usage_id, reason) \
             WHERE v.application_id = u.application_id AND v.usage_id = u.usage_id AND NOT v.reversed \
             RETURNING v.financial_year, v.subsidy_cents"
        )))
        .bind(applications)
        .bind(usages)
        .bind(reasons)
        .fetch_all(&mut *connection)
        .await?;
        return rows
            .iter()
            .map(|row| Ok((row.try_get::<String, _>(0)?, row.try_get::<i64, _>(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(ProjectionError::from);
    }
    Ok(Vec::new())
}

/// Upserts rows of totals keyed by two text columns: missing rows are created at zero, then
/// each total the batch set takes its last value.
async fn write_totals(
    connection: &mut PgConnection,
    schema: &str,
    table: &str,
    keys: [&str; 2],
    columns: [&str; 4],
    totals: BTreeMap<(String, String), Totals>,
) -> Result<(), ProjectionError> {
    if totals.is_empty() {
        return Ok(());
    }
    let firsts: Vec<&String> = totals.keys().map(|(first, _)| first).collect();
    let seconds: Vec<&String> = totals.keys().map(|(_, second)| second).collect();
    let [first, second] = keys;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {schema}.{table} ({first}, {second}) SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING"
    )))
    .bind(&firsts)
    .bind(&seconds)
    .execute(&mut *connection)
    .await?;
    let used: Vec<(usize, &str)> = columns.iter().copied().enumerate().filter(|(_, name)| !name.is_empty()).collect();
    let assignments: Vec<String> =
        used.iter().map(|(n, name)| format!("{name} = coalesce(u.t{n}, t.{name})")).collect();
    let arrays: Vec<String> = used.iter().map(|(n, _)| format!("${}::bigint[]", n + 3)).collect();
    let aliases: Vec<String> = used.iter().map(|(n, _)| format!("t{n}")).collect();
    let mut update = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {schema}.{table} t SET {} FROM unnest($1::text[], $2::text[], {}) AS u(k1, k2, {}) \
         WHERE t.{first} = u.k1 AND t.{second} = u.k2",
        assignments.join(", "),
        arrays.join(", "),
        aliases.join(", ")
    )))
    .bind(&firsts)
    .bind(&seconds);
    for (n, _) in &used {
        update = update.bind(totals.values().map(|row| row.0[*n]).collect::<Vec<_>>());
    }
    update.execute(&mut *connection).await?;
    Ok(())
}

fn line_name(line: BudgetLine) -> &'static str {
    match line {
        BudgetLine::ComputingPowerSubsidy => "computing_power_subsidy",
        BudgetLine::CyberAndDataSecurity => "cyber_and_data_security",
        BudgetLine::AiEcosystemDevelopment => "ai_ecosystem_development",
    }
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
    let Some(batch) =
        sqlx::query("SELECT deadline, committee_date, closed FROM read_models.batches_view WHERE batch_id = $1")
            .bind(batch_id)
            .fetch_optional(pool)
            .await?
    else {
        return Ok(None);
    };
    let (deadline, committee_date, closed): (NaiveDate, NaiveDate, bool) =
        (batch.try_get("deadline")?, batch.try_get("committee_date")?, batch.try_get("closed")?);
    let rows = sqlx::query("SELECT application_id, status FROM read_models.applications_view WHERE batch_id = $1 ORDER BY submitted_on, application_id")
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

/// A usage charge of an application, as finance officers reconcile it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct UsageLineRow {
    pub usage_id: String,
    pub service_type: String,
    pub period: String,
    pub financial_year: String,
    pub units: i64,
    pub rate_per_unit_cents: i64,
    pub gross_cents: i64,
    pub subsidy_rate_bps: i32,
    pub subsidy_cents: i64,
    pub reversed: bool,
    pub reversal_reason: Option<String>,
    pub charged_position: i64,
}

/// The computing power subsidy disbursed in a funding year: its usage charges, less reversals.
pub async fn disbursed_in_year(pool: &PgPool, year: &str) -> Result<i64, ProjectionError> {
    let disbursed: Option<i64> =
        sqlx::query_scalar("SELECT disbursed_cents FROM read_models.budget_view WHERE year = $1 AND line = $2")
            .bind(year)
            .bind(SUBSIDY_LINE)
            .fetch_optional(pool)
            .await?;
    Ok(disbursed.unwrap_or(0))
}

/// Whether the read model holds the application.
pub async fn exists(pool: &PgPool, application_id: &str) -> Result<bool, ProjectionError> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM read_models.applications_view WHERE application_id = $1)")
        .bind(application_id)
        .fetch_one(pool)
        .await?)
}

/// Every usage charge of an application, by month then usage id.
pub async fn usage_lines(pool: &PgPool, application_id: &str) -> Result<Vec<UsageLineRow>, ProjectionError> {
    Ok(sqlx::query_as::<_, UsageLineRow>(
        "SELECT usage_id, service_type, period, financial_year, units, rate_per_unit_cents, gross_cents, \
         subsidy_rate_bps, subsidy_cents, reversed, reversal_reason, charged_position \
         FROM read_models.usage_view WHERE application_id = $1 ORDER BY period, usage_id",
    )
    .bind(application_id)
    .fetch_all(pool)
    .await?)
}

/// A funding year's disbursements in one usage month: charges not reversed, their units, gross
/// and subsidy, and what was reversed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct MonthDisbursement {
    pub period: String,
    pub service_type: String,
    pub lines: i64,
    pub units: i64,
    pub gross_cents: i64,
    pub subsidy_cents: i64,
    pub reversed_lines: i64,
    pub reversed_subsidy_cents: i64,
}

/// The disbursement figures of a funding year, per usage month and service.
pub async fn disbursements(pool: &PgPool, year: &str) -> Result<Vec<MonthDisbursement>, ProjectionError> {
    Ok(sqlx::query_as::<_, MonthDisbursement>(
        "SELECT period, service_type, \
           count(*) FILTER (WHERE NOT reversed) AS lines, \
           coalesce(sum(units) FILTER (WHERE NOT reversed), 0)::bigint AS units, \
           coalesce(sum(gross_cents) FILTER (WHERE NOT reversed), 0)::bigint AS gross_cents, \
           coalesce(sum(subsidy_cents) FILTER (WHERE NOT reversed), 0)::bigint AS subsidy_cents, \
           count(*) FILTER (WHERE reversed) AS reversed_lines, \
           coalesce(sum(subsidy_cents) FILTER (WHERE reversed), 0)::bigint AS reversed_subsidy_cents \
         FROM read_models.usage_view WHERE financial_year = $1 GROUP BY period, service_type ORDER BY period, service_type",
    )
    .bind(year)
    .fetch_all(pool)
    .await?)
}
