//! The OpenAPI description of `GET /api/v1/applications/{application_id}`: the application's
//! state as the domain serialises it (`{version, state}`). The domain stays free of the API, so
//! the shape is described here, field for field; `tests/openapi.rs` checks a served application
//! against it both ways (a required field missing, or a field not described, fails), so the
//! two cannot drift apart unnoticed. These types are never built: they only describe.
#![allow(dead_code)]

use std::collections::BTreeMap;

use chrono::NaiveDate;

/// An application and the stream version it was read at.
#[derive(utoipa::ToSchema)]
pub struct ApplicationView {
    /// The application stream's version (also the `ETag`, for `If-Match`).
    version: u64,
    state: ApplicationStateView,
}

/// Where an application stands.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum ApplicationStatus {
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

/// A progress report's review.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum ReportReview {
    Submitted,
    Accepted,
    RevisionRequested,
}

/// The application's state, folded from its events.
#[derive(utoipa::ToSchema)]
pub struct ApplicationStateView {
    /// 32 lower-case hex digits.
    id: Option<String>,
    status: ApplicationStatus,
    /// The intake batch, e.g. `2025-q3`.
    batch_id: Option<String>,
    /// The batch's deadline (YYYY-MM-DD).
    batch_deadline: Option<NaiveDate>,
    /// The business date of the submission (YYYY-MM-DD).
    submitted_on: Option<NaiveDate>,
    /// The application as submitted or last amended.
    submission: Option<SubmissionView>,
    /// The data subject whose key seals the personal fields (the contact, the summary, the
    /// contribution, the progress reports and their reviews); null for an application whose
    /// fields were stored before personal data was sealed.
    data_subject_id: Option<String>,
    /// Whether the data subject's personal data was erased: its fields are then null.
    personal_data_erased: bool,
    /// Whether the personal fields are withheld (null) from the reader: they are opened for
    /// intake officers, assessors, the committee secretariat and administrators only.
    personal_data_withheld: bool,
    /// Why it was found ineligible (empty unless it was).
    ineligibility: Vec<String>,
    /// The assessor's name, once assessed.
    assessor: Option<String>,
    /// The assessment's total score (four criteria, 0 to 10 each), once assessed.
    total_score: Option<u32>,
    /// What the committee approved, once approved.
    approval: Option<ApprovedTermsView>,
    /// The committee's decision date (YYYY-MM-DD), once decided.
    decided_on: Option<NaiveDate>,
    /// Progress reports due under the funding agreement (YYYY-MM-DD each).
    reporting_due_dates: Vec<NaiveDate>,
    /// The reports received, by due date (YYYY-MM-DD), with their review.
    reports: BTreeMap<String, ReportReview>,
    /// A summary of the usage charged, whatever the number of lines (they are paged from
    /// `/applications/{application_id}/usage`).
    usage: UsageSummaryView,
    /// Subsidy disbursed so far, in HK cents (usage charges less reversals).
    disbursed: i64,
}

/// A requested service over a span of months.
#[derive(utoipa::ToSchema)]
pub struct RequestedResourceView {
    /// The AISC service, e.g. `gpu_node_hour_h800`.
    service_type: String,
    /// The first month (YYYY-MM).
    first_period: String,
    /// The last month (YYYY-MM).
    last_period: String,
    /// Units asked for each month.
    units_per_month: u64,
}

/// The undertakings a strategic enterprise gives (§11(e)).
#[derive(utoipa::ToSchema)]
pub struct UndertakingsView {
    land_in_hong_kong: bool,
    professionals_to_employ: u32,
    /// How the project contributes to R&D and AI innovation in Hong Kong (personal: null once
    /// erased).
    contribution: Option<String>,
}

/// The applicant's contact (personal: null once erased, or withheld from the reader's role).
#[derive(utoipa::ToSchema)]
pub struct ContactView {
    name: Option<String>,
    email: Option<String>,
}

/// The application as submitted or last amended.
#[derive(utoipa::ToSchema)]
pub struct SubmissionView {
    /// The applicant's name.
    organisation: String,
    /// local_institution, rnd_centre, government_department, ai_startup or strategic_enterprise.
    category: String,
    sub_type: String,
    project_title: String,
    /// Personal: null once erased.
    project_summary: Option<String>,
    develops_ai_models: bool,
    requested_resources: Vec<RequestedResourceView>,
    /// The subsidy rate asked for, in basis points (7000 = 70 %).
    requested_rate: u32,
    team_size: u32,
    talents: u32,
    mainland_or_overseas_team: bool,
    /// Declared: other Government funding for the same items (§13 footnote 6).
    other_government_funding: bool,
    /// A strategic enterprise's undertakings; null for other categories.
    undertakings: Option<UndertakingsView>,
    contact: ContactView,
}

/// Units of a service in a month.
#[derive(utoipa::ToSchema)]
pub struct AllocationView {
    /// The AISC service, e.g. `gpu_node_hour_h800`.
    service_type: String,
    /// The month (YYYY-MM).
    period: String,
    units: u64,
}

/// Subsidy reserved in one financial year.
#[derive(utoipa::ToSchema)]
pub struct ReservationView {
    /// The financial year, e.g. `2025-26`.
    year: String,
    /// In HK cents.
    amount: i64,
}

/// What the committee approved (§12–§13).
#[derive(utoipa::ToSchema)]
pub struct ApprovedTermsView {
    /// The approved subsidy rate, in basis points.
    rate: u32,
    /// Why a rate above the category's was approved, if it was.
    exceptional_reason: Option<String>,
    /// Capacity allocated per service and month.
    allocations: Vec<AllocationView>,
    /// The subsidy ceiling, in HK cents.
    ceiling: i64,
    /// The project's first day (YYYY-MM-DD).
    start: NaiveDate,
    /// The project's last day (YYYY-MM-DD).
    end: NaiveDate,
    conditions: Vec<String>,
    /// The ceiling reserved per financial year.
    reservations: Vec<ReservationView>,
}

/// What the application's ledger holds, bounded by the services and months charged.
#[derive(utoipa::ToSchema)]
pub struct UsageSummaryView {
    /// Usage lines charged, reversed ones included.
    lines: u64,
    /// Of those, the lines reversed.
    reversed_lines: u64,
    /// Units charged per month and service (reversed lines excluded), by month then service.
    by_month: Vec<MonthUsageView>,
    /// Subsidy disbursed per funding year (e.g. `2025-26`), in HK cents.
    disbursed_by_year: BTreeMap<String, i64>,
}

/// Units charged of a service in a month.
#[derive(utoipa::ToSchema)]
pub struct MonthUsageView {
    /// The AISC service, e.g. `gpu_node_hour_h800`.
    service_type: String,
    /// The usage month (YYYY-MM).
    period: String,
    units: u64,
}
