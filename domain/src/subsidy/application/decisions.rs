//! Every decision on an application, each in the one decision shape: the streams it reads,
//! the state it folds from them, and a pure `decide` from that state and the outside facts
//! (today's date, the acting principal). Decisions that touch other aggregates — submission
//! (the batch calendar), the committee's decisions (the calendar; approval also budget and
//! capacity), usage and reversals (the funding year, the price schedule), closure (budget) —
//! return the events for every stream they write, appended together at the versions read.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::Application;
use super::events::*;
use super::state::{ApplicationState, ReportState, Status};
use super::submission::Submission;
use crate::codec::CodecError;
use crate::command_service::{Decision, Histories, StreamDecision};
use crate::event_store::StreamId;
use crate::personal_data::{DataSubjectId, PersonalText};
use crate::subsidy::Facts;
use crate::subsidy::batches::{Batch, BatchCalendar, BatchCalendarState};
use crate::subsidy::capacity::{self, Allocation, Capacity, CapacityState};
use crate::subsidy::error::DomainError;
use crate::subsidy::events::SchemeEvent;
use crate::subsidy::funding::{self, FundingYear, FundingYearState};
use crate::subsidy::prices::{PriceSchedule, PriceScheduleState};
use crate::subsidy::streams;
use crate::subsidy::values::{
    FinancialYear, Money, Period, RateBps, ServiceType, money_from_subsidy_units, subsidy_for, subsidy_of_units,
};

/// Members who must be present, without a conflict, for a committee decision.
pub const QUORUM: usize = 3;

type Events = Result<Vec<ApplicationEvent>, DomainError>;
type SchemeEvents = Result<Vec<(StreamId, SchemeEvent)>, DomainError>;

fn within_deadline(state: &ApplicationState, today: NaiveDate, action: &'static str) -> Result<(), DomainError> {
    match state.batch_deadline {
        Some(deadline) if today > deadline => Err(DomainError::BatchDeadlinePassed { deadline, action }),
        _ => Ok(()),
    }
}

/// The state of the application stream and one more aggregate's stream.
fn application_and<A: crate::command_service::Aggregate>(
    loaded: &Histories,
    application_id: &str,
    other: Result<StreamId, DomainError>,
) -> Result<(ApplicationState, A::State), CodecError> {
    let application = match streams::application(application_id) {
        Ok(stream) => loaded.state::<Application>(&stream)?,
        Err(_) => ApplicationState::default(),
    };
    let other = match other {
        Ok(stream) => loaded.state::<A>(&stream)?,
        Err(_) => A::State::default(),
    };
    Ok((application, other))
}

/// Submits an application into the earliest open batch whose deadline has not passed (§15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitApplication {
    pub application_id: String,
    pub submission: Submission,
}

impl Decision for SubmitApplication {
    type State = (ApplicationState, BatchCalendarState);
    type Facts = Facts;
    type Event = ApplicationEvent;
    type Error = DomainError;

    fn subject(&self) -> Result<StreamId, DomainError> {
        streams::application(&self.application_id)
    }
    fn boundary(&self, _: &Histories) -> Result<Vec<StreamId>, DomainError> {
        Ok(vec![streams::batches()?])
    }
    fn state(&self, loaded: &Histories) -> Result<Self::State, CodecError> {
        application_and::<BatchCalendar>(loaded, &self.application_id, streams::batches())
    }
    /// A submission creates its application's stream.
    fn creates_subject(&self) -> bool {
        true
    }
    fn decide(
        &self,
        (state, calendar): &Self::State,
        facts: &Facts,
    ) -> Result<Vec<(StreamId, ApplicationEvent)>, DomainError> {
        if state.status != Status::New {
            return Err(DomainError::ApplicationExists { application: self.application_id.clone() });
        }
        self.submission.validate()?;
        let (batch_id, batch) = calendar.batch_for(facts.today)?;
        let submitted = ApplicationSubmitted {
            application_id: self.application_id.clone(),
            batch_id: batch_id.to_string(),
            batch_deadline: batch.deadline,
            submitted_on: facts.today,
            data_subject_id: Some(DataSubjectId::of_application(&self.application_id)),
            details: self.submission.clone().into(),
        };
        Ok(vec![(self.subject()?, submitted.into())])
    }
}

/// Amends the application while its batch is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmendApplication {
    pub application_id: String,
    pub submission: Submission,
}

impl StreamDecision for AmendApplication {
    type Aggregate = Application;
    type Facts = Facts;
    type Error = DomainError;

