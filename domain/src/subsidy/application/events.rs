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
//! - v3 of `ApplicationSubmitted` and `ApplicationAmended`, v2 of `ProgressReportSubmitted` and
//!   v3 of `ProgressReportReviewed` store their personal fields sealed under the application's
//!   data subject (`data_subject_id`, see `crate::personal_data`); the plaintext of the older
//!   versions is read as `{"legacy_plaintext": …}` with no data subject.
//! - v2 of `UsageCharged` records the bulk import the charge is a line of (`import_id`, null
//!   for a charge recorded on its own), so that an import can refuse a line another import
//!   already charged. v1 did not store it; see its upcaster for how v1 data is read.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::codec::{EventPayload, StoredContext, add_field, flatten_field};
use crate::event_payloads;
use crate::personal_data::{DataSubjectId, PersonalField, PersonalText};
use crate::subsidy::capacity::Allocation;
use crate::subsidy::values::{ApplicantCategory, FinancialYear, Money, Period, RateBps, ServiceType};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestedResource {
    pub service_type: ServiceType,
    pub first_period: Period,
    pub last_period: Period,
    pub units_per_month: u64,
}

/// The undertakings a strategic enterprise gave (§11(e)), as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndertakingsRecord {
    pub land_in_hong_kong: bool,
    pub professionals_to_employ: u32,
    /// How the project contributes to R&D and AI innovation in Hong Kong (personal: free text
    /// that may name the people doing it).
    pub contribution: PersonalText,
}

/// The applicant's contact person, as stored (personal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactRecord {
    pub name: PersonalText,
    pub email: PersonalText,
}

/// The application as submitted or last amended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationDetails {
    pub organisation: String,
    pub category: ApplicantCategory,
    pub sub_type: String,
    pub project_title: String,
    /// Personal: free text that may describe the people of the project.
    pub project_summary: PersonalText,
    pub develops_ai_models: bool,
    pub requested_resources: Vec<RequestedResource>,
    pub requested_rate: RateBps,
    pub team_size: u32,
    pub talents: u32,
    pub mainland_or_overseas_team: bool,
    /// Declared: other Government funding for the same items (§13 footnote 6).
    pub other_government_funding: bool,
    pub undertakings: Option<UndertakingsRecord>,
    pub contact: ContactRecord,
}

impl ApplicationDetails {
    /// The names of its personal fields, as bound into their seals.
    pub const PERSONAL_FIELDS: [&'static str; 4] =
        ["project_summary", "contact.name", "contact.email", "undertakings.contribution"];

    /// Its personal fields by name (the contribution only when undertakings were given).
    pub fn personal_texts(&self) -> Vec<(&'static str, &PersonalText)> {
        let [summary, name, email, contribution] = Self::PERSONAL_FIELDS;
        let mut texts =
            vec![(summary, &self.project_summary), (name, &self.contact.name), (email, &self.contact.email)];
        if let Some(undertakings) = &self.undertakings {
            texts.push((contribution, &undertakings.contribution));
        }
        texts
    }

    fn personal_fields(&mut self, subject: DataSubjectId) -> Vec<PersonalField<'_>> {
        let [summary, name, email, contribution] = Self::PERSONAL_FIELDS;
        let mut fields = vec![
            PersonalField { subject, field: summary, text: &mut self.project_summary },
            PersonalField { subject, field: name, text: &mut self.contact.name },
            PersonalField { subject, field: email, text: &mut self.contact.email },
        ];
        if let Some(undertakings) = &mut self.undertakings {
            fields.push(PersonalField { subject, field: contribution, text: &mut undertakings.contribution });
        }
        fields
    }
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
    /// Whose the personal fields are; `None` only in data stored before they were sealed.
    pub data_subject_id: Option<DataSubjectId>,
    pub batch_id: String,
    pub batch_deadline: NaiveDate,
    pub submitted_on: NaiveDate,
    #[serde(flatten)]
    pub details: ApplicationDetails,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationAmended {
    pub amended_on: NaiveDate,
    /// Whose the personal fields are; `None` only in data stored before they were sealed.
    pub data_subject_id: Option<DataSubjectId>,
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
    /// The bulk import this charge is a line of (its usage id is `{import_id}-{line}`); `None`
    /// for a charge recorded on its own.
    pub import_id: Option<String>,
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
    /// Whose the summary is; `None` only in data stored before it was sealed.
    pub data_subject_id: Option<DataSubjectId>,
    /// Personal: free text on the project's people and progress.
    pub summary: PersonalText,
    pub submitted_on: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressReportReviewed {
    pub reviewed_on: NaiveDate,
    pub due: NaiveDate,
    pub accepted: bool,
    /// Whose the comments are; `None` only in data stored before they were sealed.
    pub data_subject_id: Option<DataSubjectId>,
    /// Personal: the reviewer's free text on the applicant's report.
    pub comments: PersonalText,
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
    const SCHEMA_VERSION: u32 = 3;
    fn personal_fields(&mut self) -> Vec<PersonalField<'_>> {
        match self.data_subject_id {
            Some(subject) => self.details.personal_fields(subject),
            None => Vec::new(),
        }
    }
    fn upcast(from_version: u32, data: Value, _context: &StoredContext) -> Result<Value, String> {
        match from_version {
            1 => flatten_field(data, "submission"),
            2 => details_as_legacy_plaintext(data),
            other => Err(format!("no upcaster from schema version {other}")),
        }
    }
}

impl EventPayload for ApplicationAmended {
    const EVENT_TYPE: &'static str = "ApplicationAmended";
    const SCHEMA_VERSION: u32 = 3;
    fn personal_fields(&mut self) -> Vec<PersonalField<'_>> {
        match self.data_subject_id {
            Some(subject) => self.details.personal_fields(subject),
            None => Vec::new(),
        }
    }
    fn upcast(from_version: u32, data: Value, _context: &StoredContext) -> Result<Value, String> {
        match from_version {
            1 => flatten_field(data, "submission"),
            2 => details_as_legacy_plaintext(data),
            other => Err(format!("no upcaster from schema version {other}")),
        }
    }
}

