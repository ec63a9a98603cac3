//! Bulk usage import on PostgreSQL: every line validated and refused with its number, nothing
//! written in all-or-nothing mode, exactly the accepted lines in partial mode, batches, a rerun
//! that charges nothing twice, a race with single charges, the HTTP and CLI paths, and lines
//! another import already charged refused naming it unless repeats are allowed.

mod support;

use aisc_adapters::PostgresEventStore;
use aisc_domain::event_store::{EventStore, ExpectedVersion, NewEvent, PositionRange, ReadDirection, StreamId};
use aisc_domain::subsidy::application::SignAgreement;
use aisc_domain::subsidy::service::{UsageImportReport, UsageImportRequest};
use aisc_domain::subsidy::usage_import::{ImportMode, RepeatedLines};
use aisc_domain::subsidy::values::Money;
use chrono::NaiveDate;
use support::TestDatabase;
use support::scheme::*;

const GPU: &str = "gpu_node_hour_h800";

/// Three applications with signed agreements (1,000 GPU node-hours a month, July to December
/// 2025, 70 % of HK$42.50 a node-hour, a progress report due on `report_due`) and one
/// submitted and eligible, not approved.
async fn scheme_with_agreements(database: &TestDatabase, report_due: NaiveDate) -> Scheme {
    let scheme = scheme(database).await;
    set_up(&scheme, hkd(857_000_000)).await;
    for id in ["a1", "a2", "a3", "a4"] {
        submitted(&scheme, id).await;
    }
    ready_for_committee(&scheme, &["a1", "a2", "a3"]).await;
    for id in ["a1", "a2", "a3"] {
        let approve = approval(id, None);
        act(&scheme, &approve, "sec-1", "committee_secretariat", committee_day()).await.expect("approve");
        let agreement = SignAgreement {
            application_id: id.into(),
            signed_on: day(2025, 6, 30),
            reporting_due_dates: vec![report_due],
        };
        act(&scheme, &agreement, "sec-1", "committee_secretariat", day(2025, 6, 30)).await.expect("agreement");
    }
    scheme
}

fn today() -> NaiveDate {
    day(2025, 8, 5)
}

fn request<'a>(import_id: &'a str, csv: &'a str, mode: ImportMode, batch_lines: usize) -> UsageImportRequest<'a> {
    UsageImportRequest { import_id, csv, mode, repeated_lines: RepeatedLines::Refuse, today: today(), batch_lines }
}

async fn import(scheme: &Scheme, request: UsageImportRequest<'_>) -> UsageImportReport {
    scheme.import_usage(request, &meta("fin-1", "finance_officer")).await.expect("import")
}

/// Lines 2 and 3 are valid; 4 to 7 each fail for a different reason (a4 is not approved).
const MIXED: &str = "project,service_type,units,period
a1,gpu_node_hour_h800,400,2025-07
a2,gpu_node_hour_h800,300,2025-07
a3,gpu_node_hour_h800,abc,2025-07
nobody,gpu_node_hour_h800,10,2025-07
a1,gpu_node_hour_h800,700,2025-07
a4,gpu_node_hour_h800,10,2025-07
";

fn refused_codes(report: &UsageImportReport) -> Vec<(usize, &'static str)> {
    report.refused.iter().map(|refusal| (refusal.line, refusal.code)).collect()
}

const MIXED_REFUSALS: [(usize, &str); 4] =
    [(4, "invalid_line"), (5, "unknown_application"), (6, "units_above_allocation"), (7, "wrong_stage")];

/// The applications with signed agreements of [`scheme_with_agreements`].
const SIGNED: [&str; 3] = ["a1", "a2", "a3"];

/// The subsidy disbursed in 2025-26 to `applications`: the sum of their own figures (the
/// funding year's stream no longer records disbursements; its total is the read model's).
async fn disbursed(scheme: &Scheme, applications: &[&str]) -> Money {
    let mut cents = 0;
    for id in applications {
        let (state, _) = scheme.application_state(id).await.expect("application");
        cents += disbursed_in(&state, "2025-26").cents();
    }
    Money::from_cents(cents)
}

