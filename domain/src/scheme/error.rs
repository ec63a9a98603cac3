//! The scheme's business refusals: one enum, each variant with a stable snake_case code (for
//! problem+json bodies, metrics and staff scripts) and a message a staff member can act on.
//!
//! Malformed values (an empty title, a rate above 100 %) are refused earlier, when a raw value
//! is parsed into a value type: see [`ValueError`]. A refusal here means the request was well
//! formed but the scheme's rules, or the state of the streams, do not allow it.

use chrono::NaiveDate;

use super::money::{Money, RateBps, Units};
use super::values::{ApplicationId, BatchId, DisbursementId, FinancialYear, ServiceType, YearMonth};

/// A raw value that does not parse into one of the scheme's value types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("{field} must not be empty")]
    Empty { field: &'static str },
    #[error("{field} is at most {max} characters; this one has {length}")]
    TooLong { field: &'static str, max: usize, length: usize },
    #[error("{field} {value:?} is not valid: {expected}")]
    Malformed { field: &'static str, value: String, expected: &'static str },
    #[error("an amount of money cannot be negative ({cents} cents)")]
    NegativeAmount { cents: i64 },
    #[error("HK${dollars} is too large to hold in cents")]
    AmountTooLarge { dollars: i64 },
    #[error("a rate of {bps} basis points is above 100 %")]
    RateAbove100Percent { bps: u32 },
    #[error("a criterion score of {score} is outside 0 to {max}")]
    ScoreOutOfRange { score: u8, max: u8 },
    #[error("the period starts on {start} but ends earlier, on {end}")]
    PeriodEndsBeforeStart { start: NaiveDate, end: NaiveDate },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error(transparent)]
    InvalidValue(#[from] ValueError),
    #[error("the amount would leave the range an amount of money can hold ({operation})")]
    AmountOutOfRange { operation: &'static str },
    #[error("nothing to change: {what}")]
    NoChange { what: String },
    #[error("no {aggregate} exists yet for this command; create it first")]
    NotFound { aggregate: &'static str },
    #[error("this {aggregate} already exists; it cannot be created twice")]
    AlreadyExists { aggregate: &'static str },

    // Applications: lifecycle.
    #[error("application {application} is {status}; no further command is accepted on it")]
    ApplicationClosed { application: ApplicationId, status: &'static str },
    #[error("cannot {action} while the application is {status}")]
    NotAllowedInStatus { action: &'static str, status: &'static str },
    #[error("no batch is open for applications on {today}; open a batch first")]
    NoOpenBatch { today: NaiveDate },
    #[error("batch {batch} stopped taking changes after its deadline of {deadline}")]
    BatchDeadlinePassed { batch: BatchId, deadline: NaiveDate },
    #[error("the committee decides batch {batch} only after it closes; close the batch first")]
    BatchNotClosed { batch: BatchId },
    #[error("the application is in batch {actual}, not in batch {given}")]
    ApplicationNotInBatch { given: BatchId, actual: BatchId },
    #[error("an application can be deferred only to a later batch that is open: {reason}")]
    DeferralBatchInvalid { reason: &'static str },
    #[error("the application requests no resources, or a request has zero units")]
    ResourcesRequired,
    #[error("a ruling or decision against the applicant must give at least one reason")]
    ReasonsRequired,

    // Eligibility (§11, §13 footnote 6).
    #[error("the applicant's category is not one of the eligible users of §11 (a) to (e): {category}")]
    IneligibleCategory { category: String },
    #[error(
        "a strategic enterprise must undertake to land in Hong Kong and to employ a stated number (more than 0) of professionals (§11(e))"
    )]
    StrategicUndertakingsMissing,
    #[error("the applicant declared other Government funding for the same items; double funding is not allowed (§13 fn 6)")]
    DoubleFundingDeclared,

    // Assessment and committee.
    #[error("the assessor must declare having no conflict of interest before the assessment is recorded")]
    AssessorConflictNotDeclared,
    #[error("{staff} assessed this application and cannot record or take part in its committee decision")]
    AssessorCannotDecide { staff: String },
    #[error("the committee needs at least {required} members present and not recused; {present} were")]
    QuorumNotMet { required: usize, present: usize },
    #[error("a subsidy rate of {rate} is above 70 %: record the decision as exceptional, with its reason (§13)")]
    ExceptionalReasonRequired { rate: RateBps },
    #[error("a subsidy rate of {rate} is above the 90 % the scheme allows even in exceptional cases (§13)")]
    RateAboveExceptionalCap { rate: RateBps },
    #[error("the subsidy ceiling must be more than HK$0")]
    CeilingRequired,
    #[error("an allocation of {service} for {period} falls outside the approved period or has zero units")]
    AllocationOutsidePeriod { service: ServiceType, period: YearMonth },

    // Funding years (§16, §17, §23).
    #[error("financial year {year} has received no funding yet; record the Government's funding first")]
    FundingYearNotFunded { year: FinancialYear },
    #[error("this stream holds financial year {stream_year}, not {given}")]
    FundingYearMismatch { stream_year: FinancialYear, given: FinancialYear },
    #[error("financial year {year} is closed: its unused subsidy was redirected")]
    FundingYearClosed { year: FinancialYear },
    #[error("financial year {year} needs {needed} more but has only {left} left uncommitted")]
    BudgetInsufficient { year: FinancialYear, needed: Money, left: Money },
    #[error("financial year {year} has not ended; unused subsidy is redirected only after 31 March")]
    YearNotEnded { year: FinancialYear },
    #[error("application {application} has {outstanding} outstanding in {year}, less than the {requested} asked for")]
    CommitmentExceeded { application: ApplicationId, year: FinancialYear, requested: Money, outstanding: Money },

    // Capacity (§10, §17).
    #[error("no AISC capacity is declared for {service} in {period}")]
    CapacityNotDeclared { service: ServiceType, period: YearMonth },
    #[error(
        "{service} in {period}: {requested} more units would bring subsidised use to {would_be}, above the cap of {cap} (90 % of capacity, less redeployed)"
    )]
    CapacityCapExceeded { service: ServiceType, period: YearMonth, requested: Units, would_be: Units, cap: Units },
    #[error("{service} in {period}: capacity cannot drop to {units}, below what is allocated or redeployed")]
    CapacityBelowAllocations { service: ServiceType, period: YearMonth, units: Units },
    #[error("{service} in {period}: only {free} units are free to redeploy, not {requested}")]
    RedeploymentExceedsFreeCapacity { service: ServiceType, period: YearMonth, requested: Units, free: Units },
    #[error("application {application} holds no allocation of {service} in {period} large enough to release")]
    AllocationNotHeld { application: ApplicationId, service: ServiceType, period: YearMonth },

    // Prices (§14).
    #[error("no rate for {service} is in force on {date}; schedule one in the price schedule first")]
    RateNotInForce { service: ServiceType, date: NaiveDate },
    #[error("a rate cannot take effect on {effective_from}, before today ({today}): rates are never changed retroactively")]
    RateChangeRetroactive { effective_from: NaiveDate, today: NaiveDate },
    #[error("a service rate must be more than HK$0 per unit")]
    UnitRateRequired,

    // Batches (§15).
    #[error("a batch's deadline must not be past and its committee meeting must come after the deadline")]
    BatchDatesInvalid,
    #[error("batch {batch} closes at its deadline; it is still open until the end of {deadline}")]
    BatchDeadlineNotReached { batch: BatchId, deadline: NaiveDate },

    // Agreements, disbursements and reports (§21).
    #[error("the funding agreement has not been signed; nothing can be disbursed before it is")]
    AgreementNotSigned,
    #[error("the reporting schedule must list at least one due date, in increasing order, after the project starts")]
    ReportingScheduleInvalid,
    #[error("usage in {period} is outside the approved period {start} to {end}")]
    UsageOutsideApprovedPeriod { period: YearMonth, start: NaiveDate, end: NaiveDate },
    #[error("{service} in {period}: {requested} more units would exceed the {allocated} units allocated ({used} used)")]
    UnitsAboveAllocation { service: ServiceType, period: YearMonth, requested: Units, used: Units, allocated: Units },
    #[error("a subsidy of {requested} would bring the total disbursed above the ceiling of {ceiling} ({disbursed} disbursed)")]
    CeilingExceeded { requested: Money, disbursed: Money, ceiling: Money },
    #[error("the progress report due on {due} is overdue; no disbursement until it is submitted")]
    ProgressReportOverdue { due: NaiveDate },
    #[error("disbursement {disbursement} is already recorded")]
    DisbursementIdReused { disbursement: DisbursementId },
    #[error("no disbursement {disbursement} is recorded")]
    DisbursementUnknown { disbursement: DisbursementId },
    #[error("disbursement {disbursement} was already reversed")]
    DisbursementAlreadyReversed { disbursement: DisbursementId },
    #[error("no progress report is due on {due} under the agreement's reporting schedule")]
    ReportNotScheduled { due: NaiveDate },
    #[error("the progress report due on {due} is already submitted and awaits review or is accepted")]
    ReportAlreadySubmitted { due: NaiveDate },
    #[error("the progress report due on {due} is not awaiting review")]
    ReportNotAwaitingReview { due: NaiveDate },
    #[error("the project runs until {end}; complete it on or after that date, or terminate it early")]
    EndDateNotReached { end: NaiveDate },
}

impl DomainError {
    /// A stable code for clients and metrics; never reworded once published.
    pub fn code(&self) -> &'static str {
        use DomainError::*;
        match self {
            InvalidValue(_) => "invalid_value",
            AmountOutOfRange { .. } => "amount_out_of_range",
            NoChange { .. } => "no_change",
            NotFound { .. } => "not_found",
            AlreadyExists { .. } => "already_exists",
            ApplicationClosed { .. } => "application_closed",
            NotAllowedInStatus { .. } => "not_allowed_in_status",
            NoOpenBatch { .. } => "no_open_batch",
            BatchDeadlinePassed { .. } => "batch_deadline_passed",
            BatchNotClosed { .. } => "batch_not_closed",
            ApplicationNotInBatch { .. } => "application_not_in_batch",
            DeferralBatchInvalid { .. } => "deferral_batch_invalid",
            ResourcesRequired => "resources_required",
            ReasonsRequired => "reasons_required",
            IneligibleCategory { .. } => "ineligible_category",
            StrategicUndertakingsMissing => "strategic_undertakings_missing",
            DoubleFundingDeclared => "double_funding_declared",
            AssessorConflictNotDeclared => "assessor_conflict_not_declared",
            AssessorCannotDecide { .. } => "assessor_cannot_decide",
            QuorumNotMet { .. } => "quorum_not_met",
            ExceptionalReasonRequired { .. } => "exceptional_reason_required",
            RateAboveExceptionalCap { .. } => "rate_above_exceptional_cap",
            CeilingRequired => "ceiling_required",
            AllocationOutsidePeriod { .. } => "allocation_outside_period",
            FundingYearNotFunded { .. } => "funding_year_not_funded",
            FundingYearMismatch { .. } => "funding_year_mismatch",
            FundingYearClosed { .. } => "funding_year_closed",
            BudgetInsufficient { .. } => "budget_insufficient",
            YearNotEnded { .. } => "year_not_ended",
            CommitmentExceeded { .. } => "commitment_exceeded",
            CapacityNotDeclared { .. } => "capacity_not_declared",
            CapacityCapExceeded { .. } => "capacity_cap_exceeded",
            CapacityBelowAllocations { .. } => "capacity_below_allocations",
            RedeploymentExceedsFreeCapacity { .. } => "redeployment_exceeds_free_capacity",
            AllocationNotHeld { .. } => "allocation_not_held",
            RateNotInForce { .. } => "rate_not_in_force",
            RateChangeRetroactive { .. } => "rate_change_retroactive",
            UnitRateRequired => "unit_rate_required",
            BatchDatesInvalid => "batch_dates_invalid",
            BatchDeadlineNotReached { .. } => "batch_deadline_not_reached",
            AgreementNotSigned => "agreement_not_signed",
            ReportingScheduleInvalid => "reporting_schedule_invalid",
            UsageOutsideApprovedPeriod { .. } => "usage_outside_approved_period",
            UnitsAboveAllocation { .. } => "units_above_allocation",
            CeilingExceeded { .. } => "ceiling_exceeded",
            ProgressReportOverdue { .. } => "progress_report_overdue",
            DisbursementIdReused { .. } => "disbursement_id_reused",
            DisbursementUnknown { .. } => "disbursement_unknown",
            DisbursementAlreadyReversed { .. } => "disbursement_already_reversed",
            ReportNotScheduled { .. } => "report_not_scheduled",
            ReportAlreadySubmitted { .. } => "report_already_submitted",
            ReportNotAwaitingReview { .. } => "report_not_awaiting_review",
            EndDateNotReached { .. } => "end_date_not_reached",
        }
    }

    pub(crate) fn no_change(what: impl Into<String>) -> Self {
        DomainError::NoChange { what: what.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_snake_case_and_messages_are_not_empty() {
        let samples = [
            DomainError::ResourcesRequired,
            DomainError::StrategicUndertakingsMissing,
            DomainError::QuorumNotMet { required: 3, present: 2 },
            DomainError::no_change("eligibility is already confirmed"),
            DomainError::InvalidValue(ValueError::Empty { field: "project title" }),
        ];
        for error in samples {
            let code = error.code();
            assert!(code.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{code}");
            assert!(!error.to_string().is_empty());
        }
    }
}
