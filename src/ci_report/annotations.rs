//! GitHub Actions workflow commands (`::error title=...::message`) that put failures on the run's
//! summary page and pull request.

use super::CaseResult;
use crate::gate::GateResult;

/// At most this many failed lines are annotated (GitHub shows only ten errors per step); one
/// notice then says how many more there are.
pub const MAX_CASE_ANNOTATIONS: usize = 10;

/// True when `GITHUB_ACTIONS=true`, as GitHub sets it on its runners.
pub fn running_in_github_actions() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

/// Escapes a command's message as GitHub requires: `%`, CR and LF as `%25`, `%0D`, `%0A`.
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a command property such as `title`: like [`escape_data`] plus `:` and `,`.
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// Annotation lines to print on stdout: an `::error` for each failed gate, then for each failed
/// line (at most [`MAX_CASE_ANNOTATIONS`]), then a `::notice` counting the failed lines left out.
pub fn github_annotations(gates: &[GateResult], cases: &[CaseResult]) -> Vec<String> {
    let mut out: Vec<String> = gates
        .iter()
        .filter(|g| !g.passed)
        .map(|g| {
            format!(
                "::error title={}::{}",
                escape_property(&format!("Gate failed: {}", g.name)),
                escape_data(&g.verdict)
            )
        })
        .collect();
    let failed: Vec<&CaseResult> = cases.iter().filter(|c| !c.passed).collect();
    for case in failed.iter().take(MAX_CASE_ANNOTATIONS) {
        let message = if case.message.trim().is_empty() {
            "failed".to_string()
        } else {
            case.message.clone()
        };
        out.push(format!(
            "::error title={}::{}",
            escape_property(&format!(
                "line {} failed {}",
                case.line_number, case.evaluator
            )),
            escape_data(&message)
        ));
    }
    if failed.len() > MAX_CASE_ANNOTATIONS {
        out.push(format!(
            "::notice title=More failed lines::{} more failed lines are not annotated; see the JUnit report or the summary",
            failed.len() - MAX_CASE_ANNOTATIONS
        ));
    }
    out
}
