//! `flow report` end to end over runs made by the binary against the mock: CSV (long and wide,
//! quoting, formula neutralisation, BOM), JSON, HTML, evaluation runs, experiment directories,
//! the reports `flow eval` writes, and errors.

use crate::support::context::TestContext;
use crate::support::qa_project::{
    FORMULA_INPUT, LINES, XSS_IMG, XSS_SCRIPT, runs_and_evaluations, setup,
};

fn project() -> TestContext {
    let ctx = TestContext::with_mock();
    setup(&ctx);
    runs_and_evaluations(&ctx);
    ctx
}

fn read_csv(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

fn col(header: &[String], name: &str) -> usize {
    header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name} in {header:?}"))
}

#[test]
fn long_csv_has_a_row_per_line_and_run_with_scores_and_neutralised_formulas() {
    let ctx = project();
    let run = ctx.run(&[
        "report", "v0-eval", "v1-eval", "--format", "csv", "-o", "out.csv",
    ]);
    run.expect_code(0).stdout_has("wrote out.csv");
    let bytes = std::fs::read(ctx.root().join("out.csv")).unwrap();
    assert!(
        bytes.starts_with(b"\xEF\xBB\xBF"),
        "a file gets a UTF-8 BOM"
    );
    let (header, rows) = read_csv(&String::from_utf8(bytes).unwrap());
    assert_eq!(
        header,
        [
            "run",
            "verdict",
            "variant",
            "dataset",
            "line_number",
            "inputs.question",
            "outputs.answer",
            "scores.exact_match",
            "scores.exact_match.passed",
            "status",
            "passed",
            "error",
            "latency_ms",
            "tokens",
            "cost_usd"
        ]
    );
    assert_eq!(rows.len(), 2 * LINES.len(), "one row per line × run");
    let (run, line, q, answer, score, status, error) = (
        col(&header, "run"),
        col(&header, "line_number"),
        col(&header, "inputs.question"),
        col(&header, "outputs.answer"),
        col(&header, "scores.exact_match"),
        col(&header, "status"),
        col(&header, "error"),
    );
    // Runs of one flow with distinct variants are labelled by variant, lines in order.
    assert_eq!(rows[0][run], "default");
    assert_eq!(rows[1][run], "ask.variant_1");
    assert_eq!(rows[0][line], "0");
    assert_eq!(rows[0][answer], "Paris");
    assert_eq!(rows[0][score], "1");
    assert_eq!(rows[1][answer], "Paris, France");
    assert_eq!(rows[1][score], "0");
    // Markup round-trips as text; formulas are neutralised (inputs and outputs).
    assert_eq!(rows[4][answer], XSS_IMG);
    assert_eq!(rows[5][answer], XSS_SCRIPT);
    assert_eq!(rows[6][q], format!("'{FORMULA_INPUT}"));
    assert_eq!(rows[6][answer], "'-2+3");
    assert_eq!(rows[7][answer], "'@SUM(A1:A2)");
    // The failed line: status and error, no output, no score.
    assert_eq!(rows[8][status], "Failed");
    assert!(rows[8][error].contains("boom"), "{:?}", rows[8]);
    assert_eq!(rows[8][answer], "");
    assert_eq!(rows[9][status], "Completed");
    let latency: f64 = rows[0][col(&header, "latency_ms")].parse().unwrap();
    assert!(latency > 0.0);
    let tokens: u64 = rows[0][col(&header, "tokens")].parse().unwrap();
    assert!(tokens > 0);
}

#[test]
fn wide_csv_puts_runs_side_by_side_and_stdout_has_no_bom() {
    let ctx = project();
    let run = ctx.run(&["report", "v0", "v1", "--format", "csv", "--wide"]);
    run.expect_code(0);
    assert!(!run.stdout.starts_with('\u{feff}'), "no BOM on stdout");
    assert!(
        run.stderr.contains("v0-eval"),
        "the newest evaluation is used: {}",
        run.stderr
    );
    let (header, rows) = read_csv(&run.stdout);
    assert_eq!(&header[..3], ["dataset", "line_number", "inputs.question"]);
    assert!(
        header.contains(&"default: outputs.answer".to_string()),
        "{header:?}"
    );
    assert!(header.contains(&"ask.variant_1: outputs.answer".to_string()));
    assert!(header.contains(&"ask.variant_1: scores.exact_match".to_string()));
    assert_eq!(rows.len(), LINES.len(), "one row per line");
    let a0 = col(&header, "default: outputs.answer");
    let a1 = col(&header, "ask.variant_1: outputs.answer");
    assert_eq!(
        (rows[5][a0].as_str(), rows[5][a1].as_str()),
        ("blue", "Blue, mostly.")
    );
    let s0 = col(&header, "default: status");
    assert_eq!(rows[4][s0], "Failed");
    // Embedded newlines and quotes survive quoting.
    let reparsed = read_csv(&run.stdout).1;
    assert_eq!(reparsed, rows);
}