    fn stream(&self) -> Result<StreamId, DomainError> {
        streams::application(&self.application_id)
    }
    fn decide(&self, state: &ApplicationState, facts: &Facts) -> Events {
        state.open(&self.application_id, "amend", &[Status::Submitted])?;
        within_deadline(state, facts.today, "amended")?;
        self.submission.validate()?;
        let details: ApplicationDetails = self.submission.clone().into();
        // Sealed personal text cannot be compared with the plaintext of a new amendment: an
        // amendment is refused as identical only when the personal fields on record are
        // plaintext (stored before sealing, or not yet sealed); otherwise it is recorded.
        if state.submission.as_ref() == Some(&details) {
            return Err(DomainError::NoChange("the amendment is identical to the application".into()));
        }
        let data_subject_id = Some(DataSubjectId::of_application(&self.application_id));
        Ok(vec![ApplicationAmended { amended_on: facts.today, data_subject_id, details }.into()])
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithdrawApplication {
    pub application_id: String,
    pub reason: String,
}

impl StreamDecision for WithdrawApplication {
    type Aggregate = Application;
    type Facts = Facts;
    type Error = DomainError;

    fn stream(&self) -> Result<StreamId, DomainError> {
        streams::application(&self.application_id)
    }
    fn decide(&self, state: &ApplicationState, facts: &Facts) -> Events {
        state.open(&self.application_id, "withdraw", &[Status::Submitted])?;
        within_deadline(state, facts.today, "withdrawn")?;
        Ok(vec![ApplicationWithdrawn { reason: self.reason.clone(), withdrawn_on: facts.today }.into()])
    }
}

/// The intake officer's eligibility check (§11, §13 footnote 6), by the acting principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckEligibility {
    pub application_id: String,
}

impl StreamDecision for CheckEligibility {
    type Aggregate = Application;
    type Facts = Facts;
    type Error = DomainError;

    fn stream(&self) -> Result<StreamId, DomainError> {
        streams::application(&self.application_id)
    }
    fn decide(&self, state: &ApplicationState, facts: &Facts) -> Events {
        if matches!(state.status, Status::Eligible | Status::Ineligible) {
            return Err(DomainError::NoChange(format!("eligibility was already ruled: {}", state.status.as_str())));
        }
        state.open(&self.application_id, "check the eligibility of", &[Status::Submitted])?;
        let reasons = state.submission.as_ref().map(ApplicationDetails::ineligibility).unwrap_or_default();
        let (checked_by, checked_on) = (facts.actor.clone(), facts.today);
        Ok(vec![if reasons.is_empty() {
            EligibilityConfirmed { checked_by, checked_on }.into()
        } else {
            RuledIneligible { checked_by, checked_on, reasons }.into()
        }])
    }
}

/// Cyberport's preliminary assessment (§13 a–d), by the acting assessor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordAssessment {
    pub application_id: String,
    pub scores: Scores,
    pub recommended_rate: RateBps,
    pub recommended_ceiling: Money,
    pub duration_months: u32,
    pub conditions: Vec<String>,
    pub no_conflict_declared: bool,
}

impl Scores {
    fn validate(&self) -> Result<u32, DomainError> {
        let all = [
            ('a', self.a_meets_hong_kong_needs),
            ('b', self.b_requirement_reasonable),
            ('c', self.c_feasibility_and_outcome),
            ('d', self.d_capability),
        ];
        for (criterion, score) in all {
            if score > 10 {
                return Err(DomainError::ScoreOutOfRange { criterion, score });
            }
        }
        Ok(all.iter().map(|(_, score)| u32::from(*score)).sum())
    }
}

impl StreamDecision for RecordAssessment {
    type Aggregate = Application;
    type Facts = Facts;
    type Error = DomainError;

    fn stream(&self) -> Result<StreamId, DomainError> {
        streams::application(&self.application_id)
    }
    fn decide(&self, state: &ApplicationState, facts: &Facts) -> Events {
        state.open(&self.application_id, "assess", &[Status::Eligible])?;
        if !self.no_conflict_declared {
            return Err(DomainError::ConflictOfInterestNotDeclared);
        }
        let total_score = self.scores.validate()?;
        if self.recommended_rate > RateBps::EXCEPTIONAL_CAP {
            return Err(DomainError::RateAboveCeiling { rate: self.recommended_rate.to_string() });
        }
        if self.duration_months == 0 || self.duration_months > 36 {
            return Err(DomainError::InvalidInput {
                field: "duration_months",
                reason: "1 to 36 months (a three-year scheme)".into(),
            });
        }
        Ok(vec![
            AssessmentRecorded {
                assessed_on: facts.today,
                assessor: facts.actor.clone(),
                scores: self.scores,
                total_score,
                recommended_rate: self.recommended_rate,
                recommended_ceiling: self.recommended_ceiling,
                duration_months: self.duration_months,
                conditions: self.conditions.clone(),
                no_conflict_declared: self.no_conflict_declared,
            }
            .into(),
        ])
    }
}

/// The committee meeting a decision was taken at, as the secretariat records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitteeMeeting {
    pub meeting_reference: String,
    pub decided_on: NaiveDate,
    pub members_present: Vec<String>,
    pub members_recused: Vec<String>,
}

