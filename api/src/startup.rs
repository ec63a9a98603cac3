//! Building and running the HTTP application. Tests start it on port 0 and read the port.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use aisc_adapters::{DatabaseConfig, PostgresEventStore, database};
use sqlx::PgPool;

pub const DEFAULT_BIND: &str = "127.0.0.1:8080";

#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub database: DatabaseConfig,
    /// `host:port` to listen on; port 0 picks a free one.
    pub bind: String,
    pub workers: usize,
    pub shutdown_timeout: Duration,
}

impl ServiceConfig {
    pub fn new(database_url: impl Into<String>, bind: impl Into<String>) -> Self {
        Self {
            database: DatabaseConfig::new(database_url),
            bind: bind.into(),
            workers: 2,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Database(#[from] aisc_adapters::DatabaseError),
    #[error("cannot listen on {bind}: {reason}; set AISC_BIND to a free address")]
    Bind { bind: String, reason: String },
}

/// A built application, bound to its port, ready to run.
pub struct Application {
    port: u16,
    server: Server,
    pool: PgPool,
}

impl Application {
    /// Connects (creating the database and applying migrations), binds and builds the server.
    pub async fn build(config: ServiceConfig) -> Result<Self, StartupError> {
        let pool = database::connect_and_migrate(&config.database).await?;
        Self::build_with_pool(config, pool)
    }

    /// Builds on an already migrated pool (tests bring their own database).
    pub fn build_with_pool(config: ServiceConfig, pool: PgPool) -> Result<Self, StartupError> {
        let listener = TcpListener::bind(&config.bind).map_err(|error| StartupError::Bind {
            bind: config.bind.clone(),
            reason: error.to_string(),
        })?;
        let port = listener
            .local_addr()
            .map_err(|error| StartupError::Bind {
                bind: config.bind.clone(),
                reason: error.to_string(),
            })?
            .port();
        let store = PostgresEventStore::new(pool.clone());
        let pool_data = web::Data::new(pool.clone());
        let store_data = web::Data::new(store);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(pool_data.clone())
                .app_data(store_data.clone())
                .service(crate::health::live)
                .service(crate::health::ready)
        })
        .workers(config.workers.max(1))
        .shutdown_timeout(config.shutdown_timeout.as_secs())
        .listen(listener)
        .map_err(|error| StartupError::Bind {
            bind: config.bind.clone(),
            reason: error.to_string(),
        })?
        .run();
        tracing::info!(port, "listening");
        Ok(Self { port, server, pool })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Serves until SIGINT or SIGTERM, then finishes in-flight requests and returns.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
