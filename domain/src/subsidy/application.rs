//! An application for the computing power subsidy (§11–§18, §21), from submission to
//! completion. Decisions that touch other aggregates — approval (budget and capacity), usage
//! (budget), completion and termination (budget) — are pure functions over all the states
//! involved, returning the events for each stream, so the command service appends them
//! together, each stream at the version it was read at.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::batches::Batch;
use super::capacity::{self, Allocation, CapacityEvent, CapacityState};
use super::error::DomainError;
use super::funding::{self, FundingEvent, FundingYearState};
use super::values::{ApplicantCategory, FinancialYear, Money, Period, RateBps, ServiceType, subsidy_for};

/// Members who must be present, without a conflict, for a committee decision.
pub const QUORUM: usize = 3;

pub fn stream_name(application_id: &str) -> String {
    format!("application-{application_id}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[default]
    New,
    Submitted,
    Withdrawn,
    Eligible,
    Ineligible,
    Assessed,
    Deferred,
    Approved,
    Rejected,
    AgreementSigned,
    Completed,
    Terminated,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "not submitted",
            Status::Submitted => "submitted",
            Status::Withdrawn => "withdrawn",
            Status::Eligible => "eligible",
            Status::Ineligible => "ineligible",
            Status::Assessed => "assessed",
            Status::Deferred => "deferred",
            Status::Approved => "approved",
            Status::Rejected => "rejected",
            Status::AgreementSigned => "under agreement",
            Status::Completed => "completed",
            Status::Terminated => "terminated",
        }
    }

    fn is_closed(self) -> bool {
        matches!(
            self,
            Status::Withdrawn | Status::Ineligible | Status::Rejected | Status::Completed | Status::Terminated
        )
    }
}

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

/// What an applicant submits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
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

