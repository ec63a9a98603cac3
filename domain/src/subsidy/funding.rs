//! A funding year (`budget-2025-26`): what the Government paid for the year per budget line
//! (§16, §23), what approvals committed, what was released and disbursed, and the unused
//! subsidy redirected to publicity and talent at year end (§17). Commitments never exceed
//! the computing power subsidy received.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::error::DomainError;
use super::values::{FinancialYear, Money};

/// The budget lines of §23.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetLine {
    ComputingPowerSubsidy,
    CyberAndDataSecurity,
    AiEcosystemDevelopment,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FundingYearState {
    pub year: Option<FinancialYear>,
    pub received: BTreeMap<BudgetLine, Money>,
    /// Computing power subsidy committed by approvals and not released.
    pub committed: Money,
    pub disbursed: Money,
    pub redirected: Money,
    pub closed: bool,
}

impl FundingYearState {
    pub fn subsidy_received(&self) -> Money {
        self.received.get(&BudgetLine::ComputingPowerSubsidy).copied().unwrap_or(Money::ZERO)
    }

    /// Computing power subsidy neither committed nor redirected.
    pub fn subsidy_left(&self) -> Money {
        Money::from_cents(self.subsidy_received().cents() - self.committed.cents() - self.redirected.cents())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FundingCommand {
    RecordFundingReceived {
        year: FinancialYear,
        line: BudgetLine,
        amount: Money,
        received_on: NaiveDate,
    },
    /// At year end: what was not committed goes to publicity, talent and the ecosystem (§17).
    RedirectUnusedSubsidy {
        today: NaiveDate,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum FundingEvent {
    FundingReceived { year: FinancialYear, line: BudgetLine, amount: Money, line_total: Money, received_on: NaiveDate },
    SubsidyCommitted { application_id: String, amount: Money, committed_total: Money, left: Money },
    SubsidyReleased { application_id: String, amount: Money, committed_total: Money, left: Money },
    SubsidyDisbursed { application_id: String, usage_id: String, amount: Money, disbursed_total: Money },
    SubsidyDisbursementReversed { application_id: String, usage_id: String, amount: Money, disbursed_total: Money },
    UnusedSubsidyRedirected { amount: Money, to: String },
}

crate::stored_events!(FundingEvent, version 1, [
    FundingReceived, SubsidyCommitted, SubsidyReleased, SubsidyDisbursed, SubsidyDisbursementReversed, UnusedSubsidyRedirected
]);

pub fn handle(state: &FundingYearState, command: FundingCommand) -> Result<Vec<FundingEvent>, DomainError> {
    match command {
        FundingCommand::RecordFundingReceived { year, line, amount, received_on } => {
            if let Some(existing) = state.year
                && existing != year
            {
                return Err(DomainError::InvalidInput { field: "year", reason: format!("this stream is {existing}") });
            }
            if state.closed {
                return Err(DomainError::YearClosed { year: year.to_string() });
            }
            if amount.cents() <= 0 {
                return Err(DomainError::InvalidInput { field: "amount", reason: "must be positive".into() });
            }
            let line_total = state.received.get(&line).copied().unwrap_or(Money::ZERO).checked_add(amount)?;
            Ok(vec![FundingEvent::FundingReceived { year, line, amount, line_total, received_on }])
        }
        FundingCommand::RedirectUnusedSubsidy { today } => {
            let year = state.year.ok_or_else(|| DomainError::InvalidInput {
                field: "year",
                reason: "no funding was received for this year".into(),
            })?;
            if state.closed {
                return Err(DomainError::YearClosed { year: year.to_string() });
            }
            if today <= year.last_day() {
                return Err(DomainError::YearNotEnded { year: year.to_string(), last_day: year.last_day() });
            }
            let unused = state.subsidy_left();
            if unused.cents() <= 0 {
                return Err(DomainError::NothingToRedirect { year: year.to_string() });
            }
            Ok(vec![FundingEvent::UnusedSubsidyRedirected { amount: unused, to: "publicity_and_talent".into() }])
        }
    }
}

/// Commits subsidy for an approval: refused when the year's subsidy left is short.
pub fn commit(state: &FundingYearState, application_id: &str, amount: Money) -> Result<FundingEvent, DomainError> {
    let year = state.year.map_or_else(|| "(no funding received)".to_string(), |y| y.to_string());
    if state.closed {
        return Err(DomainError::YearClosed { year });
    }
    let left = state.subsidy_left();
    if amount > left {
        return Err(DomainError::BudgetShort { year, requested: amount.to_string(), left: left.to_string() });
    }
    let committed_total = state.committed.checked_add(amount)?;
    Ok(FundingEvent::SubsidyCommitted {
        application_id: application_id.to_string(),
        amount,
        committed_total,
        left: left.checked_sub(amount)?,
    })
}

/// Releases commitment no longer needed (completion, termination).
pub fn release(state: &FundingYearState, application_id: &str, amount: Money) -> Result<FundingEvent, DomainError> {
    let committed_total = state.committed.checked_sub(amount)?;
    Ok(FundingEvent::SubsidyReleased {
        application_id: application_id.to_string(),
        amount,
        committed_total,
        left: state.subsidy_left().checked_add(amount)?,
    })
}

pub fn apply(mut state: FundingYearState, event: &FundingEvent) -> FundingYearState {
    match event {
        FundingEvent::FundingReceived { year, line, line_total, .. } => {
            state.year = Some(*year);
            state.received.insert(*line, *line_total);
        }
        FundingEvent::SubsidyCommitted { committed_total, .. }
        | FundingEvent::SubsidyReleased { committed_total, .. } => {
            state.committed = *committed_total;
        }
        FundingEvent::SubsidyDisbursed { disbursed_total, .. }
        | FundingEvent::SubsidyDisbursementReversed { disbursed_total, .. } => {
            state.disbursed = *disbursed_total;
        }
        FundingEvent::UnusedSubsidyRedirected { amount, .. } => {
            state.redirected = *amount;
            state.closed = true;
        }
    }
    state
}

pub struct FundingYear;

impl crate::command_service::Aggregate for FundingYear {
    type State = FundingYearState;
    type Event = FundingEvent;
    fn apply(state: FundingYearState, event: &FundingEvent) -> FundingYearState {
        apply(state, event)
    }
}

/// Records subsidy paid out for a usage line.
pub fn disburse(
    state: &FundingYearState,
    application_id: &str,
    usage_id: &str,
    amount: Money,
) -> Result<FundingEvent, DomainError> {
    Ok(FundingEvent::SubsidyDisbursed {
        application_id: application_id.to_string(),
        usage_id: usage_id.to_string(),
        amount,
        disbursed_total: state.disbursed.checked_add(amount)?,
    })
}

/// Reverses a disbursement (a correction is a new event, never an edit).
pub fn reverse(
    state: &FundingYearState,
    application_id: &str,
    usage_id: &str,
    amount: Money,
) -> Result<FundingEvent, DomainError> {
    Ok(FundingEvent::SubsidyDisbursementReversed {
        application_id: application_id.to_string(),
        usage_id: usage_id.to_string(),
        amount,
        disbursed_total: state.disbursed.checked_sub(amount)?,
    })
}
