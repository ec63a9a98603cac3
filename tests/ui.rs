//! The web pages under `/ui/` over HTTP: signing in with a staff token, the session cookie, CSRF
//! on sign-out, roles as on the API, and pages whose figures are the API's on a demo scheme.

mod support;

use std::time::Duration;

use aisc_projections::{applications, audit_trail, kpi};
use support::{TestApp, TestResponse, http};

/// Signs `role` in through the form; the session cookie (`aisc_session=…`).
async fn sign_in(app: &TestApp, role: &str, next: &str) -> (TestResponse, String) {
    let body = format!("token={}&next={}", app.tokens[role], urlencode(next));
    let response =
        http(app.port, "POST", "/ui/login", &[("Content-Type", "application/x-www-form-urlencoded")], Some(&body))
            .await;
    let cookie =
        response.header("set-cookie").and_then(|value| value.split(';').next()).map(str::to_string).unwrap_or_default();
    (response, cookie)
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => (byte as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

async fn page(app: &TestApp, cookie: &str, path: &str) -> TestResponse {
    http(app.port, "GET", path, &[("Cookie", cookie)], None).await
}

/// The text of the element carrying `data-figure="name"`.
fn figure(html: &str, name: &str) -> Option<String> {
    let marker = format!("data-figure=\"{name}\">");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('<')? + start;
    Some(html[start..end].to_string())
}

fn money(cents: i64) -> String {
    let digits = (cents / 100).to_string();
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    format!("HK${grouped}.{:02}", cents % 100)
}

/// Waits until every read model has applied the whole log.
async fn caught_up(app: &TestApp) {
    let head: i64 = sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM events")
        .fetch_one(&app.database.pool)
        .await
        .expect("head");
    for name in [applications::NAME, kpi::NAME, audit_trail::NAME] {
        let reached = aisc_projections::runner::wait_for_position(
            &app.database.pool,
            name,
            aisc_domain::event_store::Position(head as u64),
            Duration::from_secs(60),
        )
        .await
        .expect("checkpoint");
        assert!(reached, "{name} did not catch up");
    }
}

/// Two projects under agreement on top of the demo scheme (whose projects are all completed):
/// batch 2025-q2, approved on 15 June 2025, reports due on 30 September and 31 December 2025.
async fn projects_under_agreement(scheme: &support::scheme::Scheme, ids: &[&str]) {
    use aisc_domain::subsidy::application::SignAgreement;
    use aisc_domain::subsidy::batches::OpenBatch;
    use support::scheme::{act, approval, day, ready_for_committee, submitted};
    let batch = OpenBatch { batch_id: "2025-q2".into(), deadline: day(2025, 5, 31), committee_date: day(2025, 6, 15) };
    act(scheme, &batch, "admin-1", "administrator", day(2025, 4, 1)).await.expect("batch");
    for id in ids {
        submitted(scheme, id).await;
    }
    ready_for_committee(scheme, ids).await;
    for id in ids {
        act(scheme, &approval(id, None), "sec-1", "committee_secretariat", day(2025, 6, 15)).await.expect("approve");
        let agreement = SignAgreement {
            application_id: (*id).into(),
            signed_on: day(2025, 6, 20),
            reporting_due_dates: vec![day(2025, 9, 30), day(2025, 12, 31)],
        };
        act(scheme, &agreement, "sec-1", "committee_secretariat", day(2025, 6, 20)).await.expect("agreement");
    }
}

#[tokio::test]
async fn signing_in_exchanges_the_token_for_a_session_cookie_and_leads_back() {
    let app = TestApp::spawn().await;

    // No session: to the sign-in form, which remembers where to go.
    let refused = http(app.port, "GET", "/ui/worklist", &[], None).await;
    assert_eq!(refused.status, 303);
    assert_eq!(refused.header("location"), Some("/ui/login?next=%2Fui%2Fworklist"));
    let form = http(app.port, "GET", "/ui/login?next=%2Fui%2Fworklist", &[], None).await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("name=\"token\"") && form.body.contains("value=\"/ui/worklist\""), "{}", form.body);

    let (signed_in, cookie) = sign_in(&app, "finance_officer", "/ui/worklist").await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    assert_eq!(signed_in.header("location"), Some("/ui/worklist"));
    let set_cookie = signed_in.header("set-cookie").expect("cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/ui", "Max-Age=43200"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains(app.tokens["finance_officer"].as_str()), "the token is not the cookie");

    let worklist = page(&app, &cookie, "/ui/worklist").await;
    assert_eq!(worklist.status, 200, "{}", worklist.body);
    assert!(worklist.header("content-type").is_some_and(|value| value.starts_with("text/html")));
    let policy = worklist.header("content-security-policy").expect("CSP");
    assert!(policy.contains("default-src 'none'") && policy.contains("frame-ancestors 'none'"), "{policy}");
    assert!(worklist.body.contains("finance_officer-1"), "who is signed in is shown");
    assert_eq!(worklist.header("cache-control"), Some("no-store"));

    // Only the hash of the session is stored.
    let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT session_hash FROM ui_sessions")
        .fetch_all(&app.database.pool)
        .await
        .expect("sessions");
    let value = cookie.trim_start_matches("aisc_session=");
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], value.as_bytes());
    app.stop().await;
}

