//! Built-in evaluators: spec parsing, per-line scores, aggregates, and the text metrics
//! against values computed by their reference implementations.

use flow::evaluators::text::{rouge_l, sentence_bleu, token_f1};
use flow::evaluators::{EvalInput, EvaluatorSpec, Kind, Score, aggregate};
use serde_json::{Value, json};

fn spec(s: &str) -> EvaluatorSpec {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn err(s: &str) -> String {
    match s.parse::<EvaluatorSpec>() {
        Ok(_) => panic!("{s} parsed but should not"),
        Err(e) => e.to_string(),
    }
}

fn eval(s: &str, prediction: Value, reference: Value) -> Score {
    let input = EvalInput {
        prediction: Some(&prediction),
        reference: Some(&reference),
        ..Default::default()
    };
    spec(s).evaluate(&input)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

// Reference values: sacrebleu 2.6.0, `sacrebleu.sentence_bleu(hyp, refs).score / 100`
// (defaults: 13a tokenizer, exp smoothing, effective order).
const PAPINENI_REFS: [&str; 3] = [
    "It is a guide to action that ensures that the military will forever heed Party commands.",
    "It is the guiding principle which guarantees the military forces always being under the command of the Party.",
    "It is the practical guide for the army always to heed the directions of the party.",
];

#[test]
fn bleu_matches_sacrebleu() {
    let cat = ["the cat is on the mat"];
    let cases: &[(&str, &[&str], f64)] = &[
        ("the cat is on the mat", &cat, 1.0000000000000004),
        ("the the the the the the the", &cat, 0.07809849842300637),
        ("the cat sat on the mat", &cat, 0.3799178428257963),
        (
            "It is a guide to action which ensures that the military always obeys the commands of the party.",
            &PAPINENI_REFS,
            0.5401725898595141,
        ),
        (
            "It is to insure the troops forever hearing the activity guidebook that party direct.",
            &PAPINENI_REFS,
            0.06699559159060897,
        ),
        (
            "Hello, world! The price is 1,000.50 dollars.",
            &["Hello world. The price is 1,000.50 dollars!"],
            0.45499414040480374,
        ),
        ("cat", &cat, 0.0067379469990854705),
        ("The cat", &cat, 0.06766764161830635),
        ("dog", &cat, 0.0),
        ("", &cat, 0.0),
    ];
    for (hyp, refs, want) in cases {
        let got = sentence_bleu(hyp, refs);
        assert!(
            close(got, *want),
            "BLEU({hyp:?}) = {got}, sacrebleu says {want}"
        );
    }
}

#[test]
fn bleu_evaluator_lowercase_and_multiple_references() {
    // sacrebleu 2.6.0: sentence_bleu("The cat", ["the cat is on the mat"], lowercase=True)
    let s = eval(
        "bleu:lowercase,threshold=0.1",
        json!("The cat"),
        json!("the cat is on the mat"),
    );
    assert!(close(s.score.unwrap(), 0.13533528323661276), "{s:?}");
    assert!(s.passed);
    let refs = json!(PAPINENI_REFS);
    let hyp = "It is a guide to action which ensures that the military always obeys the commands of the party.";
    let s = eval("bleu", json!(hyp), refs);
    assert!(close(s.score.unwrap(), 0.5401725898595141), "{s:?}");
    assert!(s.passed, "0.54 passes the default threshold 0.5");
    let s = eval(
        "bleu",
        json!("the cat sat on the mat"),
        json!("the cat is on the mat"),
    );
    assert!(!s.passed);
    assert_eq!(s.reason, "bleu 0.380 is below the threshold 0.5");
}

// Reference values: rouge-score 0.1.2,
// `RougeScorer(["rougeL"]).score(target, prediction)["rougeL"].fmeasure`.
#[test]
fn rouge_l_matches_rouge_score() {
    let cases = [
        (
            "The quick brown fox jumps over the lazy dog",
            "The quick brown dog jumps on the log.",
            0.5882352941176471,
        ),
        (
            "the cat was found under the bed",
            "the cat was under the bed",
            0.923076923076923,
        ),
        ("police killed the gunman", "police kill the gunman", 0.75),
        ("the gunman kill police", "police kill the gunman", 0.5),
        ("Hello, World!", "hello world", 1.0),
        ("", "abc", 0.0),
    ];
    for (pred, target, want) in cases {
        let got = rouge_l(pred, target);
        assert!(
            close(got, want),
            "ROUGE-L({pred:?}, {target:?}) = {got}, rouge-score says {want}"
        );
    }
    // several references: the best one counts
    let s = eval(
        "rouge_l",
        json!("police kill the gunman"),
        json!(["x y z", "the gunman kill police"]),
    );
    assert!(close(s.score.unwrap(), 0.5) && s.passed, "{s:?}");
}

// Reference values: the official SQuAD v2.0 evaluation script's `compute_f1`
// (normalize_answer + bag-of-tokens F1), run with Python 3.
#[test]
fn token_f1_matches_squad_script() {
    let cases = [
        ("The Denver Broncos", "Denver Broncos", 1.0),
        ("Denver Broncos won the game", "the Broncos", 0.4),
        ("in the 1990s", "1990s and 2000s", 0.4),
        ("a", "the", 1.0),
        ("Carolina Panthers", "Denver Broncos", 0.0),
    ];
    for (p, g, want) in cases {
        let got = token_f1(p, g, true);
        assert!(
            close(got, want),
            "F1({p:?}, {g:?}) = {got}, SQuAD says {want}"
        );
    }
    assert!(close(token_f1("The Broncos", "The broncos", false), 0.5));
    let s = eval(
        "f1:threshold=0.3",
        json!("Denver Broncos won the game"),
        json!(["Carolina", "the Broncos"]),
    );
    assert!(close(s.score.unwrap(), 0.4) && s.passed, "{s:?}");
}

#[test]
fn exact_match_and_its_normalisations() {
    assert!(eval("exact_match", json!("Paris"), json!("Paris")).passed);
    let s = eval("exact_match", json!("paris"), json!("Paris"));
    assert_eq!((s.score, s.passed), (Some(0.0), false));
    assert_eq!(s.reason, r#"expected "Paris", got "paris""#);
    assert!(eval("exact_match:ignore_case", json!("paris"), json!("Paris")).passed);
    assert!(!eval("exact_match:ignore_case", json!("Paris."), json!("Paris")).passed);
    assert!(
        eval(
            "exact_match:ignore_case,strip_punctuation",
            json!("Paris."),
            json!("paris")
        )
        .passed
    );
    assert!(eval("exact_match:squad", json!("  The Paris! "), json!("paris")).passed);
    assert!(
        eval(
            "exact_match:normalize_whitespace",
            json!(" a \n b"),
            json!("a b")
        )
        .passed
    );
    // non-strings compare by their JSON text; an array reference lists alternatives
    assert!(eval("exact_match", json!(42), json!("42")).passed);
    assert!(eval("exact_match", json!({"a": 1}), json!({"a": 1})).passed);
    assert!(eval("em", json!("Lyon"), json!(["Paris", "Lyon"])).passed);
    assert!(
        eval(
            "exact_match",
            json!(["Paris", "Lyon"]),
            json!(["Paris", "Lyon"])
        )
        .passed
    );
}

#[test]
fn contains_and_not_contains() {
    assert!(eval("contains", json!("The capital is Paris."), json!("Paris")).passed);
    assert!(!eval("contains", json!("The capital is paris."), json!("Paris")).passed);
    assert!(
        eval(
            "contains:ignore_case",
            json!("The capital is paris."),
            json!("Paris")
        )
        .passed
    );
    let s = eval(
        "not_contains:text=sorry",
        json!("I'm sorry, I can't"),
        Value::Null,
    );
    assert_eq!(
        (s.passed, s.reason.as_str()),
        (false, r#"contains "sorry""#)
    );
    assert!(eval("not_contains:text=sorry", json!("Sure!"), Value::Null).passed);
    // a text with a comma stays whole
    let s = spec("contains:text=sorry, I,ignore_case");
    match &s.kind {
        Kind::Contains { text, options } => {
            assert_eq!(text.as_deref(), Some("sorry, I"));
            assert!(options.ignore_case);
        }
        other => panic!("{other:?}"),
    }
    assert!(!spec("contains:text=x").needs_reference());
    assert!(spec("contains").needs_reference());
}

#[test]
fn regex_is_json_and_schema() {
    assert!(eval(r"regex:pattern=^\d+$", json!("12345"), Value::Null).passed);
    let s = eval(r"regex:pattern=^\d{1,3}$", json!("12345"), Value::Null);
    assert_eq!(s.reason, r#""12345" does not match /^\d{1,3}$/"#);
    assert!(eval("regex:pattern=^yes,ignore_case", json!("YES"), Value::Null).passed);
    assert!(
        eval(r"regex:pattern=^\d+$", json!(7), Value::Null).passed,
        "numbers match by their text"
    );

    assert!(eval("is_json", json!(r#"{"a": [1, 2]}"#), Value::Null).passed);
    assert!(eval("is_json", json!({"a": 1}), Value::Null).passed);
    let s = eval("is_json", json!("{a: 1}"), Value::Null);
    assert!(
        !s.passed && s.reason.starts_with("not JSON: key must be a string"),
        "{s:?}"
    );
    let fenced = json!("```json\n{\"a\": 1}\n```");
    assert!(!eval("is_json", fenced.clone(), Value::Null).passed);
    assert!(eval("is_json:strip_fence", fenced, Value::Null).passed);

    let dir = tempfile::tempdir().unwrap();
    let schema = json!({"type": "object", "required": ["answer"], "properties": {"answer": {"type": "string"}, "score": {"type": "integer", "minimum": 1, "maximum": 5}}});
    std::fs::write(dir.path().join("schema.json"), schema.to_string()).unwrap();
    let s = EvaluatorSpec::parse("json_schema:file=schema.json", dir.path()).unwrap();
    let check = |v: Value| {
        s.evaluate(&EvalInput {
            prediction: Some(&v),
            ..Default::default()
        })
    };
    assert!(check(json!(r#"{"answer": "yes", "score": 3}"#)).passed);
    assert!(check(json!({"answer": "yes"})).passed);
    let bad = check(json!(r#"{"score": 9}"#));
    assert_eq!(
        bad.reason,
        "/: missing required property `answer` (and 1 more)"
    );
    assert!(check(json!("nope")).reason.starts_with("not JSON"));

    let e = EvaluatorSpec::parse("json_schema:file=missing.json", dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cannot read schema file") && e.contains("missing.json"),
        "{e}"
    );
    std::fs::write(dir.path().join("ref.json"), r##"{"$ref": "#/x"}"##).unwrap();
    let e = EvaluatorSpec::parse("json_schema:file=ref.json", dir.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("`$ref`") && e.contains("not supported"), "{e}");
}

#[test]
fn numeric_closeness() {
    assert!(eval("numeric", json!(42), json!(42.0)).passed);
    assert!(eval("numeric", json!("42"), json!(42)).passed);
    assert!(!eval("numeric", json!(42.001), json!(42)).passed);
    assert!(eval("numeric:tolerance=0.01", json!(42.001), json!(42)).passed);
    assert!(eval("numeric:rel_tolerance=0.05", json!(104), json!("100")).passed);
    let s = eval("numeric:rel_tolerance=0.05", json!(106), json!(100));
    assert_eq!(s.reason, "got 106, expected 100 (±0 or ±5%)");
    let s = eval("numeric", json!("The answer is 42."), json!(42));
    assert!(!s.passed && s.reason.contains("add `extract`"), "{s:?}");
    assert!(eval("numeric:extract", json!("The answer is 42."), json!(42)).passed);
    let s = eval("numeric", json!(1), json!("n/a"));
    assert_eq!(
        s.score, None,
        "a reference that is not a number cannot be scored"
    );
}

#[test]
fn budgets_score_the_measured_value() {
    let lat = spec("latency:max_ms=2000");
    assert!(!lat.needs_reference() && !lat.needs_prediction());
    let s = lat.evaluate(&EvalInput {
        latency_ms: Some(1500.0),
        ..Default::default()
    });
    assert_eq!(s, Score::pass(1500.0));
    let s = lat.evaluate(&EvalInput {
        latency_ms: Some(2500.0),
        ..Default::default()
    });
    assert_eq!(s.reason, "latency 2500ms is over the budget of 2000ms");
    let s = lat.evaluate(&EvalInput::default());
    assert_eq!(s, Score::unscored("no latency recorded for this line"));
    let s = spec("tokens:max=500").evaluate(&EvalInput {
        total_tokens: Some(501),
        ..Default::default()
    });
    assert_eq!((s.score, s.passed), (Some(501.0), false));
    let s = spec("cost:max_usd=0.01").evaluate(&EvalInput {
        cost_usd: Some(0.004),
        ..Default::default()
    });
    assert!(s.passed);
}

#[test]
fn missing_prediction_or_reference_fails_without_a_score() {
    let f1 = spec("f1");
    let s = f1.evaluate(&EvalInput {
        prediction: Some(&json!("x")),
        ..Default::default()
    });
    assert_eq!(s, Score::unscored("no reference value for this line"));
    let s = f1.evaluate(&EvalInput {
        reference: Some(&json!("x")),
        ..Default::default()
    });
    assert_eq!(s.score, None);
    assert!(!s.passed);
    let s = f1.evaluate(&EvalInput {
        prediction: Some(&json!("x")),
        reference: Some(&Value::Null),
        ..Default::default()
    });
    assert_eq!(s.score, None, "a null reference is no reference");

    let scores: Vec<Score> = [Some("Paris"), None, Some("Lyon")]
        .iter()
        .map(|p| {
            let p = p.map(|p| json!(p));
            spec("exact_match").evaluate(&EvalInput {
                prediction: p.as_ref(),
                reference: Some(&json!("Paris")),
                ..Default::default()
            })
        })
        .collect();
    let agg = aggregate(&scores);
    assert_eq!((agg.count, agg.scored, agg.mean), (3, 2, Some(0.5)));
    assert!(close(agg.pass_rate, 1.0 / 3.0));
}

#[test]
fn names_thresholds_and_metric_names() {
    let s = spec("f1");
    assert_eq!((s.name.as_str(), s.threshold), ("f1", Some(0.5)));
    assert_eq!(s.metric_names(), ["f1.mean", "f1.pass_rate"]);
    let s = spec("rouge-l:as=summary_rouge,threshold=0.3");
    assert_eq!(
        (s.name.as_str(), s.kind_name(), s.threshold),
        ("summary_rouge", "rouge_l", Some(0.3))
    );
    assert_eq!(
        s.metric_names(),
        ["summary_rouge.mean", "summary_rouge.pass_rate"]
    );
    assert_eq!(spec("exact_match").threshold, None);
    assert_eq!(
        spec(" Exact_Match : ignore_case ").to_string(),
        "Exact_Match : ignore_case"
    );
    assert!(!spec("bleu").needs_model());
}

#[test]
fn bad_specs_say_what_is_wrong_and_what_is_valid() {
    let e = err("exact_mach");
    assert!(e.starts_with("unknown evaluator `exact_mach` (did you mean `exact_match`?); built-in evaluators: exact_match, contains"), "{e}");
    let e = err("rogue_l");
    assert!(e.contains("did you mean `rouge_l`?"), "{e}");
    let e = err("frobnicate");
    assert!(
        !e.contains("did you mean") && e.contains("json_schema"),
        "{e}"
    );
    assert!(err("").starts_with("empty evaluator"));

    let e = err("exact_match:ignore_cas");
    assert!(
        e.contains("has no option `ignore_cas` (did you mean `ignore_case`?)"),
        "{e}"
    );
    assert!(
        e.contains("its options: as=..., ignore_case, strip_punctuation"),
        "{e}"
    );
    let e = err("exact_match:threshold=0.5");
    assert!(
        e.contains("has no option `threshold`"),
        "threshold is for continuous metrics: {e}"
    );
    assert_eq!(
        err("regex"),
        r"evaluator `regex` needs option `pattern`, e.g. `regex:pattern=^\d+$`"
    );
    assert!(err("regex:pattern=(").contains("is not a valid regular expression"));
    assert_eq!(
        err("f1:threshold=2"),
        "option `threshold=2` of evaluator `f1`: expected a number from 0 to 1"
    );
    assert_eq!(
        err("f1:threshold"),
        "option `threshold` of evaluator `f1` needs a value: `threshold=...`"
    );
    assert_eq!(
        err("f1:raw=yes"),
        "option `raw` of evaluator `f1` is a flag and takes no value: write `raw`"
    );
    assert_eq!(
        err("f1:raw,raw"),
        "option `raw` of evaluator `f1` is given twice"
    );
    assert_eq!(
        err("tokens:max=1.5"),
        "option `max=1.5` of evaluator `tokens`: expected a whole number of tokens"
    );
    assert!(err("latency").contains("needs option `max_ms`, e.g. `latency:max_ms=2000`"));
    assert!(err("numeric:tolerance=-1").contains("expected a number, 0 or more"));
    assert!(err("f1:as=a.b").contains("expected a metric name"));
}

#[test]
fn specs_from_separated_options_keep_commas_and_check_like_text() {
    let opts = vec![
        ("text".to_string(), Some("sorry, but".to_string())),
        ("ignore_case".to_string(), None),
    ];
    let s = EvaluatorSpec::from_options("not_contains", opts, std::path::Path::new(".")).unwrap();
    assert_eq!(s.to_string(), "not_contains:text=sorry, but,ignore_case");
    let p = json!("SORRY, BUT no");
    assert!(
        !s.evaluate(&EvalInput {
            prediction: Some(&p),
            ..Default::default()
        })
        .passed
    );
    let e = EvaluatorSpec::from_options(
        "f1",
        vec![("treshold".into(), Some("0.2".into()))],
        std::path::Path::new("."),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("has no option `treshold` (did you mean `threshold`?)"),
        "{e}"
    );
    let e = EvaluatorSpec::from_options("blue", vec![], std::path::Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(e.contains("did you mean `bleu`?"), "{e}");
}
