//! The Markdown summary for a pull-request comment or `$GITHUB_STEP_SUMMARY`.

use std::fmt::Write as _;

use crate::gate::{Direction, GateResult, direction_of, fmt_num};

/// At most this many worst lines are listed, so the summary fits a PR comment.
const MAX_WORST_LINES: usize = 20;
/// Line previews are cut to this many characters.
const MAX_PREVIEW_CHARS: usize = 100;
/// Reasons are cut to this many characters.
const MAX_WHY_CHARS: usize = 200;

/// What the summary shows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SummaryInput {
    /// What was evaluated, e.g. the flow's name.
    pub title: String,
    /// The overall verdict: every gate passed and no line failed.
    pub verdict_passed: bool,
    /// The base run used echo answers instead of a model (no endpoint): its scores mean nothing,
    /// so the summary never shows a green verdict for it.
    pub offline: bool,
    pub gates: Vec<GateResult>,
    /// Each metric: name, this run's value and the baseline's, when there is a baseline.
    pub metrics: Vec<(String, f64, Option<f64>)>,
    /// The worst lines: line number, a preview of its input, and why it scored badly.
    pub worst: Vec<(usize, String, String)>,
    /// Lines the base run itself failed; they count as failures.
    pub failed_base_lines: usize,
    pub run_name: String,
    pub baseline_name: Option<String>,
}

/// Renders the summary: a verdict banner, an offline warning, failed base-run lines, the gates,
/// a metrics table against the baseline (deltas with ▲/▼ and ✅/⚠️/❌), and the worst lines. All
/// run and model text is escaped so it cannot break the tables or mention people.
pub fn markdown_summary(s: &SummaryInput) -> String {
    let mut out = String::new();
    let title = if s.title.trim().is_empty() {
        "flow eval".to_string()
    } else {
        md(&s.title, 200)
    };
    let banner = match (s.offline, s.verdict_passed) {
        (true, true) => format!("## ⚠️ NOT EVALUATED (offline): {title}"),
        (true, false) => format!("## ❌ FAILED (offline): {title}"),
        (false, true) => format!("## ✅ PASSED: {title}"),
        (false, false) => format!("## ❌ FAILED: {title}"),
    };
    let _ = writeln!(out, "{banner}\n");
    match &s.baseline_name {
        Some(base) => {
            let _ = writeln!(
                out,
                "Run **{}** compared with baseline **{}**.\n",
                md(&s.run_name, 200),
                md(base, 200)
            );
        }
        None => {
            let _ = writeln!(out, "Run **{}**.\n", md(&s.run_name, 200));
        }
    }
    if s.offline {
        out.push_str(
            "> [!WARNING]\n> Offline: no endpoint was used and the answers are echoes of the \
             inputs, so these scores say nothing about the model. Do not treat this as a pass.\n\n",
        );
    }
    if s.failed_base_lines > 0 {
        let lines = if s.failed_base_lines == 1 {
            "1 line"
        } else {
            "lines"
        };
        let count = if s.failed_base_lines == 1 {
            String::new()
        } else {
            format!("{} ", s.failed_base_lines)
        };
        let _ = writeln!(
            out,
            "> [!CAUTION]\n> {count}{lines} of the base run failed; they count as failures.\n"
        );
    }
    gates_section(&mut out, &s.gates);
    metrics_section(&mut out, s);
    worst_section(&mut out, &s.worst);
    out
}

fn gates_section(out: &mut String, gates: &[GateResult]) {
    out.push_str("### Gates\n\n");
    if gates.is_empty() {
        out.push_str("No gates were set (`--threshold`, `--baseline`).\n\n");
        return;
    }
    let passed = gates.iter().filter(|g| g.passed).count();
    let _ = writeln!(out, "{passed} of {} gates passed.\n", gates.len());
    out.push_str("| | Gate | Verdict |\n|:-:|---|---|\n");
    for g in gates {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            if g.passed { "✅" } else { "❌" },
            md(&g.name, 200),
            md(&g.verdict, 400)
        );
    }
    out.push('\n');
}

