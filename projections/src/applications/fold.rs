//! Folding a batch of events into what it changes per row, in log order.

use std::collections::BTreeMap;

use aisc_domain::event_store::RecordedEvent;
use aisc_domain::subsidy::application::ApplicationEvent;
use aisc_domain::subsidy::batches::BatchEvent;
use aisc_domain::subsidy::capacity::CapacityEvent;
use aisc_domain::subsidy::funding::FundingEvent;
use aisc_domain::subsidy::streams;
use chrono::{DateTime, NaiveDate, Utc};

use super::{SUBSIDY_LINE, bad, to_i64};
use crate::projection::ProjectionError;

/// A new application row, from its submission.
#[derive(Debug, Clone)]
pub(super) struct NewApplication {
    pub(super) batch_id: String,
    pub(super) submitted_on: NaiveDate,
    pub(super) organisation: String,
    pub(super) category: String,
    pub(super) sub_type: String,
    pub(super) project_title: String,
    pub(super) develops_ai_models: bool,
    pub(super) mainland_or_overseas_team: bool,
    pub(super) team_size: i32,
    pub(super) talents: i32,
    pub(super) requested_rate_bps: i32,
}

/// What a batch's events change in one application row; `None` leaves a column as it is.
#[derive(Debug, Clone, Default)]
pub(super) struct ApplicationChange {
    pub(super) last_position: i64,
    pub(super) status: Option<&'static str>,
    pub(super) batch_id: Option<String>,
    pub(super) organisation: Option<String>,
    pub(super) category: Option<String>,
    pub(super) sub_type: Option<String>,
    pub(super) project_title: Option<String>,
    pub(super) develops_ai_models: Option<bool>,
    pub(super) mainland_or_overseas_team: Option<bool>,
    pub(super) team_size: Option<i32>,
    pub(super) talents: Option<i32>,
    pub(super) requested_rate_bps: Option<i32>,
    pub(super) assessed_by: Option<String>,
    pub(super) total_score: Option<i32>,
    pub(super) decided_on: Option<NaiveDate>,
    pub(super) approved_rate_bps: Option<i32>,
    pub(super) ceiling_cents: Option<i64>,
    pub(super) project_start: Option<NaiveDate>,
    pub(super) project_end: Option<NaiveDate>,
    pub(super) units_allocated: Option<i64>,
    pub(super) disbursed_cents: Option<i64>,
    pub(super) units_used_delta: i64,
    pub(super) report_due_dates: Option<Vec<NaiveDate>>,
    pub(super) reports_submitted: Vec<NaiveDate>,
}

/// A funding year's line as the batch left it: the last value of each total it set.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct BudgetTotals {
    pub(super) received_cents: Option<i64>,
    pub(super) committed_cents: Option<i64>,
    pub(super) redirected_cents: Option<i64>,
}

/// A service type's month as the batch left it: the last value of each total it set.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct CapacityTotals {
    pub(super) capacity: Option<i64>,
    pub(super) allocated: Option<i64>,
    pub(super) redeployed: Option<i64>,
}

