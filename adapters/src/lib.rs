//! Adapters to the outside world: the PostgreSQL event store implementing the domain's
//! [`EventStore`](aisc_domain::event_store::EventStore) port, and the database set-up the
//! service needs at start-up.

pub mod access;
pub mod backoff;
pub mod clock;
pub mod database;
pub mod event_hash;
pub mod event_ids;
pub mod held_back;
pub mod log_generation;
pub mod personal_data;
pub mod postgres_store;
pub mod retention;
pub mod token_cache;
pub mod ui_sessions;

pub use backoff::JitteredBackoff;
pub use database::{DatabaseConfig, DatabaseError};
pub use event_ids::TimeOrderedEventIds;
pub use postgres_store::{ChainLink, PostgresEventStore};
