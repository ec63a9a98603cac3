//! Applications: submission to completion.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use aisc_adapters::clock::Clock;
use aisc_domain::subsidy::application::{
    AmendApplication, ApproveApplication, ChargeUsage, CheckEligibility, CloseProject, DeferApplication,
    RecordAssessment, RejectApplication, ReverseDisbursement, ReviewProgressReport, SignAgreement, SubmitApplication,
    SubmitProgressReport, WithdrawApplication,
};
use aisc_domain::subsidy::streams;
use chrono::NaiveDate;
use sqlx::PgPool;

use super::bodies::*;
use super::{CommandAccepted, Scheme, command, decide, domain_refusal, view};
use crate::auth::Principal;
use crate::authorization::{Action, require};
use crate::input;
use crate::problem::{ApiError, ProblemDocument};

fn check_id(application_id: &str) -> Result<(), ApiError> {
    input::application_id("application_id", application_id)
}

/// `POST /api/v1/applications`: submits an application into the earliest open batch.
#[utoipa::path(tag = "applications", params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe: submit once")), request_body = SubmissionBody,
    responses((status = 201, body = CommandAccepted, headers(("Location" = String, description = "The application"))), (status = 400, body = ProblemDocument), (status = 401, body = ProblemDocument), (status = 403, body = ProblemDocument), (status = 409, body = ProblemDocument), (status = 413, body = ProblemDocument), (status = 415, body = ProblemDocument), (status = 422, body = ProblemDocument), (status = 503, body = ProblemDocument)))]
#[post("/applications")]
pub async fn submit(
    request: HttpRequest,
    payload: web::Payload,
    pool: web::Data<PgPool>,
    scheme: web::Data<Scheme>,
    clock: web::Data<Clock>,
) -> Result<HttpResponse, ApiError> {
    let today = clock.today();
    command(&request, payload, &pool, Action::SubmitApplication, true, |context, meta, body| async move {
        let submission = parse_body::<SubmissionBody>(&body)?.into_domain()?;
        let application_id = uuid::Uuid::new_v4().simple().to_string();
        decide(&scheme, &SubmitApplication { application_id, submission }, today, &context, &meta).await
    })
    .await
}

/// `GET /api/v1/applications/{application_id}`: the application as it stands (`ETag` is its
/// version), or as it stood at a past position or time with `as_of` (the log's clock), or
/// with the facts in force on a business date with `effective_on` (the scheme's clock), or both.
#[utoipa::path(tag = "applications", params(("application_id" = String, Path), ("as_of" = Option<String>, Query, description = "A position of $all, or an RFC 3339 time: the application as the log stood then"), ("effective_on" = Option<String>, Query, description = "A date (YYYY-MM-DD): the application with the facts whose business date is on or before it")),
    responses((status = 200, description = "The application; ETag is its version. Its usage is a summary whatever the number of lines; the lines are paged from /applications/{application_id}/usage", body = super::application_view::ApplicationView), (status = 400, body = ProblemDocument), (status = 401, body = ProblemDocument), (status = 403, body = ProblemDocument), (status = 404, body = ProblemDocument), (status = 503, body = ProblemDocument)))]
