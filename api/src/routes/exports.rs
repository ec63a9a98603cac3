//! `GET /api/v1/exports/{applications,disbursements,budget}`: what finance and programme staff
//! open in a spreadsheet, as CSV or XLSX, streamed. Rows are read from the applications read
//! model a page at a time (each page one index range scan after the last row's key, no
//! transaction held between pages) and written to the response as they come, so a year of
//! usage charges leaves memory flat: one page of rows and the bytes written from it. A page is
//! read only when the client has taken the previous one.
//!
//! The same [`Export`] writes `aisc reports export` on the command line.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, web};
use aisc_domain::subsidy::funding::{BudgetLine, planned_cash_flow, planned_years};
use aisc_domain::subsidy::values::FinancialYear;
use aisc_projections::ProjectionError;
use aisc_projections::applications::{self, UsageExportKey};
use chrono::NaiveDate;
use serde::Deserialize;
use sqlx::PgPool;

use crate::auth::Principal;
use crate::authorization::{Action, require};
use crate::export_formats::{Cell, ExportFormat, SheetWriter, TooLarge};
use crate::problem::{ApiError, ProblemDocument};

/// Rows read from the read model per page.
const PAGE_ROWS: i64 = 1_000;

/// The exports there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportKind {
    Applications,
    Disbursements,
    Budget,
}

impl ExportKind {
    pub fn parse(text: &str) -> Option<ExportKind> {
        match text {
            "applications" => Some(ExportKind::Applications),
            "disbursements" => Some(ExportKind::Disbursements),
            "budget" => Some(ExportKind::Budget),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ExportKind::Applications => "applications",
            ExportKind::Disbursements => "disbursements",
            ExportKind::Budget => "budget",
        }
    }