impl CommitteeMeeting {
    /// Separation of duties, quorum and dates. The assessor may not record the decision nor be
    /// counted among the members present; a recused member is not counted as present; a
    /// quorum of members who may decide must be present; the batch is closed; the decision is
    /// dated on or after the batch's deadline and not after today.
    ///
    /// Reading: the paper names no quorum; three members present without conflict gives
    /// "recused members are not counted as present" its meaning. An application has one
    /// assessor (the one who recorded its preliminary assessment, §13).
    fn check(&self, state: &ApplicationState, batch: &Batch, facts: &Facts) -> Result<(), DomainError> {
        if self.meeting_reference.trim().is_empty() {
            return Err(DomainError::InvalidInput {
                field: "meeting_reference",
                reason: "name the committee meeting".into(),
            });
        }
        if state.assessor.as_deref() == Some(facts.actor.as_str()) {
            return Err(DomainError::AssessorCannotDecide { actor: facts.actor.clone() });
        }
        if let Some(assessor) = state.assessor.as_ref().filter(|assessor| self.members_present.contains(assessor)) {
            return Err(DomainError::AssessorCountedPresent { member: assessor.clone() });
        }
        if let Some(member) = self.members_present.iter().find(|member| self.members_recused.contains(member)) {
            return Err(DomainError::RecusedMemberCountedPresent { member: member.clone() });
        }
        let mut present: Vec<&String> = self.members_present.iter().collect();
        present.sort();
        present.dedup();
        if present.len() < QUORUM {
            return Err(DomainError::QuorumNotMet { present: present.len(), required: QUORUM });
        }
        let batch_id = state.batch_id.clone().unwrap_or_default();
        if !batch.closed {
            return Err(DomainError::BatchStillOpen { batch: batch_id });
        }
        if self.decided_on > facts.today {
            return Err(DomainError::DateInFuture {
                what: "the committee's decision",
                date: self.decided_on,
                today: facts.today,
            });
        }
        if self.decided_on < batch.deadline {
            return Err(DomainError::DecidedBeforeDeadline {
                decided_on: self.decided_on,
                batch: batch_id,
                deadline: batch.deadline,
            });
        }
        Ok(())
    }

    fn record(&self, recorded_by: &str) -> CommitteeRecord {
        CommitteeRecord {
            recorded_by: recorded_by.to_string(),
            meeting_reference: self.meeting_reference.clone(),
            decided_on: self.decided_on,
            members_present: self.members_present.clone(),
            members_recused: self.members_recused.clone(),
        }
    }
}

/// The application's batch, which must be in the calendar.
fn batch_of<'a>(state: &ApplicationState, calendar: &'a BatchCalendarState) -> Result<&'a Batch, DomainError> {
    calendar.get(state.batch_id.as_deref().unwrap_or_default())
}

/// The committee's rejection, with its reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectApplication {
    pub application_id: String,
    pub meeting: CommitteeMeeting,
    pub reasons: Vec<String>,
}

impl Decision for RejectApplication {
    type State = (ApplicationState, BatchCalendarState);
    type Facts = Facts;
    type Event = ApplicationEvent;
    type Error = DomainError;

    fn subject(&self) -> Result<StreamId, DomainError> {
        streams::application(&self.application_id)
    }
    fn boundary(&self, _: &Histories) -> Result<Vec<StreamId>, DomainError> {
        Ok(vec![streams::batches()?])
    }
    fn state(&self, loaded: &Histories) -> Result<Self::State, CodecError> {
        application_and::<BatchCalendar>(loaded, &self.application_id, streams::batches())
    }
    fn decide(
        &self,
        (state, calendar): &Self::State,
        facts: &Facts,
    ) -> Result<Vec<(StreamId, ApplicationEvent)>, DomainError> {
        state.open(&self.application_id, "decide on", &[Status::Assessed, Status::Deferred])?;
        self.meeting.check(state, batch_of(state, calendar)?, facts)?;
        if self.reasons.iter().all(|reason| reason.trim().is_empty()) {
            return Err(DomainError::InvalidInput {
                field: "reasons",
                reason: "record why the application is rejected".into(),
            });
        }
        let rejected =
            ApplicationRejected { committee: self.meeting.record(&facts.actor), reasons: self.reasons.clone() };
        Ok(vec![(self.subject()?, rejected.into())])
    }
}

/// The committee's deferral to a later open batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeferApplication {
    pub application_id: String,
    pub meeting: CommitteeMeeting,
    pub reason: String,
    pub to_batch_id: String,
}

impl Decision for DeferApplication {
    type State = (ApplicationState, BatchCalendarState);
    type Facts = Facts;
    type Event = ApplicationEvent;
    type Error = DomainError;

    fn subject(&self) -> Result<StreamId, DomainError> {
        streams::application(&self.application_id)
    }
    fn boundary(&self, _: &Histories) -> Result<Vec<StreamId>, DomainError> {
        Ok(vec![streams::batches()?])
    }
    fn state(&self, loaded: &Histories) -> Result<Self::State, CodecError> {
        application_and::<BatchCalendar>(loaded, &self.application_id, streams::batches())
    }
    fn decide(
        &self,
        (state, calendar): &Self::State,
        facts: &Facts,
    ) -> Result<Vec<(StreamId, ApplicationEvent)>, DomainError> {
        state.open(&self.application_id, "decide on", &[Status::Assessed, Status::Deferred])?;
        self.meeting.check(state, batch_of(state, calendar)?, facts)?;
        let later = calendar.get(&self.to_batch_id)?;
        if later.closed || Some(later.deadline) <= state.batch_deadline {
            return Err(DomainError::InvalidInput {
                field: "to_batch_id",
                reason: format!("{} is not a later open batch", self.to_batch_id),
            });
        }
        let deferred = ApplicationDeferred {
            committee: self.meeting.record(&facts.actor),
            reason: self.reason.clone(),
            to_batch_id: self.to_batch_id.clone(),
            to_batch_deadline: later.deadline,
        };
        Ok(vec![(self.subject()?, deferred.into())])
    }
}

