//! The scheme's set-up: batches, funding years, the price schedule and AISC capacity.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use aisc_adapters::clock::Clock;
use aisc_domain::command_service::CommandError;
use aisc_domain::subsidy::batches::{BatchCalendar, BatchCalendarState, CloseBatch, OpenBatch};
use aisc_domain::subsidy::capacity::{Capacity, DeclareCapacity, RedeployCapacity};
use aisc_domain::subsidy::funding::{BudgetLine, RecordFundingReceived, RedirectUnusedSubsidy};
use aisc_domain::subsidy::prices::{PriceSchedule, SetServiceRate};
use aisc_domain::subsidy::streams;
use aisc_domain::subsidy::values::{FinancialYear, Money, Period, ServiceType};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use super::bodies::{Bounded, cents, parse_body};
use super::{CommandAccepted, Scheme, Versioned, command, command_failure, decide, domain_refusal, view};
use crate::auth::Principal;
use crate::authorization::{Action, require};
use crate::input;
use crate::problem::{ApiError, ProblemDocument};

fn year_of(text: &str) -> Result<FinancialYear, ApiError> {
    FinancialYear::parse(text).map_err(|error| ApiError::bad_field("year", error.to_string()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenBatchBody {
    /// Letters, digits, - and _, at most 40.
    pub batch_id: String,
    pub deadline: NaiveDate,
    pub committee_date: NaiveDate,
}

impl Bounded for OpenBatchBody {
    fn check(&self) -> Result<(), ApiError> {
        input::batch_id("batch_id", &self.batch_id)
    }
}

/// `POST /api/v1/batches`: opens a batch with its deadline and committee meeting date.
#[utoipa::path(tag = "batches", request_body = OpenBatchBody, params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe")),
    responses((status = 201, body = CommandAccepted), (status = 400, body = ProblemDocument), (status = 401, body = ProblemDocument), (status = 403, body = ProblemDocument), (status = 409, body = ProblemDocument), (status = 413, body = ProblemDocument), (status = 415, body = ProblemDocument), (status = 422, body = ProblemDocument), (status = 503, body = ProblemDocument)))]
#[post("/batches")]
pub async fn open_batch(
    request: HttpRequest,
    payload: web::Payload,
    pool: web::Data<PgPool>,
    scheme: web::Data<Scheme>,
    clock: web::Data<Clock>,
) -> Result<HttpResponse, ApiError> {
    let today = clock.today();
    command(&request, payload, &pool, Action::OpenOrCloseBatch, true, |context, meta, body| async move {
        let body: OpenBatchBody = parse_body(&body)?;
        let open = OpenBatch { batch_id: body.batch_id, deadline: body.deadline, committee_date: body.committee_date };
        decide(&scheme, &open, today, &context, &meta).await
    })
    .await
}

/// `POST /api/v1/batches/{batch_id}/closure`: closes the batch after its deadline.
#[utoipa::path(tag = "batches", params(("batch_id" = String, Path), ("Idempotency-Key" = Option<String>, Header)), request_body(content = Option<super::bodies::EmptyBody>, description = "No fields"),
    responses((status = 200, body = CommandAccepted), (status = 400, body = ProblemDocument), (status = 401, body = ProblemDocument), (status = 403, body = ProblemDocument), (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument), (status = 413, body = ProblemDocument), (status = 415, body = ProblemDocument), (status = 422, body = ProblemDocument), (status = 503, body = ProblemDocument)))]
#[post("/batches/{batch_id}/closure")]
pub async fn close_batch(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    pool: web::Data<PgPool>,
    scheme: web::Data<Scheme>,
    clock: web::Data<Clock>,
) -> Result<HttpResponse, ApiError> {
    let today = clock.today();
    let batch_id = path.into_inner();
    command(&request, payload, &pool, Action::OpenOrCloseBatch, false, |context, meta, body| async move {
        input::batch_id("batch_id", &batch_id)?;
        let _: super::bodies::EmptyBody = parse_body(&body)?;
        decide(&scheme, &CloseBatch { batch_id }, today, &context, &meta).await
    })
    .await
}

