//! Writing a folded batch: each table with one or two set-based statements, whatever the
//! batch size; and a rebuild's load, with `COPY`.

use std::collections::BTreeMap;

use aisc_domain::event_store::RecordedEvent;
use async_trait::async_trait;
use chrono::NaiveDate;
use sqlx::{PgConnection, Row};

use super::SUBSIDY_LINE;
use super::fold::{
    ApplicationChange, BatchChanges, BudgetTotals, CapacityTotals, FoldedLog, NewApplication, UsageRow, dates_text,
};
use crate::projection::{BulkLoad, CopyRows, CopyTarget, ProjectionError};

impl BatchChanges {
    pub(super) async fn write(self, connection: &mut PgConnection) -> Result<(), ProjectionError> {
        if !self.batches_opened.is_empty() {
            let (ids, deadlines, committees): (Vec<String>, Vec<NaiveDate>, Vec<NaiveDate>) =
                self.batches_opened.into_iter().fold((vec![], vec![], vec![]), |mut all, (id, deadline, committee)| {
                    all.0.push(id);
                    all.1.push(deadline);
                    all.2.push(committee);
                    all
                });
            sqlx::query(
                "INSERT INTO batches_view (batch_id, deadline, committee_date) \
                 SELECT * FROM unnest($1::text[], $2::date[], $3::date[])",
            )
            .bind(ids)
            .bind(deadlines)
            .bind(committees)
            .execute(&mut *connection)
            .await?;
        }
        if !self.batches_closed.is_empty() {
            sqlx::query("UPDATE batches_view SET closed = true WHERE batch_id = ANY($1)")
                .bind(self.batches_closed)
                .execute(&mut *connection)
                .await?;
        }
        write_new_applications(connection, self.new_applications).await?;
        write_application_changes(connection, self.applications).await?;
        let mut disbursed: BTreeMap<String, i64> = BTreeMap::new();
        for charge in &self.usage_charged {
            *disbursed.entry(charge.financial_year.clone()).or_default() += charge.subsidy_cents;
        }
        for (year, subsidy) in write_usage(connection, self.usage_charged, self.usage_reversed).await? {
            *disbursed.entry(year).or_default() -= subsidy;
        }
        add_disbursed(connection, disbursed).await?;
        write_budget(connection, self.budget).await?;
        write_capacity(connection, self.capacity).await?;
        Ok(())
    }
}

