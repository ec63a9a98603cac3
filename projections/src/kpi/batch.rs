//! Applying a batch: what the fold keeps of the things the batch touches is loaded with one
//! statement per kind, the events are folded in memory in log order, and everything is written
//! back with a few set-based statements, whatever the batch size.

use std::collections::{BTreeMap, BTreeSet};

use aisc_domain::codec::BusinessDate;
use aisc_domain::event_store::RecordedEvent;
use aisc_domain::subsidy::application::ApplicationEvent;
use aisc_domain::subsidy::capacity::CapacityEvent;
use aisc_domain::subsidy::funding::FundingEvent;
use aisc_domain::subsidy::streams;
use aisc_domain::subsidy::values::FinancialYear;
use chrono::NaiveDate;
use sqlx::PgConnection;
use sqlx::types::Json;

use super::fold::{ApplicationFacts, Derived, LatestFigures, fact_of};
use super::totals::{Change, Metric, TotalKey};
use super::{NAME, SUBSIDY_LINE};
use crate::projection::ProjectionError;

/// An event of a batch, decoded once.
// As `SchemeEvent`: a submission is the large variant, and a batch's events live briefly.
#[allow(clippy::large_enum_variant)]
pub(super) enum Decoded {
    Application { id: String, event: ApplicationEvent },
    Budget { year: String, event: FundingEvent },
    Capacity(CapacityEvent),
}

/// A usage charge, as its reversal needs it.
#[derive(Debug, Clone)]
pub(super) struct Charge {
    pub(super) financial_year: String,
    pub(super) charged_on: NaiveDate,
    pub(super) subsidy_cents: i64,
    pub(super) reversed: bool,
    /// Charged in this batch (inserted), or loaded (updated if reversed).
    pub(super) new: bool,
}

/// What the batch changed, in log order: each event's changes at its position.
#[derive(Default)]
pub(super) struct Folded {
    pub(super) applications: BTreeMap<String, ApplicationFacts>,
    pub(super) charges: BTreeMap<(String, String), Charge>,
    pub(super) lines: BTreeMap<(String, String), LatestFigures>,
    pub(super) months: BTreeMap<(String, String), LatestFigures>,
    pub(super) changes: Vec<(i64, Change)>,
}

pub(super) fn bad(event: &RecordedEvent, reason: impl ToString) -> ProjectionError {
    ProjectionError::BadEvent { projection: NAME, position: event.position.0, reason: reason.to_string() }
}

pub(super) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(super) async fn apply(connection: &mut PgConnection, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
    let decoded = decode_all(events.iter())?;
    let mut folded = load(connection, &decoded).await?;
    for (position, item) in decoded {
        folded.fold(position, item);
    }
    folded.write(connection).await
}

/// The events the fold reads, decoded, with their positions.
pub(super) fn decode_all<'a>(
    events: impl Iterator<Item = &'a RecordedEvent>,
) -> Result<Vec<(i64, Decoded)>, ProjectionError> {
    let mut decoded = Vec::new();
    for event in events {
        if let Some(item) = decode(event)? {
            decoded.push((to_i64(event.position.0), item));
        }
    }
    Ok(decoded)
}

fn decode(event: &RecordedEvent) -> Result<Option<Decoded>, ProjectionError> {
    Ok(Some(match event.stream.category() {
        streams::category::APPLICATION => Decoded::Application {
            id: streams::application_id(&event.stream).unwrap_or_default().to_string(),
            event: event.decode::<ApplicationEvent>().map_err(|error| bad(event, error))?,
        },
        streams::category::BUDGET => Decoded::Budget {
            year: streams::budget_year(&event.stream).map(|year| year.to_string()).unwrap_or_default(),
            event: event.decode::<FundingEvent>().map_err(|error| bad(event, error))?,
        },
        streams::category::CAPACITY => {
            Decoded::Capacity(event.decode::<CapacityEvent>().map_err(|error| bad(event, error))?)
        }
        _ => return Ok(None),
    }))
}