/// A batch of the calendar.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchView {
    /// The last day to submit into the batch (YYYY-MM-DD).
    pub deadline: NaiveDate,
    /// The day the committee meets on the batch (YYYY-MM-DD).
    pub committee_date: NaiveDate,
    /// Closed to submissions.
    pub closed: bool,
}

/// The batch calendar: the domain's state, described here so the domain stays free of the API.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchCalendarView {
    /// Every batch by its id (e.g. `2025-q3`).
    pub batches: BTreeMap<String, BatchView>,
}

impl From<&BatchCalendarState> for BatchCalendarView {
    fn from(state: &BatchCalendarState) -> Self {
        let batches = state
            .batches
            .iter()
            .map(|(id, batch)| {
                let view =
                    BatchView { deadline: batch.deadline, committee_date: batch.committee_date, closed: batch.closed };
                (id.clone(), view)
            })
            .collect();
        Self { batches }
    }
}

/// `GET /api/v1/batches`: the batch calendar.
#[utoipa::path(tag = "batches", responses((status = 200, description = "The batches with deadlines, committee dates and whether closed", body = Versioned<BatchCalendarView>), (status = 401, body = ProblemDocument), (status = 403, body = ProblemDocument), (status = 503, body = ProblemDocument)))]
#[get("/batches")]
pub async fn batch_calendar(principal: Principal, scheme: web::Data<Scheme>) -> Result<HttpResponse, ApiError> {
    require(&principal, Action::ReadScheme)?;
    let stream = streams::batches().map_err(domain_refusal)?;
    let (state, version) = scheme.commands().state::<BatchCalendar>(&stream).await.map_err(read_failure)?;
    Ok(view(BatchCalendarView::from(&state), version))
}

fn read_failure(error: CommandError<()>) -> ApiError {
    match error {
        CommandError::Store(store) => store.into(),
        CommandError::Codec(codec) => ApiError::internal(codec),
        CommandError::Rejected(()) | CommandError::Conflict { .. } | CommandError::PersonalData(_) => {
            ApiError::internal("unexpected outcome of a read")
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiptBody {
    #[schema(value_type = String, example = "computing_power_subsidy")]
    pub line: BudgetLine,
    pub amount_cents: u64,
    pub received_on: NaiveDate,
}

impl Bounded for ReceiptBody {
    fn check(&self) -> Result<(), ApiError> {
        Ok(())
    }
}

/// `POST /api/v1/funding-years/{year}/receipts`: funding received from the Government.
#[utoipa::path(tag = "funding", params(("year" = String, Path, example = "2025-26"), ("If-Match" = Option<String>, Header), ("Idempotency-Key" = Option<String>, Header)), request_body = ReceiptBody,
    responses((status = 200, body = CommandAccepted), (status = 400, body = ProblemDocument), (status = 401, body = ProblemDocument), (status = 403, body = ProblemDocument), (status = 409, body = ProblemDocument), (status = 412, body = ProblemDocument), (status = 413, body = ProblemDocument), (status = 415, body = ProblemDocument), (status = 422, body = ProblemDocument), (status = 503, body = ProblemDocument)))]
#[post("/funding-years/{year}/receipts")]
pub async fn record_receipt(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    pool: web::Data<PgPool>,
    scheme: web::Data<Scheme>,
    clock: web::Data<Clock>,
) -> Result<HttpResponse, ApiError> {
    let today = clock.today();
    let year = path.into_inner();
    command(&request, payload, &pool, Action::RecordFunding, false, |context, meta, body| async move {
        let year = year_of(&year)?;
        let body: ReceiptBody = parse_body(&body)?;
        let amount = cents(body.amount_cents, "amount_cents")?;
        let receipt = RecordFundingReceived { year, line: body.line, amount, received_on: body.received_on };
        decide(&scheme, &receipt, today, &context, &meta).await
    })
    .await
}

/// `POST /api/v1/funding-years/{year}/redirection`: after the year ends, its unused subsidy
/// goes to publicity and talent (§17).
#[utoipa::path(tag = "funding", params(("year" = String, Path), ("If-Match" = Option<String>, Header), ("Idempotency-Key" = Option<String>, Header)), request_body(content = Option<super::bodies::EmptyBody>, description = "No fields"),
    responses((status = 200, body = CommandAccepted), (status = 400, body = ProblemDocument), (status = 401, body = ProblemDocument), (status = 403, body = ProblemDocument), (status = 409, body = ProblemDocument), (status = 412, body = ProblemDocument), (status = 413, body = ProblemDocument), (status = 415, body = ProblemDocument), (status = 422, body = ProblemDocument), (status = 503, body = ProblemDocument)))]
