//! Figures as people read them: HK$ with thousands separators and two decimals, counts with
//! separators, rates from basis points as percentages, and HTML escaping of every text shown.

use aisc_domain::subsidy::values::Money;

use crate::progress::grouped;

/// `HK$1,234,567.89` from cents; `-HK$12.00` below zero (as the domain writes amounts).
pub fn money(cents: i64) -> String {
    Money::from_cents(cents).to_string()
}

/// Whole HK$ million with one decimal, for chart labels: `HK$857.0m`.
pub fn millions(cents: i64) -> String {
    let tenths = cents / 10_000_000;
    let sign = if tenths < 0 { "-" } else { "" };
    let magnitude = tenths.unsigned_abs();
    format!("{sign}HK${}.{}m", grouped(magnitude / 10), magnitude % 10)
}

/// `12,345`.
pub fn count(value: i64) -> String {
    let sign = if value < 0 { "-" } else { "" };
    format!("{sign}{}", grouped(value.unsigned_abs()))
}

/// `70 %`, `72.5 %`, `0.01 %` from basis points (the fraction only when there is one).
pub fn percent(bps: i64) -> String {
    let sign = if bps < 0 { "-" } else { "" };
    let magnitude = bps.unsigned_abs();
    let (whole, hundredths) = (magnitude / 100, magnitude % 100);
    match hundredths {
        0 => format!("{sign}{whole} %"),
        h if h.is_multiple_of(10) => format!("{sign}{whole}.{} %", h / 10),
        h => format!("{sign}{whole}.{h:02} %"),
    }
}

/// A share in basis points, rounded down; `None` when the whole is not positive.
pub fn share_bps(part: i64, whole: i64) -> Option<i64> {
    (whole > 0).then(|| i64::try_from(i128::from(part) * 10_000 / i128::from(whole)).unwrap_or(i64::MAX))
}

/// Text safe inside HTML elements and double-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// A query-string value, percent-encoded.
pub fn url_value(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A code as people write it: the scheme's own names for its categories, budget lines and
/// services, and otherwise the code in words (`agreement_signed` → `Agreement signed`).
pub fn label(code: &str) -> String {
    let known = match code {
        "ai_startup" => Some("AI start-up"),
        "rnd_centre" => Some("R&D centre"),
        "ai_ecosystem_development" => Some("AI ecosystem development"),
        "cyber_and_data_security" => Some("Cyber and data security"),
        "gpu_node_hour_h800" => Some("GPU node-hours (H800)"),
        "ugc_funded_university" => Some("UGC-funded university"),
        _ => None,
    };
    match known {
        Some(name) => name.to_string(),
        None => words(code),
    }
}

fn words(code: &str) -> String {
    let spaced = code.replace('_', " ");
    let mut characters = spaced.chars();
    match characters.next() {
        Some(first) => first.to_uppercase().chain(characters).collect(),
        None => String::new(),
    }
}

/// `ApplicationSubmitted` → `Application submitted`.
pub fn event_label(event_type: &str) -> String {
    let mut out = String::with_capacity(event_type.len() + 4);
    for (index, character) in event_type.chars().enumerate() {
        if character.is_uppercase() && index > 0 {
            out.push(' ');
            out.extend(character.to_lowercase());
        } else {
            out.push(character);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_reads_as_hong_kong_dollars_with_separators() {
        assert_eq!(money(527_397_261), "HK$5,273,972.61");
        assert_eq!(money(5), "HK$0.05");
        assert_eq!(money(0), "HK$0.00");
        assert_eq!(money(-120_000), "-HK$1,200.00");
        assert_eq!(money(i64::MIN), "-HK$92,233,720,368,547,758.08");
        assert_eq!(millions(85_700_000_000), "HK$857.0m");
        assert_eq!(millions(4_250_000_000), "HK$42.5m");
    }

    #[test]
    fn counts_and_rates_read_as_people_write_them() {
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(999), "999");
        assert_eq!(count(-1000), "-1,000");
        assert_eq!(percent(7_000), "70 %");
        assert_eq!(percent(7_250), "72.5 %");
        assert_eq!(percent(1), "0.01 %");
        assert_eq!(share_bps(1, 3), Some(3_333));
        assert_eq!(share_bps(1, 0), None);
    }

    #[test]
    fn text_is_escaped_and_codes_are_labelled() {
        assert_eq!(escape(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        assert_eq!(label("agreement_signed"), "Agreement signed");
        assert_eq!(label("rnd_centre"), "R&D centre");
        assert_eq!(label("gpu_node_hour_h800"), "GPU node-hours (H800)");
        assert_eq!(event_label("CommitteeDecisionRecorded"), "Committee decision recorded");
        assert_eq!(url_value("a b&c"), "a+b%26c");
    }
}
