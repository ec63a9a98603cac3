//! Request bodies of the scheme's commands, as staff tools send them, and their conversion to
//! the domain's types. Money is in integer HK cents, rates in basis points, dates ISO 8601.

use aisc_domain::subsidy::application::{
    CommitteeMeeting, Contact, Kpis, RequestedResource, Scores, Submission, Undertakings,
};
use aisc_domain::subsidy::capacity::Allocation;
use aisc_domain::subsidy::values::{ApplicantCategory, Money, Period, RateBps, ServiceType};
use chrono::NaiveDate;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::command::parse_json;
use crate::input;
use crate::problem::ApiError;

/// A request body's bounds beyond its types: identifiers, counts and free text (see
/// [`crate::input`]); a value out of bounds is a 400 naming its path.
pub trait Bounded {
    fn check(&self) -> Result<(), ApiError>;
}

/// Parses a JSON command body and checks its bounds.
pub fn parse_body<T: DeserializeOwned + Bounded>(body: &[u8]) -> Result<T, ApiError> {
    let parsed: T = parse_json(body)?;
    parsed.check()?;
    Ok(parsed)
}

/// An amount in HK cents that fits the ledger (at most 9,223,372,036,854,775,807).
pub fn cents(value: u64, field: &str) -> Result<Money, ApiError> {
    i64::try_from(value)
        .map(Money::from_cents)
        .map_err(|_| ApiError::bad_field(field, format!("{value} cents is more than the ledger holds")))
}

