//! The `aisc` command line. Every failure is one line on standard error and a non-zero exit.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use aisc_adapters::database::{self, DEFAULT_DATABASE_URL};
use aisc_adapters::{DatabaseConfig, PostgresEventStore};
use aisc_domain::event_store::{EventStore, Position, PositionRange, StoreError};
use aisc_projections::{ProjectionError, ProjectionRunner};
use clap::{Parser, Subcommand};

use crate::event_feed::FeedEvent;
use crate::progress::ProgressReport;
use crate::startup::{Application, DEFAULT_BIND, ServiceConfig, StartupError};
use crate::telemetry;
use crate::trace_export::{self, OtlpEndpoint};

#[derive(Debug, Parser)]
#[command(
    name = "aisc",
    version,
    about = "AISC Subsidy Back Office: the AI Subsidy Scheme's event-sourced back office"
)]
pub struct Cli {
    /// Logs (always on standard error): human-readable on a terminal and JSON otherwise
    /// (auto), or as chosen.
    #[arg(long, global = true, env = "AISC_LOG_FORMAT", value_enum, default_value = "auto")]
    pub log_format: telemetry::LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service and the projections (creates the database if missing; applies
    /// migrations when run as the owner of the log, else refuses while any is pending).
    Serve {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Create the database if missing, apply the migrations and the grants of the roles
    /// aisc_service and aisc_auditor, then exit. Run as the owner of the log.
    Migrate {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Bearer tokens of staff tools.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// For auditors: verify the hash chains, export the event history.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// For reporting jobs: the read models' status, and rebuilds.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// Reports for the Government and the Legislative Council.
    #[command(subcommand)]
    Reports(ReportsCommand),
    /// Demonstration data.
    #[command(subcommand)]
    Demo(DemoCommand),
    /// Bulk imports.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Personal data (PDPO): the key-encryption key that wraps every data subject's key, and erasure.
    #[command(subcommand)]
    Privacy(PrivacyCommand),
}

#[derive(Debug, Subcommand)]
pub enum PrivacyCommand {
    /// Write a new random key-encryption key to a file (64 hex digits, mode 0600); never
    /// overwrites. Keep it where the database's administrators cannot read it, and a copy in
    /// the organisation's secret store: without it, no personal field can be read.
    Keygen {
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Wrap every data subject's key under a new key-encryption key, in one transaction, without
    /// touching the log; then point AISC_KEK_FILE at the new file and restart the service.
    RotateKek {
        #[command(flatten)]
        database: DatabaseArgs,
        /// The key-encryption key in use.
        #[arg(long, env = "AISC_KEK_FILE")]
        kek_file: std::path::PathBuf,
        /// The new key-encryption key (from `aisc privacy keygen`).
        #[arg(long)]
        new_kek_file: std::path::PathBuf,
    },
    /// One-off, for a log written before personal data was sealed: copy it into a new, empty
    /// database (the new generation, DATABASE_URL), sealing its plaintext personal fields under
    /// their data subjects' keys; every event keeps its stream, version, id, metadata and the
    /// time it was first recorded, and the old log is verified first. Prints what was done.
    ReencryptLog {
        #[command(flatten)]
        database: DatabaseArgs,
        /// The old generation's database (only read).
        #[arg(long)]
        from_database_url: String,
        /// The key-encryption key the new generation's data subject keys are wrapped with.
        #[arg(long, env = "AISC_KEK_FILE")]
        kek_file: std::path::PathBuf,
    },
    /// List the data subjects past retention: their application ended (completed, terminated,
    /// rejected, withdrawn, ruled ineligible) more than the retention period ago and their key
    /// is not erased yet. Applications stored before sealing are listed as "not sealed".
    Due {
        #[command(flatten)]
        database: DatabaseArgs,
        /// Days personal data is kept after its application ends (default seven years).
        #[arg(long, env = "AISC_RETENTION_DAYS", default_value_t = aisc_adapters::retention::DEFAULT_RETENTION_DAYS, value_parser = clap::value_parser!(u32).range(1..=36_525))]
        retention_days: u32,
        /// The day to list for (YYYY-MM-DD); today in Hong Kong by default.
        #[arg(long)]
        today: Option<chrono::NaiveDate>,
        #[arg(long, value_enum, default_value = "text")]
        format: ListFormat,
    },
    /// Answer a data access request (PDPO DPP6): everything held about a data subject, opened,
    /// with the event each value came from, as JSON (as GET
    /// /api/v1/data-subjects/{id}/personal-data answers it).
    Export {
        #[command(flatten)]
        database: DatabaseArgs,
        /// The data subject (the application view names it).
        #[arg(long)]
        subject: uuid::Uuid,
        /// Write the JSON here (a new file: never overwritten); standard output otherwise.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// The key-encryption key of personal data.
        #[arg(long, env = "AISC_KEK_FILE")]
        kek_file: std::path::PathBuf,
    },
    /// Erase a data subject's personal data for good: destroy its key (every field sealed under
    /// it reads as null from then on) and record the erasure in the log. Exits 0 when erased or
    /// already erased (saying which), 4 for an unknown subject, 2 for bad arguments.
    Erase(EraseArgs),
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ListFormat {
    Text,
    Json,
}

/// Which data subjects `privacy erase` erases, and why.
#[derive(Debug, clap::Args)]
pub struct EraseArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The key-encryption key in use.
    #[arg(long, env = "AISC_KEK_FILE")]
    pub kek_file: std::path::PathBuf,
    /// The data subject's UUID, as the application view names it (`data_subject_id`).
    #[arg(long, required_unless_present = "due", conflicts_with = "due")]
    pub subject: Option<String>,
    /// Instead of one subject: every data subject past retention, as `aisc privacy due` lists
    /// them (basis retention_period_ended; the reason names the period and how the application
    /// ended). Running it again erases only what has become due since.
    #[arg(long)]
    pub due: bool,
    /// Days personal data is kept after its application ends, for `--due`.
    #[arg(long, env = "AISC_RETENTION_DAYS", default_value_t = aisc_adapters::retention::DEFAULT_RETENTION_DAYS, value_parser = clap::value_parser!(u32).range(1..=36_525))]
    pub retention_days: u32,
    /// The day `--due` erases for (YYYY-MM-DD); today in Hong Kong by default.
    #[arg(long, requires = "due")]
    pub today: Option<chrono::NaiveDate>,
    /// Why (1 to 500 characters), kept for good: no personal data, e.g. a request's reference.
    #[arg(long, required_unless_present = "due")]
    pub reason: Option<String>,
    /// Who erases (recorded as the erasure's actor).
    #[arg(long)]
    pub actor: String,
    #[arg(long, value_enum, default_value = "data_subject_request", conflicts_with = "due")]
    pub basis: ErasureBasisArg,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ErasureBasisArg {
    /// The data subject asked for it.
    #[value(name = "data_subject_request")]
    DataSubjectRequest,
    /// The period personal data is kept for has ended.
    #[value(name = "retention_period_ended")]
    RetentionPeriodEnded,
}

impl From<ErasureBasisArg> for aisc_domain::subsidy::data_subjects::ErasureBasis {
    fn from(basis: ErasureBasisArg) -> Self {
        match basis {
            ErasureBasisArg::DataSubjectRequest => Self::DataSubjectRequest,
            ErasureBasisArg::RetentionPeriodEnded => Self::RetentionPeriodEnded,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import a CSV file of usage lines (`project,service_type,units,period`) as one operation;
    /// prints what was written line by line (JSON) and exits 1 if a line was refused.
    Usage {
        #[command(flatten)]
        database: DatabaseArgs,
        /// The CSV file.
        #[arg(long)]
        file: std::path::PathBuf,
        /// all-or-nothing: one refused line and nothing is written; partial: the accepted
        /// lines are written and the refused ones listed.
        #[arg(long, value_enum, default_value = "all-or-nothing")]
        mode: ImportModeArg,
        /// Names the import; running it again charges only the lines not yet charged.
        /// Default: derived from the file's content.
        #[arg(long)]
        import_id: Option<String>,
        /// Charge a line even when another import already charged its application the same
        /// service, month and units (by default such a line is refused as
        /// usage_already_imported, naming that import).
        #[arg(long)]
        allow_repeated_lines: bool,
        /// Who imports (recorded as the actor of every charge).
        #[arg(long)]
        actor: String,
        /// Lines appended per transaction.
        #[arg(long, default_value_t = crate::routes::scheme::imports::IMPORT_BATCH_LINES)]
        batch_lines: usize,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ImportModeArg {
    AllOrNothing,
    Partial,
}

#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Drive a realistic, seeded scheme through the real command service (an empty database is best).
    Seed {
        #[command(flatten)]
        database: DatabaseArgs,
        #[arg(long, default_value_t = 200)]
        applications: usize,
        /// Financial years from 2024-25 (1 to 3).
        #[arg(long, default_value_t = 3)]
        years: u32,
        #[arg(long, default_value_t = 2024)]
        seed: u64,
        /// The key-encryption key of personal data: the generated contacts and texts are sealed
        /// as the service seals them.
        #[arg(long, env = "AISC_KEK_FILE")]
        kek_file: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReportsCommand {
    /// The KPI dashboard of a funding year (or the whole scheme) as CSV or JSON on standard output.
    Kpi {
        #[command(flatten)]
        database: DatabaseArgs,
        /// A financial year such as 2025-26; the whole scheme when omitted.
        #[arg(long)]
        year: Option<String>,
        #[arg(long, value_enum, default_value = "json")]
        format: ReportFormat,
        /// As the log stood at this position of $all, or at this RFC 3339 time.
        #[arg(long)]
        as_of: Option<String>,
        /// The facts in force on this date (YYYY-MM-DD); overdue reports are counted on it.
        #[arg(long)]
        effective_on: Option<chrono::NaiveDate>,
    },
    /// An export as `GET /api/v1/exports/…` gives it: applications, disbursements (one row per
    /// usage charge) or budget (per funding year and line, against §23), as CSV or XLSX.
    Export {
        #[command(flatten)]
        database: DatabaseArgs,
        #[arg(value_enum)]
        export: ExportArg,
        /// A financial year such as 2025-26; every year when omitted.
        #[arg(long)]
        year: Option<String>,
        #[arg(long, value_enum, default_value = "csv")]
        format: ExportFormatArg,
        /// Write the file here (replaced only once it is complete); standard output otherwise.
        /// XLSX needs this, or a standard output that is not a terminal.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ReportFormat {
    Csv,
    Json,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportArg {
    Applications,
    Disbursements,
    Budget,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormatArg {
    Csv,
    Xlsx,
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Issue a token for a named principal; the token is printed once, on the last line.
    Issue {
        #[command(flatten)]
        database: DatabaseArgs,
        /// The principal's name (a person or a staff tool), recorded as the actor of its commands.
        #[arg(long)]
        name: String,
        /// Comma-separated roles: intake_officer, assessor, committee_secretariat,
        /// finance_officer, auditor, administrator.
        #[arg(long)]
        roles: String,
    },
    /// Revoke the token of a principal; requests with it are refused from then on.
    Revoke {
        #[command(flatten)]
        database: DatabaseArgs,
        #[arg(long)]
        name: String,
    },
    /// List the principals, their roles and whether their token is revoked (never a token).
    List {
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chains over the whole log or a range of positions (or over an export
    /// with --file); print the first broken event (exit 1) or OK with the count verified (exit
    /// 0). Exit 2: bad arguments; 3: the database could not be reached or read; 4: the file
    /// cannot be read or is not an export; 5: any other failure. Only 1 means tampering.
    Verify {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        range: RangeArgs,
        /// Verify this export (what `aisc audit export` wrote) on its own, without connecting
        /// to any database.
        #[arg(long, value_name = "EXPORT", conflicts_with_all = ["from", "to"])]
        file: Option<std::path::PathBuf>,
        #[command(flatten)]
        seal: SealCheckArgs,
    },
    /// Write the event history as NDJSON (eventId, eventType, streamId, eventNumber, position,
    /// schemaVersion, created, data, metadata, hash, previousHash) to standard output; see
    /// docs/AUDIT-FORMAT.md.
    Export {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        range: RangeArgs,
    },
    /// Create an Ed25519 key pair for sealing the log: the private key (PEM, PKCS#8, readable
    /// by its owner only) at --out and the public key (PEM, SPKI) beside it as NAME.pub. Keep
    /// the private key off the database host; give the public key to the auditors.
    Keygen {
        /// Where to write the private key (e.g. seal-key.pem); neither it nor NAME.pub may exist.
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Sign a seal over every event of the log up to a position (by default the log's head,
    /// once no running transaction can still write below it) and print it as JSON; the chains
    /// up to there are verified first, and a broken log is not sealed (exit 1).
    Seal {
        #[command(flatten)]
        database: DatabaseArgs,
        /// The private key written by `aisc audit keygen`.
        #[arg(long)]
        key_file: std::path::PathBuf,
        /// The last position to seal (default: the log's head).
        #[arg(long)]
        to: Option<u64>,
    },
}

/// `aisc audit verify --seal`: the log must also still reproduce a seal.
#[derive(Debug, clap::Args)]
pub struct SealCheckArgs {
    /// A seal printed by `aisc audit seal`: the whole log is verified, and the log up to the
    /// seal's position must reproduce its digest and event count (exit 1 if not).
    #[arg(long, requires = "public_key", conflicts_with_all = ["from", "to"])]
    pub seal: Option<std::path::PathBuf>,
    /// The public key the seal must be signed with (the .pub file of `aisc audit keygen`),
    /// from the key's holder: never the key the seal itself carries.
    #[arg(long, requires = "seal")]
    pub public_key: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Position, lag and version of every projection.
    Status {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Rebuild one projection (or all, from one read of the log); queries keep being answered from
    /// the old tables until the new ones are swapped in. A running service does the rebuild
    /// itself when asked.
    Rebuild {
        #[command(flatten)]
        database: DatabaseArgs,
        /// The projection to rebuild (all when omitted).
        name: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL of the service's database.
    #[arg(long = "database-url", env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub url: String,
}

/// How the HTTP service runs; the defaults fit a small server (2 cores).
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (`:0` picks a free port, logged as `port`).
    #[arg(long, env = "AISC_BIND", default_value = DEFAULT_BIND)]
    pub bind: String,
    /// HTTP worker threads.
    #[arg(long, env = "AISC_HTTP_WORKERS", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub http_workers: u16,
    /// Database connections for requests (the projections have a few of their own).
    #[arg(long, env = "AISC_DB_POOL_SIZE", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub db_pool_size: u32,
    /// How long a request waits for a free database connection before it is answered 503.
    #[arg(long, env = "AISC_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 3_000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub db_acquire_timeout_ms: u64,
    /// A request's SQL statement running longer is cancelled by the server (0: no limit). As
    /// long as the request deadline by default: a request answered 503 at its deadline leaves
    /// no statement running (and perhaps committing) much longer.
    #[arg(long, env = "AISC_DB_STATEMENT_TIMEOUT_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub db_statement_timeout_ms: u64,
    /// A request not answered by then is answered 503 with Retry-After.
    #[arg(long, env = "AISC_REQUEST_DEADLINE_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub request_deadline_ms: u64,
    /// The deadline of bulk requests: usage imports, verifying the log, the KPI dashboard.
    #[arg(long, env = "AISC_BULK_REQUEST_DEADLINE_MS", default_value_t = 300_000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub bulk_request_deadline_ms: u64,
    /// Largest JSON command body, in bytes (413 above).
    #[arg(long, env = "AISC_MAX_BODY_BYTES", default_value_t = 256 * 1024, value_parser = clap::value_parser!(u64).range(1_024..=64 * 1024 * 1024))]
    pub max_body_bytes: u64,
    /// Largest usage import file, in bytes (413 above).
    #[arg(long, env = "AISC_MAX_IMPORT_BYTES", default_value_t = 32 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1_024..=1024 * 1024 * 1024))]
    pub max_import_bytes: u64,
    /// Expensive reads (the KPI dashboard `as_of` / `effective_on`) running at once per role;
    /// the next is answered 429 with Retry-After.
    #[arg(long, env = "AISC_EXPENSIVE_READS_PER_ROLE", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=1_000))]
    pub expensive_reads_per_role: u16,
    /// How long a stop (SIGINT, SIGTERM) waits for requests in flight, in seconds.
    #[arg(long, env = "AISC_SHUTDOWN_TIMEOUT_S", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3_600))]
    pub shutdown_timeout_s: u64,
    /// An OpenTelemetry collector's OTLP/HTTP base URL (plain http, e.g. http://127.0.0.1:4318):
    /// a span per request is posted, as JSON, to `{endpoint}/v1/traces`. No export when unset.
    #[arg(long, env = "AISC_OTLP_ENDPOINT", value_parser = OtlpEndpoint::parse)]
    pub otlp_endpoint: Option<OtlpEndpoint>,
    /// The `service.name` of the exported spans.
    #[arg(long, env = "AISC_OTLP_SERVICE_NAME", default_value = crate::trace_export::DEFAULT_SERVICE_NAME, value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub otlp_service_name: String,
    /// Hosts webhooks may post to, comma-separated `host[:port]` (no port: 80 for http, 443 for
    /// https). Empty: no webhook can be registered, and none is delivered to.
    #[arg(long, env = "AISC_WEBHOOK_ALLOWED_HOSTS", default_value = "", value_parser = crate::webhooks::AllowedHosts::parse)]
    pub webhook_allowed_hosts: crate::webhooks::AllowedHosts,
    /// A webhook delivery still failing this many hours after its notification is given up.
    #[arg(long, env = "AISC_WEBHOOK_GIVE_UP_AFTER_H", default_value_t = 72, value_parser = clap::value_parser!(u64).range(1..=24 * 30))]
    pub webhook_give_up_after_h: u64,
    /// The file holding the key-encryption key of personal data (from `aisc privacy keygen`);
    /// required: the service refuses to start without it, or with another key than the one
    /// the data subjects' keys are wrapped with.
    #[arg(long, env = "AISC_KEK_FILE")]
    pub kek_file: Option<std::path::PathBuf>,
}

impl ServeArgs {
    /// The service's configuration on `database_url`.
    pub fn config(&self, database_url: String) -> ServiceConfig {
        let mut config = ServiceConfig::new(database_url, self.bind.clone());
        config.workers = usize::from(self.http_workers);
        config.shutdown_timeout = Duration::from_secs(self.shutdown_timeout_s);
        config.database.max_connections = self.db_pool_size;
        config.database.acquire_timeout = Duration::from_millis(self.db_acquire_timeout_ms);
        config.database.statement_timeout =
            (self.db_statement_timeout_ms > 0).then(|| Duration::from_millis(self.db_statement_timeout_ms));
        config.limits = crate::limits::RequestLimits {
            deadline: Duration::from_millis(self.request_deadline_ms),
            bulk_deadline: Duration::from_millis(self.bulk_request_deadline_ms),
            command_body_bytes: usize::try_from(self.max_body_bytes).unwrap_or(usize::MAX),
            import_body_bytes: usize::try_from(self.max_import_bytes).unwrap_or(usize::MAX),
            expensive_reads_per_role: usize::from(self.expensive_reads_per_role),
        };
        config.webhooks.allowed_hosts = self.webhook_allowed_hosts.clone();
        config.webhooks.give_up_after = Duration::from_secs(self.webhook_give_up_after_h * 3600);
        config.kek_file = self.kek_file.clone();
        config
    }
}

#[derive(Debug, clap::Args)]
pub struct RangeArgs {
    /// First position to include.
    #[arg(long)]
    pub from: Option<u64>,
    /// Last position to include.
    #[arg(long)]
    pub to: Option<u64>,
}

impl RangeArgs {
    fn range(&self) -> Result<PositionRange, CliError> {
        if let (Some(from), Some(to)) = (self.from, self.to)
            && from > to
        {
            return Err(CliError::Usage(format!("--from {from} is after --to {to}")));
        }
        Ok(PositionRange { from: self.from.map(Position), to: self.to.map(Position) })
    }
}

/// The exit codes of `aisc audit verify`. Only 0 and 1 are verdicts: a script can tell a
/// broken log from a check that could not be made (a database outage must not look like
/// tampering). Documented in the README.
pub mod verify_exit {
    /// Every hash chain verified.
    pub const INTACT: u8 = 0;
    /// Evidence of tampering, and nothing else.
    pub const TAMPERED: u8 = 1;
    /// Bad arguments (clap's usage errors exit 2 as well).
    pub const BAD_ARGUMENTS: u8 = 2;
    /// The database could not be reached or read.
    pub const DATABASE_UNAVAILABLE: u8 = 3;
    /// The file cannot be read, or is not an export with hashes.
    pub const FILE_UNUSABLE: u8 = 4;
    /// Anything else that stopped the check (standard output closed, no runtime).
    pub const FAILED: u8 = 5;
}

/// Parses the arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return refuse_arguments(&error),
    };
    // Every other command exits 1 on any failure; `audit verify` keeps 1 for tampering.
    let verifying = matches!(cli.command, Command::Audit(AuditCommand::Verify { .. }));
    let failure_code = |error: &CliError| {
        if verifying { ExitCode::from(error.verify_exit_code()) } else { error.exit_code() }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            let error = CliError::Runtime(error);
            eprintln!("error: {error}");
            return failure_code(&error);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", error.to_string().replace('\n', " "));
            failure_code(&error)
        }
    }
}

/// Help and version as clap prints them; any other problem with the arguments or their
/// environment variables as one line on standard error, exit 2.
fn refuse_arguments(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = error.print();
        return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
    }
    let rendered = error.render().to_string();
    let mut lines = rendered.lines().skip_while(|line| line.trim().is_empty());
    let first_line = lines.next().unwrap_or("invalid arguments").trim_end();
    // "the following required arguments were not provided:" names them on the lines below.
    let listed: Vec<&str> = if first_line.ends_with(':') {
        lines.take_while(|line| line.starts_with(' ')).map(str::trim).collect()
    } else {
        Vec::new()
    };
    if listed.is_empty() {
        eprintln!("{first_line}");
    } else {
        eprintln!("{first_line} {}", listed.join(", "));
    }
    ExitCode::from(2)
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error(transparent)]
    Database(#[from] aisc_adapters::DatabaseError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error(transparent)]
    Token(#[from] crate::auth::TokenError),
    #[error("{0}")]
    Usage(String),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    #[error(transparent)]
    ExportFile(#[from] crate::export_verification::ExportFileError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// A file named on the command line cannot be read or written (missing, unreadable,
    /// already there and not to be overwritten).
    #[error("{0}")]
    File(String),
    /// An argument, or what a file named by one holds, is not what the command needs (a
    /// public key where a private key belongs, a seal that is not one).
    #[error("{0}")]
    InvalidInput(String),
    #[error(transparent)]
    Kek(#[from] aisc_adapters::personal_data::KekError),
    #[error(transparent)]
    Vault(#[from] aisc_adapters::personal_data::VaultError),
    /// What the command names does not exist (a data subject no key was ever made for).
    #[error("{0}")]
    NotFound(String),
}

impl CliError {
    /// A job must tell a failed check (exit 1: a broken log, a seal not reproduced) from a
    /// mistake in how it was called: bad input exits 2, a file that cannot be read or written
    /// 4, as does what the command names and does not exist. Other failures exit 1 until they
    /// get codes of their own.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::InvalidInput(_) => ExitCode::from(2),
            CliError::File(_) | CliError::NotFound(_) => ExitCode::from(4),
            CliError::Kek(
                aisc_adapters::personal_data::KekError::Missing { .. }
                | aisc_adapters::personal_data::KekError::Unreadable { .. }
                | aisc_adapters::personal_data::KekError::Exists { .. },
            ) => ExitCode::from(4),
            CliError::Kek(_) => ExitCode::from(2),
            // `serve` without its key, or with a key file that is not there: as the privacy
            // commands answer the same mistakes.
            CliError::Startup(StartupError::NoKeyEncryptionKey) => ExitCode::from(2),
            CliError::Startup(StartupError::KeyEncryptionKey(
                aisc_adapters::personal_data::KekError::Missing { .. }
                | aisc_adapters::personal_data::KekError::Unreadable { .. },
            )) => ExitCode::from(4),
            CliError::Startup(StartupError::KeyEncryptionKey(_)) => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }
}

impl From<crate::seal::SealFileError> for CliError {
    fn from(error: crate::seal::SealFileError) -> Self {
        use crate::seal::SealFileError;
        match error {
            SealFileError::File(message) => CliError::File(message),
            SealFileError::Invalid(message) => CliError::InvalidInput(message),
            SealFileError::KeyGeneration(message) => CliError::Usage(message),
        }
    }
}

impl CliError {
    /// What `audit verify` exits with when it fails this way: never [`verify_exit::TAMPERED`].
    fn verify_exit_code(&self) -> u8 {
        use aisc_adapters::DatabaseError;
        match self {
            CliError::Usage(_) | CliError::Database(DatabaseError::InvalidUrl { .. }) => verify_exit::BAD_ARGUMENTS,
            CliError::Database(_) | CliError::Store(_) => verify_exit::DATABASE_UNAVAILABLE,
            CliError::ExportFile(_) | CliError::File(_) => verify_exit::FILE_UNUSABLE,
            CliError::InvalidInput(_) => verify_exit::BAD_ARGUMENTS,
            CliError::Startup(_)
            | CliError::Projection(_)
            | CliError::Token(_)
            | CliError::Output(_)
            | CliError::Runtime(_)
            | CliError::Kek(_)
            | CliError::Vault(_)
            | CliError::NotFound(_) => verify_exit::FAILED,
        }
    }
}

/// How long a stop waits for the last request spans to reach the collector.
const TRACE_FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

pub async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    // Only `serve` exports traces, and only to a configured collector: otherwise no exporter
    // task runs and no connection is ever attempted.
    let (span_recorder, trace_exporter) = match &cli.command {
        Command::Serve { serve, .. } => {
            serve.otlp_endpoint.clone().map(|endpoint| trace_export::start(endpoint, serve.otlp_service_name.clone()))
        }
        _ => None,
    }
    .unzip();
    telemetry::init_logs(cli.log_format, span_recorder);
    match cli.command {
        Command::Serve { database, serve } => {
            if let Some(exporter) = &trace_exporter {
                tracing::info!(endpoint = %exporter.traces_url(), service_name = %serve.otlp_service_name, "exporting request traces");
            }
            let application = Application::build(serve.config(database.url)).await?;
            application.run_until_stopped().await?;
            if let Some(exporter) = trace_exporter {
                exporter.flush_and_stop(TRACE_FLUSH_TIMEOUT).await;
            }
            tracing::info!("stopped");
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate { database } => {
            let config = DatabaseConfig::new(database.url);
            database::connect_and_migrate(&config).await?;
            tracing::info!(database = %database::redacted(&config.url), "migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Tokens(TokensCommand::Issue { database, name, roles }) => {
            let roles = crate::auth::parse_roles(&roles).map_err(CliError::Usage)?;
            let pool = open_pool(&database).await?;
            let token = crate::auth::issue(&pool, &name, &roles).await?;
            let role_names: Vec<&str> = roles.iter().map(|role| role.as_str()).collect();
            println!("issued a token for {} with roles {}; it is shown only now:", name.trim(), role_names.join(","));
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Tokens(TokensCommand::Revoke { database, name }) => {
            let pool = open_pool(&database).await?;
            crate::auth::revoke(&pool, &name).await?;
            println!("revoked the token of {name}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Tokens(TokensCommand::List { database }) => {
            let pool = open_pool(&database).await?;
            println!("{:<32} {:<60} {:<26} state", "name", "roles", "issued");
            for token in crate::auth::list(&pool).await? {
                let state = token
                    .revoked_at
                    .map_or("active".to_string(), |at| format!("revoked {}", at.format("%Y-%m-%d %H:%M")));
                println!(
                    "{:<32} {:<60} {:<26} {}",
                    token.name,
                    token.roles.join(","),
                    token.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    state
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Verify { file: Some(file), .. }) => verify_file(&file),
        Command::Audit(AuditCommand::Verify {
            database,
            range: _,
            file: None,
            seal: SealCheckArgs { seal: Some(seal), public_key },
        }) => {
            let Some(public_key) = public_key else {
                return Err(CliError::InvalidInput("--seal needs --public-key".into()));
            };
            verify_against_seal(&database, &seal, &public_key).await
        }
        Command::Audit(AuditCommand::Keygen { out }) => {
            let files = crate::seal::generate_key_files(&out)?;
            println!(
                "wrote the private key to {} (readable by its owner only; keep it off the database host) and the public key to {} (give it to the auditors)",
                files.private_key.display(),
                files.public_key.display()
            );
            println!("public key: {}", files.public_key_hex);
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Seal { database, key_file, to }) => seal_log(&database, &key_file, to).await,
        Command::Audit(AuditCommand::Verify { database, range, file: None, seal: _ }) => {
            let range = range.range()?;
            let store = open_read_only_store(&database).await?;
            let progress = ProgressReport::new("audit verify", "events", Some(store.count_in(range).await?));
            let report = store.verify_reporting(range, &progress).await?;
            progress.finish();
            // A verdict that cannot be written is no verdict (exit 5), not a panic.
            let mut out = std::io::stdout().lock();
            let code = match report.first_broken {
                None => {
                    writeln!(out, "OK: {} events verified, every hash chain intact", report.verified)?;
                    verify_exit::INTACT
                }
                Some(broken) => {
                    writeln!(
                        out,
                        "BROKEN: event at position {} (stream {}, version {}, id {}): {:?}; {} events verified before it",
                        broken.position,
                        broken.stream,
                        broken.stream_version,
                        broken.event_id,
                        broken.problem,
                        report.verified
                    )?;
                    verify_exit::TAMPERED
                }
            };
            out.flush()?;
            Ok(ExitCode::from(code))
        }
        Command::Audit(AuditCommand::Export { database, range }) => {
            let range = range.range()?;
            let store = open_read_only_store(&database).await?;
            export(&store, range).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Reports(ReportsCommand::Kpi { database, year, format, as_of, effective_on }) => {
            let year = match year.as_deref() {
                None => None,
                Some(text) => {
                    let year = aisc_domain::subsidy::values::FinancialYear::parse(text)
                        .map_err(|error| CliError::Usage(error.to_string()))?;
                    Some(aisc_projections::kpi::year_scope(year))
                }
            };
            let store = open_store_without_migrating(&database).await?;
            let as_of = match as_of.as_deref() {
                None => None,
                Some(text) => Some(match text.parse::<u64>() {
                    Ok(position) => aisc_domain::event_store::Position(position),
                    Err(_) => {
                        let moment = chrono::DateTime::parse_from_rfc3339(text).map_err(|_| {
                            CliError::Usage(format!(
                                "--as-of {text:?} is neither a position nor an RFC 3339 time such as 2025-07-01T00:00:00+08:00"
                            ))
                        })?;
                        store
                            .last_position_at(moment.with_timezone(&chrono::Utc))
                            .await
                            .map_err(|error| CliError::Usage(format!("cannot read the log: {error}")))?
                    }
                }),
            };
            bring_up_to_date(&store, aisc_projections::kpi::NAME).await?;
            let mut connection = store
                .pool()
                .acquire()
                .await
                .map_err(|error| CliError::Usage(format!("cannot reach the database: {error}")))?;
            let dashboard = aisc_projections::kpi::dashboard_at(
                &mut connection,
                aisc_projections::kpi::PastView { as_of, effective_on },
                year,
                aisc_adapters::clock::today_in_hong_kong(),
            )
            .await?;
            match format {
                ReportFormat::Csv => print!("{}", aisc_projections::kpi::to_csv(&dashboard)),
                ReportFormat::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&dashboard).map_err(|error| CliError::Usage(error.to_string()))?
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Privacy(PrivacyCommand::Keygen { out }) => {
            let kek = aisc_adapters::personal_data::KeyEncryptionKey::generate(&out)?;
            println!("wrote a key-encryption key (id {}) to {} (readable by its owner only)", kek.id(), out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Privacy(PrivacyCommand::RotateKek { database, kek_file, new_kek_file }) => {
            use aisc_adapters::personal_data::{KeyEncryptionKey, rotate_kek};
            let (old, new) = (KeyEncryptionKey::load(&kek_file)?, KeyEncryptionKey::load(&new_kek_file)?);
            if old.id() == new.id() {
                return Err(CliError::InvalidInput(format!(
                    "{} and {} hold the same key-encryption key (id {})",
                    kek_file.display(),
                    new_kek_file.display(),
                    old.id()
                )));
            }
            let pool = open_pool(&database).await?;
            let rewrapped = rotate_kek(&pool, &old, &new).await?;
            println!(
                "wrapped {rewrapped} data subject key(s) under the key-encryption key {} (was {}); set AISC_KEK_FILE={} and restart the service",
                new.id(),
                old.id(),
                new_kek_file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Privacy(PrivacyCommand::ReencryptLog { database, from_database_url, kek_file }) => {
            use aisc_adapters::log_generation::{GenerationError, reencrypt_into_new_generation};
            if from_database_url == database.url {
                return Err(CliError::InvalidInput(
                    "--from-database-url names the new generation's own database; the new generation is a new, empty database"
                        .into(),
                ));
            }
            let old = open_read_only_store(&DatabaseArgs { url: from_database_url }).await?;
            let new = open_store(&database).await?;
            let vault = open_vault(&new, &kek_file).await?;
            let progress = ProgressReport::new("reencrypt log", "events", None);
            let report =
                reencrypt_into_new_generation(&old, &new, &vault, &progress).await.map_err(|error| match error {
                    GenerationError::NotEmpty(_) => CliError::InvalidInput(error.to_string()),
                    other => CliError::Usage(other.to_string()),
                })?;
            progress.finish();
            println!("{}", serde_json::to_string_pretty(&report).map_err(|error| CliError::Usage(error.to_string()))?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Privacy(PrivacyCommand::Due { database, retention_days, today, format }) => {
            let pool = open_pool(&database).await?;
            let today = today.unwrap_or_else(aisc_adapters::clock::today_in_hong_kong);
            let listing = aisc_adapters::retention::past_retention(&pool, retention_days, today)
                .await
                .map_err(|error| CliError::Usage(error.to_string()))?;
            print_retention_listing(&listing, retention_days, today, format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Privacy(PrivacyCommand::Export { database, subject, out, kek_file }) => {
            use crate::routes::personal_data_requests::personal_data_of;
            let store = PostgresEventStore::new(open_pool(&database).await?);
            let vault = open_vault(&store, &kek_file).await?;
            let subject = aisc_domain::personal_data::DataSubjectId(subject);
            let answer = personal_data_of(store.pool(), &vault, subject)
                .await
                .map_err(|error| CliError::Usage(error.to_string()))?
                .ok_or_else(|| CliError::InvalidInput(format!("no data subject {subject} is known")))?;
            let json = serde_json::to_string_pretty(&answer).map_err(|error| CliError::Usage(error.to_string()))?;
            match out {
                None => println!("{json}"),
                Some(path) => write_new_file(&path, format!("{json}\n").as_bytes())?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Privacy(PrivacyCommand::Erase(erase)) => erase_data_subject(erase).await,
        Command::Reports(ReportsCommand::Export { database, export, year, format, out }) => {
            write_export(&database, export, year.as_deref(), format, out.as_deref()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Import(ImportCommand::Usage {
            database,
            file,
            mode,
            import_id,
            allow_repeated_lines,
            actor,
            batch_lines,
        }) => {
            let csv = std::fs::read(&file)
                .map_err(|error| CliError::Usage(format!("cannot read {}: {error}", file.display())))?;
            let text = std::str::from_utf8(&csv)
                .map_err(|error| CliError::Usage(format!("{} is not UTF-8: {error}", file.display())))?;
            let import_id = import_id.unwrap_or_else(|| crate::routes::scheme::imports::import_id_of(&csv));
            let store = open_store(&database).await?;
            let scheme = aisc_domain::subsidy::service::SchemeService::new(
                aisc_domain::command_service::CommandService::new(store, aisc_adapters::TimeOrderedEventIds)
                    .with_backoff(std::sync::Arc::new(aisc_adapters::JitteredBackoff::default())),
            );
            let request_id = uuid::Uuid::new_v4().to_string();
            let meta = aisc_domain::command_service::CommandMetadata {
                actor: actor.trim().to_string(),
                role: crate::auth::Role::FinanceOfficer.as_str().to_string(),
                correlation_id: import_id.clone(),
                request_id,
                causation_id: None,
            };
            if meta.actor.is_empty() {
                return Err(CliError::Usage("--actor must name who imports".into()));
            }
            let import = aisc_domain::subsidy::service::UsageImportRequest {
                import_id: &import_id,
                csv: text,
                mode: match mode {
                    ImportModeArg::AllOrNothing => aisc_domain::subsidy::usage_import::ImportMode::AllOrNothing,
                    ImportModeArg::Partial => aisc_domain::subsidy::usage_import::ImportMode::Partial,
                },
                repeated_lines: crate::routes::scheme::imports::repeated_lines(allow_repeated_lines),
                today: aisc_adapters::clock::today_in_hong_kong(),
                batch_lines,
            };
            let progress = ProgressReport::new(
                "import usage",
                "lines written",
                Some((text.lines().count() as u64).saturating_sub(1)),
            );
            let report = scheme
                .import_usage_reporting(import, &meta, &progress)
                .await
                .map_err(|error| CliError::Usage(error.to_string()))?;
            progress.finish();
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &report).map_err(|error| CliError::Usage(error.to_string()))?;
            writeln!(out)?;
            if report.refused.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                for refusal in &report.refused {
                    eprintln!("line {}: {}: {}", refusal.line, refusal.code, refusal.message);
                }
                Ok(ExitCode::from(1))
            }
        }
        Command::Demo(DemoCommand::Seed { database, applications, years, seed, kek_file }) => {
            let store = open_store(&database).await?;
            let vault = open_vault(&store, &kek_file).await?;
            let scheme = aisc_domain::subsidy::service::SchemeService::new(
                aisc_domain::command_service::CommandService::new(store, aisc_adapters::TimeOrderedEventIds)
                    .with_backoff(std::sync::Arc::new(aisc_adapters::JitteredBackoff::default()))
                    .with_sealer(vault),
            );
            let progress = ProgressReport::new("demo seed", "commands", None);
            let summary = aisc_domain::demo::seed_reporting(&scheme, applications, years, seed, &progress)
                .await
                .map_err(|error| CliError::Usage(error.to_string()))?;
            progress.finish();
            println!(
                "seeded {} applications: {} approved, {} rejected, {} ineligible, {} withdrawn; {} usage lines, {} progress reports",
                summary.applications,
                summary.approved,
                summary.rejected,
                summary.ineligible,
                summary.withdrawn,
                summary.usage_lines,
                summary.progress_reports
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Projections(ProjectionsCommand::Status { database }) => {
            let store = open_read_only_store(&database).await?;
            println!(
                "{:<16} {:>8} {:>8} {:>22} {:>22} {:>10}",
                "projection", "version", "built", "position", "head", "lag"
            );
            for runner in runners(&store) {
                let status = runner.status().await?;
                let built = status.built_version.map_or("never".to_string(), |v| v.to_string());
                println!(
                    "{:<16} {:>8} {:>8} {:>22} {:>22} {:>10}",
                    status.name, status.version, built, status.position, status.head, status.lag_events
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Projections(ProjectionsCommand::Rebuild { database, name }) => {
            let store = open_store(&database).await?;
            let chosen: Vec<ProjectionRunner> = runners(&store)
                .into_iter()
                .filter(|runner| name.as_deref().is_none_or(|n| n == runner.name()))
                .collect();
            if chosen.is_empty() {
                return Err(ProjectionError::Unknown(name.unwrap_or_default()).into());
            }
            let events = store.count_in(PositionRange::default()).await?;
            // Every projection chosen is rebuilt from one read of the log.
            let label = match &name {
                Some(name) => format!("projections rebuild {name}"),
                None => "projections rebuild".to_string(),
            };
            let progress = Arc::new(ProgressReport::new(label, "events", Some(events)));
            let chosen: Vec<ProjectionRunner> =
                chosen.into_iter().map(|runner| runner.with_progress(progress.clone())).collect();
            let positions = ProjectionRunner::rebuild_all(&chosen, Duration::from_secs(3_600)).await?;
            progress.finish();
            for (runner, position) in chosen.iter().zip(positions) {
                println!("rebuilt {} up to position {}", runner.name(), position);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `reports export`: the read model brought up to date as for `reports kpi`, then the export
/// written page by page to the file (under a temporary name, renamed once complete) or to
/// standard output.
async fn write_export(
    database: &DatabaseArgs,
    export: ExportArg,
    year: Option<&str>,
    format: ExportFormatArg,
    out: Option<&std::path::Path>,
) -> Result<(), CliError> {
    use std::io::IsTerminal;

    use crate::export_formats::ExportFormat;
    use crate::routes::exports::{Export, ExportKind};
    let year = year
        .map(aisc_domain::subsidy::values::FinancialYear::parse)
        .transpose()
        .map_err(|error| CliError::InvalidInput(format!("--year: {error}")))?;
    let format = match format {
        ExportFormatArg::Csv => ExportFormat::Csv,
        ExportFormatArg::Xlsx => ExportFormat::Xlsx,
    };
    if format == ExportFormat::Xlsx && out.is_none() && std::io::stdout().is_terminal() {
        return Err(CliError::InvalidInput(
            "--format xlsx writes a binary file: give --out FILE, or redirect standard output".into(),
        ));
    }
    let kind = match export {
        ExportArg::Applications => ExportKind::Applications,
        ExportArg::Disbursements => ExportKind::Disbursements,
        ExportArg::Budget => ExportKind::Budget,
    };
    let store = open_store_without_migrating(database).await?;
    bring_up_to_date(&store, aisc_projections::applications::NAME).await?;
    let mut export = Export::new(store.pool().clone(), kind, year, format);
    let file_error = |path: &std::path::Path, error: std::io::Error| {
        CliError::File(format!("cannot write {}: {error}", path.display()))
    };
    match out {
        None => {
            let mut stdout = std::io::stdout().lock();
            while let Some(chunk) = export.next_chunk().await.map_err(export_error)? {
                stdout.write_all(&chunk)?;
            }
            stdout.flush()?;
        }
        Some(path) => {
            let mut partial = path.as_os_str().to_owned();
            partial.push(".partial");
            let partial = std::path::PathBuf::from(partial);
            let mut file = std::fs::File::create(&partial).map_err(|error| file_error(&partial, error))?;
            let written = async {
                while let Some(chunk) = export.next_chunk().await.map_err(export_error)? {
                    file.write_all(&chunk).map_err(|error| file_error(&partial, error))?;
                }
                file.sync_all().map_err(|error| file_error(&partial, error))
            }
            .await;
            if let Err(error) = written {
                let _ = std::fs::remove_file(&partial);
                return Err(error);
            }
            std::fs::rename(&partial, path).map_err(|error| file_error(path, error))?;
        }
    }
    Ok(())
}

fn export_error(error: crate::routes::exports::ExportError) -> CliError {
    match error {
        crate::routes::exports::ExportError::Database(error) => error.into(),
        crate::routes::exports::ExportError::TooLarge(error) => CliError::Usage(error.to_string()),
    }
}

/// `privacy erase`: the same erasure as `POST /api/v1/data-subjects/{id}/erasure`, as an
/// administrator.
async fn erase_data_subject(erase: EraseArgs) -> Result<ExitCode, CliError> {
    use crate::personal_data::{ErasureError, ErasureOutcome};
    use aisc_domain::subsidy::data_subjects::{ErasureBasis, RecordErasure};
    let actor = erase.actor.trim().to_string();
    if actor.is_empty() {
        return Err(CliError::InvalidInput("--actor must name who erases".into()));
    }
    let one = match (&erase.subject, &erase.reason) {
        (Some(subject), Some(reason)) => {
            let subject: aisc_domain::personal_data::DataSubjectId = subject.trim().parse().map_err(|_| {
                CliError::InvalidInput(format!(
                    "--subject {subject:?} is not a UUID (the application view's data_subject_id)"
                ))
            })?;
            let erasure = RecordErasure { data_subject_id: subject, basis: erase.basis.into(), reason: reason.clone() };
            RecordErasure::check_reason(&erasure.reason)
                .map_err(|error| CliError::InvalidInput(format!("--reason: {error}")))?;
            Some(erasure)
        }
        _ => None,
    };
    let store = open_store(&erase.database).await?;
    let vault = open_vault(&store, &erase.kek_file).await?;
    let pool = store.pool().clone();
    let scheme = aisc_domain::subsidy::service::SchemeService::new(
        aisc_domain::command_service::CommandService::new(store, aisc_adapters::TimeOrderedEventIds)
            .with_backoff(std::sync::Arc::new(aisc_adapters::JitteredBackoff::default())),
    );
    let request_id = uuid::Uuid::new_v4().to_string();
    let meta = aisc_domain::command_service::CommandMetadata {
        actor: actor.clone(),
        role: crate::auth::Role::Administrator.as_str().to_string(),
        correlation_id: request_id.clone(),
        request_id,
        causation_id: None,
    };
    let today = erase.today.unwrap_or_else(aisc_adapters::clock::today_in_hong_kong);
    let facts = aisc_domain::subsidy::Facts::new(aisc_adapters::clock::today_in_hong_kong(), actor);
    let erasures = match one {
        Some(erasure) => vec![erasure],
        None => {
            let listing = aisc_adapters::retention::past_retention(&pool, erase.retention_days, today)
                .await
                .map_err(|error| CliError::Usage(error.to_string()))?;
            if !listing.not_sealed.is_empty() {
                eprintln!(
                    "{} application(s) past retention hold personal data stored before sealing, which no key can erase: move the log to a new generation first (`aisc privacy reencrypt-log`, see README)",
                    listing.not_sealed.len()
                );
            }
            listing
                .due
                .iter()
                .map(|past| RecordErasure {
                    data_subject_id: past.data_subject_id,
                    basis: ErasureBasis::RetentionPeriodEnded,
                    reason: format!(
                        "retention period of {} days ended: application {} {} on {}",
                        erase.retention_days, past.application_id, past.ended, past.ended_on
                    ),
                })
                .collect()
        }
    };
    let mut erased = 0;
    for erasure in &erasures {
        let subject = erasure.data_subject_id;
        match crate::personal_data::erase_data_subject(&vault, &scheme, erasure, &facts, &meta).await {
            Ok(ErasureOutcome::Erased) => {
                erased += 1;
                println!("erased the personal data of data subject {subject}");
            }
            Ok(ErasureOutcome::AlreadyErased) => {
                println!("the personal data of data subject {subject} was already erased; the erasure is recorded")
            }
            Err(ErasureError::UnknownSubject(_)) => {
                return Err(CliError::NotFound(format!("no data subject {subject} is known")));
            }
            Err(error @ (ErasureError::Refused(_) | ErasureError::NotSealed { .. })) => {
                return Err(CliError::InvalidInput(error.to_string()));
            }
            Err(ErasureError::Vault(error)) => return Err(error.into()),
            Err(ErasureError::Command(error)) => return Err(CliError::Usage(error.to_string())),
        }
    }
    if erase.due {
        println!("erased {erased} data subject(s) past a retention period of {} days on {today}", erase.retention_days);
    }
    Ok(ExitCode::SUCCESS)
}

/// The listing of `aisc privacy due`: one line per subject, or one JSON document.
fn print_retention_listing(
    listing: &aisc_adapters::retention::RetentionListing,
    retention_days: u32,
    today: chrono::NaiveDate,
    format: ListFormat,
) -> Result<(), CliError> {
    use aisc_adapters::retention::PastRetention;
    let mut out = std::io::stdout().lock();
    match format {
        ListFormat::Text => {
            let line = |past: &PastRetention, note: &str| {
                format!(
                    "{} {} {} {} {} days past{note}",
                    past.data_subject_id, past.application_id, past.ended, past.ended_on, past.days_past
                )
            };
            for past in &listing.due {
                writeln!(out, "{}", line(past, ""))?;
            }
            for past in &listing.not_sealed {
                writeln!(out, "{}", line(past, " (not sealed: stored in plaintext before sealing)"))?;
            }
        }
        ListFormat::Json => {
            let items = |pasts: &[PastRetention]| -> Vec<serde_json::Value> {
                pasts
                    .iter()
                    .map(|past| {
                        serde_json::json!({
                            "data_subject_id": past.data_subject_id,
                            "application_id": past.application_id,
                            "ended": past.ended,
                            "ended_on": past.ended_on,
                            "days_past": past.days_past,
                        })
                    })
                    .collect()
            };
            let document = serde_json::json!({
                "today": today,
                "retention_days": retention_days,
                "due": items(&listing.due),
                "not_sealed": items(&listing.not_sealed),
            });
            writeln!(out, "{document}")?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Writes `bytes` to a new file at `path`, never over an existing one (mode 0600: it may hold
/// personal data).
fn write_new_file(path: &std::path::Path, bytes: &[u8]) -> Result<(), CliError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file =
        options.open(path).map_err(|error| CliError::File(format!("cannot write {}: {error}", path.display())))?;
    file.write_all(bytes).map_err(|error| CliError::File(format!("cannot write {}: {error}", path.display())))
}

/// The commands that write: as `aisc serve`, they migrate when run as the owner of the log and
/// otherwise refuse while a migration is pending.
async fn open_pool(database: &DatabaseArgs) -> Result<sqlx::PgPool, CliError> {
    Ok(database::connect_and_migrate_if_owner(&DatabaseConfig::new(database.url.clone())).await?)
}

/// The keys of personal data, opened with the key-encryption key in `kek_file` (checked
/// against the keys already stored).
async fn open_vault(
    store: &PostgresEventStore,
    kek_file: &std::path::Path,
) -> Result<std::sync::Arc<aisc_adapters::personal_data::Vault>, CliError> {
    let kek = aisc_adapters::personal_data::KeyEncryptionKey::load(kek_file)?;
    let vault = aisc_adapters::personal_data::Vault::new(store.pool().clone(), kek);
    vault.check().await?;
    Ok(std::sync::Arc::new(vault))
}

async fn open_store(database: &DatabaseArgs) -> Result<PostgresEventStore, CliError> {
    Ok(PostgresEventStore::new(open_pool(database).await?))
}

/// The commands that only read (an auditor's role has only SELECT): no database created, no
/// migration, and every transaction read-only.
async fn open_read_only_store(database: &DatabaseArgs) -> Result<PostgresEventStore, CliError> {
    Ok(PostgresEventStore::new(database::connect_read_only(&DatabaseConfig::new(database.url.clone())).await?))
}

/// `reports kpi`: no database created, no migration; whether it may bring the read model up to
/// date depends on the role (see [`bring_up_to_date`]).
async fn open_store_without_migrating(database: &DatabaseArgs) -> Result<PostgresEventStore, CliError> {
    Ok(PostgresEventStore::new(database::connect(&DatabaseConfig::new(database.url.clone())).await?))
}

/// Applies the log to the read model: here if no service runs it, else waits for the service.
/// A role that may not write the read models (an auditor's) never applies anything: it waits
/// for a running service, or, with none running, reads the read model as it stands and says
/// how far behind the log it is.
async fn bring_up_to_date(store: &PostgresEventStore, name: &str) -> Result<(), CliError> {
    let Some(runner) = runners(store).into_iter().find(|runner| runner.name() == name) else {
        return Err(ProjectionError::Unknown(name.to_string()).into());
    };
    let may_write: bool = sqlx::query_scalar("SELECT has_table_privilege('public.projection_checkpoints', 'UPDATE')")
        .fetch_one(store.pool())
        .await
        .map_err(|error| CliError::Usage(format!("cannot read this role's rights: {error}")))?;
    let outcome = if may_write {
        runner.catch_up().await.map(|_| ())
    } else if runner.led_elsewhere().await? {
        Err(ProjectionError::Busy(runner.name()))
    } else {
        return read_as_it_stands(&runner).await;
    };
    match outcome {
        Ok(()) => Ok(()),
        Err(ProjectionError::Busy(_)) => {
            let head = store
                .head_position()
                .await
                .map_err(|error| CliError::Usage(format!("cannot read the log's head: {error}")))?;
            let caught_up =
                aisc_projections::runner::wait_for_position(store.pool(), name, head, Duration::from_secs(60)).await?;
            if !caught_up {
                return Err(CliError::Usage(format!(
                    "the running service has not brought {name} up to date within a minute; try again"
                )));
            }
            Ok(())
        }
        Err(other) => Err(other.into()),
    }
}

/// For a role that may only read, with no service running the projection: the read model as
/// it stands, if this version built it; how far behind the log it is goes to the logs.
async fn read_as_it_stands(runner: &ProjectionRunner) -> Result<(), CliError> {
    let status = runner.status().await?;
    if status.built_version != Some(status.version) {
        return Err(CliError::Usage(format!(
            "the {} read model has not been built by this version and no service is running it; start `aisc serve`, or run this command as the service's role",
            status.name
        )));
    }
    if status.lag_events > 0 {
        let behind = match status.lag_events {
            1 => "1 event".to_string(),
            count => format!("{count} events"),
        };
        tracing::warn!(
            projection = status.name,
            position = status.position,
            lag_events = status.lag_events,
            "no service is running the projection and this role may not: the report is from the read model as it stands at position {}, {behind} behind the log",
            status.position
        );
    }
    Ok(())
}

fn runners(store: &PostgresEventStore) -> Vec<ProjectionRunner> {
    let shared: Arc<dyn EventStore> = Arc::new(store.clone());
    aisc_projections::all()
        .into_iter()
        .map(|projection| ProjectionRunner::new(store.pool().clone(), shared.clone(), projection))
        .collect()
}

/// `audit verify --file`: the export on its own; no database is opened.
fn verify_file(file: &std::path::Path) -> Result<ExitCode, CliError> {
    use crate::export_verification::{ExportFileError, verify_export};
    let path = file.display().to_string();
    let opened = std::fs::File::open(file)
        .map_err(|error| ExportFileError::Unreadable { path: path.clone(), reason: error.to_string() })?;
    let report = verify_export(std::io::BufReader::new(opened), &path)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{report}")?;
    out.flush()?;
    Ok(ExitCode::from(match report.first_broken {
        None => verify_exit::INTACT,
        Some(_) => verify_exit::TAMPERED,
    }))
}

/// How long `aisc audit seal` waits for transactions still running below the position it
/// would seal: they usually end within milliseconds, and a scheduled seal can afford to wait
/// out a slower one rather than leave events to the next seal.
const SETTLE_WAIT: Duration = Duration::from_secs(30);

/// `aisc audit seal`: verifies the chains up to the position and signs the log digest.
async fn seal_log(database: &DatabaseArgs, key_file: &std::path::Path, to: Option<u64>) -> Result<ExitCode, CliError> {
    // The key first: a wrong key file must not cost a scan of the log.
    let signing_key = crate::seal::read_signing_key(key_file)?;
    let store = open_store(database).await?;
    let position = settled_seal_position(&store, to).await?;
    let up_to = PositionRange { from: None, to: Some(position) };
    let progress = ProgressReport::new("audit seal", "events", Some(store.count_in(up_to).await?));
    let (report, log_digest) = store.verify_and_digest(Some(position), position, &progress).await?;
    progress.finish();
    if let Some(broken) = report.first_broken {
        eprintln!(
            "error: refusing to seal a broken log: event at position {} (stream {}, version {}, id {}): {:?}; run `aisc audit verify`",
            broken.position, broken.stream, broken.stream_version, broken.event_id, broken.problem
        );
        return Ok(ExitCode::FAILURE);
    }
    let Some(log_digest) = log_digest else {
        return Err(StoreError::Failure("the verification did not reach the seal's position".into()).into());
    };
    let seal = crate::seal::sign(&signing_key, position, log_digest, chrono::Utc::now());
    let text = serde_json::to_string_pretty(&seal).map_err(|error| CliError::Usage(error.to_string()))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The position to seal once no transaction can still write at or below it, waiting a moment
/// for those still running: the one asked for, or by default the log's head when the command
/// began — or, if a long transaction still holds events back after the wait, the last event
/// before them (said on standard error).
async fn settled_seal_position(store: &PostgresEventStore, requested: Option<u64>) -> Result<Position, CliError> {
    let mut settled = store.settled_head().await?;
    let target = requested.map_or(settled.head, Position);
    if !settled.settles_once_running_transactions_end(target) {
        return Err(CliError::InvalidInput(format!(
            "cannot seal up to position {target}: it is beyond anything written yet, and transactions yet to begin may write there; the log's head is at position {}",
            settled.head
        )));
    }
    if !settled.settles(target) {
        tracing::info!(position = %target, "waiting for transactions still running below the position to seal");
    }
    let deadline = std::time::Instant::now() + SETTLE_WAIT;
    while !settled.settles(target) {
        if std::time::Instant::now() >= deadline {
            if requested.is_none() {
                tracing::warn!(
                    sealed_to = %settled.last_event,
                    head = %target,
                    "events after the sealed position are held back by a transaction still running; the next seal covers them"
                );
                return Ok(settled.last_event);
            }
            return Err(CliError::InvalidInput(format!(
                "cannot seal up to position {target}: a transaction still running may yet write an event at or below it; the last settled event is at position {} (seal up to there, or try again once running transactions end)",
                settled.last_event
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        settled = store.settled_head().await?;
    }
    Ok(target)
}

/// `aisc audit verify --seal`: the signature against the auditor's public key (before the
/// database is touched), then the chains over the whole log and, in the same pass, the
/// digest of the log up to the seal's position against the seal's.
async fn verify_against_seal(
    database: &DatabaseArgs,
    seal_file: &std::path::Path,
    public_key_file: &std::path::Path,
) -> Result<ExitCode, CliError> {
    let trusted_key = crate::seal::read_verifying_key(public_key_file)?;
    let seal = crate::seal::read_seal(seal_file)?;
    if let Err(rejection) = seal.check_signature(&trusted_key) {
        println!("SEAL INVALID: {}: {rejection}", seal_file.display());
        return Ok(ExitCode::FAILURE);
    }
    let store = open_store(database).await?;
    let progress = ProgressReport::new("audit verify", "events", Some(store.count_in(PositionRange::WHOLE_LOG).await?));
    let (report, log_digest) = store.verify_and_digest(None, seal.position, &progress).await?;
    progress.finish();
    let chains_intact = match &report.first_broken {
        None => {
            println!("OK: {} events verified, every hash chain intact", report.verified);
            true
        }
        Some(broken) => {
            println!(
                "BROKEN: event at position {} (stream {}, version {}, id {}): {:?}; {} events verified before it",
                broken.position, broken.stream, broken.stream_version, broken.event_id, broken.problem, report.verified
            );
            false
        }
    };
    let seal_reproduced = match log_digest {
        None => {
            println!(
                "SEAL BROKEN: the log up to position {} no longer reproduces the seal of {}: its hash chains break at or before that position (above)",
                seal.position, seal.sealed_at
            );
            false
        }
        Some(now) if now.digest == seal.digest && now.event_count == seal.event_count => {
            println!(
                "SEAL OK: the log up to position {} reproduces the seal of {}: {} events, digest {}",
                seal.position,
                seal.sealed_at,
                now.event_count,
                crate::seal::to_hex(&now.digest)
            );
            true
        }
        Some(now) => {
            println!(
                "SEAL BROKEN: the log up to position {} no longer reproduces the seal of {}: digest {} where the seal says {}; {} events where the seal counted {} ({})",
                seal.position,
                seal.sealed_at,
                crate::seal::to_hex(&now.digest),
                crate::seal::to_hex(&seal.digest),
                now.event_count,
                seal.event_count,
                count_difference(now.event_count, seal.event_count)
            );
            false
        }
    };
    Ok(if chains_intact && seal_reproduced { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// What the difference in event counts between the log and its seal suggests.
fn count_difference(now: u64, sealed: u64) -> String {
    match now.cmp(&sealed) {
        std::cmp::Ordering::Less => format!("{} fewer: events up to the seal's position were removed", sealed - now),
        std::cmp::Ordering::Greater => {
            format!("{} more: events were added at or below the seal's position", now - sealed)
        }
        std::cmp::Ordering::Equal => "as many: events were changed or replaced".to_string(),
    }
}

/// Streams the range page by page to standard output, one JSON object per line, each with
/// its stored hash and its predecessor's.
async fn export(store: &PostgresEventStore, range: PositionRange) -> Result<(), CliError> {
    use aisc_domain::progress::Progress;
    let progress = ProgressReport::new("audit export", "events", Some(store.count_in(range).await?));
    let mut exported = 0_u64;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut after = Position(range.from.map_or(0, |from| from.0.saturating_sub(1)));
    let to = range.to.map_or(u64::MAX, |to| to.0);
    loop {
        let slice = store.read_all(after, 5_000).await?;
        let Some(last) = slice.events.last() else {
            if slice.held_back {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            break;
        };
        after = last.position;
        // Pages come in position order: the range ends at the first event beyond `to`.
        let in_range = &slice.events[..slice.events.partition_point(|event| event.position.0 <= to)];
        let links = store.chain_links(in_range).await?;
        for (event, link) in in_range.iter().zip(&links) {
            let line = serde_json::to_string(&FeedEvent::chained(event, link))
                .map_err(|error| CliError::Usage(format!("cannot encode event {}: {error}", event.event_id)))?;
            writeln!(out, "{line}")?;
            exported += 1;
        }
        progress.reached(exported);
        if after.0 >= to {
            break;
        }
    }
    out.flush()?;
    progress.finish();
    Ok(())
}