#[get("/applications/{application_id}")]
pub async fn application(
    request: HttpRequest,
    path: web::Path<String>,
    principal: Principal,
    scheme: web::Data<Scheme>,
    vault: web::Data<aisc_adapters::personal_data::Vault>,
) -> Result<HttpResponse, ApiError> {
    require(&principal, Action::ReadScheme)?;
    let application_id = path.into_inner();
    check_id(&application_id)?;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Params {
        as_of: Option<String>,
        effective_on: Option<chrono::NaiveDate>,
    }
    let params: Params = crate::routes::query(&request)?;
    let stream = streams::application(&application_id).map_err(domain_refusal)?;
    if params.as_of.is_none() && params.effective_on.is_none() {
        // As it stands: the command service's kept state, brought up to date with the events
        // after it (one short read), instead of folding the whole history on every request.
        let current = scheme
            .commands()
            .current_states::<aisc_domain::subsidy::application::Application, ()>(std::slice::from_ref(&stream))
            .await
            .map_err(|error| match error {
                aisc_domain::command_service::CommandError::Store(error) => ApiError::from(error),
                aisc_domain::command_service::CommandError::Codec(error) => ApiError::internal(error),
                // Reading decides nothing: no refusal or conflict can come of it.
                _ => ApiError::internal("reading the application's state failed"),
            })?;
        return match current.into_iter().next() {
            Some((state, Some(version))) => Ok(no_store(view(
                crate::personal_data::opened_application(&state, &vault, personal_fields(&principal)).await?,
                Some(version),
            ))),
            _ => Err(ApiError::NotFound(format!("no application {application_id}"))),
        };
    }
    let history = scheme.commands().load(&stream).await?;
    let history = match params.as_of {
        None => history,
        Some(text) => {
            let as_of = match text.parse::<u64>() {
                Ok(position) => {
                    aisc_domain::command_service::AsOf::Position(aisc_domain::event_store::Position(position))
                }
                Err(_) => aisc_domain::command_service::AsOf::Time(
                    chrono::DateTime::parse_from_rfc3339(&text)
                        .map_err(|_| {
                            ApiError::bad_field(
                                "as_of",
                                "a position, or an RFC 3339 time such as 2025-07-01T00:00:00+08:00",
                            )
                        })?
                        .with_timezone(&chrono::Utc),
                ),
            };
            history.as_of(as_of)
        }
    };
    let history = match params.effective_on {
        None => history,
        Some(date) => {
            let in_force = history
                .effective_on::<aisc_domain::subsidy::application::ApplicationEvent>(date)
                .map_err(ApiError::internal)?;
            if in_force.version.is_none() && history.version.is_some() {
                return Err(ApiError::NotFound(format!(
                    "application {application_id} was not yet submitted on {date}"
                )));
            }
            in_force
        }
    };
    let state = history.fold::<aisc_domain::subsidy::application::Application>().map_err(ApiError::internal)?;
    if history.version.is_none() {
        return Err(ApiError::NotFound(format!("no application {application_id}")));
    }
    Ok(no_store(view(
        crate::personal_data::opened_application(&state, &vault, personal_fields(&principal)).await?,
        history.version,
    )))
}

/// Personal fields opened for the roles that deal with the applicant, withheld from the others.
fn personal_fields(principal: &Principal) -> crate::personal_data::PersonalFields {
    match require(principal, Action::ReadPersonalData) {
        Ok(_) => crate::personal_data::PersonalFields::Opened,
        Err(_) => crate::personal_data::PersonalFields::Withheld,
    }
}

/// A view with personal data is not kept by browsers or proxies: erased, it must be gone.
fn no_store(mut response: HttpResponse) -> HttpResponse {
    response
        .headers_mut()
        .insert(actix_web::http::header::CACHE_CONTROL, actix_web::http::header::HeaderValue::from_static("no-store"));
    response
}

macro_rules! application_command {
    ($name:ident, $route:literal, $action:expr, $body:ty, $doc:literal, |$scheme:ident, $id:ident, $context:ident, $meta:ident, $parsed:ident, $today:ident| $run:expr) => {
        #[doc = $doc]
        #[utoipa::path(tag = "applications", params(("application_id" = String, Path), ("If-Match" = Option<String>, Header, description = "Only against this version (an ETag)"), ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe")), request_body = $body,
            responses((status = 200, body = CommandAccepted), (status = 400, body = ProblemDocument), (status = 401, body = ProblemDocument), (status = 403, body = ProblemDocument), (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument), (status = 412, body = ProblemDocument), (status = 413, body = ProblemDocument), (status = 415, body = ProblemDocument), (status = 422, body = ProblemDocument), (status = 503, body = ProblemDocument)))]
        #[post($route)]
        pub async fn $name(request: HttpRequest, path: web::Path<String>, payload: web::Payload, pool: web::Data<PgPool>, scheme: web::Data<Scheme>, clock: web::Data<Clock>) -> Result<HttpResponse, ApiError> {
            #[allow(unused_variables)]
            let $today = clock.today();
            let $id = path.into_inner();
            command(&request, payload, &pool, $action, false, |$context, $meta, body| async move {
                check_id(&$id)?;
                let $parsed: $body = parse_body(&body)?;
                let $scheme = scheme;
                $run
            })
            .await
        }
    };
}

application_command!(
    amend,
    "/applications/{application_id}/amendments",
    Action::AmendOrWithdrawApplication,
    SubmissionBody,
    "Amends the application while its batch is open.",
    |scheme, id, context, meta, body, today| {
        let amend = AmendApplication { application_id: id, submission: body.into_domain()? };
        decide(&scheme, &amend, today, &context, &meta).await
    }
);

