//! An application for the computing power subsidy (§11–§18, §21), from submission to
//! completion.
//!
//! - [`submission`]: what an applicant submits, its validation and the eligibility rules;
//! - [`events`]: what is stored, one payload per event type with its schema version and
//!   upcasters;
//! - [`state`]: the state the events fold into;
//! - [`ledger`]: the compact record of what an application has charged;
//! - [`decisions`]: every command on an application, in the one decision shape.

pub mod decisions;
pub mod events;
pub mod ledger;
pub mod state;
pub mod submission;

pub use decisions::*;
pub use events::*;
pub use ledger::{ChargedUsage, MonthUsage, UsageLedger, UsageSummary};
pub use state::*;
pub use submission::{Contact, Submission, Undertakings};

/// The application aggregate: its events fold into [`ApplicationState`].
pub struct Application;

impl crate::command_service::Aggregate for Application {
    type State = ApplicationState;
    type Event = ApplicationEvent;
    fn apply(state: ApplicationState, event: &ApplicationEvent) -> ApplicationState {
        state::apply(state, event)
    }

    fn kept_bytes(state: &ApplicationState) -> usize {
        std::mem::size_of::<ApplicationState>() + state.usage.approx_bytes()
    }
}
