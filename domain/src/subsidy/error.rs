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
