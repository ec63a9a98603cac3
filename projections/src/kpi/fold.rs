//! What each event changes in the totals, split by business date.
//!
//! A total "as it stood on" day D is the fold of the facts whose business date is on or before
//! D, in log order. Each thing the fold keeps (an application, a budget line, a service's
//! month) therefore contributes to the totals a step function of D, which changes only on the
//! dates of its own facts. When an event arrives, the thing's function before and after it are
//! compared, and the difference is written as changes to the totals' dated parts: the total
//! on D is the sum of its parts dated on or before D, and the total as it stands now is the
//! sum of all its parts.

use std::collections::{BTreeMap, BTreeSet};

use aisc_domain::subsidy::application::ApplicationEvent;
use aisc_domain::subsidy::values::FinancialYear;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::totals::{Change, Metric, TotalKey};

/// A value by the date it holds from, until the next date.
pub(super) type Steps = BTreeMap<NaiveDate, i64>;

/// A total computed from a figure (the 90 % cap from a month's capacity): its metric and how.
pub(super) type Derived = (Metric, fn(i64) -> i64);

/// Statuses that mean the committee approved the application.
const APPROVED: [&str; 4] = ["approved", "agreement_signed", "completed", "terminated"];
/// Statuses after which no progress report is due.
const CLOSED: [&str; 2] = ["completed", "terminated"];

/// A fact of an application that the dashboard reads (usage aside).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fact", rename_all = "snake_case")]
pub(super) enum Fact {
    Submitted {
        submitted_on: NaiveDate,
        details: Details,
    },
    Amended {
        details: Details,
    },
    /// A stage with nothing else the dashboard reads: eligible, assessed, withdrawn…
    Status {
        status: String,
    },
    Approved {
        decided_on: NaiveDate,
        rate_bps: i64,
        units_allocated: i64,
    },
    Rejected {
        decided_on: NaiveDate,
    },
    AgreementSigned {
        due_dates: Vec<NaiveDate>,
    },
    ReportSubmitted {
        due: NaiveDate,
    },
}

/// What the applicant declared that the dashboard counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Details {
    pub(super) category: String,
    pub(super) develops_ai_models: bool,
    pub(super) mainland_or_overseas_team: bool,
    pub(super) talents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct DatedFact {
    pub(super) on: NaiveDate,
    #[serde(flatten)]
    pub(super) fact: Fact,
}

/// What the fold keeps of an application: its facts in log order, and the units it used by the
/// date they count from (a charge from its month, a reversal from its date or the charge's,
/// whichever is later).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ApplicationFacts {
    pub(super) facts: Vec<DatedFact>,
    pub(super) units: Steps,
}

/// An application as it stood on a day.
#[derive(Debug, Default)]
struct Profile<'a> {
    submitted_on: Option<NaiveDate>,
    details: Option<&'a Details>,
    status: &'a str,
    decided_on: Option<NaiveDate>,
    rate_bps: Option<i64>,
    units_allocated: i64,
    due_dates: &'a [NaiveDate],
    reports: Vec<NaiveDate>,
}

impl Profile<'_> {
    fn approved(&self) -> bool {
        self.submitted_on.is_some() && APPROVED.contains(&self.status)
    }

    fn next_report_due(&self) -> Option<NaiveDate> {
        if CLOSED.contains(&self.status) {
            return None;
        }
        self.due_dates.iter().filter(|due| !self.reports.contains(due)).min().copied()
    }
}

