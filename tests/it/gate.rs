//! Gates: threshold parsing and checks, metric direction, baseline regression, k-of-n.

use flow::gate::*;
use serde_json::{Map, Value, json};

fn metrics(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("test metrics are an object")
}

fn t(s: &str) -> Threshold {
    s.parse().expect("valid threshold")
}

#[test]
fn parses_every_operator_with_and_without_spaces() {
    let cases = [
        ("accuracy>=0.8", "accuracy", Op::Ge, 0.8),
        ("accuracy > 0.8", "accuracy", Op::Gt, 0.8),
        (
            "  flow.latency_p95_ms <= 1500 ",
            "flow.latency_p95_ms",
            Op::Le,
            1500.0,
        ),
        ("error_rate<0.05", "error_rate", Op::Lt, 0.05),
        (
            "exact_match.pass_rate == 1",
            "exact_match.pass_rate",
            Op::Eq,
            1.0,
        ),
        ("loss<=-1e-3", "loss", Op::Le, -0.001),
        ("f1 => 0.5", "f1", Op::Ge, 0.5),
        ("f1=<0.5", "f1", Op::Le, 0.5),
    ];
    for (input, metric, op, value) in cases {
        let th = t(input);
        assert_eq!(th.metric, metric, "{input}");
        assert_eq!(th.op, op, "{input}");
        assert_eq!(th.value, value, "{input}");
    }
    assert_eq!(t("accuracy >= 0.8").to_string(), "accuracy>=0.80");
}

#[test]
fn rejects_bad_thresholds_with_clear_errors() {
    let err = |s: &str| s.parse::<Threshold>().unwrap_err();
    assert!(matches!(
        err("accuracy 0.8"),
        GateError::MissingOperator { .. }
    ));
    assert!(err("accuracy 0.8").to_string().contains(">=, >, <=, <, =="));
    assert!(matches!(
        err("accuracy=0.8"),
        GateError::UnknownOperator { .. }
    ));
    assert!(err("accuracy=0.8").to_string().contains("`=`"));
    assert!(matches!(
        err("accuracy!=0.8"),
        GateError::UnknownOperator { .. }
    ));
    assert!(matches!(
        err("accuracy>>0.8"),
        GateError::UnknownOperator { .. }
    ));
    assert!(matches!(err(">=0.8"), GateError::MissingMetric { .. }));
    let bad = err("accuracy>=high");
    assert!(matches!(bad, GateError::BadValue { .. }));
    assert!(bad.to_string().contains("`high` is not a number"), "{bad}");
    assert!(matches!(err("accuracy>="), GateError::BadValue { .. }));
    assert!(matches!(err("accuracy>=NaN"), GateError::BadValue { .. }));
    assert!(matches!(err("accuracy>=inf"), GateError::BadValue { .. }));
    assert!(matches!(err(""), GateError::MissingOperator { .. }));
}

#[test]
fn tolerance_must_be_a_non_negative_number() {
    assert_eq!(parse_tolerance("0.02").unwrap(), 0.02);
    assert_eq!(parse_tolerance(" 0 ").unwrap(), 0.0);
    for bad in ["-0.1", "abc", "", "NaN", "inf"] {
        let e = parse_tolerance(bad).unwrap_err();
        assert!(e.to_string().contains("--tolerance"), "{bad}: {e}");
    }
}

#[test]
fn direction_follows_the_metric_name() {
    use Direction::*;
    for name in [
        "flow.latency_p95_ms",
        "flow.total_tokens",
        "flow.cost_usd",
        "error_rate",
        "flow.lines_failed",
        "Latency",
        "eval-time",
        "rmse",
        "word.error.rate",
        "hate_unfairness_defect_rate.violence",
    ] {
        assert_eq!(direction_of(name), LowerIsBetter, "{name}");
    }
    for name in [
        "accuracy",
        "exact_match.pass_rate",
        "gpt_groundedness",
        "flow.success_rate",
        "sentiment",
        "f1_score",
        "timeliness",
    ] {
        assert_eq!(direction_of(name), HigherIsBetter, "{name}");
    }
}

#[test]
fn thresholds_pass_and_fail_for_every_operator() {
    let m = metrics(json!({"accuracy": 0.8, "latency": 120, "ok": true}));
    let run = |s: &str| check_thresholds(&[t(s)], &m).remove(0).passed;
    assert!(run("accuracy>=0.8"));
    assert!(!run("accuracy>0.8"));
    assert!(run("accuracy<=0.8"));
    assert!(!run("accuracy<0.8"));
    assert!(run("accuracy==0.8"));
    assert!(!run("accuracy==0.81"));
    assert!(run("latency<200"));
    assert!(!run("latency<=100"));
    assert!(run("ok==1"));
}

