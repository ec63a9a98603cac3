//! Value types of the scheme: money in integer HK cents, rates in basis points, financial
//! years, usage periods, applicant categories, service types. Each is parsed once, at the
//! edge, and cannot hold an invalid value.

use std::fmt;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use super::error::DomainError;

/// An amount of Hong Kong dollars in cents. Arithmetic is checked: overflow is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Money(i64);

impl Money {
    pub const ZERO: Money = Money(0);

    pub fn from_cents(cents: i64) -> Money {
        Money(cents)
    }

    /// A non-negative amount, as commands require.
    pub fn non_negative(cents: i64, field: &'static str) -> Result<Money, DomainError> {
        if cents < 0 {
            return Err(DomainError::NegativeAmount { field });
        }
        Ok(Money(cents))
    }

    pub fn cents(self) -> i64 {
        self.0
    }

    pub fn checked_add(self, other: Money) -> Result<Money, DomainError> {
        self.0.checked_add(other.0).map(Money).ok_or(DomainError::AmountOverflow)
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, DomainError> {
        self.0.checked_sub(other.0).map(Money).ok_or(DomainError::AmountOverflow)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // As staff read amounts: HK$5,273,972.61.
        let sign = if self.0 < 0 { "-" } else { "" };
        let cents = self.0.unsigned_abs();
        let digits = (cents / 100).to_string();
        let mut dollars = String::with_capacity(digits.len() + digits.len() / 3);
        for (index, digit) in digits.chars().enumerate() {
            if index > 0 && (digits.len() - index).is_multiple_of(3) {
                dollars.push(',');
            }
            dollars.push(digit);
        }
        write!(f, "{sign}HK${dollars}.{:02}", cents % 100)
    }
}

/// A subsidy rate in basis points of the service rate: 7000 is 70 %.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RateBps(u32);

impl RateBps {
    /// The normal ceiling (§13): 70 % of the service rate.
    pub const NORMAL_CAP: RateBps = RateBps(7_000);
    /// The ceiling for special and exceptional cases (§13): 90 %.
    pub const EXCEPTIONAL_CAP: RateBps = RateBps(9_000);

    pub fn new(bps: u32) -> Result<RateBps, DomainError> {
        if bps == 0 || bps > 10_000 {
            return Err(DomainError::RateOutOfRange { bps });
        }
        Ok(RateBps(bps))
    }

    pub fn bps(self) -> u32 {
        self.0
    }
}

impl fmt::Display for RateBps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02} %", self.0 / 100, self.0 % 100)
    }
}

/// The subsidy of a usage line: units × service rate (cents per unit) × subsidy rate (bps)
/// / 10,000, rounded down to the cent — the scheme pays "up to" the approved share of the
/// rate (§13), never a fraction of a cent above it, and the lines of an allocation never add up
/// to more than the ceiling computed from it ([`subsidy_of_units`]). Computed in checked
/// 128-bit integers; a result beyond what an amount holds is an error, never a wrapped number.
pub fn subsidy_for(units: u64, rate_cents_per_unit: Money, rate: RateBps) -> Result<(Money, Money), DomainError> {
    let gross =
        i128::from(units).checked_mul(i128::from(rate_cents_per_unit.cents())).ok_or(DomainError::AmountOverflow)?;
    let subsidy = gross.checked_mul(i128::from(rate.bps())).ok_or(DomainError::AmountOverflow)? / 10_000;
    let gross = i64::try_from(gross).map_err(|_| DomainError::AmountOverflow)?;
    let subsidy = i64::try_from(subsidy).map_err(|_| DomainError::AmountOverflow)?;
    Ok((Money(gross), Money(subsidy)))
}

/// The subsidy of units at a rate, in ten-thousandths of a cent (units × cents per unit ×
/// basis points), before any rounding: summed over an allocation and then rounded down, it is
/// the most an approval's ceiling may be, and it weighs each financial year's reservation.
pub fn subsidy_of_units(units: u64, rate_cents_per_unit: Money, rate: RateBps) -> Result<i128, DomainError> {
    i128::from(units)
        .checked_mul(i128::from(rate_cents_per_unit.cents()))
        .and_then(|gross| gross.checked_mul(i128::from(rate.bps())))
        .ok_or(DomainError::AmountOverflow)
}

/// Ten-thousandths of a cent rounded down to an amount.
pub fn money_from_subsidy_units(total: i128) -> Result<Money, DomainError> {
    i64::try_from(total.div_euclid(10_000)).map(Money).map_err(|_| DomainError::AmountOverflow)
}

/// A Government financial year, 1 April to 31 March, named like `2025-26`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FinancialYear(i32);

