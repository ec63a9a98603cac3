//! `aisc demo seed`: a realistic scheme driven through the real command service, seeded and
//! deterministic, so a newcomer can open the dashboard on believable data.
//!
//! From the paper: the §23 cash flow per year and budget line, quarterly batches (§15), the
//! five applicant categories of §11, decisions mostly at or below 70 % with a few exceptional
//! ones up to 90 % (§13), agreements with quarterly progress reports (§21), monthly usage and
//! disbursement. Capacity reading: 3,000 PFLOPS (§5) taken as 375 eight-GPU H800 nodes, i.e.
//! 270,000 GPU node-hours a month, of which 90 % may be subsidised (§10).
//!
//! Every command is decided by its own decision, as the service would decide it; the decided
//! commands are appended in bulk through a [`CommandBatch`], hundreds to an append.

use chrono::{Datelike, Months, NaiveDate, TimeDelta};

use crate::command_service::{CommandBatch, CommandError, CommandMetadata, Decision, EventIds};
use crate::event_store::EventStore;
use crate::progress::Progress;
use crate::subsidy::application::{
    Application, ApplicationState, ApproveApplication, ChargeUsage, CheckEligibility, CloseProject, CommitteeMeeting,
    Contact, Kpis, RecordAssessment, RejectApplication, RequestedResource, Scores, SignAgreement, Status, Submission,
    SubmitApplication, SubmitProgressReport, Undertakings, WithdrawApplication,
};
use crate::subsidy::batches::{Batch, CloseBatch, OpenBatch};
use crate::subsidy::capacity::{Allocation, DeclareCapacity};
use crate::subsidy::funding::{BudgetLine, RecordFundingReceived, planned_cash_flow, planned_years};
use crate::subsidy::prices::SetServiceRate;
use crate::subsidy::service::SchemeService;
use crate::subsidy::streams;
use crate::subsidy::values::{ApplicantCategory, Money, Period, RateBps, ServiceType};
use crate::subsidy::{DomainError, Facts};

/// GPU node-hours a month: 3,000 PFLOPS as 375 nodes × 720 hours.
const GPU_NODE_HOURS_PER_MONTH: u64 = 270_000;
const GPU_RATE_CENTS: i64 = 4_250;

/// A small deterministic generator (xorshift64*), so a seed always gives the same scheme.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// 0 to `n - 1`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with `percent` % chance.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct SeedSummary {
    pub applications: usize,
    pub approved: usize,
    pub rejected: usize,
    pub ineligible: usize,
    pub withdrawn: usize,
    pub usage_lines: usize,
    pub progress_reports: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("seeding failed at {step}: {reason}")]
pub struct SeedError {
    step: String,
    reason: String,
}

fn failed(step: impl Into<String>) -> impl FnOnce(CommandError<DomainError>) -> SeedError {
    let step = step.into();
    move |error| SeedError { step, reason: error.to_string() }
}

/// Commands decided before their events are appended together: about a thousand events an
/// append, instead of one round trip to the log per command.
const COMMANDS_PER_COMMIT: usize = 500;

/// What a command came to: the outer error is a failed commit of the commands decided before
/// it (the caller cannot go on), the inner one the command's own outcome (a refusal the
/// generator may expect).
type Acted = Result<Result<(), CommandError<DomainError>>, SeedError>;

/// Runs the generator's commands through the command service in batches: each command is
/// decided by its own decision on the state the commands before it left, and the decided
/// commands are appended [`COMMANDS_PER_COMMIT`] at a time. The generator is the only writer,
/// so a batch decides exactly as one command after another would.
struct Seeder<'a, S, I> {
    scheme: &'a SchemeService<S, I>,
    batch: CommandBatch<'a, S, I>,
    progress: &'a dyn Progress,
    /// The last request numbered (each command is request `demo-{n}`).
    request: u64,
    /// The last request whose command is in the log.
    committed: u64,
}

impl<'a, S: EventStore, I: EventIds> Seeder<'a, S, I> {
    fn new(scheme: &'a SchemeService<S, I>, progress: &'a dyn Progress) -> Self {
        Self { scheme, batch: scheme.commands().batch(), progress, request: 0, committed: 0 }
    }