impl EventPayload for ProgressReportSubmitted {
    const EVENT_TYPE: &'static str = "ProgressReportSubmitted";
    const SCHEMA_VERSION: u32 = 2;
    fn personal_fields(&mut self) -> Vec<PersonalField<'_>> {
        match self.data_subject_id {
            Some(subject) => vec![PersonalField { subject, field: "summary", text: &mut self.summary }],
            None => Vec::new(),
        }
    }
    fn upcast(from_version: u32, data: Value, _context: &StoredContext) -> Result<Value, String> {
        match from_version {
            1 => add_field(legacy_plaintext(data, &["summary"])?, "data_subject_id", Value::Null),
            other => Err(format!("no upcaster from schema version {other}")),
        }
    }
}

impl EventPayload for ProgressReportReviewed {
    const EVENT_TYPE: &'static str = "ProgressReportReviewed";
    const SCHEMA_VERSION: u32 = 3;
    fn personal_fields(&mut self) -> Vec<PersonalField<'_>> {
        match self.data_subject_id {
            Some(subject) => vec![PersonalField { subject, field: "comments", text: &mut self.comments }],
            None => Vec::new(),
        }
    }
    fn upcast(from_version: u32, data: Value, context: &StoredContext) -> Result<Value, String> {
        match from_version {
            // v1 did not store the business date: the Hong Kong day it was recorded.
            1 => add_field(data, "reviewed_on", context.recorded_on()),
            2 => add_field(legacy_plaintext(data, &["comments"])?, "data_subject_id", Value::Null),
            other => Err(format!("no upcaster from schema version {other}")),
        }
    }
}

/// The step to v3 of a submission or amendment: the personal fields stored in plaintext by v2
/// are marked as such (they were not sealed, so no data subject is named).
fn details_as_legacy_plaintext(data: Value) -> Result<Value, String> {
    let mut data = legacy_plaintext(data, &["project_summary"])?;
    let object = data.as_object_mut().ok_or("the data is not an object")?;
    let contact = object.remove("contact").ok_or("contact is missing")?;
    object.insert("contact".into(), legacy_plaintext(contact, &["name", "email"])?);
    let undertakings = object.remove("undertakings").ok_or("undertakings is missing")?;
    let undertakings =
        if undertakings.is_null() { undertakings } else { legacy_plaintext(undertakings, &["contribution"])? };
    object.insert("undertakings".into(), undertakings);
    add_field(data, "data_subject_id", Value::Null)
}

