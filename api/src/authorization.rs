//! The authorisation matrix: which role may do what, in one place. Handlers name the action
//! they perform; [`require`] answers 403 when none of the caller's roles allows it. The
//! domain adds its own separation of duties (the assessor of an application cannot record its
//! committee decision) on top of this.

use crate::auth::{Principal, Role};
use crate::problem::ApiError;

/// Everything a caller can ask of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// The raw event feed: one stream, or `$all` from a position.
    ReadEventFeed,
    /// The audit trail read model.
    ReadAuditTrail,
    /// Recompute the hash chains of the log.
    VerifyLog,
    /// The read models' positions, lag and versions.
    ReadProjectionStatus,
    /// Ask for a read model to be rebuilt from the log.
    RebuildProjection,
    /// Read the scheme's aggregates (applications, batches, funding years, prices, capacity).
    ReadScheme,
    /// Export applications, disbursements and the budget as spreadsheets.
    ExportReports,
    OpenOrCloseBatch,
    RecordFunding,
    SetPrices,
    DeclareCapacity,
    RedeployCapacity,
    SubmitApplication,
    AmendOrWithdrawApplication,
    CheckEligibility,
    RecordAssessment,
    RecordCommitteeDecision,
    SignAgreement,
    ChargeUsage,
    SubmitProgressReport,
    ReviewProgressReport,
    CloseProject,
    /// Register, list and deactivate webhooks, and list their deliveries.
    ManageWebhooks,
    /// Answer a data access request (PDPO DPP6): a data subject's personal data in plaintext.
    AnswerDataAccessRequest,
    /// Erase a data subject's personal data (destroy its key) for good.
    ErasePersonalData,
    /// Read an application's personal fields (its contact, summary, contribution) opened.
    ReadPersonalData,
}

impl Action {
    pub const ALL: [Action; 26] = [
        Action::ReadEventFeed,
        Action::ReadAuditTrail,
        Action::VerifyLog,
        Action::ReadProjectionStatus,
        Action::RebuildProjection,
        Action::ReadScheme,
        Action::ExportReports,
        Action::OpenOrCloseBatch,
        Action::RecordFunding,
        Action::SetPrices,
        Action::DeclareCapacity,
        Action::RedeployCapacity,
        Action::SubmitApplication,
        Action::AmendOrWithdrawApplication,
        Action::CheckEligibility,
        Action::RecordAssessment,
        Action::RecordCommitteeDecision,
        Action::SignAgreement,
        Action::ChargeUsage,
        Action::SubmitProgressReport,
        Action::ReviewProgressReport,
        Action::CloseProject,
        Action::ManageWebhooks,
        Action::AnswerDataAccessRequest,
        Action::ErasePersonalData,
        Action::ReadPersonalData,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::ReadEventFeed => "read the event feed",
            Action::ReadAuditTrail => "read the audit trail",
            Action::VerifyLog => "verify the event log",
            Action::ReadProjectionStatus => "read the projections' status",
            Action::RebuildProjection => "rebuild a projection",
            Action::ReadScheme => "read the scheme's records",
            Action::ExportReports => "export the scheme's records as spreadsheets",
            Action::OpenOrCloseBatch => "open or close a batch",
            Action::RecordFunding => "record funding",
            Action::SetPrices => "set service rates",
            Action::DeclareCapacity => "declare AISC capacity",
            Action::RedeployCapacity => "redeploy capacity",
            Action::SubmitApplication => "submit an application",
            Action::AmendOrWithdrawApplication => "amend or withdraw an application",
            Action::CheckEligibility => "check eligibility",
            Action::RecordAssessment => "record an assessment",
            Action::RecordCommitteeDecision => "record a committee decision",
            Action::SignAgreement => "record a funding agreement",
            Action::ChargeUsage => "charge usage and disburse subsidy",
            Action::SubmitProgressReport => "submit a progress report",
            Action::ReviewProgressReport => "review a progress report",
            Action::CloseProject => "complete or terminate a project",
            Action::ManageWebhooks => "manage webhooks",
            Action::AnswerDataAccessRequest => "read a data subject's personal data",
            Action::ErasePersonalData => "erase a data subject's personal data",
            Action::ReadPersonalData => "read an applicant's personal data",
        }
    }

    /// The roles allowed to perform the action.
    pub fn allowed_roles(self) -> &'static [Role] {
        use Role::*;
        match self {
            Action::ReadEventFeed | Action::ReadAuditTrail | Action::VerifyLog | Action::ReadProjectionStatus => {
                &[Auditor, Administrator]
            }
            Action::RebuildProjection | Action::SetPrices | Action::DeclareCapacity | Action::ManageWebhooks => {
                &[Administrator]
            }
            // The whole of a person's data in plaintext, at once: the role answerable for the
            // scheme's data, and no other.
            Action::AnswerDataAccessRequest => &[Administrator],
            Action::ErasePersonalData => &[Administrator],
            // Those who deal with the applicant and judge the project (DPP3: personal data used
            // for the purpose it was collected for); finance and audit work on the figures.
            Action::ReadPersonalData => &[IntakeOfficer, Assessor, CommitteeSecretariat, Administrator],
            Action::ReadScheme => {
                &[IntakeOfficer, Assessor, CommitteeSecretariat, FinanceOfficer, Auditor, Administrator]
            }
            // Finance officers reconcile disbursements, the secretariat reports to the
            // Government and the Legislative Council; intake officers and assessors work on
            // single applications.
            Action::ExportReports => &[FinanceOfficer, CommitteeSecretariat, Auditor, Administrator],
            Action::OpenOrCloseBatch
            | Action::RedeployCapacity
            | Action::RecordCommitteeDecision
            | Action::SignAgreement
            | Action::CloseProject => &[CommitteeSecretariat],
            Action::RecordFunding | Action::ChargeUsage => &[FinanceOfficer],
            Action::SubmitApplication
            | Action::AmendOrWithdrawApplication
            | Action::CheckEligibility
            | Action::SubmitProgressReport => &[IntakeOfficer],
            Action::RecordAssessment | Action::ReviewProgressReport => &[Assessor],
        }
    }
}

