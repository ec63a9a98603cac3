//! Cyberport's service rates (§14): per service type and level, each with the date it takes
//! effect. A usage line is charged at the rate in force for its month.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::Facts;
use super::error::DomainError;
use super::streams;
use super::values::{Money, ServiceType};
use crate::command_service::StreamDecision;
use crate::event_store::StreamId;

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRateSet {
    pub service_type: ServiceType,
    pub rate_per_unit: Money,
    pub unit: String,
    pub effective_from: NaiveDate,
}

crate::event_payloads!(1: ServiceRateSet);
crate::business_dates!(ServiceRateSet => |e| e.effective_from);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriceEvent {
    ServiceRateSet(ServiceRateSet),
}

crate::stored_events!(PriceEvent, [ServiceRateSet]);

/// Sets a service's rate from a date (§14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetServiceRate {
    pub service_type: ServiceType,
    pub rate_per_unit: Money,
    pub unit: String,
    pub effective_from: NaiveDate,
}

impl StreamDecision for SetServiceRate {
    type Aggregate = PriceSchedule;
    type Facts = Facts;
    type Error = DomainError;

    fn stream(&self) -> Result<StreamId, DomainError> {
        streams::prices()
    }
    fn decide(&self, state: &PriceScheduleState, _facts: &Facts) -> Result<Vec<PriceEvent>, DomainError> {
        let (service_type, rate_per_unit, effective_from) =
            (&self.service_type, self.rate_per_unit, self.effective_from);
        if rate_per_unit.cents() <= 0 {
            return Err(DomainError::InvalidInput { field: "rate_per_unit", reason: "must be positive".into() });
        }
        if self.unit.trim().is_empty() || self.unit.len() > 40 {
            return Err(DomainError::InvalidInput { field: "unit", reason: "name the unit, e.g. node-hour".into() });
        }
        let current = state.rates.get(service_type).and_then(|rates| rates.get(&effective_from));
        if current == Some(&rate_per_unit) {
            return Err(DomainError::NoChange(format!(
                "{service_type} already costs {rate_per_unit} from {effective_from}"
            )));
        }
        Ok(vec![
            ServiceRateSet {
                service_type: service_type.clone(),
                rate_per_unit,
                unit: self.unit.clone(),
                effective_from,
            }
            .into(),
        ])
    }
}

pub fn apply(mut state: PriceScheduleState, event: &PriceEvent) -> PriceScheduleState {
    match event {
        PriceEvent::ServiceRateSet(e) => {
            state.rates.entry(e.service_type.clone()).or_default().insert(e.effective_from, e.rate_per_unit);
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