/// The committee's approval (§12–§13): reserves the ceiling in the funding years where the
/// allocated work falls and allocates AISC capacity, together with the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApproveApplication {
    pub application_id: String,
    pub meeting: CommitteeMeeting,
    pub rate: RateBps,
    pub exceptional_reason: Option<String>,
    pub allocations: Vec<Allocation>,
    /// At most the subsidy of the allocated units; that amount when omitted.
    pub ceiling: Option<Money>,
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub conditions: Vec<String>,
}

/// What an approval decides on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApprovalState {
    pub application: ApplicationState,
    pub calendar: BatchCalendarState,
    pub prices: PriceScheduleState,
    pub budgets: BTreeMap<FinancialYear, FundingYearState>,
    pub capacity: CapacityState,
}

/// The longest approved period: the scheme runs three years.
const MAX_PROJECT_MONTHS: u32 = 36;

impl ApproveApplication {
    /// The financial years the allocated months fall in.
    fn years(&self) -> Vec<FinancialYear> {
        let years: std::collections::BTreeSet<FinancialYear> = self
            .allocations
            .iter()
            .map(|allocation| FinancialYear::containing(allocation.period.first_day()))
            .collect();
        years.into_iter().collect()
    }

    /// The subsidy of the allocated units at the rate in force for each service and month and
    /// the approved rate, per financial year, in ten-thousandths of a cent (unrounded).
    fn allocation_subsidy(&self, prices: &PriceScheduleState) -> Result<BTreeMap<FinancialYear, i128>, DomainError> {
        let mut by_year: BTreeMap<FinancialYear, i128> = BTreeMap::new();
        for allocation in &self.allocations {
            let month = allocation.period.first_day();
            let rate_in_force = prices.rate_in_force(&allocation.service_type, month)?;
            let subsidy = subsidy_of_units(allocation.units, rate_in_force, self.rate)?;
            let total = by_year.entry(FinancialYear::containing(month)).or_default();
            *total = total.checked_add(subsidy).ok_or(DomainError::AmountOverflow)?;
        }
        Ok(by_year)
    }

    fn check_terms(&self) -> Result<(), DomainError> {
        if self.rate > RateBps::EXCEPTIONAL_CAP {
            return Err(DomainError::RateAboveCeiling { rate: self.rate.to_string() });
        }
        if self.rate > RateBps::NORMAL_CAP {
            match &self.exceptional_reason {
                None => return Err(DomainError::RateNeedsExceptionalCase { rate: self.rate.to_string() }),
                Some(reason) if reason.trim().is_empty() => return Err(DomainError::ExceptionalWithoutReason),
                Some(_) => {}
            }
        }
        if self.start > self.end {
            return Err(DomainError::DatesReversed {
                first: "start",
                first_date: self.start,
                second: "end",
                second_date: self.end,
            });
        }
        if self.start.checked_add_months(chrono::Months::new(MAX_PROJECT_MONTHS)).is_none_or(|limit| self.end >= limit)
        {
            return Err(DomainError::InvalidInput {
                field: "end",
                reason: format!("an approved period runs at most {MAX_PROJECT_MONTHS} months (a three-year scheme)"),
            });
        }
        if self.ceiling.is_some_and(|ceiling| ceiling.cents() <= 0) {
            return Err(DomainError::InvalidInput { field: "ceiling", reason: "must be positive".into() });
        }
        if self.allocations.is_empty() {
            return Err(DomainError::InvalidInput {
                field: "allocations",
                reason: "allocate at least one service".into(),
            });
        }
        let (first, last) = (Period::of(self.start), Period::of(self.end));
        if let Some(outside) = self.allocations.iter().find(|a| a.period < first || a.period > last || a.units == 0) {
            return Err(DomainError::InvalidInput {
                field: "allocations",
                reason: format!(
                    "{} units of {} in {} fall outside the approved period or are zero",
                    outside.units, outside.service_type, outside.period
                ),
            });
        }
        Ok(())
    }
}

impl Decision for ApproveApplication {
    type State = ApprovalState;
    type Facts = Facts;
    type Event = SchemeEvent;
    type Error = DomainError;

