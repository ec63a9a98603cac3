//! Fixtures of a small scheme, driven through the real command service: a batch, funding,
//! a GPU price and capacity, and applications at each stage.
#![allow(dead_code)]

use aisc_adapters::personal_data::{KeyEncryptionKey, Vault};
use std::sync::Arc;

use aisc_adapters::{JitteredBackoff, PostgresEventStore, TimeOrderedEventIds};
use aisc_domain::command_service::{CommandMetadata, CommandService, Decision, Written};
use aisc_domain::subsidy::application::{
    ApplicationState, ApproveApplication, ChargeUsage, CheckEligibility, CommitteeMeeting, Contact, RecordAssessment,
    RequestedResource, Scores, Submission, SubmitApplication,
};
use aisc_domain::subsidy::batches::{CloseBatch, OpenBatch};
use aisc_domain::subsidy::capacity::{Allocation, DeclareCapacity};
use aisc_domain::subsidy::funding::{BudgetLine, RecordFundingReceived};
use aisc_domain::subsidy::prices::SetServiceRate;
use aisc_domain::subsidy::service::{SchemeResult, SchemeService};
use aisc_domain::subsidy::values::{ApplicantCategory, FinancialYear, Money, Period, RateBps, ServiceType};
use aisc_domain::subsidy::{DomainError, Facts};
use chrono::NaiveDate;

use super::TestDatabase;

pub type Scheme = SchemeService<PostgresEventStore, TimeOrderedEventIds>;

pub fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("date")
}

pub fn gpu() -> ServiceType {
    ServiceType::parse("gpu_node_hour_h800").expect("service")
}

pub fn period(text: &str) -> Period {
    Period::parse(text).expect("period")
}

pub fn hkd(dollars: i64) -> Money {
    Money::from_cents(dollars * 100)
}

pub fn meta(actor: &str, role: &str) -> CommandMetadata {
    CommandMetadata {
        actor: actor.into(),
        role: role.into(),
        request_id: uuid::Uuid::new_v4().to_string(),
        correlation_id: "lifecycle-test".into(),
        causation_id: None,
    }
}

pub fn submission(title: &str) -> Submission {
    Submission {
        organisation: "The Hong Kong University of Science and Technology".into(),
        category: ApplicantCategory::LocalInstitution,
        sub_type: "ugc_funded_university".into(),
        project_title: title.into(),
        project_summary: "Training a multilingual model for legal documents.".into(),
        develops_ai_models: true,
        requested_resources: vec![RequestedResource {
            service_type: gpu(),
            first_period: period("2025-07"),
            last_period: period("2025-12"),
            units_per_month: 1_000,
        }],
        requested_rate: RateBps::NORMAL_CAP,
        team_size: 10,
        talents: 6,
        mainland_or_overseas_team: true,
        other_government_funding: false,
        undertakings: None,
        contact: Contact { name: "Prof Lee".into(), email: "lee@ust.hk".into() },
    }
}

/// Runs a decision as `actor` in `role` on `today`: the acting principal is both the one the
/// decision records (who checked, assessed, recorded, reviewed) and the events' metadata.
pub async fn act<D>(scheme: &Scheme, decision: &D, actor: &str, role: &str, today: NaiveDate) -> SchemeResult<Written>
where
    D: Decision<Facts = Facts, Error = DomainError>,
{
    scheme.run(decision, &Facts::new(today, actor), None, &meta(actor, role)).await
}

/// The scheme as the server and the command line build it: a conflict without `If-Match` is
/// decided again on fresh state after a jittered, exponentially growing wait.
pub async fn scheme(database: &TestDatabase) -> Scheme {
    let store = PostgresEventStore::new(database.pool.clone());
    SchemeService::new(
        CommandService::new(store, TimeOrderedEventIds)
            .with_backoff(Arc::new(JitteredBackoff::default()))
            .with_sealer(Arc::new(vault(database))),
    )
}

/// The keys of personal data, under the suites' key-encryption key.
pub fn vault(database: &TestDatabase) -> Vault {
    let kek = KeyEncryptionKey::load(std::path::Path::new(super::TEST_KEK_FILE)).expect("the suites' KEK");
    Vault::new(database.pool.clone(), kek)
}