#[tokio::test]
async fn an_invalid_line_refuses_the_whole_import_with_its_line_number_and_nothing_is_written() {
    let database = TestDatabase::create().await;
    let scheme = scheme_with_agreements(&database, day(2026, 1, 15)).await;
    let store = PostgresEventStore::new(database.pool.clone());
    let head_before = store.head_position().await.expect("head");

    let report = import(&scheme, request("july-1", MIXED, ImportMode::AllOrNothing, 100)).await;

    assert_eq!(refused_codes(&report), MIXED_REFUSALS.to_vec());
    assert_eq!(report.lines, 6);
    assert_eq!((report.written, report.batches), (0, 0));
    assert!(report.written_lines.is_empty());
    assert!(report.refused[2].message.contains("700"), "{}", report.refused[2].message);
    assert_eq!(store.head_position().await.expect("head"), head_before, "nothing was appended");
    assert_eq!(disbursed(&scheme, &SIGNED).await, Money::ZERO);
    database.drop_database().await;
}

#[tokio::test]
async fn partial_mode_writes_exactly_the_accepted_lines_and_a_rerun_charges_nothing_twice() {
    let database = TestDatabase::create().await;
    let scheme = scheme_with_agreements(&database, day(2026, 1, 15)).await;

    let report = import(&scheme, request("july-1", MIXED, ImportMode::Partial, 100)).await;
    assert_eq!(report.written, 2);
    assert_eq!(report.written_lines, vec![[2, 3]]);
    assert_eq!(refused_codes(&report), MIXED_REFUSALS.to_vec());
    assert_eq!(report.batches, 1);
    assert!(report.first_position.is_some() && report.first_position <= report.last_position);

    let (a1, _) = scheme.application_state("a1").await.expect("a1");
    let charged = a1.usage.get("july-1-2").expect("line 2 charged to a1 under its usage id");
    assert_eq!(charged.units, 400);
    // 400 + 300 node-hours at HK$42.50, 70 % subsidised.
    assert_eq!(disbursed(&scheme, &SIGNED).await, Money::from_cents(700 * 4_250 * 70 / 100));

    let rerun = import(&scheme, request("july-1", MIXED, ImportMode::Partial, 100)).await;
    assert_eq!((rerun.written, rerun.already_imported), (0, 2));
    assert_eq!(rerun.already_imported_lines, vec![[2, 3]]);
    assert_eq!(refused_codes(&rerun), MIXED_REFUSALS.to_vec());
    assert_eq!(disbursed(&scheme, &SIGNED).await, Money::from_cents(700 * 4_250 * 70 / 100), "nothing charged twice");

    // The allocation is cumulative across imports and within a file: 400 + 600 fits, 1 more does not.
    let august =
        "project,service_type,units,period\na1,gpu_node_hour_h800,600,2025-07\na1,gpu_node_hour_h800,1,2025-07\n";
    let more = import(&scheme, request("july-2", august, ImportMode::Partial, 100)).await;
    assert_eq!(more.written_lines, vec![[2, 2]]);
    assert_eq!(refused_codes(&more), vec![(3, "units_above_allocation")]);
    database.drop_database().await;
}

