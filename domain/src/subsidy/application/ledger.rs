//! What an application has charged, kept compactly: an index of its usage ids with what each
//! charge needs to be reversed, and the running totals its rules read (units per service and
//! month, subsidy per financial year, the bulk-import charges by what they charged). Not the
//! charges' events: an application charged a million lines keeps tens of bytes a line, and a
//! charge is decided in constant time whatever the number of lines before it.
//!
//! Usage ids are kept exactly. An id of the form `{prefix}-{n}` (a decimal `n` without leading
//! zeros: every bulk-import line's id is `{import_id}-{line}`) is kept as its interned prefix
//! and its number; any other id as its text. The split is a bijection, so two ids are the same
//! key exactly when they are the same text.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::Arc;

use serde::{Serialize, Serializer};

use crate::subsidy::values::{FinancialYear, Money, Period, ServiceType};

/// A usage line as charged (units, rate, gross amount and subsidy), and whether it was reversed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChargedUsage {
    /// The bulk import the line was charged by (`None`: charged on its own).
    pub import_id: Option<String>,
    pub service_type: ServiceType,
    pub period: Period,
    pub units: u64,
    pub rate_per_unit: Money,
    pub gross: Money,
    pub subsidy: Money,
    pub year: FinancialYear,
    pub reversed: bool,
}