impl ApplicationFacts {
    /// The application folded from its facts dated on or before `day`, in log order.
    fn on(&self, day: NaiveDate) -> Profile<'_> {
        let mut profile = Profile::default();
        for DatedFact { fact, .. } in self.facts.iter().filter(|fact| fact.on <= day) {
            match fact {
                Fact::Submitted { submitted_on, details } => {
                    profile.submitted_on = Some(*submitted_on);
                    profile.details = Some(details);
                    profile.status = "submitted";
                }
                Fact::Amended { details } => profile.details = Some(details),
                Fact::Status { status } => profile.status = status,
                Fact::Approved { decided_on, rate_bps, units_allocated } => {
                    profile.status = "approved";
                    profile.decided_on = Some(*decided_on);
                    profile.rate_bps = Some(*rate_bps);
                    profile.units_allocated = *units_allocated;
                }
                Fact::Rejected { decided_on } => {
                    profile.status = "rejected";
                    profile.decided_on = Some(*decided_on);
                }
                Fact::AgreementSigned { due_dates } => {
                    profile.status = "agreement_signed";
                    profile.due_dates = due_dates;
                }
                Fact::ReportSubmitted { due } => profile.reports.push(*due),
            }
        }
        profile
    }

    /// The funding year of the submission: the year every total of the application counts in.
    fn year(&self) -> Option<String> {
        self.facts.iter().find_map(|fact| match fact.fact {
            Fact::Submitted { submitted_on, .. } => Some(FinancialYear::containing(submitted_on).to_string()),
            _ => None,
        })
    }

    /// What the application adds to the totals from each of its dates on.
    fn contribution(&self) -> Vec<(NaiveDate, BTreeMap<TotalKey, i64>)> {
        let Some(year) = self.year() else {
            return Vec::new();
        };
        let dates: BTreeSet<NaiveDate> =
            self.facts.iter().map(|fact| fact.on).chain(self.units.keys().copied()).collect();
        dates
            .into_iter()
            .map(|day| {
                let used: i64 = self.units.range(..=day).map(|(_, units)| units).sum();
                (day, contribution_of(&self.on(day), used, &year))
            })
            .collect()
    }

    /// Records `fact` (dated `on`) and answers what it changed in the totals.
    pub(super) fn record(&mut self, on: NaiveDate, fact: Fact) -> Vec<Change> {
        let before = self.contribution();
        self.facts.push(DatedFact { on, fact });
        difference(&before, &self.contribution())
    }

    /// Records `units` used from `from` on (negative for a reversal) and answers what it
    /// changed: the units count, from that day, on each day the application stood approved.
    pub(super) fn use_units(&mut self, from: NaiveDate, units: i64) -> Vec<Change> {
        *self.units.entry(from).or_default() += units;
        if self.units.get(&from) == Some(&0) {
            self.units.remove(&from);
        }
        let Some(year) = self.year() else {
            return Vec::new();
        };
        let key = TotalKey::new(&year, Metric::UnitsUsed, "");
        let mut days: BTreeSet<NaiveDate> = self.facts.iter().map(|fact| fact.on).filter(|day| *day > from).collect();
        days.insert(from);
        let mut changes = Vec::new();
        let mut counted_before = 0;
        for day in days {
            let counted = if self.on(day).approved() { units } else { 0 };
            if counted != counted_before {
                changes.push(Change { key: key.clone(), effective_on: day, delta: counted - counted_before });
            }
            counted_before = counted;
        }
        changes
    }
}

/// What an application as it stood adds to each total.
fn contribution_of(profile: &Profile<'_>, units_used: i64, year: &str) -> BTreeMap<TotalKey, i64> {
    let mut totals = BTreeMap::new();
    let (Some(submitted_on), Some(details)) = (profile.submitted_on, profile.details) else {
        return totals;
    };
    let mut add = |metric: Metric, dimension: &str, value: i64| {
        if value != 0 {
            *totals.entry(TotalKey::new(year, metric, dimension)).or_insert(0) += value;
        }
    };
    let category = details.category.as_str();
    add(Metric::Received, category, 1);
    if profile.approved() {
        add(Metric::Approved, category, 1);
        if let Some(rate) = profile.rate_bps {
            add(Metric::ApprovedRateSum, category, rate);
            add(Metric::ApprovedRateCount, category, 1);
        }
        add(Metric::UnitsUsed, "", units_used);
        add(Metric::UnitsAllocated, "", profile.units_allocated);
        add(Metric::AiModelProjects, "", i64::from(details.develops_ai_models));
        add(Metric::MainlandOrOverseasTeams, "", i64::from(details.mainland_or_overseas_team));
        add(Metric::Talents, "", details.talents);
    }
    if profile.status == "rejected" {
        add(Metric::Rejected, category, 1);
    }
    if let Some(decided_on) = profile.decided_on {
        add(Metric::DecisionDays, &(decided_on - submitted_on).num_days().to_string(), 1);
    }
    if let Some(due) = profile.next_report_due() {
        add(Metric::NextReportDue, &due.to_string(), 1);
    }
    totals
}

/// How a contribution changes on each of its dates (the amount it steps by, per total).
fn jumps(contribution: &[(NaiveDate, BTreeMap<TotalKey, i64>)]) -> BTreeMap<(TotalKey, NaiveDate), i64> {
    let mut jumps = BTreeMap::new();
    let empty = BTreeMap::new();
    let mut previous = &empty;
    for (day, totals) in contribution {
        for (key, value) in totals {
            let before = previous.get(key).copied().unwrap_or(0);
            if *value != before {
                jumps.insert((key.clone(), *day), value - before);
            }
        }
        for (key, before) in previous {
            if !totals.contains_key(key) {
                jumps.insert((key.clone(), *day), -before);
            }
        }
        previous = totals;
    }
    jumps
}

