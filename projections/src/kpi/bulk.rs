//! A rebuild's fast path: the log folded in memory page by page with the same fold as live
//! batches, its rows streamed to `COPY`.
//!
//! What is kept until the end is bounded by the scheme's shape, not the log's length: the
//! totals and their dated parts as they stand, and what the fold keeps per application, budget
//! line and service month. History rows and usage charges go out as they are produced. A
//! reversal needs its charge, which may be anywhere earlier in the log: it is read back from
//! its application's stream (see [`KpiLoad::look_back`]) rather than kept, and the charge's row,
//! already written, is marked reversed once everything is loaded.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aisc_domain::codec::BusinessDate;
use aisc_domain::codec::EventPayload;
use aisc_domain::event_store::{EventStore, ReadDirection, RecordedEvent, StreamId};
use aisc_domain::subsidy::application::{ApplicationEvent, DisbursementReversed};
use aisc_domain::subsidy::streams;
use async_trait::async_trait;
use chrono::NaiveDate;
use sqlx::PgConnection;

use super::batch::{Charge, Folded, bad, decode_all, to_json};
use super::totals::{Change, TotalKey};
use crate::projection::{BulkLoad, CopyRows, CopyTarget, ProjectionError};

const TOTALS: usize = 0;
const TOTALS_HISTORY: usize = 1;
const DATED_TOTALS: usize = 2;
const DATED_HISTORY: usize = 3;
const APPLICATIONS: usize = 4;
const CHARGES: usize = 5;
const BUDGET_LINES: usize = 6;
const CAPACITY_MONTHS: usize = 7;

static TARGETS: [CopyTarget; 8] = [
    CopyTarget { table: "kpi_totals", columns: "year, metric, dimension, value" },
    CopyTarget { table: "kpi_totals_history", columns: "year, metric, dimension, position, value" },
    CopyTarget { table: "kpi_dated_totals", columns: "year, metric, dimension, effective_on, value" },
    CopyTarget { table: "kpi_dated_history", columns: "year, metric, dimension, effective_on, position, value" },
    CopyTarget { table: "kpi_applications", columns: "application_id, state" },
    CopyTarget {
        table: "kpi_charges",
        columns: "application_id, usage_id, financial_year, charged_on, subsidy_cents, reversed",
    },
    CopyTarget { table: "kpi_budget_lines", columns: "year, line, figures" },
    CopyTarget { table: "kpi_capacity_months", columns: "service_type, period, figures" },
];

/// Events read per page when a stream is read back for its charges.
const STREAM_PAGE: usize = 1_000;

#[derive(Default)]
pub(super) struct KpiLoad {
    /// Applications, budget lines and service months as the log has left them so far; the
    /// charges a page reverses, read back before it is folded (emptied after each page).
    folded: Folded,
    totals: HashMap<TotalKey, i64>,
    dated_totals: HashMap<(TotalKey, NaiveDate), i64>,
    /// Charges written by an earlier page and reversed by a later one.
    reversed_later: Vec<(String, String)>,
}

