//! `GET /api/v1/exports/{applications,disbursements,budget}` and `aisc reports export`: CSV and
//! XLSX of a demo-seeded scheme whose sums equal the API's figures, formula injection made
//! inert, content negotiation, the year filter and the roles.

mod support;

use std::collections::BTreeMap;
use std::process::Command;

use aisc_api::export_formats::ExportFormat;
use aisc_api::routes::exports::{Export, ExportKind};
use aisc_domain::subsidy::values::FinancialYear;
use support::TestApp;
use support::scheme::*;

const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// A response with its body as bytes (XLSX is binary).
struct Download {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Download {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }
}

async fn download(app: &TestApp, role: &str, path: &str, accept: Option<&str>) -> Download {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.expect("connect");
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: {}\r\n",
        app.bearer(role)
    );
    if let Some(accept) = accept {
        request.push_str(&format!("Accept: {accept}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("receive");
    let split = raw.windows(4).position(|window| window == b"\r\n\r\n").expect("head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines.next().and_then(|line| line.split_whitespace().nth(1)).and_then(|code| code.parse().ok());
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    if headers.iter().any(|(name, value)| name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked")) {
        body = dechunk(&body);
    }
    Download { status: status.expect("status"), headers, body }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = body.windows(2).position(|window| window == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&body[..end]).trim(), 16).expect("chunk size");
        if size == 0 {
            break;
        }
        out.extend_from_slice(&body[end + 2..end + 2 + size]);
        body = &body[end + 2 + size + 2..];
    }
    out
}

/// RFC 4180 records, the byte-order mark dropped.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let text = text.strip_prefix('\u{feff}').expect("a byte-order mark");
    let (mut records, mut record, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(character) = chars.next() {
        match (quoted, character) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, other) => field.push(other),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, other) => field.push(other),
        }
    }
    assert!(record.is_empty() && field.is_empty(), "the file ends with a line end");
    records
}

/// The records as maps from heading to value.
fn table(records: &[Vec<String>]) -> Vec<BTreeMap<String, String>> {
    let headings = &records[0];
    records[1..]
        .iter()
        .map(|record| {
            assert_eq!(record.len(), headings.len(), "{record:?}");
            headings.iter().cloned().zip(record.iter().cloned()).collect()
        })
        .collect()
}

/// `1234567.89` → 123456789 cents.
fn cents(text: &str) -> i64 {
    let (whole, fraction) = text.split_once('.').unwrap_or_else(|| panic!("two decimals: {text:?}"));
    assert_eq!(fraction.len(), 2, "{text:?}");
    let sign = if whole.starts_with('-') { -1 } else { 1 };
    sign * (whole.trim_start_matches('-').parse::<i64>().expect("whole") * 100
        + fraction.parse::<i64>().expect("cents"))
}

fn sum(rows: &[BTreeMap<String, String>], column: &str) -> i64 {
    rows.iter().map(|row| cents(&row[column])).sum()
}

