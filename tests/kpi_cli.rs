//! `aisc reports kpi --as-of … --effective-on …`: the dashboard as the log stood at a position
//! and as it stood on a business date, from the command line.

mod support;

use support::scheme::*;

fn aisc(args: &[&str], database_url: &str) -> (bool, String, String) {
    let output = support::aisc().args(args).env("DATABASE_URL", database_url).output().expect("run aisc");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn approved(json: &str) -> Option<i64> {
    let dashboard: serde_json::Value = serde_json::from_str(json).expect("json");
    dashboard["applications_approved"].as_i64()
}

#[tokio::test]
async fn reports_kpi_answers_as_of_a_position_and_on_a_business_date() {
    let database = support::TestDatabase::create().await;
    let scheme = scheme(&database).await;
    set_up(&scheme, hkd(857_000_000)).await;
    submitted(&scheme, "k1").await;
    ready_for_committee(&scheme, &["k1"]).await;
    let head: i64 =
        sqlx::query_scalar("SELECT max(global_position) FROM events").fetch_one(&database.pool).await.expect("head");
    // Decided at the meeting of 15 June, recorded on the 20th.
    act(&scheme, &approval("k1", None), "sec-1", "committee_secretariat", day(2025, 6, 20)).await.expect("approve");

    let url = &database.url;
    let (ok, now, stderr) = aisc(&["reports", "kpi"], url);
    assert!(ok, "{stderr}");
    assert_eq!(approved(&now), Some(1));
    let (ok, before, stderr) = aisc(&["reports", "kpi", "--as-of", &head.to_string()], url);
    assert!(ok, "{stderr}");
    assert_eq!(approved(&before), Some(0), "the log at that position did not know the decision");
    let (ok, on_the_day, stderr) = aisc(&["reports", "kpi", "--effective-on", "2025-06-15"], url);
    assert!(ok, "{stderr}");
    assert_eq!(approved(&on_the_day), Some(1), "in force from its meeting's day");
    let (ok, day_before, _) = aisc(&["reports", "kpi", "--effective-on", "2025-06-14", "--format", "csv"], url);
    assert!(ok && day_before.contains(r#""scheme","applications_approved","","0""#), "{day_before}");
    let (ok, long_ago, stderr) = aisc(&["reports", "kpi", "--as-of", "2000-01-01T00:00:00Z"], url);
    assert!(ok, "{stderr}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&long_ago).expect("json")["applications_received"], 0);
    let (ok, _, stderr) = aisc(&["reports", "kpi", "--as-of", "yesterday"], url);
    assert!(!ok && stderr.lines().count() == 1 && stderr.contains("RFC 3339"), "{stderr}");
    let (ok, _, stderr) = aisc(&["reports", "kpi", "--effective-on", "15/06/2025"], url);
    assert!(!ok && stderr.contains("--effective-on"), "{stderr}");
    database.drop_database().await;
}