#[test]
fn json_report_has_runs_metrics_lines_and_node_traces() {
    let ctx = project();
    let run = ctx.run(&["report", "v1-eval", "--format", "json"]);
    run.expect_code(0);
    let doc = run.json();
    assert_eq!(doc["runs"].as_array().unwrap().len(), 1);
    let r = &doc["runs"][0];
    assert_eq!(r["name"], "v1");
    assert_eq!(r["evaluations"][0], "v1-eval");
    assert_eq!(r["summary"]["lines"], 6);
    assert_eq!(r["summary"]["failed"], 0);
    // exact_match passes "4" and "ok": 2 of 6.
    let rate = r["metrics"]["exact_match.pass_rate"].as_f64().unwrap();
    assert!((rate - 2.0 / 6.0).abs() < 1e-6, "{rate}");
    assert_eq!(r["summary"]["passed"], 2);
    let line = &doc["lines"][1]["cells"][0];
    assert_eq!(line["outputs"]["answer"], "4");
    assert_eq!(line["scores"]["exact_match"]["passed"], true);
    let trace = line["trace"].as_array().unwrap();
    let nodes: Vec<&str> = trace.iter().map(|n| n["node"].as_str().unwrap()).collect();
    assert_eq!(nodes, ["ask", "clean"], "node traces in the order they ran");
    assert_eq!(trace[0]["output"], "4");
    assert!(trace[0]["tokens"]["total_tokens"].as_u64().unwrap() > 0);
    assert!(
        trace[0]["inputs"]["question"]
            .as_str()
            .unwrap()
            .contains("2 plus 2")
    );
}

#[test]
fn html_report_is_one_self_contained_file_with_the_data_escaped() {
    let ctx = project();
    ctx.run(&[
        "report",
        "v0-eval",
        "v1-eval",
        "-o",
        "r.html",
        "--title",
        "<b>QA</b> & co",
    ])
    .expect_code(0)
    .stdout_has("wrote r.html");
    let html = std::fs::read_to_string(ctx.root().join("r.html")).unwrap();
    assert!(
        html.contains("<title>&lt;b&gt;QA&lt;&#x2F;b&gt; &amp; co</title>"),
        "title escaped"
    );
    // Outside the data block (which holds the dataset's text, URLs included), nothing that
    // could fetch anything.
    let data_start = html.find("<script type=\"application/json\"").unwrap();
    let data_end = data_start + html[data_start..].find("</script>").unwrap();
    let page = format!("{}{}", &html[..data_start], &html[data_end..]);
    for forbidden in [
        "http://", "https://", "<link", " src=", "@import", "url(", "//cdn",
    ] {
        assert!(
            !page.contains(forbidden),
            "the report references {forbidden}"
        );
    }
    assert!(html.contains("Content-Security-Policy"));
    assert!(html.contains("default-src &#x27;none&#x27;"));
    // Exactly one script that runs, and the data block; nothing from the data can close them.
    assert_eq!(html.matches("<script>").count(), 1);
    assert_eq!(html.matches("</script>").count(), 2);
    assert!(
        !html.contains("onerror=\"document"),
        "an output became markup"
    );
    assert!(!html.contains("<img"));
    assert!(
        html.contains("\\u003cimg src=x onerror="),
        "the payload is in the data, escaped"
    );
    for card in [
        "lines",
        "pass-rate",
        "tokens",
        "cost",
        "latency",
        "metric-exact_match.pass_rate",
    ] {
        assert!(
            html.contains(&format!("data-card=\"{card}\"")),
            "card {card}"
        );
    }
    assert!(html.contains("id=\"chart-metrics\""));
    assert!(html.contains("id=\"chart-score-exact_match\""));
    assert!(html.contains("id=\"chart-latency\""));
}

