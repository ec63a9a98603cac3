//! `/api/v1/webhooks`: administrators register the destinations of notifications, list them,
//! deactivate them, and follow each one's deliveries. Secrets are taken, never answered.

use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row};

use crate::auth::Principal;
use crate::authorization::{Action, require};
use crate::problem::{ApiError, ProblemDocument};
use crate::webhooks::{Destination, NotificationKind, WebhookSettings};

/// Shortest secret: 16 characters (a guessable key would let anyone sign a notification).
const MIN_SECRET_CHARS: usize = 16;
const MAX_SECRET_CHARS: usize = 256;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterWebhookBody {
    /// `http://` or `https://`, on a host of the allow-list (`AISC_WEBHOOK_ALLOWED_HOSTS`).
    pub url: String,
    /// The key of the `X-AISC-Signature` HMAC: 16 to 256 characters, printable.
    pub secret: String,
    /// Any of `decision.recorded`, `agreement.signed`, `report.due_in_7_days`,
    /// `report.overdue`, `batch.deadline_in_3_days`; each once.
    pub event_kinds: Vec<String>,
}

/// A registered webhook (without its secret).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookView {
    pub webhook_id: uuid::Uuid,
    pub url: String,
    pub event_kinds: Vec<String>,
    /// False once deactivated: nothing more is recorded or delivered for it.
    pub active: bool,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub deactivated_at: Option<DateTime<Utc>>,
}

/// One notification's delivery to a webhook.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    /// Also the body's `delivery_id` and the `X-AISC-Delivery` header: the same on every retry.
    pub delivery_id: uuid::Uuid,
    pub kind: String,
    /// `application:<id>` or `batch:<id>`.
    pub subject: String,
    /// The date the event occurred on, or the date that is due (YYYY-MM-DD).
    pub occurred_on: chrono::NaiveDate,
    pub attempts: i32,
    /// `pending`, `delivered` or `failed` (given up).
    pub status: String,
    pub last_response_status: Option<i32>,
    pub last_error: Option<String>,
    /// When it is tried next (pending only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookList {
    pub items: Vec<WebhookView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryPage {
    pub items: Vec<DeliveryView>,
    pub total: i64,
    pub offset: u32,
    pub limit: u32,
}

impl RegisterWebhookBody {
    /// 400 for a malformed field; the allow-list is checked after (422).
    fn check(&self) -> Result<(Destination, Vec<String>), ApiError> {
        let destination = Destination::parse(&self.url).map_err(|reason| ApiError::bad_field("url", reason))?;
        let secret_chars = self.secret.chars().count();
        if !(MIN_SECRET_CHARS..=MAX_SECRET_CHARS).contains(&secret_chars) || self.secret.chars().any(char::is_control) {
            return Err(ApiError::bad_field(
                "secret",
                format!("{MIN_SECRET_CHARS} to {MAX_SECRET_CHARS} characters, no control characters"),
            ));
        }
        if self.event_kinds.is_empty() {
            return Err(ApiError::bad_field("event_kinds", "name at least one kind"));
        }
        let mut kinds = Vec::with_capacity(self.event_kinds.len());
        for (index, text) in self.event_kinds.iter().enumerate() {
            let field = format!("event_kinds[{index}]");
            let Some(kind) = NotificationKind::parse(text) else {
                let known: Vec<&str> = NotificationKind::ALL.iter().map(|kind| kind.as_str()).collect();
                return Err(ApiError::bad_field(field, format!("{text:?} is not one of {}", known.join(", "))));
            };
            if kinds.contains(&kind.as_str().to_string()) {
                return Err(ApiError::bad_field(field, format!("{text:?} is named twice")));
            }
            kinds.push(kind.as_str().to_string());
        }
        Ok((destination, kinds))
    }
}

fn webhook_id(text: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(text).map_err(|_| ApiError::bad_field("webhook_id", "not a UUID"))
}

const WEBHOOK_COLUMNS: &str = "webhook_id, url, event_kinds, active, created_by, created_at, deactivated_at";

fn webhook_view(row: &sqlx::postgres::PgRow) -> Result<WebhookView, sqlx::Error> {
    Ok(WebhookView {
        webhook_id: row.try_get("webhook_id")?,
        url: row.try_get("url")?,
        event_kinds: row.try_get("event_kinds")?,
        active: row.try_get("active")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        deactivated_at: row.try_get("deactivated_at")?,
    })
}

async fn find(pool: &PgPool, id: uuid::Uuid) -> Result<WebhookView, ApiError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {WEBHOOK_COLUMNS} FROM public.webhooks WHERE webhook_id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("no webhook {id}")))?;
    Ok(webhook_view(&row)?)
}