#[post("/funding-years/{year}/redirection")]
pub async fn redirect_unused(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    pool: web::Data<PgPool>,
    scheme: web::Data<Scheme>,
    clock: web::Data<Clock>,
) -> Result<HttpResponse, ApiError> {
    let today = clock.today();
    let year = path.into_inner();
    command(&request, payload, &pool, Action::RecordFunding, false, |context, meta, body| async move {
        let year = year_of(&year)?;
        let _: super::bodies::EmptyBody = parse_body(&body)?;
        decide(&scheme, &RedirectUnusedSubsidy { year }, today, &context, &meta).await
    })
    .await
}

/// A funding year's computing power subsidy and its other budget lines. Amounts are HK cents.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FundingYearView {
    /// The financial year, e.g. `2025-26`.
    #[schema(value_type = String, example = "2025-26")]
    pub year: FinancialYear,
    /// Funding received from the Government per budget line (`computing_power_subsidy`, …),
    /// in HK cents.
    #[schema(value_type = BTreeMap<String, i64>)]
    pub received: BTreeMap<BudgetLine, Money>,
    /// Computing power subsidy committed by approvals and not released, in HK cents.
    #[schema(value_type = i64)]
    pub committed: Money,
    /// Computing power subsidy paid out (usage charges less reversals), in HK cents.
    pub disbursed: i64,
    /// Unused subsidy redirected after the year (§17), in HK cents.
    #[schema(value_type = i64)]
    pub redirected: Money,
    /// The year's subsidy was redirected: nothing more is committed from it.
    pub closed: bool,
    /// Computing power subsidy neither committed nor redirected, in HK cents.
    #[schema(value_type = i64)]
    pub subsidy_left: Money,
}

/// `GET /api/v1/funding-years/{year}`: received, committed, left (the year's own stream) and
/// disbursed (the read model's total of the year's usage charges, less reversals).
#[utoipa::path(tag = "funding", params(("year" = String, Path), super::queries::QueueParams), responses((status = 200, description = "The funding year; ETag is its version", body = Versioned<FundingYearView>), (status = 400, body = ProblemDocument), (status = 401, body = ProblemDocument), (status = 403, body = ProblemDocument), (status = 404, body = ProblemDocument), (status = 503, body = ProblemDocument)))]
#[get("/funding-years/{year}")]
pub async fn funding_year(
    request: HttpRequest,
    path: web::Path<String>,
    principal: Principal,
    scheme: web::Data<Scheme>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, ApiError> {
    require(&principal, Action::ReadScheme)?;
    let year = year_of(&path.into_inner())?;
    let params: super::queries::QueueParams = crate::routes::query(&request)?;
    let (state, version) = scheme.funding_state(year).await.map_err(|error| command_failure(error, false))?;
    if version.is_none() {
        return Err(ApiError::NotFound(format!("no funding is recorded for {year}")));
    }
    super::queries::reached(&pool, params.after_position).await?;
    let disbursed = aisc_projections::applications::disbursed_in_year(&pool, &year.to_string()).await?;
    let subsidy_left = state.subsidy_left();
    let funding = FundingYearView {
        // The path's year when the state has none (it has one once funding is recorded).
        year: state.year.unwrap_or(year),
        received: state.received,
        committed: state.committed,
        disbursed,
        redirected: state.redirected,
        closed: state.closed,
        subsidy_left,
    };
    Ok(view(funding, version))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateBody {
    #[schema(value_type = String, example = "gpu_node_hour_h800")]
    pub service_type: ServiceType,
    pub rate_per_unit_cents: u64,
    pub unit: String,
    pub effective_from: NaiveDate,
}

impl Bounded for RateBody {
    fn check(&self) -> Result<(), ApiError> {
        input::name("unit", &self.unit)
    }
}

/// `POST /api/v1/price-schedule/rates`: Cyberport's rate for a service from a date (§14).
#[utoipa::path(tag = "prices", params(("Idempotency-Key" = Option<String>, Header)), request_body = RateBody,
    responses((status = 200, body = CommandAccepted), (status = 400, body = ProblemDocument), (status = 401, body = ProblemDocument), (status = 403, body = ProblemDocument), (status = 409, body = ProblemDocument), (status = 413, body = ProblemDocument), (status = 415, body = ProblemDocument), (status = 422, body = ProblemDocument), (status = 503, body = ProblemDocument)))]