#[async_trait]
impl BulkLoad for KpiLoad {
    fn targets(&self) -> &'static [CopyTarget] {
        &TARGETS
    }

    /// Reads back, from their applications' streams, the charges the page's reversals name, as
    /// they stood before the page (charged, and maybe reversed already); those charged within
    /// the page are folded in order with it.
    async fn look_back(&mut self, events: &[&RecordedEvent], store: &dyn EventStore) -> Result<(), ProjectionError> {
        let Some(first) = events.first() else {
            return Ok(());
        };
        let page_starts = first.position;
        let mut wanted: BTreeMap<&StreamId, BTreeSet<String>> = BTreeMap::new();
        for event in
            events.iter().filter(|event| event.event_type == <DisbursementReversed as EventPayload>::EVENT_TYPE)
        {
            if let ApplicationEvent::DisbursementReversed(e) =
                event.decode::<ApplicationEvent>().map_err(|error| bad(event, error))?
            {
                wanted.entry(&event.stream).or_default().insert(e.usage_id);
            }
        }
        for (stream, usages) in wanted {
            let application = streams::application_id(stream).unwrap_or_default().to_string();
            let mut from = None;
            'stream: loop {
                let page = store.read_stream(stream, from, ReadDirection::Forward, STREAM_PAGE).await?;
                for event in &page {
                    if event.position >= page_starts {
                        break 'stream;
                    }
                    match event.decode::<ApplicationEvent>().map_err(|error| bad(event, error))? {
                        ApplicationEvent::UsageCharged(e) if usages.contains(&e.usage_id) => {
                            let charge = Charge {
                                financial_year: e.financial_year.to_string(),
                                charged_on: e.effective_on(),
                                subsidy_cents: e.subsidy.cents(),
                                reversed: false,
                                new: false,
                            };
                            self.folded.charges.insert((application.clone(), e.usage_id), charge);
                        }
                        ApplicationEvent::DisbursementReversed(e) if usages.contains(&e.usage_id) => {
                            if let Some(charge) = self.folded.charges.get_mut(&(application.clone(), e.usage_id)) {
                                charge.reversed = true;
                            }
                        }
                        _ => {}
                    }
                }
                match page.last() {
                    Some(last) if page.len() == STREAM_PAGE => from = Some(last.stream_version + 1),
                    _ => break,
                }
            }
        }
        Ok(())
    }

    fn load(&mut self, events: &[&RecordedEvent], rows: &mut CopyRows) -> Result<(), ProjectionError> {
        let loaded_reversed: BTreeSet<(String, String)> =
            self.folded.charges.iter().filter(|(_, charge)| charge.reversed).map(|(key, _)| key.clone()).collect();
        for (position, item) in decode_all(events.iter().copied())? {
            self.folded.fold(position, item);
        }
        for ((application, usage), charge) in std::mem::take(&mut self.folded.charges) {
            if charge.new {
                rows.push(
                    CHARGES,
                    &[
                        &application,
                        &usage,
                        &charge.financial_year,
                        &charge.charged_on,
                        &charge.subsidy_cents,
                        &charge.reversed,
                    ],
                );
            } else if charge.reversed && !loaded_reversed.contains(&(application.clone(), usage.clone())) {
                self.reversed_later.push((application, usage));
            }
        }
        let changes = std::mem::take(&mut self.folded.changes);
        self.add_changes(&changes, rows);
        Ok(())
    }

    fn finish(&mut self, rows: &mut CopyRows) -> Result<(), ProjectionError> {
        for (key, value) in &self.totals {
            rows.push(TOTALS, &[&key.year, &key.metric.as_str(), &key.dimension, value]);
        }
        for ((key, effective_on), value) in &self.dated_totals {
            rows.push(DATED_TOTALS, &[&key.year, &key.metric.as_str(), &key.dimension, effective_on, value]);
        }
        for (id, state) in std::mem::take(&mut self.folded.applications) {
            rows.push(APPLICATIONS, &[&id, &to_json(&state)?]);
        }
        for ((year, line), figures) in std::mem::take(&mut self.folded.lines) {
            rows.push(BUDGET_LINES, &[&year, &line, &to_json(&figures)?]);
        }
        for ((service, period), figures) in std::mem::take(&mut self.folded.months) {
            rows.push(CAPACITY_MONTHS, &[&service, &period, &to_json(&figures)?]);
        }
        Ok(())
    }

    async fn after_load(self: Box<Self>, connection: &mut PgConnection) -> Result<(), ProjectionError> {
        if self.reversed_later.is_empty() {
            return Ok(());
        }
        let (applications, usages): (Vec<&str>, Vec<&str>) =
            self.reversed_later.iter().map(|(application, usage)| (application.as_str(), usage.as_str())).unzip();
        sqlx::query(
            "UPDATE kpi_charges c SET reversed = true FROM unnest($1::text[], $2::text[]) AS u(application_id, usage_id) \
             WHERE c.application_id = u.application_id AND c.usage_id = u.usage_id",
        )
        .bind(&applications)
        .bind(&usages)
        .execute(&mut *connection)
        .await?;
        Ok(())
    }
}

impl KpiLoad {
    /// Adds a page's changes to the totals as live batches write them (see
    /// `batch::write_totals`): per total, the changes of each position summed, those summing
    /// to nothing dropped, and a history row with the value after each position.
    fn add_changes(&mut self, changes: &[(i64, Change)], rows: &mut CopyRows) {
        let mut by_position: BTreeMap<(&TotalKey, i64), i64> = BTreeMap::new();
        let mut by_date: BTreeMap<(&TotalKey, NaiveDate, i64), i64> = BTreeMap::new();
        for (position, change) in changes {
            *by_position.entry((&change.key, *position)).or_insert(0) += change.delta;
            *by_date.entry((&change.key, change.effective_on, *position)).or_insert(0) += change.delta;
        }
        for ((key, position), delta) in by_position.into_iter().filter(|(_, delta)| *delta != 0) {
            let total = self.totals.entry(key.clone()).or_insert(0);
            *total += delta;
            rows.push(TOTALS_HISTORY, &[&key.year, &key.metric.as_str(), &key.dimension, &position, &*total]);
        }
        for ((key, effective_on, position), delta) in by_date.into_iter().filter(|(_, delta)| *delta != 0) {
            let total = self.dated_totals.entry((key.clone(), effective_on)).or_insert(0);
            *total += delta;
            rows.push(
                DATED_HISTORY,
                &[&key.year, &key.metric.as_str(), &key.dimension, &effective_on, &position, &*total],
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_the_read_model_tables_in_order() {
        let names: Vec<&str> = TARGETS.iter().map(|target| target.table).collect();
        assert_eq!(names, super::super::TABLES.names);
        assert_eq!(TARGETS.len(), CAPACITY_MONTHS + 1);
    }
}
