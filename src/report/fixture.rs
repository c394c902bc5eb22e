//! A small hand-made report for unit tests: two runs over one dataset, nasty text included.

use indexmap::IndexMap;
use serde_json::{Map, Value, json};

use super::model::{
    Columns, LineCell, NodeTrace, Report, ReportLine, RunReport, RunSummary, ScoreCell,
};
use crate::record::{Status, Tokens};

fn map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn cell(answer: Value, score: Option<f64>, passed: bool, status: Status) -> LineCell {
    let mut scores = IndexMap::new();
    scores.insert(
        "exact_match".to_string(),
        ScoreCell {
            score,
            passed,
            reason: if passed {
                String::new()
            } else {
                "expected \"Paris\"".into()
            },
        },
    );
    LineCell {
        status,
        error: (status == Status::Failed).then(|| "@SUM(A1) failed, \"quoted\"".to_string()),
        outputs: if status == Status::Failed {
            Map::new()
        } else {
            map(json!({"answer": answer}))
        },
        scores,
        eval_outputs: Map::new(),
        latency_ms: 12.5,
        tokens: Tokens {
            prompt_tokens: 10,
            completion_tokens: 5,
            total_tokens: 15,
        },
        cost_usd: 0.0001,
        cache_hits: 0,
        saved_usd: 0.0,
        trace: vec![NodeTrace {
            node: "ask".into(),
            status,
            inputs: map(json!({"question": "</script><script>alert(1)</script>"})),
            output: answer,
            error: None,
            start_time: "2026-12-03T08:00:00.000000Z".into(),
            duration_ms: 11.0,
            tokens: Some(Tokens {
                prompt_tokens: 10,
                completion_tokens: 5,
                total_tokens: 15,
            }),
            model: Some("gpt-4o-mini".into()),
            cached: false,
        }],
    }
}

fn run(label: &str, pass_rate: f64, accuracy: f64) -> RunReport {
    let mut metrics = IndexMap::new();
    metrics.insert("accuracy".to_string(), accuracy);
    metrics.insert("latency.p95_ms".to_string(), 20.0 + accuracy);
    RunReport {
        label: label.into(),
        name: format!("{label}_run"),
        path: format!("/runs/{label}"),
        flow_name: "qa".into(),
        variant: label.into(),
        dataset: 0,
        status: "Completed".into(),
        offline: false,
        evaluations: vec![format!("{label}_eval")],
        summary: RunSummary {
            total_lines: 3,
            lines: 3,
            completed: 3,
            failed: 0,
            passed: 2,
            pass_rate,
            tokens: Tokens {
                prompt_tokens: 30,
                completion_tokens: 15,
                total_tokens: 45,
            },
            cost_usd: Some(0.0003),
            cache_hits: 0,
            saved_usd: 0.0,
            latency_p50_ms: 12.5,
            latency_p95_ms: 12.5,
            latency_mean_ms: 12.5,
        },
        metrics,
        verdict: None,
    }
}

/// Two runs (`base`, and `=cmd|' /C calc'!A0` — a formula as a label) over three lines:
/// line 0 differs ("Paris" / "Paris, France"), line 1 holds markup and a negative number,
/// line 2 failed in the second run with an error starting with `@`.
pub fn report() -> Report {
    let formula_label = "=cmd|' /C calc'!A0";
    Report {
        title: "<script>alert('title')</script>".into(),
        generated: "2026-12-03T08:00:00.000000Z".into(),
        baseline: 0,
        runs: vec![
            run("base", 2.0 / 3.0, 0.5),
            run(formula_label, 1.0 / 3.0, 0.75),
        ],
        datasets: vec!["data.jsonl".into()],
        columns: Columns {
            inputs: vec!["question".into()],
            outputs: vec!["answer".into()],
            scores: vec!["exact_match".into()],
            eval_outputs: Vec::new(),
        },
        lines: vec![
            ReportLine {
                dataset: 0,
                line_number: 0,
                inputs: map(json!({"question": "Capital of France,\n\"the\" city? Zürich ✓"})),
                cells: vec![
                    Some(cell(json!("Paris"), Some(1.0), true, Status::Completed)),
                    Some(cell(
                        json!("Paris, France"),
                        Some(0.0),
                        false,
                        Status::Completed,
                    )),
                ],
            },
            ReportLine {
                dataset: 0,
                line_number: 1,
                inputs: map(json!({"question": "-1+2"})),
                cells: vec![
                    Some(cell(
                        json!("</textarea>\"><img src=x onerror=alert(1)>{{ 7*7 }}\u{2028}"),
                        Some(0.0),
                        false,
                        Status::Completed,
                    )),
                    Some(cell(json!(-3), Some(-0.5), false, Status::Completed)),
                ],
            },
            ReportLine {
                dataset: 0,
                line_number: 2,
                inputs: map(json!({"question": "+tab\tand = sign"})),
                cells: vec![
                    Some(cell(json!("ok"), Some(1.0), true, Status::Completed)),
                    Some(cell(Value::Null, None, false, Status::Failed)),
                ],
            },
        ],
        experiment: None,
        traces: super::load::Traces::All,
    }
}