/// Loads what the fold kept of every application, line, month and reversed charge the batch
/// names.
async fn load(connection: &mut PgConnection, decoded: &[(i64, Decoded)]) -> Result<Folded, ProjectionError> {
    let mut application_ids = BTreeSet::new();
    let mut reversed = BTreeSet::new();
    let mut lines = BTreeSet::new();
    let mut months = BTreeSet::new();
    for (_, item) in decoded {
        match item {
            Decoded::Application { id, event } => {
                application_ids.insert(id.clone());
                if let ApplicationEvent::DisbursementReversed(e) = event {
                    reversed.insert((id.clone(), e.usage_id.clone()));
                }
            }
            Decoded::Budget { year, event } => {
                if let Some(line) = budget_line_of(event) {
                    lines.insert((year.clone(), line.to_string()));
                }
            }
            Decoded::Capacity(event) => {
                let (service, period) = capacity_month_of(event);
                months.insert((service, period));
            }
        }
    }
    let mut folded = Folded::default();
    if !application_ids.is_empty() {
        let ids: Vec<&String> = application_ids.iter().collect();
        let rows: Vec<(String, Json<ApplicationFacts>)> =
            sqlx::query_as("SELECT application_id, state FROM kpi_applications WHERE application_id = ANY($1)")
                .bind(&ids)
                .fetch_all(&mut *connection)
                .await?;
        folded.applications = rows.into_iter().map(|(id, Json(state))| (id, state)).collect();
    }
    if !reversed.is_empty() {
        let (applications, usages): (Vec<&str>, Vec<&str>) =
            reversed.iter().map(|(application, usage)| (application.as_str(), usage.as_str())).unzip();
        let rows: Vec<(String, String, String, NaiveDate, i64, bool)> = sqlx::query_as(
            "SELECT c.application_id, c.usage_id, c.financial_year, c.charged_on, c.subsidy_cents, c.reversed \
             FROM kpi_charges c JOIN unnest($1::text[], $2::text[]) AS u(application_id, usage_id) \
             ON c.application_id = u.application_id AND c.usage_id = u.usage_id",
        )
        .bind(&applications)
        .bind(&usages)
        .fetch_all(&mut *connection)
        .await?;
        for (application, usage, financial_year, charged_on, subsidy_cents, reversed) in rows {
            folded.charges.insert(
                (application, usage),
                Charge { financial_year, charged_on, subsidy_cents, reversed, new: false },
            );
        }
    }
    folded.lines = load_figures(
        connection,
        "SELECT l.year, l.line, l.figures FROM kpi_budget_lines l \
         JOIN unnest($1::text[], $2::text[]) AS u(year, line) ON l.year = u.year AND l.line = u.line",
        &lines,
    )
    .await?;
    folded.months = load_figures(
        connection,
        "SELECT m.service_type, m.period, m.figures FROM kpi_capacity_months m \
         JOIN unnest($1::text[], $2::text[]) AS u(service_type, period) \
         ON m.service_type = u.service_type AND m.period = u.period",
        &months,
    )
    .await?;
    Ok(folded)
}

async fn load_figures(
    connection: &mut PgConnection,
    sql: &'static str,
    keys: &BTreeSet<(String, String)>,
) -> Result<BTreeMap<(String, String), LatestFigures>, ProjectionError> {
    if keys.is_empty() {
        return Ok(BTreeMap::new());
    }
    let (first, second): (Vec<&str>, Vec<&str>) = keys.iter().map(|(a, b)| (a.as_str(), b.as_str())).unzip();
    let rows: Vec<(String, String, Json<LatestFigures>)> =
        sqlx::query_as(sql).bind(&first).bind(&second).fetch_all(&mut *connection).await?;
    Ok(rows.into_iter().map(|(a, b, Json(figures))| ((a, b), figures)).collect())
}

/// The budget line a funding event concerns; every fact but receipts concerns the computing
/// power subsidy line. Disbursements are counted from the applications' own charges and
/// reversals (the first releases also wrote them here; counting both would count them twice).
fn budget_line_of(event: &FundingEvent) -> Option<&'static str> {
    match event {
        FundingEvent::FundingReceived(e) => Some(e.line.as_str()),
        FundingEvent::SubsidyCommitted(_)
        | FundingEvent::SubsidyReleased(_)
        | FundingEvent::UnusedSubsidyRedirected(_) => Some(SUBSIDY_LINE),
        FundingEvent::SubsidyDisbursed(_) | FundingEvent::SubsidyDisbursementReversed(_) => None,
    }
}

fn capacity_month_of(event: &CapacityEvent) -> (String, String) {
    let (service, period) = match event {
        CapacityEvent::CapacityDeclared(e) => (&e.service_type, e.period),
        CapacityEvent::CapacityAllocated(e) => (&e.service_type, e.period),
        CapacityEvent::CapacityReleased(e) => (&e.service_type, e.period),
        CapacityEvent::CapacityRedeployed(e) => (&e.service_type, e.period),
    };
    (service.as_str().to_string(), period.to_string())
}

