//! `GET /ui/worklist`: progress reports overdue and due in the next 14 days, per project under
//! agreement. An overdue report stops every further charge and disbursement on its project
//! (refused `progress_report_overdue`), so each line shows what it blocks: the allocated units
//! not yet charged and the ceiling not yet disbursed.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use aisc_adapters::clock::Clock;
use aisc_projections::applications::{self, ReportDue};
use chrono::TimeDelta;
use serde::Deserialize;
use sqlx::PgPool;
use std::fmt::Write;

use crate::authorization::{Action, require};
use crate::ui::format::{count, escape, money, url_value};
use crate::ui::layout::page_response;
use crate::ui::session::{UiError, signed_in};

/// How far ahead the worklist looks.
pub const HORIZON_DAYS: i64 = 14;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorklistParams {}

fn table(reports: &[&ReportDue], today: chrono::NaiveDate, overdue: bool) -> String {
    let mut html = String::from(
        "<div class=\"scroll\"><table><thead><tr><th>Application</th><th>Project</th><th>Due</th>\
         <th class=\"num wide\">Reports in</th><th class=\"num\">Units blocked</th><th class=\"num\">Subsidy blocked</th>\
         </tr></thead><tbody>",
    );
    for report in reports {
        let days = (report.due_on - today).num_days();
        let when = if overdue {
            format!("{} ({} days overdue)", report.due_on, -days)
        } else {
            format!("{} (in {days} days)", report.due_on)
        };
        let _ = write!(
            html,
            "<tr class=\"{}\" data-application=\"{}\"><td><a href=\"/ui/applications/{}\">{}</a></td><td>{}<br><small class=\"muted\">{}</small></td>\
             <td>{}</td><td class=\"num wide\">{} of {}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            if overdue { "overdue" } else { "" },
            escape(&report.application_id),
            url_value(&report.application_id),
            escape(&report.application_id),
            escape(&report.project_title),
            escape(&report.organisation),
            escape(&when),
            count(i64::from(report.reports_submitted)),
            count(i64::from(report.reports_due_in_total)),
            count(report.units_blocked()),
            money(report.subsidy_blocked_cents())
        );
    }
    html.push_str("</tbody></table></div>");
    html
}

pub async fn show(
    request: HttpRequest,
    pool: web::Data<PgPool>,
    clock: web::Data<Clock>,
) -> Result<HttpResponse, UiError> {
    let session = signed_in(&request, &pool).await?;
    require(&session.principal, Action::ReadScheme)?;
    let _: WorklistParams = crate::routes::query(&request)?;
    let today = clock.today();
    let until = today + TimeDelta::days(HORIZON_DAYS);
    let reports = applications::reports_due(&pool, until).await?;
    let (overdue, due_soon): (Vec<&ReportDue>, Vec<&ReportDue>) =
        reports.iter().partition(|report| report.due_on < today);
    let blocked: i64 = overdue.iter().map(|report| report.subsidy_blocked_cents()).sum();
    // Red only when something is overdue.
    let alert = if overdue.is_empty() { "card" } else { "card alert" };
    let mut body = format!(
        "<h1>Progress report worklist</h1><p class=\"muted\">Today is {today}; reports due up to {until}.</p>\
         <div class=\"cards\"><div class=\"{alert}\"><div class=\"name\">Overdue</div><div class=\"figure\" data-figure=\"overdue\">{}</div></div>\
         <div class=\"card\"><div class=\"name\">Due in {HORIZON_DAYS} days</div><div class=\"figure\" data-figure=\"due_soon\">{}</div></div>\
         <div class=\"{alert}\"><div class=\"name\">Subsidy held back</div><div class=\"figure\" data-figure=\"blocked\">{}</div></div></div>",
        count(overdue.len() as i64),
        count(due_soon.len() as i64),
        money(blocked)
    );
    body.push_str("<section class=\"panel\"><h2>Overdue: nothing more is charged or disbursed until they are in</h2>");
    if overdue.is_empty() {
        body.push_str("<p class=\"muted\">No report is overdue.</p>");
    } else {
        body.push_str(&table(&overdue, today, true));
    }
    let _ = write!(body, "</section><section class=\"panel\"><h2>Due in the next {HORIZON_DAYS} days</h2>");
    if due_soon.is_empty() {
        body.push_str("<p class=\"muted\">No report falls due in the next 14 days.</p>");
    } else {
        body.push_str(&table(&due_soon, today, false));
    }
    body.push_str("</section>");
    Ok(page_response(StatusCode::OK, "Worklist", Some(&session), &body))
}
