//! Queries staff open every day, answered from the read models: the applications list and a
//! batch's work queues. `after_position` makes a query wait (bounded) until the read model
//! has applied the position a command returned.

use actix_web::{HttpRequest, HttpResponse, get, web};
use aisc_adapters::clock::Clock;
use aisc_domain::event_store::Position;
use aisc_domain::subsidy::values::FinancialYear;
use aisc_projections::applications::{
    self, ApplicationFilter, ApplicationRow, BatchQueue, MonthDisbursement, Sort, UsageLineRow,
};
use aisc_projections::kpi::{self, KpiDashboard};
use aisc_projections::runner::wait_for_position;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::auth::Principal;
use crate::authorization::{Action, require};
use crate::input;
use crate::limits::ExpensiveReads;
use crate::problem::{ApiError, ProblemDocument};
use crate::routes::audit::READ_YOUR_WRITES_WAIT;

pub(crate) async fn reached(pool: &PgPool, after_position: Option<u64>) -> Result<(), ApiError> {
    if let Some(position) = after_position
        && !wait_for_position(pool, applications::NAME, Position(position), READ_YOUR_WRITES_WAIT).await?
    {
        return Err(ApiError::Unavailable);
    }
    Ok(())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// submitted, eligible, ineligible, assessed, deferred, approved, rejected, agreement_signed, completed, terminated, withdrawn
    status: Option<String>,
    /// local_institution, rnd_centre, government_department, ai_startup, strategic_enterprise
    category: Option<String>,
    batch_id: Option<String>,
    /// Submitted within this financial year, e.g. 2025-26.
    financial_year: Option<String>,
    /// Free text in the project title or the applicant's name (at most 200 characters).
    q: Option<String>,
    /// submitted_on (default), project_title, organisation, status
    sort: Option<String>,
    /// asc (default) or desc
    order: Option<String>,
    #[serde(default)]
    offset: u32,
    /// 1 to 500 (default 50)
    limit: Option<u32>,
    /// Answer once the read model has applied this position (read-your-writes).
    after_position: Option<u64>,
}

/// A page of the applications list. The rows are the read model's own type (it describes
/// itself under the projections' `openapi` feature), so the document follows its columns.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApplicationsPage {
    /// The page's applications, in the order asked.
    pub items: Vec<ApplicationRow>,
    /// Applications matching the filters, on every page.
    pub total: i64,
    /// Rows skipped before this page.
    pub offset: u32,
    /// The page size asked (1 to 500).
    pub limit: u32,
}

/// `GET /api/v1/applications`: the applications list, filtered, sorted and paged.
#[utoipa::path(tag = "applications", params(ListParams),
    responses((status = 200, description = "A page of applications", body = ApplicationsPage), (status = 400, body = ProblemDocument), (status = 401, body = ProblemDocument), (status = 403, body = ProblemDocument), (status = 503, body = ProblemDocument)))]
#[get("/applications")]
pub async fn list_applications(
    request: HttpRequest,
    principal: Principal,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, ApiError> {
    require(&principal, Action::ReadScheme)?;
    let params: ListParams = crate::routes::query(&request)?;
    if let Some(status) = &params.status {
        input::code("status", status)?;
    }
    if let Some(category) = &params.category {
        input::code("category", category)?;
    }
    if let Some(batch_id) = &params.batch_id {
        input::batch_id("batch_id", batch_id)?;
    }
    if let Some(text) = &params.q {
        input::search("q", text)?;
    }
    let limit = params.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_field("limit", format!("must be between 1 and 500, not {limit}")));
    }
    let sort = match params.sort.as_deref() {
        None | Some("submitted_on") => Sort::SubmittedOn,
        Some("project_title") => Sort::ProjectTitle,
        Some("organisation") => Sort::Organisation,
        Some("status") => Sort::Status,
        Some(other) => {
            return Err(ApiError::bad_field(
                "sort",
                format!("{other:?} is not submitted_on, project_title, organisation or status"),
            ));
        }
    };
    let descending = match params.order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => return Err(ApiError::bad_field("order", format!("{other:?} is not asc or desc"))),
    };
    let submitted_between = match params.financial_year.as_deref() {
        None => None,
        Some(text) => {
            let year =
                FinancialYear::parse(text).map_err(|error| ApiError::bad_field("financial_year", error.to_string()))?;
            Some((year.first_day(), year.last_day()))
        }
    };
    reached(&pool, params.after_position).await?;
    let filter = ApplicationFilter {
        status: params.status,
        category: params.category,
        batch_id: params.batch_id,
        submitted_between,
        text: params.q.filter(|text| !text.trim().is_empty()),
        sort,
        descending,
        offset: params.offset,
        limit,
    };
    let (items, total) = applications::list(&pool, &filter).await?;
    Ok(HttpResponse::Ok().json(ApplicationsPage { items, total, offset: filter.offset, limit }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct QueueParams {
    /// Answer once the read model has applied this position (read-your-writes).
    pub(crate) after_position: Option<u64>,
}

/// `GET /api/v1/batches/{batch_id}/queue`: counts per stage and the work queues of a batch.
#[utoipa::path(tag = "batches", params(("batch_id" = String, Path), QueueParams),
    responses((status = 200, description = "Counts per stage; queues awaiting eligibility, awaiting assessment, ready for committee, decided; overdue", body = BatchQueue), (status = 400, body = ProblemDocument), (status = 401, body = ProblemDocument), (status = 403, body = ProblemDocument), (status = 404, body = ProblemDocument), (status = 503, body = ProblemDocument)))]
