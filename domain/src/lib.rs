//! The AI Subsidy Scheme's pure domain.
//!
//! This crate performs no I/O. Facts from outside (today's date, the acting principal) arrive
//! as typed arguments of each decision, the states of the streams it reads as folded states,
//! and the ports the domain needs from the
//! outside world — the event store above all — are traits defined here and implemented in
//! `aisc-adapters`.

pub mod codec;
pub mod command_service;
pub mod demo;
pub mod event_store;
pub mod personal_data;
pub mod progress;
pub mod subsidy;
