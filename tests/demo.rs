//! `aisc demo seed`: a realistic scheme through the real command service, the same for the
//! same seed.

mod support;

use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// A digest of what the scheme recorded: streams, versions, types and data (not ids, times or
/// request metadata, which differ from run to run by design).
async fn digest(pool: &PgPool) -> String {
    let rows: Vec<(String, i64, String, String)> = sqlx::query_as(
        "SELECT stream_id, stream_version, event_type, data::text FROM events ORDER BY stream_id, stream_version",
    )
    .fetch_all(pool)
    .await
    .expect("events");
    let mut hasher = Sha256::new();
    for (stream, version, kind, data) in &rows {
        // Sealed personal fields differ from run to run (a fresh key and nonce each time).
        let mut data: serde_json::Value = serde_json::from_str(data).expect("JSON data");
        mask_sealed(&mut data);
        hasher.update(format!("{stream}|{version}|{kind}|{data}\n"));
    }
    let hash: String = hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{} events, {hash}", rows.len())
}

/// Replaces each sealed personal field by a mark.
fn mask_sealed(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(text) if text.starts_with("xc1.") => *text = "sealed".into(),
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask_sealed),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(mask_sealed),
        _ => {}
    }
}

fn seed(url: &str, seed: &str) -> String {
    let output = support::aisc()
        .args(["demo", "seed", "--applications", "40", "--years", "1", "--seed", seed])
        .env("DATABASE_URL", url)
        .output()
        .expect("run aisc");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[tokio::test]
async fn the_same_seed_gives_the_same_scheme_and_another_seed_another() {
    let (first, second, third) = (
        support::TestDatabase::create().await,
        support::TestDatabase::create().await,
        support::TestDatabase::create().await,
    );
    let summary = seed(&first.url, "7");
    assert!(summary.starts_with("seeded 40 applications: "), "{summary}");
    assert_eq!(seed(&second.url, "7"), summary);
    assert_eq!(digest(&first.pool).await, digest(&second.pool).await, "deterministic");
    seed(&third.url, "8");
    assert_ne!(digest(&first.pool).await, digest(&third.pool).await);

    // A realistic mix: most approved, some rejected; usage and reports recorded; the books balance.
    let approved: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'ApplicationApproved'")
        .fetch_one(&first.pool)
        .await
        .expect("count");
    let rejected: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'ApplicationRejected'")
        .fetch_one(&first.pool)
        .await
        .expect("count");
    assert!(approved > rejected && rejected > 0, "{approved} approved, {rejected} rejected");
    assert!(summary.contains(&format!("{approved} approved")), "{summary}");
    // Approvals are stored flat (schema version 2): the approved rate is at the top of the data.
    let (rated, exceptional): (i64, i64) = sqlx::query_as(
        "SELECT count(data->>'rate'), count(*) FILTER (WHERE (data->>'rate')::int > 7000) \
         FROM events WHERE event_type = 'ApplicationApproved'",
    )
    .fetch_one(&first.pool)
    .await
    .expect("count");
    assert_eq!(rated, approved, "every approval's rate is where the check reads it");
    assert!(exceptional <= approved / 4, "a few exceptional rates at most");
    // Decided command by command, appended in bulk: every event carries its own command's
    // request, and one transaction holds many commands.
    let (transactions, requests): (i64, i64) = sqlx::query_as(
        "SELECT count(DISTINCT global_position >> 20), count(DISTINCT metadata->>'request_id') FROM events",
    )
    .fetch_one(&first.pool)
    .await
    .expect("count");
    assert!(requests >= 10 * transactions, "{requests} commands in {transactions} appends");
    let store = aisc_adapters::PostgresEventStore::new(first.pool.clone());
    let report =
        aisc_domain::event_store::EventStore::verify(&store, aisc_domain::event_store::PositionRange::WHOLE_LOG)
            .await
            .expect("verify");
    assert_eq!(report.first_broken, None);
    // Charges are decided on the applications' own streams: no funding year records a
    // disbursement, and each application's running total is its charges less its reversals.
    let year_disbursements: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type IN ('SubsidyDisbursed', 'SubsidyDisbursementReversed')",
    )
    .fetch_one(&first.pool)
    .await
    .expect("count");
    assert_eq!(year_disbursements, 0);
    let (charged, charges): (i64, i64) = sqlx::query_as(
        "SELECT coalesce(sum(CASE event_type WHEN 'UsageCharged' THEN (data->>'subsidy')::bigint \
         ELSE -(data->>'amount')::bigint END), 0)::bigint, count(*) FILTER (WHERE event_type = 'UsageCharged') \
         FROM events WHERE event_type IN ('UsageCharged', 'DisbursementReversed')",
    )
    .fetch_one(&first.pool)
    .await
    .expect("sum");
    assert!(charges > 0, "usage was charged");
    let disbursed: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(total), 0)::bigint FROM (SELECT DISTINCT ON (stream_id) \
         (data->>'disbursed_total')::bigint AS total FROM events \
         WHERE event_type IN ('UsageCharged', 'DisbursementReversed') ORDER BY stream_id, stream_version DESC) t",
    )
    .fetch_one(&first.pool)
    .await
    .expect("sum");
    assert_eq!(disbursed, charged, "the applications' disbursed totals are their charges less reversals");
    for database in [first, second, third] {
        database.drop_database().await;
    }
}
