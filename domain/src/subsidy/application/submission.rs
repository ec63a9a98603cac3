//! What an applicant submits (the command's input), its validation, and the eligibility
//! rules of §11 and §13 footnote 6 over the details as stored.

use super::events::{ApplicationDetails, ContactRecord, RequestedResource, UndertakingsRecord};
use crate::personal_data::PersonalText;
use crate::subsidy::error::DomainError;
use crate::subsidy::values::{ApplicantCategory, RateBps};

/// The undertakings a strategic enterprise gives (§11(e)).
#[derive(Clone, PartialEq, Eq)]
pub struct Undertakings {
    pub land_in_hong_kong: bool,
    pub professionals_to_employ: u32,
    /// How the project contributes to R&D and AI innovation in Hong Kong.
    pub contribution: String,
}

/// The applicant's contact person.
#[derive(Clone, PartialEq, Eq)]
pub struct Contact {
    pub name: String,
    pub email: String,
}

impl std::fmt::Debug for Undertakings {
    // The contribution is free text that may name people: kept out of logs and panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Undertakings")
            .field("land_in_hong_kong", &self.land_in_hong_kong)
            .field("professionals_to_employ", &self.professionals_to_employ)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Contact {
    // Personal data stays out of logs and panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Contact { .. }")
    }
}

/// What an applicant submits.
#[derive(Clone, PartialEq, Eq)]
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

impl std::fmt::Debug for Submission {
    // The summary, contribution and contact are personal: kept out of logs and panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submission")
            .field("organisation", &self.organisation)
            .field("category", &self.category)
            .field("sub_type", &self.sub_type)
            .field("project_title", &self.project_title)
            .field("requested_resources", &self.requested_resources)
            .field("requested_rate", &self.requested_rate)
            .field("undertakings", &self.undertakings)
            .finish_non_exhaustive()
    }
}

impl Submission {
    pub(crate) fn validate(&self) -> Result<(), DomainError> {
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
        if let Some(undertakings) = &self.undertakings {
            // Sealed text cannot be read by the eligibility check: a blank contribution is
            // refused here, where it is still plaintext.
            text("undertakings.contribution", &undertakings.contribution, 10_000)?;
        }
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
}

impl From<Submission> for ApplicationDetails {
    fn from(submission: Submission) -> Self {
        let Submission {
            organisation,
            category,
            sub_type,
            project_title,
            project_summary,
            develops_ai_models,
            requested_resources,
            requested_rate,
            team_size,
            talents,
            mainland_or_overseas_team,
            other_government_funding,
            undertakings,
            contact,
        } = submission;
        ApplicationDetails {
            organisation,
            category,
            sub_type,
            project_title,
            project_summary: PersonalText::Unsealed(project_summary),
            develops_ai_models,
            requested_resources,
            requested_rate,
            team_size,
            talents,
            mainland_or_overseas_team,
            other_government_funding,
            undertakings: undertakings.map(|given| UndertakingsRecord {
                land_in_hong_kong: given.land_in_hong_kong,
                professionals_to_employ: given.professionals_to_employ,
                contribution: PersonalText::Unsealed(given.contribution),
            }),
            contact: ContactRecord {
                name: PersonalText::Unsealed(contact.name),
                email: PersonalText::Unsealed(contact.email),
            },
        }
    }
}

impl ApplicationDetails {
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
                    if undertakings.contribution.is_blank() {
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
