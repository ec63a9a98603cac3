//! An application's state as its events leave it, and how each event changes it (no logic, no
//! failure).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::events::{ApplicationDetails, ApplicationEvent, ApprovedTerms, Reservation};
use super::ledger::{NewCharge, UsageLedger};
use crate::personal_data::DataSubjectId;
use crate::subsidy::error::DomainError;
use crate::subsidy::values::{FinancialYear, Money, Period, ServiceType};

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

    pub(crate) fn is_closed(self) -> bool {
        matches!(
            self,
            Status::Withdrawn | Status::Ineligible | Status::Rejected | Status::Completed | Status::Terminated
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportState {
    Submitted,
    Accepted,
    RevisionRequested,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApplicationState {
    pub id: Option<String>,
    pub status: Status,
    pub batch_id: Option<String>,
    pub batch_deadline: Option<NaiveDate>,
    pub submitted_on: Option<NaiveDate>,
    pub submission: Option<ApplicationDetails>,
    /// Whose the personal fields of the submission are (its contact); `None` while they are
    /// plaintext stored before personal data was sealed.
    pub data_subject_id: Option<DataSubjectId>,
    pub ineligibility: Vec<String>,
    pub assessor: Option<String>,
    pub total_score: Option<u32>,
    pub approval: Option<ApprovedTerms>,
    pub decided_on: Option<NaiveDate>,
    pub reporting_due_dates: Vec<NaiveDate>,
    pub reports: BTreeMap<NaiveDate, ReportState>,
    /// Shared between copies of the state until one of them charges: keeping, loading and
    /// deciding on a state does not copy its ledger.
    #[serde(serialize_with = "shared_ledger")]
    pub usage: Arc<UsageLedger>,
    pub disbursed: Money,
}

impl ApplicationState {
    /// The application (`application_id`, as the caller named it) exists, is not closed, and
    /// is at one of the `allowed` stages.
    pub(crate) fn open(
        &self,
        application_id: &str,
        action: &'static str,
        allowed: &[Status],
    ) -> Result<(), DomainError> {
        if self.status == Status::New {
            return Err(DomainError::UnknownApplication { application: application_id.to_string() });
        }
        if self.status.is_closed() {
            return Err(DomainError::ApplicationClosed { status: self.status.as_str() });
        }
        if !allowed.contains(&self.status) {
            return Err(DomainError::WrongStage { action, status: self.status.as_str() });
        }
        Ok(())
    }

    pub(crate) fn id(&self) -> &str {
        self.id.as_deref().unwrap_or_default()
    }

    /// Units of a service type already charged in a month (reversals excluded).
    pub(crate) fn units_used(&self, service_type: &ServiceType, period: Period) -> u64 {
        self.usage.units_used(service_type, period)
    }

    /// A charge that another bulk import than `import_id` made of the same usage — same
    /// service, month and units, not reversed — as `(usage id, import id)`; the first by usage
    /// id when several did. Charges recorded on their own are not imports and do not count:
    /// a clerk's single charge is not a copy of a scheduler's file.
    pub(crate) fn charged_by_another_import(
        &self,
        import_id: &str,
        service_type: &ServiceType,
        period: Period,
        units: u64,
    ) -> Option<(String, String)> {
        self.usage.charged_by_another_import(import_id, service_type, period, units)
    }

    /// The first progress report due before `today` and not yet submitted.
    pub fn overdue_report(&self, today: NaiveDate) -> Option<NaiveDate> {
        self.reporting_due_dates.iter().copied().find(|due| *due < today && !self.reports.contains_key(due))
    }

    /// The financial year whose budget a usage line was paid from.
    pub fn usage_year(&self, usage_id: &str) -> Option<FinancialYear> {
        self.usage.get(usage_id).map(|line| line.year)
    }

    /// The financial years the approval reserved subsidy in.
    pub fn reserved_years(&self) -> Vec<FinancialYear> {
        self.approval.iter().flat_map(|approval| approval.reservations.iter().map(|r| r.year)).collect()
    }

    /// What the application still holds in each year: reserved less disbursed, never negative.
    pub(crate) fn unused_reservations(&self) -> Vec<Reservation> {
        let Some(approval) = &self.approval else { return Vec::new() };
        let disbursed = self.usage.disbursed_by_year();
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

fn shared_ledger<S: serde::Serializer>(ledger: &Arc<UsageLedger>, serializer: S) -> Result<S::Ok, S::Error> {
    ledger.as_ref().serialize(serializer)
}

pub fn apply(mut state: ApplicationState, event: &ApplicationEvent) -> ApplicationState {
    use ApplicationEvent as E;
    match event {
        E::ApplicationSubmitted(e) => {
            state.id = Some(e.application_id.clone());
            state.status = Status::Submitted;
            state.batch_id = Some(e.batch_id.clone());
            state.batch_deadline = Some(e.batch_deadline);
            state.submitted_on = Some(e.submitted_on);
            state.submission = Some(e.details.clone());
            state.data_subject_id = e.data_subject_id;
        }
        E::ApplicationAmended(e) => {
            state.submission = Some(e.details.clone());
            state.data_subject_id = e.data_subject_id.or(state.data_subject_id);
        }
        E::ApplicationWithdrawn(_) => state.status = Status::Withdrawn,
        E::EligibilityConfirmed(_) => state.status = Status::Eligible,
        E::RuledIneligible(e) => {
            state.status = Status::Ineligible;
            state.ineligibility = e.reasons.clone();
        }
        E::AssessmentRecorded(e) => {
            state.status = Status::Assessed;
            state.assessor = Some(e.assessor.clone());
            state.total_score = Some(e.total_score);
        }
        E::ApplicationApproved(e) => {
            state.status = Status::Approved;
            state.decided_on = Some(e.committee.decided_on);
            state.approval = Some(e.terms.clone());
        }
        E::ApplicationRejected(e) => {
            state.status = Status::Rejected;
            state.decided_on = Some(e.committee.decided_on);
        }
        E::ApplicationDeferred(e) => {
            state.status = Status::Deferred;
            state.batch_id = Some(e.to_batch_id.clone());
            state.batch_deadline = Some(e.to_batch_deadline);
        }
        E::AgreementSigned(e) => {
            state.status = Status::AgreementSigned;
            state.reporting_due_dates = e.reporting_due_dates.clone();
        }
        E::UsageCharged(e) => {
            Arc::make_mut(&mut state.usage).record(NewCharge {
                usage_id: &e.usage_id,
                import_id: e.import_id.as_deref(),
                service_type: &e.service_type,
                period: e.period,
                units: e.units,
                gross: e.gross,
                subsidy: e.subsidy,
                year: e.financial_year,
            });
            state.disbursed = e.disbursed_total;
        }
        E::DisbursementReversed(e) => {
            Arc::make_mut(&mut state.usage).reverse(&e.usage_id);
            state.disbursed = e.disbursed_total;
        }
        E::ProgressReportSubmitted(e) => {
            state.reports.insert(e.due, ReportState::Submitted);
        }
        E::ProgressReportReviewed(e) => {
            let outcome = if e.accepted { ReportState::Accepted } else { ReportState::RevisionRequested };
            state.reports.insert(e.due, outcome);
        }
        E::ApplicationCompleted(_) => state.status = Status::Completed,
        E::ApplicationTerminated(_) => state.status = Status::Terminated,
    }
    state
}
