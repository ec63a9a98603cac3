//! The `aisc` command line. Every failure is one line on standard error and a non-zero exit.

use std::process::ExitCode;

use aisc_adapters::DatabaseConfig;
use aisc_adapters::database::{self, DEFAULT_DATABASE_URL};
use clap::{Parser, Subcommand};

use crate::startup::{Application, DEFAULT_BIND, ServiceConfig, StartupError};
use crate::telemetry;

#[derive(Debug, Parser)]
#[command(
    name = "aisc",
    version,
    about = "AISC Subsidy Back Office: the AI Subsidy Scheme's event-sourced back office"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (creates the database and applies migrations first).
    Serve {
        #[command(flatten)]
        database: DatabaseArgs,
        /// Address to listen on.
        #[arg(long, env = "AISC_BIND", default_value = DEFAULT_BIND)]
        bind: String,
    },
    /// Create the database if missing and apply the migrations, then exit.
    Migrate {
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL of the service's database.
    #[arg(long = "database-url", env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub url: String,
}

/// Parses the arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", error.to_string().replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error(transparent)]
    Database(#[from] aisc_adapters::DatabaseError),
    #[error("the server stopped with an error: {0}")]
    Server(#[from] std::io::Error),
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    telemetry::init_json_logs();
    match cli.command {
        Command::Serve { database, bind } => {
            let application = Application::build(ServiceConfig::new(database.url, bind)).await?;
            application.run_until_stopped().await?;
            tracing::info!("stopped");
            Ok(())
        }
        Command::Migrate { database } => {
            let config = DatabaseConfig::new(database.url);
            database::connect_and_migrate(&config).await?;
            tracing::info!(database = %database::redacted(&config.url), "migrations applied");
            Ok(())
        }
    }
}
