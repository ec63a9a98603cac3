//! What a webhook is told, and how each notification is recorded exactly once: those of the
//! log by [`NotificationRecorder`], a projection the runner keeps up to date (its notifications
//! commit with its checkpoint), those of the clock by the scheduler under a unique key. With
//! each notification, in the same statement, a pending delivery for every active webhook that
//! asked for its kind.

use aisc_domain::event_store::RecordedEvent;
use aisc_domain::subsidy::application::ApplicationEvent;
use aisc_domain::subsidy::batches::BatchEvent;
use aisc_domain::subsidy::capacity::CapacityEvent;
use aisc_domain::subsidy::events::SchemeEvent;
use aisc_domain::subsidy::funding::FundingEvent;
use aisc_domain::subsidy::prices::PriceEvent;
use aisc_domain::subsidy::streams;
use aisc_projections::{Interest, Projection, ProjectionError, ReadModelTables};
use async_trait::async_trait;
use chrono::NaiveDate;
use serde_json::{Value, json};
use sqlx::PgConnection;

/// The kinds of notification, as webhooks name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationKind {
    /// The committee approved, rejected or deferred an application.
    DecisionRecorded,
    AgreementSigned,
    /// A progress report falls due within 7 days.
    ReportDueIn7Days,
    /// A progress report's due date has passed without it.
    ReportOverdue,
    /// An open batch closes for applications within 3 days.
    BatchDeadlineIn3Days,
}

impl NotificationKind {
    pub const ALL: [NotificationKind; 5] = [
        NotificationKind::DecisionRecorded,
        NotificationKind::AgreementSigned,
        NotificationKind::ReportDueIn7Days,
        NotificationKind::ReportOverdue,
        NotificationKind::BatchDeadlineIn3Days,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::DecisionRecorded => "decision.recorded",
            NotificationKind::AgreementSigned => "agreement.signed",
            NotificationKind::ReportDueIn7Days => "report.due_in_7_days",
            NotificationKind::ReportOverdue => "report.overdue",
            NotificationKind::BatchDeadlineIn3Days => "batch.deadline_in_3_days",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

/// A notification to record: its kind, what it is about, its date, and the figures its body
/// carries besides the delivery id and the kind.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    pub kind: NotificationKind,
    /// `application:<id>` or `batch:<id>`; deliveries about one subject keep their order.
    pub subject: String,
    /// The date the event occurred on, or the date that is due.
    pub occurred_on: NaiveDate,
    /// The event it comes from and that event's position (none for one of the clock).
    pub source: Option<(uuid::Uuid, u64)>,
    pub payload: Value,
}

pub fn application_subject(application_id: &str) -> String {
    format!("application:{application_id}")
}

pub fn batch_subject(batch_id: &str) -> String {
    format!("batch:{batch_id}")
}

/// Records `notification` unless it is already recorded (same event, or same kind, subject
/// and date for one of the clock) or no active webhook asked for its kind; with it, a pending
/// delivery per such webhook. A webhook is not told of events the log held when it was
/// registered. Answers whether it was recorded.
pub async fn record(connection: &mut PgConnection, notification: &NewNotification) -> Result<bool, sqlx::Error> {
    let position = notification.source.map(|(_, position)| i64::try_from(position).unwrap_or(i64::MAX));
    let recorded = sqlx::query(
        "WITH subscribers AS ( \
             SELECT webhook_id FROM public.webhooks \
              WHERE active AND $2 = ANY (event_kinds) AND ($7::bigint IS NULL OR from_position < $7) \
         ), recorded AS ( \
             INSERT INTO public.webhook_notifications (notification_id, kind, subject, occurred_on, source_event_id, payload) \
             SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM subscribers) \
             ON CONFLICT DO NOTHING \
             RETURNING notification_id, subject, sequence \
         ) \
         INSERT INTO public.webhook_deliveries (delivery_id, webhook_id, notification_id, subject, sequence) \
         SELECT gen_random_uuid(), s.webhook_id, r.notification_id, r.subject, r.sequence \
           FROM recorded r CROSS JOIN subscribers s",
    )
    .bind(uuid::Uuid::new_v4())
    .bind(notification.kind.as_str())
    .bind(&notification.subject)
    .bind(notification.occurred_on)
    .bind(notification.source.map(|(event_id, _)| event_id))
    .bind(&notification.payload)
    .bind(position)
    .execute(&mut *connection)
    .await?;
    Ok(recorded.rows_affected() > 0)
}

/// The notification an event of the log gives, if any.
pub fn from_event(event: &RecordedEvent) -> Result<Option<NewNotification>, ProjectionError> {
    if !RECORDED_EVENT_TYPES.contains(&event.event_type.as_str()) {
        return Ok(None);
    }
    let decoded: SchemeEvent = event.decode().map_err(|error| ProjectionError::BadEvent {
        projection: RECORDER_NAME,
        position: event.position.0,
        reason: error.to_string(),
    })?;
    let Some(application_id) = streams::application_id(&event.stream) else {
        return Ok(None);
    };
    let SchemeEvent::Application(decoded) = decoded else {
        return Ok(None);
    };
    let (kind, occurred_on, figures) = match decoded {
        ApplicationEvent::ApplicationApproved(approved) => (
            NotificationKind::DecisionRecorded,
            approved.committee.decided_on,
            json!({
                "outcome": "approved",
                "approved_rate_bps": approved.terms.rate.bps(),
                "ceiling_cents": approved.terms.ceiling.cents(),
                "project_start": approved.terms.start,
                "project_end": approved.terms.end,
            }),
        ),
        ApplicationEvent::ApplicationRejected(rejected) => {
            (NotificationKind::DecisionRecorded, rejected.committee.decided_on, json!({"outcome": "rejected"}))
        }
        ApplicationEvent::ApplicationDeferred(deferred) => (
            NotificationKind::DecisionRecorded,
            deferred.committee.decided_on,
            json!({"outcome": "deferred", "to_batch_id": deferred.to_batch_id}),
        ),
        ApplicationEvent::AgreementSigned(signed) => (
            NotificationKind::AgreementSigned,
            signed.signed_on,
            json!({"report_due_dates": signed.reporting_due_dates}),
        ),
        _ => return Ok(None),
    };
    let mut payload = json!({"application_id": application_id, "occurred_on": occurred_on});
    if let (Some(payload), Value::Object(figures)) = (payload.as_object_mut(), figures) {
        payload.extend(figures);
    }
    Ok(Some(NewNotification {
        kind,
        subject: application_subject(application_id),
        occurred_on,
        source: Some((event.event_id, event.position.0)),
        payload,
    }))
}

/// The event types notifications come from.
const RECORDED_EVENT_TYPES: &[&str] =
    &["ApplicationApproved", "ApplicationRejected", "ApplicationDeferred", "AgreementSigned"];

/// The application's other event types, which no webhook is told of. Listed one by one: a new
/// event type of an application fails the test below until it is recorded or listed here.
const IGNORED_APPLICATION_EVENT_TYPES: &[&str] = &[
    "ApplicationSubmitted",
    "ApplicationAmended",
    "ApplicationWithdrawn",
    "EligibilityConfirmed",
    "RuledIneligible",
    "AssessmentRecorded",
    "UsageCharged",
    "DisbursementReversed",
    "ProgressReportSubmitted",
    "ProgressReportReviewed",
    "ApplicationCompleted",
    "ApplicationTerminated",
];

/// The name of the recorder's checkpoint.
pub const RECORDER_NAME: &str = "webhook_notifications";

/// Records the notifications of the log, run by a [`aisc_projections::ProjectionRunner`]: one
/// instance at a time, from its checkpoint, each batch's notifications committed with the
/// checkpoint. It owns no read model: its tables are the webhook tables of the migrations, which
/// a rebuild leaves alone (a rebuild replays the log; the unique event id and each webhook's
/// starting position keep it from recording anything twice or telling a webhook the past).
pub struct NotificationRecorder;

/// No read-model tables (the runner's scripts must still be statements).
static TABLES: ReadModelTables = ReadModelTables { names: &[], create: "SELECT 1", indexes: "SELECT 1" };

#[async_trait]
impl Projection for NotificationRecorder {
    fn name(&self) -> &'static str {
        RECORDER_NAME
    }

