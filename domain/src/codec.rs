//! How events are stored and read back, for ever.
//!
//! Each event type owns a payload struct ([`EventPayload`]) with a stable type name and a
//! schema version of its own. An event enum (one per aggregate) wraps its payloads, one variant
//! per type, named as the type; [`stored_events!`](crate::stored_events) derives its codec.
//!
//! Decoding honours the stored schema version: data written at an older version is upcast one
//! step at a time (v1 → v2 → …) by the payload's own [`EventPayload::upcast`] — the one place
//! per event type that knows its history — and then deserialised as the current type. Data
//! written by a newer version of the code than this one is refused, never guessed at.
//! `domain/tests/fixtures/events/` holds the stored data of every (type, version) ever written.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// What is known of a stored event besides its data: when it was recorded. An upcaster uses it
/// where an older version lacks a fact the current one carries — a business date the first
/// release did not store, for which the day the event was recorded is the evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredContext {
    pub recorded_at: DateTime<Utc>,
}

impl StoredContext {
    pub fn new(recorded_at: DateTime<Utc>) -> Self {
        Self { recorded_at }
    }

    /// The Hong Kong calendar day it was recorded on (UTC+8 all year: no daylight saving).
    pub fn recorded_on(&self) -> NaiveDate {
        (self.recorded_at + chrono::TimeDelta::hours(8)).date_naive()
    }
}

/// An event type of the domain, as it is stored: a stable type name, a schema version and
/// its data as JSON.
pub trait EventCodec: Sized {
    fn event_type(&self) -> &'static str;
    fn schema_version(&self) -> u32;
    fn to_data(&self) -> Result<Value, CodecError>;
    fn from_stored(
        event_type: &str,
        schema_version: u32,
        data: &Value,
        context: StoredContext,
    ) -> Result<Self, CodecError>;

    /// Its personal fields (see [`crate::personal_data`]): the command service seals those a
    /// decision wrote before the event is encoded.
    fn personal_fields(&mut self) -> Vec<crate::personal_data::PersonalField<'_>> {
        Vec::new()
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("cannot {action} event {event_type}: {reason}")]
pub struct CodecError {
    pub action: &'static str,
    pub event_type: String,
    pub reason: String,
}

/// The payload of one event type.
pub trait EventPayload: Serialize + DeserializeOwned {
    /// The stored type name; never changes once written.
    const EVENT_TYPE: &'static str;
    /// The schema version this code writes. Raise it whenever the stored JSON changes, and
    /// teach [`EventPayload::upcast`] the step from the previous version.
    const SCHEMA_VERSION: u32;

    /// Its personal fields, each with its data subject (none for most event types).
    fn personal_fields(&mut self) -> Vec<crate::personal_data::PersonalField<'_>> {
        Vec::new()
    }

    /// Turns stored data of `from_version` into data of `from_version + 1`. Only versions
    /// below [`EventPayload::SCHEMA_VERSION`] are ever passed here.
    fn upcast(from_version: u32, data: Value, context: &StoredContext) -> Result<Value, String> {
        let _ = (data, context);
        Err(format!("no upcaster from schema version {from_version}"))
    }

    fn encode(&self) -> Result<Value, CodecError> {
        serde_json::to_value(self).map_err(|error| CodecError {
            action: "encode",
            event_type: Self::EVENT_TYPE.into(),
            reason: error.to_string(),
        })
    }

    /// Decodes data stored at `schema_version`, upcasting it step by step to the current shape.
    fn decode(schema_version: u32, data: &Value, context: StoredContext) -> Result<Self, CodecError> {
        let failed = |reason: String| CodecError { action: "decode", event_type: Self::EVENT_TYPE.into(), reason };
        if schema_version == 0 || schema_version > Self::SCHEMA_VERSION {
            return Err(failed(format!(
                "schema version {schema_version} is not one this code knows (1 to {})",
                Self::SCHEMA_VERSION
            )));
        }
        let decoded = if schema_version == Self::SCHEMA_VERSION {
            // The common case: read the stored data as it is, without a copy.
            Self::deserialize(data)
        } else {
            let mut upcast = data.clone();
            for version in schema_version..Self::SCHEMA_VERSION {
                upcast = Self::upcast(version, upcast, &context)
                    .map_err(|reason| failed(format!("v{version} → v{}: {reason}", version + 1)))?;
            }
            serde_json::from_value(upcast)
        };
        decoded.map_err(|error| failed(format!("v{}: {error}", Self::SCHEMA_VERSION)))
    }
}

/// An upcasting step that moves the fields of the object under `key` up into `data` itself
/// (a nested value struct flattened into the event's own payload).
pub fn flatten_field(mut data: Value, key: &str) -> Result<Value, String> {
    let object = data.as_object_mut().ok_or("the data is not an object")?;
    match object.remove(key) {
        Some(Value::Object(inner)) => {
            for (field, value) in inner {
                if object.insert(field.clone(), value).is_some() {
                    return Err(format!("{key}.{field} collides with a field of the event"));
                }
            }
            Ok(data)
        }
        Some(_) => Err(format!("{key} is not an object")),
        None => Err(format!("{key} is missing")),
    }
}

