//! `GET /ui/batches`: the batch board — each batch of the calendar with its counts per stage
//! and its work queues (as `GET /api/v1/batches/{id}/queue` gives them).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use aisc_adapters::clock::Clock;
use aisc_projections::applications;
use serde::Deserialize;
use sqlx::PgPool;
use std::fmt::Write;

use crate::authorization::{Action, require};
use crate::ui::format::{count, escape, label, url_value};
use crate::ui::layout::page_response;
use crate::ui::session::{UiError, signed_in};

/// Ids listed per queue; the rest are a link to the filtered list.
const SHOWN_PER_QUEUE: usize = 8;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BoardParams {}

pub async fn show(
    request: HttpRequest,
    pool: web::Data<PgPool>,
    clock: web::Data<Clock>,
) -> Result<HttpResponse, UiError> {
    let session = signed_in(&request, &pool).await?;
    require(&session.principal, Action::ReadScheme)?;
    let _: BoardParams = crate::routes::query(&request)?;
    let today = clock.today();
    let batches = applications::batches(&pool).await?;
    let mut body = format!("<h1>Batch board</h1><p class=\"muted\">{} batches; today is {today}.</p>", batches.len());
    if batches.is_empty() {
        body.push_str("<section class=\"notice\"><p>No batch has been opened yet.</p></section>");
    }
    body.push_str("<div class=\"boards\">");
    for batch in batches {
        let Some(queue) = applications::batch_queue(&pool, &batch.batch_id, today).await? else { continue };
        let id = escape(&queue.batch_id);
        let state = if queue.closed {
            "<span class=\"badge\">closed</span>"
        } else if today <= queue.deadline {
            "<span class=\"badge\">open</span>"
        } else {
            "<span class=\"badge\">past its deadline</span>"
        };
        let _ = write!(
            body,
            "<section class=\"panel\" data-batch=\"{id}\"><h2>{id} {state}</h2>\
             <p class=\"muted\">Deadline {}, committee {}</p><table><tbody>",
            queue.deadline, queue.committee_date
        );
        for (status, total) in &queue.counts {
            let _ = write!(
                body,
                "<tr><td><a href=\"/ui/applications?batch_id={}&amp;status={}\">{}</a></td>\
                 <td class=\"num\" data-count=\"{}\">{}</td></tr>",
                url_value(&queue.batch_id),
                url_value(status),
                escape(&label(status)),
                escape(status),
                count(*total)
            );
        }
        let total: i64 = queue.counts.values().sum();
        let _ = write!(
            body,
            "<tr><th>All</th><th class=\"num\" data-count=\"all\">{}</th></tr></tbody></table>",
            count(total)
        );
        for (name, ids, alert) in [
            ("Awaiting eligibility", &queue.awaiting_eligibility, false),
            ("Awaiting assessment", &queue.awaiting_assessment, false),
            ("Ready for the committee", &queue.ready_for_committee, false),
            ("Overdue for the committee", &queue.overdue, true),
        ] {
            if ids.is_empty() {
                continue;
            }
            let class = if alert { "badge alert" } else { "badge" };
            let _ = write!(
                body,
                "<div class=\"queue\"><span class=\"{class}\">{name}: {}</span><ul>",
                count(ids.len() as i64)
            );
            for application_id in ids.iter().take(SHOWN_PER_QUEUE) {
                let _ = write!(
                    body,
                    "<li><a href=\"/ui/applications/{}\">{}</a></li>",
                    url_value(application_id),
                    escape(application_id)
                );
            }
            if ids.len() > SHOWN_PER_QUEUE {
                let _ =
                    write!(body, "<li class=\"muted\">and {} more</li>", count((ids.len() - SHOWN_PER_QUEUE) as i64));
            }
            body.push_str("</ul></div>");
        }
        body.push_str("</section>");
    }
    body.push_str("</div>");
    Ok(page_response(StatusCode::OK, "Batch board", Some(&session), &body))
}
