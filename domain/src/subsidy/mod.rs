//! The AI Subsidy Scheme's aggregates (paper §6–§23): funding years, the price schedule, AISC
//! capacity, the batch calendar and applications. Each aggregate is pure: `handle` decides
//! events from its state and a command (outside facts arrive inside the command), `apply`
//! folds an event into the state without logic or failure.
//!
//! Readings of the paper written down here:
//! - Batches (§15) form one calendar stream (`batches`): placing an application in "the
//!   earliest open batch whose deadline has not passed" is a decision over all batches.
//! - The budget lines of §23 all receive funding; only the computing power subsidy line is
//!   committed by approvals and paid out by disbursements (§10); the other two lines are
//!   Cyberport's own programmes, outside this back office's decisions.
//! - An approval's subsidy ceiling is reserved in the financial years its period spans, in
//!   proportion to its months in each year (the remainder in the last year), since the
//!   Government funds each year separately (§16, §23).
//! - AISC capacity is declared per service type and month in that service's units; subsidised
//!   allocations per service type and month stay within 90 % of it (§10).
//! - The committee's quorum is 3 members present without a conflict (the paper sets none;
//!   a rule is needed to make "recused members are not counted as present" mean something).
//! - A usage line's subsidy is units × rate in force × approved rate, rounded half up to the
//!   cent ([`values::subsidy_for`]); the rate in force is the schedule's for the usage month's
//!   first day.
//!
//! Out of scope here: the cyber and data security (§19) and ecosystem (§20) programmes
//! themselves, Cyberport's annual reports to OGCIO (§21) and the 2026 review (§22).

pub mod application;
pub mod batches;
pub mod capacity;
pub mod error;
pub mod funding;
pub mod prices;
pub mod service;
pub mod usage_import;
pub mod values;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

pub use error::DomainError;

/// Implements [`EventCodec`](crate::command_service::EventCodec) for an event enum whose
/// variants are its stable type names, stored adjacently tagged (`type` and `data`).
#[macro_export]
macro_rules! stored_events {
    ($enum:ident, version $version:literal, [$($variant:ident),+ $(,)?]) => {
        impl $enum {
            /// Every stored type name of this event enum.
            pub const EVENT_TYPES: &'static [&'static str] = &[$(stringify!($variant)),+];

            pub fn event_type(&self) -> &'static str {
                match self {
                    $($enum::$variant { .. } => stringify!($variant),)+
                }
            }
        }

        impl $crate::command_service::EventCodec for $enum {
            fn event_type(&self) -> &'static str {
                $enum::event_type(self)
            }
            fn schema_version(&self) -> u32 {
                $version
            }
            fn to_data(&self) -> Result<serde_json::Value, $crate::command_service::CodecError> {
                let mut tagged = serde_json::to_value(self).map_err(|error| $crate::command_service::CodecError {
                    action: "encode",
                    event_type: self.event_type().to_string(),
                    reason: error.to_string(),
                })?;
                Ok(tagged.get_mut("data").map(serde_json::Value::take).unwrap_or(serde_json::Value::Null))
            }
            fn from_stored(
                event_type: &str,
                _schema_version: u32,
                data: &serde_json::Value,
            ) -> Result<Self, $crate::command_service::CodecError> {
                serde_json::from_value(serde_json::json!({ "type": event_type, "data": data })).map_err(|error| {
                    $crate::command_service::CodecError {
                        action: "decode",
                        event_type: event_type.to_string(),
                        reason: error.to_string(),
                    }
                })
            }
        }
    };
}