#[get("/batches/{batch_id}/queue")]
pub async fn batch_queue(
    request: HttpRequest,
    path: web::Path<String>,
    principal: Principal,
    pool: web::Data<PgPool>,
    clock: web::Data<Clock>,
) -> Result<HttpResponse, ApiError> {
    require(&principal, Action::ReadScheme)?;
    let batch_id = path.into_inner();
    input::batch_id("batch_id", &batch_id)?;
    let params: QueueParams = crate::routes::query(&request)?;
    reached(&pool, params.after_position).await?;
    let queue = applications::batch_queue(&pool, &batch_id, clock.today())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no batch {batch_id}")))?;
    Ok(HttpResponse::Ok().json(queue))
}

/// Totals of usage charges, reversed ones excluded.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UsageTotals {
    /// Units used.
    pub units: i64,
    /// Gross amount in HK cents.
    pub gross_cents: i64,
    /// Subsidy in HK cents.
    pub subsidy_cents: i64,
}

/// A page of an application's usage charges.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApplicationUsage {
    pub application_id: String,
    /// The page's charges, reversed ones included, by month then usage id.
    pub lines: Vec<UsageLineRow>,
    /// Every charge of the application, reversed ones included.
    pub total_lines: i64,
    pub offset: u32,
    pub limit: u32,
    /// Every line not reversed, summed (not only the page's).
    pub totals: UsageTotals,
}

/// A funding year's disbursements.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct YearDisbursements {
    /// The financial year, e.g. `2025-26`.
    pub year: String,
    /// Per usage month and service, by month then service.
    pub months: Vec<MonthDisbursement>,
    /// The months summed, reversed charges excluded.
    pub totals: UsageTotals,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct UsagePageParams {
    /// Lines skipped, in order (0 by default).
    #[serde(default)]
    offset: u32,
    /// 1 to 500 (default 100)
    limit: Option<u32>,
    /// Answer once the read model has applied this position (read-your-writes).
    after_position: Option<u64>,
}

/// `GET /api/v1/applications/{application_id}/usage`: the application's usage charges a page
/// at a time, by month then usage id, with their units, rate, gross amount and subsidy and
/// whether each was reversed; the totals count every line. The application's own view shows
/// a summary per month instead (an application may charge thousands of lines).
#[utoipa::path(tag = "applications", params(("application_id" = String, Path), UsagePageParams),
    responses((status = 200, description = "A page of the application's usage charges, and the totals of all of them (reversed lines excluded)", body = ApplicationUsage), (status = 400, body = ProblemDocument), (status = 401, body = ProblemDocument), (status = 403, body = ProblemDocument), (status = 404, body = ProblemDocument), (status = 503, body = ProblemDocument)))]
#[get("/applications/{application_id}/usage")]
pub async fn application_usage(
    request: HttpRequest,
    path: web::Path<String>,
    principal: Principal,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, ApiError> {
    require(&principal, Action::ReadScheme)?;
    let application_id = path.into_inner();
    input::application_id("application_id", &application_id)?;
    let params: UsagePageParams = crate::routes::query(&request)?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_field("limit", format!("must be between 1 and 500, not {limit}")));
    }
    reached(&pool, params.after_position).await?;
    if !applications::exists(&pool, &application_id).await? {
        return Err(ApiError::NotFound(format!("no application {application_id}")));
    }
    let page = applications::usage_page(&pool, &application_id, params.offset, limit).await?;
    let totals = UsageTotals { units: page.units, gross_cents: page.gross_cents, subsidy_cents: page.subsidy_cents };
    Ok(HttpResponse::Ok().json(ApplicationUsage {
        application_id,
        lines: page.lines,
        total_lines: page.total_lines,
        offset: params.offset,
        limit,
        totals,
    }))
}

/// `GET /api/v1/funding-years/{year}/disbursements`: the year's disbursement figures per usage
/// month and service: lines, units, gross amount and subsidy (reversals shown apart).
#[utoipa::path(tag = "funding", params(("year" = String, Path, example = "2025-26"), QueueParams),
    responses((status = 200, description = "The year's disbursements per usage month and service, and their totals", body = YearDisbursements), (status = 400, body = ProblemDocument), (status = 401, body = ProblemDocument), (status = 403, body = ProblemDocument), (status = 503, body = ProblemDocument)))]