/// A rate in basis points, 1 to 10,000 (the domain then applies the 70 % and 90 % caps).
pub fn rate(value: u32, field: &str) -> Result<RateBps, ApiError> {
    RateBps::new(value).map_err(|error| ApiError::bad_field(field, error.to_string()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceBody {
    #[schema(value_type = String, example = "gpu_node_hour_h800")]
    pub service_type: ServiceType,
    #[schema(value_type = String, example = "2025-07")]
    pub first_period: Period,
    #[schema(value_type = String, example = "2025-12")]
    pub last_period: Period,
    /// At most 1,000,000,000.
    pub units_per_month: u64,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UndertakingsBody {
    pub land_in_hong_kong: bool,
    pub professionals_to_employ: u32,
    pub contribution: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactBody {
    pub name: String,
    pub email: String,
}

/// An application as submitted (or amended).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmissionBody {
    pub organisation: String,
    #[schema(value_type = String, example = "local_institution")]
    pub category: ApplicantCategory,
    /// e.g. ugc_funded_university, innohk_centre, cyberport_incubatee_or_alumnus.
    pub sub_type: String,
    pub project_title: String,
    pub project_summary: String,
    pub develops_ai_models: bool,
    pub requested_resources: Vec<ResourceBody>,
    /// Requested subsidy rate in basis points (7000 = 70 %).
    pub requested_rate_bps: u32,
    pub team_size: u32,
    pub talents: u32,
    pub mainland_or_overseas_team: bool,
    /// Whether the same items receive other Government funding.
    pub other_government_funding: bool,
    pub undertakings: Option<UndertakingsBody>,
    pub contact: ContactBody,
}

impl Bounded for SubmissionBody {
    fn check(&self) -> Result<(), ApiError> {
        // Lengths of the applicant's texts are the domain's rules (422 naming the field).
        for (index, resource) in self.requested_resources.iter().enumerate() {
            input::units(&format!("requested_resources[{index}].units_per_month"), resource.units_per_month)?;
        }
        input::count("team_size", self.team_size)?;
        input::count("talents", self.talents)?;
        if let Some(undertakings) = &self.undertakings {
            input::count("undertakings.professionals_to_employ", undertakings.professionals_to_employ)?;
            input::text("undertakings.contribution", &undertakings.contribution)?;
        }
        Ok(())
    }
}

impl SubmissionBody {
    pub fn into_domain(self) -> Result<Submission, ApiError> {
        Ok(Submission {
            organisation: self.organisation,
            category: self.category,
            sub_type: self.sub_type,
            project_title: self.project_title,
            project_summary: self.project_summary,
            develops_ai_models: self.develops_ai_models,
            requested_resources: self
                .requested_resources
                .into_iter()
                .map(|r| RequestedResource {
                    service_type: r.service_type,
                    first_period: r.first_period,
                    last_period: r.last_period,
                    units_per_month: r.units_per_month,
                })
                .collect(),
            requested_rate: rate(self.requested_rate_bps, "requested_rate_bps")?,
            team_size: self.team_size,
            talents: self.talents,
            mainland_or_overseas_team: self.mainland_or_overseas_team,
            other_government_funding: self.other_government_funding,
            undertakings: self.undertakings.map(|u| Undertakings {
                land_in_hong_kong: u.land_in_hong_kong,
                professionals_to_employ: u.professionals_to_employ,
                contribution: u.contribution,
            }),
            contact: Contact { name: self.contact.name, email: self.contact.email },
        })
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    pub reason: String,
}

impl Bounded for ReasonBody {
    fn check(&self) -> Result<(), ApiError> {
        input::text("reason", &self.reason)
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoresBody {
    pub a_meets_hong_kong_needs: u8,
    pub b_requirement_reasonable: u8,
    pub c_feasibility_and_outcome: u8,
    pub d_capability: u8,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssessmentBody {
    pub scores: ScoresBody,
    pub recommended_rate_bps: u32,
    pub recommended_ceiling_cents: u64,
    pub duration_months: u32,
    #[serde(default)]
    pub conditions: Vec<String>,
    /// The assessor declares no conflict of interest with the applicant.
    pub no_conflict_declared: bool,
}

impl Bounded for AssessmentBody {
    fn check(&self) -> Result<(), ApiError> {
        input::texts("conditions", &self.conditions)
    }
}

impl ScoresBody {
    pub fn into_domain(self) -> Scores {
        Scores {
            a_meets_hong_kong_needs: self.a_meets_hong_kong_needs,
            b_requirement_reasonable: self.b_requirement_reasonable,
            c_feasibility_and_outcome: self.c_feasibility_and_outcome,
            d_capability: self.d_capability,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MeetingBody {
    /// 1 to 100 characters; so is each member's name.
    pub meeting_reference: String,
    pub decided_on: NaiveDate,
    pub members_present: Vec<String>,
    #[serde(default)]
    pub members_recused: Vec<String>,
}

impl MeetingBody {
    /// Checked where every decision carries it: under `meeting`.
    fn check(&self) -> Result<(), ApiError> {
        input::name("meeting.meeting_reference", &self.meeting_reference)?;
        input::names("meeting.members_present", &self.members_present)?;
        input::names("meeting.members_recused", &self.members_recused)
    }

    pub fn into_domain(self) -> CommitteeMeeting {
        CommitteeMeeting {
            meeting_reference: self.meeting_reference,
            decided_on: self.decided_on,
            members_present: self.members_present,
            members_recused: self.members_recused,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllocationBody {
    #[schema(value_type = String)]
    pub service_type: ServiceType,
    #[schema(value_type = String, example = "2025-07")]
    pub period: Period,
    /// At most 1,000,000,000.
    pub units: u64,
}

impl AllocationBody {
    pub fn into_domain(self) -> Allocation {
        Allocation { service_type: self.service_type, period: self.period, units: self.units }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalBody {
    pub meeting: MeetingBody,
    pub rate_bps: u32,
    /// Required above 7000 bps (70 %): why the case is special and exceptional (§13).
    pub exceptional_reason: Option<String>,
    pub allocations: Vec<AllocationBody>,
    /// At most the subsidy of the allocated units (units × rate in force × `rate_bps`,
    /// rounded down to the cent); that amount when omitted.
    #[serde(default)]
    pub ceiling_cents: Option<u64>,
    pub start: NaiveDate,
    pub end: NaiveDate,
    #[serde(default)]
    pub conditions: Vec<String>,
}

impl Bounded for ApprovalBody {
    fn check(&self) -> Result<(), ApiError> {
        self.meeting.check()?;
        if let Some(reason) = &self.exceptional_reason {
            input::text("exceptional_reason", reason)?;
        }
        for (index, allocation) in self.allocations.iter().enumerate() {
            input::units(&format!("allocations[{index}].units"), allocation.units)?;
        }
        input::texts("conditions", &self.conditions)
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectionBody {
    pub meeting: MeetingBody,
    pub reasons: Vec<String>,
}

impl Bounded for RejectionBody {
    fn check(&self) -> Result<(), ApiError> {
        self.meeting.check()?;
        input::texts("reasons", &self.reasons)
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeferralBody {
    pub meeting: MeetingBody,
    pub reason: String,
    /// Letters, digits, - and _, at most 40.
    pub to_batch_id: String,
}

impl Bounded for DeferralBody {
    fn check(&self) -> Result<(), ApiError> {
        self.meeting.check()?;
        input::text("reason", &self.reason)?;
        input::batch_id("to_batch_id", &self.to_batch_id)
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgreementBody {
    pub signed_on: NaiveDate,
    pub reporting_due_dates: Vec<NaiveDate>,
}

impl Bounded for AgreementBody {
    fn check(&self) -> Result<(), ApiError> {
        Ok(())
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageBody {
    /// The scheduler's id of the usage line (one charge per id): letters, digits, -, _ and .,
    /// beginning with a letter or digit, at most 100.
    pub usage_id: String,
    #[schema(value_type = String)]
    pub service_type: ServiceType,
    #[schema(value_type = String, example = "2025-07")]
    pub period: Period,
    /// At most 1,000,000,000.
    pub units: u64,
}

impl Bounded for UsageBody {
    fn check(&self) -> Result<(), ApiError> {
        input::usage_id("usage_id", &self.usage_id)?;
        input::units("units", self.units)
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KpisBody {
    pub ai_models_trained_or_deployed: u32,
    pub talents_employed: u32,
    pub mainland_or_overseas_collaborators: u32,
    pub publications: u32,
    pub patents: u32,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressReportBody {
    pub due: NaiveDate,
    pub kpis: KpisBody,
    pub summary: String,
}

impl Bounded for ProgressReportBody {
    fn check(&self) -> Result<(), ApiError> {
        let kpis = &self.kpis;
        input::count("kpis.ai_models_trained_or_deployed", kpis.ai_models_trained_or_deployed)?;
        input::count("kpis.talents_employed", kpis.talents_employed)?;
        input::count("kpis.mainland_or_overseas_collaborators", kpis.mainland_or_overseas_collaborators)?;
        input::count("kpis.publications", kpis.publications)?;
        input::count("kpis.patents", kpis.patents)?;
        input::text("summary", &self.summary)
    }
}

impl KpisBody {
    pub fn into_domain(self) -> Kpis {
        Kpis {
            ai_models_trained_or_deployed: self.ai_models_trained_or_deployed,
            talents_employed: self.talents_employed,
            mainland_or_overseas_collaborators: self.mainland_or_overseas_collaborators,
            publications: self.publications,
            patents: self.patents,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewBody {
    pub accepted: bool,
    #[serde(default)]
    pub comments: String,
}

impl Bounded for ReviewBody {
    fn check(&self) -> Result<(), ApiError> {
        input::text("comments", &self.comments)
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmptyBody {}

impl Bounded for EmptyBody {
    fn check(&self) -> Result<(), ApiError> {
        Ok(())
    }
}
