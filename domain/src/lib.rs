//! The AI Subsidy Scheme's pure domain.
//!
//! This crate performs no I/O. Facts from outside (today's date, prices, the state of other
//! aggregates) arrive inside commands or as arguments, and the ports the domain needs from the
//! outside world — the event store above all — are traits defined here and implemented in
//! `aisc-adapters`.

pub mod command_service;
pub mod event_store;
pub mod subsidy;