    fn sheet_name(self) -> &'static str {
        match self {
            ExportKind::Applications => "Applications",
            ExportKind::Disbursements => "Disbursements",
            ExportKind::Budget => "Budget",
        }
    }

    pub fn headings(self) -> &'static [&'static str] {
        match self {
            ExportKind::Applications => &[
                "Application",
                "Status",
                "Batch",
                "Organisation",
                "Category",
                "Sub-type",
                "Project title",
                "Develops AI models",
                "Mainland or overseas team",
                "Team size",
                "Talents",
                "Requested rate (%)",
                "Submitted on",
                "Assessed by",
                "Total score",
                "Decided on",
                "Approved rate (%)",
                "Ceiling (HK$)",
                "Disbursed (HK$)",
                "Project start",
                "Project end",
                "Next report due",
            ],
            ExportKind::Disbursements => &[
                "Application",
                "Organisation",
                "Usage",
                "Month",
                "Service",
                "Units",
                "Rate per unit (HK$)",
                "Gross (HK$)",
                "Subsidy rate (%)",
                "Subsidy (HK$)",
                "Reversed",
                "Disbursed (HK$)",
                "Funding year",
                "Business date",
                "Recorded at (UTC)",
            ],
            ExportKind::Budget => &[
                "Funding year",
                "Budget line",
                "Planned in §23 (HK$)",
                "Received (HK$)",
                "Received of planned (%)",
                "Committed (HK$)",
                "Disbursed (HK$)",
                "Redirected (HK$)",
                "Available (HK$)",
            ],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Database(#[from] ProjectionError),
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
}

impl From<ExportError> for ApiError {
    fn from(error: ExportError) -> Self {
        match error {
            ExportError::Database(error) => error.into(),
            ExportError::TooLarge(error) => ApiError::internal(error),
        }
    }
}

/// Where the next page starts.
#[derive(Debug, Clone)]
enum Cursor {
    Start,
    Application(NaiveDate, String),
    Usage(UsageExportKey),
    Done,
}

/// An export being written: [`Export::next_chunk`] reads the next page and answers the bytes
/// it made, until the file is complete.
pub struct Export {
    pool: PgPool,
    kind: ExportKind,
    year: Option<FinancialYear>,
    format: ExportFormat,
    writer: Option<SheetWriter>,
    cursor: Cursor,
    page_rows: i64,
}

impl Export {
    pub fn new(pool: PgPool, kind: ExportKind, year: Option<FinancialYear>, format: ExportFormat) -> Export {
        let writer = SheetWriter::new(format, kind.sheet_name(), kind.headings());
        Export { pool, kind, year, format, writer: Some(writer), cursor: Cursor::Start, page_rows: PAGE_ROWS }
    }

    /// Reads pages of `rows` rows (at least 1) instead of the usual thousand.
    pub fn with_page_rows(mut self, rows: i64) -> Export {
        self.page_rows = rows.max(1);
        self
    }

    /// `aisc-disbursements-2025-26.xlsx`, `aisc-budget-all-years.csv`.
    pub fn filename(&self) -> String {
        let year = self.year.map_or_else(|| "all-years".to_string(), |year| year.to_string());
        format!("aisc-{}-{year}.{}", self.kind.name(), self.format.extension())
    }

    /// The next bytes of the file; `None` once it is complete. After an error the export is
    /// over (a partial file must not pass for a whole one).
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, ExportError> {
        let outcome = self.next_page().await;
        if outcome.is_err() {
            self.cursor = Cursor::Done;
            self.writer = None;
        }
        outcome
    }

    async fn next_page(&mut self) -> Result<Option<Vec<u8>>, ExportError> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(None);
        };
        let rows = match (&self.cursor, self.kind) {
            (Cursor::Done, _) => None,
            (cursor, ExportKind::Applications) => {
                let after = match cursor {
                    Cursor::Application(day, id) => Some((*day, id.as_str())),
                    _ => None,
                };
                let between = self.year.map(|year| (year.first_day(), year.last_day()));
                let page = applications::applications_export_page(&self.pool, between, after, self.page_rows).await?;
                self.cursor = match page.last() {
                    Some(last) if page.len() as i64 == self.page_rows => {
                        Cursor::Application(last.submitted_on, last.application_id.clone())
                    }
                    _ => Cursor::Done,
                };
                Some(page.into_iter().map(application_cells).collect::<Vec<_>>())
            }
            (cursor, ExportKind::Disbursements) => {
                let after = match cursor {
                    Cursor::Usage(key) => Some(key),
                    _ => None,
                };
                let year = self.year.map(|year| year.to_string());
                let page = applications::usage_export_page(&self.pool, year.as_deref(), after, self.page_rows).await?;
                self.cursor = match page.last() {
                    Some(last) if page.len() as i64 == self.page_rows => Cursor::Usage(last.key()),
                    _ => Cursor::Done,
                };
                Some(page.into_iter().map(usage_cells).collect::<Vec<_>>())
            }
            (_, ExportKind::Budget) => {
                self.cursor = Cursor::Done;
                Some(budget_rows(&self.pool, self.year).await?)
            }
        };
        if let Some(rows) = rows {
            for row in &rows {
                writer.row(row)?;
            }
        }
        if matches!(self.cursor, Cursor::Done) {
            let Some(writer) = self.writer.take() else {
                return Ok(None);
            };
            return Ok(Some(writer.finish()?));
        }
        Ok(Some(writer.take()))
    }
}

fn yes_no(value: bool) -> Cell {
    Cell::text(if value { "yes" } else { "no" })
}

fn application_cells(row: applications::ApplicationRow) -> Vec<Cell> {
    vec![
        Cell::Text(row.application_id),
        Cell::Text(row.status),
        Cell::Text(row.batch_id),
        Cell::Text(row.organisation),
        Cell::Text(row.category),
        Cell::Text(row.sub_type),
        Cell::Text(row.project_title),
        yes_no(row.develops_ai_models),
        yes_no(row.mainland_or_overseas_team),
        Cell::Integer(i64::from(row.team_size)),
        Cell::Integer(i64::from(row.talents)),
        Cell::Rate(i64::from(row.requested_rate_bps)),
        Cell::Date(row.submitted_on),
        Cell::optional(row.assessed_by, Cell::Text),
        Cell::optional(row.total_score, |score| Cell::Integer(i64::from(score))),
        Cell::optional(row.decided_on, Cell::Date),
        Cell::optional(row.approved_rate_bps, |bps| Cell::Rate(i64::from(bps))),
        Cell::optional(row.ceiling_cents, Cell::Money),
        Cell::Money(row.disbursed_cents),
        Cell::optional(row.project_start, Cell::Date),
        Cell::optional(row.project_end, Cell::Date),
        Cell::optional(row.next_report_due, Cell::Date),
    ]
}

