//! Bulk usage import: Cyberport's scheduler posts a month of usage lines as CSV.

use actix_web::{HttpRequest, HttpResponse, post, web};
use aisc_adapters::clock::Clock;
use aisc_domain::command_service::CommandMetadata;
use aisc_domain::subsidy::service::{UsageImportReport, UsageImportRequest};
use aisc_domain::subsidy::usage_import::{ImportMode, RepeatedLines};
use sha2::{Digest, Sha256};

use super::{Scheme, command_failure, domain_refusal};
use crate::authorization::{Action, require};
use crate::command::{CommandContext, read_body_within};
use crate::problem::{ApiError, FieldProblem, ProblemDocument};

/// Lines appended per transaction.
pub const IMPORT_BATCH_LINES: usize = 2_000;

/// The import id when the caller gives none: derived from the file, so posting the same file
/// again is recognised as the same import and charges nothing twice — also when a copy of it
/// has another line ending (CRLF or CR), a byte-order mark, or no final line break. Those do
/// not change what the lines say nor their numbers (blank lines, which do count, are kept).
pub fn import_id_of(csv: &[u8]) -> String {
    let digest = Sha256::digest(normal_form(csv));
    let hex: String = digest.iter().take(8).map(|byte| format!("{byte:02x}")).collect();
    format!("file-{hex}")
}

/// The file with LF line endings, without a UTF-8 byte-order mark, ending with one line break
/// (a file already so is unchanged, so its id is the one it always had).
fn normal_form(csv: &[u8]) -> Vec<u8> {
    let csv = csv.strip_prefix(b"\xef\xbb\xbf").unwrap_or(csv);
    let mut normal = Vec::with_capacity(csv.len() + 1);
    let mut bytes = csv.iter().copied().peekable();
    while let Some(byte) = bytes.next() {
        if byte == b'\r' {
            if bytes.peek() == Some(&b'\n') {
                bytes.next();
            }
            normal.push(b'\n');
        } else {
            normal.push(byte);
        }
    }
    if !normal.is_empty() && normal.last() != Some(&b'\n') {
        normal.push(b'\n');
    }
    normal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_of_a_file_with_other_line_endings_have_its_import_id() {
        let file = "project,service_type,units,period\na1,gpu,10,2025-07\n\na2,gpu,5,2025-07\n";
        let id = import_id_of(file.as_bytes());
        for copy in [
            file.replace('\n', "\r\n"),
            file.replace('\n', "\r"),
            format!("\u{feff}{file}"),
            file.trim_end().to_string(),
        ] {
            assert_eq!(import_id_of(copy.as_bytes()), id, "{copy:?}");
        }
        // Other lines, or other line numbers, are another import.
        assert_ne!(import_id_of(file.replace("10", "11").as_bytes()), id);
        assert_ne!(import_id_of(file.replace("\n\n", "\n").as_bytes()), id);
    }
}

/// The import's treatment of a line repeating another import's charge, from the caller's
/// explicit opt-in (`allow_repeated_lines`, `--allow-repeated-lines`).
pub fn repeated_lines(allow_repeated_lines: bool) -> RepeatedLines {
    if allow_repeated_lines { RepeatedLines::Charge } else { RepeatedLines::Refuse }
}

/// What an import did, line by line (line numbers count the header as line 1): the domain's
/// report, described here so the domain stays free of the API.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct UsageImportView {
    /// The import's id: the one given, or `file-` and 16 hex digits derived from the file.
    pub import_id: String,
    /// `all_or_nothing` or `partial`.
    #[schema(value_type = String, example = "all_or_nothing")]
    pub mode: ImportMode,
    /// `refuse` or `charge`: whether lines repeating another import's charges were refused or
    /// charged.
    #[schema(value_type = String, example = "refuse")]
    pub repeated_lines: RepeatedLines,
    /// Usage lines in the file (the header and blank lines not counted).
    pub lines: usize,
    /// Lines charged by this run.
    pub written: usize,
    /// The lines charged by this run, as ranges `[first, last]` of line numbers.
    pub written_lines: Vec<[usize; 2]>,
    /// Lines an earlier run of the same import id charged.
    pub already_imported: usize,
    /// Those lines, as ranges `[first, last]` of line numbers.
    pub already_imported_lines: Vec<[usize; 2]>,
    /// The refused lines (in `partial` mode; an all-or-nothing import refusing any is a 422).
    pub refused: Vec<RefusedLineView>,
    /// Transactions the written lines went in.
    pub batches: usize,
    /// The first position of $all written, for `after_position` on queries.
    pub first_position: Option<u64>,
    /// The last position of $all written.
    pub last_position: Option<u64>,
}

/// A refused line of an import.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RefusedLineView {
    /// Its line number (the header is line 1).
    pub line: usize,
    /// The application the line names, when it could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The refusal's stable code, e.g. `usage_already_imported`.
    pub code: &'static str,
    pub message: String,
}