/// What Python's zipfile and an XML parser read in an XLSX file: its parts, and the first
/// sheet's cells by heading (text, or a number with its format code). Fails on a formula.
fn read_xlsx(bytes: &[u8]) -> (Vec<String>, Vec<BTreeMap<String, serde_json::Value>>) {
    let path = std::env::temp_dir().join(format!("aisc-export-{}.xlsx", uuid::Uuid::new_v4()));
    std::fs::write(&path, bytes).expect("write xlsx");
    let script = r#"
import json, sys, zipfile
import xml.etree.ElementTree as ET
M = '{http://schemas.openxmlformats.org/spreadsheetml/2006/main}'
with zipfile.ZipFile(sys.argv[1]) as z:
    assert z.testzip() is None, 'a corrupt entry'
    names = z.namelist()
    styles = ET.fromstring(z.read('xl/styles.xml'))
    formats = {f.get('numFmtId'): f.get('formatCode') for f in styles.find(M + 'numFmts')}
    xfs = [x.get('numFmtId') for x in styles.find(M + 'cellXfs')]
    sheet = ET.fromstring(z.read('xl/worksheets/sheet1.xml'))
rows = []
for row in sheet.iter(M + 'row'):
    cells = {}
    for c in row:
        if c.find(M + 'f') is not None:
            sys.exit('a formula in ' + c.get('r'))
        column = c.get('r').rstrip('0123456789')
        if c.get('t') == 'inlineStr':
            cells[column] = {'text': ''.join(c.find(M + 'is').itertext())}
        else:
            number_format = xfs[int(c.get('s', '0'))]
            cells[column] = {'number': c.find(M + 'v').text, 'format': formats.get(number_format, number_format)}
    rows.append(cells)
print(json.dumps({'names': names, 'rows': rows}))
"#;
    let output = Command::new("python3").args(["-c", script]).arg(&path).output().expect("run python3");
    let _ = std::fs::remove_file(&path);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let read: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let names = read["names"].as_array().expect("names").iter().map(|name| name.as_str().unwrap_or("").to_string());
    let rows = read["rows"].as_array().expect("rows");
    let headings: BTreeMap<String, String> = rows[0]
        .as_object()
        .expect("headings")
        .iter()
        .map(|(column, cell)| (column.clone(), cell["text"].as_str().expect("a text heading").to_string()))
        .collect();
    let cells = rows[1..]
        .iter()
        .map(|row| {
            row.as_object()
                .expect("row")
                .iter()
                .map(|(column, cell)| (headings[column].clone(), cell.clone()))
                .collect::<BTreeMap<_, _>>()
        })
        .collect();
    (names.collect(), cells)
}

/// The cents of a money cell of an XLSX row: a number in the HK$ currency format.
fn money_cell(row: &BTreeMap<String, serde_json::Value>, heading: &str) -> i64 {
    let cell = &row[heading];
    assert_eq!(cell["format"], "\"HK$\"#,##0.00", "{heading}: {cell}");
    cents(cell["number"].as_str().expect("a number"))
}

async fn seeded_app() -> TestApp {
    let app = TestApp::spawn().await;
    let output = support::aisc()
        .args(["demo", "seed", "--applications", "40", "--years", "1", "--seed", "11"])
        .env("DATABASE_URL", &app.database.url)
        .output()
        .expect("run aisc demo seed");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    caught_up(&app).await;
    app
}

/// Waits until both read models have applied the whole log.
async fn caught_up(app: &TestApp) {
    let head: i64 = sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM events")
        .fetch_one(&app.database.pool)
        .await
        .expect("head");
    for name in [aisc_projections::applications::NAME, aisc_projections::kpi::NAME] {
        let reached = aisc_projections::runner::wait_for_position(
            &app.database.pool,
            name,
            aisc_domain::event_store::Position(head as u64),
            std::time::Duration::from_secs(60),
        )
        .await
        .expect("wait");
        assert!(reached, "{name} caught up");
    }
}

/// The funding year with the most usage charges.
async fn busiest_year(app: &TestApp) -> String {
    sqlx::query_scalar(
        "SELECT financial_year FROM read_models.usage_view GROUP BY financial_year ORDER BY count(*) DESC LIMIT 1",
    )
    .fetch_one(&app.database.pool)
    .await
    .expect("a year with usage")
}

