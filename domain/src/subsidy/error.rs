//! Business refusals: each with a stable code for API clients and a message a staff member
//! can act on.

use chrono::NaiveDate;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    // Values
    #[error("{field} must not be negative")]
    NegativeAmount { field: &'static str },
    #[error("the amount is too large to record")]
    AmountOverflow,
    #[error("a rate is between 1 and 10000 basis points (0.01 % to 100 %), not {bps}")]
    RateOutOfRange { bps: u32 },
    #[error("{text:?} is not a financial year; write it like 2025-26")]
    InvalidFinancialYear { text: String },
    #[error("{text:?} is not a month; write it like 2025-07")]
    InvalidPeriod { text: String },
    #[error("{text:?} is not a service type; use lower-case letters, digits and _ (e.g. gpu_node_hour_h800)")]
    InvalidServiceType { text: String },
    #[error("{field}: {reason}")]
    InvalidInput { field: &'static str, reason: String },

    // Funding year
    #[error("funding year {year} has {left} of computing power subsidy left, less than the {requested} asked for")]
    BudgetShort { year: String, requested: String, left: String },
    #[error("funding year {year} has no unused computing power subsidy to redirect")]
    NothingToRedirect { year: String },
    #[error("funding year {year} ends on {last_day}; its unused subsidy can be redirected only after that")]
    YearNotEnded { year: String, last_day: NaiveDate },
    #[error("funding year {year} is closed: unused subsidy was redirected")]
    YearClosed { year: String },

    // Prices and capacity
    #[error("no service rate for {service_type} is in force on {date}")]
    NoRateInForce { service_type: String, date: NaiveDate },
    #[error("no AISC capacity for {service_type} is declared for {period}")]
    NoCapacityDeclared { service_type: String, period: String },
    #[error(
        "allocating {requested} units of {service_type} in {period} would exceed 90 % of AISC capacity (§10); {left} units are left"
    )]
    CapacityCapExceeded { service_type: String, period: String, requested: u64, left: u64 },
    #[error("only {untaken} units of {service_type} in {period} are not taken up; {requested} cannot be redeployed")]
    RedeploymentBeyondUntaken { service_type: String, period: String, requested: u64, untaken: u64 },

    // Batches
    #[error("batch {batch} already exists")]
    BatchExists { batch: String },
    #[error("no batch {batch}")]
    UnknownBatch { batch: String },
    #[error("the committee meeting ({committee_date}) must come after the batch deadline ({deadline})")]
    CommitteeBeforeDeadline { deadline: NaiveDate, committee_date: NaiveDate },
    #[error("batch {batch} closes at its deadline {deadline}; it cannot be closed on {today}")]
    DeadlineNotReached { batch: String, deadline: NaiveDate, today: NaiveDate },
    #[error("batch {batch} is already closed")]
    BatchAlreadyClosed { batch: String },
    #[error("no batch is open for applications on {today}; open one first")]
    NoOpenBatch { today: NaiveDate },

    // Applications
    #[error("application {application} already exists")]
    ApplicationExists { application: String },
    #[error("no application {application}")]
    UnknownApplication { application: String },
    #[error("the application is {status}; nothing more can be recorded for it")]
    ApplicationClosed { status: &'static str },
    #[error("cannot {action} an application that is {status}")]
    WrongStage { action: &'static str, status: &'static str },
    #[error("the batch deadline {deadline} has passed; the application can no longer be {action}")]
    BatchDeadlinePassed { deadline: NaiveDate, action: &'static str },
    #[error("nothing would change: {0}")]
    NoChange(String),
    #[error("the assessor must declare no conflict of interest before recording an assessment")]
    ConflictOfInterestNotDeclared,
    #[error("criterion {criterion} is scored 0 to 10, not {score}")]
    ScoreOutOfRange { criterion: char, score: u8 },
    #[error("{actor} assessed this application and cannot record its committee decision")]
    AssessorCannotDecide { actor: String },
    #[error("{member} declared a conflict and is recused; a recused member is not counted as present")]
    RecusedMemberCountedPresent { member: String },
    #[error("{member} assessed this application: an assessor is not counted among the members present to decide it")]
    AssessorCountedPresent { member: String },
    #[error("the committee needs {required} members present without conflict; {present} were")]
    QuorumNotMet { present: usize, required: usize },
    #[error("the committee decides a batch's applications only after the batch closes; batch {batch} is open")]
    BatchStillOpen { batch: String },
    #[error("a subsidy rate of {rate} is above 70 % (§13): record the decision as exceptional, with its reason")]
    RateNeedsExceptionalCase { rate: String },
    #[error("an exceptional subsidy rate needs the reason recorded")]
    ExceptionalWithoutReason,
    #[error("a subsidy rate of {rate} is above the 90 % ceiling of §13")]
    RateAboveCeiling { rate: String },
    #[error("{first} ({first_date}) must not be after {second} ({second_date})")]
    DatesReversed { first: &'static str, first_date: NaiveDate, second: &'static str, second_date: NaiveDate },
    #[error(
        "a ceiling of {ceiling} is above the subsidy of the allocated units, {allocation_subsidy} (units × rate in force × approved rate); omit the ceiling to use that amount"
    )]
    CeilingAboveAllocation { ceiling: String, allocation_subsidy: String },
    #[error("{what} ({date}) is after today ({today}): record facts that have happened")]
    DateInFuture { what: &'static str, date: NaiveDate, today: NaiveDate },
    #[error("the committee's decision ({decided_on}) cannot come before the deadline of batch {batch} ({deadline})")]
    DecidedBeforeDeadline { decided_on: NaiveDate, batch: String, deadline: NaiveDate },
    #[error(
        "the agreement cannot be signed ({signed_on}) before the committee approved the application ({decided_on})"
    )]
    SignedBeforeDecision { signed_on: NaiveDate, decided_on: NaiveDate },
    #[error("usage of {period} cannot be charged on {today}: the month has not begun")]
    UsageMonthNotBegun { period: String, today: NaiveDate },
    #[error(
        "the progress report due on {due} covers the project up to {period_end}; it cannot be submitted before then (today is {today})"
    )]
    ReportPeriodNotEnded { due: NaiveDate, period_end: NaiveDate, today: NaiveDate },
    #[error("nothing is disbursed before the funding agreement is signed")]
    AgreementNotSigned,
    #[error("usage in {period} is outside the approved period {start} to {end}")]
    UsageOutsideApprovedPeriod { period: String, start: NaiveDate, end: NaiveDate },
    #[error("{requested} more units of {service_type} would exceed the {allocated} allocated ({used} used)")]
    UnitsAboveAllocation { service_type: String, requested: u64, allocated: u64, used: u64 },
    #[error("a subsidy of {requested} would exceed the ceiling of {ceiling} ({disbursed} already disbursed)")]
    CeilingExceeded { requested: String, ceiling: String, disbursed: String },
    #[error(
        "a subsidy of {requested} would exceed what the application reserved in funding year {year} ({reserved}, of which {disbursed} is disbursed)"
    )]
    YearReservationExceeded { year: String, requested: String, reserved: String, disbursed: String },
    #[error("the progress report due on {due} is overdue; nothing more is disbursed until it is submitted")]
    ProgressReportOverdue { due: NaiveDate },
    #[error(
        "import {import} already charged {units} units of {service_type} in {period} to this application (usage {usage}); a line charging the same again is refused unless the import allows repeated lines"
    )]
    UsageAlreadyImported { import: String, usage: String, service_type: String, period: String, units: u64 },
    #[error("no disbursement {usage} on this application")]
    UnknownUsage { usage: String },
    #[error("disbursement {usage} was already reversed")]
    AlreadyReversed { usage: String },
    #[error("no progress report is due on {due}")]
    UnknownReport { due: NaiveDate },
    #[error("the progress report due on {due} has {state}")]
    ReportNotAwaiting { due: NaiveDate, state: &'static str },
}