    fn subject(&self) -> Result<StreamId, DomainError> {
        streams::application(&self.application_id)
    }
    fn boundary(&self, _: &Histories) -> Result<Vec<StreamId>, DomainError> {
        let mut boundary = vec![streams::batches()?, streams::prices()?, streams::capacity()?];
        for year in self.years() {
            boundary.push(streams::budget(year)?);
        }
        Ok(boundary)
    }
    fn state(&self, loaded: &Histories) -> Result<ApprovalState, CodecError> {
        let (application, calendar) =
            application_and::<BatchCalendar>(loaded, &self.application_id, streams::batches())?;
        let mut budgets = BTreeMap::new();
        for year in self.years() {
            if let Ok(stream) = streams::budget(year) {
                budgets.insert(year, loaded.state::<FundingYear>(&stream)?);
            }
        }
        let prices = match streams::prices() {
            Ok(stream) => loaded.state::<PriceSchedule>(&stream)?,
            Err(_) => PriceScheduleState::default(),
        };
        let capacity = match streams::capacity() {
            Ok(stream) => loaded.state::<Capacity>(&stream)?,
            Err(_) => CapacityState::default(),
        };
        Ok(ApprovalState { application, calendar, prices, budgets, capacity })
    }
    fn decide(&self, inputs: &ApprovalState, facts: &Facts) -> SchemeEvents {
        let state = &inputs.application;
        state.open(&self.application_id, "decide on", &[Status::Assessed, Status::Deferred])?;
        self.meeting.check(state, batch_of(state, &inputs.calendar)?, facts)?;
        self.check_terms()?;
        let by_year = self.allocation_subsidy(&inputs.prices)?;
        let total = by_year.values().try_fold(0_i128, |total, year| total.checked_add(*year));
        let allocation_subsidy = money_from_subsidy_units(total.ok_or(DomainError::AmountOverflow)?)?;
        let ceiling = self.ceiling.unwrap_or(allocation_subsidy);
        if ceiling > allocation_subsidy {
            return Err(DomainError::CeilingAboveAllocation {
                ceiling: ceiling.to_string(),
                allocation_subsidy: allocation_subsidy.to_string(),
            });
        }
        if ceiling.cents() <= 0 {
            return Err(DomainError::InvalidInput {
                field: "ceiling",
                reason: "the allocated units carry no subsidy: allocate units".into(),
            });
        }
        let application_id = state.id();
        let reservations = reservations(ceiling, &by_year)?;
        let mut budget_events = Vec::with_capacity(reservations.len());
        for reservation in &reservations {
            let budget = inputs.budgets.get(&reservation.year).cloned().unwrap_or_default();
            let committed = funding::commit(
                &budget,
                reservation.year,
                application_id,
                reservation.amount,
                self.meeting.decided_on,
            )?;
            budget_events.push((streams::budget(reservation.year)?, SchemeEvent::from(committed)));
        }
        let capacity_stream = streams::capacity()?;
        let allocated = capacity::allocate(&inputs.capacity, application_id, &self.allocations)?;
        let approved = ApplicationApproved {
            committee: self.meeting.record(&facts.actor),
            terms: ApprovedTerms {
                rate: self.rate,
                exceptional_reason: self.exceptional_reason.clone(),
                allocations: self.allocations.clone(),
                ceiling,
                start: self.start,
                end: self.end,
                conditions: self.conditions.clone(),
                reservations,
            },
        };
        let mut events = vec![(self.subject()?, SchemeEvent::from(ApplicationEvent::from(approved)))];
        events.extend(budget_events);
        events.extend(allocated.into_iter().map(|event| (capacity_stream.clone(), SchemeEvent::from(event))));
        Ok(events)
    }
}

/// Splits the ceiling across the financial years in proportion to the subsidy of the units
/// allocated in each year's months (Government funds each year separately, §16, §23). Every
/// year but the last takes its share rounded up to the cent, but never more than the subsidy
/// of its own units (so a ceiling equal to the allocation's subsidy reserves each year exactly
/// what its units can draw, and no charge within the allocation is refused for a cent); the
/// last year takes the rest, so the parts add up to the ceiling exactly. A year whose share
/// is nothing reserves nothing.
fn reservations(
    ceiling: Money,
    subsidy_by_year: &BTreeMap<FinancialYear, i128>,
) -> Result<Vec<Reservation>, DomainError> {
    let total = subsidy_by_year
        .values()
        .try_fold(0_i128, |total, year| total.checked_add(*year))
        .ok_or(DomainError::AmountOverflow)?
        .max(1);
    let cents = i128::from(ceiling.cents());
    let share = |subsidy: i128, round_up: bool| -> Result<i64, DomainError> {
        let scaled = cents.checked_mul(subsidy).ok_or(DomainError::AmountOverflow)?;
        let mut amount = scaled / total + i128::from(round_up && scaled % total != 0);
        if round_up {
            amount = amount.min(subsidy / 10_000);
        }
        i64::try_from(amount).map_err(|_| DomainError::AmountOverflow)
    };
    let years: Vec<(FinancialYear, i128)> = subsidy_by_year.iter().map(|(year, subsidy)| (*year, *subsidy)).collect();
    let Some((last, earlier)) = years.split_last() else { return Ok(Vec::new()) };
    let mut amounts = earlier.iter().map(|(_, subsidy)| share(*subsidy, true)).collect::<Result<Vec<_>, _>>()?;
    if amounts.iter().sum::<i64>() > ceiling.cents() {
        // A ceiling far below the allocation: plain shares rounded down always fit.
        amounts = earlier.iter().map(|(_, subsidy)| share(*subsidy, false)).collect::<Result<Vec<_>, _>>()?;
    }
    amounts.push(ceiling.cents() - amounts.iter().sum::<i64>());
    Ok(earlier
        .iter()
        .chain(std::iter::once(last))
        .zip(amounts)
        .filter(|(_, amount)| *amount > 0)
        .map(|((year, _), amount)| Reservation { year: *year, amount: Money::from_cents(amount) })
        .collect())
}