application_command!(
    withdraw,
    "/applications/{application_id}/withdrawal",
    Action::AmendOrWithdrawApplication,
    ReasonBody,
    "Withdraws the application while its batch is open.",
    |scheme, id, context, meta, body, today| {
        decide(&scheme, &WithdrawApplication { application_id: id, reason: body.reason }, today, &context, &meta).await
    }
);

application_command!(
    check_eligibility,
    "/applications/{application_id}/eligibility-check",
    Action::CheckEligibility,
    EmptyBody,
    "Rules on eligibility (§11, §13 fn 6): confirmed, or ineligible with reasons.",
    |scheme, id, context, meta, _body, today| {
        decide(&scheme, &CheckEligibility { application_id: id }, today, &context, &meta).await
    }
);

application_command!(
    assess,
    "/applications/{application_id}/assessment",
    Action::RecordAssessment,
    AssessmentBody,
    "Records Cyberport's preliminary assessment (§13 a–d); the caller is the assessor.",
    |scheme, id, context, meta, body, today| {
        let assessment = RecordAssessment {
            application_id: id,
            scores: body.scores.into_domain(),
            recommended_rate: rate(body.recommended_rate_bps, "recommended_rate_bps")?,
            recommended_ceiling: cents(body.recommended_ceiling_cents, "recommended_ceiling_cents")?,
            duration_months: body.duration_months,
            conditions: body.conditions,
            no_conflict_declared: body.no_conflict_declared,
        };
        decide(&scheme, &assessment, today, &context, &meta).await
    }
);

application_command!(
    approve,
    "/applications/{application_id}/approval",
    Action::RecordCommitteeDecision,
    ApprovalBody,
    "Records the committee's approval; reserves budget and capacity in the same append.",
    |scheme, id, context, meta, body, today| {
        let approval = ApproveApplication {
            application_id: id,
            meeting: body.meeting.into_domain(),
            rate: rate(body.rate_bps, "rate_bps")?,
            exceptional_reason: body.exceptional_reason,
            allocations: body.allocations.into_iter().map(AllocationBody::into_domain).collect(),
            ceiling: body.ceiling_cents.map(|ceiling| cents(ceiling, "ceiling_cents")).transpose()?,
            start: body.start,
            end: body.end,
            conditions: body.conditions,
        };
        decide(&scheme, &approval, today, &context, &meta).await
    }
);

application_command!(
    reject,
    "/applications/{application_id}/rejection",
    Action::RecordCommitteeDecision,
    RejectionBody,
    "Records the committee's rejection with its reasons.",
    |scheme, id, context, meta, body, today| {
        let rejection =
            RejectApplication { application_id: id, meeting: body.meeting.into_domain(), reasons: body.reasons };
        decide(&scheme, &rejection, today, &context, &meta).await
    }
);

application_command!(
    defer,
    "/applications/{application_id}/deferral",
    Action::RecordCommitteeDecision,
    DeferralBody,
    "Defers the application to a later batch.",
    |scheme, id, context, meta, body, today| {
        let deferral = DeferApplication {
            application_id: id,
            meeting: body.meeting.into_domain(),
            reason: body.reason,
            to_batch_id: body.to_batch_id,
        };
        decide(&scheme, &deferral, today, &context, &meta).await
    }
);

application_command!(
    sign_agreement,
    "/applications/{application_id}/agreement",
    Action::SignAgreement,
    AgreementBody,
    "Records the signed funding agreement and its reporting schedule (§21).",
    |scheme, id, context, meta, body, today| {
        let agreement = SignAgreement {
            application_id: id,
            signed_on: body.signed_on,
            reporting_due_dates: body.reporting_due_dates,
        };
        decide(&scheme, &agreement, today, &context, &meta).await
    }
);

application_command!(
    charge_usage,
    "/applications/{application_id}/usage",
    Action::ChargeUsage,
    UsageBody,
    "Charges a month's usage at the rate in force and disburses the subsidy.",
    |scheme, id, context, meta, body, today| {
        let usage = ChargeUsage {
            application_id: id,
            usage_id: body.usage_id,
            // Charged on its own: not a line of an import.
            import_id: None,
            service_type: body.service_type,
            period: body.period,
            units: body.units,
        };
        decide(&scheme, &usage, today, &context, &meta).await
    }
);

