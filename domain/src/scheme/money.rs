//! Money, rates and service units: integers only, so every figure is exact and replays to the
//! cent years later. Money is whole Hong Kong cents, rates are basis points (7000 = 70 %),
//! service units are whole units of a service (node-hours, core-hours, TB-months).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::{DomainError, ValueError};

/// A non-negative amount of Hong Kong money in cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Money(i64);

impl Money {
    pub const ZERO: Money = Money(0);

    pub fn from_cents(cents: i64) -> Result<Self, ValueError> {
        if cents < 0 { Err(ValueError::NegativeAmount { cents }) } else { Ok(Money(cents)) }
    }

    /// Whole Hong Kong dollars, e.g. a budget line of HK$857 million.
    pub fn from_hkd(dollars: i64) -> Result<Self, ValueError> {
        let cents = dollars.checked_mul(100).ok_or(ValueError::AmountTooLarge { dollars })?;
        Self::from_cents(cents)
    }

    pub fn cents(self) -> i64 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn checked_add(self, other: Money) -> Result<Money, DomainError> {
        self.0.checked_add(other.0).map(Money).ok_or(DomainError::AmountOutOfRange { operation: "addition" })
    }

    /// Refuses to go below zero: an amount of money is never negative.
    pub fn checked_sub(self, other: Money) -> Result<Money, DomainError> {
        match self.0.checked_sub(other.0) {
            Some(cents) if cents >= 0 => Ok(Money(cents)),
            _ => Err(DomainError::AmountOutOfRange { operation: "subtraction" }),
        }
    }

    /// What is left of `self` after `other`, or zero: for "how much is still free" figures.
    pub fn saturating_sub(self, other: Money) -> Money {
        Money(self.0.saturating_sub(other.0).max(0))
    }

    /// The exact sum, or an error if it cannot be held.
    pub fn sum<I: IntoIterator<Item = Money>>(amounts: I) -> Result<Money, DomainError> {
        amounts.into_iter().try_fold(Money::ZERO, Money::checked_add)
    }
}

impl TryFrom<i64> for Money {
    type Error = ValueError;
    fn try_from(cents: i64) -> Result<Self, Self::Error> {
        Self::from_cents(cents)
    }
}

impl From<Money> for i64 {
    fn from(money: Money) -> i64 {
        money.0
    }
}

impl fmt::Display for Money {
    /// `HK$1,234,567.89`: what staff read in messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dollars = (self.0 / 100).to_string();
        let mut grouped = String::with_capacity(dollars.len() + dollars.len() / 3);
        for (index, digit) in dollars.chars().enumerate() {
            if index > 0 && (dollars.len() - index) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        write!(f, "HK${grouped}.{:02}", self.0 % 100)
    }
}

/// A rate in basis points of a service rate: 10 000 is 100 %.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct RateBps(u32);

impl RateBps {
    /// §13: the normal maximum subsidy, 70 % of the service rate.
    pub const NORMAL_CAP: RateBps = RateBps(7_000);
    /// §13: the maximum in special and exceptional cases, 90 % of the service rate.
    pub const EXCEPTIONAL_CAP: RateBps = RateBps(9_000);
    /// §10: subsidised use may take up to 90 % of the AISC's capacity.
    pub const SUBSIDISED_CAPACITY_SHARE: RateBps = RateBps(9_000);
    pub const FULL: RateBps = RateBps(10_000);

    pub fn new(bps: u32) -> Result<Self, ValueError> {
        if bps > 10_000 { Err(ValueError::RateAbove100Percent { bps }) } else { Ok(RateBps(bps)) }
    }

    pub fn bps(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for RateBps {
    type Error = ValueError;
    fn try_from(bps: u32) -> Result<Self, Self::Error> {
        Self::new(bps)
    }
}

impl From<RateBps> for u32 {
    fn from(rate: RateBps) -> u32 {
        rate.0
    }
}

impl fmt::Display for RateBps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02} %", self.0 / 100, self.0 % 100)
    }
}

/// Whole units of an AISC service (node-hours, core-hours, TB-months).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Units(u64);

impl Units {
    pub const ZERO: Units = Units(0);

    pub fn new(units: u64) -> Self {
        Units(units)
    }

    pub fn get(self) -> u64 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn checked_add(self, other: Units) -> Result<Units, DomainError> {
        self.0.checked_add(other.0).map(Units).ok_or(DomainError::AmountOutOfRange { operation: "adding units" })
    }

    pub fn saturating_sub(self, other: Units) -> Units {
        Units(self.0.saturating_sub(other.0))
    }