/// A batch, funding for 2025-26, a GPU price and capacity for July to December 2025.
pub async fn set_up(scheme: &Scheme, subsidy: Money) {
    let (admin, role, today) = ("admin-1", "administrator", day(2025, 4, 1));
    let batch = OpenBatch { batch_id: "2025-q2".into(), deadline: day(2025, 5, 31), committee_date: day(2025, 6, 15) };
    act(scheme, &batch, admin, role, today).await.expect("batch");
    let funding = RecordFundingReceived {
        year: FinancialYear::parse("2025-26").expect("year"),
        line: BudgetLine::ComputingPowerSubsidy,
        amount: subsidy,
        received_on: day(2025, 4, 1),
    };
    act(scheme, &funding, "finance-1", "finance_officer", today).await.expect("funding");
    let price = SetServiceRate {
        service_type: gpu(),
        rate_per_unit: Money::from_cents(4_250),
        unit: "node-hour".into(),
        effective_from: day(2025, 4, 1),
    };
    act(scheme, &price, admin, role, today).await.expect("price");
    for month in Period::range(period("2025-07"), period("2025-12")) {
        let capacity = DeclareCapacity { service_type: gpu(), period: month, units: 10_000 };
        act(scheme, &capacity, admin, role, today).await.expect("capacity");
    }
}

/// Submitted and eligible, in batch 2025-q2.
pub async fn submitted(scheme: &Scheme, application_id: &str) {
    let submit = SubmitApplication { application_id: application_id.into(), submission: submission(application_id) };
    act(scheme, &submit, "intake-1", "intake_officer", day(2025, 5, 2)).await.expect("submit");
    let check = CheckEligibility { application_id: application_id.into() };
    act(scheme, &check, "intake-1", "intake_officer", day(2025, 6, 2)).await.expect("eligibility");
}

/// The batch closes and the applications are assessed: ready for the committee.
pub async fn ready_for_committee(scheme: &Scheme, application_ids: &[&str]) {
    let close = CloseBatch { batch_id: "2025-q2".into() };
    act(scheme, &close, "sec-1", "committee_secretariat", day(2025, 6, 1)).await.expect("close");
    assess(scheme, application_ids).await;
}

/// Cyberport's assessment of each application, by assessor-1.
pub async fn assess(scheme: &Scheme, application_ids: &[&str]) {
    for application_id in application_ids {
        let assessment = RecordAssessment {
            application_id: (*application_id).into(),
            scores: Scores {
                a_meets_hong_kong_needs: 8,
                b_requirement_reasonable: 8,
                c_feasibility_and_outcome: 7,
                d_capability: 9,
            },
            recommended_rate: RateBps::NORMAL_CAP,
            recommended_ceiling: hkd(500_000),
            duration_months: 6,
            conditions: vec!["report utilisation monthly".into()],
            no_conflict_declared: true,
        };
        act(scheme, &assessment, "assessor-1", "assessor", day(2025, 6, 5)).await.expect("assessment");
    }
}

/// The committee meeting of batch 2025-q2 (four present, one recused).
pub fn meeting() -> CommitteeMeeting {
    CommitteeMeeting {
        meeting_reference: "AISC-COM-2025-06".into(),
        decided_on: day(2025, 6, 15),
        members_present: vec!["m1".into(), "m2".into(), "m3".into(), "m4".into()],
        members_recused: vec!["m5".into()],
    }
}

/// The day the committee decides, as the facts of its decisions.
pub fn committee_day() -> NaiveDate {
    day(2025, 6, 15)
}

/// The committee's approval of `application_id` at 70 %: 1,000 GPU node-hours a month, July to
/// December 2025 (recorded by sec-1 through [`act`]). Without a `ceiling`, the ceiling is the
/// subsidy of those units: 6,000 × HK$42.50 × 70 % = HK$178,500.00, the most it may be.
pub fn approval(application_id: &str, ceiling: Option<Money>) -> ApproveApplication {
    ApproveApplication {
        application_id: application_id.into(),
        meeting: meeting(),
        rate: RateBps::NORMAL_CAP,
        exceptional_reason: None,
        allocations: Period::range(period("2025-07"), period("2025-12"))
            .into_iter()
            .map(|p| Allocation { service_type: gpu(), period: p, units: 1_000 })
            .collect(),
        ceiling,
        start: day(2025, 7, 1),
        end: day(2025, 12, 31),
        conditions: vec![],
    }
}

/// A month's GPU usage of `application_id` (charged on the day given to [`act`]).
pub fn usage(application_id: &str, usage_id: &str, month: &str, units: u64) -> ChargeUsage {
    ChargeUsage {
        application_id: application_id.into(),
        usage_id: usage_id.into(),
        import_id: None,
        service_type: gpu(),
        period: period(month),
        units,
    }
}

/// The subsidy `state` has disbursed in financial year `year`: its charges of that year's
/// months, less the ones reversed (a funding year's disbursed total is the sum of these over
/// its applications).
pub fn disbursed_in(state: &ApplicationState, year: &str) -> Money {
    let year = FinancialYear::parse(year).expect("year");
    let cents = state
        .usage
        .lines()
        .into_values()
        .filter(|line| line.year == year && !line.reversed)
        .map(|line| line.subsidy.cents());
    Money::from_cents(cents.sum())
}
