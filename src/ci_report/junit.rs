//! JUnit XML, in the shape Jenkins, GitLab, Azure DevOps and the GitHub test-report actions read:
//! `testsuites > testsuite[name tests failures errors skipped time] > testcase[name classname
//! time] > failure[message type]`.

use std::fmt::Write as _;

use super::CaseResult;
use super::xml::{xml_attr, xml_text};
use crate::gate::{GateResult, fmt_num};

/// The longest `message` attribute; the whole text goes in the element body.
const MAX_MESSAGE_CHARS: usize = 300;

/// JUnit XML for an evaluation: one test suite `suite_name` with a test case per line and
/// evaluator (classname `suite_name.evaluator`), and, when there are gates, a suite
/// `suite_name gates` with a test case per gate. Failures carry the reason as `message` and
/// the full text (and score) as the body.
pub fn junit_xml(suite_name: &str, cases: &[CaseResult], gates: &[GateResult]) -> String {
    let case_failures = cases.iter().filter(|c| !c.passed).count();
    let gate_failures = gates.iter().filter(|g| !g.passed).count();
    let case_time: f64 = cases.iter().map(|c| seconds(c.duration_s)).sum();

    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" time=\"{:.3}\">",
        xml_attr(suite_name),
        cases.len() + gates.len(),
        case_failures + gate_failures,
        case_time
    );

    open_suite(&mut out, suite_name, cases.len(), case_failures, case_time);
    for case in cases {
        let name = format!("line {}: {}", case.line_number, case.evaluator);
        let classname = format!("{suite_name}.{}", case.evaluator);
        open_case(&mut out, &name, &classname, seconds(case.duration_s));
        if case.passed {
            out.push_str("/>\n");
            continue;
        }
        let mut body = case.message.clone();
        if let Some(score) = case.score {
            if !body.is_empty() {
                body.push('\n');
            }
            let _ = write!(body, "score: {}", fmt_num(score));
        }
        let message = if case.message.trim().is_empty() {
            "failed".to_string()
        } else {
            case.message.clone()
        };
        failure(&mut out, &message, "EvaluationFailure", &body);
        out.push_str("    </testcase>\n");
    }
    out.push_str("  </testsuite>\n");

    if !gates.is_empty() {
        let gates_suite = format!("{suite_name} gates");
        open_suite(&mut out, &gates_suite, gates.len(), gate_failures, 0.0);
        let classname = format!("{suite_name}.gates");
        for gate in gates {
            open_case(&mut out, &gate.name, &classname, 0.0);
            if gate.passed {
                out.push_str("/>\n");
                continue;
            }
            let actual = gate.actual.map_or_else(|| "none".to_string(), fmt_num);
            let body = format!(
                "{}\nexpected: {}\nactual: {}",
                gate.verdict, gate.expected, actual
            );
            failure(&mut out, &gate.verdict, "GateFailure", &body);
            out.push_str("    </testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

fn open_suite(out: &mut String, name: &str, tests: usize, failures: usize, time: f64) {
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"{time:.3}\">",
        xml_attr(name)
    );
}

/// Writes `<testcase ...` without closing the start tag: the caller adds `/>` or `>`.
fn open_case(out: &mut String, name: &str, classname: &str, time: f64) {
    let _ = write!(
        out,
        "    <testcase name=\"{}\" classname=\"{}\" time=\"{time:.3}\"",
        xml_attr(name),
        xml_attr(classname)
    );
}

fn failure(out: &mut String, message: &str, kind: &str, body: &str) {
    let _ = writeln!(
        out,
        ">\n      <failure message=\"{}\" type=\"{kind}\">{}</failure>",
        xml_attr(&one_line(message)),
        xml_text(body)
    );
}

/// The first non-empty line of `s`, cut to [`MAX_MESSAGE_CHARS`].
fn one_line(s: &str) -> String {
    let line = s
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    if line.chars().count() > MAX_MESSAGE_CHARS {
        let head: String = line.chars().take(MAX_MESSAGE_CHARS - 3).collect();
        format!("{head}...")
    } else {
        line.to_string()
    }
}

/// A duration fit for a `time` attribute: finite and not negative.
fn seconds(s: f64) -> f64 {
    if s.is_finite() && s > 0.0 { s } else { 0.0 }
}