/// The changes that turn the `before` contribution into the `after` one.
fn difference(
    before: &[(NaiveDate, BTreeMap<TotalKey, i64>)],
    after: &[(NaiveDate, BTreeMap<TotalKey, i64>)],
) -> Vec<Change> {
    let mut delta = jumps(after);
    for (key, jump) in jumps(before) {
        *delta.entry(key).or_insert(0) -= jump;
    }
    delta
        .into_iter()
        .filter(|(_, delta)| *delta != 0)
        .map(|((key, effective_on), delta)| Change { key, effective_on, delta })
        .collect()
}

/// The latest figures of a budget line or a service's month: each the last value the log
/// recorded among the facts dated on or before a day, and the first day any fact took effect.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct LatestFigures {
    pub(super) first_on: Option<NaiveDate>,
    pub(super) figures: BTreeMap<Metric, Steps>,
}

impl LatestFigures {
    /// Records that the log set `metric` to `value` by a fact dated `on` (the latest fact in the
    /// log: from `on` on, it is the last one recorded whatever the day asked) and answers what
    /// changed in the totals `key_of` names. The month's or line's marker (`marker`) counts 1
    /// from its first fact. `derived` adds totals computed from this metric (the 90 % cap of a
    /// capacity), each its own key and function of the value.
    pub(super) fn set(
        &mut self,
        on: NaiveDate,
        metric: Metric,
        value: i64,
        key_of: &dyn Fn(Metric) -> TotalKey,
        marker: Metric,
        derived: &[Derived],
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        if self.first_on.is_none_or(|first| on < first) {
            if let Some(first) = self.first_on {
                changes.push(Change { key: key_of(marker), effective_on: first, delta: -1 });
            }
            changes.push(Change { key: key_of(marker), effective_on: on, delta: 1 });
            self.first_on = Some(on);
        }
        let steps = self.figures.entry(metric).or_default();
        let before = steps.clone();
        // From `on` on, this is the last value recorded; later-dated values recorded before it
        // are overtaken.
        steps.retain(|day, _| *day < on);
        steps.insert(on, value);
        changes.extend(step_difference(key_of(metric), &before, steps, |value| value));
        for (derived_metric, derive) in derived {
            changes.extend(step_difference(key_of(*derived_metric), &before, steps, *derive));
        }
        changes
    }
}

/// The changes that turn one step function of a figure (through `map`) into another.
fn step_difference(key: TotalKey, before: &Steps, after: &Steps, map: impl Fn(i64) -> i64) -> Vec<Change> {
    let step_jumps = |steps: &Steps| {
        let mut previous = 0;
        steps
            .iter()
            .map(|(day, value)| {
                let jump = map(*value) - previous;
                previous = map(*value);
                (*day, jump)
            })
            .collect::<BTreeMap<NaiveDate, i64>>()
    };
    let mut delta = step_jumps(after);
    for (day, jump) in step_jumps(before) {
        *delta.entry(day).or_insert(0) -= jump;
    }
    delta
        .into_iter()
        .filter(|(_, delta)| *delta != 0)
        .map(|(effective_on, delta)| Change { key: key.clone(), effective_on, delta })
        .collect()
}

