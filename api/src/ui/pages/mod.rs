//! One module per page.

pub mod applications;
pub mod batches;
pub mod dashboard;
pub mod login;
pub mod worklist;
