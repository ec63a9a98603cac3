//! `GET /ui/?year=2025-26`: the KPI dashboard of a funding year or of the whole scheme — the
//! figures of `GET /api/v1/kpis`, with the §23 cash flow beside the budget, capacity month by
//! month against the 90 % cap, and applications by category and status.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use aisc_adapters::clock::Clock;
use aisc_domain::subsidy::funding::{BudgetLine, planned_cash_flow, planned_years};
use aisc_domain::subsidy::values::FinancialYear;
use aisc_projections::{applications, kpi};
use chrono::NaiveDate;
use serde::Deserialize;
use sqlx::PgPool;
use std::fmt::Write;

use crate::authorization::{Action, require};
use crate::limits::ExpensiveReads;
use crate::problem::ApiError;
use crate::ui::charts::{self, BudgetBars, MonthBars};
use crate::ui::format::{count, escape, label, money, percent};
use crate::ui::layout::page_response;
use crate::ui::session::{UiError, signed_in};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DashboardParams {
    /// A financial year such as 2025-26; the whole scheme when omitted.
    year: Option<String>,
    /// The figures as at this business date (the facts in force on it, e.g. 31 March for a
    /// year's report); as it stands when omitted or empty.
    as_at: Option<String>,
}

pub async fn show(
    request: HttpRequest,
    pool: web::Data<PgPool>,
    clock: web::Data<Clock>,
    expensive_reads: web::Data<ExpensiveReads>,
) -> Result<HttpResponse, UiError> {
    let session = signed_in(&request, &pool).await?;
    require(&session.principal, Action::ReadScheme)?;
    let params: DashboardParams = crate::routes::query(&request)?;
    let year = params
        .year
        .as_deref()
        .map(FinancialYear::parse)
        .transpose()
        .map_err(|error| ApiError::bad_field("year", error.to_string()))?;
    let as_at = params
        .as_at
        .as_deref()
        .filter(|text| !text.is_empty())
        .map(|text| NaiveDate::parse_from_str(text, "%Y-%m-%d"))
        .transpose()
        .map_err(|_| ApiError::bad_field("as_at", "a date such as 2026-03-31"))?;
    let today = clock.today();
    // A dashboard as at a date is an expensive read, limited per role as on the API.
    let _permit = match as_at {
        Some(_) => Some(expensive_reads.try_start(&session.principal)?),
        None => None,
    };
    let dashboard = {
        let mut connection = pool.acquire().await?;
        let past = kpi::PastView { as_of: None, effective_on: as_at };
        kpi::dashboard_at(&mut connection, past, year.map(kpi::year_scope), today).await?
    };
    let statuses = applications::status_counts(&pool, year.map(|y| (y.first_day(), y.last_day()))).await?;
    let years: Vec<FinancialYear> = year.map_or_else(|| planned_years().collect(), |year| vec![year]);
    let (first_month, last_month) = match (years.first(), years.last()) {
        (Some(first), Some(last)) => {
            (format!("{}-04", first.first_day().format("%Y")), last.last_day().format("%Y-%m").to_string())
        }
        _ => (String::new(), String::new()),
    };
    let months = applications::capacity_months(&pool, &first_month, &last_month).await?;

    let scope_name = year.map_or_else(|| "the whole scheme".to_string(), |year| format!("funding year {year}"));
    let when = match as_at {
        Some(date) => format!("As at {date}: the facts in force on that date, whenever they were recorded."),
        None => format!("As it stands on {today}."),
    };
    let mut body = format!("<h1>KPI dashboard: {}</h1><p class=\"muted\">{when}</p>", escape(&scope_name));
    body.push_str("<nav class=\"scopes\" aria-label=\"Scope\">");
    let current = |candidate: Option<FinancialYear>| if candidate == year { " class=\"current\"" } else { "" };
    let dated = as_at.map(|date| format!("as_at={date}"));
    let whole = dated.as_ref().map(|dated| format!("?{dated}")).unwrap_or_default();
    let _ = write!(body, "<a href=\"/ui/{whole}\"{}>Whole scheme</a>", current(None));
    for candidate in planned_years() {
        let and_date = dated.as_ref().map(|dated| format!("&amp;{dated}")).unwrap_or_default();
        let _ = write!(body, "<a href=\"/ui/?year={candidate}{and_date}\"{}>{candidate}</a>", current(Some(candidate)));
    }
    body.push_str("</nav>");
    let _ = write!(
        body,
        "<form class=\"search\" method=\"get\" action=\"/ui/\">{}<label for=\"as_at\">As at</label>\
         <input id=\"as_at\" type=\"date\" name=\"as_at\" value=\"{}\"><button type=\"submit\">Show</button></form>",
        year.map(|year| format!("<input type=\"hidden\" name=\"year\" value=\"{year}\">")).unwrap_or_default(),
        as_at.map(|date| date.to_string()).unwrap_or_default()
    );

    // Headline figures, each named by the field of GET /api/v1/kpis it shows.
    let optional_percent = |bps: Option<i64>| bps.map_or_else(|| "–".to_string(), percent);
    let cards: [(&str, &str, String, bool); 10] = [
        ("applications_received", "Applications received", count(dashboard.applications_received), false),
        ("applications_approved", "Approved", count(dashboard.applications_approved), false),
        ("applications_rejected", "Rejected", count(dashboard.applications_rejected), false),
        ("approval_rate_bps", "Approval rate", optional_percent(dashboard.approval_rate_bps), false),
        (
            "median_days_to_decision",
            "Median days to decision",
            dashboard.median_days_to_decision.map_or_else(|| "–".to_string(), count),
            false,
        ),
        ("utilisation_bps", "Utilisation of allocations", optional_percent(dashboard.utilisation_bps), false),
        (
            "projects_developing_ai_models",
            "Projects developing AI models",
            count(dashboard.projects_developing_ai_models),
            false,
        ),
        (
            "mainland_or_overseas_teams",
            "Mainland or overseas teams",
            count(dashboard.mainland_or_overseas_teams),
            false,
        ),
        ("talents_involved", "Talents involved", count(dashboard.talents_involved), false),
        (
            "overdue_progress_reports",
            "<a href=\"/ui/worklist\">Overdue progress reports</a>",
            count(dashboard.overdue_progress_reports),
            dashboard.overdue_progress_reports > 0,
        ),
    ];
    body.push_str("<div class=\"cards\">");
    for (figure, name, value, alert) in cards {
        let class = if alert { "card alert" } else { "card" };
        let _ = write!(
            body,
            "<div class=\"{class}\"><div class=\"name\">{name}</div><div class=\"figure\" data-figure=\"{figure}\">{}</div></div>",
            escape(&value)
        );
    }
    body.push_str("</div>");

    // Budget against the §23 cash flow.
    let mut bars = Vec::new();
    body.push_str(
        "<section class=\"panel\"><h2>Budget per line against the §23 cash flow</h2>\
         <div class=\"legend\"><span class=\"planned\">Planned (§23)</span><span class=\"received\">Received</span>\
         <span class=\"committed\">Committed</span><span class=\"disbursed\">Disbursed</span></div>",
    );
    let mut table = String::from(
        "<div class=\"scroll\"><table><thead><tr><th>Budget line</th><th class=\"num\">Planned (§23)</th>\
         <th class=\"num\">Received</th><th class=\"num\">Committed</th><th class=\"num\">Disbursed</th>\
         <th class=\"num wide\">Redirected</th><th class=\"num\">Left</th></tr></thead><tbody>",
    );
    for line in BudgetLine::ALL {
        let figures = dashboard.budget.iter().find(|figures| figures.line == line.as_str());
        let planned: i64 =
            years.iter().filter_map(|year| planned_cash_flow(*year, line)).map(|money| money.cents()).sum();
        let get = |pick: fn(&kpi::BudgetLineFigures) -> i64| figures.map_or(0, pick);
        let (received, committed, disbursed, redirected, left) = (
            get(|f| f.received_cents),
            get(|f| f.committed_cents),
            get(|f| f.disbursed_cents),
            get(|f| f.redirected_cents),
            get(|f| f.left_cents),
        );
        let code = line.as_str();
        let _ = write!(
            table,
            "<tr><td>{}</td><td class=\"num\" data-figure=\"budget.{code}.planned_cents\">{}</td>\
             <td class=\"num\" data-figure=\"budget.{code}.received_cents\">{}</td>\
             <td class=\"num\" data-figure=\"budget.{code}.committed_cents\">{}</td>\
             <td class=\"num\" data-figure=\"budget.{code}.disbursed_cents\">{}</td>\
             <td class=\"num wide\" data-figure=\"budget.{code}.redirected_cents\">{}</td>\
             <td class=\"num\" data-figure=\"budget.{code}.left_cents\">{}</td></tr>",
            escape(&label(code)),
            money(planned),
            money(received),
            money(committed),
            money(disbursed),
            money(redirected),
            money(left)
        );
        bars.push(BudgetBars { label: label(code), planned, received, committed, disbursed });
    }
    table.push_str("</tbody></table></div>");
    body.push_str(&charts::budget(&bars));
    body.push_str(&table);
    body.push_str("</section>");

    // Capacity month by month against the 90 % cap, as declared and allocated now.
    body.push_str(
        "<section class=\"panel\"><h2>Subsidised capacity per month against the 90 % cap (as it stands)</h2>\
         <div class=\"legend\"><span class=\"capacity\">Capacity</span><span class=\"received\">Allocated</span>\
         <span class=\"cap\">90 % cap</span></div>",
    );
    let mut services: Vec<&str> = months.iter().map(|month| month.service_type.as_str()).collect();
    services.dedup();
    if services.is_empty() {
        body.push_str("<p class=\"muted\">No capacity declared for these months.</p>");
    }
    for service in services {
        let bars: Vec<MonthBars> = months
            .iter()
            .filter(|month| month.service_type == service)
            .map(|month| MonthBars {
                period: month.period.clone(),
                capacity: month.capacity,
                subsidised_cap: month.subsidised_cap(),
                allocated: month.allocated,
            })
            .collect();
        let over_cap = bars.iter().filter(|month| month.allocated > month.subsidised_cap).count();
        let _ = write!(body, "<h3>{}</h3>", escape(&label(service)));
        body.push_str(&charts::capacity(&label(service), &bars));
        if over_cap > 0 {
            let _ = write!(body, "<p class=\"error\">{over_cap} month(s) allocated beyond the 90 % cap.</p>");
        }
    }
    if !dashboard.capacity.is_empty() {
        body.push_str(
            "<div class=\"scroll\"><table><thead><tr><th>Service</th><th class=\"num\">Capacity</th>\
             <th class=\"num\">90 % cap</th><th class=\"num\">Allocated</th><th class=\"num\">Of the cap</th>\
             <th class=\"num wide\">Redeployed</th></tr></thead><tbody>",
        );
        for service in &dashboard.capacity {
            let share = crate::ui::format::share_bps(service.allocated_units, service.subsidised_cap_units);
            let _ = write!(
                body,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\" data-figure=\"capacity.{}.allocated_units\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num wide\">{}</td></tr>",
                escape(&label(&service.service_type)),
                count(service.capacity_units),
                count(service.subsidised_cap_units),
                escape(&service.service_type),
                count(service.allocated_units),
                share.map_or_else(|| "–".to_string(), percent),
                count(service.redeployed_units)
            );
        }
        body.push_str("</tbody></table></div>");
    }
    body.push_str("</section>");

    // Applications by category and by status.
    body.push_str("<section class=\"panel\"><h2>Applications by category</h2>");
    let by_category: Vec<(String, i64)> =
        dashboard.by_category.iter().map(|(category, figures)| (label(category), figures.received)).collect();
    body.push_str(&charts::counts("Applications received by category", &by_category));
    body.push_str(
        "<div class=\"scroll\"><table><thead><tr><th>Category</th><th class=\"num\">Received</th>\
         <th class=\"num\">Approved</th><th class=\"num\">Rejected</th><th class=\"num\">Average approved rate</th>\
         </tr></thead><tbody>",
    );
    for (category, figures) in &dashboard.by_category {
        let _ = write!(
            body,
            "<tr><td>{}</td><td class=\"num\" data-figure=\"by_category.{}.received\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(&label(category)),
            escape(category),
            count(figures.received),
            count(figures.approved),
            count(figures.rejected),
            figures.average_approved_rate_bps.map_or_else(|| "–".to_string(), percent)
        );
    }
    body.push_str("</tbody></table></div></section>");
    if as_at.is_some() {
        // Statuses are kept as they stand, not by date: shown on the live dashboard only.
        return Ok(page_response(StatusCode::OK, "KPI dashboard", Some(&session), &body));
    }
    body.push_str("<section class=\"panel\"><h2>Applications by status</h2>");
    let by_status: Vec<(String, i64)> = statuses.iter().map(|(status, total)| (label(status), *total)).collect();
    body.push_str(&charts::counts("Applications by status", &by_status));
    body.push_str("<div class=\"scroll\"><table><tbody>");
    for (status, total) in &statuses {
        let filter = year.map(|year| format!("&financial_year={year}")).unwrap_or_default();
        let _ = write!(
            body,
            "<tr><td><a href=\"/ui/applications?status={}{filter}\">{}</a></td><td class=\"num\" data-figure=\"status.{}\">{}</td></tr>",
            escape(status),
            escape(&label(status)),
            escape(status),
            count(*total)
        );
    }
    body.push_str("</tbody></table></div></section>");
    Ok(page_response(StatusCode::OK, "KPI dashboard", Some(&session), &body))
}