#[test]
fn baseline_and_best_are_marked_in_the_metrics() {
    let ctx = project();
    let run = ctx.run(&["report", "v0", "--baseline", "v1", "--format", "json"]);
    run.expect_code(0);
    let doc = run.json();
    assert_eq!(doc["baseline"], 0);
    assert_eq!(
        doc["runs"][0]["name"], "v1",
        "a baseline not among the runs comes first"
    );
    assert_eq!(doc["runs"][1]["name"], "v0");
    ctx.run(&["report", "v0", "v1", "--baseline", "v1", "-o", "r.html"])
        .expect_code(0);
    let html = std::fs::read_to_string(ctx.root().join("r.html")).unwrap();
    assert!(html.contains("deltas vs ask.variant_1"), "baseline named");
    // v0 passes 3 lines of 6 (Paris, 4, blue) and v1 passes 2 (4, ok): v0 is best and better.
    let row = html
        .split("<tr data-metric=\"exact_match.pass_rate\">")
        .nth(1)
        .unwrap()
        .split("</tr>")
        .next()
        .unwrap();
    assert!(row.contains("class=\"num best\">0.50"), "{row}");
    assert!(row.contains("class=\"delta better\">+0.167"), "{row}");
}

#[test]
fn an_experiment_directory_is_reported_from_its_summary() {
    let ctx = project();
    let summary = serde_json::json!({
        "kind": "flow.experiment",
        "experiment": "qa-variants",
        "created": "2026-12-03T08:00:00Z",
        "runs": [
            {"label": "variant_0 · data", "variant": "default", "dataset": "data",
             "run_dir": "../../runs/v0", "eval_dirs": ["../../runs/v0-eval"], "metrics": {}},
            {"label": "variant_1 · data", "variant": "ask.variant_1", "dataset": "data",
             "run_dir": ctx.root().join(".flow/runs/v1"), "eval_dirs": [ctx.root().join(".flow/runs/v1-eval")], "metrics": {}}
        ],
        "best": {},
        "winner": "default"
    });
    ctx.write(
        ".flow/experiments/qa_20261203/summary.json",
        &serde_json::to_string_pretty(&summary).unwrap(),
    );
    let run = ctx.run(&["report", "qa_20261203", "--format", "json"]);
    run.expect_code(0);
    let doc = run.json();
    assert_eq!(doc["title"], "Experiment qa-variants");
    assert_eq!(doc["experiment"]["winner"], "default");
    assert_eq!(doc["runs"][0]["label"], "variant_0 · data");
    assert_eq!(doc["runs"][1]["label"], "variant_1 · data");
    assert_eq!(doc["runs"][1]["evaluations"][0], "v1-eval");
    assert_eq!(
        doc["lines"][0]["cells"][1]["scores"]["exact_match"]["passed"],
        false
    );
    // By path too, and --format all writes the three files.
    ctx.run(&[
        "report",
        ".flow/experiments/qa_20261203",
        "--format",
        "all",
        "-o",
        "out",
    ])
    .expect_code(0);
    for f in ["report.html", "report.csv", "report.wide.csv"] {
        assert!(ctx.root().join("out").join(f).is_file(), "{f}");
    }
}

#[test]
fn the_csv_reports_carry_each_runs_gate_verdict() {
    let ctx = project();
    // v0 has a failed line (its evaluation fails); v1 passes; a third, gated evaluation fails.
    ctx.run(&[
        "eval",
        "--run",
        "v1",
        "--evaluator",
        "exact_match",
        "--threshold",
        "exact_match.pass_rate>=1.1",
        "--name",
        "v1-gated",
        "--no-report",
    ])
    .expect_code(1);
    for (eval, verdict) in [
        (
            "v0-eval",
            "failed: 1 line(s) of run `v0` failed; they count as failed evaluations",
        ),
        ("v1-eval", "passed"),
        ("v1-gated", "failed: 1 gate(s) failed"),
    ] {
        let run = ctx.run(&["report", eval, "--format", "csv"]);
        run.expect_code(0);
        let (header, rows) = read_csv(&run.stdout);
        assert_eq!(header[1], "verdict", "{header:?}");
        assert!(!rows.is_empty());
        assert!(
            rows.iter().all(|r| r[1] == verdict),
            "{eval}: every row says the run's verdict {verdict:?}: {rows:?}"
        );
        let wide = ctx.run(&["report", eval, "--format", "csv", "--wide"]);
        let (header, rows) = read_csv(&wide.expect_code(0).stdout);
        let at = header
            .iter()
            .position(|h| h.ends_with(": verdict"))
            .expect("a verdict column per run");
        assert!(rows.iter().all(|r| r[at] == verdict), "{rows:?}");
    }
    // A run nobody evaluated has no verdict: the cell is empty, never "passed".
    ctx.run(&[
        "run",
        "qa",
        "--data",
        "data.jsonl",
        "--name",
        "v2",
        "--variant",
        "${ask.variant_1}",
    ])
    .expect_code(0);
    let run = ctx.run(&["report", "v2", "--format", "csv"]);
    let (_, rows) = read_csv(&run.expect_code(0).stdout);
    assert!(rows.iter().all(|r| r[1].is_empty()), "{rows:?}");
}