    /// Decides one command as `actor` in `role` on `today`, after committing the batch if it is full.
    async fn act<D: Decision<Facts = Facts, Error = DomainError>>(
        &mut self,
        decision: &D,
        today: NaiveDate,
        (actor, role): (&str, &str),
    ) -> Acted {
        if self.batch.pending_commands() >= COMMANDS_PER_COMMIT {
            self.commit().await?;
        }
        self.request += 1;
        let facts = Facts::new(today, actor);
        Ok(self.batch.run(decision, &facts, &meta(actor, role, self.request)).await.map(|_| ()))
    }

    /// An application as the commands decided so far left it.
    async fn application_state(&mut self, id: &str) -> Result<ApplicationState, CommandError<DomainError>> {
        let stream = streams::application(id).map_err(CommandError::Rejected)?;
        let (state, _) = self.batch.state::<Application, DomainError>(&stream).await?;
        if state.status == Status::New {
            return Err(CommandError::Rejected(DomainError::UnknownApplication { application: id.to_string() }));
        }
        Ok(state)
    }

    /// Appends the commands decided since the last commit, and tells `progress`.
    async fn commit(&mut self) -> Result<(), SeedError> {
        let step = format!("the commit of requests demo-{} to demo-{}", self.committed + 1, self.request);
        self.batch.commit::<DomainError>().await.map_err(failed(step))?;
        self.committed = self.request;
        self.progress.reached(self.committed);
        Ok(())
    }

    /// Commits, then starts a batch that knows no stream yet: a quarter's applications are
    /// not used again, so the batch holds one quarter's states at most (the hot streams'
    /// states are kept by the command service).
    async fn commit_and_forget(&mut self) -> Result<(), SeedError> {
        self.commit().await?;
        self.batch = self.scheme.commands().batch();
        Ok(())
    }
}

fn meta(actor: &str, role: &str, n: u64) -> CommandMetadata {
    CommandMetadata {
        actor: actor.into(),
        role: role.into(),
        request_id: format!("demo-{n}"),
        correlation_id: "demo-seed".into(),
        causation_id: None,
    }
}

fn date(year: i32, month: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, day).unwrap_or_default()
}

fn gpu() -> ServiceType {
    ServiceType::parse("gpu_node_hour_h800").expect("a constant, valid service type")
}

const CATEGORIES: [(ApplicantCategory, &str, &str, u64); 5] = [
    (ApplicantCategory::LocalInstitution, "ugc_funded_university", "The University of Hong Kong", 35),
    (
        ApplicantCategory::RndCentre,
        "innohk_centre",
        "Hong Kong Centre for Cerebro-Cardiovascular Health Engineering",
        20,
    ),
    (ApplicantCategory::GovernmentDepartment, "bureau_or_department", "Planning Department", 10),
    (ApplicantCategory::AiStartup, "cyberport_incubatee_or_alumnus", "Harbour Vision AI Limited", 25),
    (ApplicantCategory::StrategicEnterprise, "strategic_enterprise", "Global Models (Hong Kong) Limited", 10),
];

const TOPICS: [&str; 6] = [
    "Cantonese speech model",
    "medical imaging",
    "traffic forecasting",
    "legal document retrieval",
    "weather nowcasting",
    "materials discovery",
];

/// Seeds `applications` applications over `years` financial years from 2024-25.
pub async fn seed<S: EventStore, I: EventIds>(
    scheme: &SchemeService<S, I>,
    applications: usize,
    years: u32,
    seed: u64,
) -> Result<SeedSummary, SeedError> {
    seed_reporting(scheme, applications, years, seed, &crate::progress::Unwatched).await
}

/// [`seed`], telling `progress` the commands run so far.
pub async fn seed_reporting<S: EventStore, I: EventIds>(
    scheme: &SchemeService<S, I>,
    applications: usize,
    years: u32,
    seed: u64,
    progress: &dyn Progress,
) -> Result<SeedSummary, SeedError> {
    let mut seeder = Seeder::new(scheme, progress);
    match generate(&mut seeder, applications, years, seed).await {
        Ok(summary) => {
            seeder.commit().await?;
            Ok(summary)
        }
        Err(error) => {
            // The log keeps what was decided before the failing step, as when every command
            // was appended on its own; should that commit fail too, the step's error is the one to tell.
            let _ = seeder.commit().await;
            Err(error)
        }
    }
}

