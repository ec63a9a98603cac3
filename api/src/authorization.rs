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
}

impl Action {
    pub const ALL: [Action; 5] = [
        Action::ReadEventFeed,
        Action::ReadAuditTrail,
        Action::VerifyLog,
        Action::ReadProjectionStatus,
        Action::RebuildProjection,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::ReadEventFeed => "read the event feed",
            Action::ReadAuditTrail => "read the audit trail",
            Action::VerifyLog => "verify the event log",
            Action::ReadProjectionStatus => "read the projections' status",
            Action::RebuildProjection => "rebuild a projection",
        }
    }

    /// The roles allowed to perform the action.
    pub fn allowed_roles(self) -> &'static [Role] {
        use Role::*;
        match self {
            Action::ReadEventFeed | Action::ReadAuditTrail | Action::VerifyLog | Action::ReadProjectionStatus => {
                &[Auditor, Administrator]
            }
            Action::RebuildProjection => &[Administrator],
        }
    }
}

/// Refuses with 403 unless one of the principal's roles allows `action`.
pub fn require(principal: &Principal, action: Action) -> Result<(), ApiError> {
    if action.allowed_roles().iter().any(|role| principal.has(*role)) {
        return Ok(());
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
}
