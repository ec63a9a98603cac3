//! A funding year (`budget-2025-26`): what the Government paid for the year per budget line
//! (§16, §23), what approvals committed and what was released, and the unused subsidy
//! redirected to publicity and talent at year end (§17). Commitments never exceed the
//! computing power subsidy received.
//!
//! Disbursements are not this stream's: an approval reserves its subsidy here once, per year,
//! and each usage charge is then decided on the application's own stream against what it
//! reserved, so charges never contend for the year. The year's disbursed totals are the read
//! model's. `SubsidyDisbursed` and `SubsidyDisbursementReversed` were written here by the first
//! releases; they stay readable and change nothing the year decides on.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::Facts;
use super::error::DomainError;
use super::streams;
use super::values::{FinancialYear, Money};
use crate::command_service::StreamDecision;
use crate::event_store::StreamId;

/// The budget lines of §23.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetLine {
    ComputingPowerSubsidy,
    CyberAndDataSecurity,
    AiEcosystemDevelopment,
}

impl BudgetLine {
    pub const ALL: [BudgetLine; 3] =
        [BudgetLine::ComputingPowerSubsidy, BudgetLine::CyberAndDataSecurity, BudgetLine::AiEcosystemDevelopment];

    pub fn as_str(self) -> &'static str {
        match self {
            BudgetLine::ComputingPowerSubsidy => "computing_power_subsidy",
            BudgetLine::CyberAndDataSecurity => "cyber_and_data_security",
            BudgetLine::AiEcosystemDevelopment => "ai_ecosystem_development",
        }
    }

    pub fn parse(text: &str) -> Option<BudgetLine> {
        BudgetLine::ALL.into_iter().find(|line| line.as_str() == text)
    }
}

/// The §23 cash flow, HK$ million per financial year (by its first calendar year) and budget
/// line, in the order of [`BudgetLine::ALL`]: what the Government plans to pay, against which
/// the funding actually received is reported.
const PLANNED_CASH_FLOW_MILLIONS: [(i32, [i64; 3]); 3] =
    [(2024, [857, 42, 6]), (2025, [857, 32, 16]), (2026, [1_142, 26, 22])];

/// The financial years §23 funds, in order.
pub fn planned_years() -> impl Iterator<Item = FinancialYear> {
    PLANNED_CASH_FLOW_MILLIONS.iter().map(|(start, _)| FinancialYear::starting(*start))
}

