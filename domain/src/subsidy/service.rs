//! The scheme's commands run through the one command service: every command is a
//! [`Decision`] run by [`SchemeService::run`] (load its boundary, fold, decide, append every
//! stream it writes at the version read). The bulk usage import decides each line with the
//! same [`ChargeUsage`] decision over states it loads once, and appends in batches.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;

use super::Facts;
use super::application::{self, Application, ApplicationState};
use super::error::DomainError;
use super::funding::{FundingYear, FundingYearState};
use super::prices::PriceSchedule;
use super::streams;
use super::usage_import::{self, ImportMode, ImportStates, LineError, LineOutcome, RepeatedLines};
use super::values::{FinancialYear, Money};
use crate::codec::{CodecError, EventCodec};
use crate::command_service::{CommandError, CommandMetadata, CommandService, Decided, Decision, EventIds, Written};
use crate::event_store::{EventStore, StreamId};

pub type SchemeResult<T> = Result<T, CommandError<DomainError>>;

fn rejected(error: DomainError) -> CommandError<DomainError> {
    CommandError::Rejected(error)
}

/// Every command of the scheme.
pub struct SchemeService<S, I> {
    commands: CommandService<S, I>,
}

impl<S: EventStore, I: EventIds> SchemeService<S, I> {
    pub fn new(commands: CommandService<S, I>) -> Self {
        Self { commands }
    }

    pub fn commands(&self) -> &CommandService<S, I> {
        &self.commands
    }

    /// Runs any decision of the scheme; with `if_match`, only against that version of its
    /// subject. Answers what was written to the subject.
    pub async fn run<D>(
        &self,
        decision: &D,
        facts: &Facts,
        if_match: Option<u64>,
        meta: &CommandMetadata,
    ) -> SchemeResult<Written>
    where
        D: Decision<Facts = Facts, Error = DomainError>,
    {
        self.commands.run(decision, facts, if_match, meta).await
    }

    /// Imports a file of usage lines as one operation: every line is parsed and decided first
    /// (a refused line is reported with its number); in all-or-nothing mode one refused line
    /// means nothing is written, in partial mode the accepted lines are written. Accepted
    /// lines are appended in batches of `batch_lines`, each batch one transaction over its
    /// applications. A batch that meets a concurrent change decides again on fresh state (with
    /// the service's attempts and backoff); lines an earlier run of the same import id wrote are recognised, so an
    /// interrupted import is finished by running it again. A line repeating what another
    /// import charged (same application, service, month and units) is refused unless the
    /// request allows repeated lines; that is decided on the state each batch is appended at,
    /// so two imports of the same lines racing each other cannot both charge them.
    pub async fn import_usage(
        &self,
        request: UsageImportRequest<'_>,
        meta: &CommandMetadata,
    ) -> SchemeResult<UsageImportReport> {
        self.import_usage_reporting(request, meta, &crate::progress::Unwatched).await
    }