#[test]
fn float_rounding_does_not_fail_a_threshold() {
    let nearly = 0.1 + 0.7; // 0.7999999999999999
    assert!(nearly < 0.8);
    let m = metrics(json!({ "accuracy": nearly }));
    let r = check_thresholds(&[t("accuracy>=0.8")], &m);
    assert!(r[0].passed, "{}", r[0].verdict);
}

#[test]
fn threshold_verdicts_are_one_clear_line() {
    let m = metrics(json!({"accuracy": 0.91}));
    let r = &check_thresholds(&[t("accuracy>=0.8")], &m)[0];
    assert_eq!(r.verdict, "PASS accuracy 0.91 >= 0.80");
    assert_eq!(r.name, "accuracy>=0.80");
    assert_eq!(r.actual, Some(0.91));
    assert_eq!(r.expected, ">= 0.80");

    let m = metrics(json!({"accuracy": 0.72}));
    let r = &check_thresholds(&[t("accuracy>=0.8")], &m)[0];
    assert!(!r.passed);
    assert_eq!(
        r.verdict,
        "FAIL accuracy 0.72 < 0.80 (threshold accuracy>=0.80)"
    );

    let m = metrics(json!({"latency": 1500}));
    let r = &check_thresholds(&[t("latency<1000")], &m)[0];
    assert_eq!(
        r.verdict,
        "FAIL latency 1500 >= 1000 (threshold latency<1000)"
    );
}

#[test]
fn a_missing_or_non_numeric_metric_fails_and_lists_what_exists() {
    let m = metrics(json!({"acuracy": 0.9, "f1": 0.5, "label": "good"}));
    let r = check_thresholds(&[t("accuracy>=0.8"), t("label>=1")], &m);
    assert!(!r[0].passed);
    assert_eq!(r[0].actual, None);
    assert!(
        r[0].verdict.starts_with(
            "FAIL accuracy missing: the run has no metric accuracy; metrics are: acuracy, f1, label"
        ),
        "{}",
        r[0].verdict
    );
    assert!(
        r[0].verdict.contains("did you mean `acuracy`?"),
        "{}",
        r[0].verdict
    );
    assert!(!r[1].passed);
    assert!(
        r[1].verdict.contains("not a number: \"good\""),
        "{}",
        r[1].verdict
    );

    let empty = Map::new();
    let r = check_thresholds(&[t("accuracy>=0.8")], &empty);
    assert!(
        r[0].verdict.contains("no metrics at all"),
        "{}",
        r[0].verdict
    );
    assert!(!all_passed(&r));
    assert!(all_passed(&[]));
}

#[test]
fn baseline_regression_beyond_tolerance_fails() {
    let base = metrics(json!({"accuracy": 0.80}));
    let cur = metrics(json!({"accuracy": 0.72}));
    let r = check_baseline(&cur, &base, 0.02, None);
    assert_eq!(r.len(), 1);
    assert!(!r[0].passed);
    assert_eq!(r[0].name, "accuracy vs baseline");
    assert_eq!(
        r[0].verdict,
        "FAIL accuracy 0.72 regressed from 0.80 by 0.08 (tolerance 0.02)"
    );
    assert_eq!(r[0].expected, ">= 0.78 (baseline 0.80 - tolerance 0.02)");
}

#[test]
fn tolerance_edges() {
    let base = metrics(json!({"accuracy": 0.80}));
    let at_edge = metrics(json!({"accuracy": 0.78}));
    let r = check_baseline(&at_edge, &base, 0.02, None);
    assert!(
        r[0].passed,
        "exactly the tolerance passes: {}",
        r[0].verdict
    );
    assert!(
        r[0].verdict.contains("within tolerance 0.02"),
        "{}",
        r[0].verdict
    );

    let past = metrics(json!({"accuracy": 0.779}));
    assert!(!check_baseline(&past, &base, 0.02, None)[0].passed);

    let tiny_drop = metrics(json!({"accuracy": 0.7999}));
    assert!(!check_baseline(&tiny_drop, &base, 0.0, None)[0].passed);
    assert!(check_baseline(&base, &base, 0.0, None)[0].passed);
    // A negative tolerance counts as zero rather than failing unchanged metrics.
    assert!(check_baseline(&base, &base, -1.0, None)[0].passed);
}

