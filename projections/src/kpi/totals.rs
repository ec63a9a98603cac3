//! The totals the dashboard is read from: a funding year's metric along one dimension.

use chrono::NaiveDate;

/// What a total counts. Application metrics belong to the funding year the application was
/// submitted in; budget metrics to the budget's year; capacity metrics to the year of the month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Metric {
    /// Applications submitted, by category.
    Received,
    /// Applications whose status is an approval (approved, agreement signed, completed,
    /// terminated), by category.
    Approved,
    Rejected,
    /// The approved rates of those, summed, and how many had one (the average's parts).
    ApprovedRateSum,
    ApprovedRateCount,
    /// Approved applications' units used and allocated (utilisation).
    UnitsUsed,
    UnitsAllocated,
    AiModelProjects,
    MainlandOrOverseasTeams,
    Talents,
    /// Decided applications, by days from submission to decision (the median's histogram).
    DecisionDays,
    /// Applications by their next progress report's due date (overdue against any day).
    NextReportDue,
    /// A budget line some fact of the year has touched, by line.
    BudgetLineRecorded,
    ReceivedCents,
    CommittedCents,
    DisbursedCents,
    RedirectedCents,
    /// Months of the year with some capacity fact, by service type.
    CapacityMonths,
    CapacityUnits,
    SubsidisedCapUnits,
    AllocatedUnits,
    RedeployedUnits,
}

impl Metric {
    const ALL: [Metric; 22] = [
        Metric::Received,
        Metric::Approved,
        Metric::Rejected,
        Metric::ApprovedRateSum,
        Metric::ApprovedRateCount,
        Metric::UnitsUsed,
        Metric::UnitsAllocated,
        Metric::AiModelProjects,
        Metric::MainlandOrOverseasTeams,
        Metric::Talents,
        Metric::DecisionDays,
        Metric::NextReportDue,
        Metric::BudgetLineRecorded,
        Metric::ReceivedCents,
        Metric::CommittedCents,
        Metric::DisbursedCents,
        Metric::RedirectedCents,
        Metric::CapacityMonths,
        Metric::CapacityUnits,
        Metric::SubsidisedCapUnits,
        Metric::AllocatedUnits,
        Metric::RedeployedUnits,
    ];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Metric::Received => "received",
            Metric::Approved => "approved",
            Metric::Rejected => "rejected",
            Metric::ApprovedRateSum => "approved_rate_sum",
            Metric::ApprovedRateCount => "approved_rate_count",
            Metric::UnitsUsed => "units_used",
            Metric::UnitsAllocated => "units_allocated",
            Metric::AiModelProjects => "ai_model_projects",
            Metric::MainlandOrOverseasTeams => "mainland_or_overseas_teams",
            Metric::Talents => "talents",
            Metric::DecisionDays => "decision_days",
            // The queries name this one in their SQL: overdue reports are summed there.
            Metric::NextReportDue => "next_report_due",
            Metric::BudgetLineRecorded => "budget_line_recorded",
            Metric::ReceivedCents => "received_cents",
            Metric::CommittedCents => "committed_cents",
            Metric::DisbursedCents => "disbursed_cents",
            Metric::RedirectedCents => "redirected_cents",
            Metric::CapacityMonths => "capacity_months",
            Metric::CapacityUnits => "capacity_units",
            Metric::SubsidisedCapUnits => "subsidised_cap_units",
            Metric::AllocatedUnits => "allocated_units",
            Metric::RedeployedUnits => "redeployed_units",
        }
    }

    pub(super) fn parse(text: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|metric| metric.as_str() == text)
    }
}

/// One total: a funding year's metric along one dimension (empty when it has none).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct TotalKey {
    pub(super) year: String,
    pub(super) metric: Metric,
    pub(super) dimension: String,
}

impl TotalKey {
    pub(super) fn new(year: &str, metric: Metric, dimension: &str) -> TotalKey {
        TotalKey { year: year.to_string(), metric, dimension: dimension.to_string() }
    }
}

/// An event's change to a total's part dated `effective_on` (the facts taking effect that day).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Change {
    pub(super) key: TotalKey,
    pub(super) effective_on: NaiveDate,
    pub(super) delta: i64,
}

#[cfg(test)]
mod tests {
    use super::Metric;

    #[test]
    fn every_metric_reads_back_from_its_name() {
        for metric in Metric::ALL {
            assert_eq!(Metric::parse(metric.as_str()), Some(metric));
        }
        assert_eq!(Metric::parse("nothing"), None);
    }
}
