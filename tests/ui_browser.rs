//! The web pages in a real browser: headless Chromium against the running `aisc serve` on a
//! generated scheme. Signs in through the form, checks the pages' figures against the API's,
//! that the stylesheet applies under the pages' content security policy with no console
//! error, that nothing overflows a phone's width, and saves screenshots under
//! `target/ui-screenshots/` for review.

#[path = "support/browser.rs"]
mod browser;
mod support;

use std::path::PathBuf;

use browser::{Browser, chromium_binary};
use serde_json::Value;

fn screenshots() -> PathBuf {
    // CARGO_TARGET_TMPDIR is target/tmp: the screenshots go beside it.
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).parent().map(|target| target.join("ui-screenshots")).expect("target")
}

fn aisc(url: &str, args: &[&str]) -> String {
    let output = support::aisc().args(args).env("DATABASE_URL", url).output().expect("run aisc");
    assert!(output.status.success(), "aisc {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn grouped(value: i64) -> String {
    let digits = value.unsigned_abs().to_string();
    let mut out = String::from(if value < 0 { "-" } else { "" });
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn money(cents: i64) -> String {
    format!("HK${}.{:02}", grouped(cents / 100), cents % 100)
}

/// The page's figures: `data-figure` name → text shown.
fn figures(browser: &mut Browser) -> serde_json::Map<String, Value> {
    let value = browser.evaluate(
        "Object.fromEntries([...document.querySelectorAll('[data-figure]')].map(e => [e.dataset.figure, e.textContent]))",
    );
    value.as_object().cloned().unwrap_or_default()
}

fn fits_the_width(browser: &mut Browser) -> bool {
    browser.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1") == Value::Bool(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_render_the_apis_figures_in_chromium() {
    let chromium = chromium_binary().expect(
        "Chromium is needed for the browser test: apt-get install chromium (.ci/run installs it), or set AISC_CHROMIUM",
    );
    let database = support::TestDatabase::create().await;
    aisc(&database.url, &["demo", "seed", "--applications", "120", "--years", "2", "--seed", "2024"]);
    let issued = aisc(&database.url, &["tokens", "issue", "--name", "pm-1", "--roles", "auditor,finance_officer"]);
    let token = issued.lines().last().expect("the token").trim().to_string();
    let (mut service, port) = support::serve_process(&database.url);
    support::wait_until_ready(port).await;
    let bearer = format!("Bearer {token}");
    let api = |path: String| {
        let bearer = bearer.clone();
        async move {
            let response = support::http(port, "GET", &path, &[("Authorization", &bearer)], None).await;
            assert_eq!(response.status, 200, "{path}: {}", response.body);
            response.json()
        }
    };
    // The read models have applied the whole log (read-your-writes on the head).
    let head: i64 =
        sqlx::query_scalar("SELECT max(global_position) FROM events").fetch_one(&database.pool).await.expect("head");
    let scheme_kpis = api(format!("/api/v1/kpis?after_position={head}")).await;
    api(format!("/api/v1/applications?after_position={head}&limit=1")).await;
    api(format!("/api/v1/audit-trail?after_position={head}&limit=1")).await;
    let year_kpis = api("/api/v1/kpis?year=2025-26".to_string()).await;
    let (application, organisation): (String, String) = sqlx::query_as(
        "SELECT application_id, organisation FROM read_models.applications_view WHERE status = 'completed' \
         ORDER BY application_id LIMIT 1",
    )
    .fetch_one(&database.pool)
    .await
    .expect("a completed project");
    let trail = api(format!("/api/v1/audit-trail?stream_id=application-{application}&limit=1000")).await;
    let batch: String = sqlx::query_scalar("SELECT batch_id FROM read_models.batches_view ORDER BY deadline LIMIT 1")
        .fetch_one(&database.pool)
        .await
        .expect("a batch");
    let queue = api(format!("/api/v1/batches/{batch}/queue")).await;

    let base = format!("http://127.0.0.1:{port}");
    let shots = screenshots();
    let result = tokio::task::spawn_blocking(move || {
        let mut browser = Browser::launch(&chromium);
        browser.viewport(1280, 900, false);

        // Signing in: the dashboard sends to the form, the form back to the dashboard.
        browser.open(&format!("{base}/ui/?year=2025-26"));
        assert_eq!(browser.location(), "/ui/login?next=%2Fui%2F%3Fyear%3D2025-26");
        browser.screenshot(&shots.join("login.png"));
        browser.evaluate(&format!(
            "document.querySelector('input[name=token]').value = {}; document.querySelector('form.login').submit(); true",
            serde_json::to_string(&token).expect("json")
        ));
        browser.wait_until("location.pathname === '/ui/' && document.readyState === 'complete'");
        assert_eq!(browser.location(), "/ui/?year=2025-26");
        assert_eq!(
            browser.evaluate("document.cookie"),
            Value::String(String::new()),
            "the session cookie is HttpOnly"
        );

        // The year's dashboard: the API's figures, as people read them; the stylesheet applies.
        let shown = figures(&mut browser);
        for name in ["applications_received", "applications_approved", "applications_rejected", "talents_involved"] {
            let expected = grouped(year_kpis[name].as_i64().expect(name));
            assert_eq!(shown.get(name).and_then(Value::as_str), Some(expected.as_str()), "{name}");
        }
        let subsidy = year_kpis["budget"]
            .as_array()
            .and_then(|lines| lines.iter().find(|line| line["line"] == "computing_power_subsidy"))
            .expect("the subsidy line");
        for field in ["received_cents", "committed_cents", "disbursed_cents"] {
            let expected = money(subsidy[field].as_i64().expect(field));
            let key = format!("budget.computing_power_subsidy.{field}");
            assert_eq!(shown.get(&key).and_then(Value::as_str), Some(expected.as_str()), "{key}");
        }
        assert_eq!(
            shown.get("budget.computing_power_subsidy.planned_cents").and_then(Value::as_str),
            Some("HK$857,000,000.00"),
            "§23 plans HK$857 million for 2025-26"
        );
        assert_eq!(browser.evaluate("getComputedStyle(document.querySelector('header.top')).display"), "flex");
        assert!(browser.evaluate("document.querySelectorAll('svg.chart rect').length").as_u64() > Some(10));
        assert!(fits_the_width(&mut browser), "the dashboard fits a laptop's width");
        browser.screenshot(&shots.join("dashboard-2025-26.png"));

        browser.open(&format!("{base}/ui/"));
        let shown = figures(&mut browser);
        let received = grouped(scheme_kpis["applications_received"].as_i64().expect("received"));
        assert_eq!(shown.get("applications_received").and_then(Value::as_str), Some(received.as_str()));
        browser.screenshot(&shots.join("dashboard-scheme.png"));

        // On a phone: nothing wider than the screen.
        browser.viewport(390, 844, true);
        browser.open(&format!("{base}/ui/"));
        assert!(fits_the_width(&mut browser), "the dashboard fits a phone's width");
        browser.screenshot(&shots.join("dashboard-phone.png"));
        browser.open(&format!("{base}/ui/worklist"));
        assert!(fits_the_width(&mut browser), "the worklist fits a phone's width");
        browser.screenshot(&shots.join("worklist-phone.png"));
        browser.viewport(1280, 900, false);

        // The batch board: the batch's counts are the queue's.
        browser.open(&format!("{base}/ui/batches"));
        let total: i64 = queue["counts"].as_object().expect("counts").values().filter_map(Value::as_i64).sum();
        let shown_total = browser.evaluate(&format!(
            "document.querySelector('[data-batch=\"{batch}\"] [data-count=\"all\"]').textContent"
        ));
        assert_eq!(shown_total.as_str(), Some(grouped(total).as_str()));
        browser.screenshot(&shots.join("batches.png"));

        // An application: its history is the audit trail's, entry for entry.
        browser.open(&format!("{base}/ui/applications/{application}"));
        let entries = trail["entries"].as_array().map_or(0, Vec::len) as u64;
        assert!(entries >= 8, "a completed project has a history");
        assert_eq!(browser.evaluate("document.querySelectorAll('ol.timeline li').length").as_u64(), Some(entries));
        assert_eq!(browser.evaluate("document.querySelector('[data-figure=status]').textContent"), "Completed");
        browser.screenshot(&shots.join("application.png"));

        // The worklist and the list render; signing out ends the session.
        browser.open(&format!("{base}/ui/worklist"));
        browser.screenshot(&shots.join("worklist.png"));
        // Free text, upper-cased: the application's applicant is found.
        let query = organisation.to_uppercase().replace(' ', "+");
        browser.open(&format!("{base}/ui/applications?q={query}"));
        let listed = browser.evaluate("[...document.querySelectorAll('tbody tr td:first-child')].map(c => c.textContent)");
        assert!(listed.as_array().is_some_and(|ids| ids.iter().any(|id| id == application.as_str())), "{listed}");
        browser.screenshot(&shots.join("applications.png"));
        browser.evaluate("document.querySelector('form.signout').submit(); true");
        browser.wait_until("location.pathname === '/ui/login' && document.readyState === 'complete'");
        browser.open(&format!("{base}/ui/"));
        assert!(browser.location().starts_with("/ui/login"), "signed out");
        browser.console_errors.clone()
    })
    .await;
    let _ = service.kill();
    let _ = service.wait();
    let console_errors = result.expect("the browser session");
    assert!(console_errors.is_empty(), "console errors (a CSP violation is one): {console_errors:?}");
    database.drop_database().await;
}