#[test]
fn improvements_pass_in_either_direction() {
    let base = metrics(json!({"accuracy": 0.70, "error_rate": 0.10}));
    let cur = metrics(json!({"accuracy": 0.90, "error_rate": 0.05}));
    let r = check_baseline(&cur, &base, 0.0, None);
    assert!(r.iter().all(|g| g.passed), "{r:?}");
    assert_eq!(
        r[0].verdict,
        "PASS accuracy 0.90 vs baseline 0.70 (improved by 0.20)"
    );
    assert!(
        r[1].verdict.contains("improved by 0.05; lower is better"),
        "{}",
        r[1].verdict
    );

    // Lower-is-better metrics regress upwards.
    let worse = metrics(json!({"accuracy": 0.70, "error_rate": 0.20}));
    let r = check_baseline(&worse, &base, 0.05, None);
    assert!(r[0].passed);
    assert!(!r[1].passed);
    assert_eq!(
        r[1].verdict,
        "FAIL error_rate 0.20 regressed from 0.10 by 0.10 (tolerance 0.05; lower is better)"
    );
}

#[test]
fn baseline_skips_flow_metrics_and_non_numbers_unless_asked() {
    let base =
        metrics(json!({"accuracy": 0.8, "flow.latency_p95_ms": 100, "label": "x", "gone": 0.5}));
    let cur = metrics(json!({"accuracy": 0.8, "flow.latency_p95_ms": 900, "label": "y", "new": 1}));
    let r = check_baseline(&cur, &base, 0.02, None);
    let names: Vec<&str> = r.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["accuracy vs baseline", "gone vs baseline"]);
    assert!(r[0].passed);
    assert!(
        !r[1].passed,
        "a metric the baseline had and this run lost fails"
    );
    assert!(
        r[1].verdict
            .contains("the baseline has gone = 0.50 but this run has no metric gone"),
        "{}",
        r[1].verdict
    );

    let only = [
        "flow.latency_p95_ms".to_string(),
        "label".to_string(),
        "new".to_string(),
    ];
    let r = check_baseline(&cur, &base, 0.02, Some(&only));
    assert_eq!(r.len(), 3);
    assert!(
        !r[0].passed,
        "asked-for flow metric is gated: {}",
        r[0].verdict
    );
    assert!(
        r[0].verdict.contains("regressed from 100 by 800"),
        "{}",
        r[0].verdict
    );
    assert!(!r[1].passed);
    assert!(r[1].verdict.contains("not a number"), "{}", r[1].verdict);
    assert!(!r[2].passed);
    assert!(
        r[2].verdict.contains("the baseline run has no metric new"),
        "{}",
        r[2].verdict
    );
}

#[test]
fn k_of_n_per_line() {
    assert!(k_of_n(2, 3, 2));
    assert!(k_of_n(3, 3, 2));
    assert!(!k_of_n(1, 3, 2));
    assert!(k_of_n(0, 3, 0));
    assert!(!k_of_n(3, 3, 4), "more passes required than samples");
    assert!(!k_of_n(5, 3, 4), "passes beyond samples do not count");
    assert!(check_k(2, 3).is_ok());
    assert!(check_k(0, 3).is_err());
    assert!(
        check_k(4, 3)
            .unwrap_err()
            .to_string()
            .contains("between 1 and 3")
    );
}

#[test]
fn repeat_gate_names_the_flaky_lines() {
    let tally = |line_number, passes| LineTally {
        line_number,
        passes,
        samples: 3,
    };
    let ok = check_repeats("exact_match", &[tally(0, 3), tally(1, 2)], 2);
    assert!(ok.passed);
    assert_eq!(
        ok.verdict,
        "PASS exact_match: all 2 lines passed at least 2 of 3 samples"
    );
    let bad = check_repeats("exact_match", &[tally(0, 3), tally(4, 1), tally(7, 0)], 2);
    assert!(!bad.passed);
    assert_eq!(
        bad.verdict,
        "FAIL exact_match: 2 of 3 lines passed fewer than 2 of 3 samples: line 4 (1/3), line 7 (0/3)"
    );
    let many: Vec<LineTally> = (0..15).map(|i| tally(i, 0)).collect();
    let r = check_repeats("x", &many, 1);
    assert!(
        r.verdict.ends_with("line 9 (0/3) and 5 more"),
        "{}",
        r.verdict
    );
}

#[test]
fn numbers_are_formatted_for_people() {
    assert_eq!(fmt_num(0.8), "0.80");
    assert_eq!(fmt_num(0.913), "0.913");
    assert_eq!(fmt_num(1500.0), "1500");
    assert_eq!(fmt_num(12.5), "12.50");
    assert_eq!(fmt_num(-0.0), "0.00");
    assert_eq!(fmt_num(0.0), "0.00");
    assert_eq!(fmt_num(-0.25), "-0.25");
}