fn usage_cells(row: applications::UsageExportRow) -> Vec<Cell> {
    let disbursed = if row.reversed { 0 } else { row.subsidy_cents };
    vec![
        Cell::Text(row.application_id),
        Cell::Text(row.organisation),
        Cell::Text(row.usage_id),
        Cell::Text(row.period),
        Cell::Text(row.service_type),
        Cell::Integer(row.units),
        Cell::Money(row.rate_per_unit_cents),
        Cell::Money(row.gross_cents),
        Cell::Rate(i64::from(row.subsidy_rate_bps)),
        Cell::Money(row.subsidy_cents),
        yes_no(row.reversed),
        Cell::Money(disbursed),
        Cell::Text(row.financial_year),
        Cell::Date(row.charged_on),
        Cell::Time(row.recorded_at),
    ]
}

/// Every budget line §23 plans for the years asked (recorded or not yet), and every line the
/// read model holds for them: planned, received, committed, disbursed, redirected, available
/// (received less committed and redirected, as the KPI dashboard counts it).
async fn budget_rows(pool: &PgPool, year: Option<FinancialYear>) -> Result<Vec<Vec<Cell>>, ProjectionError> {
    let year_text = year.map(|year| year.to_string());
    let recorded = applications::budget_lines(pool, year_text.as_deref()).await?;
    let mut years: Vec<String> = planned_years()
        .filter(|planned| year.is_none_or(|asked| asked == *planned))
        .map(|planned| planned.to_string())
        .chain(recorded.iter().map(|line| line.year.clone()))
        .collect();
    years.sort();
    years.dedup();
    let mut rows = Vec::new();
    for year_name in years {
        let parsed = FinancialYear::parse(&year_name).ok();
        let planned_of = |line: &str| {
            let line = BudgetLine::parse(line)?;
            planned_cash_flow(parsed?, line).map(|money| money.cents())
        };
        let mut lines: Vec<String> = BudgetLine::ALL
            .into_iter()
            .filter(|line| planned_of(line.as_str()).is_some())
            .map(|line| line.as_str().to_string())
            .collect();
        for line in recorded.iter().filter(|line| line.year == year_name) {
            if !lines.contains(&line.line) {
                lines.push(line.line.clone());
            }
        }
        for line in lines {
            let figures = recorded.iter().find(|row| row.year == year_name && row.line == line);
            let (received, committed, disbursed, redirected) = figures.map_or((0, 0, 0, 0), |row| {
                (row.received_cents, row.committed_cents, row.disbursed_cents, row.redirected_cents)
            });
            let planned = planned_of(&line);
            let received_of_planned = planned.filter(|planned| *planned > 0).map(|planned| {
                ((i128::from(received) * 10_000 + i128::from(planned) / 2) / i128::from(planned)) as i64
            });
            rows.push(vec![
                Cell::text(year_name.clone()),
                Cell::Text(line),
                Cell::optional(planned, Cell::Money),
                Cell::Money(received),
                Cell::optional(received_of_planned, Cell::Rate),
                Cell::Money(committed),
                Cell::Money(disbursed),
                Cell::Money(redirected),
                Cell::Money(received - committed - redirected),
            ]);
        }
    }
    Ok(rows)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ExportParams {
    /// A financial year such as 2025-26 (applications: submitted in it; disbursements: charged
    /// to it; budget: its lines); every year when omitted.
    year: Option<String>,
    /// csv or xlsx; overrides `Accept`. Without either: CSV.
    format: Option<String>,
}

/// The format asked by `?format=` (400 when it is neither), else by `Accept` (`None`: nothing
/// it accepts can be served).
fn negotiate(request: &HttpRequest, format: Option<&str>) -> Result<Option<ExportFormat>, ApiError> {
    if let Some(text) = format {
        return ExportFormat::parse(text)
            .map(Some)
            .ok_or_else(|| ApiError::bad_field("format", format!("{text:?} is not csv or xlsx")));
    }
    let Some(accept) = request.headers().get(header::ACCEPT) else {
        return Ok(Some(ExportFormat::Csv));
    };
    let accept = accept.to_str().map_err(|_| ApiError::bad_field("Accept", "is not ASCII text"))?;
    Ok(from_accept(accept))
}

/// The preferred format among the media ranges of an `Accept` header: the highest `q` wins,
/// CSV on a tie; a range with `q=0` refuses what it matches.
fn from_accept(accept: &str) -> Option<ExportFormat> {
    let mut best: Option<(u32, ExportFormat)> = None;
    for format in [ExportFormat::Csv, ExportFormat::Xlsx] {
        let (kind, subtype) = match format {
            ExportFormat::Csv => ("text", "csv"),
            ExportFormat::Xlsx => ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        };
        // The most specific range matching the format decides its quality.
        let mut quality: Option<(u8, u32)> = None;
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|parameter| parameter.trim().strip_prefix("q="))
                .find_map(parse_quality)
                .unwrap_or(1000);
            let specificity = match media.split_once('/') {
                Some((k, s)) if k == kind && s == subtype => 2,
                Some((k, "*")) if k == kind => 1,
                Some(("*", "*")) => 0,
                _ => continue,
            };
            if quality.is_none_or(|(known, _)| specificity > known) {
                quality = Some((specificity, q));
            }
        }
        if let Some((_, q)) = quality
            && q > 0
            && best.is_none_or(|(best_q, _)| q > best_q)
        {
            best = Some((q, format));
        }
    }
    best.map(|(_, format)| format)
}