/// `POST /api/v1/webhooks`: registers a webhook; it is told of what happens from now on.
#[utoipa::path(tag = "webhooks", request_body = RegisterWebhookBody,
    responses((status = 201, body = WebhookView, headers(("Location" = String, description = "The webhook"))), (status = 400, body = ProblemDocument), (status = 401, body = ProblemDocument), (status = 403, body = ProblemDocument), (status = 413, body = ProblemDocument), (status = 415, body = ProblemDocument), (status = 422, description = "`webhook_destination_not_allowed`: the URL's host is not on the allow-list", body = ProblemDocument), (status = 503, body = ProblemDocument)))]
#[post("/webhooks")]
pub async fn register_webhook(
    request: HttpRequest,
    principal: Principal,
    payload: web::Payload,
    pool: web::Data<PgPool>,
    settings: web::Data<WebhookSettings>,
) -> Result<HttpResponse, ApiError> {
    require(&principal, Action::ManageWebhooks)?;
    crate::input::declared_json(&request)?;
    let body = crate::command::read_body(&request, payload).await?;
    crate::input::json_body(&request, &body)?;
    let body: RegisterWebhookBody = crate::command::parse_json(&body)?;
    let (destination, kinds) = body.check()?;
    if !settings.allowed_hosts.allows(&destination) {
        let detail = if settings.allowed_hosts.is_empty() {
            "no webhook host is allowed: the administrator of the service lists them in AISC_WEBHOOK_ALLOWED_HOSTS"
                .to_string()
        } else {
            format!(
                "{} is not on the allow-list of webhook hosts (AISC_WEBHOOK_ALLOWED_HOSTS)",
                destination.host_header
            )
        };
        return Err(ApiError::Unprocessable {
            code: "webhook_destination_not_allowed",
            detail,
            errors: vec![crate::problem::FieldProblem { field: "url".into(), message: "host not allowed".into() }],
        });
    }
    let id = uuid::Uuid::new_v4();
    // Told of events after the log's settled end (as `$all` reads it): an event of a
    // transaction still running now is told, even one whose position is below the last one
    // committed.
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO public.webhooks (webhook_id, url, secret, event_kinds, created_by, from_position) \
         VALUES ($1, $2, $3, $4, $5, (SELECT coalesce(max(global_position), 0) FROM public.events \
                 WHERE global_position < pg_snapshot_xmin(pg_current_snapshot())::text::bigint * 1048576)) \
         RETURNING {WEBHOOK_COLUMNS}"
    )))
    .bind(id)
    .bind(&body.url)
    .bind(&body.secret)
    .bind(&kinds)
    .bind(&principal.name)
    .fetch_one(pool.get_ref())
    .await?;
    let view = webhook_view(&row)?;
    tracing::info!(webhook_id = %id, url = %body.url, by = %principal.name, "webhook registered");
    Ok(HttpResponse::Created().insert_header(("Location", format!("/api/v1/webhooks/{id}"))).json(view))
}

/// `GET /api/v1/webhooks`: every webhook, active or not, oldest first.
#[utoipa::path(tag = "webhooks", responses((status = 200, body = WebhookList), (status = 401, body = ProblemDocument), (status = 403, body = ProblemDocument), (status = 503, body = ProblemDocument)))]
#[get("/webhooks")]
pub async fn list_webhooks(principal: Principal, pool: web::Data<PgPool>) -> Result<HttpResponse, ApiError> {
    require(&principal, Action::ManageWebhooks)?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {WEBHOOK_COLUMNS} FROM public.webhooks ORDER BY created_at, webhook_id"
    )))
    .fetch_all(pool.get_ref())
    .await?;
    let items = rows.iter().map(webhook_view).collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(WebhookList { items }))
}

