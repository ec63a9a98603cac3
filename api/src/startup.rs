//! Building and running the HTTP application. Tests start it on port 0 and read the port.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use std::sync::Arc;

use aisc_adapters::personal_data::{KeyEncryptionKey, Vault};
use aisc_adapters::{DatabaseConfig, PostgresEventStore, database};
use aisc_domain::event_store::EventStore;
use aisc_projections::ProjectionRunner;
use sqlx::PgPool;
use tokio::sync::watch;
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;

pub const DEFAULT_BIND: &str = "127.0.0.1:8080";

#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub database: DatabaseConfig,
    /// `host:port` to listen on; port 0 picks a free one.
    pub bind: String,
    pub workers: usize,
    pub shutdown_timeout: Duration,
    /// Where commands take today's date from.
    pub clock: aisc_adapters::clock::Clock,
    /// Deadlines and body sizes of requests.
    pub limits: crate::limits::RequestLimits,
    /// Webhook hosts allowed, retries and give-up horizon.
    pub webhooks: crate::webhooks::WebhookSettings,
    /// The file holding the key-encryption key of personal data (`AISC_KEK_FILE`); required.
    pub kek_file: Option<std::path::PathBuf>,
}

impl ServiceConfig {
    pub fn new(database_url: impl Into<String>, bind: impl Into<String>) -> Self {
        Self {
            database: DatabaseConfig::new(database_url),
            bind: bind.into(),
            workers: 2,
            shutdown_timeout: Duration::from_secs(10),
            clock: aisc_adapters::clock::Clock::hong_kong(),
            limits: crate::limits::RequestLimits::default(),
            webhooks: crate::webhooks::WebhookSettings::default(),
            kek_file: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Database(#[from] aisc_adapters::DatabaseError),
    #[error("cannot listen on {bind}: {reason}; set AISC_BIND to a free address")]
    Bind { bind: String, reason: String },
    #[error(
        "AISC_KEK_FILE is not set: the service seals personal data under keys wrapped by a key-encryption key; create one with `aisc privacy keygen --out FILE` (kept where the database's administrators cannot read it) and set AISC_KEK_FILE to that file"
    )]
    NoKeyEncryptionKey,
    #[error(transparent)]
    KeyEncryptionKey(#[from] aisc_adapters::personal_data::KekError),
    #[error("the data subjects' keys cannot be opened: {0}")]
    PersonalDataKeys(#[from] aisc_adapters::personal_data::VaultError),
}

/// The key-encryption key the configuration names.
fn load_kek(config: &ServiceConfig) -> Result<KeyEncryptionKey, StartupError> {
    let path = config.kek_file.as_deref().ok_or(StartupError::NoKeyEncryptionKey)?;
    Ok(KeyEncryptionKey::load(path)?)
}

/// A built application, bound to its port, ready to run.
pub struct Application {
    port: u16,
    server: Server,
    pool: PgPool,
    stop_projections: watch::Sender<bool>,
    projections: Vec<tokio::task::JoinHandle<()>>,
}

impl Application {
    /// Connects (creating the database if missing), migrates when the role owns the log — else
    /// refuses to start on a schema with migrations pending —, binds and builds the server.
    /// Requests use a pool under the statement timeout; the projections one of their own
    /// without it, so a long rebuild is not cut off and cannot starve requests of connections.
    pub async fn build(config: ServiceConfig) -> Result<Self, StartupError> {
        let background = DatabaseConfig {
            max_connections: BACKGROUND_CONNECTIONS,
            statement_timeout: None,
            ..config.database.clone()
        };
        // The key first: a service that cannot read personal data must not start at all.
        let kek = load_kek(&config)?;
        let background_pool = database::connect_and_migrate_if_owner(&background).await?;
        let pool = database::connect(&config.database).await?;
        Vault::new(pool.clone(), kek).check().await?;
        Self::build_with_pools(config, pool, background_pool)
    }

    /// Builds on an already migrated pool (tests bring their own database).
    pub fn build_with_pool(config: ServiceConfig, pool: PgPool) -> Result<Self, StartupError> {
        Self::build_with_pools(config, pool.clone(), pool)
    }

    /// Builds with one pool for requests and one for the projections.
    pub fn build_with_pools(
        config: ServiceConfig,
        pool: PgPool,
        background_pool: PgPool,
    ) -> Result<Self, StartupError> {
        let listener = TcpListener::bind(&config.bind)
            .map_err(|error| StartupError::Bind { bind: config.bind.clone(), reason: error.to_string() })?;
        let port = listener
            .local_addr()
            .map_err(|error| StartupError::Bind { bind: config.bind.clone(), reason: error.to_string() })?
            .port();
        let vault = Arc::new(Vault::new(pool.clone(), load_kek(&config)?));
        let store = PostgresEventStore::new(pool.clone());
        let (stop_projections, mut projections) =
            start_projections(&background_pool, &PostgresEventStore::new(background_pool.clone()));
        projections.extend(crate::webhooks::start(
            &background_pool,
            Arc::new(PostgresEventStore::new(background_pool.clone())),
            config.webhooks.clone(),
            config.clock.clone(),
            &stop_projections.subscribe(),
        ));
        let webhooks_data = web::Data::new(config.webhooks.clone());
        let pool_data = web::Data::new(pool.clone());
        let scheme_data = web::Data::new(aisc_domain::subsidy::service::SchemeService::new(
            aisc_domain::command_service::CommandService::new(store.clone(), aisc_adapters::TimeOrderedEventIds)
                .with_backoff(std::sync::Arc::new(aisc_adapters::JitteredBackoff::default()))
                .with_sealer(vault.clone()),
        ));
        let vault_data = web::Data::from(vault);
        let store_data = web::Data::new(store);
        let clock_data = web::Data::new(config.clock.clone());
        let tokens = aisc_adapters::token_cache::TokenCache::new(pool.clone());
        tokens.start();
        let tokens_data = web::Data::new(tokens);
        let limits_data = web::Data::new(config.limits);
        // One count for every worker: the limit is the service's, not a worker's.
        let expensive_reads =
            web::Data::new(crate::limits::ExpensiveReads::new(config.limits.expensive_reads_per_role));
        let server = HttpServer::new(move || {
            let (app, document) = App::new()
                .into_utoipa_app()
                .openapi(crate::openapi::ApiDoc::openapi())
                .service(crate::health::live)
                .service(crate::health::ready)
                .service(crate::metrics::metrics)
                .service(utoipa_actix_web::scope("/api/v1").configure(crate::routes::configure))
                .split_for_parts();
            let document = web::Data::new(crate::openapi::OpenApiJson(document.to_json().unwrap_or_default()));
            app.service(web::scope("/ui").configure(crate::ui::configure))
                .app_data(pool_data.clone())
                .app_data(store_data.clone())
                .app_data(vault_data.clone())
                .app_data(scheme_data.clone())
                .app_data(clock_data.clone())
                .app_data(tokens_data.clone())
                .app_data(limits_data.clone())
                .app_data(webhooks_data.clone())
                .app_data(expensive_reads.clone())
                .app_data(document)
                // The last registered runs first: the request id and the log line cover every
                // answer, the deadline's 503 and the authentication's 401 included; the
                // deadline covers authentication; authentication precedes routing.
                .wrap(actix_web::middleware::from_fn(crate::request_context::authenticate))
                .wrap(actix_web::middleware::from_fn(crate::limits::enforce_deadline))
                .wrap(actix_web::middleware::from_fn(crate::request_context::track_request))
                .default_service(web::to(not_found))
        })
        .workers(config.workers.max(1))
        .shutdown_timeout(config.shutdown_timeout.as_secs())
        .listen(listener)
        .map_err(|error| StartupError::Bind { bind: config.bind.clone(), reason: error.to_string() })?
        .run();
        tracing::info!(port, "listening");
        Ok(Self { port, server, pool, stop_projections, projections })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Serves until SIGINT or SIGTERM, then finishes in-flight requests, stops the
    /// projections between two batches, and returns.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        let _ = self.stop_projections.send(true);
        for runner in self.projections {
            if tokio::time::timeout(PROJECTION_STOP_TIMEOUT, runner).await.is_err() {
                tracing::warn!("a projection did not stop in time");
            }
        }
        served
    }
}

async fn not_found(request: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, crate::problem::ApiError> {
    Err(crate::problem::ApiError::NotFound(format!("no resource at {} {}", request.method(), request.path())))
}

/// Connections of the projections' pool: each runner holds one for its leadership lock and
/// uses another for its batches; the webhooks' recorder, scheduler and deliveries use it too.
const BACKGROUND_CONNECTIONS: u32 = 12;

/// How long shutdown waits for a projection to finish its batch.
const PROJECTION_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Every projection's runner, each leading or standing by (another instance may lead).
fn start_projections(
    pool: &PgPool,
    store: &PostgresEventStore,
) -> (watch::Sender<bool>, Vec<tokio::task::JoinHandle<()>>) {
    let (stop, stopped) = watch::channel(false);
    let shared: Arc<dyn EventStore> = Arc::new(store.clone());
    let runners = aisc_projections::all()
        .into_iter()
        .map(|projection| {
            let runner = ProjectionRunner::new(pool.clone(), shared.clone(), projection);
            let stopped = stopped.clone();
            tokio::spawn(async move { runner.run(stopped).await })
        })
        .collect();
    (stop, runners)
}