/// A `q` value in thousandths (`0.5` → 500); `None` when it is not one.
fn parse_quality(text: &str) -> Option<u32> {
    let (whole, fraction) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
    if fraction.len() > 3 || !fraction.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u32>().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

fn not_acceptable(accept: &str) -> HttpResponse {
    let document = ProblemDocument {
        problem_type: "about:blank",
        title: "Not Acceptable",
        status: 406,
        detail: format!(
            "Accept {accept:?} admits neither {} nor {}; ask for one of them, or use ?format=csv|xlsx",
            "text/csv",
            ExportFormat::XLSX_MEDIA_TYPE
        ),
        code: Some("not_acceptable"),
        errors: None,
        current_version: None,
    };
    HttpResponse::NotAcceptable()
        .content_type("application/problem+json")
        .body(serde_json::to_string(&document).unwrap_or_default())
}

async fn export(
    kind: ExportKind,
    request: HttpRequest,
    principal: Principal,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, ApiError> {
    require(&principal, Action::ExportReports)?;
    let params: ExportParams = crate::routes::query(&request)?;
    let year = match params.year.as_deref() {
        None => None,
        Some(text) => Some(FinancialYear::parse(text).map_err(|error| ApiError::bad_field("year", error.to_string()))?),
    };
    let Some(format) = negotiate(&request, params.format.as_deref())? else {
        let accept = request.headers().get(header::ACCEPT).and_then(|value| value.to_str().ok()).unwrap_or("");
        return Ok(not_acceptable(accept));
    };
    let mut export = Export::new(pool.get_ref().clone(), kind, year, format);
    let filename = export.filename();
    // The first page is read before answering, so an unreachable database is still a 503.
    let first = export.next_chunk().await?;
    let body = futures_util::stream::unfold((export, first), move |(mut export, pending)| async move {
        let next = match pending {
            Some(chunk) => Ok(Some(chunk)),
            None => export.next_chunk().await,
        };
        match next {
            Ok(Some(chunk)) => Some((Ok(web::Bytes::from(chunk)), (export, None))),
            Ok(None) => None,
            Err(error) => {
                // The status is sent: the connection is cut, and the client sees a broken file.
                tracing::error!(error = %error, export = kind.name(), "export stopped part way");
                Some((Err(std::io::Error::other(error.to_string())), (export, None)))
            }
        }
    });
    Ok(HttpResponse::Ok()
        .content_type(format.media_type())
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(body))
}

/// `GET /api/v1/exports/applications`: every application (submitted in `year`), one row each.
#[utoipa::path(tag = "exports", params(ExportParams),
    responses(
        (status = 200, description = "CSV or XLSX, as an attachment", content((String = "text/csv"), (String = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"))),
        (status = 400, description = "A malformed year or format", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 403, description = "The role may not export", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 406, description = "Accept admits neither CSV nor XLSX", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = ProblemDocument, content_type = "application/problem+json")))]
#[get("/exports/applications")]
pub async fn export_applications(
    request: HttpRequest,
    principal: Principal,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, ApiError> {
    export(ExportKind::Applications, request, principal, pool).await
}

/// `GET /api/v1/exports/disbursements`: one row per usage charge (of `year`).
#[utoipa::path(tag = "exports", params(ExportParams),
    responses(
        (status = 200, description = "CSV or XLSX, as an attachment", content((String = "text/csv"), (String = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"))),
        (status = 400, description = "A malformed year or format", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 403, description = "The role may not export", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 406, description = "Accept admits neither CSV nor XLSX", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = ProblemDocument, content_type = "application/problem+json")))]
#[get("/exports/disbursements")]
pub async fn export_disbursements(
    request: HttpRequest,
    principal: Principal,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, ApiError> {
    export(ExportKind::Disbursements, request, principal, pool).await
}

/// `GET /api/v1/exports/budget`: per funding year and budget line, against the §23 cash flow.
#[utoipa::path(tag = "exports", params(ExportParams),
    responses(
        (status = 200, description = "CSV or XLSX, as an attachment", content((String = "text/csv"), (String = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"))),
        (status = 400, description = "A malformed year or format", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 403, description = "The role may not export", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 406, description = "Accept admits neither CSV nor XLSX", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = ProblemDocument, content_type = "application/problem+json")))]
#[get("/exports/budget")]
pub async fn export_budget(
    request: HttpRequest,
    principal: Principal,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, ApiError> {
    export(ExportKind::Budget, request, principal, pool).await
}

pub fn configure(config: &mut utoipa_actix_web::service_config::ServiceConfig) {
    config.service(export_applications).service(export_disbursements).service(export_budget);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_picks_the_preferred_format_or_none() {
        let xlsx = ExportFormat::XLSX_MEDIA_TYPE;
        assert_eq!(from_accept("text/csv"), Some(ExportFormat::Csv));
        assert_eq!(from_accept(xlsx), Some(ExportFormat::Xlsx));
        assert_eq!(from_accept("*/*"), Some(ExportFormat::Csv));
        assert_eq!(from_accept("text/*;q=0.5, application/*"), Some(ExportFormat::Xlsx));
        assert_eq!(from_accept(&format!("text/csv;q=0.4, {xlsx};q=0.9")), Some(ExportFormat::Xlsx));
        assert_eq!(from_accept("*/*, text/csv;q=0"), Some(ExportFormat::Xlsx));
        assert_eq!(from_accept("application/json"), None);
        assert_eq!(from_accept("text/html, application/pdf"), None);
        assert_eq!(from_accept("text/csv;q=0"), None);
    }

    #[test]
    fn quality_values_parse_as_rfc_9110_spells_them() {
        assert_eq!(parse_quality("0.5"), Some(500));
        assert_eq!(parse_quality("1"), Some(1000));
        assert_eq!(parse_quality("1.000"), Some(1000));
        assert_eq!(parse_quality("0"), Some(0));
        assert_eq!(parse_quality("1.5"), None);
        assert_eq!(parse_quality("0.1234"), None);
    }
}