/// Refuses with 403 unless one of the principal's roles allows `action`; returns that role,
/// which the command's events record.
pub fn require(principal: &Principal, action: Action) -> Result<Role, ApiError> {
    if let Some(role) = action.allowed_roles().iter().find(|role| principal.has(**role)) {
        return Ok(*role);
    }
    let allowed: Vec<&str> = action.allowed_roles().iter().map(|role| role.as_str()).collect();
    Err(ApiError::Forbidden(format!(
        "{} may not {}; it needs one of the roles {}",
        principal.name,
        action.name(),
        allowed.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_roles_pass() {
        let auditor = Principal { name: "amy".into(), roles: vec![Role::Auditor] };
        let intake = Principal { name: "ian".into(), roles: vec![Role::IntakeOfficer] };
        assert!(require(&auditor, Action::ReadEventFeed).is_ok());
        let refused = require(&intake, Action::ReadAuditTrail).expect_err("refused");
        assert!(refused.to_string().contains("auditor"), "{refused}");
    }

    /// The action's place in [`Action::ALL`]. No wildcard: a new action does not compile until
    /// it is given a place here, its index in `ALL`, which the test below checks.
    fn place(action: Action) -> usize {
        match action {
            Action::ReadEventFeed => 0,
            Action::ReadAuditTrail => 1,
            Action::VerifyLog => 2,
            Action::ReadProjectionStatus => 3,
            Action::RebuildProjection => 4,
            Action::ReadScheme => 5,
            Action::ExportReports => 6,
            Action::OpenOrCloseBatch => 7,
            Action::RecordFunding => 8,
            Action::SetPrices => 9,
            Action::DeclareCapacity => 10,
            Action::RedeployCapacity => 11,
            Action::SubmitApplication => 12,
            Action::AmendOrWithdrawApplication => 13,
            Action::CheckEligibility => 14,
            Action::RecordAssessment => 15,
            Action::RecordCommitteeDecision => 16,
            Action::SignAgreement => 17,
            Action::ChargeUsage => 18,
            Action::SubmitProgressReport => 19,
            Action::ReviewProgressReport => 20,
            Action::CloseProject => 21,
            Action::ManageWebhooks => 22,
            Action::AnswerDataAccessRequest => 23,
            Action::ErasePersonalData => 24,
            Action::ReadPersonalData => 25,
        }
    }

    #[test]
    fn every_action_is_listed_once_named_and_allowed_to_some_role() {
        for (index, action) in Action::ALL.into_iter().enumerate() {
            assert_eq!(place(action), index, "{action:?} is listed at its place, once");
            assert!(!action.name().is_empty(), "{action:?} has a name");
            assert!(!action.allowed_roles().is_empty(), "{action:?} is allowed to some role");
        }
    }
}
