//! AISC capacity (§10, §17): capacity per service type and month, in that service's units.
//! Subsidised allocations in a month never exceed 90 % of it; capacity not taken up may be
//! redeployed at market rates by committee decision.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Facts;
use super::error::DomainError;
use super::streams;
use super::values::{Period, ServiceType};
use crate::command_service::StreamDecision;
use crate::event_store::StreamId;

/// Subsidised use is capped at 90 % of capacity (§10), in basis points.
pub const SUBSIDISED_SHARE_BPS: u64 = 9_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Slot {
    pub capacity: u64,
    pub allocated: u64,
    pub redeployed: u64,
}

impl Slot {
    /// 90 % of capacity, rounded down: the most subsidised allocations may take.
    pub fn cap(&self) -> u64 {
        u64::try_from(u128::from(self.capacity) * u128::from(SUBSIDISED_SHARE_BPS) / 10_000).unwrap_or(u64::MAX)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CapacityState {
    pub slots: BTreeMap<(ServiceType, Period), Slot>,
}

/// Units of one service type in one month.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Allocation {
    pub service_type: ServiceType,
    pub period: Period,
    pub units: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacityDeclared {
    pub service_type: ServiceType,
    pub period: Period,
    pub units: u64,
    pub subsidised_cap: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacityAllocated {
    pub application_id: String,
    pub service_type: ServiceType,
    pub period: Period,
    pub units: u64,
    pub allocated_total: u64,
    pub subsidised_cap: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacityReleased {
    pub application_id: String,
    pub service_type: ServiceType,
    pub period: Period,
    pub units: u64,
    pub allocated_total: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacityRedeployed {
    pub service_type: ServiceType,
    pub period: Period,
    pub units: u64,
    pub decision_reference: String,
    pub redeployed_total: u64,
}

crate::event_payloads!(1: CapacityDeclared, CapacityAllocated, CapacityReleased, CapacityRedeployed);

// Capacity is a fact of its month.
crate::business_dates!(
    CapacityDeclared => |e| e.period.first_day(),
    CapacityAllocated => |e| e.period.first_day(),
    CapacityReleased => |e| e.period.first_day(),
    CapacityRedeployed => |e| e.period.first_day(),
);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapacityEvent {
    CapacityDeclared(CapacityDeclared),
    CapacityAllocated(CapacityAllocated),
    CapacityReleased(CapacityReleased),
    CapacityRedeployed(CapacityRedeployed),
}

crate::stored_events!(CapacityEvent, [CapacityDeclared, CapacityAllocated, CapacityReleased, CapacityRedeployed]);

/// Declares the capacity of a service type in a month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclareCapacity {
    pub service_type: ServiceType,
    pub period: Period,
    pub units: u64,
}

impl StreamDecision for DeclareCapacity {
    type Aggregate = Capacity;
    type Facts = Facts;
    type Error = DomainError;

    fn stream(&self) -> Result<StreamId, DomainError> {
        streams::capacity()
    }
    fn decide(&self, state: &CapacityState, _facts: &Facts) -> Result<Vec<CapacityEvent>, DomainError> {
        let (service_type, period, units) = (&self.service_type, self.period, self.units);
        let slot = state.slots.get(&(service_type.clone(), period)).cloned().unwrap_or_default();
        if slot.capacity == units {
            return Err(DomainError::NoChange(format!("{service_type} in {period} already has {units} units")));
        }
        let declared = Slot { capacity: units, ..slot };
        if declared.cap() < declared.allocated {
            return Err(DomainError::CapacityCapExceeded {
                service_type: service_type.to_string(),
                period: period.to_string(),
                requested: declared.allocated,
                left: declared.cap(),
            });
        }
        Ok(vec![
            CapacityDeclared { subsidised_cap: declared.cap(), service_type: service_type.clone(), period, units }
                .into(),
        ])
    }
}

/// By committee decision (§17): capacity not taken up goes to projects at market rates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedeployCapacity {
    pub service_type: ServiceType,
    pub period: Period,
    pub units: u64,
    pub decision_reference: String,
}

impl StreamDecision for RedeployCapacity {
    type Aggregate = Capacity;
    type Facts = Facts;
    type Error = DomainError;

    fn stream(&self) -> Result<StreamId, DomainError> {
        streams::capacity()
    }
    fn decide(&self, state: &CapacityState, _facts: &Facts) -> Result<Vec<CapacityEvent>, DomainError> {
        let (service_type, period, units) = (&self.service_type, self.period, self.units);
        if self.decision_reference.trim().is_empty() {
            return Err(DomainError::InvalidInput {
                field: "decision_reference",
                reason: "name the committee decision".into(),
            });
        }
        let slot = state.slots.get(&(service_type.clone(), period)).ok_or_else(|| DomainError::NoCapacityDeclared {
            service_type: service_type.to_string(),
            period: period.to_string(),
        })?;
        let untaken = slot.capacity.saturating_sub(slot.allocated).saturating_sub(slot.redeployed);
        if units == 0 || units > untaken {
            return Err(DomainError::RedeploymentBeyondUntaken {
                service_type: service_type.to_string(),
                period: period.to_string(),
                requested: units,
                untaken,
            });
        }
        Ok(vec![
            CapacityRedeployed {
                redeployed_total: slot.redeployed + units,
                service_type: service_type.clone(),
                period,
                units,
                decision_reference: self.decision_reference.clone(),
            }
            .into(),
        ])
    }
}

/// Allocates units to an approved application, month by month, each within the 90 % cap.
pub fn allocate(
    state: &CapacityState,
    application_id: &str,
    allocations: &[Allocation],
) -> Result<Vec<CapacityEvent>, DomainError> {
    let mut taken: BTreeMap<(ServiceType, Period), u64> = BTreeMap::new();
    let mut events = Vec::with_capacity(allocations.len());
    for allocation in allocations {
        let key = (allocation.service_type.clone(), allocation.period);
        let slot = state.slots.get(&key).ok_or_else(|| DomainError::NoCapacityDeclared {
            service_type: allocation.service_type.to_string(),
            period: allocation.period.to_string(),
        })?;
        let already = slot.allocated + taken.get(&key).copied().unwrap_or(0);
        let left = slot.cap().saturating_sub(already);
        if allocation.units > left {
            return Err(DomainError::CapacityCapExceeded {
                service_type: allocation.service_type.to_string(),
                period: allocation.period.to_string(),
                requested: allocation.units,
                left,
            });
        }
        *taken.entry(key).or_default() += allocation.units;
        events.push(
            CapacityAllocated {
                application_id: application_id.to_string(),
                service_type: allocation.service_type.clone(),
                period: allocation.period,
                units: allocation.units,
                allocated_total: already + allocation.units,
                subsidised_cap: slot.cap(),
            }
            .into(),
        );
    }
    Ok(events)
}

pub fn apply(mut state: CapacityState, event: &CapacityEvent) -> CapacityState {
    match event {
        CapacityEvent::CapacityDeclared(e) => {
            state.slots.entry((e.service_type.clone(), e.period)).or_default().capacity = e.units;
        }
        CapacityEvent::CapacityAllocated(e) => {
            state.slots.entry((e.service_type.clone(), e.period)).or_default().allocated = e.allocated_total;
        }
        CapacityEvent::CapacityReleased(e) => {
            state.slots.entry((e.service_type.clone(), e.period)).or_default().allocated = e.allocated_total;
        }
        CapacityEvent::CapacityRedeployed(e) => {
            state.slots.entry((e.service_type.clone(), e.period)).or_default().redeployed = e.redeployed_total;
        }
    }
    state
}

pub struct Capacity;

impl crate::command_service::Aggregate for Capacity {
    type State = CapacityState;
    type Event = CapacityEvent;
    fn apply(state: CapacityState, event: &CapacityEvent) -> CapacityState {
        apply(state, event)
    }
}