    /// `share` of these units, rounded down: a cap must never let through a fraction of a unit.
    pub fn share(self, share: RateBps) -> Units {
        let scaled = u128::from(self.0) * u128::from(share.0) / 10_000;
        // The share is at most 100 %, so the result is at most `self` and fits in u64.
        Units(u64::try_from(scaled).unwrap_or(self.0))
    }
}

impl fmt::Display for Units {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The gross charge of a usage line: `units` × `unit_rate` (cents per unit), exactly.
pub fn gross_charge(units: Units, unit_rate: Money) -> Result<Money, DomainError> {
    let cents = i128::from(units.0) * i128::from(unit_rate.0);
    i64::try_from(cents).map(Money).map_err(|_| DomainError::AmountOutOfRange { operation: "gross charge" })
}

/// The subsidy of a usage line: `units` × `unit_rate` (cents per unit) × `rate` / 10 000,
/// rounded half up to the cent.
///
/// The product is computed exactly in 128-bit integers and rounded once, at the end: adding
/// 5 000 before dividing by 10 000 rounds a remainder of exactly half a cent up, and anything
/// less down. Every line is rounded on its own and the disbursement's total is the sum of its
/// rounded lines, so the total always equals what the lines show (no cent appears or vanishes
/// between a line and its total), and the applicant's share of a line is its gross charge
/// less its subsidy, exactly.
pub fn subsidy_for(units: Units, unit_rate: Money, rate: RateBps) -> Result<Money, DomainError> {
    let exact_ten_thousandths = i128::from(units.0) * i128::from(unit_rate.0) * i128::from(rate.0);
    let rounded = (exact_ten_thousandths + 5_000) / 10_000;
    i64::try_from(rounded).map(Money).map_err(|_| DomainError::AmountOutOfRange { operation: "subsidy" })
}

/// `amount` × `numerator` / `denominator`, rounded down: one year's share of a ceiling.
pub(crate) fn pro_rata(amount: Money, numerator: i64, denominator: i64) -> Result<Money, DomainError> {
    if denominator <= 0 || numerator < 0 {
        return Err(DomainError::AmountOutOfRange { operation: "pro rata share" });
    }
    let share = i128::from(amount.0) * i128::from(numerator) / i128::from(denominator);
    i64::try_from(share).map(Money).map_err(|_| DomainError::AmountOutOfRange { operation: "pro rata share" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheme::testing::Lcg;

    fn cents(value: i64) -> Money {
        Money::from_cents(value).expect("cents")
    }

    #[test]
    fn money_is_never_negative_and_reads_as_hong_kong_dollars() {
        assert_eq!(Money::from_cents(-1), Err(ValueError::NegativeAmount { cents: -1 }));
        assert_eq!(Money::from_hkd(857_000_000).expect("857M").to_string(), "HK$857,000,000.00");
        assert_eq!(cents(123_456_789).to_string(), "HK$1,234,567.89");
        assert_eq!(cents(5).to_string(), "HK$0.05");
        assert!(Money::from_hkd(i64::MAX / 10).is_err());
        assert_eq!(serde_json::to_string(&cents(42)).expect("json"), "42");
        assert!(serde_json::from_str::<Money>("-3").is_err(), "deserialising goes through the same rule");
    }

    #[test]
    fn rates_are_basis_points_up_to_100_percent() {
        assert_eq!(RateBps::new(7_000).expect("70 %").to_string(), "70.00 %");
        assert_eq!(RateBps::new(10_001), Err(ValueError::RateAbove100Percent { bps: 10_001 }));
        assert!(serde_json::from_str::<RateBps>("12000").is_err());
        assert_eq!(Units::new(1_001).share(RateBps::SUBSIDISED_CAPACITY_SHARE), Units::new(900), "rounded down");
    }

    #[test]
    fn a_subsidy_rounds_half_up_to_the_cent() {
        let rate = RateBps::new(7_000).expect("rate");
        // 1 unit at 5 cents × 70 % = 3.5 cents → 4 cents.
        assert_eq!(subsidy_for(Units::new(1), cents(5), rate).expect("subsidy"), cents(4));
        // 1 unit at 3 cents × 70 % = 2.1 cents → 2 cents.
        assert_eq!(subsidy_for(Units::new(1), cents(3), rate).expect("subsidy"), cents(2));
        // 3 units at 1 cent × 50 % = 1.5 cents → 2 cents.
        let half = RateBps::new(5_000).expect("rate");
        assert_eq!(subsidy_for(Units::new(3), cents(1), half).expect("subsidy"), cents(2));
        // 1 unit at 1 cent × 49.99 % = 0.4999 cent → 0.
        assert_eq!(subsidy_for(Units::new(1), cents(1), RateBps::new(4_999).expect("rate")).expect("s"), Money::ZERO);
    }

    #[test]
    fn property_checked_money_arithmetic_never_overflows_silently() {
        let mut random = Lcg::new(0x5eed);
        for _ in 0..10_000 {
            let a = cents(random.below(i64::MAX as u64) as i64);
            let b = cents(random.below(i64::MAX as u64) as i64);
            match a.checked_add(b) {
                Ok(sum) => {
                    assert_eq!(i128::from(sum.cents()), i128::from(a.cents()) + i128::from(b.cents()));
                    assert_eq!(sum.checked_sub(b), Ok(a), "subtraction undoes addition");
                }
                Err(error) => {
                    assert!(i128::from(a.cents()) + i128::from(b.cents()) > i128::from(i64::MAX));
                    assert_eq!(error.code(), "amount_out_of_range");
                }
            }
            let difference = a.checked_sub(b);
            assert_eq!(difference.is_ok(), a >= b, "never below zero: {a} - {b}");
        }
    }

    #[test]
    fn property_huge_usage_lines_are_refused_not_wrapped() {
        let mut random = Lcg::new(7);
        for _ in 0..10_000 {
            let units = Units::new(random.below(u64::MAX));
            let unit_rate = cents(random.below(i64::MAX as u64) as i64);
            let rate = RateBps::new(random.below(10_001) as u32).expect("rate");
            let exact = i128::from(units.get()) * i128::from(unit_rate.cents());
            match gross_charge(units, unit_rate) {
                Ok(gross) => assert_eq!(i128::from(gross.cents()), exact),
                Err(error) => {
                    assert!(exact > i128::from(i64::MAX));
                    assert_eq!(error.code(), "amount_out_of_range");
                }
            }
            if let Ok(subsidy) = subsidy_for(units, unit_rate, rate) {
                let scaled = i128::from(subsidy.cents()) * 10_000;
                let exact_scaled = exact * i128::from(rate.bps());
                assert!(scaled - exact_scaled <= 5_000 && exact_scaled - scaled < 5_000, "half-up to the cent");
            }
        }
    }

    #[test]
    fn property_no_cent_is_lost_across_many_lines() {
        let mut random = Lcg::new(2024);
        for _ in 0..200 {
            let rate = RateBps::new(random.below(9_001) as u32).expect("rate");
            let lines: Vec<(Units, Money)> = (0..random.below(500) + 1)
                .map(|_| (Units::new(random.below(100_000)), cents(random.below(500_000) as i64 + 1)))
                .collect();
            let mut total_gross = Money::ZERO;
            let mut total_subsidy = Money::ZERO;
            let mut total_payable = Money::ZERO;
            let mut exact_ten_thousandths: i128 = 0;
            for (units, unit_rate) in &lines {
                let gross = gross_charge(*units, *unit_rate).expect("gross");
                let subsidy = subsidy_for(*units, *unit_rate, rate).expect("subsidy");
                let payable = gross.checked_sub(subsidy).expect("the subsidy never exceeds the charge");
                total_gross = total_gross.checked_add(gross).expect("sum");
                total_subsidy = total_subsidy.checked_add(subsidy).expect("sum");
                total_payable = total_payable.checked_add(payable).expect("sum");
                exact_ten_thousandths += i128::from(gross.cents()) * i128::from(rate.bps());
            }
            assert_eq!(total_subsidy.checked_add(total_payable), Ok(total_gross), "subsidy + share = charge");
            // Rounding each line moves the total by at most half a cent per line.
            let drift = (i128::from(total_subsidy.cents()) * 10_000 - exact_ten_thousandths).abs();
            assert!(drift <= 5_000 * lines.len() as i128, "drift {drift} over {} lines", lines.len());
        }
    }

    #[test]
    fn property_pro_rata_shares_with_the_remainder_add_up_exactly() {
        let mut random = Lcg::new(99);
        for _ in 0..5_000 {
            let amount = cents(random.below(1_000_000_000_000) as i64);
            let parts: Vec<i64> = (0..random.below(4) + 1).map(|_| random.below(400) as i64 + 1).collect();
            let whole: i64 = parts.iter().sum();
            let (last, rest) = parts.split_last().expect("at least one part");
            let shares: Vec<Money> = rest.iter().map(|part| pro_rata(amount, *part, whole).expect("share")).collect();
            let remainder = amount.checked_sub(Money::sum(shares.iter().copied()).expect("sum")).expect("rest");
            assert!(pro_rata(amount, *last, whole).expect("share") <= remainder);
            assert_eq!(Money::sum(shares.into_iter().chain([remainder])), Ok(amount));
        }
    }
}