    /// [`SchemeService::import_usage`], telling `progress` the lines written so far.
    ///
    /// Memory: the file's text, the states of its applications (one copy: the kept states
    /// are handed over, not copied, and an all-or-nothing dry run takes back what it decided
    /// instead of deciding on a copy), and one batch of events. Lines are parsed again on
    /// each pass rather than held parsed.
    pub async fn import_usage_reporting(
        &self,
        request: UsageImportRequest<'_>,
        meta: &CommandMetadata,
        progress: &dyn crate::progress::Progress,
    ) -> SchemeResult<UsageImportReport> {
        usage_import::check_import_id(request.import_id).map_err(rejected)?;
        let batch_lines = request.batch_lines.max(1);
        let file = usage_import::UsageFile::read(request.csv);
        let (well_formed, format_errors) = file.check();
        let mut written_lines: BTreeSet<usize> = BTreeSet::new();
        let mut positions: (Option<u64>, Option<u64>) = (None, None);
        let mut batches = 0;
        let mut attempt = 1;
        let report = |written_lines: &BTreeSet<usize>,
                      already_imported: &[usize],
                      refused: Vec<LineError>,
                      batches,
                      positions: (Option<u64>, Option<u64>)| UsageImportReport {
            import_id: request.import_id.to_string(),
            mode: request.mode,
            repeated_lines: request.repeated_lines,
            lines: well_formed + format_errors.len(),
            written: written_lines.len(),
            written_lines: usage_import::line_ranges(written_lines.iter().copied()),
            already_imported: already_imported.len(),
            already_imported_lines: usage_import::line_ranges(already_imported.iter().copied()),
            refused,
            batches,
            first_position: positions.0,
            last_position: positions.1,
        };
        loop {
            let (mut states, mut versions) = self.import_states(&file).await?;
            if request.mode == ImportMode::AllOrNothing {
                // A dry run: every line decided, to know the refusals before writing anything.
                let refused = self.dry_run(&file, &mut states, &request, &format_errors);
                if !refused.is_empty() {
                    self.keep_import_states(&states, &versions)?;
                    return Ok(report(&written_lines, &[], refused, batches, positions));
                }
            }
            let mut refused = format_errors.clone();
            let mut already_imported = Vec::new();
            let mut batch: Vec<(usize, StreamId, application::ApplicationEvent)> = Vec::with_capacity(batch_lines);
            let mut conflicted = None;
            let mut lines_left = file.well_formed().peekable();
            while let Some(line) = lines_left.next() {
                match usage_import::decide_line(
                    &mut states,
                    request.import_id,
                    &line,
                    request.repeated_lines,
                    request.today,
                ) {
                    LineOutcome::Charge(charge) => {
                        let stream = streams::application(&line.application_id).map_err(rejected)?;
                        batch.push((line.line, stream, *charge));
                    }
                    LineOutcome::AlreadyImported if written_lines.contains(&line.line) => {}
                    LineOutcome::AlreadyImported => already_imported.push(line.line),
                    LineOutcome::Refused(error) => refused.push(error),
                }
                if batch.len() < batch_lines && lines_left.peek().is_some() || batch.is_empty() {
                    continue;
                }
                match self.append_import_batch(&batch, &mut versions, meta).await {
                    Ok(written) => {
                        for position in written.iter().filter_map(|w| w.position.map(|p| p.0)) {
                            positions.0 = Some(positions.0.map_or(position, |first: u64| first.min(position)));
                            positions.1 = Some(positions.1.map_or(position, |last: u64| last.max(position)));
                        }
                        written_lines.extend(batch.iter().map(|(line, _, _)| *line));
                        progress.reached(written_lines.len() as u64);
                        batches += 1;
                        batch.clear();
                    }
                    Err(conflict @ CommandError::Conflict { .. }) => {
                        conflicted = Some(conflict);
                        break;
                    }
                    Err(other) => return Err(other),
                }
            }
            match conflicted {
                None => {
                    // The states now stand at the versions written: the next import starts there.
                    self.keep_import_states(&states, &versions)?;
                    refused.sort_by_key(|error| error.line);
                    return Ok(report(&written_lines, &already_imported, refused, batches, positions));
                }
                // The states hold lines that were not written: dropped, and loaded again.
                Some(conflict) if attempt >= self.commands.max_attempts() => return Err(conflict),
                Some(_) => {
                    self.commands.back_off(attempt).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Decides every line of the file against `states` and takes back what it charged: the
    /// refusals an all-or-nothing import would meet (format errors included), sorted by line.
    fn dry_run(
        &self,
        file: &usage_import::UsageFile<'_>,
        states: &mut ImportStates,
        request: &UsageImportRequest<'_>,
        format_errors: &[LineError],
    ) -> Vec<LineError> {
        let disbursed_before: BTreeMap<String, Money> =
            states.applications.iter().map(|(id, state)| (id.clone(), state.disbursed)).collect();
        let mut charged: Vec<usize> = Vec::new();
        let mut refused = format_errors.to_vec();
        for line in file.well_formed() {
            match usage_import::decide_line(states, request.import_id, &line, request.repeated_lines, request.today) {
                LineOutcome::Charge(_) => charged.push(line.line),
                LineOutcome::AlreadyImported => {}
                LineOutcome::Refused(error) => refused.push(error),
            }
        }
        // Taken back last line first: each line taken back is then the last its import charged
        // of that usage, so the ledger never looks for the next first line.
        let mut to_undo = charged.iter().rev().peekable();
        for line in file.well_formed_last_first() {
            if to_undo.peek().is_some_and(|next| **next == line.line) {
                to_undo.next();
                let before = disbursed_before.get(line.application_id.as_ref()).copied().unwrap_or_default();
                usage_import::undo_line(states, request.import_id, &line, before);
            }
        }
        refused.sort_by_key(|error| error.line);
        refused
    }

    /// Hands the import's states back to the service's kept states.
    fn keep_import_states(
        &self,
        states: &ImportStates,
        versions: &BTreeMap<StreamId, Option<u64>>,
    ) -> SchemeResult<()> {
        for (id, state) in &states.applications {
            let stream = streams::application(id).map_err(rejected)?;
            self.commands.remember::<Application>(&stream, versions.get(&stream).copied().flatten(), state);
        }
        Ok(())
    }

    /// Appends one batch of charges in one transaction: each application's charges at the
    /// version last loaded or written.
    async fn append_import_batch(
        &self,
        batch: &[(usize, StreamId, application::ApplicationEvent)],
        versions: &mut BTreeMap<StreamId, Option<u64>>,
        meta: &CommandMetadata,
    ) -> SchemeResult<Vec<Written>> {
        let mut charged: BTreeMap<&StreamId, Vec<&application::ApplicationEvent>> = BTreeMap::new();
        for (_, stream, charge) in batch {
            charged.entry(stream).or_default().push(charge);
        }
        let mut decided = Vec::with_capacity(charged.len());
        for (stream, events) in charged {
            let version = versions.get(stream).copied().flatten();
            let events = events
                .into_iter()
                .map(|event| Ok((event.event_type(), event.schema_version(), event.to_data()?)))
                .collect::<Result<_, CodecError>>()?;
            decided.push((Decided { stream: stream.clone(), events }, version));
        }
        let streams: Vec<StreamId> = decided.iter().map(|(decision, _)| decision.stream.clone()).collect();
        let written = self.commands.append_at::<DomainError>(decided, meta).await?;
        for (stream, result) in streams.into_iter().zip(&written) {
            versions.insert(stream, result.version);
        }
        Ok(written)
    }

    /// The applications and price schedule the lines are decided against, and the version each
    /// application was loaded at. The kept states of the applications are handed over (the
    /// service forgets them until the import gives them back), so deciding on them in place
    /// copies nothing.
    async fn import_states(
        &self,
        file: &usage_import::UsageFile<'_>,
    ) -> SchemeResult<(ImportStates, BTreeMap<StreamId, Option<u64>>)> {
        let mut states = ImportStates::default();
        let mut versions = BTreeMap::new();
        let application_ids: BTreeSet<String> =
            file.well_formed().map(|line| line.application_id.into_owned()).collect();
        let application_streams = application_ids
            .iter()
            .map(|id| streams::application(id).map_err(rejected))
            .collect::<SchemeResult<Vec<_>>>()?;
        let application_states = self.commands.current_states::<Application, DomainError>(&application_streams).await?;
        self.commands.forget(&application_streams);
        let schedule = streams::prices().map_err(rejected)?;
        let mut schedule_state = self.commands.current_states::<PriceSchedule, DomainError>(&[schedule]).await?;
        states.prices = schedule_state.pop().map(|(state, _)| state).unwrap_or_default();
        for ((id, stream), (state, version)) in
            application_ids.into_iter().zip(application_streams).zip(application_states)
        {
            states.applications.insert(id, state);
            versions.insert(stream, version);
        }
        Ok((states, versions))
    }

    pub async fn application_state(&self, application_id: &str) -> SchemeResult<(ApplicationState, Option<u64>)> {
        let target = streams::application(application_id).map_err(rejected)?;
        let history = self.commands.load(&target).await.map_err(CommandError::Store)?;
        let app_state = history.fold::<Application>()?;
        Ok((known(app_state, application_id)?, history.version))
    }

    pub async fn funding_state(&self, year: FinancialYear) -> SchemeResult<(FundingYearState, Option<u64>)> {
        let stream = streams::budget(year).map_err(rejected)?;
        let history = self.commands.load(&stream).await.map_err(CommandError::Store)?;
        Ok((history.fold::<FundingYear>()?, history.version))
    }
}

fn known(app_state: ApplicationState, application_id: &str) -> SchemeResult<ApplicationState> {
    if app_state.status == application::Status::New {
        return Err(rejected(DomainError::UnknownApplication { application: application_id.to_string() }));
    }
    Ok(app_state)
}

/// A usage import as the caller asks for it.
#[derive(Debug, Clone, Copy)]
pub struct UsageImportRequest<'a> {
    pub import_id: &'a str,
    pub csv: &'a str,
    pub mode: ImportMode,
    /// Whether a line repeating a charge another import made is refused (the default) or charged.
    pub repeated_lines: RepeatedLines,
    pub today: NaiveDate,
    /// Lines appended per transaction.
    pub batch_lines: usize,
}

/// What an import did, line by line (line numbers count the header as line 1).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UsageImportReport {
    pub import_id: String,
    pub mode: ImportMode,
    /// Whether lines repeating another import's charges were refused or charged.
    pub repeated_lines: RepeatedLines,
    /// Usage lines in the file (the header and blank lines not counted).
    pub lines: usize,
    /// Lines charged by this run, and which.
    pub written: usize,
    pub written_lines: Vec<[usize; 2]>,
    /// Lines an earlier run of the same import id charged, and which.
    pub already_imported: usize,
    pub already_imported_lines: Vec<[usize; 2]>,
    pub refused: Vec<LineError>,
    /// Transactions the written lines went in.
    pub batches: usize,
    pub first_position: Option<u64>,
    pub last_position: Option<u64>,
}
