//! The AI Subsidy Scheme's aggregates (paper §6–§23): funding years, the price schedule, AISC
//! capacity, the batch calendar and applications. Each command is a
//! [`Decision`](crate::command_service::Decision): it names the streams it reads, decides
//! purely from their folded states and the outside [`Facts`] (today's date, the acting
//! principal), and returns the events for each stream. `apply` folds an event into its
//! aggregate's state without logic or failure.
//!
//! Readings of the paper written down here:
//! - Batches (§15) form one calendar stream (`batches`): placing an application in "the
//!   earliest open batch whose deadline has not passed" is a decision over all batches.
//! - The budget lines of §23 all receive funding; only the computing power subsidy line is
//!   committed by approvals and paid out by disbursements (§10); the other two lines are
//!   Cyberport's own programmes, outside this back office's decisions.
//! - An approval reserves its subsidy in each funding year once; a usage charge is then paid
//!   from what its application reserved in the usage month's year, decided on the
//!   application's stream alone. The year's disbursed totals are derived in the read model.
//! - An approval's ceiling is at most the subsidy of its allocated units (units × rate in force
//!   for the service and month × approved rate, rounded down), and that amount when omitted.
//!   It is reserved in the financial years where the allocated months fall, in proportion to
//!   the subsidy of each year's units (the remainder in the last year), since the Government
//!   funds each year separately (§16, §23).
//! - AISC capacity is declared per service type and month in that service's units; subsidised
//!   allocations per service type and month stay within 90 % of it (§10).
//! - The committee's quorum is 3 members present without a conflict (the paper sets none;
//!   a rule is needed to make "recused members are not counted as present" mean something);
//!   the application's assessor may neither record the decision nor be counted as present.
//! - A usage line's subsidy is units × rate in force × approved rate, rounded down to the
//!   cent ([`values::subsidy_for`]): "up to" 70 % (§13) is never exceeded by a fraction of a
//!   cent, and an allocation's lines never add up to more than its ceiling. The rate in force
//!   is the schedule's for the usage month's first day.
//! - Business dates follow the order things happen and are never after today: see the README
//!   for each rule and its code.
//!
//! Out of scope here: the cyber and data security (§19) and ecosystem (§20) programmes
//! themselves, Cyberport's annual reports to OGCIO (§21) and the 2026 review (§22).

pub mod application;
pub mod batches;
pub mod capacity;
pub mod data_subjects;
pub mod error;
pub mod events;
pub mod funding;
pub mod prices;
pub mod service;
pub mod streams;
pub mod usage_import;
pub mod values;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

pub use error::DomainError;

/// Facts from outside the log that decisions take as arguments: the business date of the
/// command (Hong Kong time, from the service's clock) and the principal acting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub today: chrono::NaiveDate,
    pub actor: String,
}

impl Facts {
    pub fn new(today: chrono::NaiveDate, actor: impl Into<String>) -> Self {
        Self { today, actor: actor.into() }
    }
}