impl Submission {
    fn validate(&self) -> Result<(), DomainError> {
        let text = |field: &'static str, value: &str, max: usize| {
            if value.trim().is_empty() || value.len() > max {
                Err(DomainError::InvalidInput { field, reason: format!("must be 1 to {max} characters") })
            } else {
                Ok(())
            }
        };
        text("organisation", &self.organisation, 200)?;
        text("sub_type", &self.sub_type, 80)?;
        text("project_title", &self.project_title, 300)?;
        text("project_summary", &self.project_summary, 10_000)?;
        text("contact.name", &self.contact.name, 200)?;
        if !self.contact.email.contains('@') || self.contact.email.len() > 254 {
            return Err(DomainError::InvalidInput {
                field: "contact.email",
                reason: "must be an e-mail address".into(),
            });
        }
        if self.requested_resources.is_empty() {
            return Err(DomainError::InvalidInput {
                field: "requested_resources",
                reason: "request at least one resource".into(),
            });
        }
        for resource in &self.requested_resources {
            if resource.first_period > resource.last_period {
                return Err(DomainError::InvalidInput {
                    field: "requested_resources",
                    reason: format!(
                        "{} runs from {} to {}: reversed",
                        resource.service_type, resource.first_period, resource.last_period
                    ),
                });
            }
            if resource.units_per_month == 0 {
                return Err(DomainError::InvalidInput {
                    field: "requested_resources",
                    reason: "units per month must be positive".into(),
                });
            }
        }
        if self.requested_rate > RateBps::EXCEPTIONAL_CAP {
            return Err(DomainError::RateAboveCeiling { rate: self.requested_rate.to_string() });
        }
        if self.team_size == 0 || self.talents > self.team_size {
            return Err(DomainError::InvalidInput {
                field: "team_size",
                reason: "a team has members, and talents are among them".into(),
            });
        }
        Ok(())
    }

    /// Reasons the applicant is not eligible (§11, §13 footnote 6); empty when eligible.
    pub fn ineligibility(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if !self.category.sub_types().contains(&self.sub_type.as_str()) {
            reasons.push(format!(
                "{} is not an eligible kind of {} under §11 (eligible: {})",
                self.sub_type,
                self.category.as_str(),
                self.category.sub_types().join(", ")
            ));
        }
        if self.category == ApplicantCategory::StrategicEnterprise {
            match &self.undertakings {
                None => reasons.push("a strategic enterprise must give its undertakings (§11(e))".into()),
                Some(undertakings) => {
                    if !undertakings.land_in_hong_kong {
                        reasons.push("a strategic enterprise must undertake to land in Hong Kong (§11(e))".into());
                    }
                    if undertakings.professionals_to_employ == 0 {
                        reasons.push(
                            "a strategic enterprise must undertake to employ a stated number of professionals (§11(e))"
                                .into(),
                        );
                    }
                    if undertakings.contribution.trim().is_empty() {
                        reasons.push("a strategic enterprise must show its contribution to R&D and AI innovation in Hong Kong (§11(e))".into());
                    }
                }
            }
        }
        if self.other_government_funding {
            reasons.push("the same items receive other Government funding: no double funding (§13 footnote 6)".into());
        }
        reasons
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

impl Scores {
    fn validate(&self) -> Result<u32, DomainError> {
        let all = [
            ('a', self.a_meets_hong_kong_needs),
            ('b', self.b_requirement_reasonable),
            ('c', self.c_feasibility_and_outcome),
            ('d', self.d_capability),
        ];
        for (criterion, score) in all {
            if score > 10 {
                return Err(DomainError::ScoreOutOfRange { criterion, score });
            }
        }
        Ok(all.iter().map(|(_, score)| u32::from(*score)).sum())
    }
}

/// Subsidy reserved in one financial year.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub year: FinancialYear,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub rate: RateBps,
    pub exceptional_reason: Option<String>,
    pub allocations: Vec<Allocation>,
    pub ceiling: Money,
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub conditions: Vec<String>,
    pub reservations: Vec<Reservation>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kpis {
    pub ai_models_trained_or_deployed: u32,
    pub talents_employed: u32,
    pub mainland_or_overseas_collaborators: u32,
    pub publications: u32,
    pub patents: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportState {
    Submitted,
    Accepted,
    RevisionRequested,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageLine {
    pub service_type: ServiceType,
    pub period: Period,
    pub units: u64,
    pub subsidy: Money,
    pub year: FinancialYear,
    pub reversed: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApplicationState {
    pub id: Option<String>,
    pub status: Status,
    pub batch_id: Option<String>,
    pub batch_deadline: Option<NaiveDate>,
    pub submitted_on: Option<NaiveDate>,
    pub submission: Option<Submission>,
    pub ineligibility: Vec<String>,
    pub assessor: Option<String>,
    pub total_score: Option<u32>,
    pub approval: Option<Approval>,
    pub decided_on: Option<NaiveDate>,
    pub reporting_due_dates: Vec<NaiveDate>,
    pub reports: BTreeMap<NaiveDate, ReportState>,
    pub usage: BTreeMap<String, UsageLine>,
    pub disbursed: Money,
}

impl ApplicationState {
    fn open(&self, action: &'static str, allowed: &[Status]) -> Result<(), DomainError> {
        if self.status == Status::New {
            return Err(DomainError::UnknownApplication { application: self.id.clone().unwrap_or_default() });
        }
        if self.status.is_closed() {
            return Err(DomainError::ApplicationClosed { status: self.status.as_str() });
        }
        if !allowed.contains(&self.status) {
            return Err(DomainError::WrongStage { action, status: self.status.as_str() });
        }
        Ok(())
    }

    fn id(&self) -> &str {
        self.id.as_deref().unwrap_or_default()
    }

    /// Units of a service type already charged in a month (reversals excluded).
    fn units_used(&self, service_type: &ServiceType, period: Period) -> u64 {
        self.usage
            .values()
            .filter(|line| !line.reversed && &line.service_type == service_type && line.period == period)
            .map(|line| line.units)
            .sum()
    }

    /// Disbursed subsidy per financial year (reversals excluded).
    fn disbursed_by_year(&self) -> BTreeMap<FinancialYear, Money> {
        let mut by_year: BTreeMap<FinancialYear, Money> = BTreeMap::new();
        for line in self.usage.values().filter(|line| !line.reversed) {
            let total = by_year.entry(line.year).or_default();
            *total = Money::from_cents(total.cents() + line.subsidy.cents());
        }
        by_year
    }

    /// The first progress report due before `today` and not yet submitted.
    pub fn overdue_report(&self, today: NaiveDate) -> Option<NaiveDate> {
        self.reporting_due_dates.iter().copied().find(|due| *due < today && !self.reports.contains_key(due))
    }

    /// What the application still holds in each year: reserved less disbursed, never negative.
    fn unused_reservations(&self) -> Vec<Reservation> {
        let Some(approval) = &self.approval else { return Vec::new() };
        let disbursed = self.disbursed_by_year();
        approval
            .reservations
            .iter()
            .map(|reservation| {
                let spent = disbursed.get(&reservation.year).copied().unwrap_or_default();
                Reservation {
                    year: reservation.year,
                    amount: Money::from_cents((reservation.amount.cents() - spent.cents()).max(0)),
                }
            })
            .filter(|reservation| reservation.amount.cents() > 0)
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplicationCommand {
    Submit {
        application_id: String,
        submission: Submission,
        today: NaiveDate,
        batch_id: String,
        batch_deadline: NaiveDate,
    },
    Amend {
        submission: Submission,
        today: NaiveDate,
    },
    Withdraw {
        reason: String,
        today: NaiveDate,
    },
    CheckEligibility {
        checked_by: String,
        today: NaiveDate,
    },
    RecordAssessment {
        assessor: String,
        scores: Scores,
        recommended_rate: RateBps,
        recommended_ceiling: Money,
        duration_months: u32,
        conditions: Vec<String>,
        no_conflict_declared: bool,
    },
    Reject {
        decision: Meeting,
        reasons: Vec<String>,
        batch: Batch,
    },
    Defer {
        decision: Meeting,
        reason: String,
        batch: Batch,
        to_batch_id: String,
        to_batch: Batch,
    },
    SignAgreement {
        signed_on: NaiveDate,
        reporting_due_dates: Vec<NaiveDate>,
    },
    SubmitProgressReport {
        due: NaiveDate,
        kpis: Kpis,
        summary: String,
        today: NaiveDate,
    },
    ReviewProgressReport {
        due: NaiveDate,
        accepted: bool,
        comments: String,
        reviewed_by: String,
    },
}

/// Who decided, at which meeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meeting {
    /// The principal recording the decision.
    pub recorded_by: String,
    pub meeting_reference: String,
    pub decided_on: NaiveDate,
    pub members_present: Vec<String>,
    pub members_recused: Vec<String>,
}

impl Meeting {
    /// Separation of duties and quorum: the assessor may not record the decision, a recused
    /// member is not counted as present, and a quorum must be present.
    fn check(&self, state: &ApplicationState, batch: &Batch) -> Result<(), DomainError> {
        if self.meeting_reference.trim().is_empty() {
            return Err(DomainError::InvalidInput {
                field: "meeting_reference",
                reason: "name the committee meeting".into(),
            });
        }
        if state.assessor.as_deref() == Some(self.recorded_by.as_str()) {
            return Err(DomainError::AssessorCannotDecide { actor: self.recorded_by.clone() });
        }
        if let Some(member) = self.members_present.iter().find(|member| self.members_recused.contains(member)) {
            return Err(DomainError::RecusedMemberCountedPresent { member: member.clone() });
        }
        let mut present: Vec<&String> = self.members_present.iter().collect();
        present.sort();
        present.dedup();
        if present.len() < QUORUM {
            return Err(DomainError::QuorumNotMet { present: present.len(), required: QUORUM });
        }
        if !batch.closed {
            return Err(DomainError::BatchStillOpen { batch: state.batch_id.clone().unwrap_or_default() });
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ApplicationEvent {
    ApplicationSubmitted {
        application_id: String,
        batch_id: String,
        batch_deadline: NaiveDate,
        submitted_on: NaiveDate,
        submission: Submission,
    },
    ApplicationAmended {
        amended_on: NaiveDate,
        submission: Submission,
    },
    ApplicationWithdrawn {
        reason: String,
        withdrawn_on: NaiveDate,
    },
    EligibilityConfirmed {
        checked_by: String,
        checked_on: NaiveDate,
    },
    RuledIneligible {
        checked_by: String,
        checked_on: NaiveDate,
        reasons: Vec<String>,
    },
    AssessmentRecorded {
        assessor: String,
        scores: Scores,
        total_score: u32,
        recommended_rate: RateBps,
        recommended_ceiling: Money,
        duration_months: u32,
        conditions: Vec<String>,
        no_conflict_declared: bool,
    },
    ApplicationApproved {
        meeting: Meeting,
        approval: Approval,
    },
    ApplicationRejected {
        meeting: Meeting,
        reasons: Vec<String>,
    },
    ApplicationDeferred {
        meeting: Meeting,
        reason: String,
        to_batch_id: String,
        to_batch_deadline: NaiveDate,
    },
    AgreementSigned {
        signed_on: NaiveDate,
        reporting_due_dates: Vec<NaiveDate>,
    },
    UsageCharged {
        usage_id: String,
        service_type: ServiceType,
        period: Period,
        units: u64,
        rate_per_unit: Money,
        gross: Money,
        subsidy_rate: RateBps,
        subsidy: Money,
        financial_year: FinancialYear,
        disbursed_total: Money,
        ceiling_left: Money,
    },
    DisbursementReversed {
        usage_id: String,
        amount: Money,
        units: u64,
        reason: String,
        disbursed_total: Money,
    },
    ProgressReportSubmitted {
        due: NaiveDate,
        kpis: Kpis,
        summary: String,
        submitted_on: NaiveDate,
    },
    ProgressReportReviewed {
        due: NaiveDate,
        accepted: bool,
        comments: String,
        reviewed_by: String,
    },
    ApplicationCompleted {
        completed_on: NaiveDate,
        released: Vec<Reservation>,
    },
    ApplicationTerminated {
        reason: String,
        terminated_on: NaiveDate,
        released: Vec<Reservation>,
    },
}

crate::stored_events!(ApplicationEvent, version 1, [
    ApplicationSubmitted, ApplicationAmended, ApplicationWithdrawn, EligibilityConfirmed, RuledIneligible,
    AssessmentRecorded, ApplicationApproved, ApplicationRejected, ApplicationDeferred, AgreementSigned, UsageCharged,
    DisbursementReversed, ProgressReportSubmitted, ProgressReportReviewed, ApplicationCompleted, ApplicationTerminated
]);

/// Decisions that concern the application alone.
pub fn handle(state: &ApplicationState, command: ApplicationCommand) -> Result<Vec<ApplicationEvent>, DomainError> {
    use ApplicationCommand as C;
    use ApplicationEvent as E;
    match command {
        C::Submit { application_id, submission, today, batch_id, batch_deadline } => {
            if state.status != Status::New {
                return Err(DomainError::ApplicationExists { application: application_id });
            }
            submission.validate()?;
            Ok(vec![E::ApplicationSubmitted {
                application_id,
                batch_id,
                batch_deadline,
                submitted_on: today,
                submission,
            }])
        }
        C::Amend { submission, today } => {
            state.open("amend", &[Status::Submitted])?;
            within_deadline(state, today, "amended")?;
            submission.validate()?;
            if state.submission.as_ref() == Some(&submission) {
                return Err(DomainError::NoChange("the amendment is identical to the application".into()));
            }
            Ok(vec![E::ApplicationAmended { amended_on: today, submission }])
        }
        C::Withdraw { reason, today } => {
            state.open("withdraw", &[Status::Submitted])?;
            within_deadline(state, today, "withdrawn")?;
            Ok(vec![E::ApplicationWithdrawn { reason, withdrawn_on: today }])
        }
        C::CheckEligibility { checked_by, today } => {
            if matches!(state.status, Status::Eligible | Status::Ineligible) {
                return Err(DomainError::NoChange(format!("eligibility was already ruled: {}", state.status.as_str())));
            }
            state.open("check the eligibility of", &[Status::Submitted])?;
            let reasons = state.submission.as_ref().map(Submission::ineligibility).unwrap_or_default();
            if reasons.is_empty() {
                Ok(vec![E::EligibilityConfirmed { checked_by, checked_on: today }])
            } else {
                Ok(vec![E::RuledIneligible { checked_by, checked_on: today, reasons }])
            }
        }
        C::RecordAssessment {
            assessor,
            scores,
            recommended_rate,
            recommended_ceiling,
            duration_months,
            conditions,
            no_conflict_declared,
        } => {
            state.open("assess", &[Status::Eligible])?;
            if !no_conflict_declared {
                return Err(DomainError::ConflictOfInterestNotDeclared);
            }
            let total_score = scores.validate()?;
            if recommended_rate > RateBps::EXCEPTIONAL_CAP {
                return Err(DomainError::RateAboveCeiling { rate: recommended_rate.to_string() });
            }
            if duration_months == 0 || duration_months > 36 {
                return Err(DomainError::InvalidInput {
                    field: "duration_months",
                    reason: "1 to 36 months (a three-year scheme)".into(),
                });
            }
            Ok(vec![E::AssessmentRecorded {
                assessor,
                scores,
                total_score,
                recommended_rate,
                recommended_ceiling,
                duration_months,
                conditions,
                no_conflict_declared,
            }])
        }
        C::Reject { decision, reasons, batch } => {
            state.open("decide on", &[Status::Assessed, Status::Deferred])?;
            decision.check(state, &batch)?;
            if reasons.iter().all(|reason| reason.trim().is_empty()) {
                return Err(DomainError::InvalidInput {
                    field: "reasons",
                    reason: "record why the application is rejected".into(),
                });
            }
            Ok(vec![E::ApplicationRejected { meeting: decision, reasons }])
        }
        C::Defer { decision, reason, batch, to_batch_id, to_batch } => {
            state.open("decide on", &[Status::Assessed, Status::Deferred])?;
            decision.check(state, &batch)?;
            if to_batch.closed || Some(to_batch.deadline) <= state.batch_deadline {
                return Err(DomainError::InvalidInput {
                    field: "to_batch_id",
                    reason: format!("{to_batch_id} is not a later open batch"),
                });
            }
            Ok(vec![E::ApplicationDeferred {
                meeting: decision,
                reason,
                to_batch_id,
                to_batch_deadline: to_batch.deadline,
            }])
        }
        C::SignAgreement { signed_on, mut reporting_due_dates } => {
            state.open("sign the agreement of", &[Status::Approved])?;
            let approval = state.approval.as_ref().ok_or(DomainError::AgreementNotSigned)?;
            reporting_due_dates.sort();
            reporting_due_dates.dedup();
            if reporting_due_dates.is_empty() {
                return Err(DomainError::InvalidInput {
                    field: "reporting_due_dates",
                    reason: "an agreement requires regular progress reports (§21)".into(),
                });
            }
            if let Some(first) = reporting_due_dates.first()
                && *first <= approval.start
            {
                return Err(DomainError::DatesReversed {
                    first: "project start",
                    first_date: approval.start,
                    second: "first report due",
                    second_date: *first,
                });
            }
            Ok(vec![E::AgreementSigned { signed_on, reporting_due_dates }])
        }
        C::SubmitProgressReport { due, kpis, summary, today } => {
            state.open("report on", &[Status::AgreementSigned])?;
            if !state.reporting_due_dates.contains(&due) {
                return Err(DomainError::UnknownReport { due });
            }
            match state.reports.get(&due) {
                Some(ReportState::Submitted) => {
                    return Err(DomainError::ReportNotAwaiting { due, state: "been submitted and awaits review" });
                }
                Some(ReportState::Accepted) => {
                    return Err(DomainError::ReportNotAwaiting { due, state: "been accepted" });
                }
                Some(ReportState::RevisionRequested) | None => {}
            }
            Ok(vec![E::ProgressReportSubmitted { due, kpis, summary, submitted_on: today }])
        }
        C::ReviewProgressReport { due, accepted, comments, reviewed_by } => {
            state.open("review a report of", &[Status::AgreementSigned, Status::Completed])?;
            match state.reports.get(&due) {
                Some(ReportState::Submitted) => {}
                None => return Err(DomainError::UnknownReport { due }),
                Some(_) => return Err(DomainError::ReportNotAwaiting { due, state: "no submission awaiting review" }),
            }
            if !accepted && comments.trim().is_empty() {
                return Err(DomainError::InvalidInput { field: "comments", reason: "say what needs revising".into() });
            }
            Ok(vec![E::ProgressReportReviewed { due, accepted, comments, reviewed_by }])
        }
    }
}

fn within_deadline(state: &ApplicationState, today: NaiveDate, action: &'static str) -> Result<(), DomainError> {
    match state.batch_deadline {
        Some(deadline) if today > deadline => Err(DomainError::BatchDeadlinePassed { deadline, action }),
        _ => Ok(()),
    }
}

/// The committee's approval (§12–§13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approve {
    pub decision: Meeting,
    pub rate: RateBps,
    pub exceptional_reason: Option<String>,
    pub allocations: Vec<Allocation>,
    pub ceiling: Money,
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub conditions: Vec<String>,
}

/// What an approval writes: to the application, to each funding year it reserves in, and to
/// AISC capacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalOutcome {
    pub application: Vec<ApplicationEvent>,
    pub budgets: Vec<(FinancialYear, FundingEvent)>,
    pub capacity: Vec<CapacityEvent>,
}

/// The financial years a period spans, each with its number of days in the period.
fn years_spanned(start: NaiveDate, end: NaiveDate) -> Vec<(FinancialYear, i64)> {
    let mut spans = Vec::new();
    let mut year = FinancialYear::containing(start);
    loop {
        let from = start.max(year.first_day());
        let to = end.min(year.last_day());
        if from > end {
            break;
        }
        spans.push((year, (to - from).num_days() + 1));
        year = year.next();
    }
    spans
}

/// Splits the ceiling across the years in proportion to their days; the rounding remainder
/// goes to the last year, so the parts add up to the ceiling exactly.
fn reservations(ceiling: Money, start: NaiveDate, end: NaiveDate) -> Vec<Reservation> {
    let spans = years_spanned(start, end);
    let total_days: i64 = spans.iter().map(|(_, days)| days).sum::<i64>().max(1);
    let mut left = ceiling.cents();
    let count = spans.len();
    spans
        .into_iter()
        .enumerate()
        .map(|(index, (year, days))| {
            let amount = if index + 1 == count {
                left
            } else {
                i64::try_from(i128::from(ceiling.cents()) * i128::from(days) / i128::from(total_days)).unwrap_or(0)
            };
            left -= amount;
            Reservation { year, amount: Money::from_cents(amount) }
        })
        .collect()
}

pub fn decide_approval(
    state: &ApplicationState,
    batch: &Batch,
    budgets: &BTreeMap<FinancialYear, FundingYearState>,
    capacity_state: &CapacityState,
    command: Approve,
) -> Result<ApprovalOutcome, DomainError> {
    state.open("decide on", &[Status::Assessed, Status::Deferred])?;
    command.decision.check(state, batch)?;
    if command.rate > RateBps::EXCEPTIONAL_CAP {
        return Err(DomainError::RateAboveCeiling { rate: command.rate.to_string() });
    }
    if command.rate > RateBps::NORMAL_CAP {
        match &command.exceptional_reason {
            None => return Err(DomainError::RateNeedsExceptionalCase { rate: command.rate.to_string() }),
            Some(reason) if reason.trim().is_empty() => return Err(DomainError::ExceptionalWithoutReason),
            Some(_) => {}
        }
    }
    if command.start > command.end {
        return Err(DomainError::DatesReversed {
            first: "start",
            first_date: command.start,
            second: "end",
            second_date: command.end,
        });
    }
    if command.ceiling.cents() <= 0 {
        return Err(DomainError::InvalidInput { field: "ceiling", reason: "must be positive".into() });
    }
    if command.allocations.is_empty() {
        return Err(DomainError::InvalidInput { field: "allocations", reason: "allocate at least one service".into() });
    }
    let (first, last) = (Period::of(command.start), Period::of(command.end));
    if let Some(outside) = command.allocations.iter().find(|a| a.period < first || a.period > last || a.units == 0) {
        return Err(DomainError::InvalidInput {
            field: "allocations",
            reason: format!(
                "{} units of {} in {} fall outside the approved period or are zero",
                outside.units, outside.service_type, outside.period
            ),
        });
    }
    let application_id = state.id().to_string();
    let reservations = reservations(command.ceiling, command.start, command.end);
    let mut budgets_out = Vec::with_capacity(reservations.len());
    for reservation in &reservations {
        let budget = budgets.get(&reservation.year).cloned().unwrap_or_default();
        budgets_out.push((reservation.year, funding::commit(&budget, &application_id, reservation.amount)?));
    }
    let capacity = capacity::allocate(capacity_state, &application_id, &command.allocations)?;
    let approval = Approval {
        rate: command.rate,
        exceptional_reason: command.exceptional_reason,
        allocations: command.allocations,
        ceiling: command.ceiling,
        start: command.start,
        end: command.end,
        conditions: command.conditions,
        reservations,
    };
    Ok(ApprovalOutcome {
        application: vec![ApplicationEvent::ApplicationApproved { meeting: command.decision, approval }],
        budgets: budgets_out,
        capacity,
    })
}

/// A month's usage of one service, charged at the rate in force, with its subsidy disbursed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeUsage {
    pub usage_id: String,
    pub service_type: ServiceType,
    pub period: Period,
    pub units: u64,
    /// The price schedule's rate for the period's first day.
    pub rate_in_force: Money,
    pub today: NaiveDate,
}

pub fn charge_usage(
    state: &ApplicationState,
    budget: &FundingYearState,
    command: ChargeUsage,
) -> Result<(ApplicationEvent, FundingEvent), DomainError> {
    if state.status == Status::Approved {
        return Err(DomainError::AgreementNotSigned);
    }
    state.open("charge usage to", &[Status::AgreementSigned])?;
    let approval = state.approval.as_ref().ok_or(DomainError::AgreementNotSigned)?;
    if state.usage.contains_key(&command.usage_id) {
        return Err(DomainError::NoChange(format!("usage {} is already charged", command.usage_id)));
    }
    if command.units == 0 {
        return Err(DomainError::InvalidInput { field: "units", reason: "must be positive".into() });
    }
    if let Some(due) = state.overdue_report(command.today) {
        return Err(DomainError::ProgressReportOverdue { due });
    }
    if command.period < Period::of(approval.start) || command.period > Period::of(approval.end) {
        return Err(DomainError::UsageOutsideApprovedPeriod {
            period: command.period.to_string(),
            start: approval.start,
            end: approval.end,
        });
    }
    let allocated: u64 = approval
        .allocations
        .iter()
        .filter(|a| a.service_type == command.service_type && a.period == command.period)
        .map(|a| a.units)
        .sum();
    let used = state.units_used(&command.service_type, command.period);
    if used.saturating_add(command.units) > allocated {
        return Err(DomainError::UnitsAboveAllocation {
            service_type: command.service_type.to_string(),
            requested: command.units,
            allocated,
            used,
        });
    }
    let (gross, subsidy) = subsidy_for(command.units, command.rate_in_force, approval.rate)?;
    let disbursed_total = state.disbursed.checked_add(subsidy)?;
    if disbursed_total > approval.ceiling {
        return Err(DomainError::CeilingExceeded {
            requested: subsidy.to_string(),
            ceiling: approval.ceiling.to_string(),
            disbursed: state.disbursed.to_string(),
        });
    }
    let financial_year = FinancialYear::containing(command.period.first_day());
    let budget_event = funding::disburse(budget, state.id(), &command.usage_id, subsidy)?;
    Ok((
        ApplicationEvent::UsageCharged {
            usage_id: command.usage_id,
            service_type: command.service_type,
            period: command.period,
            units: command.units,
            rate_per_unit: command.rate_in_force,
            gross,
            subsidy_rate: approval.rate,
            subsidy,
            financial_year,
            disbursed_total,
            ceiling_left: approval.ceiling.checked_sub(disbursed_total)?,
        },
        budget_event,
    ))
}

/// The financial year whose budget a usage line was paid from.
pub fn usage_year(state: &ApplicationState, usage_id: &str) -> Result<FinancialYear, DomainError> {
    state
        .usage
        .get(usage_id)
        .map(|line| line.year)
        .ok_or_else(|| DomainError::UnknownUsage { usage: usage_id.to_string() })
}

pub fn reverse_disbursement(
    state: &ApplicationState,
    budget: &FundingYearState,
    usage_id: &str,
    reason: String,
) -> Result<(ApplicationEvent, FundingEvent), DomainError> {
    state.open("reverse a disbursement of", &[Status::AgreementSigned])?;
    let line = state.usage.get(usage_id).ok_or_else(|| DomainError::UnknownUsage { usage: usage_id.to_string() })?;
    if line.reversed {
        return Err(DomainError::AlreadyReversed { usage: usage_id.to_string() });
    }
    if reason.trim().is_empty() {
        return Err(DomainError::InvalidInput {
            field: "reason",
            reason: "record why the disbursement is reversed".into(),
        });
    }
    let budget_event = funding::reverse(budget, state.id(), usage_id, line.subsidy)?;
    Ok((
        ApplicationEvent::DisbursementReversed {
            usage_id: usage_id.to_string(),
            amount: line.subsidy,
            units: line.units,
            reason,
            disbursed_total: state.disbursed.checked_sub(line.subsidy)?,
        },
        budget_event,
    ))
}

/// Ends the project, normally (`completed`) or early (`terminated`), releasing what it did not
/// use back to each funding year.
pub fn close_project(
    state: &ApplicationState,
    budgets: &BTreeMap<FinancialYear, FundingYearState>,
    today: NaiveDate,
    termination_reason: Option<String>,
) -> Result<(ApplicationEvent, Vec<(FinancialYear, FundingEvent)>), DomainError> {
    let terminating = termination_reason.is_some();
    state.open(if terminating { "terminate" } else { "complete" }, &[Status::Approved, Status::AgreementSigned])?;
    if let Some(reason) = &termination_reason
        && reason.trim().is_empty()
    {
        return Err(DomainError::InvalidInput {
            field: "reason",
            reason: "record why the project is terminated".into(),
        });
    }
    let released = state.unused_reservations();
    let mut budget_events = Vec::with_capacity(released.len());
    for reservation in &released {
        let budget = budgets.get(&reservation.year).cloned().unwrap_or_default();
        budget_events.push((reservation.year, funding::release(&budget, state.id(), reservation.amount)?));
    }
    let event = match termination_reason {
        Some(reason) => ApplicationEvent::ApplicationTerminated { reason, terminated_on: today, released },
        None => ApplicationEvent::ApplicationCompleted { completed_on: today, released },
    };
    Ok((event, budget_events))
}

pub fn apply(mut state: ApplicationState, event: &ApplicationEvent) -> ApplicationState {
    use ApplicationEvent as E;
    match event {
        E::ApplicationSubmitted { application_id, batch_id, batch_deadline, submitted_on, submission } => {
            state.id = Some(application_id.clone());
            state.status = Status::Submitted;
            state.batch_id = Some(batch_id.clone());
            state.batch_deadline = Some(*batch_deadline);
            state.submitted_on = Some(*submitted_on);
            state.submission = Some(submission.clone());
        }
        E::ApplicationAmended { submission, .. } => state.submission = Some(submission.clone()),
        E::ApplicationWithdrawn { .. } => state.status = Status::Withdrawn,
        E::EligibilityConfirmed { .. } => state.status = Status::Eligible,
        E::RuledIneligible { reasons, .. } => {
            state.status = Status::Ineligible;
            state.ineligibility = reasons.clone();
        }
        E::AssessmentRecorded { assessor, total_score, .. } => {
            state.status = Status::Assessed;
            state.assessor = Some(assessor.clone());
            state.total_score = Some(*total_score);
        }
        E::ApplicationApproved { meeting, approval } => {
            state.status = Status::Approved;
            state.decided_on = Some(meeting.decided_on);
            state.approval = Some(approval.clone());
        }
        E::ApplicationRejected { meeting, .. } => {
            state.status = Status::Rejected;
            state.decided_on = Some(meeting.decided_on);
        }
        E::ApplicationDeferred { to_batch_id, to_batch_deadline, .. } => {
            state.status = Status::Deferred;
            state.batch_id = Some(to_batch_id.clone());
            state.batch_deadline = Some(*to_batch_deadline);
        }
        E::AgreementSigned { reporting_due_dates, .. } => {
            state.status = Status::AgreementSigned;
            state.reporting_due_dates = reporting_due_dates.clone();
        }
        E::UsageCharged { usage_id, service_type, period, units, subsidy, financial_year, disbursed_total, .. } => {
            state.usage.insert(
                usage_id.clone(),
                UsageLine {
                    service_type: service_type.clone(),
                    period: *period,
                    units: *units,
                    subsidy: *subsidy,
                    year: *financial_year,
                    reversed: false,
                },
            );
            state.disbursed = *disbursed_total;
        }
        E::DisbursementReversed { usage_id, disbursed_total, .. } => {
            if let Some(line) = state.usage.get_mut(usage_id) {
                line.reversed = true;
            }
            state.disbursed = *disbursed_total;
        }
        E::ProgressReportSubmitted { due, .. } => {
            state.reports.insert(*due, ReportState::Submitted);
        }
        E::ProgressReportReviewed { due, accepted, .. } => {
            let outcome = if *accepted { ReportState::Accepted } else { ReportState::RevisionRequested };
            state.reports.insert(*due, outcome);
        }
        E::ApplicationCompleted { .. } => state.status = Status::Completed,
        E::ApplicationTerminated { .. } => state.status = Status::Terminated,
    }
    state
}

pub struct Application;

impl crate::command_service::Aggregate for Application {
    type State = ApplicationState;
    type Event = ApplicationEvent;
    fn apply(state: ApplicationState, event: &ApplicationEvent) -> ApplicationState {
        apply(state, event)
    }
}