#[post("/price-schedule/rates")]
pub async fn set_rate(
    request: HttpRequest,
    payload: web::Payload,
    pool: web::Data<PgPool>,
    scheme: web::Data<Scheme>,
    clock: web::Data<Clock>,
) -> Result<HttpResponse, ApiError> {
    let today = clock.today();
    command(&request, payload, &pool, Action::SetPrices, false, |context, meta, body| async move {
        let body: RateBody = parse_body(&body)?;
        let rate_per_unit = cents(body.rate_per_unit_cents, "rate_per_unit_cents")?;
        let rate = SetServiceRate {
            service_type: body.service_type,
            rate_per_unit,
            unit: body.unit,
            effective_from: body.effective_from,
        };
        decide(&scheme, &rate, today, &context, &meta).await
    })
    .await
}

/// A rate of the price schedule.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RateView {
    /// The AISC service, e.g. `gpu_node_hour_h800`.
    #[schema(value_type = String, example = "gpu_node_hour_h800")]
    pub service_type: ServiceType,
    /// The first day the rate is in force (YYYY-MM-DD).
    pub effective_from: NaiveDate,
    /// Cyberport's rate in HK cents per unit.
    #[schema(value_type = i64)]
    pub rate_per_unit_cents: Money,
}

/// `GET /api/v1/price-schedule`
#[utoipa::path(tag = "prices", responses((status = 200, description = "Rates per service type by effective date", body = Versioned<Vec<RateView>>), (status = 401, body = ProblemDocument), (status = 403, body = ProblemDocument), (status = 503, body = ProblemDocument)))]
#[get("/price-schedule")]
pub async fn price_schedule(principal: Principal, scheme: web::Data<Scheme>) -> Result<HttpResponse, ApiError> {
    require(&principal, Action::ReadScheme)?;
    let stream = streams::prices().map_err(domain_refusal)?;
    let (state, version) = scheme.commands().state::<PriceSchedule>(&stream).await.map_err(read_failure)?;
    let rates: Vec<RateView> = state
        .rates
        .iter()
        .flat_map(|(service, rates)| {
            rates.iter().map(move |(from, rate)| RateView {
                service_type: service.clone(),
                effective_from: *from,
                rate_per_unit_cents: *rate,
            })
        })
        .collect();
    Ok(view(rates, version))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CapacityBody {
    #[schema(value_type = String)]
    pub service_type: ServiceType,
    #[schema(value_type = String, example = "2025-07")]
    pub period: Period,
    /// At most 1,000,000,000.
    pub units: u64,
}

impl Bounded for CapacityBody {
    fn check(&self) -> Result<(), ApiError> {
        input::units("units", self.units)
    }
}

/// `POST /api/v1/capacity`: AISC capacity of a service in a month.
#[utoipa::path(tag = "capacity", params(("Idempotency-Key" = Option<String>, Header)), request_body = CapacityBody,
    responses((status = 200, body = CommandAccepted), (status = 400, body = ProblemDocument), (status = 401, body = ProblemDocument), (status = 403, body = ProblemDocument), (status = 409, body = ProblemDocument), (status = 413, body = ProblemDocument), (status = 415, body = ProblemDocument), (status = 422, body = ProblemDocument), (status = 503, body = ProblemDocument)))]
