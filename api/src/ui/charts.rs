//! Charts drawn on the server as inline SVG: nothing to fetch, no script, and a text alternative
//! (`<title>`, `aria-label`) for screen readers. Values are integers (cents, units); only the
//! drawing scales them to pixels.

use std::fmt::Write;

use super::format::{count, escape, millions};

/// A budget line's four figures, in cents.
pub struct BudgetBars {
    pub label: String,
    pub planned: i64,
    pub received: i64,
    pub committed: i64,
    pub disbursed: i64,
}

const WIDTH: i64 = 720;
const LABEL_WIDTH: i64 = 190;
const VALUE_WIDTH: i64 = 80;

/// The pixels of `value` on a scale where `largest` fills `span`.
fn scaled(value: i64, largest: i64, span: i64) -> i64 {
    if largest <= 0 || value <= 0 {
        return 0;
    }
    i64::try_from(i128::from(value) * i128::from(span) / i128::from(largest)).unwrap_or(span).clamp(0, span)
}

/// Planned (§23), received, committed and disbursed per budget line, as grouped horizontal bars.
pub fn budget(lines: &[BudgetBars]) -> String {
    const BAR: i64 = 13;
    const GROUP: i64 = 4 * BAR + 18;
    let height = (lines.len() as i64 * GROUP).max(GROUP) + 8;
    let largest = lines.iter().flat_map(|l| [l.planned, l.received, l.committed, l.disbursed]).max().unwrap_or(0);
    let span = WIDTH - LABEL_WIDTH - VALUE_WIDTH;
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"Budget per line: planned, received, committed and disbursed\">\
         <title>Budget per line: planned (§23), received, committed and disbursed</title>"
    );
    for (index, line) in lines.iter().enumerate() {
        let top = index as i64 * GROUP + 4;
        let _ = write!(svg, "<text x=\"0\" y=\"{}\">{}</text>", top + 2 * BAR + 4, escape(&line.label));
        for (row, (class, value)) in [
            ("planned", line.planned),
            ("received", line.received),
            ("committed", line.committed),
            ("disbursed", line.disbursed),
        ]
        .into_iter()
        .enumerate()
        {
            let y = top + row as i64 * BAR;
            let length = scaled(value, largest, span);
            let _ = write!(
                svg,
                "<rect class=\"{class}\" x=\"{LABEL_WIDTH}\" y=\"{y}\" width=\"{length}\" height=\"{}\"><title>{class}: {}</title></rect>\
                 <text x=\"{}\" y=\"{}\">{}</text>",
                BAR - 2,
                escape(&millions(value)),
                LABEL_WIDTH + length + 4,
                y + BAR - 3,
                escape(&millions(value))
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// A month's capacity of one service: declared, the 90 % that may be subsidised, allocated.
pub struct MonthBars {
    pub period: String,
    pub capacity: i64,
    pub subsidised_cap: i64,
    pub allocated: i64,
}

/// Capacity per month as columns: declared capacity behind, allocated in front, and the 90 %
/// cap as a red mark on each month.
pub fn capacity(service: &str, months: &[MonthBars]) -> String {
    const HEIGHT: i64 = 220;
    const BOTTOM: i64 = 30;
    const LEFT: i64 = 70;
    let plot = HEIGHT - BOTTOM - 10;
    let step = ((WIDTH - LEFT) / (months.len() as i64).max(1)).max(4);
    let largest = months.iter().map(|m| m.capacity.max(m.allocated)).max().unwrap_or(0);
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{0}: capacity, 90 % cap and units allocated per month\">\
         <title>{0}: capacity, 90 % cap and units allocated per month</title>\
         <line class=\"axis\" x1=\"{LEFT}\" y1=\"{1}\" x2=\"{WIDTH}\" y2=\"{1}\"></line>\
         <text x=\"0\" y=\"14\">{2}</text><text x=\"0\" y=\"{1}\">0</text>",
        escape(service),
        HEIGHT - BOTTOM,
        escape(&count(largest))
    );
    for (index, month) in months.iter().enumerate() {
        let x = LEFT + index as i64 * step;
        let bar = (step - 2).max(2);
        let column = |value: i64| scaled(value, largest, plot);
        let (capacity, allocated, cap) =
            (column(month.capacity), column(month.allocated), column(month.subsidised_cap));
        let (capacity_top, allocated_top, cap_y) =
            (HEIGHT - BOTTOM - capacity, HEIGHT - BOTTOM - allocated, HEIGHT - BOTTOM - cap);
        let (period, used, declared, limit) = (
            escape(&month.period),
            escape(&count(month.allocated)),
            escape(&count(month.capacity)),
            escape(&count(month.subsidised_cap)),
        );
        let right = x + bar;
        let _ = write!(
            svg,
            "<rect class=\"capacity\" x=\"{x}\" y=\"{capacity_top}\" width=\"{bar}\" height=\"{capacity}\"></rect>\
             <rect class=\"allocated\" x=\"{x}\" y=\"{allocated_top}\" width=\"{bar}\" height=\"{allocated}\">\
             <title>{period}: {used} of {declared} units allocated (cap {limit})</title></rect>\
             <line class=\"cap\" x1=\"{x}\" x2=\"{right}\" y1=\"{cap_y}\" y2=\"{cap_y}\"></line>"
        );
        // April of each financial year is labelled, and the last month.
        if month.period.ends_with("-04") || index + 1 == months.len() {
            let _ = write!(svg, "<text x=\"{x}\" y=\"{}\">{}</text>", HEIGHT - 12, escape(&month.period));
        }
    }
    svg.push_str("</svg>");
    svg
}

/// One horizontal bar per item, labelled with its count (applications by category or status).
pub fn counts(title: &str, items: &[(String, i64)]) -> String {
    const ROW: i64 = 22;
    let height = (items.len() as i64 * ROW).max(ROW) + 4;
    let largest = items.iter().map(|(_, value)| *value).max().unwrap_or(0);
    let span = WIDTH - LABEL_WIDTH - VALUE_WIDTH;
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"{0}\"><title>{0}</title>",
        escape(title)
    );
    for (index, (label, value)) in items.iter().enumerate() {
        let y = index as i64 * ROW + 2;
        let length = scaled(*value, largest, span);
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{}\">{}</text><rect class=\"received\" x=\"{LABEL_WIDTH}\" y=\"{y}\" width=\"{length}\" height=\"{}\"></rect>\
             <text x=\"{}\" y=\"{}\">{}</text>",
            y + ROW - 8,
            escape(label),
            ROW - 6,
            LABEL_WIDTH + length + 4,
            y + ROW - 8,
            escape(&count(*value))
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_value_and_never_overflow() {
        assert_eq!(scaled(50, 100, 400), 200);
        assert_eq!(scaled(100, 100, 400), 400);
        assert_eq!(scaled(i64::MAX, 1, 400), 400);
        assert_eq!(scaled(-5, 100, 400), 0);
        assert_eq!(scaled(5, 0, 400), 0);
    }

    #[test]
    fn charts_escape_their_labels_and_describe_themselves() {
        let svg = counts("By category", &[("<script>".to_string(), 3)]);
        assert!(svg.contains("&lt;script&gt;") && !svg.contains("<script>"));
        assert!(svg.contains("<title>By category</title>"));
        let budget = budget(&[BudgetBars {
            label: "Computing power subsidy".into(),
            planned: 85_700_000_000,
            received: 85_700_000_000,
            committed: 10,
            disbursed: 0,
        }]);
        assert!(budget.contains("HK$857.0m"));
        assert_eq!(budget.matches("<rect").count(), 4);
    }
}