impl Folded {
    pub(super) fn fold(&mut self, position: i64, item: Decoded) {
        let changes = match item {
            Decoded::Application { id, event } => self.application_event(id, &event),
            Decoded::Budget { year, event } => self.budget_event(&year, &event),
            Decoded::Capacity(event) => self.capacity_event(&event),
        };
        self.changes.extend(changes.into_iter().map(|change| (position, change)));
    }

    fn application_event(&mut self, id: String, event: &ApplicationEvent) -> Vec<Change> {
        let on = event.effective_on();
        match event {
            ApplicationEvent::UsageCharged(e) => {
                let financial_year = e.financial_year.to_string();
                let subsidy_cents = e.subsidy.cents();
                let mut changes = self.applications.entry(id.clone()).or_default().use_units(on, to_i64(e.units));
                changes.push(Change {
                    key: TotalKey::new(&financial_year, Metric::DisbursedCents, SUBSIDY_LINE),
                    effective_on: on,
                    delta: subsidy_cents,
                });
                self.charges.insert(
                    (id, e.usage_id.clone()),
                    Charge { financial_year, charged_on: on, subsidy_cents, reversed: false, new: true },
                );
                changes
            }
            ApplicationEvent::DisbursementReversed(e) => {
                // A reversal takes effect once both it and its charge do.
                let charge = self.charges.get_mut(&(id.clone(), e.usage_id.clone()));
                let from = charge.as_ref().map_or(on, |charge| charge.charged_on.max(on));
                let mut changes = Vec::new();
                if let Some(charge) = charge
                    && !charge.reversed
                {
                    charge.reversed = true;
                    changes.push(Change {
                        key: TotalKey::new(&charge.financial_year, Metric::DisbursedCents, SUBSIDY_LINE),
                        effective_on: from,
                        delta: -charge.subsidy_cents,
                    });
                }
                changes.extend(self.applications.entry(id).or_default().use_units(from, -to_i64(e.units)));
                changes
            }
            other => match fact_of(other) {
                Some(fact) => self.applications.entry(id).or_default().record(on, fact),
                None => Vec::new(),
            },
        }
    }

    fn budget_event(&mut self, year: &str, event: &FundingEvent) -> Vec<Change> {
        let Some(line) = budget_line_of(event) else {
            return Vec::new();
        };
        let (metric, value) = match event {
            FundingEvent::FundingReceived(e) => (Metric::ReceivedCents, e.line_total.cents()),
            FundingEvent::SubsidyCommitted(e) => (Metric::CommittedCents, e.committed_total.cents()),
            FundingEvent::SubsidyReleased(e) => (Metric::CommittedCents, e.committed_total.cents()),
            FundingEvent::UnusedSubsidyRedirected(e) => (Metric::RedirectedCents, e.amount.cents()),
            FundingEvent::SubsidyDisbursed(_) | FundingEvent::SubsidyDisbursementReversed(_) => return Vec::new(),
        };
        let key_of = |metric| TotalKey::new(year, metric, line);
        self.lines.entry((year.to_string(), line.to_string())).or_default().set(
            event.effective_on(),
            metric,
            value,
            &key_of,
            Metric::BudgetLineRecorded,
            &[],
        )
    }

    fn capacity_event(&mut self, event: &CapacityEvent) -> Vec<Change> {
        let (service, period) = capacity_month_of(event);
        let on = event.effective_on();
        let year = FinancialYear::containing(on).to_string();
        let key_of = |metric| TotalKey::new(&year, metric, &service);
        let (metric, value, derived): (Metric, u64, &[Derived]) = match event {
            // 90 % of capacity may be subsidised (§10), month by month.
            CapacityEvent::CapacityDeclared(e) => {
                (Metric::CapacityUnits, e.units, &[(Metric::SubsidisedCapUnits, |units| units * 9 / 10)])
            }
            CapacityEvent::CapacityAllocated(e) => (Metric::AllocatedUnits, e.allocated_total, &[]),
            CapacityEvent::CapacityReleased(e) => (Metric::AllocatedUnits, e.allocated_total, &[]),
            CapacityEvent::CapacityRedeployed(e) => (Metric::RedeployedUnits, e.redeployed_total, &[]),
        };
        self.months.entry((service.clone(), period)).or_default().set(
            on,
            metric,
            to_i64(value),
            &key_of,
            Metric::CapacityMonths,
            derived,
        )
    }