application_command!(
    submit_progress_report,
    "/applications/{application_id}/progress-reports",
    Action::SubmitProgressReport,
    ProgressReportBody,
    "Submits the progress report due on a date, with its KPI figures.",
    |scheme, id, context, meta, body, today| {
        let report = SubmitProgressReport {
            application_id: id,
            due: body.due,
            kpis: body.kpis.into_domain(),
            summary: body.summary,
        };
        decide(&scheme, &report, today, &context, &meta).await
    }
);

application_command!(
    complete,
    "/applications/{application_id}/completion",
    Action::CloseProject,
    EmptyBody,
    "Completes the project; the unused commitment is released.",
    |scheme, id, context, meta, _body, today| {
        decide(&scheme, &CloseProject { application_id: id, termination_reason: None }, today, &context, &meta).await
    }
);

application_command!(
    terminate,
    "/applications/{application_id}/termination",
    Action::CloseProject,
    ReasonBody,
    "Terminates the project early; the unused commitment is released.",
    |scheme, id, context, meta, body, today| {
        let termination = CloseProject { application_id: id, termination_reason: Some(body.reason) };
        decide(&scheme, &termination, today, &context, &meta).await
    }
);

/// `POST /api/v1/applications/{application_id}/usage/{usage_id}/reversal`
#[utoipa::path(tag = "applications", params(("application_id" = String, Path), ("usage_id" = String, Path), ("Idempotency-Key" = Option<String>, Header)), request_body = ReasonBody,
    responses((status = 200, body = CommandAccepted), (status = 400, body = ProblemDocument), (status = 401, body = ProblemDocument), (status = 403, body = ProblemDocument), (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument), (status = 413, body = ProblemDocument), (status = 415, body = ProblemDocument), (status = 422, body = ProblemDocument), (status = 503, body = ProblemDocument)))]
#[post("/applications/{application_id}/usage/{usage_id}/reversal")]
pub async fn reverse_usage(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    pool: web::Data<PgPool>,
    scheme: web::Data<Scheme>,
    clock: web::Data<Clock>,
) -> Result<HttpResponse, ApiError> {
    let today = clock.today();
    let (id, usage_id) = path.into_inner();
    command(&request, payload, &pool, Action::ChargeUsage, false, |context, meta, body| async move {
        check_id(&id)?;
        input::usage_id("usage_id", &usage_id)?;
        let body: ReasonBody = parse_body(&body)?;
        let reversal = ReverseDisbursement { application_id: id, usage_id, reason: body.reason };
        decide(&scheme, &reversal, today, &context, &meta).await
    })
    .await
}

/// `POST /api/v1/applications/{application_id}/progress-reports/{due}/review`
#[utoipa::path(tag = "applications", params(("application_id" = String, Path), ("due" = String, Path, example = "2025-10-15"), ("If-Match" = Option<String>, Header), ("Idempotency-Key" = Option<String>, Header)), request_body = ReviewBody,
    responses((status = 200, body = CommandAccepted), (status = 400, body = ProblemDocument), (status = 401, body = ProblemDocument), (status = 403, body = ProblemDocument), (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument), (status = 412, body = ProblemDocument), (status = 413, body = ProblemDocument), (status = 415, body = ProblemDocument), (status = 422, body = ProblemDocument), (status = 503, body = ProblemDocument)))]
#[post("/applications/{application_id}/progress-reports/{due}/review")]
pub async fn review_progress_report(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    pool: web::Data<PgPool>,
    scheme: web::Data<Scheme>,
    clock: web::Data<Clock>,
) -> Result<HttpResponse, ApiError> {
    let today = clock.today();
    let (id, due) = path.into_inner();
    command(&request, payload, &pool, Action::ReviewProgressReport, false, |context, meta, body| async move {
        check_id(&id)?;
        let due: NaiveDate = due.parse().map_err(|_| ApiError::bad_field("due", "a date such as 2025-10-15"))?;
        let body: ReviewBody = parse_body(&body)?;
        let review = ReviewProgressReport { application_id: id, due, accepted: body.accepted, comments: body.comments };
        decide(&scheme, &review, today, &context, &meta).await
    })
    .await
}

pub fn configure(config: &mut utoipa_actix_web::service_config::ServiceConfig) {
    config
        .service(submit)
        .service(application)
        .service(amend)
        .service(withdraw)
        .service(check_eligibility)
        .service(assess)
        .service(approve)
        .service(reject)
        .service(defer)
        .service(sign_agreement)
        .service(charge_usage)
        .service(reverse_usage)
        .service(submit_progress_report)
        .service(review_progress_report)
        .service(complete)
        .service(terminate);
}