#[tokio::test]
async fn csv_exports_of_a_seeded_scheme_add_up_to_the_apis_figures() {
    let app = seeded_app().await;
    let year = busiest_year(&app).await;
    let kpi = app.get("finance_officer", &format!("/api/v1/kpis?year={year}")).await;
    assert_eq!(kpi.status, 200, "{}", kpi.body);
    let kpi = kpi.json();
    let line = |name: &str| kpi["budget"].as_array().expect("budget").iter().find(|line| line["line"] == name).cloned();
    let subsidy = line("computing_power_subsidy").expect("the subsidy line");

    // Disbursements: one row per charge of the year; the disbursed column sums to the year's
    // disbursed subsidy.
    let csv = download(&app, "finance_officer", &format!("/api/v1/exports/disbursements?year={year}"), None).await;
    assert_eq!(csv.status, 200, "{}", csv.text());
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(
        csv.header("content-disposition"),
        Some(format!("attachment; filename=\"aisc-disbursements-{year}.csv\"").as_str())
    );
    let records = parse_csv(&csv.text());
    assert_eq!(
        records[0].join(","),
        "Application,Organisation,Usage,Month,Service,Units,Rate per unit (HK$),Gross (HK$),Subsidy rate (%),\
         Subsidy (HK$),Reversed,Disbursed (HK$),Funding year,Business date,Recorded at (UTC)"
    );
    let rows = table(&records);
    let charges: i64 = sqlx::query_scalar("SELECT count(*) FROM read_models.usage_view WHERE financial_year = $1")
        .bind(&year)
        .fetch_one(&app.database.pool)
        .await
        .expect("count");
    assert!(charges > 0);
    assert_eq!(rows.len() as i64, charges, "one row per usage charge");
    assert_eq!(sum(&rows, "Disbursed (HK$)"), subsidy["disbursed_cents"].as_i64().expect("disbursed"));
    for row in &rows {
        assert_eq!(row["Funding year"], year, "the year filter");
        assert_eq!(row["Business date"], format!("{}-01", row["Month"]), "a charge takes effect in its month");
        assert!(row["Recorded at (UTC)"].ends_with('Z') && row["Recorded at (UTC)"].len() == 20, "{row:?}");
        assert!(!row["Organisation"].is_empty());
        let (gross, subsidy, rate) =
            (cents(&row["Gross (HK$)"]), cents(&row["Subsidy (HK$)"]), cents(&row["Subsidy rate (%)"]));
        assert!(rate > 0 && rate <= 9_000, "a percentage with two decimals: {row:?}");
        assert_eq!(gross, row["Units"].parse::<i64>().expect("units") * cents(&row["Rate per unit (HK$)"]));
        assert!(subsidy <= gross);
    }
    // Every year: this year's rows and the others'.
    let all = download(&app, "auditor", "/api/v1/exports/disbursements", Some("text/csv")).await;
    assert_eq!(all.header("content-disposition"), Some("attachment; filename=\"aisc-disbursements-all-years.csv\""));
    let all_rows = table(&parse_csv(&all.text()));
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM read_models.usage_view")
        .fetch_one(&app.database.pool)
        .await
        .expect("count");
    assert_eq!(all_rows.len() as i64, total);
    // Paged in the export's order, as the index reads it: no row lost or repeated across pages.
    let mut keys: Vec<(String, String, String, String)> = all_rows
        .iter()
        .map(|row| {
            (row["Funding year"].clone(), row["Month"].clone(), row["Application"].clone(), row["Usage"].clone())
        })
        .collect();
    let exported = keys.clone();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), exported.len(), "no charge twice");

    // Applications: those submitted in the year, as the list counts them.
    let list = app.get("finance_officer", &format!("/api/v1/applications?financial_year={year}&limit=1")).await.json();
    let csv = download(&app, "committee_secretariat", &format!("/api/v1/exports/applications?year={year}"), None).await;
    assert_eq!(csv.status, 200);
    let applications = table(&parse_csv(&csv.text()));
    assert_eq!(applications.len() as i64, list["total"].as_i64().expect("total"));
    let first_year = FinancialYear::parse(&year).expect("year");
    for row in &applications {
        let submitted = chrono::NaiveDate::parse_from_str(&row["Submitted on"], "%Y-%m-%d").expect("an ISO date");
        assert!(submitted >= first_year.first_day() && submitted <= first_year.last_day());
        assert!(["yes", "no"].contains(&row["Develops AI models"].as_str()));
    }
    let all_applications =
        table(&parse_csv(&download(&app, "administrator", "/api/v1/exports/applications", None).await.text()));
    let disbursed_everywhere: i64 =
        sqlx::query_scalar("SELECT coalesce(sum(disbursed_cents), 0)::bigint FROM read_models.applications_view")
            .fetch_one(&app.database.pool)
            .await
            .expect("sum");
    assert_eq!(sum(&all_applications, "Disbursed (HK$)"), disbursed_everywhere);

    // Budget: each line of the year against §23, equal to the dashboard's figures.
    let csv = download(&app, "finance_officer", &format!("/api/v1/exports/budget?year={year}"), None).await;
    let budget = table(&parse_csv(&csv.text()));
    assert_eq!(budget.len(), 3, "the three lines §23 plans: {budget:?}");
    for row in &budget {
        assert_eq!(row["Funding year"], year);
        let Some(figures) = line(&row["Budget line"]) else {
            assert_eq!(cents(&row["Received (HK$)"]), 0, "a line the dashboard does not show has nothing: {row:?}");
            continue;
        };
        for (column, field) in [
            ("Received (HK$)", "received_cents"),
            ("Committed (HK$)", "committed_cents"),
            ("Disbursed (HK$)", "disbursed_cents"),
            ("Redirected (HK$)", "redirected_cents"),
            ("Available (HK$)", "left_cents"),
        ] {
            assert_eq!(cents(&row[column]), figures[field].as_i64().expect("figure"), "{column} of {row:?}");
        }
    }
    let planned = budget.iter().find(|row| row["Budget line"] == "computing_power_subsidy").expect("subsidy line");
    let expected_plan = aisc_domain::subsidy::funding::planned_cash_flow(
        first_year,
        aisc_domain::subsidy::funding::BudgetLine::ComputingPowerSubsidy,
    )
    .expect("planned")
    .cents();
    assert_eq!(cents(&planned["Planned in §23 (HK$)"]), expected_plan);
    let all_budget = table(&parse_csv(&download(&app, "finance_officer", "/api/v1/exports/budget", None).await.text()));
    assert!(all_budget.len() >= 9, "three years of §23, three lines each: {all_budget:?}");

    // Read in small pages, the exports are the same files (no row lost or repeated where
    // pages meet).
    for (kind, path) in [
        (ExportKind::Disbursements, "/api/v1/exports/disbursements"),
        (ExportKind::Applications, "/api/v1/exports/applications"),
    ] {
        let whole = download(&app, "finance_officer", path, None).await.body;
        let mut export = Export::new(app.database.pool.clone(), kind, None, ExportFormat::Csv).with_page_rows(7);
        let mut paged = Vec::new();
        let mut chunks = 0;
        while let Some(chunk) = export.next_chunk().await.expect("chunk") {
            paged.extend(chunk);
            chunks += 1;
        }
        assert!(chunks > 3, "{path}: read in pages");
        assert_eq!(String::from_utf8_lossy(&paged), String::from_utf8_lossy(&whole), "{path}");
    }

    xlsx_exports_hold_the_same_figures(&app, &year, &rows, &applications, &budget).await;
    the_command_line_writes_the_same_exports(&app, &year).await;
    app.stop().await;
}