async fn write_new_applications(
    connection: &mut PgConnection,
    rows: BTreeMap<String, NewApplication>,
) -> Result<(), ProjectionError> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<&String> = rows.keys().collect();
    let column = |pick: fn(&NewApplication) -> String| rows.values().map(pick).collect::<Vec<String>>();
    sqlx::query(
        "INSERT INTO applications_view (application_id, last_position, status, batch_id, organisation, category, \
         sub_type, project_title, develops_ai_models, mainland_or_overseas_team, team_size, talents, requested_rate_bps, submitted_on) \
         SELECT id, 0, 'submitted', batch, organisation, category, sub_type, title, ai, team, size, talents, rate, submitted \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::boolean[], $8::boolean[], \
         $9::int[], $10::int[], $11::int[], $12::date[]) \
         AS u(id, batch, organisation, category, sub_type, title, ai, team, size, talents, rate, submitted)"
    )
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
    sqlx::query(
        "UPDATE applications_view v SET \
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
           report_due_dates = coalesce(string_to_array(u.dues, ',')::date[], v.report_due_dates), reports_submitted = v.reports_submitted || coalesce(string_to_array(u.reports, ',')::date[], '{}'), \
           next_report_due = CASE WHEN coalesce(u.status, v.status) IN ('completed', 'terminated') THEN NULL \
             ELSE (SELECT min(d) FROM unnest(coalesce(string_to_array(u.dues, ',')::date[], v.report_due_dates)) d WHERE d <> ALL (v.reports_submitted || coalesce(string_to_array(u.reports, ',')::date[], '{}'))) END \
         FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], \
           $9::boolean[], $10::boolean[], $11::int[], $12::int[], $13::int[], $14::text[], $15::int[], $16::date[], \
           $17::int[], $18::bigint[], $19::date[], $20::date[], $21::bigint[], $22::bigint[], $23::bigint[], \
           $24::text[], $25::text[]) \
           AS u(application_id, last_position, status, batch_id, organisation, category, sub_type, project_title, \
           ai, team, team_size, talents, requested_rate, assessed_by, total_score, decided_on, \
           approved_rate, ceiling, start, finish, allocated, disbursed, used_delta, dues, reports) \
         WHERE v.application_id = u.application_id"
    )
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
    mut disbursed: BTreeMap<String, i64>,
) -> Result<(), ProjectionError> {
    disbursed.retain(|_, delta| *delta != 0);
    if disbursed.is_empty() {
        return Ok(());
    }
    let years: Vec<&String> = disbursed.keys().collect();
    let deltas: Vec<i64> = disbursed.values().copied().collect();
    sqlx::query(
        "INSERT INTO budget_view (year, line) SELECT year, $2 FROM unnest($1::text[]) AS u(year) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&years)
    .bind(SUBSIDY_LINE)
    .execute(&mut *connection)
    .await?;
    sqlx::query(
        "UPDATE budget_view b SET disbursed_cents = b.disbursed_cents + u.delta \
         FROM unnest($1::text[], $2::bigint[]) AS u(year, delta) WHERE b.year = u.year AND b.line = $3",
    )
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
    charged: Vec<UsageRow>,
    reversed: Vec<(String, String, String)>,
) -> Result<Vec<(String, i64)>, ProjectionError> {
    if !charged.is_empty() {
        let texts = |pick: fn(&UsageRow) -> &str| charged.iter().map(|row| pick(row).to_string()).collect::<Vec<_>>();
        let bigints = |pick: fn(&UsageRow) -> i64| charged.iter().map(pick).collect::<Vec<_>>();
        sqlx::query(
            "INSERT INTO usage_view (application_id, usage_id, service_type, period, financial_year, units, \
             rate_per_unit_cents, gross_cents, subsidy_rate_bps, subsidy_cents, charged_position, charged_on, recorded_at) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], \
             $7::bigint[], $8::bigint[], $9::int[], $10::bigint[], $11::bigint[], $12::date[], $13::timestamptz[])",
        )
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
        .bind(charged.iter().map(|row| row.charged_on).collect::<Vec<_>>())
        .bind(charged.iter().map(|row| row.recorded_at).collect::<Vec<_>>())
        .execute(&mut *connection)
        .await?;
    }
    if !reversed.is_empty() {
        let (applications, rest): (Vec<String>, Vec<(String, String)>) =
            reversed.into_iter().map(|(application, usage, reason)| (application, (usage, reason))).unzip();
        let (usages, reasons): (Vec<String>, Vec<String>) = rest.into_iter().unzip();
        let rows = sqlx::query(
            "UPDATE usage_view v SET reversed = true, reversal_reason = u.reason \
             FROM unnest($1::text[], $2::text[], $3::text[]) AS u(application_id, usage_id, reason) \
             WHERE v.application_id = u.application_id AND v.usage_id = u.usage_id AND NOT v.reversed \
             RETURNING v.financial_year, v.subsidy_cents",
        )
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

/// Upserts the funding years' lines the batch touched: a missing row is created at zero, then
/// each total the batch set takes its last value.
async fn write_budget(
    connection: &mut PgConnection,
    budget: BTreeMap<(String, &'static str), BudgetTotals>,
) -> Result<(), ProjectionError> {
    if budget.is_empty() {
        return Ok(());
    }
    let years: Vec<&str> = budget.keys().map(|(year, _)| year.as_str()).collect();
    let lines: Vec<&str> = budget.keys().map(|(_, line)| *line).collect();
    let totals = |pick: fn(&BudgetTotals) -> Option<i64>| budget.values().map(pick).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO budget_view (year, line) SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
    )
    .bind(&years)
    .bind(&lines)
    .execute(&mut *connection)
    .await?;
    sqlx::query(
        "UPDATE budget_view b SET received_cents = coalesce(u.received, b.received_cents), \
           committed_cents = coalesce(u.committed, b.committed_cents), \
           redirected_cents = coalesce(u.redirected, b.redirected_cents) \
         FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[]) \
           AS u(year, line, received, committed, redirected) \
         WHERE b.year = u.year AND b.line = u.line",
    )
    .bind(&years)
    .bind(&lines)
    .bind(totals(|line| line.received_cents))
    .bind(totals(|line| line.committed_cents))
    .bind(totals(|line| line.redirected_cents))
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// Upserts the service types' months the batch touched, as [`write_budget`] does lines.
async fn write_capacity(
    connection: &mut PgConnection,
    capacity: BTreeMap<(String, String), CapacityTotals>,
) -> Result<(), ProjectionError> {
    if capacity.is_empty() {
        return Ok(());
    }
    let services: Vec<&str> = capacity.keys().map(|(service, _)| service.as_str()).collect();
    let periods: Vec<&str> = capacity.keys().map(|(_, period)| period.as_str()).collect();
    let totals = |pick: fn(&CapacityTotals) -> Option<i64>| capacity.values().map(pick).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO capacity_view (service_type, period) SELECT * FROM unnest($1::text[], $2::text[]) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&services)
    .bind(&periods)
    .execute(&mut *connection)
    .await?;
    sqlx::query(
        "UPDATE capacity_view c SET capacity = coalesce(u.capacity, c.capacity), \
           allocated = coalesce(u.allocated, c.allocated), redeployed = coalesce(u.redeployed, c.redeployed) \
         FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[]) \
           AS u(service_type, period, capacity, allocated, redeployed) \
         WHERE c.service_type = u.service_type AND c.period = u.period",
    )
    .bind(&services)
    .bind(&periods)
    .bind(totals(|month| month.capacity))
    .bind(totals(|month| month.allocated))
    .bind(totals(|month| month.redeployed))
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// The tables a rebuild loads with `COPY`, in the order of the indexes below.
static COPY_TARGETS: [CopyTarget; 5] = [
    CopyTarget {
        table: "usage_view",
        columns: "application_id, usage_id, service_type, period, financial_year, units, rate_per_unit_cents, \
                  gross_cents, subsidy_rate_bps, subsidy_cents, charged_position, charged_on, recorded_at",
    },
    CopyTarget {
        table: "applications_view",
        columns: "application_id, status, batch_id, organisation, category, sub_type, project_title, \
                  develops_ai_models, mainland_or_overseas_team, team_size, talents, requested_rate_bps, submitted_on, \
                  assessed_by, total_score, decided_on, approved_rate_bps, ceiling_cents, disbursed_cents, \
                  units_allocated, units_used, project_start, project_end, report_due_dates, reports_submitted, \
                  next_report_due, last_position",
    },
    CopyTarget {
        table: "budget_view",
        columns: "year, line, received_cents, committed_cents, disbursed_cents, redirected_cents",
    },
    CopyTarget { table: "capacity_view", columns: "service_type, period, capacity, allocated, redeployed" },
    CopyTarget { table: "batches_view", columns: "batch_id, deadline, committee_date, closed" },
];
const USAGE: usize = 0;
const APPLICATIONS: usize = 1;
const BUDGET: usize = 2;
const CAPACITY: usize = 3;
const BATCHES: usize = 4;

/// A rebuild of the read model: pages are folded as live batches are and merged into the
/// rows kept in memory; usage lines go out as they are charged; reversals are applied to
/// the loaded lines, as `write` applies them, once every line is in.
#[derive(Debug, Default)]
pub(super) struct RebuildLoad {
    folded: FoldedLog,
}

#[async_trait]
impl BulkLoad for RebuildLoad {
    fn targets(&self) -> &'static [CopyTarget] {
        &COPY_TARGETS
    }

    fn load(&mut self, events: &[&RecordedEvent], rows: &mut CopyRows) -> Result<(), ProjectionError> {
        let page = super::fold_page(events.iter().copied())?;
        for line in self.folded.merge(page) {
            rows.push(
                USAGE,
                &[
                    &line.application_id,
                    &line.usage_id,
                    &line.service_type,
                    &line.period,
                    &line.financial_year,
                    &line.units,
                    &line.rate_per_unit_cents,
                    &line.gross_cents,
                    &line.subsidy_rate_bps,
                    &line.subsidy_cents,
                    &line.charged_position,
                    &line.charged_on,
                    &line.recorded_at,
                ],
            );
        }
        Ok(())
    }

    fn finish(&mut self, rows: &mut CopyRows) -> Result<(), ProjectionError> {
        let folded = &mut self.folded;
        for (id, row) in std::mem::take(&mut folded.applications) {
            let next_report_due = row.next_report_due();
            let submitted = &row.submitted;
            rows.push(
                APPLICATIONS,
                &[
                    &id,
                    &row.status,
                    &submitted.batch_id,
                    &submitted.organisation,
                    &submitted.category,
                    &submitted.sub_type,
                    &submitted.project_title,
                    &submitted.develops_ai_models,
                    &submitted.mainland_or_overseas_team,
                    &submitted.team_size,
                    &submitted.talents,
                    &submitted.requested_rate_bps,
                    &submitted.submitted_on,
                    &row.assessed_by,
                    &row.total_score,
                    &row.decided_on,
                    &row.approved_rate_bps,
                    &row.ceiling_cents,
                    &row.disbursed_cents,
                    &row.units_allocated,
                    &row.units_used,
                    &row.project_start,
                    &row.project_end,
                    &row.report_due_dates,
                    &row.reports_submitted,
                    &next_report_due,
                    &row.last_position,
                ],
            );
        }
        // A year's subsidy line exists once anything was charged to it, as `add_disbursed`
        // creates it.
        for (year, charged) in &folded.charged {
            if *charged != 0 {
                folded.budget.entry((year.clone(), SUBSIDY_LINE)).or_default();
            }
        }
        for ((year, line), totals) in std::mem::take(&mut folded.budget) {
            let disbursed = if line == SUBSIDY_LINE { folded.charged.get(&year).copied().unwrap_or(0) } else { 0 };
            rows.push(
                BUDGET,
                &[&year, &line, &totals.received_cents, &totals.committed_cents, &disbursed, &totals.redirected_cents],
            );
        }
        for ((service, period), totals) in std::mem::take(&mut folded.capacity) {
            rows.push(CAPACITY, &[&service, &period, &totals.capacity, &totals.allocated, &totals.redeployed]);
        }
        for (id, batch) in std::mem::take(&mut folded.batches) {
            rows.push(BATCHES, &[&id, &batch.deadline, &batch.committee_date, &batch.closed]);
        }
        Ok(())
    }

    /// Marks the reversed lines and takes their subsidy off their years' disbursements.
    async fn after_load(self: Box<Self>, connection: &mut PgConnection) -> Result<(), ProjectionError> {
        let reversed = write_usage(connection, Vec::new(), self.folded.reversals).await?;
        let mut disbursed: BTreeMap<String, i64> = BTreeMap::new();
        for (year, subsidy) in reversed {
            *disbursed.entry(year).or_default() -= subsidy;
        }
        add_disbursed(connection, disbursed).await
    }
}