impl From<UsageImportReport> for UsageImportView {
    fn from(report: UsageImportReport) -> Self {
        Self {
            import_id: report.import_id,
            mode: report.mode,
            repeated_lines: report.repeated_lines,
            lines: report.lines,
            written: report.written,
            written_lines: report.written_lines,
            already_imported: report.already_imported,
            already_imported_lines: report.already_imported_lines,
            refused: report
                .refused
                .into_iter()
                .map(|refusal| RefusedLineView {
                    line: refusal.line,
                    project: refusal.project,
                    code: refusal.code,
                    message: refusal.message,
                })
                .collect(),
            batches: report.batches,
            first_position: report.first_position,
            last_position: report.last_position,
        }
    }
}

/// A report for the caller: 200 when lines were written (or were already), 422 with every
/// refused line when an all-or-nothing import wrote nothing.
pub fn import_response(report: UsageImportReport) -> Result<HttpResponse, ApiError> {
    if report.mode == ImportMode::AllOrNothing && !report.refused.is_empty() && report.written == 0 {
        return Err(ApiError::Unprocessable {
            code: "import_refused",
            detail: format!(
                "{} of {} lines refused; nothing was written (import {})",
                report.refused.len(),
                report.lines,
                report.import_id
            ),
            errors: report
                .refused
                .iter()
                .map(|refusal| FieldProblem {
                    field: format!("line {}", refusal.line),
                    message: format!("{}: {}", refusal.code, refusal.message),
                })
                .collect(),
        });
    }
    Ok(HttpResponse::Ok().json(UsageImportView::from(report)))
}

/// `POST /api/v1/usage-imports`: imports a CSV file of usage lines
/// (`project,service_type,units,period`) as one operation.
#[utoipa::path(tag = "applications",
    params(
        ("mode" = Option<String>, Query, description = "all_or_nothing (default): one refused line and nothing is written; partial: the accepted lines are written and the refused ones listed"),
        ("import_id" = Option<String>, Query, description = "Names the import (letters, digits, -); running it again charges only the lines not yet charged. Default: derived from the file"),
        ("allow_repeated_lines" = Option<bool>, Query, description = "false (default): a line whose application another import already charged the same service, month and units is refused as usage_already_imported, naming that import and its usage id; true: such a line is charged anyway. Charges recorded on their own (POST …/usage) never make a line a repeat"),
    ),
    request_body(content = String, content_type = "text/csv", description = "Header `project,service_type,units,period`, then one line per charge, e.g. `3f2a…,gpu_node_hour_h800,1200,2025-07`"),
    responses((status = 200, description = "What was written, line by line", body = UsageImportView), (status = 400, body = ProblemDocument), (status = 401, body = ProblemDocument), (status = 403, body = ProblemDocument), (status = 409, body = ProblemDocument), (status = 413, body = ProblemDocument), (status = 422, description = "Refused lines, each with its number; nothing written", body = ProblemDocument), (status = 503, body = ProblemDocument)))]
#[post("/usage-imports")]
pub async fn import_usage(
    request: HttpRequest,
    payload: web::Payload,
    scheme: web::Data<Scheme>,
    clock: web::Data<Clock>,
) -> Result<HttpResponse, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Params {
        mode: Option<String>,
        import_id: Option<String>,
        allow_repeated_lines: Option<bool>,
    }
    let context = CommandContext::from_request(&request).await?;
    let role = require(&context.principal, Action::ChargeUsage)?;
    let params: Params = crate::routes::query(&request)?;
    let mode = ImportMode::parse(params.mode.as_deref().unwrap_or("all_or_nothing")).map_err(domain_refusal)?;
    if let Some(import_id) = &params.import_id {
        crate::input::import_id("import_id", import_id)?;
    }
    let body = read_body_within(payload, crate::limits::RequestLimits::of(&request).import_body_bytes).await?;
    let csv = std::str::from_utf8(&body).map_err(|error| ApiError::bad_field("body", format!("not UTF-8: {error}")))?;
    let import_id = params.import_id.unwrap_or_else(|| import_id_of(&body));
    let meta = CommandMetadata {
        actor: context.principal.name.clone(),
        role: role.as_str().to_string(),
        request_id: context.request_id.clone(),
        correlation_id: context.correlation_id.clone(),
        causation_id: None,
    };
    let import = UsageImportRequest {
        import_id: &import_id,
        csv,
        mode,
        repeated_lines: repeated_lines(params.allow_repeated_lines.unwrap_or(false)),
        today: clock.today(),
        batch_lines: IMPORT_BATCH_LINES,
    };
    let report = scheme.import_usage(import, &meta).await.map_err(|error| command_failure(error, false))?;
    import_response(report)
}

pub fn configure(config: &mut utoipa_actix_web::service_config::ServiceConfig) {
    config.service(import_usage);
}