#[get("/funding-years/{year}/disbursements")]
pub async fn year_disbursements(
    request: HttpRequest,
    path: web::Path<String>,
    principal: Principal,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, ApiError> {
    require(&principal, Action::ReadScheme)?;
    let year =
        FinancialYear::parse(&path.into_inner()).map_err(|error| ApiError::bad_field("year", error.to_string()))?;
    let params: QueueParams = crate::routes::query(&request)?;
    reached(&pool, params.after_position).await?;
    let months = applications::disbursements(&pool, &year.to_string()).await?;
    let totals = UsageTotals {
        units: months.iter().map(|month| month.units).sum(),
        gross_cents: months.iter().map(|month| month.gross_cents).sum(),
        subsidy_cents: months.iter().map(|month| month.subsidy_cents).sum(),
    };
    Ok(HttpResponse::Ok().json(YearDisbursements { year: year.to_string(), months, totals }))
}

pub fn configure(config: &mut utoipa_actix_web::service_config::ServiceConfig) {
    config
        .service(list_applications)
        .service(batch_queue)
        .service(kpis)
        .service(application_usage)
        .service(year_disbursements);
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct KpiParams {
    /// A financial year such as 2025-26; the whole scheme when omitted.
    year: Option<String>,
    /// Answer once the KPI read model has applied this position (read-your-writes).
    after_position: Option<u64>,
    /// A position of $all, or an RFC 3339 time: the dashboard as the log stood then (the log's
    /// clock), read from the totals' history.
    as_of: Option<String>,
    /// A date (YYYY-MM-DD): the dashboard of the facts in force on it (the scheme's clock) —
    /// the figures "as at 31 March" — read from the totals' dated parts; with `as_of`, as the
    /// log then knew them.
    #[param(value_type = Option<String>)]
    effective_on: Option<chrono::NaiveDate>,
}

/// `GET /api/v1/kpis?year=`: the KPI dashboard for a funding year or the whole scheme, as it
/// stands or as it stood. A dashboard in the past counts against its role's share of expensive
/// reads (429 with Retry-After beyond it).
#[utoipa::path(tag = "reports", params(KpiParams),
    responses((status = 200, description = "Applications, approval rate, days to decision, cash flow per budget line, capacity and the 90 % cap, utilisation, and the §18 indicators", body = KpiDashboard), (status = 400, body = ProblemDocument), (status = 401, body = ProblemDocument), (status = 403, body = ProblemDocument), (status = 429, description = "The role already runs its share of expensive reads; see Retry-After", body = ProblemDocument), (status = 503, body = ProblemDocument)))]
#[get("/kpis")]
pub async fn kpis(
    request: HttpRequest,
    principal: Principal,
    pool: web::Data<PgPool>,
    clock: web::Data<Clock>,
    store: web::Data<aisc_adapters::PostgresEventStore>,
    expensive_reads: web::Data<ExpensiveReads>,
) -> Result<HttpResponse, ApiError> {
    require(&principal, Action::ReadScheme)?;
    let params: KpiParams = crate::routes::query(&request)?;
    let year = match params.year.as_deref() {
        None => None,
        Some(text) => {
            let year = FinancialYear::parse(text).map_err(|error| ApiError::bad_field("year", error.to_string()))?;
            Some(kpi::year_scope(year))
        }
    };
    let as_of = match params.as_of.as_deref() {
        None => None,
        Some(text) => Some(match text.parse::<u64>() {
            Ok(position) => Position(position),
            Err(_) => {
                let moment = chrono::DateTime::parse_from_rfc3339(text).map_err(|_| {
                    ApiError::bad_field("as_of", "a position, or an RFC 3339 time such as 2025-07-01T00:00:00+08:00")
                })?;
                // The last event recorded at or before that moment.
                store.last_position_at(moment.with_timezone(&chrono::Utc)).await?
            }
        }),
    };
    let past = kpi::PastView { as_of, effective_on: params.effective_on };
    // Held until the answer is written (or the request is dropped at its deadline).
    let _permit = if past == kpi::PastView::default() { None } else { Some(expensive_reads.try_start(&principal)?) };
    // A past dashboard is the log's, not whatever the read model had reached: it waits until
    // the read model has applied the position asked (or the log's head, when it is later).
    let past_reached = if past == kpi::PastView::default() {
        None
    } else {
        let head = store.head_position().await?;
        Some(as_of.map_or(head, |position| position.min(head)).0)
    };
    let wait_for = params.after_position.max(past_reached);
    if let Some(position) = wait_for
        && !wait_for_position(&pool, kpi::NAME, Position(position), READ_YOUR_WRITES_WAIT).await?
    {
        return Err(ApiError::Unavailable);
    }
    let mut connection = pool.acquire().await?;
    let dashboard = kpi::dashboard_at(&mut connection, past, year, clock.today()).await?;
    Ok(HttpResponse::Ok().json(dashboard))
}