/// Marks `fields` of `data`, stored as plain strings, as `{"legacy_plaintext": …}`.
fn legacy_plaintext(mut data: Value, fields: &[&str]) -> Result<Value, String> {
    let object = data.as_object_mut().ok_or("the data is not an object")?;
    for field in fields {
        let text = object.remove(*field).ok_or_else(|| format!("{field} is missing"))?;
        if !text.is_string() {
            return Err(format!("{field} is not text"));
        }
        object.insert((*field).to_string(), serde_json::json!({ "legacy_plaintext": text }));
    }
    Ok(data)
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

impl EventPayload for UsageCharged {
    const EVENT_TYPE: &'static str = "UsageCharged";
    const SCHEMA_VERSION: u32 = 2;
    /// v1 did not record the import. Until v2 every import line was charged under the usage id
    /// `{import_id}-{line}`, and the only import ids the service made up itself were the
    /// default ones derived from the file (`file-` and 16 hexadecimal digits), a shape no
    /// charge recorded on its own is known to use; so a v1 usage id of that shape is read as
    /// that import's line. Any other v1 charge — an import under an id its caller chose,
    /// which cannot be told from a single charge's usage id such as `sched-2025-11` — is read
    /// as recorded on its own.
    fn upcast(from_version: u32, data: Value, _context: &StoredContext) -> Result<Value, String> {
        match from_version {
            1 => {
                let usage_id = data.get("usage_id").and_then(Value::as_str).ok_or("usage_id is missing")?;
                let import_id = default_import_of(usage_id).map(str::to_owned);
                add_field(data, "import_id", import_id)
            }
            other => Err(format!("no upcaster from schema version {other}")),
        }
    }
}

/// The default import id (`file-` and 16 lower-case hexadecimal digits) a usage id
/// `{import_id}-{line}` was charged under, if it has that shape (a line number has no leading
/// zero, and line 1 is the header).
fn default_import_of(usage_id: &str) -> Option<&str> {
    const DEFAULT_IMPORT_ID_LEN: usize = "file-".len() + 16;
    let (import_id, line) = usage_id.split_at_checked(DEFAULT_IMPORT_ID_LEN)?;
    let hex = import_id.strip_prefix("file-")?;
    let line = line.strip_prefix('-')?;
    let hex_ok = hex.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
    let line_ok =
        !line.starts_with('0') && line.chars().all(|c| c.is_ascii_digit()) && line.parse::<u64>().is_ok_and(|n| n >= 2);
    (hex_ok && line_ok).then_some(import_id)
}

event_payloads!(1:
    ApplicationWithdrawn, EligibilityConfirmed, RuledIneligible, AgreementSigned, ApplicationCompleted,
    ApplicationTerminated
);

crate::business_date_added_in_v2!(
    AssessmentRecorded: assessed_on,
    DisbursementReversed: reversed_on
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

/// The event types of an application that carry personal fields.
pub const PERSONAL_EVENT_TYPES: [&str; 4] =
    ["ApplicationSubmitted", "ApplicationAmended", "ProgressReportSubmitted", "ProgressReportReviewed"];

impl ApplicationEvent {
    /// Hands personal text stored before sealing (`Legacy`) to `subject`, unsealed, so that the
    /// sealer seals it: the one-off re-encryption of a log written before personal data was
    /// sealed. Answers whether the event held any.
    pub fn unseal_legacy_for(&mut self, subject: DataSubjectId) -> bool {
        let slot = match self {
            ApplicationEvent::ApplicationSubmitted(e) => &mut e.data_subject_id,
            ApplicationEvent::ApplicationAmended(e) => &mut e.data_subject_id,
            ApplicationEvent::ProgressReportSubmitted(e) => &mut e.data_subject_id,
            ApplicationEvent::ProgressReportReviewed(e) => &mut e.data_subject_id,
            _ => return false,
        };
        if slot.is_some() {
            return false;
        }
        *slot = Some(subject);
        let mut held_legacy = false;
        for field in crate::codec::EventCodec::personal_fields(self) {
            if let PersonalText::Legacy(text) = field.text {
                *field.text = PersonalText::Unsealed(std::mem::take(text));
                held_legacy = true;
            }
        }
        held_legacy
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::EventCodec;

    fn v1_charge(usage_id: &str) -> Value {
        serde_json::json!({
            "usage_id": usage_id, "service_type": "gpu_node_hour_h800", "period": "2025-07", "units": 400,
            "rate_per_unit": 4250, "gross": 1_700_000, "subsidy_rate": 7000, "subsidy": 1_190_000,
            "financial_year": "2025-26", "disbursed_total": 1_190_000, "ceiling_left": 0
        })
    }

    #[test]
    fn a_v1_charge_is_read_as_an_import_line_only_under_a_default_import_id() {
        let context = StoredContext::new(chrono::DateTime::UNIX_EPOCH);
        let import_of = |usage_id: &str| {
            let event = ApplicationEvent::from_stored("UsageCharged", 1, &v1_charge(usage_id), context)
                .unwrap_or_else(|error| panic!("{usage_id}: {error}"));
            let ApplicationEvent::UsageCharged(charged) = event else { panic!("{usage_id}: {event:?}") };
            charged.import_id
        };
        assert_eq!(import_of("file-0a1b2c3d4e5f6a7b-12").as_deref(), Some("file-0a1b2c3d4e5f6a7b"));
        assert_eq!(import_of("file-0a1b2c3d4e5f6a7b-2").as_deref(), Some("file-0a1b2c3d4e5f6a7b"));
        for single in [
            "sched-2025-11",
            "demo2024-000000-2024-11",
            "july-1-2",
            "file-0a1b2c3d4e5f6a7b",
            "file-0a1b2c3d4e5f6a7b-1",
            "file-0a1b2c3d4e5f6a7b-02",
            "file-0A1B2C3D4E5F6A7B-12",
            "file-0a1b2c3d4e5f6a7-12",
            "file-0a1b2c3d4e5f6a7b-12-3",
        ] {
            assert_eq!(import_of(single), None, "{single}");
        }
    }
}