    fn version(&self) -> i32 {
        1
    }

    fn tables(&self) -> &'static ReadModelTables {
        &TABLES
    }

    /// The committee's decisions and agreements; every other event of an application, and every
    /// event of batches, funding years, the price schedule, capacity and data subjects, is ignored.
    fn interest(&self, event_type: &str) -> Option<Interest> {
        Interest::declared(
            event_type,
            &[RECORDED_EVENT_TYPES],
            &[
                IGNORED_APPLICATION_EVENT_TYPES,
                BatchEvent::EVENT_TYPES,
                FundingEvent::EVENT_TYPES,
                PriceEvent::EVENT_TYPES,
                CapacityEvent::EVENT_TYPES,
                aisc_domain::subsidy::data_subjects::DataSubjectEvent::EVENT_TYPES,
            ],
        )
    }

    async fn apply(&self, connection: &mut PgConnection, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
        for event in events {
            if let Some(notification) = from_event(event)? {
                record(connection, &notification).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorder_declares_every_event_type_of_the_domain() {
        for event_type in SchemeEvent::event_types() {
            assert!(NotificationRecorder.interest(event_type).is_some(), "{event_type} is neither handled nor ignored");
        }
        let known: Vec<&str> = SchemeEvent::event_types().collect();
        for listed in RECORDED_EVENT_TYPES.iter().chain(IGNORED_APPLICATION_EVENT_TYPES) {
            assert!(known.contains(listed), "{listed} is not an event type of the domain");
        }
        for recorded in RECORDED_EVENT_TYPES {
            assert!(NotificationRecorder.handles(recorded), "{recorded}");
        }
        assert_eq!(NotificationRecorder.interest("NoteRecorded"), None, "an unknown type is undeclared");
    }
}