#[test]
fn flow_eval_writes_the_reports_into_its_run_directory() {
    let ctx = project();
    let dir = ctx.root().join(".flow/runs/v1-eval");
    for f in ["report.html", "report.csv", "report.wide.csv"] {
        assert!(dir.join(f).is_file(), "{f} in {}", dir.display());
    }
    let csv = std::fs::read_to_string(dir.join("report.csv")).unwrap();
    assert_eq!(read_csv(&csv).1.len(), LINES.len());
    let run = ctx.run(&[
        "eval",
        "--run",
        "v1",
        "--evaluator",
        "exact_match",
        "--name",
        "quiet",
        "--no-report",
    ]);
    run.expect_code(0);
    assert!(!run.stderr.contains("report:"), "{}", run.stderr);
    assert!(!ctx.root().join(".flow/runs/quiet/report.html").exists());
    let run = ctx.run(&[
        "eval",
        "--run",
        "v1",
        "--evaluator",
        "exact_match",
        "--name",
        "loud",
    ]);
    run.expect_code(0).stderr_has("report.html");
}

#[test]
fn an_unknown_run_is_a_usage_error_with_a_hint() {
    let ctx = project();
    ctx.run(&["report", "v2"])
        .expect_code(2)
        .stderr_has("no run `v2`")
        .stderr_has("did you mean");
    ctx.write("empty/summary.json", "{\"runs\": []}");
    ctx.run(&["report", "empty"])
        .expect_code(2)
        .stderr_has("lists no runs");
    ctx.write("broken/summary.json", "{not json");
    ctx.run(&["report", "broken"])
        .expect_code(2)
        .stderr_has("summary.json");
}

#[test]
fn traces_can_be_limited_to_lines_that_did_not_pass_or_left_out() {
    let ctx = project();
    let run = ctx.run(&[
        "report",
        "v1-eval",
        "--format",
        "json",
        "--traces",
        "not-passed",
    ]);
    run.expect_code(0);
    let doc = run.json();
    assert_eq!(doc["traces"], "not-passed");
    // Line 1 ("4") passed: no trace; line 0 ("Paris, France") did not: traced.
    assert!(doc["lines"][1]["cells"][0].get("trace").is_none());
    assert_eq!(doc["lines"][0]["cells"][0]["trace"][0]["node"], "ask");
    let run = ctx.run(&["report", "v1-eval", "--format", "json", "--traces", "none"]);
    let doc = run.json();
    assert_eq!(doc["traces"], "none");
    assert!(doc["lines"][0]["cells"][0].get("trace").is_none());
    // A small report (under 6,000 line × run cells) has every trace by default.
    let doc = ctx.run(&["report", "v1-eval", "--format", "json"]).json();
    assert_eq!(doc["traces"], "all");
    assert_eq!(doc["lines"][1]["cells"][0]["trace"][1]["node"], "clean");
}

#[test]
fn runs_over_different_datasets_are_kept_apart() {
    let ctx = project();
    let first_two: String = std::fs::read_to_string(ctx.root().join("data.jsonl"))
        .unwrap()
        .lines()
        .take(2)
        .map(|l| format!("{l}\n"))
        .collect();
    ctx.write("small.jsonl", &first_two);
    ctx.run(&[
        "run",
        "qa",
        "--data",
        "small.jsonl",
        "--name",
        "small",
        "--no-cache",
    ])
    .expect_code(0);
    let doc = ctx
        .run(&["report", "v1", "small", "--format", "json"])
        .json();
    assert_eq!(
        doc["datasets"],
        serde_json::json!(["data.jsonl", "small.jsonl"])
    );
    assert_eq!(doc["runs"][1]["dataset"], 1);
    let lines = doc["lines"].as_array().unwrap();
    assert_eq!(
        lines.len(),
        LINES.len() + 2,
        "line 0 of each dataset is its own row"
    );
    assert_eq!(lines[LINES.len()]["dataset"], 1);
    assert!(
        lines[0]["cells"][1].is_null(),
        "small did not run data.jsonl's lines"
    );
    let (header, rows) = {
        let run = ctx.run(&["report", "v1", "small", "--format", "csv"]);
        read_csv(&run.stdout)
    };
    assert_eq!(rows.len(), LINES.len() + 2);
    assert_eq!(rows.last().unwrap()[col(&header, "dataset")], "small.jsonl");
}