#[post("/capacity")]
pub async fn declare_capacity(
    request: HttpRequest,
    payload: web::Payload,
    pool: web::Data<PgPool>,
    scheme: web::Data<Scheme>,
    clock: web::Data<Clock>,
) -> Result<HttpResponse, ApiError> {
    let today = clock.today();
    command(&request, payload, &pool, Action::DeclareCapacity, false, |context, meta, body| async move {
        let body: CapacityBody = parse_body(&body)?;
        let declared = DeclareCapacity { service_type: body.service_type, period: body.period, units: body.units };
        decide(&scheme, &declared, today, &context, &meta).await
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeploymentBody {
    #[schema(value_type = String)]
    pub service_type: ServiceType,
    #[schema(value_type = String, example = "2025-07")]
    pub period: Period,
    /// At most 1,000,000,000.
    pub units: u64,
    /// The committee decision: 1 to 100 characters.
    pub decision_reference: String,
}

impl Bounded for RedeploymentBody {
    fn check(&self) -> Result<(), ApiError> {
        input::units("units", self.units)?;
        input::name("decision_reference", &self.decision_reference)
    }
}

/// `POST /api/v1/capacity/redeployments`: capacity not taken up, at market rates (§17).
#[utoipa::path(tag = "capacity", params(("Idempotency-Key" = Option<String>, Header)), request_body = RedeploymentBody,
    responses((status = 200, body = CommandAccepted), (status = 400, body = ProblemDocument), (status = 401, body = ProblemDocument), (status = 403, body = ProblemDocument), (status = 409, body = ProblemDocument), (status = 413, body = ProblemDocument), (status = 415, body = ProblemDocument), (status = 422, body = ProblemDocument), (status = 503, body = ProblemDocument)))]
#[post("/capacity/redeployments")]
pub async fn redeploy_capacity(
    request: HttpRequest,
    payload: web::Payload,
    pool: web::Data<PgPool>,
    scheme: web::Data<Scheme>,
    clock: web::Data<Clock>,
) -> Result<HttpResponse, ApiError> {
    let today = clock.today();
    command(&request, payload, &pool, Action::RedeployCapacity, false, |context, meta, body| async move {
        let body: RedeploymentBody = parse_body(&body)?;
        let redeployment = RedeployCapacity {
            service_type: body.service_type,
            period: body.period,
            units: body.units,
            decision_reference: body.decision_reference,
        };
        decide(&scheme, &redeployment, today, &context, &meta).await
    })
    .await
}

/// AISC capacity of a service in a month and what is taken of it. Quantities are units of
/// the service.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CapacitySlotView {
    /// The AISC service, e.g. `gpu_node_hour_h800`.
    #[schema(value_type = String, example = "gpu_node_hour_h800")]
    pub service_type: ServiceType,
    /// The month (YYYY-MM).
    #[schema(value_type = String, example = "2025-07")]
    pub period: Period,
    /// Units Cyberport declared for the scheme.
    pub capacity: u64,
    /// 90 % of capacity, rounded down: the most subsidised allocations may take (§10).
    pub subsidised_cap: u64,
    /// Units allocated to approved projects.
    pub allocated: u64,
    /// Units not taken up and redeployed at market rates (§17).
    pub redeployed: u64,
}

/// `GET /api/v1/capacity`
#[utoipa::path(tag = "capacity", responses((status = 200, description = "Capacity, allocations and redeployments per service and month", body = Versioned<Vec<CapacitySlotView>>), (status = 401, body = ProblemDocument), (status = 403, body = ProblemDocument), (status = 503, body = ProblemDocument)))]
#[get("/capacity")]
pub async fn capacity_view(principal: Principal, scheme: web::Data<Scheme>) -> Result<HttpResponse, ApiError> {
    require(&principal, Action::ReadScheme)?;
    let stream = streams::capacity().map_err(domain_refusal)?;
    let (state, version) = scheme.commands().state::<Capacity>(&stream).await.map_err(read_failure)?;
    let slots: Vec<CapacitySlotView> = state
        .slots
        .iter()
        .map(|((service, period), slot)| CapacitySlotView {
            service_type: service.clone(),
            period: *period,
            capacity: slot.capacity,
            subsidised_cap: slot.cap(),
            allocated: slot.allocated,
            redeployed: slot.redeployed,
        })
        .collect();
    Ok(view(slots, version))
}

pub fn configure(config: &mut utoipa_actix_web::service_config::ServiceConfig) {
    config
        .service(open_batch)
        .service(close_batch)
        .service(batch_calendar)
        .service(record_receipt)
        .service(redirect_unused)
        .service(funding_year)
        .service(set_rate)
        .service(price_schedule)
        .service(declare_capacity)
        .service(redeploy_capacity)
        .service(capacity_view);
}