/// What §23 plans for `line` in `year`; `None` outside the scheme's three years.
pub fn planned_cash_flow(year: FinancialYear, line: BudgetLine) -> Option<Money> {
    let index = BudgetLine::ALL.iter().position(|candidate| *candidate == line)?;
    PLANNED_CASH_FLOW_MILLIONS
        .iter()
        .find(|(start, _)| FinancialYear::starting(*start) == year)
        .map(|(_, millions)| Money::from_cents(millions[index] * 100_000_000))
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FundingYearState {
    pub year: Option<FinancialYear>,
    pub received: BTreeMap<BudgetLine, Money>,
    /// Computing power subsidy committed by approvals and not released.
    pub committed: Money,
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FundingReceived {
    pub year: FinancialYear,
    pub line: BudgetLine,
    pub amount: Money,
    pub line_total: Money,
    pub received_on: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubsidyCommitted {
    /// The committee's decision date.
    pub committed_on: NaiveDate,
    pub application_id: String,
    pub amount: Money,
    pub committed_total: Money,
    pub left: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubsidyReleased {
    pub released_on: NaiveDate,
    pub application_id: String,
    pub amount: Money,
    pub committed_total: Money,
    pub left: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubsidyDisbursed {
    pub disbursed_on: NaiveDate,
    pub application_id: String,
    pub usage_id: String,
    pub amount: Money,
    pub disbursed_total: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubsidyDisbursementReversed {
    pub reversed_on: NaiveDate,
    pub application_id: String,
    pub usage_id: String,
    pub amount: Money,
    pub disbursed_total: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnusedSubsidyRedirected {
    pub redirected_on: NaiveDate,
    pub amount: Money,
    pub to: String,
}

crate::event_payloads!(1: FundingReceived);

// Version 1 of these did not store their business date.
crate::business_date_added_in_v2!(
    SubsidyCommitted: committed_on,
    SubsidyReleased: released_on,
    SubsidyDisbursed: disbursed_on,
    SubsidyDisbursementReversed: reversed_on,
    UnusedSubsidyRedirected: redirected_on
);

crate::business_dates!(
    FundingReceived => |e| e.received_on,
    SubsidyCommitted => |e| e.committed_on,
    SubsidyReleased => |e| e.released_on,
    SubsidyDisbursed => |e| e.disbursed_on,
    SubsidyDisbursementReversed => |e| e.reversed_on,
    UnusedSubsidyRedirected => |e| e.redirected_on,
);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FundingEvent {
    FundingReceived(FundingReceived),
    SubsidyCommitted(SubsidyCommitted),
    SubsidyReleased(SubsidyReleased),
    SubsidyDisbursed(SubsidyDisbursed),
    SubsidyDisbursementReversed(SubsidyDisbursementReversed),
    UnusedSubsidyRedirected(UnusedSubsidyRedirected),
}

crate::stored_events!(
    FundingEvent,
    [
        FundingReceived,
        SubsidyCommitted,
        SubsidyReleased,
        SubsidyDisbursed,
        SubsidyDisbursementReversed,
        UnusedSubsidyRedirected
    ]
);

/// Records what the Government paid for a year on one budget line (§16, §23).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFundingReceived {
    pub year: FinancialYear,
    pub line: BudgetLine,
    pub amount: Money,
    pub received_on: NaiveDate,
}

impl StreamDecision for RecordFundingReceived {
    type Aggregate = FundingYear;
    type Facts = Facts;
    type Error = DomainError;

    fn stream(&self) -> Result<StreamId, DomainError> {
        streams::budget(self.year)
    }
    fn decide(&self, state: &FundingYearState, facts: &Facts) -> Result<Vec<FundingEvent>, DomainError> {
        if let Some(existing) = state.year
            && existing != self.year
        {
            return Err(DomainError::InvalidInput { field: "year", reason: format!("this stream is {existing}") });
        }
        if state.closed {
            return Err(DomainError::YearClosed { year: self.year.to_string() });
        }
        if self.amount.cents() <= 0 {
            return Err(DomainError::InvalidInput { field: "amount", reason: "must be positive".into() });
        }
        if self.received_on > facts.today {
            return Err(DomainError::DateInFuture {
                what: "the funding receipt",
                date: self.received_on,
                today: facts.today,
            });
        }
        let line_total = state.received.get(&self.line).copied().unwrap_or(Money::ZERO).checked_add(self.amount)?;
        Ok(vec![
            FundingReceived {
                year: self.year,
                line: self.line,
                amount: self.amount,
                line_total,
                received_on: self.received_on,
            }
            .into(),
        ])
    }
}

/// At year end: what was not committed goes to publicity, talent and the ecosystem (§17).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectUnusedSubsidy {
    pub year: FinancialYear,
}

impl StreamDecision for RedirectUnusedSubsidy {
    type Aggregate = FundingYear;
    type Facts = Facts;
    type Error = DomainError;

    fn stream(&self) -> Result<StreamId, DomainError> {
        streams::budget(self.year)
    }
    fn decide(&self, state: &FundingYearState, facts: &Facts) -> Result<Vec<FundingEvent>, DomainError> {
        let year = state.year.ok_or_else(|| DomainError::InvalidInput {
            field: "year",
            reason: "no funding was received for this year".into(),
        })?;
        if state.closed {
            return Err(DomainError::YearClosed { year: year.to_string() });
        }
        if facts.today <= year.last_day() {
            return Err(DomainError::YearNotEnded { year: year.to_string(), last_day: year.last_day() });
        }
        let unused = state.subsidy_left();
        if unused.cents() <= 0 {
            return Err(DomainError::NothingToRedirect { year: year.to_string() });
        }
        Ok(vec![
            UnusedSubsidyRedirected { redirected_on: facts.today, amount: unused, to: "publicity_and_talent".into() }
                .into(),
        ])
    }
}

/// Commits subsidy for an approval decided on `committed_on` in `year`: refused when the
/// year's subsidy left is short.
pub fn commit(
    state: &FundingYearState,
    year: FinancialYear,
    application_id: &str,
    amount: Money,
    committed_on: NaiveDate,
) -> Result<FundingEvent, DomainError> {
    let year = year.to_string();
    if state.closed {
        return Err(DomainError::YearClosed { year });
    }
    let left = state.subsidy_left();
    if amount > left {
        return Err(DomainError::BudgetShort { year, requested: amount.to_string(), left: left.to_string() });
    }
    let committed_total = state.committed.checked_add(amount)?;
    Ok(SubsidyCommitted {
        committed_on,
        application_id: application_id.to_string(),
        amount,
        committed_total,
        left: left.checked_sub(amount)?,
    }
    .into())
}

/// Releases commitment no longer needed (completion, termination on `released_on`).
pub fn release(
    state: &FundingYearState,
    application_id: &str,
    amount: Money,
    released_on: NaiveDate,
) -> Result<FundingEvent, DomainError> {
    let committed_total = state.committed.checked_sub(amount)?;
    Ok(SubsidyReleased {
        released_on,
        application_id: application_id.to_string(),
        amount,
        committed_total,
        left: state.subsidy_left().checked_add(amount)?,
    }
    .into())
}

pub fn apply(mut state: FundingYearState, event: &FundingEvent) -> FundingYearState {
    match event {
        FundingEvent::FundingReceived(e) => {
            state.year = Some(e.year);
            state.received.insert(e.line, e.line_total);
        }
        FundingEvent::SubsidyCommitted(e) => state.committed = e.committed_total,
        FundingEvent::SubsidyReleased(e) => state.committed = e.committed_total,
        // History: the application's own charge events carry the same facts.
        FundingEvent::SubsidyDisbursed(_) | FundingEvent::SubsidyDisbursementReversed(_) => {}
        FundingEvent::UnusedSubsidyRedirected(e) => {
            state.redirected = e.amount;
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

#[cfg(test)]
mod plan_tests {
    use super::*;

    #[test]
    fn the_planned_cash_flow_adds_up_to_the_schemes_three_billion() {
        let total: i64 = planned_years()
            .flat_map(|year| BudgetLine::ALL.into_iter().filter_map(move |line| planned_cash_flow(year, line)))
            .map(Money::cents)
            .sum();
        assert_eq!(total, 3_000_000_000 * 100);
        assert_eq!(
            planned_cash_flow(FinancialYear::starting(2026), BudgetLine::ComputingPowerSubsidy),
            Some(Money::from_cents(1_142 * 100_000_000))
        );
        assert_eq!(planned_cash_flow(FinancialYear::starting(2027), BudgetLine::ComputingPowerSubsidy), None);
    }

    #[test]
    fn budget_lines_parse_by_their_stored_names() {
        for line in BudgetLine::ALL {
            assert_eq!(BudgetLine::parse(line.as_str()), Some(line));
        }
        assert_eq!(BudgetLine::parse("publicity"), None);
    }
}
