//! Cyberport's service rates (§14): per service type and level, each with the date it takes
//! effect. A usage line is charged at the rate in force for its month.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::error::DomainError;
use super::values::{Money, ServiceType};

/// The stream of the price schedule.
pub const STREAM: &str = "prices-aisc";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PriceScheduleState {
    /// Per service type, rates by the date they take effect.
    pub rates: BTreeMap<ServiceType, BTreeMap<NaiveDate, Money>>,
}

impl PriceScheduleState {
    /// The rate of `service_type` in force on `date`: the latest one effective on or before it.
    pub fn rate_in_force(&self, service_type: &ServiceType, date: NaiveDate) -> Result<Money, DomainError> {
        self.rates
            .get(service_type)
            .and_then(|rates| rates.range(..=date).next_back().map(|(_, rate)| *rate))
            .ok_or_else(|| DomainError::NoRateInForce { service_type: service_type.to_string(), date })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriceCommand {
    SetRate { service_type: ServiceType, rate_per_unit: Money, unit: String, effective_from: NaiveDate },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum PriceEvent {
    ServiceRateSet { service_type: ServiceType, rate_per_unit: Money, unit: String, effective_from: NaiveDate },
}

crate::stored_events!(PriceEvent, version 1, [ServiceRateSet]);

pub fn handle(state: &PriceScheduleState, command: PriceCommand) -> Result<Vec<PriceEvent>, DomainError> {
    match command {
        PriceCommand::SetRate { service_type, rate_per_unit, unit, effective_from } => {
            if rate_per_unit.cents() <= 0 {
                return Err(DomainError::InvalidInput { field: "rate_per_unit", reason: "must be positive".into() });
            }
            if unit.trim().is_empty() || unit.len() > 40 {
                return Err(DomainError::InvalidInput {
                    field: "unit",
                    reason: "name the unit, e.g. node-hour".into(),
                });
            }
            let current = state.rates.get(&service_type).and_then(|rates| rates.get(&effective_from));
            if current == Some(&rate_per_unit) {
                return Err(DomainError::NoChange(format!(
                    "{service_type} already costs {rate_per_unit} from {effective_from}"
                )));
            }
            Ok(vec![PriceEvent::ServiceRateSet { service_type, rate_per_unit, unit, effective_from }])
        }
    }
}

pub fn apply(mut state: PriceScheduleState, event: &PriceEvent) -> PriceScheduleState {
    match event {
        PriceEvent::ServiceRateSet { service_type, rate_per_unit, effective_from, .. } => {
            state.rates.entry(service_type.clone()).or_default().insert(*effective_from, *rate_per_unit);
        }
    }
    state
}

pub struct PriceSchedule;

impl crate::command_service::Aggregate for PriceSchedule {
    type State = PriceScheduleState;
    type Event = PriceEvent;
    fn apply(state: PriceScheduleState, event: &PriceEvent) -> PriceScheduleState {
        apply(state, event)
    }
}
