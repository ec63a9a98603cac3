//! What is stored of an application's life: one payload struct per event type, each with its
//! own schema version, and the upcasters that read every older version.
//!
//! History of the stored shapes:
//! - v1 (first release) nested the submission (`submission: {…}`) in `ApplicationSubmitted`
//!   and `ApplicationAmended`, and the committee meeting (`meeting: {…}`) and approved terms
//!   (`approval: {…}`) in the committee's decisions.
//! - v2 stores those fields flat in the event's own payload, so no command or request type
//!   shapes what is stored.
//! - v2 of `AssessmentRecorded`, `DisbursementReversed` and `ProgressReportReviewed` adds the
//!   business date the first release did not store (`assessed_on`, `reversed_on`,
//!   `reviewed_on`); their v1 data takes the Hong Kong day the event was recorded.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::codec::{EventPayload, StoredContext, flatten_field};
use crate::event_payloads;
use crate::subsidy::capacity::Allocation;
use crate::subsidy::values::{ApplicantCategory, FinancialYear, Money, Period, RateBps, ServiceType};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestedResource {
    pub service_type: ServiceType,
    pub first_period: Period,
    pub last_period: Period,
    pub units_per_month: u64,
}

/// The undertakings a strategic enterprise gives (§11(e)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undertakings {
    pub land_in_hong_kong: bool,
    pub professionals_to_employ: u32,
    /// How the project contributes to R&D and AI innovation in Hong Kong.
    pub contribution: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub name: String,
    pub email: String,
}

/// The application as submitted or last amended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationDetails {
    pub organisation: String,
    pub category: ApplicantCategory,
    pub sub_type: String,
    pub project_title: String,
    pub project_summary: String,
    pub develops_ai_models: bool,
    pub requested_resources: Vec<RequestedResource>,
    pub requested_rate: RateBps,
    pub team_size: u32,
    pub talents: u32,
    pub mainland_or_overseas_team: bool,
    /// Declared: other Government funding for the same items (§13 footnote 6).
    pub other_government_funding: bool,
    pub undertakings: Option<Undertakings>,
    pub contact: Contact,
}

/// Scores for the criteria of §13 (a)–(d), 0 to 10 each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scores {
    pub a_meets_hong_kong_needs: u8,
    pub b_requirement_reasonable: u8,
    pub c_feasibility_and_outcome: u8,
    pub d_capability: u8,
}

/// Who recorded a committee decision, at which meeting, with whom present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitteeRecord {
    /// The principal recording the decision.
    pub recorded_by: String,
    pub meeting_reference: String,
    pub decided_on: NaiveDate,
    pub members_present: Vec<String>,
    pub members_recused: Vec<String>,
}

/// Subsidy reserved in one financial year.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub year: FinancialYear,
    pub amount: Money,
}

/// What the committee approved (§12–§13).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovedTerms {
    pub rate: RateBps,
    pub exceptional_reason: Option<String>,
    pub allocations: Vec<Allocation>,
    pub ceiling: Money,
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub conditions: Vec<String>,
    pub reservations: Vec<Reservation>,
}

