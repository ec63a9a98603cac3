//! The HTTP edge and the command line of the `aisc` service.

pub mod auth;
pub mod authorization;
pub mod cli;
pub mod command;
pub mod event_feed;
pub mod export_formats;
pub mod export_verification;
pub mod health;
pub mod http_client;
pub mod input;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod personal_data;
pub mod problem;
pub mod progress;
pub mod request_context;
pub mod routes;
pub mod seal;
pub mod startup;
pub mod telemetry;
pub mod trace_export;
pub mod ui;
pub mod webhooks;

pub use startup::{Application, ServiceConfig};