/// A charge being recorded: what the ledger keeps of a `UsageCharged` event.
#[derive(Debug, Clone, Copy)]
pub struct NewCharge<'a> {
    pub usage_id: &'a str,
    pub import_id: Option<&'a str>,
    pub service_type: &'a ServiceType,
    pub period: Period,
    pub units: u64,
    pub gross: Money,
    pub subsidy: Money,
    pub year: FinancialYear,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum UsageKey {
    Numbered { prefix: u32, number: u32 },
    Named(Box<str>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Charge {
    /// Units × the rate in force, exactly: the rate is the gross over the units.
    gross: Money,
    subsidy: Money,
    units: u64,
    period: Period,
    year: FinancialYear,
    service: u16,
    /// Interned import id.
    import: Option<NonZeroU32>,
    reversed: bool,
}

/// The import charges, not reversed, of one import for one service, month and units: how
/// many, and the smallest line number (their usage ids are `{import_id}-{line}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ImportedUsage {
    count: u32,
    first_line: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageLedger {
    charges: HashMap<UsageKey, Charge>,
    /// Usage-id prefixes and import ids; index 0 is never used, so an interned id is non-zero.
    names: Vec<Arc<str>>,
    name_index: HashMap<Arc<str>, u32>,
    /// The interned ids that are import ids, in the order first seen.
    imports: Vec<u32>,
    services: Vec<ServiceType>,
    units_used: HashMap<(u16, Period), u64>,
    disbursed_by_year: BTreeMap<FinancialYear, Money>,
    imported: HashMap<(u16, Period, u64, u32), ImportedUsage>,
    /// The text of the usage ids kept as text.
    named_bytes: usize,
    /// Import charges whose usage id is not `{import_id}-{line}` (no import writes one; kept
    /// so that such a history would still be decided exactly).
    irregular_imports: Vec<UsageKey>,
}

impl UsageLedger {
    /// Lines charged, reversed ones included.
    pub fn len(&self) -> usize {
        self.charges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.charges.is_empty()
    }

    pub fn contains(&self, usage_id: &str) -> bool {
        self.key_of(usage_id).is_some_and(|key| self.charges.contains_key(&key))
    }

    pub fn get(&self, usage_id: &str) -> Option<ChargedUsage> {
        let key = self.key_of(usage_id)?;
        self.charges.get(&key).and_then(|charge| self.charged_usage(charge))
    }

    /// Every line, by usage id.
    pub fn lines(&self) -> BTreeMap<String, ChargedUsage> {
        self.charges
            .iter()
            .filter_map(|(key, charge)| Some((self.usage_id(key), self.charged_usage(charge)?)))
            .collect()
    }

    /// About how many bytes the ledger holds (its tables at their capacity, and the text of
    /// the usage ids kept as text).
    pub fn approx_bytes(&self) -> usize {
        use std::mem::size_of;
        self.charges.capacity() * (size_of::<UsageKey>() + size_of::<Charge>() + 1)
            + self.named_bytes
            + self.imported.capacity() * (size_of::<(u16, Period, u64, u32)>() + size_of::<ImportedUsage>() + 1)
            + self.units_used.capacity() * (size_of::<(u16, Period)>() + size_of::<u64>() + 1)
            + self.names.iter().map(|name| name.len() + 2 * size_of::<Arc<str>>() + 8).sum::<usize>()
            + self.irregular_imports.capacity() * size_of::<UsageKey>()
    }

    /// Units of a service type charged in a month (reversals excluded).
    pub fn units_used(&self, service_type: &ServiceType, period: Period) -> u64 {
        self.service_index(service_type)
            .and_then(|service| self.units_used.get(&(service, period)).copied())
            .unwrap_or(0)
    }

    /// Subsidy disbursed per financial year (reversals excluded; years with nothing left out).
    pub fn disbursed_by_year(&self) -> &BTreeMap<FinancialYear, Money> {
        &self.disbursed_by_year
    }

    /// A charge that another bulk import than `import_id` made of the same usage (same
    /// service, month and units, not reversed), as `(usage id, import id)`: the first by usage
    /// id when several did.
    pub fn charged_by_another_import(
        &self,
        import_id: &str,
        service_type: &ServiceType,
        period: Period,
        units: u64,
    ) -> Option<(String, String)> {
        let service = self.service_index(service_type)?;
        let this_import = self.name_index.get(import_id).copied();
        let numbered = self.imports.iter().filter(|import| Some(**import) != this_import).filter_map(|import| {
            let found = self.imported.get(&(service, period, units, *import))?;
            (found.count > 0).then_some(UsageKey::Numbered { prefix: *import, number: found.first_line })
        });
        let irregular = self.irregular_imports.iter().filter(|key| {
            self.charges.get(key).is_some_and(|charge| {
                !charge.reversed
                    && charge.import.map(NonZeroU32::get) != this_import
                    && charge.service == service
                    && charge.period == period
                    && charge.units == units
            })
        });
        numbered
            .chain(irregular.cloned())
            .filter_map(|key| {
                let import = self.charges.get(&key)?.import?;
                Some((self.usage_id(&key), self.name(import.get()).to_string()))
            })
            .min()
    }

    /// Records a charge. A usage id already charged is left as it is (a decision never charges
    /// one twice).
    pub fn record(&mut self, new: NewCharge<'_>) {
        let key = self.intern_key(new.usage_id);
        if self.charges.contains_key(&key) {
            return;
        }
        let service = self.intern_service(new.service_type);
        let import = new.import_id.map(|import_id| {
            let interned = self.intern(import_id);
            if !self.imports.contains(&interned) {
                self.imports.push(interned);
            }
            interned
        });
        let charge = Charge {
            gross: new.gross,
            subsidy: new.subsidy,
            units: new.units,
            period: new.period,
            year: new.year,
            service,
            import: import.and_then(NonZeroU32::new),
            reversed: false,
        };
        self.count(&key, &charge, true);
        if let UsageKey::Named(text) = &key {
            self.named_bytes += text.len();
        }
        self.charges.insert(key, charge);
    }

    /// Marks a charge reversed; its units and subsidy no longer count. Unknown or already
    /// reversed ids change nothing.
    pub fn reverse(&mut self, usage_id: &str) {
        let Some(key) = self.key_of(usage_id) else { return };
        let Some(charge) = self.charges.get(&key).copied().filter(|charge| !charge.reversed) else { return };
        self.count(&key, &charge, false);
        if let Some(kept) = self.charges.get_mut(&key) {
            kept.reversed = true;
        }
    }

    /// Forgets a charge as if it had never been recorded (a dry run taking back what it
    /// decided). Interned names stay: they are only names.
    pub fn unrecord(&mut self, usage_id: &str) {
        let Some(key) = self.key_of(usage_id) else { return };
        let Some(charge) = self.charges.remove(&key) else { return };
        if let UsageKey::Named(text) = &key {
            self.named_bytes = self.named_bytes.saturating_sub(text.len());
        }
        if !charge.reversed {
            self.count(&key, &charge, false);
        }
        self.irregular_imports.retain(|kept| *kept != key);
        if self.units_used.get(&(charge.service, charge.period)) == Some(&0) {
            self.units_used.remove(&(charge.service, charge.period));
        }
    }

    /// Adds (or takes away) a live charge's share of the running totals.
    fn count(&mut self, key: &UsageKey, charge: &Charge, add: bool) {
        let units = self.units_used.entry((charge.service, charge.period)).or_default();
        *units = if add { units.saturating_add(charge.units) } else { units.saturating_sub(charge.units) };
        let year = self.disbursed_by_year.entry(charge.year).or_default();
        let cents = if add { year.cents() + charge.subsidy.cents() } else { year.cents() - charge.subsidy.cents() };
        *year = Money::from_cents(cents);
        if cents == 0 {
            self.disbursed_by_year.remove(&charge.year);
        }
        let Some(import) = charge.import.map(NonZeroU32::get) else { return };
        match key {
            UsageKey::Numbered { prefix, number } if *prefix == import => {
                let index = (charge.service, charge.period, charge.units, import);
                if add {
                    let entry = self.imported.entry(index).or_insert(ImportedUsage { count: 0, first_line: *number });
                    entry.count += 1;
                    entry.first_line = entry.first_line.min(*number);
                } else {
                    self.forget_imported(index, *number);
                }
            }
            _ if add => self.irregular_imports.push(key.clone()),
            _ => {}
        }
    }

    /// One import charge is reversed: the smallest line left is found again only when it was
    /// the one reversed (reversals are rare corrections).
    fn forget_imported(&mut self, index: (u16, Period, u64, u32), number: u32) {
        let Some(entry) = self.imported.get(&index).copied() else { return };
        if entry.count <= 1 {
            self.imported.remove(&index);
            return;
        }
        let mut first_line = entry.first_line;
        if number == entry.first_line {
            let (service, period, units, import) = index;
            first_line = self
                .charges
                .iter()
                .filter_map(|(key, charge)| match key {
                    UsageKey::Numbered { prefix, number: line }
                        if *prefix == import
                            && *line != number
                            && !charge.reversed
                            && charge.import.map(NonZeroU32::get) == Some(import)
                            && (charge.service, charge.period, charge.units) == (service, period, units) =>
                    {
                        Some(*line)
                    }
                    _ => None,
                })
                .min()
                .unwrap_or(entry.first_line);
        }
        self.imported.insert(index, ImportedUsage { count: entry.count - 1, first_line });
    }

    fn charged_usage(&self, charge: &Charge) -> Option<ChargedUsage> {
        Some(ChargedUsage {
            import_id: charge.import.map(|import| self.name(import.get()).to_string()),
            service_type: self.services.get(usize::from(charge.service))?.clone(),
            period: charge.period,
            units: charge.units,
            rate_per_unit: Money::from_cents(
                i64::try_from(charge.units)
                    .ok()
                    .filter(|units| *units > 0)
                    .map_or(0, |units| charge.gross.cents() / units),
            ),
            gross: charge.gross,
            subsidy: charge.subsidy,
            year: charge.year,
            reversed: charge.reversed,
        })
    }

    fn name(&self, index: u32) -> &str {
        self.names.get(index as usize).map_or("", |name| name)
    }

    fn usage_id(&self, key: &UsageKey) -> String {
        match key {
            UsageKey::Numbered { prefix, number } => format!("{}-{number}", self.name(*prefix)),
            UsageKey::Named(text) => text.to_string(),
        }
    }

    /// The key of a usage id, without interning (`None`: its prefix was never seen, so it
    /// was never charged).
    fn key_of(&self, usage_id: &str) -> Option<UsageKey> {
        match split_numbered(usage_id) {
            Some((prefix, number)) => {
                self.name_index.get(prefix).map(|prefix| UsageKey::Numbered { prefix: *prefix, number })
            }
            None => Some(UsageKey::Named(usage_id.into())),
        }
    }

    fn intern_key(&mut self, usage_id: &str) -> UsageKey {
        match split_numbered(usage_id) {
            Some((prefix, number)) => UsageKey::Numbered { prefix: self.intern(prefix), number },
            None => UsageKey::Named(usage_id.into()),
        }
    }

    fn intern(&mut self, name: &str) -> u32 {
        if let Some(index) = self.name_index.get(name) {
            return *index;
        }
        if self.names.is_empty() {
            self.names.push(Arc::from(""));
        }
        let index = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        let name: Arc<str> = Arc::from(name);
        self.names.push(name.clone());
        self.name_index.insert(name, index);
        index
    }

    fn service_index(&self, service_type: &ServiceType) -> Option<u16> {
        self.services.iter().position(|known| known == service_type).and_then(|index| u16::try_from(index).ok())
    }

    fn intern_service(&mut self, service_type: &ServiceType) -> u16 {
        if let Some(index) = self.service_index(service_type) {
            return index;
        }
        self.services.push(service_type.clone());
        u16::try_from(self.services.len() - 1).unwrap_or(u16::MAX)
    }
}

/// Units charged of a service type in a month, reversals excluded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MonthUsage {
    pub service_type: ServiceType,
    pub period: Period,
    pub units: u64,
}

/// What a view of the application shows of its ledger: bounded by the services and months
/// charged, not by the number of lines (an application may charge thousands of lines a month;
/// its lines are paged from the read model instead).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageSummary {
    pub lines: usize,
    pub reversed_lines: usize,
    /// By month, then service type.
    pub by_month: Vec<MonthUsage>,
    pub disbursed_by_year: BTreeMap<FinancialYear, Money>,
}