impl FinancialYear {
    pub fn starting(year: i32) -> FinancialYear {
        FinancialYear(year)
    }

    pub fn containing(date: NaiveDate) -> FinancialYear {
        if date.month() >= 4 { FinancialYear(date.year()) } else { FinancialYear(date.year() - 1) }
    }

    pub fn parse(text: &str) -> Result<FinancialYear, DomainError> {
        let invalid = || DomainError::InvalidFinancialYear { text: text.to_string() };
        let (start, end) = text.split_once('-').ok_or_else(invalid)?;
        let start: i32 = start.parse().map_err(|_| invalid())?;
        let end: i32 = end.parse().map_err(|_| invalid())?;
        if !(2000..=2099).contains(&start) || end != (start + 1) % 100 || text.len() != 7 {
            return Err(invalid());
        }
        Ok(FinancialYear(start))
    }

    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.0, 4, 1).unwrap_or(NaiveDate::MIN)
    }

    pub fn last_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.0 + 1, 3, 31).unwrap_or(NaiveDate::MAX)
    }

    pub fn next(self) -> FinancialYear {
        FinancialYear(self.0 + 1)
    }
}

impl fmt::Display for FinancialYear {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{:02}", self.0, (self.0 + 1) % 100)
    }
}

impl TryFrom<String> for FinancialYear {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        FinancialYear::parse(&value)
    }
}

impl From<FinancialYear> for String {
    fn from(value: FinancialYear) -> Self {
        value.to_string()
    }
}

/// A calendar month of usage, `2025-07`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Period {
    year: i32,
    month: u32,
}

impl Period {
    pub fn parse(text: &str) -> Result<Period, DomainError> {
        let invalid = || DomainError::InvalidPeriod { text: text.to_string() };
        let (year, month) = text.split_once('-').ok_or_else(invalid)?;
        let (year, month): (i32, u32) = (year.parse().map_err(|_| invalid())?, month.parse().map_err(|_| invalid())?);
        if !(2000..=2099).contains(&year) || !(1..=12).contains(&month) || text.len() != 7 {
            return Err(invalid());
        }
        Ok(Period { year, month })
    }

    pub fn of(date: NaiveDate) -> Period {
        Period { year: date.year(), month: date.month() }
    }

    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).unwrap_or(NaiveDate::MIN)
    }

    pub fn next(self) -> Period {
        if self.month == 12 {
            Period { year: self.year + 1, month: 1 }
        } else {
            Period { year: self.year, month: self.month + 1 }
        }
    }

    /// Every month from `first` to `last`, both included.
    pub fn range(first: Period, last: Period) -> Vec<Period> {
        let mut months = Vec::new();
        let mut current = first;
        while current <= last && months.len() < 1_200 {
            months.push(current);
            current = current.next();
        }
        months
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{:02}", self.year, self.month)
    }
}

impl TryFrom<String> for Period {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Period::parse(&value)
    }
}

impl From<Period> for String {
    fn from(value: Period) -> Self {
        value.to_string()
    }
}

/// An AISC service a price and capacity are set for: a lower-case name such as
/// `gpu_node_hour_h800`, `cpu_core_hour` or `storage_tb_month` (type and level, §14).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServiceType(String);

impl ServiceType {
    pub fn parse(text: &str) -> Result<ServiceType, DomainError> {
        let valid = !text.is_empty()
            && text.len() <= 64
            && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(DomainError::InvalidServiceType { text: text.to_string() });
        }
        Ok(ServiceType(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ServiceType {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        ServiceType::parse(&value)
    }
}

impl From<ServiceType> for String {
    fn from(value: ServiceType) -> Self {
        value.0
    }
}

/// The eligible applicant categories of §11 (a)–(e).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplicantCategory {
    LocalInstitution,
    RndCentre,
    GovernmentDepartment,
    AiStartup,
    StrategicEnterprise,
}

impl ApplicantCategory {
    pub const ALL: [ApplicantCategory; 5] = [
        ApplicantCategory::LocalInstitution,
        ApplicantCategory::RndCentre,
        ApplicantCategory::GovernmentDepartment,
        ApplicantCategory::AiStartup,
        ApplicantCategory::StrategicEnterprise,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ApplicantCategory::LocalInstitution => "local_institution",
            ApplicantCategory::RndCentre => "rnd_centre",
            ApplicantCategory::GovernmentDepartment => "government_department",
            ApplicantCategory::AiStartup => "ai_startup",
            ApplicantCategory::StrategicEnterprise => "strategic_enterprise",
        }
    }