/// The signed funding agreement and its reporting schedule (§21).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignAgreement {
    pub application_id: String,
    pub signed_on: NaiveDate,
    pub reporting_due_dates: Vec<NaiveDate>,
}

impl StreamDecision for SignAgreement {
    type Aggregate = Application;
    type Facts = Facts;
    type Error = DomainError;

    fn stream(&self) -> Result<StreamId, DomainError> {
        streams::application(&self.application_id)
    }
    fn decide(&self, state: &ApplicationState, facts: &Facts) -> Events {
        state.open(&self.application_id, "sign the agreement of", &[Status::Approved])?;
        let approval = state.approval.as_ref().ok_or(DomainError::AgreementNotSigned)?;
        if self.signed_on > facts.today {
            return Err(DomainError::DateInFuture { what: "the agreement", date: self.signed_on, today: facts.today });
        }
        if let Some(decided_on) = state.decided_on.filter(|decided_on| self.signed_on < *decided_on) {
            return Err(DomainError::SignedBeforeDecision { signed_on: self.signed_on, decided_on });
        }
        let mut reporting_due_dates = self.reporting_due_dates.clone();
        reporting_due_dates.sort();
        reporting_due_dates.dedup();
        if reporting_due_dates.is_empty() {
            return Err(DomainError::InvalidInput {
                field: "reporting_due_dates",
                reason: "an agreement requires regular progress reports (§21)".into(),
            });
        }
        if let Some(first) = reporting_due_dates.first()
            && *first <= approval.start
        {
            return Err(DomainError::DatesReversed {
                first: "project start",
                first_date: approval.start,
                second: "first report due",
                second_date: *first,
            });
        }
        Ok(vec![AgreementSigned { signed_on: self.signed_on, reporting_due_dates }.into()])
    }
}

/// A month's usage of one service, charged at the rate in force for the month (the price
/// schedule's, read) and paid from the funding year of the usage month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeUsage {
    pub application_id: String,
    pub usage_id: String,
    /// The bulk import this charge is a line of; `None` for a charge recorded on its own.
    pub import_id: Option<String>,
    pub service_type: ServiceType,
    pub period: Period,
    pub units: u64,
}

impl ChargeUsage {
    pub fn financial_year(&self) -> FinancialYear {
        FinancialYear::containing(self.period.first_day())
    }

    /// The charge: pure, shared with the bulk import. The subsidy is paid from what the
    /// application reserved in the usage month's financial year at approval, so the decision
    /// needs the application alone (and the price schedule, read).
    pub fn charge(
        &self,
        state: &ApplicationState,
        prices: &PriceScheduleState,
        today: NaiveDate,
    ) -> Result<UsageCharged, DomainError> {
        if state.status == Status::New {
            return Err(DomainError::UnknownApplication { application: self.application_id.clone() });
        }
        // The rate is looked up first: a service without a rate is refused as such, whatever the
        // application's stage.
        let rate_in_force = prices.rate_in_force(&self.service_type, self.period.first_day())?;
        if state.status == Status::Approved {
            return Err(DomainError::AgreementNotSigned);
        }
        state.open(&self.application_id, "charge usage to", &[Status::AgreementSigned])?;
        let approval = state.approval.as_ref().ok_or(DomainError::AgreementNotSigned)?;
        if state.usage.contains(&self.usage_id) {
            return Err(DomainError::NoChange(format!("usage {} is already charged", self.usage_id)));
        }
        if self.units == 0 {
            return Err(DomainError::InvalidInput { field: "units", reason: "must be positive".into() });
        }
        if self.period.first_day() > today {
            return Err(DomainError::UsageMonthNotBegun { period: self.period.to_string(), today });
        }
        if let Some(due) = state.overdue_report(today) {
            return Err(DomainError::ProgressReportOverdue { due });
        }
        if self.period < Period::of(approval.start) || self.period > Period::of(approval.end) {
            return Err(DomainError::UsageOutsideApprovedPeriod {
                period: self.period.to_string(),
                start: approval.start,
                end: approval.end,
            });
        }
        let allocated: u64 = approval
            .allocations
            .iter()
            .filter(|a| a.service_type == self.service_type && a.period == self.period)
            .map(|a| a.units)
            .sum();
        let used = state.units_used(&self.service_type, self.period);
        if used.saturating_add(self.units) > allocated {
            return Err(DomainError::UnitsAboveAllocation {
                service_type: self.service_type.to_string(),
                requested: self.units,
                allocated,
                used,
            });
        }
        let (gross, subsidy) = subsidy_for(self.units, rate_in_force, approval.rate)?;
        let disbursed_total = state.disbursed.checked_add(subsidy)?;
        if disbursed_total > approval.ceiling {
            return Err(DomainError::CeilingExceeded {
                requested: subsidy.to_string(),
                ceiling: approval.ceiling.to_string(),
                disbursed: state.disbursed.to_string(),
            });
        }
        let year = self.financial_year();
        let reserved = approval
            .reservations
            .iter()
            .filter(|reservation| reservation.year == year)
            .try_fold(Money::ZERO, |total, reservation| total.checked_add(reservation.amount))?;
        let disbursed_in_year = state.usage.disbursed_by_year().get(&year).copied().unwrap_or_default();
        if disbursed_in_year.checked_add(subsidy)? > reserved {
            return Err(DomainError::YearReservationExceeded {
                year: year.to_string(),
                requested: subsidy.to_string(),
                reserved: reserved.to_string(),
                disbursed: disbursed_in_year.to_string(),
            });
        }
        let charged = UsageCharged {
            usage_id: self.usage_id.clone(),
            import_id: self.import_id.clone(),
            service_type: self.service_type.clone(),
            period: self.period,
            units: self.units,
            rate_per_unit: rate_in_force,
            gross,
            subsidy_rate: approval.rate,
            subsidy,
            financial_year: self.financial_year(),
            disbursed_total,
            ceiling_left: approval.ceiling.checked_sub(disbursed_total)?,
        };
        Ok(charged)
    }
}