/// A batch of events folded per row, in log order.
#[derive(Debug, Default)]
pub(super) struct BatchChanges {
    pub(super) batches_opened: Vec<(String, NaiveDate, NaiveDate)>,
    pub(super) batches_closed: Vec<String>,
    pub(super) new_applications: BTreeMap<String, NewApplication>,
    pub(super) applications: BTreeMap<String, ApplicationChange>,
    pub(super) budget: BTreeMap<(String, &'static str), BudgetTotals>,
    pub(super) capacity: BTreeMap<(String, String), CapacityTotals>,
    pub(super) usage_charged: Vec<UsageRow>,
    /// (application, usage id, reason) of each reversal, in log order.
    pub(super) usage_reversed: Vec<(String, String, String)>,
}

/// A usage charge as finance officers read it: units, rate, gross and subsidy.
#[derive(Debug, Clone)]
pub(super) struct UsageRow {
    pub(super) application_id: String,
    pub(super) usage_id: String,
    pub(super) service_type: String,
    pub(super) period: String,
    pub(super) financial_year: String,
    pub(super) units: i64,
    pub(super) rate_per_unit_cents: i64,
    pub(super) gross_cents: i64,
    pub(super) subsidy_rate_bps: i32,
    pub(super) subsidy_cents: i64,
    pub(super) charged_position: i64,
    /// The charge's business date: its usage month's first day.
    pub(super) charged_on: NaiveDate,
    /// When the log recorded the charge.
    pub(super) recorded_at: DateTime<Utc>,
}

pub(super) fn clamp_i32(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

pub(super) fn dates_text(dates: &[NaiveDate]) -> String {
    dates.iter().map(NaiveDate::to_string).collect::<Vec<_>>().join(",")
}

impl BatchChanges {
    pub(super) fn batch_event(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        match event.decode::<BatchEvent>().map_err(|error| bad(event, error))? {
            BatchEvent::BatchOpened(e) => self.batches_opened.push((e.batch_id, e.deadline, e.committee_date)),
            BatchEvent::BatchClosed(e) => self.batches_closed.push(e.batch_id),
        }
        Ok(())
    }

    pub(super) fn application_event(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
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
                    charged_on: e.period.first_day(),
                    recorded_at: event.recorded_at,
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

    pub(super) fn budget_event(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        let decoded = event.decode::<FundingEvent>().map_err(|error| bad(event, error))?;
        let year = streams::budget_year(&event.stream).map(|year| year.to_string()).unwrap_or_default();
        // Every budget fact but receipts concerns the computing power subsidy line.
        let line = |name| self.budget.entry((year, name)).or_default();
        match decoded {
            FundingEvent::FundingReceived(e) => line(e.line.as_str()).received_cents = Some(e.line_total.cents()),
            FundingEvent::SubsidyCommitted(e) => line(SUBSIDY_LINE).committed_cents = Some(e.committed_total.cents()),
            FundingEvent::SubsidyReleased(e) => line(SUBSIDY_LINE).committed_cents = Some(e.committed_total.cents()),
            // Disbursements are counted from the applications' own charges and reversals (the
            // first releases also wrote them here; counting both would count them twice).
            FundingEvent::SubsidyDisbursed(_) | FundingEvent::SubsidyDisbursementReversed(_) => {}
            FundingEvent::UnusedSubsidyRedirected(e) => line(SUBSIDY_LINE).redirected_cents = Some(e.amount.cents()),
        }
        Ok(())
    }

    pub(super) fn capacity_event(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        let decoded = event.decode::<CapacityEvent>().map_err(|error| bad(event, error))?;
        let (service, period) = match &decoded {
            CapacityEvent::CapacityDeclared(e) => (&e.service_type, e.period),
            CapacityEvent::CapacityAllocated(e) => (&e.service_type, e.period),
            CapacityEvent::CapacityReleased(e) => (&e.service_type, e.period),
            CapacityEvent::CapacityRedeployed(e) => (&e.service_type, e.period),
        };
        let month = self.capacity.entry((service.as_str().to_string(), period.to_string())).or_default();
        match decoded {
            CapacityEvent::CapacityDeclared(e) => month.capacity = Some(to_i64(e.units)),
            CapacityEvent::CapacityAllocated(e) => month.allocated = Some(to_i64(e.allocated_total)),
            CapacityEvent::CapacityReleased(e) => month.allocated = Some(to_i64(e.allocated_total)),
            CapacityEvent::CapacityRedeployed(e) => month.redeployed = Some(to_i64(e.redeployed_total)),
        }
        Ok(())
    }
}

/// An application row as the log has left it so far (a rebuild's fold).
#[derive(Debug, Clone)]
pub(super) struct ApplicationRow {
    pub(super) submitted: NewApplication,
    pub(super) status: &'static str,
    pub(super) assessed_by: Option<String>,
    pub(super) total_score: Option<i32>,
    pub(super) decided_on: Option<NaiveDate>,
    pub(super) approved_rate_bps: Option<i32>,
    pub(super) ceiling_cents: Option<i64>,
    pub(super) disbursed_cents: i64,
    pub(super) units_allocated: i64,
    pub(super) units_used: i64,
    pub(super) project_start: Option<NaiveDate>,
    pub(super) project_end: Option<NaiveDate>,
    pub(super) report_due_dates: Vec<NaiveDate>,
    pub(super) reports_submitted: Vec<NaiveDate>,
    pub(super) last_position: i64,
}

impl ApplicationRow {
    /// As `write` inserts it: submitted, nothing disbursed, allocated or used.
    fn new(submitted: NewApplication) -> Self {
        Self {
            submitted,
            status: "submitted",
            assessed_by: None,
            total_score: None,
            decided_on: None,
            approved_rate_bps: None,
            ceiling_cents: None,
            disbursed_cents: 0,
            units_allocated: 0,
            units_used: 0,
            project_start: None,
            project_end: None,
            report_due_dates: Vec::new(),
            reports_submitted: Vec::new(),
            last_position: 0,
        }
    }

    /// What `write`'s UPDATE does to the row: a column the change leaves `None` keeps its value.
    fn change(&mut self, change: ApplicationChange) {
        fn set_some<T>(column: &mut Option<T>, value: Option<T>) {
            if value.is_some() {
                *column = value;
            }
        }
        let row = &mut self.submitted;
        set(&mut row.batch_id, change.batch_id);
        set(&mut row.organisation, change.organisation);
        set(&mut row.category, change.category);
        set(&mut row.sub_type, change.sub_type);
        set(&mut row.project_title, change.project_title);
        set(&mut row.develops_ai_models, change.develops_ai_models);
        set(&mut row.mainland_or_overseas_team, change.mainland_or_overseas_team);
        set(&mut row.team_size, change.team_size);
        set(&mut row.talents, change.talents);
        set(&mut row.requested_rate_bps, change.requested_rate_bps);
        set(&mut self.status, change.status);
        set_some(&mut self.assessed_by, change.assessed_by);
        set_some(&mut self.total_score, change.total_score);
        set_some(&mut self.decided_on, change.decided_on);
        set_some(&mut self.approved_rate_bps, change.approved_rate_bps);
        set_some(&mut self.ceiling_cents, change.ceiling_cents);
        set_some(&mut self.project_start, change.project_start);
        set_some(&mut self.project_end, change.project_end);
        set(&mut self.units_allocated, change.units_allocated);
        set(&mut self.disbursed_cents, change.disbursed_cents);
        self.units_used += change.units_used_delta;
        set(&mut self.report_due_dates, change.report_due_dates);
        self.reports_submitted.extend(change.reports_submitted);
        self.last_position = change.last_position;
    }

    /// The earliest due date without a report, none once the project has ended (as `write`
    /// computes it).
    pub(super) fn next_report_due(&self) -> Option<NaiveDate> {
        if matches!(self.status, "completed" | "terminated") {
            return None;
        }
        self.report_due_dates.iter().filter(|due| !self.reports_submitted.contains(due)).min().copied()
    }
}

/// A batch's row as the log has left it so far.
#[derive(Debug, Clone)]
pub(super) struct BatchRow {
    pub(super) deadline: NaiveDate,
    pub(super) committee_date: NaiveDate,
    pub(super) closed: bool,
}

/// Every row but the usage lines, as the log has left them so far: what a rebuild keeps in
/// memory (a row per application, batch, funding year's line and service month: few). Pages
/// are folded with [`BatchChanges`], as live batches are, then merged here as `write` would
/// write them.
#[derive(Debug, Default)]
pub(super) struct FoldedLog {
    pub(super) applications: BTreeMap<String, ApplicationRow>,
    pub(super) batches: BTreeMap<String, BatchRow>,
    pub(super) budget: BTreeMap<(String, &'static str), BudgetRow>,
    pub(super) capacity: BTreeMap<(String, String), CapacityRow>,
    /// Subsidy charged per financial year (reversals are taken off once the lines are loaded).
    pub(super) charged: BTreeMap<String, i64>,
    /// (application, usage id, reason) of the first reversal of each line, in log order.
    pub(super) reversals: Vec<(String, String, String)>,
    reversed: std::collections::BTreeSet<(String, String)>,
}

/// A funding year's line as the log has left it so far; disbursements are added when written.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct BudgetRow {
    pub(super) received_cents: i64,
    pub(super) committed_cents: i64,
    pub(super) redirected_cents: i64,
}

/// A service type's month as the log has left it so far.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct CapacityRow {
    pub(super) capacity: i64,
    pub(super) allocated: i64,
    pub(super) redeployed: i64,
}

fn set<T>(column: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *column = value;
    }
}

impl FoldedLog {
    /// Merges a folded page in the order `write` writes it; answers its usage charges, which
    /// the caller writes out (they are not kept).
    pub(super) fn merge(&mut self, page: BatchChanges) -> Vec<UsageRow> {
        for (id, deadline, committee_date) in page.batches_opened {
            self.batches.entry(id).or_insert(BatchRow { deadline, committee_date, closed: false });
        }
        for id in page.batches_closed {
            if let Some(batch) = self.batches.get_mut(&id) {
                batch.closed = true;
            }
        }
        for (id, submitted) in page.new_applications {
            self.applications.entry(id).or_insert_with(|| ApplicationRow::new(submitted));
        }
        for (id, change) in page.applications {
            if let Some(row) = self.applications.get_mut(&id) {
                row.change(change);
            }
        }
        for charge in &page.usage_charged {
            *self.charged.entry(charge.financial_year.clone()).or_default() += charge.subsidy_cents;
        }
        for (application, usage, reason) in page.usage_reversed {
            if self.reversed.insert((application.clone(), usage.clone())) {
                self.reversals.push((application, usage, reason));
            }
        }
        for (line, totals) in page.budget {
            let row = self.budget.entry(line).or_default();
            set(&mut row.received_cents, totals.received_cents);
            set(&mut row.committed_cents, totals.committed_cents);
            set(&mut row.redirected_cents, totals.redirected_cents);
        }
        for (month, totals) in page.capacity {
            let row = self.capacity.entry(month).or_default();
            set(&mut row.capacity, totals.capacity);
            set(&mut row.allocated, totals.allocated);
            set(&mut row.redeployed, totals.redeployed);
        }
        page.usage_charged
    }
}
