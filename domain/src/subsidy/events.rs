//! Every event of the scheme, across its aggregates: what a decision that writes several
//! streams returns, and the one list of event types that read models must each account for.

use serde_json::Value;

use super::application::ApplicationEvent;
use super::batches::BatchEvent;
use super::capacity::CapacityEvent;
use super::data_subjects::DataSubjectEvent;
use super::funding::FundingEvent;
use super::prices::PriceEvent;
use crate::codec::{BusinessDate, CodecError, EventCodec, StoredContext};

// An application's submission is the large variant; events are decided and folded a few at a
// time, so boxing it would cost an allocation per event for no saving worth having.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemeEvent {
    Application(ApplicationEvent),
    Batch(BatchEvent),
    Capacity(CapacityEvent),
    DataSubject(DataSubjectEvent),
    Funding(FundingEvent),
    Price(PriceEvent),
}

impl SchemeEvent {
    /// Every event type of the scheme, as stored.
    pub fn event_types() -> impl Iterator<Item = &'static str> {
        [
            ApplicationEvent::EVENT_TYPES,
            BatchEvent::EVENT_TYPES,
            CapacityEvent::EVENT_TYPES,
            DataSubjectEvent::EVENT_TYPES,
            FundingEvent::EVENT_TYPES,
            PriceEvent::EVENT_TYPES,
        ]
        .into_iter()
        .flatten()
        .copied()
    }
}

macro_rules! scheme_event_from {
    ($($variant:ident($event:ty)),+) => {
        $(impl From<$event> for SchemeEvent {
            fn from(event: $event) -> Self {
                SchemeEvent::$variant(event)
            }
        })+

        impl BusinessDate for SchemeEvent {
            fn effective_on(&self) -> chrono::NaiveDate {
                match self {
                    $(SchemeEvent::$variant(event) => event.effective_on(),)+
                }
            }
        }

        impl EventCodec for SchemeEvent {
            fn event_type(&self) -> &'static str {
                match self {
                    $(SchemeEvent::$variant(event) => event.event_type(),)+
                }
            }
            fn schema_version(&self) -> u32 {
                match self {
                    $(SchemeEvent::$variant(event) => event.schema_version(),)+
                }
            }
            fn to_data(&self) -> Result<Value, CodecError> {
                match self {
                    $(SchemeEvent::$variant(event) => event.to_data(),)+
                }
            }
            fn personal_fields(&mut self) -> Vec<crate::personal_data::PersonalField<'_>> {
                match self {
                    $(SchemeEvent::$variant(event) => event.personal_fields(),)+
                }
            }
            fn from_stored(
                event_type: &str,
                schema_version: u32,
                data: &Value,
                context: StoredContext,
            ) -> Result<Self, CodecError> {
                $(if <$event>::EVENT_TYPES.contains(&event_type) {
                    return <$event>::from_stored(event_type, schema_version, data, context)
                        .map(SchemeEvent::$variant);
                })+
                Err(CodecError {
                    action: "decode",
                    event_type: event_type.to_string(),
                    reason: "not an event type of the scheme".into(),
                })
            }
        }
    };
}

scheme_event_from!(
    Application(ApplicationEvent),
    Batch(BatchEvent),
    Capacity(CapacityEvent),
    DataSubject(DataSubjectEvent),
    Funding(FundingEvent),
    Price(PriceEvent)
);