impl Decision for ChargeUsage {
    type State = (ApplicationState, PriceScheduleState);
    type Facts = Facts;
    type Event = ApplicationEvent;
    type Error = DomainError;

    fn subject(&self) -> Result<StreamId, DomainError> {
        streams::application(&self.application_id)
    }
    /// The price schedule is read, not written: charges on different applications never
    /// contend for a stream.
    fn boundary(&self, _: &Histories) -> Result<Vec<StreamId>, DomainError> {
        Ok(vec![streams::prices()?])
    }
    fn state(&self, loaded: &Histories) -> Result<Self::State, CodecError> {
        application_and::<PriceSchedule>(loaded, &self.application_id, streams::prices())
    }
    fn decide(
        &self,
        (state, prices): &Self::State,
        facts: &Facts,
    ) -> Result<Vec<(StreamId, ApplicationEvent)>, DomainError> {
        let charged = self.charge(state, prices, facts.today)?;
        Ok(vec![(self.subject()?, charged.into())])
    }
}

/// Reverses a disbursement: a correction is a new event, never an edit. It returns the
/// subsidy to what the application holds in the line's financial year; the year's totals are
/// the read model's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReverseDisbursement {
    pub application_id: String,
    pub usage_id: String,
    pub reason: String,
}

impl StreamDecision for ReverseDisbursement {
    type Aggregate = Application;
    type Facts = Facts;
    type Error = DomainError;

    fn stream(&self) -> Result<StreamId, DomainError> {
        streams::application(&self.application_id)
    }
    fn decide(&self, state: &ApplicationState, facts: &Facts) -> Events {
        state.open(&self.application_id, "reverse a disbursement of", &[Status::AgreementSigned])?;
        let line = state
            .usage
            .get(&self.usage_id)
            .ok_or_else(|| DomainError::UnknownUsage { usage: self.usage_id.clone() })?;
        if line.reversed {
            return Err(DomainError::AlreadyReversed { usage: self.usage_id.clone() });
        }
        if self.reason.trim().is_empty() {
            return Err(DomainError::InvalidInput {
                field: "reason",
                reason: "record why the disbursement is reversed".into(),
            });
        }
        Ok(vec![
            DisbursementReversed {
                reversed_on: facts.today,
                usage_id: self.usage_id.clone(),
                amount: line.subsidy,
                units: line.units,
                reason: self.reason.clone(),
                disbursed_total: state.disbursed.checked_sub(line.subsidy)?,
            }
            .into(),
        ])
    }
}

/// The progress report due on a date, with its KPI figures.
#[derive(Clone, PartialEq, Eq)]
pub struct SubmitProgressReport {
    pub application_id: String,
    pub due: NaiveDate,
    pub kpis: Kpis,
    pub summary: String,
}

impl StreamDecision for SubmitProgressReport {
    type Aggregate = Application;
    type Facts = Facts;
    type Error = DomainError;

    fn stream(&self) -> Result<StreamId, DomainError> {
        streams::application(&self.application_id)
    }
    fn decide(&self, state: &ApplicationState, facts: &Facts) -> Events {
        state.open(&self.application_id, "report on", &[Status::AgreementSigned])?;
        if !state.reporting_due_dates.contains(&self.due) {
            return Err(DomainError::UnknownReport { due: self.due });
        }
        // Reading (§21 sets "regular progress reports" only): the report due on a date covers
        // the project up to that date, or up to its end when the report falls due after it
        // (a final report); it can be submitted once that period has ended, on its last day
        // at the earliest.
        let period_end = state.approval.as_ref().map_or(self.due, |approval| self.due.min(approval.end));
        if facts.today < period_end {
            return Err(DomainError::ReportPeriodNotEnded { due: self.due, period_end, today: facts.today });
        }
        match state.reports.get(&self.due) {
            Some(ReportState::Submitted) => {
                return Err(DomainError::ReportNotAwaiting {
                    due: self.due,
                    state: "been submitted and awaits review",
                });
            }
            Some(ReportState::Accepted) => {
                return Err(DomainError::ReportNotAwaiting { due: self.due, state: "been accepted" });
            }
            Some(ReportState::RevisionRequested) | None => {}
        }
        Ok(vec![
            ProgressReportSubmitted {
                due: self.due,
                kpis: self.kpis.clone(),
                data_subject_id: Some(DataSubjectId::of_application(&self.application_id)),
                summary: PersonalText::Unsealed(self.summary.clone()),
                submitted_on: facts.today,
            }
            .into(),
        ])
    }
}