/// The scheme's commands, in order.
async fn generate<S: EventStore, I: EventIds>(
    seeder: &mut Seeder<'_, S, I>,
    applications: usize,
    years: u32,
    seed: u64,
) -> Result<SeedSummary, SeedError> {
    let mut dice = Dice(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut summary = SeedSummary { applications, ..SeedSummary::default() };
    let years = years.clamp(1, 3) as i32;
    // Funding, prices, capacity and the batch calendar.
    // Projects approved late in a year run into the next: fund that year too where §23 has it.
    for year in planned_years().take(years as usize + 1) {
        for line in BudgetLine::ALL {
            let Some(amount) = planned_cash_flow(year, line) else { continue };
            let received_on = year.first_day();
            let funding = RecordFundingReceived { year, line, amount, received_on };
            seeder.act(&funding, received_on, ("finance-demo", "finance_officer")).await?.map_err(failed("funding"))?;
        }
    }
    let first_year = planned_years().next().map_or(2024, |year| year.first_day().year());
    let rate = SetServiceRate {
        service_type: gpu(),
        rate_per_unit: Money::from_cents(GPU_RATE_CENTS),
        unit: "node-hour".into(),
        effective_from: date(first_year, 4, 1),
    };
    seeder.act(&rate, rate.effective_from, ("admin-demo", "administrator")).await?.map_err(failed("prices"))?;
    let last_month = Period::of(date(first_year + years + 1, 12, 1));
    for month in Period::range(Period::of(date(first_year, 4, 1)), last_month) {
        let declared = DeclareCapacity { service_type: gpu(), period: month, units: GPU_NODE_HOURS_PER_MONTH };
        seeder
            .act(&declared, date(first_year, 4, 1), ("admin-demo", "administrator"))
            .await?
            .map_err(failed("capacity"))?;
    }
    // Quarterly batches: deadlines at quarter ends, committee two weeks later.
    let mut batches: Vec<(String, Batch)> = Vec::new();
    for year in first_year..first_year + years {
        for (quarter, (deadline_year, month, day)) in
            [(year, 6, 30), (year, 9, 30), (year, 12, 31), (year + 1, 3, 31)].into_iter().enumerate()
        {
            let deadline = date(deadline_year, month, day);
            let batch = Batch { deadline, committee_date: deadline + TimeDelta::days(15), closed: true };
            let id = format!("{year}-{:02}-q{}", (year + 1) % 100, quarter + 1);
            let opened = OpenBatch { batch_id: id.clone(), deadline, committee_date: batch.committee_date };
            seeder
                .act(&opened, date(first_year, 4, 1), ("secretariat-demo", "committee_secretariat"))
                .await?
                .map_err(failed("batches"))?;
            batches.push((id, batch));
        }
    }

    let per_batch = applications.div_ceil(batches.len());
    let mut number = 0_usize;
    for (batch_id, batch) in &batches {
        let mut in_batch = Vec::new();
        while in_batch.len() < per_batch && number < applications {
            let id = format!("demo{seed}-{number:06}");
            let submission = random_submission(&mut dice, number, batch.deadline);
            let submitted_on = batch.deadline - TimeDelta::days(1 + dice.below(80) as i64);
            let submit = SubmitApplication { application_id: id.clone(), submission };
            seeder
                .act(&submit, submitted_on, ("intake-demo", "intake_officer"))
                .await?
                .map_err(failed(format!("submit {id}")))?;
            in_batch.push(id);
            number += 1;
        }
        let mut assessed = Vec::new();
        for id in &in_batch {
            if dice.chance(5) {
                let withdraw = WithdrawApplication { application_id: id.clone(), reason: "applicant withdrew".into() };
                seeder
                    .act(&withdraw, batch.deadline, ("intake-demo", "intake_officer"))
                    .await?
                    .map_err(failed("withdraw"))?;
                summary.withdrawn += 1;
            }
        }
        let close = CloseBatch { batch_id: batch_id.clone() };
        seeder
            .act(&close, batch.deadline + TimeDelta::days(1), ("secretariat-demo", "committee_secretariat"))
            .await?
            .map_err(failed("close batch"))?;
        for id in &in_batch {
            let check = CheckEligibility { application_id: id.clone() };
            match seeder.act(&check, batch.deadline + TimeDelta::days(3), ("intake-demo", "intake_officer")).await? {
                Ok(_) => {}
                Err(CommandError::Rejected(DomainError::ApplicationClosed { .. })) => continue,
                Err(error) => return Err(failed("eligibility")(error)),
            }
            let state = seeder.application_state(id).await.map_err(failed("read"))?;
            if !state.ineligibility.is_empty() {
                summary.ineligible += 1;
                continue;
            }
            let assessment = RecordAssessment {
                application_id: id.clone(),
                scores: Scores {
                    a_meets_hong_kong_needs: 5 + dice.below(6) as u8,
                    b_requirement_reasonable: 5 + dice.below(6) as u8,
                    c_feasibility_and_outcome: 5 + dice.below(6) as u8,
                    d_capability: 5 + dice.below(6) as u8,
                },
                recommended_rate: RateBps::NORMAL_CAP,
                recommended_ceiling: Money::from_cents(10_000_000),
                duration_months: 6,
                conditions: vec![],
                no_conflict_declared: true,
            };
            seeder
                .act(&assessment, batch.deadline + TimeDelta::days(3), ("assessor-demo", "assessor"))
                .await?
                .map_err(failed("assess"))?;
            assessed.push(id.clone());
        }
        let meeting = CommitteeMeeting {
            meeting_reference: format!("AISC-COM-{batch_id}"),
            decided_on: batch.committee_date,
            members_present: vec!["member-1".into(), "member-2".into(), "member-3".into(), "member-4".into()],
            members_recused: vec![],
        };
        for id in &assessed {
            if dice.chance(25) {
                reject(seeder, id, &meeting, "the computing requirement is not justified").await?;
                summary.rejected += 1;
                continue;
            }
            let start = (batch.committee_date.with_day(1).unwrap_or(batch.committee_date)) + Months::new(1);
            let end = start + Months::new(6) - TimeDelta::days(1);
            let allocations: Vec<Allocation> = Period::range(Period::of(start), Period::of(end))
                .into_iter()
                .map(|period| Allocation { service_type: gpu(), period, units: 100 + dice.below(900) })
                .collect();
            let exceptional = dice.chance(4);
            let rate = if exceptional {
                RateBps::new(7_500 + 500 * dice.below(4) as u32)
            } else {
                RateBps::new(5_000 + 500 * dice.below(5) as u32)
            }
            .map_err(|error| SeedError { step: "rate".into(), reason: error.to_string() })?;
            let approve = ApproveApplication {
                application_id: id.clone(),
                meeting: meeting.clone(),
                rate,
                exceptional_reason: exceptional.then(|| "significant impact on local AI innovation".to_string()),
                allocations: allocations.clone(),
                // The subsidy of every allocated unit, as the rule computes it.
                ceiling: None,
                start,
                end,
                conditions: vec!["quarterly progress reports".into()],
            };
            let secretariat = ("secretariat-demo", "committee_secretariat");
            match seeder.act(&approve, meeting.decided_on, secretariat).await? {
                Ok(_) => {}
                Err(CommandError::Rejected(
                    DomainError::BudgetShort { .. } | DomainError::CapacityCapExceeded { .. },
                )) => {
                    reject(seeder, id, &meeting, "no subsidy or capacity left in the period").await?;
                    summary.rejected += 1;
                    continue;
                }
                Err(error) => return Err(failed("approve")(error)),
            }
            summary.approved += 1;
            let due_dates = vec![start + Months::new(3), end + TimeDelta::days(15)];
            let agreement = SignAgreement {
                application_id: id.clone(),
                signed_on: start - TimeDelta::days(5),
                reporting_due_dates: due_dates.clone(),
            };
            seeder
                .act(&agreement, agreement.signed_on, ("secretariat-demo", "committee_secretariat"))
                .await?
                .map_err(failed("agreement"))?;
            let mut reported = Vec::new();
            for allocation in &allocations {
                let charge_day = allocation.period.first_day() + Months::new(1) + TimeDelta::days(4);
                let now_due: Vec<NaiveDate> =
                    due_dates.iter().copied().filter(|due| *due < charge_day && !reported.contains(due)).collect();
                for due in now_due {
                    submit_report(seeder, id, due, &mut dice).await?;
                    reported.push(due);
                    summary.progress_reports += 1;
                }
                let units = allocation.units * (60 + dice.below(41)) / 100;
                if units == 0 {
                    continue;
                }
                let usage = ChargeUsage {
                    application_id: id.clone(),
                    usage_id: format!("{id}-{}", allocation.period),
                    import_id: None,
                    service_type: gpu(),
                    period: allocation.period,
                    units,
                };
                seeder.act(&usage, charge_day, ("finance-demo", "finance_officer")).await?.map_err(failed("usage"))?;
                summary.usage_lines += 1;
            }
            for due in due_dates.iter().filter(|due| !reported.contains(*due)) {
                submit_report(seeder, id, *due, &mut dice).await?;
                summary.progress_reports += 1;
            }
            let complete = CloseProject { application_id: id.clone(), termination_reason: None };
            seeder
                .act(&complete, end + TimeDelta::days(30), ("secretariat-demo", "committee_secretariat"))
                .await?
                .map_err(failed("complete"))?;
        }
        seeder.commit_and_forget().await?;
    }
    Ok(summary)
}

async fn reject<S: EventStore, I: EventIds>(
    seeder: &mut Seeder<'_, S, I>,
    id: &str,
    meeting: &CommitteeMeeting,
    reason: &str,
) -> Result<(), SeedError> {
    let rejection = RejectApplication {
        application_id: id.to_string(),
        meeting: meeting.clone(),
        reasons: vec![reason.to_string()],
    };
    seeder
        .act(&rejection, meeting.decided_on, ("secretariat-demo", "committee_secretariat"))
        .await?
        .map_err(failed("reject"))
}

async fn submit_report<S: EventStore, I: EventIds>(
    seeder: &mut Seeder<'_, S, I>,
    id: &str,
    due: NaiveDate,
    dice: &mut Dice,
) -> Result<(), SeedError> {
    let kpis = Kpis {
        ai_models_trained_or_deployed: dice.below(3) as u32,
        talents_employed: 2 + dice.below(10) as u32,
        mainland_or_overseas_collaborators: dice.below(3) as u32,
        publications: dice.below(4) as u32,
        patents: dice.below(2) as u32,
    };
    let report = SubmitProgressReport { application_id: id.to_string(), due, kpis, summary: "on track".into() };
    seeder.act(&report, due, ("intake-demo", "intake_officer")).await?.map_err(failed("progress report"))
}

fn random_submission(dice: &mut Dice, number: usize, deadline: NaiveDate) -> Submission {
    let roll = dice.below(100);
    let mut threshold = 0;
    let (category, sub_type, organisation) = CATEGORIES
        .iter()
        .find(|(_, _, _, weight)| {
            threshold += weight;
            roll < threshold
        })
        .map_or(CATEGORIES[0], |found| *found)
        .into_parts();
    let start = Period::of(deadline + TimeDelta::days(45));
    let team_size = 3 + dice.below(30) as u32;
    Submission {
        organisation: organisation.to_string(),
        category,
        sub_type: sub_type.to_string(),
        project_title: format!("{} {}", TOPICS[number % TOPICS.len()], number),
        project_summary: "Training and evaluating models on the AI Supercomputing Centre.".into(),
        develops_ai_models: dice.chance(80),
        requested_resources: vec![RequestedResource {
            service_type: gpu(),
            first_period: start,
            last_period: Period::of(start.first_day() + Months::new(5)),
            units_per_month: 500,
        }],
        requested_rate: RateBps::NORMAL_CAP,
        team_size,
        talents: (team_size / 2).max(1),
        mainland_or_overseas_team: dice.chance(15),
        other_government_funding: dice.chance(3),
        undertakings: (category == ApplicantCategory::StrategicEnterprise && dice.chance(85)).then(|| Undertakings {
            land_in_hong_kong: true,
            professionals_to_employ: 10 + dice.below(90) as u32,
            contribution: "A regional AI research hub in Hong Kong".into(),
        }),
        contact: Contact { name: "Project lead".into(), email: format!("lead{number}@example.hk") },
    }
}

trait IntoParts {
    fn into_parts(self) -> (ApplicantCategory, &'static str, &'static str);
}

impl IntoParts for (ApplicantCategory, &'static str, &'static str, u64) {
    fn into_parts(self) -> (ApplicantCategory, &'static str, &'static str) {
        (self.0, self.1, self.2)
    }
}