/// Text that reads differently from what it is — a bidi override, a zero-width space, a control
/// character — in a model's answer, a dataset value and a run name is shown as its code point in
/// the HTML report, never as the raw character.
#[test]
fn html_shows_bidi_overrides_and_invisible_characters_as_code_points() {
    let ctx = TestContext::with_mock();
    ctx.flow(
        "f",
        &[
            (
                "flow.dag.yaml",
                "inputs: {q: {type: string}}\noutputs:\n  a: {reference: '${ask.output}'}\nnodes:\n- {name: ask, type: llm, source: {type: code, path: ask.jinja2}, connection: open_ai_connection, api: chat, inputs: {model: m, q: '${inputs.q}'}}\n",
            ),
            ("ask.jinja2", "user:\n{{q}}"),
        ],
    );
    ctx.mock().reply_when(
        "refund",
        "status: \u{202E}devorppa\u{202C} hidden\u{200B}word\u{7}",
    );
    ctx.write("data.jsonl", "{\"q\": \"refund \\u2067please\\u2069\"}\n");
    ctx.run(&[
        "run",
        "f",
        "--data",
        "data.jsonl",
        "--name",
        "bidi\u{202E}run",
    ])
    .expect_code(0);
    ctx.run(&[
        "report",
        "bidi\u{202E}run",
        "--format",
        "html",
        "-o",
        "r.html",
    ])
    .expect_code(0);
    let html = std::fs::read_to_string(ctx.root().join("r.html")).unwrap();
    for raw in [
        '\u{202E}', '\u{202C}', '\u{200B}', '\u{2067}', '\u{2069}', '\u{7}',
    ] {
        assert!(
            !html.contains(raw),
            "the report holds a raw U+{:04X}",
            u32::from(raw)
        );
    }
    for shown in [
        "⟨U+202E⟩devorppa⟨U+202C⟩ hidden⟨U+200B⟩word⟨U+0007⟩",
        "refund ⟨U+2067⟩please⟨U+2069⟩",
        "bidi⟨U+202E⟩run",
    ] {
        assert!(html.contains(shown), "the report lacks `{shown}`");
    }
}

/// `flow report` replaces a report it wrote before, but never a file it did not write.
#[test]
fn a_report_never_overwrites_a_file_flow_did_not_write() {
    let ctx = project();
    ctx.write("notes.html", "<html>my own notes</html>");
    ctx.write("budget.csv", "item,cost\nrent,100\n");
    ctx.run(&["report", "v0-eval", "-o", "notes.html"])
        .expect_code(2)
        .stderr_has("notes.html exists and is not a report flow wrote");
    ctx.run(&["report", "v0-eval", "--format", "csv", "-o", "budget.csv"])
        .expect_code(2)
        .stderr_has("budget.csv exists and is not a report flow wrote");
    assert_eq!(
        std::fs::read_to_string(ctx.root().join("notes.html")).unwrap(),
        "<html>my own notes</html>"
    );
    assert_eq!(
        std::fs::read_to_string(ctx.root().join("budget.csv")).unwrap(),
        "item,cost\nrent,100\n"
    );
    // Its own reports are replaced, in every format.
    for (format, file) in [("html", "r.html"), ("csv", "r.csv"), ("json", "r.json")] {
        for _ in 0..2 {
            ctx.run(&["report", "v0-eval", "--format", format, "-o", file])
                .expect_code(0);
        }
    }
    ctx.run(&[
        "report", "v0-eval", "--format", "csv", "--wide", "-o", "w.csv",
    ])
    .expect_code(0);
    ctx.run(&[
        "report", "v0-eval", "--format", "csv", "--wide", "-o", "w.csv",
    ])
    .expect_code(0);
}