fn metrics_section(out: &mut String, s: &SummaryInput) {
    if s.metrics.is_empty() {
        return;
    }
    out.push_str("### Metrics\n\n");
    let with_baseline = s.baseline_name.is_some() || s.metrics.iter().any(|m| m.2.is_some());
    if with_baseline {
        out.push_str("| Metric | This run | Baseline | Change | |\n|---|--:|--:|--:|:-:|\n");
    } else {
        out.push_str("| Metric | This run | |\n|---|--:|:-:|\n");
    }
    for (name, value, base) in &s.metrics {
        let status = metric_status(name, *value, *base, &s.gates);
        if with_baseline {
            let (base_text, change) = match base {
                Some(b) => (fmt_num(*b), change(*value, *b)),
                None => ("–".to_string(), "new".to_string()),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {base_text} | {change} | {status} |",
                md(name, 200),
                fmt_num(*value)
            );
        } else {
            let _ = writeln!(
                out,
                "| {} | {} | {status} |",
                md(name, 200),
                fmt_num(*value)
            );
        }
    }
    out.push('\n');
}

/// `▲ +0.11`, `▼ -0.08` or `= 0.00`.
fn change(value: f64, base: f64) -> String {
    let delta = value - base;
    if delta.abs() <= 1e-9 {
        "= 0.00".to_string()
    } else if delta > 0.0 {
        format!("▲ +{}", fmt_num(delta))
    } else {
        format!("▼ -{}", fmt_num(-delta))
    }
}

/// ❌ when a gate on the metric failed, ✅ when its gates passed; with no gate, ✅ when it is no
/// worse than the baseline and ⚠️ when it is worse; empty without gates or a baseline.
fn metric_status(name: &str, value: f64, base: Option<f64>, gates: &[GateResult]) -> &'static str {
    let about: Vec<&GateResult> = gates.iter().filter(|g| gate_is_about(g, name)).collect();
    if !about.is_empty() {
        return if about.iter().all(|g| g.passed) {
            "✅"
        } else {
            "❌"
        };
    }
    let Some(base) = base else { return "" };
    let worse = match direction_of(name) {
        Direction::HigherIsBetter => value < base - 1e-9,
        Direction::LowerIsBetter => value > base + 1e-9,
    };
    if worse { "⚠️" } else { "✅" }
}

/// Whether a gate checks `metric`: `metric vs baseline` or a threshold `metric>=...`.
fn gate_is_about(gate: &GateResult, metric: &str) -> bool {
    match gate.name.strip_prefix(metric) {
        Some(rest) => rest == " vs baseline" || rest.starts_with(['<', '>', '=']),
        None => false,
    }
}

fn worst_section(out: &mut String, worst: &[(usize, String, String)]) {
    if worst.is_empty() {
        return;
    }
    out.push_str("### Worst lines\n\n| Line | Input | Why |\n|--:|---|---|\n");
    for (line, preview, why) in worst.iter().take(MAX_WORST_LINES) {
        let _ = writeln!(
            out,
            "| {line} | {} | {} |",
            md(preview, MAX_PREVIEW_CHARS),
            md(why, MAX_WHY_CHARS)
        );
    }
    if worst.len() > MAX_WORST_LINES {
        let _ = writeln!(
            out,
            "\n…and {} more; see the JUnit report.",
            worst.len() - MAX_WORST_LINES
        );
    }
    out.push('\n');
}

/// Escapes text for one Markdown table cell on one line: newlines become spaces, Markdown and
/// HTML specials are escaped, `@` and `#` become entities (no mentions or issue links from model
/// text), and the text is cut to `max_chars` characters.
fn md(s: &str, max_chars: usize) -> String {
    let flat: String = s
        .chars()
        .filter(|c| !matches!(c, '\u{FFFE}' | '\u{FFFF}'))
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.trim();
    let cut: String = if flat.chars().count() > max_chars {
        let head: String = flat.chars().take(max_chars.saturating_sub(1)).collect();
        format!("{head}…")
    } else {
        flat.to_string()
    };
    let mut out = String::with_capacity(cut.len());
    for c in cut.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '@' => out.push_str("&#64;"),
            '#' => out.push_str("&#35;"),
            '|' => out.push_str("\\|"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '~' | '!' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}
