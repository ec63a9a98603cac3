//! `GET /ui/applications` (searched, filtered, paged like `GET /api/v1/applications`) and
//! `GET /ui/applications/{id}`: one application as it stands, its usage and disbursement, and
//! its whole history as a timeline — who did what, in which role, by business date and
//! recorded time (the timeline is the audit trail's, shown to the roles that may read it).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use aisc_domain::subsidy::streams;
use aisc_domain::subsidy::values::FinancialYear;
use aisc_projections::applications::{self, ApplicationFilter, ApplicationRow, Sort};
use aisc_projections::audit_trail::{self, AuditQuery};
use chrono::TimeDelta;
use serde::Deserialize;
use sqlx::PgPool;
use std::fmt::Write;

use crate::authorization::{Action, require};
use crate::input;
use crate::problem::ApiError;
use crate::ui::format::{count, escape, event_label, label, money, percent, url_value};
use crate::ui::layout::page_response;
use crate::ui::session::{UiError, signed_in};

const PAGE_SIZE: u32 = 50;
const TIMELINE_PAGE: u32 = 200;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    q: Option<String>,
    status: Option<String>,
    category: Option<String>,
    batch_id: Option<String>,
    financial_year: Option<String>,
    #[serde(default)]
    offset: u32,
}

fn badge(status: &str) -> String {
    let class = if matches!(status, "rejected" | "ineligible" | "terminated") { "badge alert" } else { "badge" };
    format!("<span class=\"{class}\" data-status=\"{}\">{}</span>", escape(status), escape(&label(status)))
}

fn optional<T>(value: Option<T>, show: impl Fn(T) -> String) -> String {
    value.map_or_else(|| "–".to_string(), show)
}