#[tokio::test]
async fn lines_are_appended_in_batches_each_one_transaction_and_the_log_verifies() {
    let database = TestDatabase::create().await;
    let scheme = scheme_with_agreements(&database, day(2026, 1, 15)).await;
    let mut csv = String::from("project,service_type,units,period\n");
    for month in ["2025-07", "2025-08", "2025-09", "2025-10", "2025-11", "2025-12"] {
        for (n, id) in ["a1", "a2", "a3"].iter().enumerate() {
            csv.push_str(&format!("{id},{GPU},{},{month}\n", 100 * (n + 1)));
        }
    }
    let import_day =
        UsageImportRequest { today: day(2026, 1, 5), ..request("h2-2025", &csv, ImportMode::AllOrNothing, 4) };
    let report = import(&scheme, import_day).await;
    assert!(report.refused.is_empty(), "{:?}", report.refused);
    assert_eq!(report.written, 18);
    assert_eq!(report.written_lines, vec![[2, 19]]);
    assert_eq!(report.batches, 5, "18 lines in batches of 4");

    let store = PostgresEventStore::new(database.pool.clone());
    let mut charges = Vec::new();
    for id in ["a1", "a2", "a3"] {
        let stream = StreamId::parse(format!("application-{id}")).expect("stream");
        let events = store.read_stream(&stream, None, ReadDirection::Forward, 1_000).await.expect("application");
        charges.extend(events.into_iter().filter(|event| event.event_type == "UsageCharged"));
    }
    assert_eq!(charges.len(), 18);
    // Each batch is one transaction: its events share the transaction's part of the position.
    let mut transactions: Vec<u64> = charges.iter().map(|event| event.position.0 >> 20).collect();
    transactions.sort_unstable();
    transactions.dedup();
    assert_eq!(transactions.len(), 5);
    // The import appends to the applications' streams only: the funding year holds its receipt
    // and the three commitments.
    let budget = StreamId::parse("budget-2025-26").expect("stream");
    assert_eq!(store.stream_version(&budget).await.expect("budget"), Some(3));
    let units: u64 = (1..=3).map(|n| 100 * n * 6).sum();
    assert_eq!(disbursed(&scheme, &SIGNED).await, Money::from_cents(units as i64 * 4_250 * 70 / 100));
    let verified = store.verify(PositionRange::default()).await.expect("verify");
    assert!(verified.first_broken.is_none(), "{verified:?}");
    database.drop_database().await;
}

/// Charges are decided on the application's stream, so the import races single charges to
/// the same application (a1): each conflict is decided again on fresh state.
#[tokio::test]
async fn an_import_racing_single_charges_on_the_same_application_charges_every_line_once() {
    let database = TestDatabase::create().await;
    let scheme = std::sync::Arc::new(scheme_with_agreements(&database, day(2026, 1, 15)).await);
    let mut csv = String::from("project,service_type,units,period\n");
    for month in ["2025-07", "2025-08", "2025-09"] {
        for id in ["a1", "a2"] {
            csv.push_str(&format!("{id},{GPU},100,{month}\n"));
        }
    }
    // On 2025-10-05 every month charged has begun.
    let charge_day = day(2025, 10, 5);
    let singles = {
        let scheme = scheme.clone();
        tokio::spawn(async move {
            for (n, month) in ["2025-07", "2025-08", "2025-09", "2025-10"].iter().enumerate() {
                let charge = usage("a1", &format!("single-{n}"), month, 50);
                act(&scheme, &charge, "fin-2", "finance_officer", charge_day).await.expect("single charge");
            }
        })
    };
    let race = UsageImportRequest { today: charge_day, ..request("race", &csv, ImportMode::AllOrNothing, 1) };
    let report = import(&scheme, race).await;
    singles.await.expect("singles");
    assert!(report.refused.is_empty(), "{:?}", report.refused);
    assert_eq!(report.written + report.already_imported, 6);
    assert_eq!(report.written, 6);
    let total_units = 6 * 100 + 4 * 50;
    assert_eq!(disbursed(&scheme, &SIGNED).await, Money::from_cents(total_units * 4_250 * 70 / 100));
    for (id, lines) in [("a1", 3 + 4), ("a2", 3), ("a3", 0)] {
        let (state, _) = scheme.application_state(id).await.expect("state");
        assert_eq!(state.usage.len(), lines, "{id}");
    }
    database.drop_database().await;
}