/// The fact an application event records, if the dashboard reads it (usage aside).
pub(super) fn fact_of(event: &ApplicationEvent) -> Option<Fact> {
    use ApplicationEvent as E;
    let details = |details: &aisc_domain::subsidy::application::ApplicationDetails| Details {
        category: details.category.as_str().to_string(),
        develops_ai_models: details.develops_ai_models,
        mainland_or_overseas_team: details.mainland_or_overseas_team,
        talents: i64::from(details.talents),
    };
    let status = |status: &str| Some(Fact::Status { status: status.to_string() });
    match event {
        E::ApplicationSubmitted(e) => {
            Some(Fact::Submitted { submitted_on: e.submitted_on, details: details(&e.details) })
        }
        E::ApplicationAmended(e) => Some(Fact::Amended { details: details(&e.details) }),
        E::ApplicationWithdrawn(_) => status("withdrawn"),
        E::EligibilityConfirmed(_) => status("eligible"),
        E::RuledIneligible(_) => status("ineligible"),
        E::AssessmentRecorded(_) => status("assessed"),
        E::ApplicationDeferred(_) => status("deferred"),
        E::ApplicationCompleted(_) => status("completed"),
        E::ApplicationTerminated(_) => status("terminated"),
        E::ApplicationApproved(e) => Some(Fact::Approved {
            decided_on: e.committee.decided_on,
            rate_bps: i64::from(e.terms.rate.bps()),
            units_allocated: e
                .terms
                .allocations
                .iter()
                .map(|allocation| i64::try_from(allocation.units).unwrap_or(i64::MAX))
                .sum(),
        }),
        E::ApplicationRejected(e) => Some(Fact::Rejected { decided_on: e.committee.decided_on }),
        E::AgreementSigned(e) => Some(Fact::AgreementSigned { due_dates: e.reporting_due_dates.clone() }),
        E::ProgressReportSubmitted(e) => Some(Fact::ReportSubmitted { due: e.due }),
        E::UsageCharged(_) | E::DisbursementReversed(_) | E::ProgressReportReviewed(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(month: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, month, day).expect("date")
    }

    fn details() -> Details {
        Details {
            category: "ai_startup".into(),
            develops_ai_models: true,
            mainland_or_overseas_team: false,
            talents: 3,
        }
    }

    /// Sums the changes per total up to `on` (the totals as they stood that day).
    fn totals_on(changes: &[Change], on: NaiveDate) -> BTreeMap<(Metric, String), i64> {
        let mut totals = BTreeMap::new();
        for change in changes.iter().filter(|change| change.effective_on <= on) {
            *totals.entry((change.key.metric, change.key.dimension.clone())).or_insert(0) += change.delta;
        }
        totals.retain(|_, value| *value != 0);
        totals
    }

    #[test]
    fn a_decision_recorded_late_counts_from_its_own_date_and_units_only_while_approved() {
        let mut application = ApplicationFacts::default();
        let mut changes = Vec::new();
        changes.extend(application.record(day(5, 2), Fact::Submitted { submitted_on: day(5, 2), details: details() }));
        // Usage of July, recorded before the approval dated June was (a late record).
        changes.extend(application.use_units(day(7, 1), 10));
        changes.extend(
            application
                .record(day(6, 15), Fact::Approved { decided_on: day(6, 15), rate_bps: 7_000, units_allocated: 60 }),
        );
        changes.extend(application.record(day(8, 1), Fact::Status { status: "withdrawn".into() }));
        let on = |month, date| totals_on(&changes, day(month, date));
        assert_eq!(on(5, 1), BTreeMap::new(), "not yet submitted");
        assert_eq!(on(6, 14).get(&(Metric::Approved, "ai_startup".into())), None);
        let approved = on(6, 15);
        assert_eq!(approved.get(&(Metric::Approved, "ai_startup".into())), Some(&1));
        assert_eq!(approved.get(&(Metric::DecisionDays, "44".into())), Some(&1));
        assert_eq!(approved.get(&(Metric::UnitsUsed, String::new())), None, "July's usage counts from July");
        assert_eq!(on(7, 1).get(&(Metric::UnitsUsed, String::new())), Some(&10));
        let withdrawn = on(8, 1);
        assert_eq!(withdrawn.get(&(Metric::Approved, "ai_startup".into())), None);
        assert_eq!(withdrawn.get(&(Metric::UnitsUsed, String::new())), None, "counted only while approved");
        assert_eq!(withdrawn.get(&(Metric::Received, "ai_startup".into())), Some(&1));
    }

    #[test]
    fn the_last_recorded_figure_holds_from_its_date_on() {
        let mut line = LatestFigures::default();
        let key_of = |metric| TotalKey::new("2025-26", metric, "line");
        let mut changes = line.set(day(6, 15), Metric::CommittedCents, 100, &key_of, Metric::BudgetLineRecorded, &[]);
        // Recorded after, dated before: the log's latest total, in force from its own date.
        changes.extend(line.set(day(5, 1), Metric::CommittedCents, 300, &key_of, Metric::BudgetLineRecorded, &[]));
        let on = |month, date| totals_on(&changes, day(month, date));
        assert_eq!(on(4, 30), BTreeMap::new());
        let may = on(5, 1);
        assert_eq!(may.get(&(Metric::CommittedCents, "line".into())), Some(&300));
        assert_eq!(may.get(&(Metric::BudgetLineRecorded, "line".into())), Some(&1));
        assert_eq!(on(7, 1).get(&(Metric::CommittedCents, "line".into())), Some(&300));
    }
}