fn aisc(app: &TestApp, args: &[&str]) -> std::process::Output {
    support::aisc().args(args).env("DATABASE_URL", &app.database.url).output().expect("run aisc")
}

/// `aisc reports export`: the API's files, to standard output or a file.
async fn the_command_line_writes_the_same_exports(app: &TestApp, year: &str) {
    let output = aisc(app, &["reports", "export", "disbursements", "--year", year]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let api = download(app, "finance_officer", &format!("/api/v1/exports/disbursements?year={year}"), None).await;
    assert_eq!(String::from_utf8_lossy(&output.stdout), api.text(), "CSV on standard output, as the API's");

    let directory = std::env::temp_dir().join(format!("aisc-exports-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&directory).expect("directory");
    let file = directory.join("budget.xlsx");
    let path = file.to_str().expect("path");
    let output = aisc(app, &["reports", "export", "budget", "--year", year, "--format", "xlsx", "--out", path]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.stdout.is_empty(), "the file is at --out");
    let written = std::fs::read(&file).expect("the export");
    let (_, from_cli) = read_xlsx(&written);
    let api = download(app, "finance_officer", &format!("/api/v1/exports/budget?year={year}&format=xlsx"), None).await;
    assert_eq!(from_cli, read_xlsx(&api.body).1, "the same cells as the API's");
    assert!(!directory.join("budget.xlsx.partial").exists(), "renamed once complete");
    // XLSX to a standard output that is not a terminal (a pipe, here) is the file itself.
    let output = aisc(app, &["reports", "export", "applications", "--format", "xlsx"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(
        read_xlsx(&output.stdout).1.len(),
        table(&parse_csv(&download(app, "auditor", "/api/v1/exports/applications", None).await.text())).len()
    );
    let _ = std::fs::remove_dir_all(&directory);

    // Bad arguments: one line and exit 2.
    for args in [
        &["reports", "export", "budget", "--year", "2025"][..],
        &["reports", "export", "ledger"][..],
        &["reports", "export", "budget", "--format", "pdf"][..],
    ] {
        let output = aisc(app, args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.trim().lines().count() <= 3, "{args:?}: {stderr}");
    }
    let output = aisc(app, &["reports", "export", "budget", "--year", "2025"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.trim().lines().count() == 1 && stderr.contains("--year"), "{stderr}");
}

/// The XLSX files of the same exports: a valid zip of the workbook's parts, the same rows,
/// money in numeric cells in the HK$ currency format, rates as percentages, dates as dates.
async fn xlsx_exports_hold_the_same_figures(
    app: &TestApp,
    year: &str,
    disbursements: &[BTreeMap<String, String>],
    applications: &[BTreeMap<String, String>],
    budget: &[BTreeMap<String, String>],
) {
    let xlsx =
        download(app, "finance_officer", &format!("/api/v1/exports/disbursements?year={year}&format=xlsx"), None).await;
    assert_eq!(xlsx.status, 200);
    assert_eq!(xlsx.header("content-type"), Some(XLSX));
    assert_eq!(
        xlsx.header("content-disposition"),
        Some(format!("attachment; filename=\"aisc-disbursements-{year}.xlsx\"").as_str())
    );
    let (parts, sheet) = read_xlsx(&xlsx.body);
    for part in [
        "[Content_Types].xml",
        "_rels/.rels",
        "xl/workbook.xml",
        "xl/_rels/workbook.xml.rels",
        "xl/styles.xml",
        "xl/worksheets/sheet1.xml",
    ] {
        assert!(parts.iter().any(|name| name == part), "{part} in {parts:?}");
    }
    assert_eq!(sheet.len(), disbursements.len());
    for (cells, csv) in sheet.iter().zip(disbursements) {
        for heading in ["Rate per unit (HK$)", "Gross (HK$)", "Subsidy (HK$)", "Disbursed (HK$)"] {
            assert_eq!(money_cell(cells, heading), cents(&csv[heading]), "{heading}");
        }
        assert_eq!(cells["Subsidy rate (%)"]["format"], "10", "the built-in 0.00% format");
        let fraction: String = cells["Subsidy rate (%)"]["number"].as_str().expect("rate").replace('.', "");
        assert_eq!(fraction.parse::<i64>().expect("rate"), cents(&csv["Subsidy rate (%)"]), "70.00 % is 0.7000");
        assert_eq!(cells["Business date"]["format"], "yyyy-mm-dd");
        assert_eq!(cells["Recorded at (UTC)"]["format"], "yyyy-mm-dd hh:mm:ss");
        assert_eq!(cells["Organisation"]["text"], csv["Organisation"].as_str());
        assert_eq!(cells["Units"]["number"], csv["Units"].as_str());
    }
    let by_accept =
        download(app, "committee_secretariat", &format!("/api/v1/exports/applications?year={year}"), Some(XLSX)).await;
    assert_eq!(by_accept.header("content-type"), Some(XLSX), "chosen by Accept");
    let (_, sheet) = read_xlsx(&by_accept.body);
    assert_eq!(sheet.len(), applications.len());
    let budget_xlsx = download(app, "auditor", &format!("/api/v1/exports/budget?year={year}&format=xlsx"), None).await;
    let (_, sheet) = read_xlsx(&budget_xlsx.body);
    assert_eq!(sheet.len(), budget.len());
    for (cells, csv) in sheet.iter().zip(budget) {
        for heading in
            ["Planned in §23 (HK$)", "Received (HK$)", "Committed (HK$)", "Disbursed (HK$)", "Available (HK$)"]
        {
            assert_eq!(money_cell(cells, heading), cents(&csv[heading]), "{heading}");
        }
    }
}

#[tokio::test]
async fn formulas_are_inert_and_bad_requests_are_refused() {
    let app = TestApp::spawn().await;
    let scheme = scheme(&app.database).await;
    set_up(&scheme, hkd(857_000_000)).await;
    let mut submission = submission("=1+2 a title that looks like a sum");
    submission.organisation = "=HYPERLINK(\"http://evil.example\",\"Click, for details\")".into();
    let submit = aisc_domain::subsidy::application::SubmitApplication { application_id: "x1".into(), submission };
    act(&scheme, &submit, "intake-1", "intake_officer", day(2025, 5, 2)).await.expect("submit");
    caught_up(&app).await;

    let csv = download(&app, "finance_officer", "/api/v1/exports/applications", None).await;
    let text = csv.text();
    assert!(
        text.contains(r#""'=HYPERLINK(""http://evil.example"",""Click, for details"")""#),
        "the organisation is inert text: {text}"
    );
    assert!(text.contains("'=1+2 a title"), "{text}");
    let rows = table(&parse_csv(&text));
    assert_eq!(rows[0]["Organisation"], "'=HYPERLINK(\"http://evil.example\",\"Click, for details\")");
    // In XLSX the text is an inline string, never a formula (`read_xlsx` fails on one), and
    // kept as written.
    let xlsx = download(&app, "finance_officer", "/api/v1/exports/applications?format=xlsx", None).await;
    let (_, sheet) = read_xlsx(&xlsx.body);
    assert_eq!(sheet[0]["Organisation"]["text"], "=HYPERLINK(\"http://evil.example\",\"Click, for details\")");
    assert_eq!(sheet[0]["Project title"]["text"], "=1+2 a title that looks like a sum");

    // Negotiation: 400 for an unknown format, 406 for an Accept neither format meets.
    let bad = download(&app, "finance_officer", "/api/v1/exports/applications?format=pdf", None).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.header("content-type"), Some("application/problem+json"));
    let problem: serde_json::Value = serde_json::from_slice(&bad.body).expect("problem");
    assert_eq!(problem["errors"][0]["field"], "format");
    let refused = download(&app, "finance_officer", "/api/v1/exports/budget", Some("application/json")).await;
    assert_eq!(refused.status, 406);
    assert_eq!(refused.header("content-type"), Some("application/problem+json"));
    let problem: serde_json::Value = serde_json::from_slice(&refused.body).expect("problem");
    assert_eq!((problem["status"].as_u64(), problem["code"].as_str()), (Some(406), Some("not_acceptable")));
    let zero = download(&app, "finance_officer", "/api/v1/exports/budget", Some("text/csv;q=0")).await;
    assert_eq!(zero.status, 406);
    let preferred =
        download(&app, "finance_officer", "/api/v1/exports/budget", Some(&format!("text/csv;q=0.5, {XLSX}"))).await;
    assert_eq!(preferred.header("content-type"), Some(XLSX));
    let overridden =
        download(&app, "finance_officer", "/api/v1/exports/budget?format=csv", Some("application/json")).await;
    assert_eq!(overridden.status, 200, "?format= wins over Accept");

    // The year is validated; unknown parameters are refused.
    for (query, field) in [("year=2025", "year"), ("year=2025-27", "year"), ("colour=red", "colour")] {
        let bad = download(&app, "finance_officer", &format!("/api/v1/exports/disbursements?{query}"), None).await;
        assert_eq!(bad.status, 400, "{query}");
        let problem: serde_json::Value = serde_json::from_slice(&bad.body).expect("problem");
        assert_eq!(problem["errors"][0]["field"], field, "{query}: {problem}");
    }

    // Roles: finance and programme staff, auditors and administrators; not intake officers or
    // assessors; nobody without a token.
    for role in ["finance_officer", "committee_secretariat", "auditor", "administrator"] {
        assert_eq!(download(&app, role, "/api/v1/exports/budget", None).await.status, 200, "{role}");
    }
    for role in ["intake_officer", "assessor"] {
        let refused = download(&app, role, "/api/v1/exports/disbursements", None).await;
        assert_eq!(refused.status, 403, "{role}");
        assert_eq!(refused.header("content-type"), Some("application/problem+json"));
    }
    let anonymous = support::http(app.port, "GET", "/api/v1/exports/budget", &[], None).await;
    assert_eq!(anonymous.status, 401);
    app.stop().await;
}