#[tokio::test]
async fn the_http_path_answers_422_with_each_refused_line_or_the_report() {
    let app = support::TestApp::spawn().await;
    let scheme = scheme(&app.database).await;
    set_up(&scheme, hkd(857_000_000)).await;
    for id in ["a1", "a2"] {
        submitted(&scheme, id).await;
    }
    ready_for_committee(&scheme, &["a1", "a2"]).await;
    for id in ["a1", "a2"] {
        let approve = approval(id, None);
        act(&scheme, &approve, "sec-1", "committee_secretariat", committee_day()).await.expect("approve");
        let agreement = SignAgreement {
            application_id: id.into(),
            signed_on: day(2025, 6, 30),
            reporting_due_dates: vec![day(2026, 1, 15)],
        };
        act(&scheme, &agreement, "sec-1", "committee_secretariat", day(2025, 6, 30)).await.expect("agreement");
    }
    app.set_day(2025, 8, 5);
    let csv =
        "project,service_type,units,period\na1,gpu_node_hour_h800,400,2025-07\na2,gpu_node_hour_h800,-1,2025-07\n";
    let headers = [("Content-Type", "text/csv")];

    let refused = app.post("finance_officer", "/api/v1/usage-imports", &headers, csv).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    let problem = refused.json();
    assert_eq!(problem["code"], "import_refused");
    assert_eq!(problem["errors"][0]["field"], "line 3");
    assert!(problem["errors"][0]["message"].as_str().unwrap_or_default().contains("units"), "{problem}");
    assert_eq!(disbursed(&scheme, &["a1", "a2"]).await, Money::ZERO);

    let forbidden = app.post("intake_officer", "/api/v1/usage-imports", &headers, csv).await;
    assert_eq!(forbidden.status, 403);
    let bad_mode = app.post("finance_officer", "/api/v1/usage-imports?mode=some", &headers, csv).await;
    assert_eq!(bad_mode.status, 422, "{}", bad_mode.body);

    let partial = app.post("finance_officer", "/api/v1/usage-imports?mode=partial", &headers, csv).await;
    assert_eq!(partial.status, 200, "{}", partial.body);
    let report = partial.json();
    assert_eq!(report["written"], 1);
    assert_eq!(report["written_lines"], serde_json::json!([[2, 2]]));
    assert_eq!(report["refused"][0]["line"], 3);
    // Without an import id, the same file is the same import: posting it again charges nothing.
    let again = app.post("finance_officer", "/api/v1/usage-imports?mode=partial", &headers, csv).await.json();
    assert_eq!((again["written"].clone(), again["already_imported"].clone()), (0.into(), 1.into()));
    assert_eq!(again["import_id"], report["import_id"]);
    app.stop().await;
}

