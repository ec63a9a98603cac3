//! The KPI dashboard (§18, §21, §23), per funding year or for the whole scheme: applications
//! received and decided, approval rate, days to decision, the cash flow per budget line,
//! capacity against the 90 % cap, utilisation, and the indicators the paper names. Rates and
//! shares are integer basis points. It is assembled from the totals the projection keeps.

use std::collections::BTreeMap;

use serde::Serialize;

use super::totals::Metric;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BudgetLineFigures {
    /// The budget line, e.g. `computing_power_subsidy`.
    pub line: String,
    /// Funding received from the Government, in HK cents.
    pub received_cents: i64,
    /// Reserved by approvals, in HK cents.
    pub committed_cents: i64,
    /// Paid out (usage charges less reversals), in HK cents.
    pub disbursed_cents: i64,
    /// Unused subsidy redirected after the year (§17), in HK cents.
    pub redirected_cents: i64,
    /// Received, less committed and redirected, in HK cents.
    pub left_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CapacityFigures {
    /// The AISC service, e.g. `gpu_node_hour_h800`.
    pub service_type: String,
    /// Units Cyberport declared for the scheme.
    pub capacity_units: i64,
    /// 90 % of capacity (§10).
    pub subsidised_cap_units: i64,
    /// Units allocated to approved projects.
    pub allocated_units: i64,
    /// Units not taken up and redeployed at market rates (§17).
    pub redeployed_units: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CategoryFigures {
    /// Applications received.
    pub received: i64,
    /// Applications approved.
    pub approved: i64,
    /// Applications rejected.
    pub rejected: i64,
    /// Average approved subsidy rate in basis points, rounded to the basis point.
    pub average_approved_rate_bps: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KpiDashboard {
    /// `2025-26`, or `scheme` for the whole scheme.
    pub scope: String,
    /// Applications submitted.
    pub applications_received: i64,
    /// Applications the committee approved.
    pub applications_approved: i64,
    /// Applications the committee rejected.
    pub applications_rejected: i64,
    /// Approved over decided (approved and rejected), in basis points; none before a decision.
    pub approval_rate_bps: Option<i64>,
    /// Median days from submission to the committee's decision; none before a decision.
    pub median_days_to_decision: Option<i64>,
    /// Figures per applicant category (`ai_startup`, `local_institution`, …).
    pub by_category: BTreeMap<String, CategoryFigures>,
    /// The cash flow per budget line.
    pub budget: Vec<BudgetLineFigures>,
    /// Capacity against the 90 % cap per service.
    pub capacity: Vec<CapacityFigures>,
    /// Units used over units allocated to approved projects, in basis points.
    pub utilisation_bps: Option<i64>,
    /// Approved projects developing AI models (§18).
    pub projects_developing_ai_models: i64,
    /// Approved projects with Mainland or overseas team members (§18).
    pub mainland_or_overseas_teams: i64,
    /// AI talents involved in approved projects (§18).
    pub talents_involved: i64,
    /// Progress reports past their due date and not submitted.
    pub overdue_progress_reports: i64,
}

/// A total of the scope asked (summed over its funding years): the metric's name as stored,
/// its dimension, and the value. Overdue reports come summed already, under
/// `next_report_due` with no dimension.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub(super) struct TotalRow {
    pub(super) metric: String,
    pub(super) dimension: String,
    pub(super) value: i64,
}

/// The dashboard of `scope` from its totals. A budget line is shown once some fact touched it
/// (its marker, or a charge of the year), a service type once some month of the scope has a
/// capacity fact, a category once an application of the scope is in it.
pub(super) fn assemble(scope: String, rows: Vec<TotalRow>) -> KpiDashboard {
    let mut totals: BTreeMap<(Metric, String), i64> = BTreeMap::new();
    for row in rows {
        if let Some(metric) = Metric::parse(&row.metric) {
            *totals.entry((metric, row.dimension)).or_insert(0) += row.value;
        }
    }
    let get = |metric: Metric, dimension: &str| totals.get(&(metric, dimension.to_string())).copied().unwrap_or(0);
    let along = |metric: Metric| {
        totals
            .iter()
            .filter(move |((m, _), _)| *m == metric)
            .map(|((_, dimension), value)| (dimension.as_str(), *value))
    };
    let sum = |metric: Metric| along(metric).map(|(_, value)| value).sum::<i64>();
    let ratio = |part: i64, whole: i64| (whole > 0).then(|| (i128::from(part) * 10_000 / i128::from(whole)) as i64);

    let by_category: BTreeMap<String, CategoryFigures> = along(Metric::Received)
        .filter(|(_, received)| *received > 0)
        .map(|(category, received)| {
            let rate_count = get(Metric::ApprovedRateCount, category);
            let figures = CategoryFigures {
                received,
                approved: get(Metric::Approved, category),
                rejected: get(Metric::Rejected, category),
                average_approved_rate_bps: rounded_average(get(Metric::ApprovedRateSum, category), rate_count),
            };
            (category.to_string(), figures)
        })
        .collect();

    let budget_metrics = [
        Metric::BudgetLineRecorded,
        Metric::ReceivedCents,
        Metric::CommittedCents,
        Metric::DisbursedCents,
        Metric::RedirectedCents,
    ];
    let lines: std::collections::BTreeSet<&str> = totals
        .keys()
        .filter(|(metric, _)| budget_metrics.contains(metric))
        .filter(|(metric, dimension)| {
            *metric != Metric::BudgetLineRecorded || get(Metric::BudgetLineRecorded, dimension) > 0
        })
        .map(|(_, dimension)| dimension.as_str())
        .collect();
    let budget = lines
        .into_iter()
        .map(|line| {
            let (received, committed, redirected) = (
                get(Metric::ReceivedCents, line),
                get(Metric::CommittedCents, line),
                get(Metric::RedirectedCents, line),
            );
            BudgetLineFigures {
                line: line.to_string(),
                received_cents: received,
                committed_cents: committed,
                disbursed_cents: get(Metric::DisbursedCents, line),
                redirected_cents: redirected,
                left_cents: received - committed - redirected,
            }
        })
        .collect();
    let capacity = along(Metric::CapacityMonths)
        .filter(|(_, months)| *months > 0)
        .map(|(service, _)| CapacityFigures {
            service_type: service.to_string(),
            capacity_units: get(Metric::CapacityUnits, service),
            subsidised_cap_units: get(Metric::SubsidisedCapUnits, service),
            allocated_units: get(Metric::AllocatedUnits, service),
            redeployed_units: get(Metric::RedeployedUnits, service),
        })
        .collect();

    let decision_days: Vec<(i64, i64)> = along(Metric::DecisionDays)
        .filter_map(|(days, count)| days.parse::<i64>().ok().map(|days| (days, count)))
        .collect();
    let (approved, rejected) = (sum(Metric::Approved), sum(Metric::Rejected));
    KpiDashboard {
        scope,
        applications_received: sum(Metric::Received),
        applications_approved: approved,
        applications_rejected: rejected,
        approval_rate_bps: ratio(approved, approved + rejected),
        median_days_to_decision: lower_median(decision_days),
        by_category,
        budget,
        capacity,
        utilisation_bps: ratio(get(Metric::UnitsUsed, ""), get(Metric::UnitsAllocated, "")),
        projects_developing_ai_models: get(Metric::AiModelProjects, ""),
        mainland_or_overseas_teams: get(Metric::MainlandOrOverseasTeams, ""),
        talents_involved: get(Metric::Talents, ""),
        overdue_progress_reports: get(Metric::NextReportDue, ""),
    }
}

/// `sum / count` rounded to the nearest, halves away from zero (PostgreSQL's `round(avg(…))`).
fn rounded_average(sum: i64, count: i64) -> Option<i64> {
    if count <= 0 {
        return None;
    }
    let (sum, count) = (i128::from(sum), i128::from(count));
    let rounded = if sum >= 0 { (2 * sum + count) / (2 * count) } else { -((-2 * sum + count) / (2 * count)) };
    Some(rounded as i64)
}

/// The median of a histogram of (value, count) as `percentile_disc(0.5)` takes it: the first
/// value at which half the counts or more are reached.
fn lower_median(mut histogram: Vec<(i64, i64)>) -> Option<i64> {
    histogram.retain(|(_, count)| *count > 0);
    histogram.sort_unstable();
    let total: i64 = histogram.iter().map(|(_, count)| count).sum();
    let mut reached = 0;
    for (value, count) in histogram {
        reached += count;
        if 2 * reached >= total {
            return Some(value);
        }
    }
    None
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
    use super::{csv_cell, lower_median, rounded_average};

    #[test]
    fn the_median_and_the_average_are_taken_as_postgresql_takes_them() {
        assert_eq!(lower_median(vec![(30, 1), (10, 1), (20, 1), (40, 1)]), Some(20), "the lower of two middles");
        assert_eq!(lower_median(vec![(5, 2), (9, 1)]), Some(5));
        assert_eq!(lower_median(vec![(5, 0)]), None);
        assert_eq!(rounded_average(15_001, 2), Some(7_501), "7,500.5 rounds up");
        assert_eq!(rounded_average(14_999, 2), Some(7_500));
        assert_eq!(rounded_average(-3, 2), Some(-2), "halves away from zero");
        assert_eq!(rounded_average(1, 0), None);
    }

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
