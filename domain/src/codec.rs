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

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// An event type of the domain, as it is stored: a stable type name, a schema version and
/// its data as JSON.
pub trait EventCodec: Sized {
    fn event_type(&self) -> &'static str;
    fn schema_version(&self) -> u32;
    fn to_data(&self) -> Result<Value, CodecError>;
    fn from_stored(event_type: &str, schema_version: u32, data: &Value) -> Result<Self, CodecError>;
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

    /// Turns stored data of `from_version` into data of `from_version + 1`. Only versions
    /// below [`EventPayload::SCHEMA_VERSION`] are ever passed here.
    fn upcast(from_version: u32, data: Value) -> Result<Value, String> {
        let _ = data;
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
    fn decode(schema_version: u32, data: &Value) -> Result<Self, CodecError> {
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
                upcast = Self::upcast(version, upcast)
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
            fn from_stored(
                event_type: &str,
                schema_version: u32,
                data: &serde_json::Value,
            ) -> Result<Self, $crate::codec::CodecError> {
                $(if event_type == <$variant as $crate::codec::EventPayload>::EVENT_TYPE {
                    return <$variant as $crate::codec::EventPayload>::decode(schema_version, data).map($enum::$variant);
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