#[tokio::test]
async fn the_cli_prints_the_report_and_exits_1_naming_the_refused_line() {
    let database = TestDatabase::create().await;
    // The command line imports on the real date: a report due in 2099 is not overdue then.
    let scheme = scheme_with_agreements(&database, day(2099, 1, 15)).await;
    let directory = std::env::temp_dir().join(format!("aisc-import-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&directory).expect("directory");
    let file = directory.join("usage.csv");
    std::fs::write(&file, "project,service_type,units,period\na1,gpu_node_hour_h800,400,2025-07\na2,cpu,1,2025-07\n")
        .expect("write");
    let run = |mode: &str| {
        let output = support::aisc()
            .args(["import", "usage", "--file", file.to_str().unwrap_or_default(), "--actor", "scheduler-feed"])
            .args(["--mode", mode, "--import-id", "cli-1"])
            .env("DATABASE_URL", &database.url)
            .output()
            .expect("run aisc");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run("all-or-nothing");
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("line 3: no_rate_in_force"), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(report["written"], 0);

    let (code, stdout, _) = run("partial");
    assert_eq!(code, Some(1));
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(report["written_lines"], serde_json::json!([[2, 2]]));
    let (a1, _) = scheme.application_state("a1").await.expect("a1");
    let charged = a1.usage.get("cli-1-2").expect("charged");
    assert_eq!(charged.units, 400);
    let _ = std::fs::remove_dir_all(&directory);
    database.drop_database().await;
}

#[tokio::test]
async fn a_copy_of_an_imported_file_with_other_line_endings_charges_nothing_twice() {
    let database = TestDatabase::create().await;
    let scheme = scheme_with_agreements(&database, day(2099, 1, 15)).await;
    let directory = std::env::temp_dir().join(format!("aisc-import-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&directory).expect("directory");
    let lines =
        "project,service_type,units,period\na1,gpu_node_hour_h800,400,2025-07\na2,gpu_node_hour_h800,300,2025-07\n";
    let import = |name: &str, content: String| {
        let file = directory.join(name);
        std::fs::write(&file, content).expect("write");
        // No --import-id: the id is derived from the file.
        let output = support::aisc()
            .args(["import", "usage", "--file", file.to_str().unwrap_or_default(), "--actor", "scheduler-feed"])
            .env("DATABASE_URL", &database.url)
            .output()
            .expect("run aisc");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_str::<serde_json::Value>(&String::from_utf8_lossy(&output.stdout)).expect("JSON report")
    };
    let first = import("usage.csv", lines.to_string());
    assert_eq!(first["written"], 2);
    // The same file saved on Windows, with a byte-order mark: the same import, nothing charged.
    let copy = import("usage-windows.csv", format!("\u{feff}{}", lines.replace('\n', "\r\n")));
    assert_eq!((copy["import_id"].clone(), copy["written"].clone()), (first["import_id"].clone(), 0.into()));
    assert_eq!(copy["already_imported"], 2);
    for (id, units) in [("a1", 400), ("a2", 300)] {
        let (state, _) = scheme.application_state(id).await.expect("state");
        assert_eq!(state.usage.lines().values().map(|line| line.units).collect::<Vec<_>>(), vec![units], "{id}");
    }
    let _ = std::fs::remove_dir_all(&directory);
    database.drop_database().await;
}

/// Two lines a scheduler's file charges for July, and the subsidy they disburse.
const JULY: &str =
    "project,service_type,units,period\na1,gpu_node_hour_h800,400,2025-07\na2,gpu_node_hour_h800,300,2025-07\n";
const JULY_SUBSIDY_CENTS: i64 = 700 * 4_250 * 70 / 100;

#[tokio::test]
async fn the_same_lines_imported_under_another_import_id_are_refused_naming_the_first_unless_allowed() {
    let database = TestDatabase::create().await;
    let scheme = scheme_with_agreements(&database, day(2026, 1, 15)).await;
    let store = PostgresEventStore::new(database.pool.clone());
    let first = import(&scheme, request("july-1", JULY, ImportMode::AllOrNothing, 100)).await;
    assert_eq!(first.written_lines, vec![[2, 3]]);

    // The same file again under another id (a re-export, a copy renamed): every line repeats
    // what july-1 charged, so all-or-nothing writes nothing and names july-1's lines.
    let head_before = store.head_position().await.expect("head");
    let again = import(&scheme, request("july-1-resent", JULY, ImportMode::AllOrNothing, 100)).await;
    assert_eq!(refused_codes(&again), vec![(2, "usage_already_imported"), (3, "usage_already_imported")]);
    assert_eq!(again.written, 0);
    for (refusal, earlier_usage) in again.refused.iter().zip(["july-1-2", "july-1-3"]) {
        assert!(
            refusal.message.contains("import july-1 ") && refusal.message.contains(&format!("usage {earlier_usage}")),
            "{}",
            refusal.message
        );
    }
    assert_eq!(again.refused[0].project.as_deref(), Some("a1"));
    assert_eq!(store.head_position().await.expect("head"), head_before, "nothing was appended");
    assert_eq!(disbursed(&scheme, &SIGNED).await, Money::from_cents(JULY_SUBSIDY_CENTS));

    // The clerk who knows the usage really happened twice says so explicitly.
    let allowed = UsageImportRequest {
        repeated_lines: RepeatedLines::Charge,
        ..request("july-1-resent", JULY, ImportMode::AllOrNothing, 100)
    };
    let charged = import(&scheme, allowed).await;
    assert!(charged.refused.is_empty(), "{:?}", charged.refused);
    assert_eq!((charged.written_lines.clone(), charged.repeated_lines), (vec![[2, 3]], RepeatedLines::Charge));
    assert_eq!(disbursed(&scheme, &SIGNED).await, Money::from_cents(2 * JULY_SUBSIDY_CENTS));
    let (a1, _) = scheme.application_state("a1").await.expect("a1");
    let lines = a1.usage.lines();
    let imports: Vec<_> = lines.iter().map(|(usage, line)| (usage.as_str(), line.import_id.as_deref())).collect();
    assert_eq!(imports, vec![("july-1-2", Some("july-1")), ("july-1-resent-2", Some("july-1-resent"))]);
    database.drop_database().await;
}

#[tokio::test]
async fn partial_mode_refuses_only_the_repeated_lines_and_a_rerun_of_the_same_import_still_resumes() {
    let database = TestDatabase::create().await;
    let scheme = scheme_with_agreements(&database, day(2026, 1, 15)).await;
    import(&scheme, request("july-1", JULY, ImportMode::AllOrNothing, 100)).await;

    // Line 2 repeats july-1's a1 line; line 3 charges a2 other units, line 4 another project:
    // neither is a repeat.
    let corrected = "project,service_type,units,period
a1,gpu_node_hour_h800,400,2025-07
a2,gpu_node_hour_h800,250,2025-07
a3,gpu_node_hour_h800,300,2025-07
";
    let report = import(&scheme, request("july-2", corrected, ImportMode::Partial, 100)).await;
    assert_eq!(refused_codes(&report), vec![(2, "usage_already_imported")]);
    assert!(report.refused[0].message.contains("usage july-1-2"), "{}", report.refused[0].message);
    assert_eq!(report.written_lines, vec![[3, 4]]);
    let (a1, _) = scheme.application_state("a1").await.expect("a1");
    assert_eq!(a1.usage.lines().keys().collect::<Vec<_>>(), vec!["july-1-2"]);

    // Running july-2 again resumes it: its own lines are recognised as imported, not as
    // repeats, and its repeated line is refused again.
    let rerun = import(&scheme, request("july-2", corrected, ImportMode::Partial, 100)).await;
    assert_eq!((rerun.written, rerun.already_imported_lines.clone()), (0, vec![[3, 4]]));
    assert_eq!(refused_codes(&rerun), vec![(2, "usage_already_imported")]);

    // An interrupted import (only its first line written) finishes under its own id, though
    // another import has since charged the same usage as its first line.
    let head = "project,service_type,units,period\na1,gpu_node_hour_h800,100,2025-08\n";
    let whole = format!("{head}a2,gpu_node_hour_h800,100,2025-08\n");
    let august = |import_id| UsageImportRequest {
        today: day(2025, 9, 5),
        ..request(import_id, &whole, ImportMode::AllOrNothing, 100)
    };
    let interrupted =
        UsageImportRequest { today: day(2025, 9, 5), ..request("aug-1", head, ImportMode::AllOrNothing, 100) };
    assert_eq!(import(&scheme, interrupted).await.written_lines, vec![[2, 2]]);
    let resumed = import(&scheme, august("aug-1")).await;
    assert!(resumed.refused.is_empty(), "{:?}", resumed.refused);
    assert_eq!((resumed.written_lines, resumed.already_imported_lines), (vec![[3, 3]], vec![[2, 2]]));
    let (a2, _) = scheme.application_state("a2").await.expect("a2");
    assert!(a2.usage.contains("aug-1-3"), "{:?}", a2.usage.lines().keys());
    database.drop_database().await;
}

/// A charge the previous release imported under a default (file-derived) import id did not
/// record its import; its usage id `file-…-{line}` says it. A copy of that file whose default
/// id is now another (other line endings, normalised since) is refused naming that import.
#[tokio::test]
async fn a_line_a_default_import_of_the_previous_release_charged_is_refused_naming_that_import() {
    let database = TestDatabase::create().await;
    let scheme = scheme_with_agreements(&database, day(2026, 1, 15)).await;
    let store = PostgresEventStore::new(database.pool.clone());
    // 400 node-hours of July at HK$42.50, 70 %: as the previous release stored it (v1).
    let subsidy = 400 * 4_250 * 70 / 100;
    let charged_v1 = NewEvent {
        event_id: uuid::Uuid::new_v4(),
        event_type: "UsageCharged".into(),
        schema_version: 1,
        data: serde_json::json!({
            "usage_id": "file-00112233aabbccdd-2", "service_type": GPU, "period": "2025-07", "units": 400,
            "rate_per_unit": 4_250, "gross": 400 * 4_250, "subsidy_rate": 7_000, "subsidy": subsidy,
            "financial_year": "2025-26", "disbursed_total": subsidy, "ceiling_left": 17_850_000 - subsidy
        }),
        metadata: serde_json::json!({"actor": "scheduler-feed", "role": "finance_officer", "request_id": "legacy-1"}),
    };
    let a1 = StreamId::parse("application-a1").expect("stream");
    store.append(&a1, ExpectedVersion::Any, vec![charged_v1]).await.expect("append a v1 charge");

    let report = import(&scheme, request("file-99887766ffeeddcc", JULY, ImportMode::Partial, 100)).await;
    assert_eq!(refused_codes(&report), vec![(2, "usage_already_imported")]);
    assert!(
        report.refused[0].message.contains("import file-00112233aabbccdd already charged 400 units")
            && report.refused[0].message.contains("(usage file-00112233aabbccdd-2)"),
        "{}",
        report.refused[0].message
    );
    assert_eq!(report.written_lines, vec![[3, 3]]);
    database.drop_database().await;
}

#[tokio::test]
async fn over_http_a_repeated_line_is_a_422_naming_the_first_import_unless_allow_repeated_lines() {
    let app = support::TestApp::spawn().await;
    let scheme = scheme(&app.database).await;
    set_up(&scheme, hkd(857_000_000)).await;
    for id in ["a1", "a2"] {
        submitted(&scheme, id).await;
    }
    ready_for_committee(&scheme, &["a1", "a2"]).await;
    for id in ["a1", "a2"] {
        let approve = approval(id, None);
        act(&scheme, &approve, "sec-1", "committee_secretariat", committee_day()).await.expect("approve");
        let agreement = SignAgreement {
            application_id: id.into(),
            signed_on: day(2025, 6, 30),
            reporting_due_dates: vec![day(2026, 1, 15)],
        };
        act(&scheme, &agreement, "sec-1", "committee_secretariat", day(2025, 6, 30)).await.expect("agreement");
    }
    app.set_day(2025, 8, 5);
    let headers = [("Content-Type", "text/csv")];
    let first = app.post("finance_officer", "/api/v1/usage-imports?import_id=sched-july", &headers, JULY).await;
    assert_eq!(first.status, 200, "{}", first.body);

    let repeated = app.post("finance_officer", "/api/v1/usage-imports?import_id=clerk-july", &headers, JULY).await;
    assert_eq!(repeated.status, 422, "{}", repeated.body);
    let problem = repeated.json();
    assert_eq!(problem["code"], "import_refused");
    assert_eq!(problem["errors"][0]["field"], "line 2");
    let message = problem["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("usage_already_imported: import sched-july ") && message.contains("usage sched-july-2"),
        "{problem}"
    );
    assert_eq!(problem["errors"][1]["field"], "line 3");
    assert_eq!(disbursed(&scheme, &["a1", "a2"]).await, Money::from_cents(JULY_SUBSIDY_CENTS));

    let unreadable = app
        .post(
            "finance_officer",
            "/api/v1/usage-imports?import_id=clerk-july&allow_repeated_lines=maybe",
            &headers,
            JULY,
        )
        .await;
    assert_eq!(unreadable.status, 400, "{}", unreadable.body);

    let path = "/api/v1/usage-imports?import_id=clerk-july&allow_repeated_lines=true";
    let allowed = app.post("finance_officer", path, &headers, JULY).await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    let report = allowed.json();
    assert_eq!((report["written"].clone(), report["repeated_lines"].clone()), (2.into(), "charge".into()));
    assert_eq!(disbursed(&scheme, &["a1", "a2"]).await, Money::from_cents(2 * JULY_SUBSIDY_CENTS));
    app.stop().await;
}

#[tokio::test]
async fn the_cli_refuses_a_repeated_line_naming_the_first_import_unless_allow_repeated_lines() {
    let database = TestDatabase::create().await;
    let scheme = scheme_with_agreements(&database, day(2099, 1, 15)).await;
    let directory = std::env::temp_dir().join(format!("aisc-import-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&directory).expect("directory");
    let file = directory.join("usage.csv");
    std::fs::write(&file, JULY).expect("write");
    let run = |import_id: &str, extra: &[&str]| {
        let output = support::aisc()
            .args(["import", "usage", "--file", file.to_str().unwrap_or_default(), "--actor", "scheduler-feed"])
            .args(["--import-id", import_id])
            .args(extra)
            .env("DATABASE_URL", &database.url)
            .output()
            .expect("run aisc");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run("cli-1", &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");

    let (code, stdout, stderr) = run("cli-2", &[]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("line 2: usage_already_imported: import cli-1 "), "{stderr}");
    assert!(stderr.contains("(usage cli-1-3)"), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(report["written"], 0);

    let (code, stdout, stderr) = run("cli-2", &["--allow-repeated-lines"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(report["written_lines"], serde_json::json!([[2, 3]]));
    assert_eq!(disbursed(&scheme, &SIGNED).await, Money::from_cents(2 * JULY_SUBSIDY_CENTS));
    let _ = std::fs::remove_dir_all(&directory);
    database.drop_database().await;
}

#[tokio::test]
async fn a_refused_import_leaves_the_kept_states_as_they_were_for_the_next_import() {
    let database = TestDatabase::create().await;
    let scheme = scheme_with_agreements(&database, day(2026, 1, 15)).await;
    // Forty single charges of 10 node-hours: a1's history is long enough for the service to
    // keep its folded state between commands, which the import then decides on in place.
    for n in 0..40 {
        let charge = usage("a1", &format!("single-{n}"), "2025-07", 10);
        act(&scheme, &charge, "fin-1", "finance_officer", today()).await.expect("single charge");
    }
    // The 600 node-hours left in July, and a line that refuses the whole file.
    let filling =
        "project,service_type,units,period\na1,gpu_node_hour_h800,350,2025-07\na1,gpu_node_hour_h800,250,2025-07\n";
    let refused_file = format!("{filling}nobody,gpu_node_hour_h800,1,2025-07\n");
    let refused = import(&scheme, request("july-fill", &refused_file, ImportMode::AllOrNothing, 100)).await;
    assert_eq!(refused_codes(&refused), vec![(4, "unknown_application")]);
    assert_eq!(refused.written, 0);

    // Had the dry run left its 600 node-hours in a1's state, these lines would now be refused.
    let filled = import(&scheme, request("july-fill", filling, ImportMode::AllOrNothing, 100)).await;
    assert!(filled.refused.is_empty(), "{:?}", filled.refused);
    assert_eq!(filled.written_lines, vec![[2, 3]]);
    let one_more = "project,service_type,units,period\na1,gpu_node_hour_h800,1,2025-07\n";
    let over = import(&scheme, request("july-more", one_more, ImportMode::AllOrNothing, 100)).await;
    assert_eq!(refused_codes(&over), vec![(2, "units_above_allocation")]);
    let (a1, _) = scheme.application_state("a1").await.expect("a1");
    assert_eq!(a1.usage.len(), 42);
    assert_eq!(disbursed_in(&a1, "2025-26"), Money::from_cents(1_000 * 4_250 * 70 / 100));
    database.drop_database().await;
}