/// `GET /api/v1/webhooks/{webhook_id}`.
#[utoipa::path(tag = "webhooks", params(("webhook_id" = String, Path)), responses((status = 200, body = WebhookView), (status = 400, body = ProblemDocument), (status = 401, body = ProblemDocument), (status = 403, body = ProblemDocument), (status = 404, body = ProblemDocument), (status = 503, body = ProblemDocument)))]
#[get("/webhooks/{webhook_id}")]
pub async fn get_webhook(
    principal: Principal,
    path: web::Path<String>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, ApiError> {
    require(&principal, Action::ManageWebhooks)?;
    let id = webhook_id(&path)?;
    Ok(HttpResponse::Ok().json(find(&pool, id).await?))
}

/// `DELETE /api/v1/webhooks/{webhook_id}`: deactivates the webhook (its deliveries stay listed;
/// those pending are not sent). Deactivating it again changes nothing.
#[utoipa::path(tag = "webhooks", params(("webhook_id" = String, Path)), responses((status = 200, body = WebhookView), (status = 400, body = ProblemDocument), (status = 401, body = ProblemDocument), (status = 403, body = ProblemDocument), (status = 404, body = ProblemDocument), (status = 503, body = ProblemDocument)))]
#[delete("/webhooks/{webhook_id}")]
pub async fn deactivate_webhook(
    principal: Principal,
    path: web::Path<String>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, ApiError> {
    require(&principal, Action::ManageWebhooks)?;
    let id = webhook_id(&path)?;
    sqlx::query("UPDATE public.webhooks SET active = false, deactivated_at = now() WHERE webhook_id = $1 AND active")
        .bind(id)
        .execute(pool.get_ref())
        .await?;
    let view = find(&pool, id).await?;
    tracing::info!(webhook_id = %id, by = %principal.name, "webhook deactivated");
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DeliveryParams {
    /// `pending`, `delivered` or `failed`.
    status: Option<String>,
    #[serde(default)]
    offset: u32,
    /// 1 to 500; 50 by default.
    limit: Option<u32>,
}

/// `GET /api/v1/webhooks/{webhook_id}/deliveries`: the webhook's deliveries, newest first.
#[utoipa::path(tag = "webhooks", params(("webhook_id" = String, Path), DeliveryParams), responses((status = 200, body = DeliveryPage), (status = 400, body = ProblemDocument), (status = 401, body = ProblemDocument), (status = 403, body = ProblemDocument), (status = 404, body = ProblemDocument), (status = 503, body = ProblemDocument)))]
#[get("/webhooks/{webhook_id}/deliveries")]
pub async fn list_deliveries(
    request: HttpRequest,
    principal: Principal,
    path: web::Path<String>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, ApiError> {
    require(&principal, Action::ManageWebhooks)?;
    let id = webhook_id(&path)?;
    let params: DeliveryParams = crate::routes::query(&request)?;
    if let Some(status) = &params.status
        && !["pending", "delivered", "failed"].contains(&status.as_str())
    {
        return Err(ApiError::bad_field("status", format!("{status:?} is not pending, delivered or failed")));
    }
    let limit = params.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_field("limit", format!("must be between 1 and 500, not {limit}")));
    }
    find(&pool, id).await?;
    let total: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM public.webhook_deliveries WHERE webhook_id = $1 AND ($2::text IS NULL OR status = $2)",
    )
    .bind(id)
    .bind(&params.status)
    .fetch_one(pool.get_ref())
    .await?;
    let rows = sqlx::query(
        "SELECT d.delivery_id, n.kind, d.subject, n.occurred_on, d.attempts, d.status, d.last_response_status, \
                d.last_error, CASE WHEN d.status = 'pending' THEN d.next_attempt_at END AS next_attempt_at, \
                d.delivered_at, d.created_at \
           FROM public.webhook_deliveries d \
           JOIN public.webhook_notifications n ON n.notification_id = d.notification_id \
          WHERE d.webhook_id = $1 AND ($2::text IS NULL OR d.status = $2) \
          ORDER BY d.sequence DESC OFFSET $3 LIMIT $4",
    )
    .bind(id)
    .bind(&params.status)
    .bind(i64::from(params.offset))
    .bind(i64::from(limit))
    .fetch_all(pool.get_ref())
    .await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        items.push(DeliveryView {
            delivery_id: row.try_get("delivery_id")?,
            kind: row.try_get("kind")?,
            subject: row.try_get("subject")?,
            occurred_on: row.try_get("occurred_on")?,
            attempts: row.try_get("attempts")?,
            status: row.try_get("status")?,
            last_response_status: row.try_get("last_response_status")?,
            last_error: row.try_get("last_error")?,
            next_attempt_at: row.try_get("next_attempt_at")?,
            delivered_at: row.try_get("delivered_at")?,
            created_at: row.try_get("created_at")?,
        });
    }
    Ok(HttpResponse::Ok().json(DeliveryPage { items, total, offset: params.offset, limit }))
}

/// Registers the routes.
pub fn configure(config: &mut utoipa_actix_web::service_config::ServiceConfig) {
    config
        .service(register_webhook)
        .service(list_webhooks)
        .service(get_webhook)
        .service(deactivate_webhook)
        .service(list_deliveries);
}
