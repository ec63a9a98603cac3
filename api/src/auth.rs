//! Who is calling: bearer tokens bound to a named principal with roles. Only a SHA-256 hash
//! of each token is stored; the token itself is shown once, when it is issued.

use std::fmt;
use std::str::FromStr;

use aisc_adapters::access;
use serde::Serialize;
use sqlx::PgPool;

/// The staff roles of the scheme's back office.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    IntakeOfficer,
    Assessor,
    CommitteeSecretariat,
    FinanceOfficer,
    Auditor,
    Administrator,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::IntakeOfficer,
        Role::Assessor,
        Role::CommitteeSecretariat,
        Role::FinanceOfficer,
        Role::Auditor,
        Role::Administrator,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::IntakeOfficer => "intake_officer",
            Role::Assessor => "assessor",
            Role::CommitteeSecretariat => "committee_secretariat",
            Role::FinanceOfficer => "finance_officer",
            Role::Auditor => "auditor",
            Role::Administrator => "administrator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|role| role.as_str() == text).ok_or_else(|| {
            let known: Vec<&str> = Role::ALL.iter().map(|role| role.as_str()).collect();
            format!("unknown role {text:?}; roles are {}", known.join(", "))
        })
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub roles: Vec<Role>,
}

impl Principal {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("a token named {0} already exists; revoke it first or choose another name")]
    NameTaken(String),
    #[error("no active token is named {0}")]
    UnknownName(String),
    #[error("{0}")]
    Invalid(String),
    #[error("token store failure: {0}")]
    Database(#[from] sqlx::Error),
}

/// A token's listing entry (never the token itself).
pub type TokenInfo = access::TokenRecord;

pub use aisc_adapters::access::hash_token;

/// Issues a token for `name` with `roles`; returns the token, which is not stored.
pub async fn issue(pool: &PgPool, name: &str, roles: &[Role]) -> Result<String, TokenError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(TokenError::Invalid("a token name is 1 to 100 printable characters".into()));
    }
    if roles.is_empty() {
        return Err(TokenError::Invalid("a token needs at least one role".into()));
    }
    let token = access::new_token();
    let role_names: Vec<&str> = roles.iter().map(|role| role.as_str()).collect();
    if !access::store_token(pool, name, &token, &role_names).await? {
        return Err(TokenError::NameTaken(name.to_string()));
    }
    Ok(token)
}

pub async fn revoke(pool: &PgPool, name: &str) -> Result<(), TokenError> {
    if !access::revoke_token(pool, name).await? {
        return Err(TokenError::UnknownName(name.to_string()));
    }
    Ok(())
}

pub async fn list(pool: &PgPool) -> Result<Vec<TokenInfo>, TokenError> {
    Ok(access::list_tokens(pool).await?)
}

/// The principal a bearer token stands for, if it is known and not revoked.
pub async fn authenticate(pool: &PgPool, token: &str) -> Result<Option<Principal>, sqlx::Error> {
    Ok(access::find_token(pool, token).await?.map(principal))
}

/// As [`authenticate`], through the in-memory cache of verified tokens (revocations reach it
/// through `LISTEN`).
pub async fn authenticate_with(
    tokens: &aisc_adapters::token_cache::TokenCache,
    token: &str,
) -> Result<Option<Principal>, sqlx::Error> {
    Ok(tokens.verify(token).await?.map(principal))
}

fn principal((name, roles): (String, Vec<String>)) -> Principal {
    Principal { name, roles: roles.iter().filter_map(|role| role.parse().ok()).collect() }
}

/// Parses `intake_officer,assessor`.
pub fn parse_roles(text: &str) -> Result<Vec<Role>, String> {
    let mut roles: Vec<Role> =
        text.split(',').map(str::trim).filter(|r| !r.is_empty()).map(str::parse).collect::<Result<_, _>>()?;
    roles.sort();
    roles.dedup();
    if roles.is_empty() {
        return Err("give at least one role".into());
    }
    Ok(roles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_by_their_names_only() {
        assert_eq!(parse_roles("assessor, intake_officer,assessor"), Ok(vec![Role::IntakeOfficer, Role::Assessor]));
        assert!(parse_roles("boss").expect_err("unknown").contains("intake_officer"));
        assert!(parse_roles(" , ").is_err());
    }

    #[test]
    fn tokens_are_long_random_and_only_their_hash_is_kept() {
        let (a, b) = (access::new_token(), access::new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 5 + 64);
        assert_eq!(hash_token(&a).len(), 32);
        assert_ne!(hash_token(&a), hash_token(&b));
    }
}