impl UsageLedger {
    pub fn summary(&self) -> UsageSummary {
        let mut by_month: Vec<MonthUsage> = self
            .units_used
            .iter()
            .filter(|(_, units)| **units > 0)
            .filter_map(|((service, period), units)| {
                Some(MonthUsage {
                    service_type: self.services.get(usize::from(*service))?.clone(),
                    period: *period,
                    units: *units,
                })
            })
            .collect();
        by_month.sort_by(|a, b| (a.period, a.service_type.as_str()).cmp(&(b.period, b.service_type.as_str())));
        UsageSummary {
            lines: self.charges.len(),
            reversed_lines: self.charges.values().filter(|charge| charge.reversed).count(),
            by_month,
            disbursed_by_year: self.disbursed_by_year.clone(),
        }
    }
}

/// As its [`UsageSummary`]: the lines themselves are read with [`UsageLedger::lines`].
impl Serialize for UsageLedger {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.summary().serialize(serializer)
    }
}

/// `{prefix}-{n}` with `n` a decimal u32 written without leading zeros (so that the text comes
/// back exactly from the parts).
fn split_numbered(usage_id: &str) -> Option<(&str, u32)> {
    let (prefix, digits) = usage_id.rsplit_once('-')?;
    let canonical =
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && (digits == "0" || !digits.starts_with('0'));
    if !canonical {
        return None;
    }
    Some((prefix, digits.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu() -> ServiceType {
        ServiceType::parse("gpu_node_hour_h800").expect("valid")
    }

    fn month(text: &str) -> Period {
        Period::parse(text).expect("valid month")
    }

    fn charge<'a>(
        usage_id: &'a str,
        import_id: Option<&'a str>,
        service: &'a ServiceType,
        units: u64,
    ) -> NewCharge<'a> {
        let period = month("2025-07");
        NewCharge {
            usage_id,
            import_id,
            service_type: service,
            period,
            units,
            gross: Money::from_cents(units as i64 * 200),
            subsidy: Money::from_cents(units as i64 * 100),
            year: FinancialYear::containing(period.first_day()),
        }
    }

    #[test]
    fn usage_ids_are_kept_exactly_whatever_their_shape() {
        let gpu = gpu();
        let mut ledger = UsageLedger::default();
        for id in ["july-2", "july-02", "july-0", "july-", "-5", "july-1-2", "x", "july-4294967296"] {
            ledger.record(charge(id, None, &gpu, 1));
        }
        assert_eq!(ledger.len(), 8);
        assert_eq!(
            ledger.lines().keys().map(String::as_str).collect::<Vec<_>>(),
            vec!["-5", "july-", "july-0", "july-02", "july-1-2", "july-2", "july-4294967296", "x"]
        );
        assert!(ledger.contains("july-2") && ledger.contains("july-02") && !ledger.contains("july-3"));
        assert!(!ledger.contains("august-2"), "an unseen prefix is not charged");
    }

    #[test]
    fn a_line_reads_back_with_its_rate_gross_and_subsidy() {
        let gpu = gpu();
        let mut ledger = UsageLedger::default();
        ledger.record(charge("a-2", Some("a"), &gpu, 10));
        let line = ledger.get("a-2").expect("charged");
        assert_eq!(
            (line.rate_per_unit, line.gross, line.subsidy),
            (Money::from_cents(200), Money::from_cents(2_000), Money::from_cents(1_000))
        );
        assert_eq!((line.import_id.as_deref(), line.units, line.reversed), (Some("a"), 10, false));
    }

    #[test]
    fn totals_follow_charges_and_reversals() {
        let gpu = gpu();
        let mut ledger = UsageLedger::default();
        ledger.record(charge("a-2", Some("a"), &gpu, 10));
        ledger.record(charge("a-3", Some("a"), &gpu, 5));
        ledger.record(charge("a-3", Some("a"), &gpu, 5));
        assert_eq!(ledger.units_used(&gpu, month("2025-07")), 15);
        assert_eq!(ledger.disbursed_by_year().values().map(|m| m.cents()).sum::<i64>(), 1_500);
        ledger.reverse("a-2");
        ledger.reverse("a-2");
        assert_eq!(ledger.units_used(&gpu, month("2025-07")), 5);
        assert_eq!(ledger.disbursed_by_year().values().map(|m| m.cents()).sum::<i64>(), 500);
        assert!(ledger.get("a-2").is_some_and(|line| line.reversed));
        ledger.reverse("a-3");
        assert!(ledger.disbursed_by_year().is_empty());
    }

    #[test]
    fn another_imports_charge_of_the_same_usage_is_found_first_by_line() {
        let gpu = gpu();
        let mut ledger = UsageLedger::default();
        ledger.record(charge("june-9", Some("june"), &gpu, 10));
        ledger.record(charge("june-4", Some("june"), &gpu, 10));
        ledger.record(charge("single-1", None, &gpu, 10));
        let found = ledger.charged_by_another_import("july", &gpu, month("2025-07"), 10);
        assert_eq!(found, Some(("june-4".to_string(), "june".to_string())));
        assert_eq!(ledger.charged_by_another_import("june", &gpu, month("2025-07"), 10), None);
        assert_eq!(ledger.charged_by_another_import("july", &gpu, month("2025-07"), 11), None);
        ledger.reverse("june-4");
        let found = ledger.charged_by_another_import("july", &gpu, month("2025-07"), 10);
        assert_eq!(found, Some(("june-9".to_string(), "june".to_string())));
        ledger.reverse("june-9");
        assert_eq!(ledger.charged_by_another_import("july", &gpu, month("2025-07"), 10), None);
    }

    #[test]
    fn an_import_charge_under_another_id_shape_still_counts_as_that_imports() {
        let gpu = gpu();
        let mut ledger = UsageLedger::default();
        ledger.record(charge("scheduler-export", Some("june"), &gpu, 10));
        let found = ledger.charged_by_another_import("july", &gpu, month("2025-07"), 10);
        assert_eq!(found, Some(("scheduler-export".to_string(), "june".to_string())));
        ledger.reverse("scheduler-export");
        assert_eq!(ledger.charged_by_another_import("july", &gpu, month("2025-07"), 10), None);
    }
}