    /// The sub-types the paper names for the category (§11 and its footnote 5).
    pub fn sub_types(self) -> &'static [&'static str] {
        match self {
            ApplicantCategory::LocalInstitution => {
                &["ugc_funded_university", "self_financing_degree_awarding_institution"]
            }
            ApplicantCategory::RndCentre => {
                &["government_funded_rnd_centre", "innohk_centre", "hkpc", "hk_institute_of_biotechnology"]
            }
            ApplicantCategory::GovernmentDepartment => &["bureau_or_department"],
            ApplicantCategory::AiStartup => {
                &["cyberport_incubatee_or_alumnus", "hkstp_incubatee_or_alumnus", "tsssu", "raise_plus"]
            }
            ApplicantCategory::StrategicEnterprise => &["strategic_enterprise"],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn financial_years_run_april_to_march() {
        let year = FinancialYear::parse("2025-26").expect("valid");
        assert_eq!(year.first_day(), NaiveDate::from_ymd_opt(2025, 4, 1).expect("date"));
        assert_eq!(year.last_day(), NaiveDate::from_ymd_opt(2026, 3, 31).expect("date"));
        assert_eq!(FinancialYear::containing(NaiveDate::from_ymd_opt(2026, 3, 31).expect("d")), year);
        assert_eq!(FinancialYear::containing(NaiveDate::from_ymd_opt(2026, 4, 1).expect("d")), year.next());
        for bad in ["2025-27", "2025", "25-26", "2025-2026", "x-y"] {
            assert!(FinancialYear::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(FinancialYear::parse("2099-00").expect("century").to_string(), "2099-00");
    }

    #[test]
    fn periods_parse_and_range() {
        let first = Period::parse("2025-11").expect("valid");
        let last = Period::parse("2026-02").expect("valid");
        let months: Vec<String> = Period::range(first, last).iter().map(Period::to_string).collect();
        assert_eq!(months, ["2025-11", "2025-12", "2026-01", "2026-02"]);
        assert!(Period::parse("2025-13").is_err() && Period::parse("2025-1").is_err());
    }

    #[test]
    fn subsidy_rounds_down_to_the_cent() {
        let rate = Money::from_cents(333);
        // 3 units × 333 ¢ = 999 ¢; × 70 % = 699.3 ¢ → 699 ¢.
        assert_eq!(subsidy_for(3, rate, RateBps::NORMAL_CAP).expect("ok"), (Money(999), Money(699)));
        // 1 unit × 5 ¢ × 70 % = 3.5 ¢ → 3 ¢: never above 70 % of the rate (§13 "up to").
        assert_eq!(subsidy_for(1, Money(5), RateBps::NORMAL_CAP).expect("ok").1, Money(3));
        // 1 unit × 9 ¢ × 70 % = 6.3 ¢ → 6 ¢, as the exact figure rounded down.
        let exact = subsidy_of_units(1, Money(9), RateBps::NORMAL_CAP).expect("fits");
        assert_eq!(money_from_subsidy_units(exact).expect("fits"), Money(6));
        assert!(subsidy_for(u64::MAX, Money(i64::MAX), RateBps::EXCEPTIONAL_CAP).is_err());
    }

    #[test]
    fn money_arithmetic_is_checked_and_never_loses_a_cent() {
        // A deterministic generator (xorshift): many lines summed two ways agree exactly.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut total = Money::ZERO;
        let mut gross_total: i128 = 0;
        let mut subsidy_total: i128 = 0;
        for _ in 0..10_000 {
            let units = next() % 10_000;
            let rate = Money::from_cents((next() % 100_000) as i64);
            let bps = RateBps::new(1 + (next() % 9_000) as u32).expect("rate");
            let (gross, subsidy) = subsidy_for(units, rate, bps).expect("fits");
            assert!(subsidy <= gross && subsidy.cents() >= 0);
            gross_total += i128::from(gross.cents());
            subsidy_total += i128::from(subsidy.cents());
            total = total.checked_add(subsidy).expect("no overflow");
        }
        assert_eq!(i128::from(total.cents()), subsidy_total);
        assert!(gross_total >= subsidy_total);
        assert_eq!(Money(i64::MAX).checked_add(Money(1)), Err(DomainError::AmountOverflow));
        assert_eq!(Money(i64::MIN).checked_sub(Money(1)), Err(DomainError::AmountOverflow));
        assert_eq!(Money(123_456).to_string(), "HK$1,234.56");
        assert_eq!(Money(527_397_261).to_string(), "HK$5,273,972.61");
        assert_eq!(Money(-100_000_000).to_string(), "-HK$1,000,000.00");
        assert_eq!(Money(5).to_string(), "HK$0.05");
        assert_eq!(Money(99_999).to_string(), "HK$999.99");
    }
}
