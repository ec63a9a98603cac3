//! Event ids for the command service: time-ordered UUIDs (v7), so ids sort roughly by the
//! moment they were made, which keeps the event id index compact.

use aisc_domain::command_service::EventIds;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, Default)]
pub struct TimeOrderedEventIds;

impl EventIds for TimeOrderedEventIds {
    fn next_id(&self) -> Uuid {
        Uuid::now_v7()
    }
}