/// The date a fact takes effect in the scheme's own terms — decided on, signed on, received
/// on; for a monthly fact (usage, capacity) the first day of its month — as distinct from the
/// time it was recorded. Every event payload has one: auditors ask both "as recorded at" and
/// "as it stood on".
pub trait BusinessDate {
    fn effective_on(&self) -> NaiveDate;
}

/// An upcasting step that adds a field the older version did not have.
pub fn add_field(mut data: Value, key: &str, value: impl Serialize) -> Result<Value, String> {
    let value = serde_json::to_value(value).map_err(|error| error.to_string())?;
    let object = data.as_object_mut().ok_or("the data is not an object")?;
    if object.contains_key(key) {
        return Err(format!("{key} is already present"));
    }
    object.insert(key.to_string(), value);
    Ok(data)
}

/// Derives [`EventCodec`] for an event enum whose variants each wrap the payload struct of the
/// same name: `stored_events!(BatchEvent, [BatchOpened, BatchClosed]);`. Each variant is
/// stored under its payload's type name and schema version.
#[macro_export]
macro_rules! stored_events {
    ($enum:ident, [$($variant:ident),+ $(,)?]) => {
        impl $enum {
            /// Every stored type name of this event enum.
            pub const EVENT_TYPES: &'static [&'static str] =
                &[$(<$variant as $crate::codec::EventPayload>::EVENT_TYPE),+];

            pub fn event_type(&self) -> &'static str {
                match self {
                    $($enum::$variant(_) => <$variant as $crate::codec::EventPayload>::EVENT_TYPE,)+
                }
            }
        }

        $(impl From<$variant> for $enum {
            fn from(payload: $variant) -> Self {
                $enum::$variant(payload)
            }
        })+

        impl $crate::codec::BusinessDate for $enum {
            fn effective_on(&self) -> chrono::NaiveDate {
                match self {
                    $($enum::$variant(payload) => $crate::codec::BusinessDate::effective_on(payload),)+
                }
            }
        }

        impl $crate::codec::EventCodec for $enum {
            fn event_type(&self) -> &'static str {
                $enum::event_type(self)
            }
            fn schema_version(&self) -> u32 {
                match self {
                    $($enum::$variant(_) => <$variant as $crate::codec::EventPayload>::SCHEMA_VERSION,)+
                }
            }
            fn to_data(&self) -> Result<serde_json::Value, $crate::codec::CodecError> {
                match self {
                    $($enum::$variant(payload) => $crate::codec::EventPayload::encode(payload),)+
                }
            }
            fn personal_fields(&mut self) -> Vec<$crate::personal_data::PersonalField<'_>> {
                match self {
                    $($enum::$variant(payload) => $crate::codec::EventPayload::personal_fields(payload),)+
                }
            }
            fn from_stored(
                event_type: &str,
                schema_version: u32,
                data: &serde_json::Value,
                context: $crate::codec::StoredContext,
            ) -> Result<Self, $crate::codec::CodecError> {
                $(if event_type == <$variant as $crate::codec::EventPayload>::EVENT_TYPE {
                    return <$variant as $crate::codec::EventPayload>::decode(schema_version, data, context)
                        .map($enum::$variant);
                })+
                Err($crate::codec::CodecError {
                    action: "decode",
                    event_type: event_type.to_string(),
                    reason: format!("not an event of {}", stringify!($enum)),
                })
            }
        }
    };
}

/// Implements [`EventPayload`] for payload structs at a schema version, with no upcaster
/// (their stored shape has never changed): `event_payloads!(1: BatchOpened, BatchClosed);`.
#[macro_export]
macro_rules! event_payloads {
    ($version:literal: $($payload:ident),+ $(,)?) => {
        $(impl $crate::codec::EventPayload for $payload {
            const EVENT_TYPE: &'static str = stringify!($payload);
            const SCHEMA_VERSION: u32 = $version;
        })+
    };
}

/// Implements [`EventPayload`] at schema version 2 for payloads whose first version did not
/// store their business date: `business_date_added_in_v2!(BatchOpened: opened_on);`. Version 1
/// data takes the Hong Kong day the event was recorded as that date (the service recorded
/// those facts as they happened, with no date of their own).
#[macro_export]
macro_rules! business_date_added_in_v2 {
    ($($payload:ident: $field:ident),+ $(,)?) => {
        $(impl $crate::codec::EventPayload for $payload {
            const EVENT_TYPE: &'static str = stringify!($payload);
            const SCHEMA_VERSION: u32 = 2;
            fn upcast(
                from_version: u32,
                data: serde_json::Value,
                context: &$crate::codec::StoredContext,
            ) -> Result<serde_json::Value, String> {
                match from_version {
                    1 => $crate::codec::add_field(data, stringify!($field), context.recorded_on()),
                    other => Err(format!("no upcaster from schema version {other}")),
                }
            }
        })+
    };
}

/// Implements [`BusinessDate`] for payloads: `business_dates!(BatchClosed => |e| e.closed_on);`.
#[macro_export]
macro_rules! business_dates {
    ($($payload:ident => |$event:ident| $date:expr),+ $(,)?) => {
        $(impl $crate::codec::BusinessDate for $payload {
            fn effective_on(&self) -> chrono::NaiveDate {
                let $event = self;
                $date
            }
        })+
    };
}