/// Cyberport's review of a submitted report (§21), by the acting principal.
#[derive(Clone, PartialEq, Eq)]
pub struct ReviewProgressReport {
    pub application_id: String,
    pub due: NaiveDate,
    pub accepted: bool,
    pub comments: String,
}

impl StreamDecision for ReviewProgressReport {
    type Aggregate = Application;
    type Facts = Facts;
    type Error = DomainError;

    fn stream(&self) -> Result<StreamId, DomainError> {
        streams::application(&self.application_id)
    }
    fn decide(&self, state: &ApplicationState, facts: &Facts) -> Events {
        state.open(&self.application_id, "review a report of", &[Status::AgreementSigned, Status::Completed])?;
        match state.reports.get(&self.due) {
            Some(ReportState::Submitted) => {}
            None => return Err(DomainError::UnknownReport { due: self.due }),
            Some(_) => {
                return Err(DomainError::ReportNotAwaiting { due: self.due, state: "no submission awaiting review" });
            }
        }
        if !self.accepted && self.comments.trim().is_empty() {
            return Err(DomainError::InvalidInput { field: "comments", reason: "say what needs revising".into() });
        }
        Ok(vec![
            ProgressReportReviewed {
                reviewed_on: facts.today,
                due: self.due,
                accepted: self.accepted,
                data_subject_id: Some(DataSubjectId::of_application(&self.application_id)),
                comments: PersonalText::Unsealed(self.comments.clone()),
                reviewed_by: facts.actor.clone(),
            }
            .into(),
        ])
    }
}

/// Ends the project, normally (completion) or early (termination, with its reason), releasing
/// what it did not use back to each funding year it reserved in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseProject {
    pub application_id: String,
    pub termination_reason: Option<String>,
}

impl CloseProject {
    fn years(&self, loaded: &Histories) -> Result<Vec<FinancialYear>, CodecError> {
        let Ok(stream) = streams::application(&self.application_id) else { return Ok(Vec::new()) };
        Ok(loaded.state::<Application>(&stream)?.reserved_years())
    }
}

impl Decision for CloseProject {
    type State = (ApplicationState, BTreeMap<FinancialYear, FundingYearState>);
    type Facts = Facts;
    type Event = SchemeEvent;
    type Error = DomainError;

    fn subject(&self) -> Result<StreamId, DomainError> {
        streams::application(&self.application_id)
    }
    fn boundary(&self, loaded: &Histories) -> Result<Vec<StreamId>, DomainError> {
        self.years(loaded).unwrap_or_default().into_iter().map(streams::budget).collect()
    }
    fn state(&self, loaded: &Histories) -> Result<Self::State, CodecError> {
        let application = match streams::application(&self.application_id) {
            Ok(stream) => loaded.state::<Application>(&stream)?,
            Err(_) => ApplicationState::default(),
        };
        let mut budgets = BTreeMap::new();
        for year in application.reserved_years() {
            if let Ok(stream) = streams::budget(year) {
                budgets.insert(year, loaded.state::<FundingYear>(&stream)?);
            }
        }
        Ok((application, budgets))
    }
    fn decide(&self, (state, budgets): &Self::State, facts: &Facts) -> SchemeEvents {
        let terminating = self.termination_reason.is_some();
        state.open(
            &self.application_id,
            if terminating { "terminate" } else { "complete" },
            &[Status::Approved, Status::AgreementSigned],
        )?;
        if let Some(reason) = &self.termination_reason
            && reason.trim().is_empty()
        {
            return Err(DomainError::InvalidInput {
                field: "reason",
                reason: "record why the project is terminated".into(),
            });
        }
        let released = state.unused_reservations();
        let mut budget_events = Vec::with_capacity(released.len());
        for reservation in &released {
            let budget = budgets.get(&reservation.year).cloned().unwrap_or_default();
            let release = funding::release(&budget, state.id(), reservation.amount, facts.today)?;
            budget_events.push((streams::budget(reservation.year)?, SchemeEvent::from(release)));
        }
        let closed: ApplicationEvent = match &self.termination_reason {
            Some(reason) => {
                ApplicationTerminated { reason: reason.clone(), terminated_on: facts.today, released }.into()
            }
            None => ApplicationCompleted { completed_on: facts.today, released }.into(),
        };
        let mut events = vec![(self.subject()?, SchemeEvent::from(closed))];
        events.extend(budget_events);
        Ok(events)
    }
}

// The report's summary and the review's comments are personal: kept out of logs and panics.
impl std::fmt::Debug for SubmitProgressReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubmitProgressReport")
            .field("application_id", &self.application_id)
            .field("due", &self.due)
            .field("kpis", &self.kpis)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ReviewProgressReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReviewProgressReport")
            .field("application_id", &self.application_id)
            .field("due", &self.due)
            .field("accepted", &self.accepted)
            .finish_non_exhaustive()
    }
}