    async fn write(self, connection: &mut PgConnection) -> Result<(), ProjectionError> {
        write_states(connection, &self.applications, &self.charges).await?;
        write_figures(
            connection,
            "INSERT INTO kpi_budget_lines (year, line, figures) \
             SELECT year, line, figures::jsonb FROM unnest($1::text[], $2::text[], $3::text[]) AS u(year, line, figures) \
             ON CONFLICT (year, line) DO UPDATE SET figures = EXCLUDED.figures",
            &self.lines,
        )
        .await?;
        write_figures(
            connection,
            "INSERT INTO kpi_capacity_months (service_type, period, figures) \
             SELECT service_type, period, figures::jsonb \
             FROM unnest($1::text[], $2::text[], $3::text[]) AS u(service_type, period, figures) \
             ON CONFLICT (service_type, period) DO UPDATE SET figures = EXCLUDED.figures",
            &self.months,
        )
        .await?;
        write_totals(connection, self.changes).await
    }
}

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> Result<String, ProjectionError> {
    serde_json::to_string(value).map_err(|error| ProjectionError::Database(sqlx::Error::Encode(Box::new(error))))
}

async fn write_states(
    connection: &mut PgConnection,
    applications: &BTreeMap<String, ApplicationFacts>,
    charges: &BTreeMap<(String, String), Charge>,
) -> Result<(), ProjectionError> {
    if !applications.is_empty() {
        let states = applications.values().map(to_json).collect::<Result<Vec<_>, _>>()?;
        sqlx::query(
            "INSERT INTO kpi_applications (application_id, state) \
             SELECT id, state::jsonb FROM unnest($1::text[], $2::text[]) AS u(id, state) \
             ON CONFLICT (application_id) DO UPDATE SET state = EXCLUDED.state",
        )
        .bind(applications.keys().collect::<Vec<_>>())
        .bind(states)
        .execute(&mut *connection)
        .await?;
    }
    let new: Vec<(&(String, String), &Charge)> = charges.iter().filter(|(_, charge)| charge.new).collect();
    if !new.is_empty() {
        sqlx::query(
            "INSERT INTO kpi_charges (application_id, usage_id, financial_year, charged_on, subsidy_cents, reversed) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::date[], $5::bigint[], $6::boolean[])",
        )
        .bind(new.iter().map(|((application, _), _)| application.as_str()).collect::<Vec<_>>())
        .bind(new.iter().map(|((_, usage), _)| usage.as_str()).collect::<Vec<_>>())
        .bind(new.iter().map(|(_, charge)| charge.financial_year.as_str()).collect::<Vec<_>>())
        .bind(new.iter().map(|(_, charge)| charge.charged_on).collect::<Vec<_>>())
        .bind(new.iter().map(|(_, charge)| charge.subsidy_cents).collect::<Vec<_>>())
        .bind(new.iter().map(|(_, charge)| charge.reversed).collect::<Vec<_>>())
        .execute(&mut *connection)
        .await?;
    }
    let reversed: Vec<&(String, String)> =
        charges.iter().filter(|(_, charge)| !charge.new && charge.reversed).map(|(key, _)| key).collect();
    if !reversed.is_empty() {
        sqlx::query(
            "UPDATE kpi_charges c SET reversed = true FROM unnest($1::text[], $2::text[]) AS u(application_id, usage_id) \
             WHERE c.application_id = u.application_id AND c.usage_id = u.usage_id",
        )
        .bind(reversed.iter().map(|(application, _)| application.as_str()).collect::<Vec<_>>())
        .bind(reversed.iter().map(|(_, usage)| usage.as_str()).collect::<Vec<_>>())
        .execute(&mut *connection)
        .await?;
    }
    Ok(())
}

async fn write_figures(
    connection: &mut PgConnection,
    sql: &'static str,
    figures: &BTreeMap<(String, String), LatestFigures>,
) -> Result<(), ProjectionError> {
    if figures.is_empty() {
        return Ok(());
    }
    let (first, second): (Vec<&str>, Vec<&str>) = figures.keys().map(|(a, b)| (a.as_str(), b.as_str())).unzip();
    let states = figures.values().map(to_json).collect::<Result<Vec<_>, _>>()?;
    sqlx::query(sql).bind(&first).bind(&second).bind(states).execute(&mut *connection).await?;
    Ok(())
}

