//! Notifications of the clock: progress reports due within 7 days or overdue, and batch
//! deadlines within 3 days, read from the read models on the clock's date. Each is recorded
//! once per kind, subject and due date (a unique key), however often and on however many
//! instances the scheduler runs; a day the service was down is made up on the next run.

use chrono::{NaiveDate, TimeDelta};
use serde_json::json;
use sqlx::{PgPool, Row};

use super::notifications::{NewNotification, NotificationKind, application_subject, batch_subject, record};

/// How far ahead a progress report's due date is announced.
pub const REPORT_NOTICE_DAYS: i64 = 7;
/// How far ahead a batch's deadline is announced.
pub const BATCH_NOTICE_DAYS: i64 = 3;

/// Records the notifications due on `today`; answers how many were new.
pub async fn record_due_notifications(pool: &PgPool, today: NaiveDate) -> Result<u64, sqlx::Error> {
    let mut due = Vec::new();
    let report_notice = today + TimeDelta::days(REPORT_NOTICE_DAYS);
    let reports = sqlx::query(
        "SELECT application_id, next_report_due FROM read_models.applications_view \
          WHERE next_report_due <= $1 ORDER BY next_report_due, application_id",
    )
    .bind(report_notice)
    .fetch_all(pool)
    .await?;
    for row in reports {
        let application_id: String = row.try_get("application_id")?;
        let due_on: NaiveDate = row.try_get("next_report_due")?;
        let kind = if due_on < today { NotificationKind::ReportOverdue } else { NotificationKind::ReportDueIn7Days };
        due.push(NewNotification {
            kind,
            subject: application_subject(&application_id),
            occurred_on: due_on,
            source: None,
            payload: json!({"application_id": application_id, "due_on": due_on}),
        });
    }
    let batches = sqlx::query(
        "SELECT batch_id, deadline FROM read_models.batches_view \
          WHERE NOT closed AND deadline BETWEEN $1 AND $2 ORDER BY deadline, batch_id",
    )
    .bind(today)
    .bind(today + TimeDelta::days(BATCH_NOTICE_DAYS))
    .fetch_all(pool)
    .await?;
    for row in batches {
        let batch_id: String = row.try_get("batch_id")?;
        let deadline: NaiveDate = row.try_get("deadline")?;
        due.push(NewNotification {
            kind: NotificationKind::BatchDeadlineIn3Days,
            subject: batch_subject(&batch_id),
            occurred_on: deadline,
            source: None,
            payload: json!({"batch_id": batch_id, "due_on": deadline}),
        });
    }
    let mut recorded = 0;
    let mut connection = pool.acquire().await?;
    for notification in &due {
        if record(&mut connection, notification).await? {
            recorded += 1;
        }
    }
    Ok(recorded)
}