/// The KPI figures of a progress report (§18, §21).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kpis {
    pub ai_models_trained_or_deployed: u32,
    pub talents_employed: u32,
    pub mainland_or_overseas_collaborators: u32,
    pub publications: u32,
    pub patents: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationSubmitted {
    pub application_id: String,
    pub batch_id: String,
    pub batch_deadline: NaiveDate,
    pub submitted_on: NaiveDate,
    #[serde(flatten)]
    pub details: ApplicationDetails,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationAmended {
    pub amended_on: NaiveDate,
    #[serde(flatten)]
    pub details: ApplicationDetails,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationWithdrawn {
    pub reason: String,
    pub withdrawn_on: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EligibilityConfirmed {
    pub checked_by: String,
    pub checked_on: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuledIneligible {
    pub checked_by: String,
    pub checked_on: NaiveDate,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssessmentRecorded {
    pub assessed_on: NaiveDate,
    pub assessor: String,
    pub scores: Scores,
    pub total_score: u32,
    pub recommended_rate: RateBps,
    pub recommended_ceiling: Money,
    pub duration_months: u32,
    pub conditions: Vec<String>,
    pub no_conflict_declared: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationApproved {
    #[serde(flatten)]
    pub committee: CommitteeRecord,
    #[serde(flatten)]
    pub terms: ApprovedTerms,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationRejected {
    #[serde(flatten)]
    pub committee: CommitteeRecord,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationDeferred {
    #[serde(flatten)]
    pub committee: CommitteeRecord,
    pub reason: String,
    pub to_batch_id: String,
    pub to_batch_deadline: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgreementSigned {
    pub signed_on: NaiveDate,
    pub reporting_due_dates: Vec<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageCharged {
    pub usage_id: String,
    pub service_type: ServiceType,
    pub period: Period,
    pub units: u64,
    pub rate_per_unit: Money,
    pub gross: Money,
    pub subsidy_rate: RateBps,
    pub subsidy: Money,
    pub financial_year: FinancialYear,
    pub disbursed_total: Money,
    pub ceiling_left: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisbursementReversed {
    pub reversed_on: NaiveDate,
    pub usage_id: String,
    pub amount: Money,
    pub units: u64,
    pub reason: String,
    pub disbursed_total: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressReportSubmitted {
    pub due: NaiveDate,
    pub kpis: Kpis,
    pub summary: String,
    pub submitted_on: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressReportReviewed {
    pub reviewed_on: NaiveDate,
    pub due: NaiveDate,
    pub accepted: bool,
    pub comments: String,
    pub reviewed_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationCompleted {
    pub completed_on: NaiveDate,
    pub released: Vec<Reservation>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationTerminated {
    pub reason: String,
    pub terminated_on: NaiveDate,
    pub released: Vec<Reservation>,
}

// ---- schema versions and upcasters, one place per event type ----

impl EventPayload for ApplicationSubmitted {
    const EVENT_TYPE: &'static str = "ApplicationSubmitted";
    const SCHEMA_VERSION: u32 = 2;
    fn upcast(from_version: u32, data: Value, _context: &StoredContext) -> Result<Value, String> {
        match from_version {
            1 => flatten_field(data, "submission"),
            other => Err(format!("no upcaster from schema version {other}")),
        }
    }
}

impl EventPayload for ApplicationAmended {
    const EVENT_TYPE: &'static str = "ApplicationAmended";
    const SCHEMA_VERSION: u32 = 2;
    fn upcast(from_version: u32, data: Value, _context: &StoredContext) -> Result<Value, String> {
        match from_version {
            1 => flatten_field(data, "submission"),
            other => Err(format!("no upcaster from schema version {other}")),
        }
    }
}

impl EventPayload for ApplicationApproved {
    const EVENT_TYPE: &'static str = "ApplicationApproved";
    const SCHEMA_VERSION: u32 = 2;
    fn upcast(from_version: u32, data: Value, _context: &StoredContext) -> Result<Value, String> {
        match from_version {
            1 => flatten_field(flatten_field(data, "meeting")?, "approval"),
            other => Err(format!("no upcaster from schema version {other}")),
        }
    }
}

impl EventPayload for ApplicationRejected {
    const EVENT_TYPE: &'static str = "ApplicationRejected";
    const SCHEMA_VERSION: u32 = 2;
    fn upcast(from_version: u32, data: Value, _context: &StoredContext) -> Result<Value, String> {
        match from_version {
            1 => flatten_field(data, "meeting"),
            other => Err(format!("no upcaster from schema version {other}")),
        }
    }
}

impl EventPayload for ApplicationDeferred {
    const EVENT_TYPE: &'static str = "ApplicationDeferred";
    const SCHEMA_VERSION: u32 = 2;
    fn upcast(from_version: u32, data: Value, _context: &StoredContext) -> Result<Value, String> {
        match from_version {
            1 => flatten_field(data, "meeting"),
            other => Err(format!("no upcaster from schema version {other}")),
        }
    }
}

event_payloads!(1:
    ApplicationWithdrawn, EligibilityConfirmed, RuledIneligible, AgreementSigned, UsageCharged, ProgressReportSubmitted,
    ApplicationCompleted, ApplicationTerminated
);

crate::business_date_added_in_v2!(
    AssessmentRecorded: assessed_on,
    DisbursementReversed: reversed_on,
    ProgressReportReviewed: reviewed_on
);

crate::business_dates!(
    ApplicationSubmitted => |e| e.submitted_on,
    ApplicationAmended => |e| e.amended_on,
    ApplicationWithdrawn => |e| e.withdrawn_on,
    EligibilityConfirmed => |e| e.checked_on,
    RuledIneligible => |e| e.checked_on,
    AssessmentRecorded => |e| e.assessed_on,
    ApplicationApproved => |e| e.committee.decided_on,
    ApplicationRejected => |e| e.committee.decided_on,
    ApplicationDeferred => |e| e.committee.decided_on,
    AgreementSigned => |e| e.signed_on,
    UsageCharged => |e| e.period.first_day(),
    DisbursementReversed => |e| e.reversed_on,
    ProgressReportSubmitted => |e| e.submitted_on,
    ProgressReportReviewed => |e| e.reviewed_on,
    ApplicationCompleted => |e| e.completed_on,
    ApplicationTerminated => |e| e.terminated_on,
);

/// Every event of an application's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplicationEvent {
    ApplicationSubmitted(ApplicationSubmitted),
    ApplicationAmended(ApplicationAmended),
    ApplicationWithdrawn(ApplicationWithdrawn),
    EligibilityConfirmed(EligibilityConfirmed),
    RuledIneligible(RuledIneligible),
    AssessmentRecorded(AssessmentRecorded),
    ApplicationApproved(ApplicationApproved),
    ApplicationRejected(ApplicationRejected),
    ApplicationDeferred(ApplicationDeferred),
    AgreementSigned(AgreementSigned),
    UsageCharged(UsageCharged),
    DisbursementReversed(DisbursementReversed),
    ProgressReportSubmitted(ProgressReportSubmitted),
    ProgressReportReviewed(ProgressReportReviewed),
    ApplicationCompleted(ApplicationCompleted),
    ApplicationTerminated(ApplicationTerminated),
}

crate::stored_events!(
    ApplicationEvent,
    [
        ApplicationSubmitted,
        ApplicationAmended,
        ApplicationWithdrawn,
        EligibilityConfirmed,
        RuledIneligible,
        AssessmentRecorded,
        ApplicationApproved,
        ApplicationRejected,
        ApplicationDeferred,
        AgreementSigned,
        UsageCharged,
        DisbursementReversed,
        ProgressReportSubmitted,
        ProgressReportReviewed,
        ApplicationCompleted,
        ApplicationTerminated
    ]
);