/// Writes the totals and their dated parts as they stand, and the value each took after every
/// position of the batch that changed it (computed in the database from the value before).
async fn write_totals(connection: &mut PgConnection, changes: Vec<(i64, Change)>) -> Result<(), ProjectionError> {
    let mut by_position: BTreeMap<(&TotalKey, i64), i64> = BTreeMap::new();
    let mut by_date: BTreeMap<(&TotalKey, NaiveDate, i64), i64> = BTreeMap::new();
    for (position, change) in &changes {
        *by_position.entry((&change.key, *position)).or_insert(0) += change.delta;
        *by_date.entry((&change.key, change.effective_on, *position)).or_insert(0) += change.delta;
    }
    by_position.retain(|_, delta| *delta != 0);
    by_date.retain(|_, delta| *delta != 0);
    if !by_position.is_empty() {
        let keys: Vec<&TotalKey> = by_position.keys().map(|(key, _)| *key).collect();
        sqlx::query(
            "INSERT INTO kpi_totals_history (year, metric, dimension, position, value) \
             SELECT c.year, c.metric, c.dimension, c.position, \
                    coalesce(t.value, 0) + sum(c.delta) OVER (PARTITION BY c.year, c.metric, c.dimension ORDER BY c.position) \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[]) \
                  AS c(year, metric, dimension, position, delta) \
             LEFT JOIN kpi_totals t ON t.year = c.year AND t.metric = c.metric AND t.dimension = c.dimension",
        )
        .bind(keys.iter().map(|key| key.year.as_str()).collect::<Vec<_>>())
        .bind(keys.iter().map(|key| key.metric.as_str()).collect::<Vec<_>>())
        .bind(keys.iter().map(|key| key.dimension.as_str()).collect::<Vec<_>>())
        .bind(by_position.keys().map(|(_, position)| *position).collect::<Vec<_>>())
        .bind(by_position.values().copied().collect::<Vec<_>>())
        .execute(&mut *connection)
        .await?;
        sqlx::query(
            "INSERT INTO kpi_totals (year, metric, dimension, value) \
             SELECT year, metric, dimension, sum(delta)::bigint \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS c(year, metric, dimension, delta) \
             GROUP BY year, metric, dimension \
             ON CONFLICT (year, metric, dimension) DO UPDATE SET value = kpi_totals.value + EXCLUDED.value",
        )
        .bind(keys.iter().map(|key| key.year.as_str()).collect::<Vec<_>>())
        .bind(keys.iter().map(|key| key.metric.as_str()).collect::<Vec<_>>())
        .bind(keys.iter().map(|key| key.dimension.as_str()).collect::<Vec<_>>())
        .bind(by_position.values().copied().collect::<Vec<_>>())
        .execute(&mut *connection)
        .await?;
    }
    if !by_date.is_empty() {
        let keys: Vec<&TotalKey> = by_date.keys().map(|(key, _, _)| *key).collect();
        let years: Vec<&str> = keys.iter().map(|key| key.year.as_str()).collect();
        let metrics: Vec<&str> = keys.iter().map(|key| key.metric.as_str()).collect();
        let dimensions: Vec<&str> = keys.iter().map(|key| key.dimension.as_str()).collect();
        let dates: Vec<NaiveDate> = by_date.keys().map(|(_, date, _)| *date).collect();
        let deltas: Vec<i64> = by_date.values().copied().collect();
        sqlx::query(
            "INSERT INTO kpi_dated_history (year, metric, dimension, effective_on, position, value) \
             SELECT c.year, c.metric, c.dimension, c.effective_on, c.position, coalesce(t.value, 0) + sum(c.delta) \
                    OVER (PARTITION BY c.year, c.metric, c.dimension, c.effective_on ORDER BY c.position) \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::date[], $5::bigint[], $6::bigint[]) \
                  AS c(year, metric, dimension, effective_on, position, delta) \
             LEFT JOIN kpi_dated_totals t ON t.year = c.year AND t.metric = c.metric AND t.dimension = c.dimension \
                  AND t.effective_on = c.effective_on",
        )
        .bind(&years)
        .bind(&metrics)
        .bind(&dimensions)
        .bind(&dates)
        .bind(by_date.keys().map(|(_, _, position)| *position).collect::<Vec<_>>())
        .bind(&deltas)
        .execute(&mut *connection)
        .await?;
        sqlx::query(
            "INSERT INTO kpi_dated_totals (year, metric, dimension, effective_on, value) \
             SELECT year, metric, dimension, effective_on, sum(delta)::bigint \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::date[], $5::bigint[]) \
                  AS c(year, metric, dimension, effective_on, delta) \
             GROUP BY year, metric, dimension, effective_on \
             ON CONFLICT (year, metric, dimension, effective_on) DO UPDATE SET value = kpi_dated_totals.value + EXCLUDED.value",
        )
        .bind(&years)
        .bind(&metrics)
        .bind(&dimensions)
        .bind(&dates)
        .bind(&deltas)
        .execute(&mut *connection)
        .await?;
    }
    Ok(())
}