impl DomainError {
    /// Every code [`DomainError::code`] answers, each once: the README's table of refusal codes
    /// is checked against it.
    pub const CODES: &'static [&'static str] = &[
        "negative_amount",
        "amount_overflow",
        "rate_out_of_range",
        "invalid_financial_year",
        "invalid_period",
        "invalid_service_type",
        "invalid_input",
        "budget_short",
        "nothing_to_redirect",
        "year_not_ended",
        "year_closed",
        "no_rate_in_force",
        "no_capacity_declared",
        "capacity_cap_exceeded",
        "redeployment_beyond_untaken",
        "batch_exists",
        "unknown_batch",
        "committee_before_deadline",
        "deadline_not_reached",
        "batch_already_closed",
        "no_open_batch",
        "application_exists",
        "unknown_application",
        "application_closed",
        "wrong_stage",
        "batch_deadline_passed",
        "no_change",
        "conflict_of_interest_not_declared",
        "score_out_of_range",
        "assessor_cannot_decide",
        "recused_member_counted_present",
        "assessor_counted_present",
        "quorum_not_met",
        "batch_still_open",
        "rate_needs_exceptional_case",
        "exceptional_without_reason",
        "rate_above_ceiling",
        "dates_reversed",
        "ceiling_above_allocation",
        "date_in_future",
        "decided_before_deadline",
        "signed_before_decision",
        "usage_month_not_begun",
        "report_period_not_ended",
        "agreement_not_signed",
        "usage_outside_approved_period",
        "units_above_allocation",
        "ceiling_exceeded",
        "year_reservation_exceeded",
        "progress_report_overdue",
        "usage_already_imported",
        "unknown_usage",
        "already_reversed",
        "unknown_report",
        "report_not_awaiting",
    ];

    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            DomainError::NegativeAmount { .. } => "negative_amount",
            DomainError::AmountOverflow => "amount_overflow",
            DomainError::RateOutOfRange { .. } => "rate_out_of_range",
            DomainError::InvalidFinancialYear { .. } => "invalid_financial_year",
            DomainError::InvalidPeriod { .. } => "invalid_period",
            DomainError::InvalidServiceType { .. } => "invalid_service_type",
            DomainError::InvalidInput { .. } => "invalid_input",
            DomainError::BudgetShort { .. } => "budget_short",
            DomainError::NothingToRedirect { .. } => "nothing_to_redirect",
            DomainError::YearNotEnded { .. } => "year_not_ended",
            DomainError::YearClosed { .. } => "year_closed",
            DomainError::NoRateInForce { .. } => "no_rate_in_force",
            DomainError::NoCapacityDeclared { .. } => "no_capacity_declared",
            DomainError::CapacityCapExceeded { .. } => "capacity_cap_exceeded",
            DomainError::RedeploymentBeyondUntaken { .. } => "redeployment_beyond_untaken",
            DomainError::BatchExists { .. } => "batch_exists",
            DomainError::UnknownBatch { .. } => "unknown_batch",
            DomainError::CommitteeBeforeDeadline { .. } => "committee_before_deadline",
            DomainError::DeadlineNotReached { .. } => "deadline_not_reached",
            DomainError::BatchAlreadyClosed { .. } => "batch_already_closed",
            DomainError::NoOpenBatch { .. } => "no_open_batch",
            DomainError::ApplicationExists { .. } => "application_exists",
            DomainError::UnknownApplication { .. } => "unknown_application",
            DomainError::ApplicationClosed { .. } => "application_closed",
            DomainError::WrongStage { .. } => "wrong_stage",
            DomainError::BatchDeadlinePassed { .. } => "batch_deadline_passed",
            DomainError::NoChange(_) => "no_change",
            DomainError::ConflictOfInterestNotDeclared => "conflict_of_interest_not_declared",
            DomainError::ScoreOutOfRange { .. } => "score_out_of_range",
            DomainError::AssessorCannotDecide { .. } => "assessor_cannot_decide",
            DomainError::RecusedMemberCountedPresent { .. } => "recused_member_counted_present",
            DomainError::AssessorCountedPresent { .. } => "assessor_counted_present",
            DomainError::QuorumNotMet { .. } => "quorum_not_met",
            DomainError::BatchStillOpen { .. } => "batch_still_open",
            DomainError::RateNeedsExceptionalCase { .. } => "rate_needs_exceptional_case",
            DomainError::ExceptionalWithoutReason => "exceptional_without_reason",
            DomainError::RateAboveCeiling { .. } => "rate_above_ceiling",
            DomainError::DatesReversed { .. } => "dates_reversed",
            DomainError::CeilingAboveAllocation { .. } => "ceiling_above_allocation",
            DomainError::DateInFuture { .. } => "date_in_future",
            DomainError::DecidedBeforeDeadline { .. } => "decided_before_deadline",
            DomainError::SignedBeforeDecision { .. } => "signed_before_decision",
            DomainError::UsageMonthNotBegun { .. } => "usage_month_not_begun",
            DomainError::ReportPeriodNotEnded { .. } => "report_period_not_ended",
            DomainError::AgreementNotSigned => "agreement_not_signed",
            DomainError::UsageOutsideApprovedPeriod { .. } => "usage_outside_approved_period",
            DomainError::UnitsAboveAllocation { .. } => "units_above_allocation",
            DomainError::CeilingExceeded { .. } => "ceiling_exceeded",
            DomainError::YearReservationExceeded { .. } => "year_reservation_exceeded",
            DomainError::ProgressReportOverdue { .. } => "progress_report_overdue",
            DomainError::UsageAlreadyImported { .. } => "usage_already_imported",
            DomainError::UnknownUsage { .. } => "unknown_usage",
            DomainError::AlreadyReversed { .. } => "already_reversed",
            DomainError::UnknownReport { .. } => "unknown_report",
            DomainError::ReportNotAwaiting { .. } => "report_not_awaiting",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One refusal of every variant.
    fn one_of_each() -> Vec<DomainError> {
        let day = NaiveDate::MIN;
        vec![
            DomainError::NegativeAmount { field: "x" },
            DomainError::AmountOverflow,
            DomainError::RateOutOfRange { bps: 1 },
            DomainError::InvalidFinancialYear { text: "x".into() },
            DomainError::InvalidPeriod { text: "x".into() },
            DomainError::InvalidServiceType { text: "x".into() },
            DomainError::InvalidInput { field: "x", reason: "x".into() },
            DomainError::BudgetShort { year: "x".into(), requested: "x".into(), left: "x".into() },
            DomainError::NothingToRedirect { year: "x".into() },
            DomainError::YearNotEnded { year: "x".into(), last_day: day },
            DomainError::YearClosed { year: "x".into() },
            DomainError::NoRateInForce { service_type: "x".into(), date: day },
            DomainError::NoCapacityDeclared { service_type: "x".into(), period: "x".into() },
            DomainError::CapacityCapExceeded { service_type: "x".into(), period: "x".into(), requested: 1, left: 1 },
            DomainError::RedeploymentBeyondUntaken {
                service_type: "x".into(),
                period: "x".into(),
                requested: 1,
                untaken: 1,
            },
            DomainError::BatchExists { batch: "x".into() },
            DomainError::UnknownBatch { batch: "x".into() },
            DomainError::CommitteeBeforeDeadline { deadline: day, committee_date: day },
            DomainError::DeadlineNotReached { batch: "x".into(), deadline: day, today: day },
            DomainError::BatchAlreadyClosed { batch: "x".into() },
            DomainError::NoOpenBatch { today: day },
            DomainError::ApplicationExists { application: "x".into() },
            DomainError::UnknownApplication { application: "x".into() },
            DomainError::ApplicationClosed { status: "x" },
            DomainError::WrongStage { action: "x", status: "x" },
            DomainError::BatchDeadlinePassed { deadline: day, action: "x" },
            DomainError::NoChange("x".into()),
            DomainError::ConflictOfInterestNotDeclared,
            DomainError::ScoreOutOfRange { criterion: 'a', score: 11 },
            DomainError::AssessorCannotDecide { actor: "x".into() },
            DomainError::RecusedMemberCountedPresent { member: "x".into() },
            DomainError::AssessorCountedPresent { member: "x".into() },
            DomainError::QuorumNotMet { present: 1, required: 1 },
            DomainError::BatchStillOpen { batch: "x".into() },
            DomainError::RateNeedsExceptionalCase { rate: "x".into() },
            DomainError::ExceptionalWithoutReason,
            DomainError::RateAboveCeiling { rate: "x".into() },
            DomainError::DatesReversed { first: "x", first_date: day, second: "x", second_date: day },
            DomainError::CeilingAboveAllocation { ceiling: "x".into(), allocation_subsidy: "x".into() },
            DomainError::DateInFuture { what: "x", date: day, today: day },
            DomainError::DecidedBeforeDeadline { decided_on: day, batch: "x".into(), deadline: day },
            DomainError::SignedBeforeDecision { signed_on: day, decided_on: day },
            DomainError::UsageMonthNotBegun { period: "x".into(), today: day },
            DomainError::ReportPeriodNotEnded { due: day, period_end: day, today: day },
            DomainError::AgreementNotSigned,
            DomainError::UsageOutsideApprovedPeriod { period: "x".into(), start: day, end: day },
            DomainError::UnitsAboveAllocation { service_type: "x".into(), requested: 1, allocated: 1, used: 1 },
            DomainError::CeilingExceeded { requested: "x".into(), ceiling: "x".into(), disbursed: "x".into() },
            DomainError::YearReservationExceeded {
                year: "x".into(),
                requested: "x".into(),
                reserved: "x".into(),
                disbursed: "x".into(),
            },
            DomainError::ProgressReportOverdue { due: day },
            DomainError::UsageAlreadyImported {
                import: "x".into(),
                usage: "x".into(),
                service_type: "x".into(),
                period: "x".into(),
                units: 1,
            },
            DomainError::UnknownUsage { usage: "x".into() },
            DomainError::AlreadyReversed { usage: "x".into() },
            DomainError::UnknownReport { due: day },
            DomainError::ReportNotAwaiting { due: day, state: "x" },
        ]
    }

    /// The variant's place in [`one_of_each`] and in [`DomainError::CODES`]. No wildcard: a new
    /// variant does not compile until it is given a place here; its sample and its code go at
    /// that place, which the test below checks.
    fn place(error: &DomainError) -> usize {
        match error {
            DomainError::NegativeAmount { .. } => 0,
            DomainError::AmountOverflow => 1,
            DomainError::RateOutOfRange { .. } => 2,
            DomainError::InvalidFinancialYear { .. } => 3,
            DomainError::InvalidPeriod { .. } => 4,
            DomainError::InvalidServiceType { .. } => 5,
            DomainError::InvalidInput { .. } => 6,
            DomainError::BudgetShort { .. } => 7,
            DomainError::NothingToRedirect { .. } => 8,
            DomainError::YearNotEnded { .. } => 9,
            DomainError::YearClosed { .. } => 10,
            DomainError::NoRateInForce { .. } => 11,
            DomainError::NoCapacityDeclared { .. } => 12,
            DomainError::CapacityCapExceeded { .. } => 13,
            DomainError::RedeploymentBeyondUntaken { .. } => 14,
            DomainError::BatchExists { .. } => 15,
            DomainError::UnknownBatch { .. } => 16,
            DomainError::CommitteeBeforeDeadline { .. } => 17,
            DomainError::DeadlineNotReached { .. } => 18,
            DomainError::BatchAlreadyClosed { .. } => 19,
            DomainError::NoOpenBatch { .. } => 20,
            DomainError::ApplicationExists { .. } => 21,
            DomainError::UnknownApplication { .. } => 22,
            DomainError::ApplicationClosed { .. } => 23,
            DomainError::WrongStage { .. } => 24,
            DomainError::BatchDeadlinePassed { .. } => 25,
            DomainError::NoChange(_) => 26,
            DomainError::ConflictOfInterestNotDeclared => 27,
            DomainError::ScoreOutOfRange { .. } => 28,
            DomainError::AssessorCannotDecide { .. } => 29,
            DomainError::RecusedMemberCountedPresent { .. } => 30,
            DomainError::AssessorCountedPresent { .. } => 31,
            DomainError::QuorumNotMet { .. } => 32,
            DomainError::BatchStillOpen { .. } => 33,
            DomainError::RateNeedsExceptionalCase { .. } => 34,
            DomainError::ExceptionalWithoutReason => 35,
            DomainError::RateAboveCeiling { .. } => 36,
            DomainError::DatesReversed { .. } => 37,
            DomainError::CeilingAboveAllocation { .. } => 38,
            DomainError::DateInFuture { .. } => 39,
            DomainError::DecidedBeforeDeadline { .. } => 40,
            DomainError::SignedBeforeDecision { .. } => 41,
            DomainError::UsageMonthNotBegun { .. } => 42,
            DomainError::ReportPeriodNotEnded { .. } => 43,
            DomainError::AgreementNotSigned => 44,
            DomainError::UsageOutsideApprovedPeriod { .. } => 45,
            DomainError::UnitsAboveAllocation { .. } => 46,
            DomainError::CeilingExceeded { .. } => 47,
            DomainError::YearReservationExceeded { .. } => 48,
            DomainError::ProgressReportOverdue { .. } => 49,
            DomainError::UsageAlreadyImported { .. } => 50,
            DomainError::UnknownUsage { .. } => 51,
            DomainError::AlreadyReversed { .. } => 52,
            DomainError::UnknownReport { .. } => 53,
            DomainError::ReportNotAwaiting { .. } => 54,
        }
    }

    #[test]
    fn codes_lists_the_code_of_every_variant_once() {
        let samples = one_of_each();
        let places: Vec<usize> = samples.iter().map(place).collect();
        assert_eq!(places, (0..samples.len()).collect::<Vec<_>>(), "one sample of each variant, in order");
        let codes: Vec<&str> = samples.iter().map(DomainError::code).collect();
        assert_eq!(codes, DomainError::CODES, "CODES lists every variant's code, in the same order");
        let distinct: std::collections::BTreeSet<&str> = codes.iter().copied().collect();
        assert_eq!(distinct.len(), codes.len(), "no two variants share a code");
    }
}