#[tokio::test]
async fn a_wrong_token_a_foreign_next_and_a_foreign_origin_are_refused() {
    let app = TestApp::spawn().await;
    let wrong = http(
        app.port,
        "POST",
        "/ui/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some("token=aisc_0000&next=%2Fui%2F"),
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("not known, or has been revoked"), "{}", wrong.body);
    assert!(wrong.header("set-cookie").is_none());

    let (to_elsewhere, _) = sign_in(&app, "auditor", "//evil.example/ui/").await;
    assert_eq!(to_elsewhere.status, 303);
    assert_eq!(to_elsewhere.header("location"), Some("/ui/"), "never to another site");

    let body = format!("token={}&next=%2Fui%2F", app.tokens["auditor"]);
    let foreign = http(
        app.port,
        "POST",
        "/ui/login",
        &[("Content-Type", "application/x-www-form-urlencoded"), ("Origin", "https://evil.example")],
        Some(&body),
    )
    .await;
    assert_eq!(foreign.status, 403, "{}", foreign.body);
    assert!(foreign.header("set-cookie").is_none());

    let not_a_form =
        http(app.port, "POST", "/ui/login", &[("Content-Type", "application/json")], Some("{\"token\":\"x\"}")).await;
    assert_eq!(not_a_form.status, 415);

    let forged = http(app.port, "GET", "/ui/", &[("Cookie", "aisc_session=<script>")], None).await;
    assert_eq!(forged.status, 303, "an invalid cookie is no session");
    app.stop().await;
}

#[tokio::test]
async fn signing_out_needs_the_csrf_token_and_a_revoked_token_ends_its_sessions() {
    let app = TestApp::spawn().await;
    let (_, cookie) = sign_in(&app, "auditor", "/ui/").await;
    let dashboard = page(&app, &cookie, "/ui/").await;
    assert_eq!(dashboard.status, 200, "{}", dashboard.body);
    let marker = "name=\"csrf_token\" value=\"";
    let start = dashboard.body.find(marker).expect("sign-out form") + marker.len();
    let csrf = &dashboard.body[start..start + 64];

    let form = [("Content-Type", "application/x-www-form-urlencoded"), ("Cookie", cookie.as_str())];
    let without = http(app.port, "POST", "/ui/logout", &form, Some("csrf_token=0000")).await;
    assert_eq!(without.status, 403, "{}", without.body);
    assert_eq!(page(&app, &cookie, "/ui/").await.status, 200, "still signed in");

    let signed_out = http(app.port, "POST", "/ui/logout", &form, Some(&format!("csrf_token={csrf}"))).await;
    assert_eq!(signed_out.status, 303);
    assert_eq!(signed_out.header("location"), Some("/ui/login"));
    assert!(signed_out.header("set-cookie").is_some_and(|value| value.contains("Max-Age=0")));
    assert_eq!(page(&app, &cookie, "/ui/").await.status, 303, "the session is closed");

    let (_, second) = sign_in(&app, "intake_officer", "/ui/").await;
    assert_eq!(page(&app, &second, "/ui/batches").await.status, 200);
    aisc_api::auth::revoke(&app.database.pool, "intake_officer-1").await.expect("revoke");
    assert_eq!(page(&app, &second, "/ui/batches").await.status, 303, "revoking the token ends its sessions");
    app.stop().await;
}