pub async fn list(request: HttpRequest, pool: web::Data<PgPool>) -> Result<HttpResponse, UiError> {
    let session = signed_in(&request, &pool).await?;
    require(&session.principal, Action::ReadScheme)?;
    let params: ListParams = crate::routes::query(&request)?;
    let nonempty = |value: &Option<String>| value.as_ref().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let (text, status, category, batch_id, financial_year) = (
        nonempty(&params.q),
        nonempty(&params.status),
        nonempty(&params.category),
        nonempty(&params.batch_id),
        nonempty(&params.financial_year),
    );
    if let Some(text) = &text {
        input::search("q", text)?;
    }
    if let Some(status) = &status {
        input::code("status", status)?;
    }
    if let Some(category) = &category {
        input::code("category", category)?;
    }
    if let Some(batch_id) = &batch_id {
        input::batch_id("batch_id", batch_id)?;
    }
    let year = financial_year
        .as_deref()
        .map(FinancialYear::parse)
        .transpose()
        .map_err(|error| ApiError::bad_field("financial_year", error.to_string()))?;
    let filter = ApplicationFilter {
        status: status.clone(),
        category: category.clone(),
        batch_id: batch_id.clone(),
        submitted_between: year.map(|year| (year.first_day(), year.last_day())),
        text: text.clone(),
        sort: Sort::SubmittedOn,
        descending: true,
        offset: params.offset,
        limit: PAGE_SIZE,
    };
    let (rows, total) = applications::list(&pool, &filter).await?;

    let value = |field: &Option<String>| escape(field.as_deref().unwrap_or(""));
    let mut body = format!(
        "<h1>Applications</h1><form class=\"search\" method=\"get\" action=\"/ui/applications\">\
         <input type=\"search\" name=\"q\" value=\"{}\" placeholder=\"Title or applicant\" aria-label=\"Title or applicant\" maxlength=\"200\">\
         <input type=\"text\" name=\"status\" value=\"{}\" placeholder=\"status\" aria-label=\"Status\" size=\"12\">\
         <input type=\"text\" name=\"batch_id\" value=\"{}\" placeholder=\"batch\" aria-label=\"Batch\" size=\"10\">\
         <input type=\"text\" name=\"financial_year\" value=\"{}\" placeholder=\"2025-26\" aria-label=\"Submitted in financial year\" size=\"8\">\
         <button type=\"submit\">Search</button></form>",
        value(&text),
        value(&status),
        value(&batch_id),
        value(&financial_year)
    );
    let shown_to = (u64::from(params.offset) + rows.len() as u64).min(u64::try_from(total).unwrap_or(0));
    let _ = write!(
        body,
        "<p class=\"muted\" data-total=\"{total}\">{} application(s); {}–{} shown, latest submitted first.</p>",
        count(total),
        if rows.is_empty() { 0 } else { u64::from(params.offset) + 1 },
        shown_to
    );
    body.push_str(
        "<div class=\"scroll\"><table><thead><tr><th>Application</th><th>Project</th><th class=\"wide\">Applicant</th>\
         <th>Status</th><th class=\"wide\">Submitted</th><th class=\"num\">Ceiling</th><th class=\"num\">Disbursed</th>\
         <th class=\"wide\">Next report</th></tr></thead><tbody>",
    );
    for row in &rows {
        let _ = write!(
            body,
            "<tr><td><a href=\"/ui/applications/{}\">{}</a></td><td>{}</td><td class=\"wide\">{}</td><td>{}</td>\
             <td class=\"wide\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"wide\">{}</td></tr>",
            url_value(&row.application_id),
            escape(&row.application_id),
            escape(&row.project_title),
            escape(&row.organisation),
            badge(&row.status),
            row.submitted_on,
            optional(row.ceiling_cents, money),
            money(row.disbursed_cents),
            optional(row.next_report_due, |date| date.to_string())
        );
    }
    body.push_str("</tbody></table></div><div class=\"pager\">");
    let link = |offset: u32| {
        let mut query = vec![format!("offset={offset}")];
        for (name, field) in [
            ("q", &text),
            ("status", &status),
            ("category", &category),
            ("batch_id", &batch_id),
            ("financial_year", &financial_year),
        ] {
            if let Some(value) = field {
                query.push(format!("{name}={}", url_value(value)));
            }
        }
        format!("/ui/applications?{}", escape(&query.join("&")))
    };
    if params.offset > 0 {
        let _ = write!(body, "<a href=\"{}\">Newer</a>", link(params.offset.saturating_sub(PAGE_SIZE)));
    }
    if i64::from(params.offset) + i64::from(PAGE_SIZE) < total {
        let _ = write!(body, "<a href=\"{}\">Older</a>", link(params.offset + PAGE_SIZE));
    }
    body.push_str("</div>");
    Ok(page_response(StatusCode::OK, "Applications", Some(&session), &body))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShowParams {
    /// The timeline from after this position (its next page).
    #[serde(default)]
    after: u64,
}

fn facts(row: &ApplicationRow) -> String {
    let mut facts = String::from("<dl class=\"facts\">");
    let mut fact = |name: &str, figure: &str, value: String| {
        let _ = write!(facts, "<dt>{name}</dt><dd data-figure=\"{figure}\">{value}</dd>");
    };
    fact("Status", "status", badge(&row.status));
    fact("Applicant", "organisation", escape(&row.organisation));
    fact("Category", "category", escape(&format!("{} ({})", label(&row.category), label(&row.sub_type))));
    fact("Batch", "batch_id", escape(&row.batch_id));
    fact("Submitted on", "submitted_on", row.submitted_on.to_string());
    fact("Requested rate", "requested_rate_bps", percent(i64::from(row.requested_rate_bps)));
    fact(
        "Team",
        "team_size",
        format!("{} people, {} talents", count(i64::from(row.team_size)), count(i64::from(row.talents))),
    );
    fact("Develops AI models", "develops_ai_models", if row.develops_ai_models { "yes" } else { "no" }.to_string());
    fact(
        "Mainland or overseas team",
        "mainland_or_overseas_team",
        if row.mainland_or_overseas_team { "yes" } else { "no" }.to_string(),
    );
    fact("Assessed by", "assessed_by", optional(row.assessed_by.as_deref(), escape));
    fact("Total score", "total_score", optional(row.total_score, |score| count(i64::from(score))));
    fact("Decided on", "decided_on", optional(row.decided_on, |date| date.to_string()));
    fact("Approved rate", "approved_rate_bps", optional(row.approved_rate_bps, |bps| percent(i64::from(bps))));
    fact("Ceiling", "ceiling_cents", optional(row.ceiling_cents, money));
    fact("Disbursed", "disbursed_cents", money(row.disbursed_cents));
    let period = match (row.project_start, row.project_end) {
        (Some(start), Some(end)) => format!("{start} to {end}"),
        _ => "–".to_string(),
    };
    fact("Project period", "project_period", period);
    fact("Next progress report due", "next_report_due", optional(row.next_report_due, |date| date.to_string()));
    facts.push_str("</dl>");
    facts
}

pub async fn show(
    request: HttpRequest,
    path: web::Path<String>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, UiError> {
    let session = signed_in(&request, &pool).await?;
    require(&session.principal, Action::ReadScheme)?;
    let application_id = path.into_inner();
    input::application_id("application_id", &application_id)?;
    let params: ShowParams = crate::routes::query(&request)?;
    let row = applications::application(&pool, &application_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no application {application_id}")))?;

    let mut body = format!(
        "<h1>{} <small class=\"muted\">{}</small></h1><section class=\"panel\"><h2>As it stands</h2>{}</section>",
        escape(&row.project_title),
        escape(&row.application_id),
        facts(&row)
    );

    // Usage and subsidy per funding year (reversed charges apart), summed by the database.
    let years = applications::usage_by_year(&pool, &application_id).await?;
    if !years.is_empty() {
        body.push_str(
            "<section class=\"panel\"><h2>Usage and subsidy</h2><div class=\"scroll\"><table><thead><tr>\
             <th>Funding year</th><th class=\"num\">Charges</th><th class=\"num\">Units</th><th class=\"num\">Gross</th>\
             <th class=\"num\">Subsidy</th><th class=\"num wide\">Reversed</th></tr></thead><tbody>",
        );
        for year in &years {
            let _ = write!(
                body,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\" data-figure=\"subsidy.{}\">{}</td><td class=\"num wide\">{}</td></tr>",
                escape(&year.financial_year),
                count(year.lines),
                count(year.units),
                money(year.gross_cents),
                escape(&year.financial_year),
                money(year.subsidy_cents),
                count(year.reversed_lines)
            );
        }
        body.push_str("</tbody></table></div></section>");
    }

    // The history, from the audit trail.
    body.push_str("<section class=\"panel\"><h2>History</h2>");
    if require(&session.principal, Action::ReadAuditTrail).is_err() {
        body.push_str(
            "<p class=\"muted\">The history of an application is the audit trail's, shown to auditors and \
             administrators.</p></section>",
        );
        return Ok(page_response(StatusCode::OK, &row.project_title, Some(&session), &body));
    }
    let stream = streams::application(&application_id)
        .map_err(|error| ApiError::bad_field("application_id", error.to_string()))?;
    let entries = audit_trail::query(
        &pool,
        &AuditQuery {
            stream_id: Some(stream.to_string()),
            after_position: params.after,
            limit: TIMELINE_PAGE,
            ..AuditQuery::default()
        },
    )
    .await?;
    body.push_str("<ol class=\"timeline\">");
    for entry in &entries {
        let recorded_in_hong_kong = (entry.recorded_at + TimeDelta::hours(8)).format("%Y-%m-%d %H:%M:%S");
        let _ = write!(
            body,
            "<li data-event=\"{}\"><div class=\"what\">{}</div><div>by {} <span class=\"badge\">{}</span></div>\
             <div class=\"when\">in effect {} · recorded {recorded_in_hong_kong} HKT · #{}</div></li>",
            escape(&entry.event_type),
            escape(&event_label(&entry.event_type)),
            escape(entry.actor.as_deref().unwrap_or("the service")),
            escape(&label(entry.role.as_deref().unwrap_or("system"))),
            optional(entry.effective_on, |date| date.to_string()),
            entry.stream_version
        );
    }
    body.push_str("</ol>");
    if entries.is_empty() && params.after == 0 {
        body.push_str("<p class=\"muted\">The audit trail has not reached this application yet.</p>");
    }
    if entries.len() == TIMELINE_PAGE as usize
        && let Some(last) = entries.last()
    {
        let _ = write!(
            body,
            "<div class=\"pager\"><a href=\"/ui/applications/{}?after={}\">Later events</a></div>",
            url_value(&application_id),
            last.position
        );
    }
    body.push_str("</section>");
    Ok(page_response(StatusCode::OK, &row.project_title, Some(&session), &body))
}