#[tokio::test]
async fn the_pages_show_the_apis_figures_on_a_demo_scheme_and_roles_apply() {
    let app = TestApp::spawn().await;
    let scheme = support::scheme::scheme(&app.database).await;
    aisc_domain::demo::seed(&scheme, 60, 1, 2024).await.expect("seed");
    projects_under_agreement(&scheme, &["UI-RUN-1", "UI-RUN-2"]).await;
    app.set_day(2025, 10, 1);
    caught_up(&app).await;
    let (_, cookie) = sign_in(&app, "auditor", "/ui/").await;

    // The dashboard of the whole scheme and of a year: the API's figures, as people read them.
    for (page_path, api_path) in [("/ui/", "/api/v1/kpis"), ("/ui/?year=2024-25", "/api/v1/kpis?year=2024-25")] {
        let html = page(&app, &cookie, page_path).await;
        assert_eq!(html.status, 200, "{}", html.body);
        let kpis = app.get("auditor", api_path).await.json();
        let received = kpis["applications_received"].as_i64().expect("received");
        assert!(received > 0);
        assert_eq!(figure(&html.body, "applications_received").as_deref(), Some(received.to_string().as_str()));
        assert_eq!(
            figure(&html.body, "applications_approved").as_deref(),
            Some(kpis["applications_approved"].as_i64().expect("approved").to_string().as_str())
        );
        let line = kpis["budget"]
            .as_array()
            .expect("budget")
            .iter()
            .find(|line| line["line"] == "computing_power_subsidy")
            .expect("subsidy line");
        for field in ["received_cents", "committed_cents", "disbursed_cents", "left_cents"] {
            assert_eq!(
                figure(&html.body, &format!("budget.computing_power_subsidy.{field}")),
                Some(money(line[field].as_i64().expect("cents"))),
                "{field} on {page_path}"
            );
        }
        assert!(html.body.contains("<svg class=\"chart\""), "charts are drawn");
        assert!(!html.body.contains("http://") && !html.body.contains("https://"), "nothing from elsewhere");
    }
    // As at a business date: the API's effective_on figures.
    let dated = page(&app, &cookie, "/ui/?year=2024-25&as_at=2024-12-31").await;
    assert_eq!(dated.status, 200, "{}", dated.body);
    let then = app.get("auditor", "/api/v1/kpis?year=2024-25&effective_on=2024-12-31").await.json();
    let now = app.get("auditor", "/api/v1/kpis?year=2024-25").await.json();
    assert_ne!(then["applications_approved"], now["applications_approved"], "the date makes a difference");
    assert_eq!(
        figure(&dated.body, "applications_approved"),
        Some(then["applications_approved"].as_i64().expect("approved").to_string())
    );
    assert!(dated.body.contains("As at 2024-12-31"));
    assert_eq!(page(&app, &cookie, "/ui/?as_at=31%2F03%2F2025").await.status, 400);
    let planned =
        figure(&page(&app, &cookie, "/ui/?year=2024-25").await.body, "budget.computing_power_subsidy.planned_cents");
    assert_eq!(planned.as_deref(), Some("HK$857,000,000.00"), "the §23 cash flow for 2024-25");

    // The batch board: each batch's counts are the queue's.
    let board = page(&app, &cookie, "/ui/batches").await;
    assert_eq!(board.status, 200);
    let batch =
        sqlx::query_scalar::<_, String>("SELECT batch_id FROM read_models.batches_view ORDER BY deadline LIMIT 1")
            .fetch_one(&app.database.pool)
            .await
            .expect("a batch");
    let queue = app.get("auditor", &format!("/api/v1/batches/{batch}/queue")).await.json();
    let total: i64 = queue["counts"].as_object().expect("counts").values().filter_map(|v| v.as_i64()).sum();
    let section_start = board.body.find(&format!("data-batch=\"{batch}\"")).expect("the batch's panel");
    let section = &board.body[section_start..];
    let all = section.find("data-count=\"all\">").expect("total") + "data-count=\"all\">".len();
    assert_eq!(&section[all..all + section[all..].find('<').expect("end")], total.to_string());

    // An application: as it stands, and its history as the audit trail has it.
    let approved: String =
        sqlx::query_scalar("SELECT application_id FROM read_models.applications_view WHERE status IN ('agreement_signed', 'completed') LIMIT 1")
            .fetch_one(&app.database.pool)
            .await
            .expect("an approved application");
    let view = page(&app, &cookie, &format!("/ui/applications/{approved}")).await;
    assert_eq!(view.status, 200, "{}", view.body);
    let trail = app.get("auditor", &format!("/api/v1/audit-trail?stream_id=application-{approved}&limit=1000")).await;
    let entries = trail.json()["entries"].as_array().map_or(0, Vec::len);
    assert!(entries >= 4, "{}", trail.body);
    assert_eq!(view.body.matches("<li data-event=").count(), entries);
    assert!(view.body.contains("Application submitted"));
    let ceiling: i64 =
        sqlx::query_scalar("SELECT ceiling_cents FROM read_models.applications_view WHERE application_id = $1")
            .bind(&approved)
            .fetch_one(&app.database.pool)
            .await
            .expect("ceiling");
    assert_eq!(figure(&view.body, "ceiling_cents"), Some(money(ceiling)));
    // Its subsidy per funding year is the one the API's view of the application shows.
    let state = app.get("auditor", &format!("/api/v1/applications/{approved}")).await.json();
    let by_year = state["state"]["usage"]["disbursed_by_year"].as_object().expect("subsidy per year").clone();
    assert!(!by_year.is_empty(), "{state}");
    for (year, cents) in by_year {
        assert_eq!(
            figure(&view.body, &format!("subsidy.{year}")),
            Some(money(cents.as_i64().expect("cents"))),
            "{year}"
        );
    }

    // Roles as on the API: an intake officer sees the application, not the audit trail.
    let (_, intake) = sign_in(&app, "intake_officer", "/ui/").await;
    let limited = page(&app, &intake, &format!("/ui/applications/{approved}")).await;
    assert_eq!(limited.status, 200);
    assert_eq!(limited.body.matches("<li data-event=").count(), 0);
    assert!(limited.body.contains("shown to auditors and administrators"));
    assert_eq!(page(&app, &intake, "/ui/applications/NO-SUCH-1").await.status, 404);
    assert_eq!(page(&app, &intake, "/ui/?year=2024").await.status, 400);
    assert_eq!(page(&app, &intake, "/ui/?colour=red").await.status, 400);

    // The worklist: exactly the projects under agreement whose next report is due within 14
    // days. On 1 October 2025 the reports due on 30 September are a day overdue.
    let today = support::scheme::day(2025, 10, 1);
    let worklist = page(&app, &cookie, "/ui/worklist").await;
    assert_eq!(worklist.status, 200);
    let expected: Vec<String> = sqlx::query_scalar(
        "SELECT application_id FROM read_models.applications_view \
         WHERE status = 'agreement_signed' AND next_report_due <= $1 ORDER BY next_report_due, application_id",
    )
    .bind(today + chrono::TimeDelta::days(14))
    .fetch_all(&app.database.pool)
    .await
    .expect("due");
    let shown: Vec<&str> = worklist
        .body
        .match_indices("data-application=\"")
        .map(|(at, marker)| {
            let start = at + marker.len();
            &worklist.body[start..start + worklist.body[start..].find('"').expect("end")]
        })
        .collect();
    assert_eq!(shown, expected);
    assert_eq!(expected, ["UI-RUN-1", "UI-RUN-2"]);
    assert!(worklist.body.contains("<tr class=\"overdue\""), "the earliest report is overdue");
    assert_eq!(figure(&worklist.body, "overdue").as_deref(), Some("2"));
    // What each blocks: the ceiling not yet disbursed (nothing charged yet: all of it).
    assert_eq!(figure(&worklist.body, "blocked"), Some(money(2 * 17_850_000)));
    app.stop().await;
}
