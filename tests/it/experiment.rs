//! `flow experiment` end to end against the loopback mock: the shipped experiment (two prompt
//! variants, a temperature sweep, two datasets, an evaluation flow and a built-in evaluator),
//! variant selection, combinations, sweeps, `--max-runs`, overlays, connection placeholders,
//! located errors, cached re-runs and the shared line budget and rate limit.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::context::{TEST_KEY, TestContext, repo_root};
use serde_json::Value;

/// The repository's experiment (experiment.yaml, experiment.pr.yaml, flows/, datasets/) in a
/// project. The mock answers every ticket with its true category, except that the zero-shot
/// prompt (the default variant, and the sweep on top of it) always gets "other": the few-shot
/// variant `classify.variant_1` is clearly better.
fn shipped(ctx: &TestContext) {
    ctx.copy_from_repo("flows");
    ctx.copy_from_repo("datasets");
    for f in ["experiment.yaml", "experiment.pr.yaml"] {
        ctx.write(
            f,
            &std::fs::read_to_string(repo_root().join(f)).expect("shipped experiment file"),
        );
    }
    let few_shot =
        std::fs::read_to_string(repo_root().join("flows/classification/classify_few_shot.jinja2"))
            .unwrap();
    let mut rows: Vec<(String, String)> = Vec::new();
    for file in ["classification.jsonl", "classification-hard.jsonl"] {
        let text = std::fs::read_to_string(repo_root().join("datasets").join(file)).unwrap();
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            rows.push((
                v["text"].as_str().unwrap().to_string(),
                v["category"].as_str().unwrap().to_string(),
            ));
        }
    }
    // A ticket that is also a few-shot example matches every few-shot request: its rule goes
    // first, so each other ticket's own (later) rule wins.
    rows.sort_by_key(|(t, _)| !few_shot.contains(t.as_str()));
    for (t, c) in &rows {
        ctx.mock().reply_when(t, c);
    }
    ctx.mock()
        .reply_when("Classify the ticket into exactly one category", "other");
}

/// The only comparison directory of the project (or the newest, by name).
fn comparison(ctx: &TestContext) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(ctx.root().join(".flow/experiments"))
        .expect("experiments dir")
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    dirs.pop().expect("a comparison directory")
}

fn summary(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn variants(s: &Value) -> Vec<String> {
    s["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_shipped_experiment_runs_every_variant_and_names_the_winner() {
    let ctx = TestContext::with_mock();
    shipped(&ctx);
    let run = ctx.run(&["experiment"]);
    run.expect_code(0)
        .stderr_has("4 variants × 2 datasets = 8 runs, 16 evaluations")
        .stdout_has("winner: classify.variant_1");

    let dir = comparison(&ctx);
    let s = summary(&dir);
    assert_eq!(s["kind"], "flow.experiment");
    assert_eq!(s["experiment"], "classification");
    assert_eq!(
        variants(&s),
        [
            "default",
            "classify.variant_1",
            "classify.temperature=0.5",
            "classify.temperature=1.0"
        ]
    );
    assert_eq!(s["winner"], "classify.variant_1");
    assert!(
        s["winner_rule"]
            .as_str()
            .unwrap()
            .contains("highest mean `accuracy`")
    );
    assert_eq!(s["best"]["accuracy"]["variant"], "classify.variant_1");
    assert_eq!(s["best"]["accuracy"]["value"], 1.0);
    assert_eq!(s["means"]["classify.variant_1"]["accuracy"], 1.0);
    assert_eq!(s["means"]["classify.variant_1"]["exact_match.mean"], 1.0);
    // The zero-shot prompt answered "other": right only for the "other" tickets.
    assert_eq!(s["means"]["default"]["accuracy"], (0.25 + 0.12) / 2.0);

    let runs = s["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 8);
    for r in runs {
        let run_dir = dir.join(r["run_dir"].as_str().unwrap());
        assert!(
            run_dir.join("flow_outputs/output.jsonl").is_file(),
            "{run_dir:?}"
        );
        let evals = r["eval_dirs"].as_array().unwrap();
        assert_eq!(
            evals.len(),
            2,
            "an evaluation flow and a built-in evaluator: {r}"
        );
        let flow_eval = dir.join(evals[0].as_str().unwrap());
        let builtin = dir.join(evals[1].as_str().unwrap());
        assert!(read_json(&flow_eval.join("metrics.json"))["accuracy"].is_number());
        assert!(builtin.join("scores.jsonl").is_file());
        assert_eq!(
            read_json(&flow_eval.join("meta.json"))["base_run"]
                .as_str()
                .unwrap(),
            run_dir.canonicalize().unwrap().display().to_string()
        );
        // The run's meta records the experiment and the hashes.
        let meta = read_json(&run_dir.join("meta.json"));
        assert_eq!(meta["experiment"]["variant"], r["variant"]);
        assert_eq!(meta["experiment"]["hashes"]["flow"], r["flow_hash"]);
        assert!(r["flow_hash"].as_str().unwrap().starts_with("sha256:"));
    }
    let flows = s["hashes"]["flows"].as_object().unwrap();
    assert_eq!(flows.len(), 4);
    let distinct: std::collections::HashSet<&str> =
        flows.values().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(distinct.len(), 4, "each variant's flow hashes differently");
    assert!(
        s["hashes"]["datasets"]["tickets"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(s["hashes"]["experiment"]["experiment.yaml"].is_string());

    // The sweep ran the default variant with the swept temperature, and its snapshot says so.
    let requests = ctx.mock().requests();
    for t in [0.5, 1.0] {
        assert!(
            requests.iter().any(|r| r.body["temperature"] == t),
            "no request with temperature {t}"
        );
    }
    let swept = runs
        .iter()
        .find(|r| r["variant"] == "classify.temperature=0.5")
        .unwrap();
    let snapshot = std::fs::read_to_string(
        dir.join(swept["run_dir"].as_str().unwrap())
            .join("snapshot/flow.dag.yaml"),
    )
    .unwrap();
    assert!(snapshot.contains("temperature: 0.5"), "{snapshot}");

    // The reports: every run's lines in the long CSV, the comparison and winner in the HTML.
    assert!(run.stderr.contains("report.html"), "{}", run.stderr);
    let csv = std::fs::read_to_string(dir.join("report.csv")).unwrap();
    let lines: u64 = runs.iter().map(|r| r["lines"].as_u64().unwrap()).sum();
    let rows = csv::Reader::from_reader(csv.trim_start_matches('\u{feff}').as_bytes())
        .records()
        .count() as u64;
    assert_eq!(rows, lines, "one row per line × run");
    assert!(dir.join("report.wide.csv").is_file());
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("<title>Experiment classification</title>"));
    assert!(html.contains("winner <b class=\"winner\">classify.variant_1</b>"));
    assert!(
        html.contains("<select id=\"f-ds\">"),
        "two datasets to pick from"
    );
}

#[test]
fn rerunning_an_unchanged_experiment_makes_no_requests() {
    let ctx = TestContext::with_mock();
    shipped(&ctx);
    ctx.run(&["experiment", "--name", "first"]).expect_code(0);
    assert!(ctx.mock().request_count() > 0);
    ctx.mock().clear_requests();

    let started = std::time::Instant::now();
    let again = ctx.run(&["experiment", "--name", "second"]);
    again
        .expect_code(0)
        .stderr_has("unchanged since")
        .stdout_has("winner: classify.variant_1");
    assert_eq!(
        ctx.mock().request_count(),
        0,
        "a re-run is answered from the cache"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    let second = summary(&ctx.root().join(".flow/experiments/second"));
    assert!(
        second["unchanged_since"]
            .as_str()
            .unwrap()
            .ends_with("first")
    );
    let first = summary(&ctx.root().join(".flow/experiments/first"));
    assert_eq!(first["hashes"], second["hashes"]);
    assert!(
        second["runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["cache_hits"].as_u64() == r["lines"].as_u64())
    );
    // With --no-cache the same note says the answers are asked for again (and they are).
    ctx.run(&["experiment", "--name", "uncached", "--no-cache"])
        .expect_code(0)
        .stderr_has("(--no-cache: every answer is asked for again)");
    assert!(ctx.mock().request_count() > 0);
    ctx.mock().clear_requests();

    // A changed prompt is a changed experiment: new hash, new requests for that variant only.
    ctx.write(
        "flows/classification/classify_few_shot.jinja2",
        &std::fs::read_to_string(repo_root().join("flows/classification/classify_few_shot.jinja2"))
            .unwrap()
            .replace(
                "Reply with the category name only",
                "Reply with just the category name",
            ),
    );
    let third = ctx.run(&["experiment", "--name", "third"]);
    third.expect_code(0);
    assert!(
        !third.stderr.contains("unchanged since"),
        "{}",
        third.stderr
    );
    let s3 = summary(&ctx.root().join(".flow/experiments/third"));
    assert_ne!(
        s3["hashes"]["flows"]["classify.variant_1"],
        first["hashes"]["flows"]["classify.variant_1"]
    );
    assert_eq!(
        s3["hashes"]["flows"]["default"],
        first["hashes"]["flows"]["default"]
    );
    assert_eq!(
        ctx.mock().request_count(),
        28,
        "only the changed variant's 28 lines"
    );
}

#[test]
fn variants_default_all_and_a_list_select_the_runs() {
    let ctx = TestContext::with_mock();
    shipped(&ctx);
    ctx.run(&["experiment", "--variants", "default", "--dry-run"])
        .expect_code(0)
        .stderr_has("1 variant × 2 datasets = 2 runs");
    ctx.run(&["experiment", "--variants", "all", "--dry-run"])
        .expect_code(0)
        .stderr_has("4 variants × 2 datasets = 8 runs");
    let list = ctx.run(&[
        "experiment",
        "--variants",
        "classify.variant_1,classify.temperature=1.0",
        "--dry-run",
    ]);
    list.expect_code(0)
        .stderr_has("2 variants × 2 datasets = 4 runs")
        .stderr_has("  classify.variant_1\n  classify.temperature=1.0\n");
    assert_eq!(ctx.mock().request_count(), 0, "a dry run sends nothing");

    let bad = ctx.run(&["experiment", "--variants", "classify.variant_2"]);
    bad.expect_code(2)
        .stderr_has("unknown variant `classify.variant_2`")
        .stderr_has("did you mean `classify.variant_")
        .stderr_has(
            "help: variants: classify.variant_0, classify.variant_1, classify.temperature=0.5",
        );

    let one = ctx.run(&[
        "experiment",
        "--variants",
        "classify.variant_1",
        "--name",
        "one",
        "--output",
        "json",
    ]);
    one.expect_code(0);
    let s = summary(&ctx.root().join(".flow/experiments/one"));
    assert_eq!(
        one.json()["runs"],
        s["runs"],
        "--output json prints summary.json"
    );
    assert_eq!(variants(&s), ["classify.variant_1"]);
    assert_eq!(s["runs"].as_array().unwrap().len(), 2);
}

/// A flow with two nodes that have variants: `first` (a, b) and `second` (x, y, z).
fn two_node_flow(ctx: &TestContext) {
    let node = |prompt: &str| {
        let q = if prompt < "x" {
            "inputs.q"
        } else {
            "first.output"
        };
        format!(
            "        node:\n          type: llm\n          source: {{type: code, path: {prompt}}}\n          inputs: {{model: m, q: \"${{{q}}}\"}}\n          connection: open_ai_connection\n          api: chat\n"
        )
    };
    let yaml = format!(
        "inputs:\n  q: {{type: string}}\noutputs:\n  a: {{type: string, reference: \"${{second.output}}\"}}\nnodes:\n- name: first\n  use_variants: true\n- name: second\n  use_variants: true\nnode_variants:\n  first:\n    default_variant_id: a\n    variants:\n      a:\n{}      b:\n{}  second:\n    default_variant_id: x\n    variants:\n      x:\n{}      y:\n{}      z:\n{}",
        node("a.jinja2"),
        node("b.jinja2"),
        node("x.jinja2"),
        node("y.jinja2"),
        node("z.jinja2"),
    );
    ctx.write("flows/two/flow.dag.yaml", &yaml);
    for p in ["a", "b"] {
        ctx.write(
            &format!("flows/two/{p}.jinja2"),
            &format!("user:\nfirst {p}: {{{{q}}}}"),
        );
    }
    for p in ["x", "y", "z"] {
        ctx.write(
            &format!("flows/two/{p}.jinja2"),
            &format!("user:\nsecond {p}: {{{{q}}}}"),
        );
    }
    ctx.write("data.jsonl", "{\"q\": \"one\"}\n{\"q\": \"two\"}\n");
}

#[test]
fn combinations_run_the_product_of_node_variants_or_of_listed_nodes() {
    let ctx = TestContext::with_mock();
    two_node_flow(&ctx);
    ctx.write(
        "experiment.yaml",
        "name: two\nflow: flows/two\ndatasets:\n- name: d\n  source: data.jsonl\n  mappings:\n    q: \"${data.q}\"\n",
    );
    // Without a selection: each variant alone (all).
    ctx.run(&["experiment", "--dry-run"])
        .expect_code(0)
        .stderr_has("4 variants × 1 dataset = 4 runs");
    let all = ctx.run(&["experiment", "--combinations", "--dry-run"]);
    all.expect_code(0)
        .stderr_has("6 variants × 1 dataset = 6 runs")
        .stderr_has("  first.b+second.z\n");
    ctx.run(&["experiment", "--combinations", "second", "--dry-run"])
        .expect_code(0)
        .stderr_has("3 variants × 1 dataset = 3 runs");
    ctx.run(&["experiment", "--combinations", "secnd"])
        .expect_code(2)
        .stderr_has("did you mean `second`?");
    // The guard: more runs than allowed is refused before anything runs.
    let guarded = ctx.run(&["experiment", "--combinations", "--max-runs", "5"]);
    guarded
        .expect_code(2)
        .stderr_has("6 runs are planned, more than --max-runs 5");
    assert_eq!(ctx.mock().request_count(), 0);

    // The same from the file's own block, run for real.
    ctx.write(
        "experiment.yaml",
        "name: two\nflow: flows/two\ndatasets:\n- name: d\n  source: data.jsonl\n  mappings:\n    q: \"${data.q}\"\ncombinations: true\n",
    );
    ctx.run(&["experiment", "--name", "combo"]).expect_code(0);
    let s = summary(&ctx.root().join(".flow/experiments/combo"));
    assert_eq!(
        variants(&s),
        [
            "default",
            "second.y",
            "second.z",
            "first.b",
            "first.b+second.y",
            "first.b+second.z"
        ]
    );
    // Every combination really ran: the second node saw each first-node variant's text.
    let texts: Vec<String> = ctx
        .mock()
        .requests()
        .iter()
        .map(|r| r.body["messages"][0]["content"].to_string())
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("second z") && t.contains("first b")),
        "{texts:?}"
    );
    assert_eq!(s["winner"], Value::Null, "no evaluator, no winner");
}

#[test]
fn a_sweep_expands_into_variants_with_readable_ids() {
    let ctx = TestContext::with_mock();
    ctx.write(
        "flows/ask/flow.dag.yaml",
        "inputs:\n  q: {type: string}\noutputs:\n  a: {type: string, reference: \"${ask.output}\"}\nnodes:\n- name: ask\n  type: llm\n  source: {type: code, path: p.jinja2}\n  inputs: {model: gpt-4o-mini, temperature: 0, q: \"${inputs.q}\"}\n  connection: open_ai_connection\n  api: chat\n",
    );
    ctx.write("flows/ask/p.jinja2", "user:\n{{q}}");
    ctx.write("data.jsonl", "{\"q\": \"hello\", \"a\": \"hello\"}\n");
    ctx.write(
        "experiment.yaml",
        "name: sweep\nflow: flows/ask\ndatasets:\n- name: d\n  source: data.jsonl\n  mappings:\n    q: \"${data.q}\"\nevaluators:\n- name: exact\n  builtin: exact_match\n  datasets:\n  - name: d\n    mappings:\n      ground_truth: \"${data.a}\"\nsweep:\n- node: ask\n  parameters:\n    temperature: [0, 0.7]\n    model: [gpt-4o-mini, gpt-4o]\n",
    );
    ctx.run(&["experiment", "--name", "s"]).expect_code(0);
    let s = summary(&ctx.root().join(".flow/experiments/s"));
    assert_eq!(
        variants(&s),
        [
            "default",
            "ask.temperature=0,model=gpt-4o-mini",
            "ask.temperature=0,model=gpt-4o",
            "ask.temperature=0.7,model=gpt-4o-mini",
            "ask.temperature=0.7,model=gpt-4o"
        ]
    );
    let mut seen: Vec<(String, String)> = ctx
        .mock()
        .requests()
        .iter()
        .map(|r| {
            (
                r.body["model"].to_string(),
                r.body["temperature"].to_string(),
            )
        })
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen,
        [
            ("\"gpt-4o\"".to_string(), "0".to_string()),
            ("\"gpt-4o\"".to_string(), "0.7".to_string()),
            ("\"gpt-4o-mini\"".to_string(), "0".to_string()),
            ("\"gpt-4o-mini\"".to_string(), "0.7".to_string()),
        ]
    );
    // The default and `temperature=0,model=gpt-4o-mini` are the same request: asked once.
    assert_eq!(ctx.mock().request_count(), 4);
    // A sweep id can be selected like any variant, commas and all.
    ctx.run(&[
        "experiment",
        "--variants",
        "ask.temperature=0.7,model=gpt-4o,default",
        "--dry-run",
    ])
    .expect_code(0)
    .stderr_has("2 variants × 1 dataset = 2 runs");
}

#[test]
fn an_overlay_replaces_blocks_and_an_empty_evaluators_turns_evaluation_off() {
    let ctx = TestContext::with_mock();
    shipped(&ctx);
    // The shipped PR overlay: the hard dataset only, no sweep.
    ctx.run(&["experiment", "--env", "pr", "--name", "pr"])
        .expect_code(0)
        .stderr_has("overlay ")
        .stderr_has("2 variants × 1 dataset = 2 runs, 4 evaluations");
    let s = summary(&ctx.root().join(".flow/experiments/pr"));
    assert_eq!(s["datasets"], serde_json::json!(["tickets_hard"]));
    assert!(
        s["overlay"]
            .as_str()
            .unwrap()
            .ends_with("experiment.pr.yaml")
    );
    assert!(s["hashes"]["experiment"]["experiment.pr.yaml"].is_string());
    assert_eq!(s["winner"], "classify.variant_1");

    // An overlay with an empty `evaluators:` (as the GenAIOps templates' PR overlays have).
    ctx.write(
        "experiment.dev.yaml",
        "name: classification\ndatasets:\n- name: tickets_dev\n  source: datasets/classification-hard.jsonl\n  mappings:\n    text: \"${data.text}\"\nevaluators:\n",
    );
    ctx.run(&[
        "experiment",
        "--env",
        "dev",
        "--variants",
        "default",
        "--name",
        "dev",
    ])
    .expect_code(0)
    .stderr_has("1 variant × 1 dataset = 1 run, 0 evaluations")
    .stdout_has("winner: none");
    let s = summary(&ctx.root().join(".flow/experiments/dev"));
    let runs = s["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["dataset"], "tickets_dev");
    assert_eq!(runs[0]["eval_dirs"], serde_json::json!([]));

    // No overlay for that environment: the base file as it is.
    ctx.run(&["experiment", "--env", "prod", "--dry-run"])
        .expect_code(0)
        .stderr_has("no ")
        .stderr_has("4 variants × 2 datasets");
}

#[test]
fn connection_placeholders_resolve_from_connection_field_variables() {
    let ctx = TestContext::with_mock();
    ctx.write(
        "flows/ask/flow.dag.yaml",
        "inputs:\n  q: {type: string}\noutputs:\n  a: {type: string, reference: \"${ask.output}\"}\nnodes:\n- name: ask\n  type: llm\n  source: {type: code, path: p.jinja2}\n  inputs: {model: m, q: \"${inputs.q}\"}\n  connection: aoai\n  api: chat\n",
    );
    ctx.write("flows/ask/p.jinja2", "user:\n{{q}}");
    ctx.write("data.jsonl", "{\"q\": \"hello\"}\n");
    ctx.write(
        "experiment.yaml",
        &format!(
            "name: conn\nflow: flows/ask\nconnections:\n- name: aoai\n  connection_type: OpenAIConnection\n  api_base: {}\n  api_key: ${{api_key}}\ndatasets:\n- name: d\n  source: data.jsonl\n  mappings:\n    q: \"${{data.q}}\"\n",
            ctx.mock().openai_base()
        ),
    );
    let missing = ctx.cmd().arg("experiment").output().unwrap();
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("needs the environment variable AOAI_API_KEY"),
        "{stderr}"
    );
    assert!(stderr.contains("experiment.yaml:7:12"), "located: {stderr}");

    let ok = ctx
        .cmd()
        .arg("experiment")
        .env("AOAI_API_KEY", TEST_KEY)
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let requests = ctx.mock().requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].header("authorization"),
        Some(format!("Bearer {TEST_KEY}").as_str())
    );
    // Secrets never reach the comparison.
    let s = std::fs::read_to_string(comparison(&ctx).join("summary.json")).unwrap();
    assert!(!s.contains(TEST_KEY));
}

/// A local server set up in the environment (`AOAI_API_BASE`, as `.env` would) needs no key:
/// the file's `${api_key}` left unset sends none, rather than demanding a dummy value.
#[test]
fn an_api_key_placeholder_is_optional_for_a_base_url_from_the_environment() {
    let ctx = TestContext {
        dir: tempfile::tempdir().unwrap(),
        mock: Some(crate::support::mock_llm::MockLlm::start()),
    };
    ctx.write(
        "flows/ask/flow.dag.yaml",
        "inputs:\n  q: {type: string}\noutputs:\n  a: {type: string, reference: \"${ask.output}\"}\nnodes:\n- name: ask\n  type: llm\n  source: {type: code, path: p.jinja2}\n  inputs: {model: m, q: \"${inputs.q}\"}\n  connection: aoai\n  api: chat\n",
    );
    ctx.write("flows/ask/p.jinja2", "user:\n{{q}}");
    ctx.write("data.jsonl", "{\"q\": \"hello\"}\n");
    ctx.write(
        "experiment.yaml",
        "name: conn\nflow: flows/ask\nconnections:\n- name: aoai\n  connection_type: OpenAIConnection\n  api_key: ${api_key}\ndatasets:\n- name: d\n  source: data.jsonl\n  mappings:\n    q: \"${data.q}\"\n",
    );
    let out = ctx
        .cmd()
        .arg("experiment")
        .env("AOAI_API_BASE", ctx.mock().openai_base())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let requests = ctx.mock().requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].header("authorization"), None);
    // Without that base the key is the vendor's, and still required.
    let out = ctx.cmd().arg("experiment").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AOAI_API_KEY"));
}

#[test]
fn every_dataset_is_checked_before_the_first_run_starts() {
    let ctx = TestContext::with_mock();
    shipped(&ctx);
    let text = std::fs::read_to_string(ctx.root().join("experiment.yaml")).unwrap();
    // The second dataset's mapping names a column it does not have.
    let at = text.find("- name: tickets_hard").unwrap();
    let broken = format!(
        "{}{}",
        &text[..at],
        text[at..].replacen("text: \"${data.text}\"", "text: \"${data.txt}\"", 1)
    );
    ctx.write("experiment.yaml", &broken);
    let run = ctx.run(&["experiment"]);
    run.expect_code(2)
        .stderr_has("dataset `tickets_hard`")
        .stderr_has("has no column `txt`")
        .stderr_has("did you mean `text`?")
        .stderr_has("experiment.yaml:");
    assert!(ctx.mock().requests().is_empty(), "no line ran");
    assert!(
        !ctx.root().join(".flow/runs").exists()
            || std::fs::read_dir(ctx.root().join(".flow/runs"))
                .unwrap()
                .count()
                == 0,
        "no run was started"
    );

    // An evaluation flow's dataset is checked too, before any run.
    let broken = text.replacen(
        "groundtruth: \"${data.category}\"",
        "groundtruth: \"${data.categry}\"",
        1,
    );
    ctx.write("experiment.yaml", &broken);
    ctx.run(&["experiment"])
        .expect_code(2)
        .stderr_has("evaluator `accuracy`, dataset `tickets`")
        .stderr_has("has no column `categry`");
    assert!(ctx.mock().requests().is_empty(), "no line ran");
}

#[test]
fn bad_experiment_files_give_located_errors() {
    let ctx = TestContext::new();
    ctx.copy_from_repo("flows");
    ctx.copy_from_repo("datasets");
    let cases: &[(&str, &[&str])] = &[
        (
            "name: x\nflow: flows/classification\ndatasets:\n- name: d\n  source: datasets/classification.jsonl\n",
            &[
                "experiment.yaml:4:",
                "dataset 'd' config missing parameter: mappings",
            ],
        ),
        (
            "name: x\nflow: flows/classification\ndatasets:\n- name: tickets\n  source: datasets/classification.jsonl\n  mappings: {}\nevaluators:\n- name: e\n  flow: flows/eval-accuracy\n  datasets:\n  - name: other\n    source: datasets/eval-accuracy.jsonl\n    reference: tickts\n    mappings: {}\n",
            &[
                "experiment.yaml:13:16",
                "referenced dataset 'tickts' not defined",
                "did you mean `tickets`?",
            ],
        ),
        (
            "name: x\nflow: flows/classification\ndatasets:\n- name: d\n  source: nowhere.jsonl\n  mappings: {}\n",
            &[
                "experiment.yaml:5:11",
                "dataset file `nowhere.jsonl` not found",
            ],
        ),
        (
            "name: x\nflow: flows/nope\ndatasets:\n- name: d\n  source: datasets/classification.jsonl\n  mappings: {}\n",
            &["experiment.yaml:2:7", "flow `flows/nope` not found"],
        ),
        (
            "name: x\nflow: flows/classification\ndatasets: [\n",
            &["experiment.yaml:", "invalid YAML"],
        ),
        (
            "name: x\nflow: flows/classification\ndatasets:\n- name: d\n  source: datasets/classification.jsonl\n  mappings: {}\nsweep:\n- node: clasify\n  parameters: {temperature: [0, 1]}\n",
            &[
                "experiment.yaml:8:9",
                "sweep: the flow has no node `clasify`",
                "did you mean `classify`?",
            ],
        ),
        (
            "name: x\nflow: flows/classification\ndatasets:\n- name: d\n  source: datasets/classification.jsonl\n  mappings: {}\nevaluators:\n- name: e\n  builtin: exact_macth\n  datasets: [{name: d, mappings: {}}]\n",
            &["experiment.yaml:9:12", "exact_macth"],
        ),
        (
            "flow: flows/classification\n",
            &["has no `name`", "no datasets configured for experiment"],
        ),
    ];
    for (text, expected) in cases {
        ctx.write("experiment.yaml", text);
        let run = ctx.run(&["experiment", "--offline"]);
        assert_eq!(run.code, 2, "{text}\n{}", run.stderr);
        for e in *expected {
            assert!(
                run.stderr.contains(e),
                "expected `{e}` for\n{text}\ngot:\n{}",
                run.stderr
            );
        }
        assert!(!run.stderr.contains("panicked"));
    }
    ctx.run(&["experiment", "missing.yaml"])
        .expect_code(2)
        .stderr_has("no experiment file at missing.yaml");
}

/// `n` variants of one node (distinct prompts) over a dataset of `lines` questions.
fn many_variants(ctx: &TestContext, n: usize, lines: usize) {
    let mut yaml = String::from(
        "inputs:\n  q: {type: string}\noutputs:\n  a: {type: string, reference: \"${ask.output}\"}\nnodes:\n- name: ask\n  use_variants: true\nnode_variants:\n  ask:\n    default_variant_id: v0\n    variants:\n",
    );
    for i in 0..n {
        yaml.push_str(&format!(
            "      v{i}:\n        node:\n          type: llm\n          source: {{type: code, path: p{i}.jinja2}}\n          inputs: {{model: m, q: \"${{inputs.q}}\"}}\n          connection: open_ai_connection\n          api: chat\n"
        ));
        ctx.write(
            &format!("flows/ask/p{i}.jinja2"),
            &format!("user:\nvariant {i}: {{{{q}}}}"),
        );
    }
    ctx.write("flows/ask/flow.dag.yaml", &yaml);
    let data: String = (0..lines)
        .map(|i| format!("{{\"q\": \"question {i}\"}}\n"))
        .collect();
    ctx.write("data.jsonl", &data);
    ctx.write(
        "experiment.yaml",
        "name: many\nflow: flows/ask\ndatasets:\n- name: d\n  source: data.jsonl\n  mappings:\n    q: \"${data.q}\"\n",
    );
}

#[test]
fn runs_share_one_line_budget() {
    let ctx = TestContext::with_mock();
    let latency = Duration::from_millis(300);
    ctx.mock().set_latency(latency);
    many_variants(&ctx, 4, 10);
    let started = std::time::Instant::now();
    ctx.run(&["experiment", "--concurrency", "3", "--no-cache"])
        .expect_code(0)
        .stderr_has("4 variants × 1 dataset = 4 runs");
    let elapsed = started.elapsed();
    assert_eq!(ctx.mock().request_count(), 40);
    // The mock answers 300 ms after a request arrives: arrivals within a shorter window were
    // in flight at once. Four runs of concurrency 3 each would reach 12.
    let arrivals = ctx.mock().request_times();
    let window = Duration::from_millis(200);
    let most = (0..arrivals.len())
        .map(|i| {
            arrivals[i..]
                .iter()
                .take_while(|a| a.duration_since(arrivals[i]) < window)
                .count()
        })
        .max()
        .unwrap();
    assert!(most <= 3, "{most} requests in flight across the experiment");
    assert!(most >= 2, "runs should overlap, at most {most} did");
    assert!(elapsed >= latency * 40 / 3, "{elapsed:?}");
}

#[test]
fn runs_share_one_rate_limiter_per_endpoint() {
    let ctx = TestContext::with_mock();
    // The bucket holds the first wave of lines; after it, the endpoint allows 40 requests/s and
    // says so in its x-ratelimit headers.
    let (rps, burst, n) = (40.0, 64, 4 * 50);
    ctx.mock().set_rate_limit(rps, burst);
    many_variants(&ctx, 4, 50);
    let started = std::time::Instant::now();
    ctx.run(&["experiment", "--concurrency", "64", "--no-cache"])
        .expect_code(0);
    let elapsed = started.elapsed();
    let sent_429 = ctx.mock().rate_limited_count() as usize;
    eprintln!("{n} requests in {elapsed:?}, {sent_429} 429s");
    assert_eq!(ctx.mock().request_count(), n + sent_429);
    // One limiter for the endpoint paces all four runs together at the limit (about 10 429s
    // here). A limiter per run, each pacing at the full limit, drew about 75.
    assert!(sent_429 < n / 5, "{sent_429} 429s for {n} requests");
    let s = summary(&comparison(&ctx));
    assert!(
        s["runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["failed_lines"] == 0)
    );
}

#[test]
fn a_genaiops_template_experiment_loads_unmodified() {
    let ctx = TestContext::new();
    let project = ctx.copy_from_repo("tests/fixtures/genaiops/web_classification");
    let in_project = |args: &[&str], key: bool| {
        let mut cmd = ctx.cmd();
        cmd.current_dir(&project).args(args);
        if key {
            cmd.env("AOAI_API_KEY", "sk-anything");
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = in_project(&["experiment", "--dry-run"], true);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("2 variants × 2 datasets = 4 runs, 4 evaluations"),
        "{stderr}"
    );
    assert!(
        stderr.contains("  summarize_text_content.variant_1\n"),
        "{stderr}"
    );
    // Its PR overlay: one dataset, evaluation off. Its dev overlay is empty: the base as is.
    let (code, stderr) = in_project(&["experiment", "--env", "pr", "--dry-run"], true);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("2 variants × 1 dataset = 2 runs, 0 evaluations"),
        "{stderr}"
    );
    let (code, stderr) = in_project(&["experiment", "--env", "dev", "--dry-run"], true);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("= 4 runs, 4 evaluations"), "{stderr}");
    // `api_key: ${api_key}` of connection `aoai` is AOAI_API_KEY, as in the template.
    let (code, stderr) = in_project(&["experiment", "--dry-run"], false);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("AOAI_API_KEY"), "{stderr}");
}

#[test]
fn the_commented_example_runs_offline() {
    let ctx = TestContext::new();
    ctx.copy_from_repo("flows");
    ctx.copy_from_repo("datasets");
    let examples = ctx.root().join("examples");
    std::fs::create_dir_all(&examples).unwrap();
    for f in ["experiment.yaml", "experiment.pr.yaml"] {
        ctx.write(
            &format!("examples/experiment/{f}"),
            &std::fs::read_to_string(repo_root().join("examples/experiment").join(f)).unwrap(),
        );
    }
    let run = ctx.run(&[
        "experiment",
        "examples/experiment/experiment.yaml",
        "--offline",
    ]);
    run.expect_code(0)
        .stderr_has("4 variants × 2 datasets = 8 runs, 16 evaluations")
        .stdout_has("offline: the answers came from the echo provider");
    let s = summary(&comparison(&ctx));
    // The evaluator dataset that references `tickets_hard` scored its runs.
    let hard = s["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["dataset"] == "tickets_hard")
        .unwrap();
    assert_eq!(hard["eval_dirs"].as_array().unwrap().len(), 2);
    assert!(hard["metrics"]["accuracy"].is_number());
    assert_eq!(s["offline"], true);
    ctx.run(&[
        "experiment",
        "examples/experiment/experiment.yaml",
        "--offline",
        "--env",
        "pr",
        "--dry-run",
    ])
    .expect_code(0)
    .stderr_has("2 variants × 1 dataset = 2 runs, 4 evaluations");
}

#[test]
fn an_llm_judge_scores_every_run_through_the_shared_client() {
    let ctx = TestContext::with_mock();
    ctx.write(
        "flows/ask/flow.dag.yaml",
        "inputs:\n  question: {type: string}\noutputs:\n  answer: {type: string, reference: \"${ask.output}\"}\nnodes:\n- name: ask\n  use_variants: true\nnode_variants:\n  ask:\n    default_variant_id: short\n    variants:\n      short:\n        node: {type: llm, source: {type: code, path: short.jinja2}, inputs: {model: m, question: \"${inputs.question}\"}, connection: open_ai_connection, api: chat}\n      long:\n        node: {type: llm, source: {type: code, path: long.jinja2}, inputs: {model: m, question: \"${inputs.question}\"}, connection: open_ai_connection, api: chat}\n",
    );
    ctx.write("flows/ask/short.jinja2", "user:\nBriefly: {{question}}");
    ctx.write("flows/ask/long.jinja2", "user:\nIn depth: {{question}}");
    ctx.write(
        "data.jsonl",
        "{\"question\": \"What is a DAG?\"}\n{\"question\": \"What is a flow?\"}\n",
    );
    // The judge rates answers to the in-depth prompt 5, the brief ones 2.
    ctx.mock().reply_when("Metric: RELEVANCE.", "2");
    ctx.mock().reply_when("In depth", "A thorough answer.");
    ctx.mock().reply_when("A thorough answer.", "5");
    ctx.write(
        "experiment.yaml",
        "name: judged\nflow: flows/ask\ndatasets:\n- name: d\n  source: data.jsonl\n  mappings:\n    question: \"${data.question}\"\nevaluators:\n- name: relevance\n  builtin: relevance\n  options:\n    connection: judge\n  datasets:\n  - name: d\n    mappings:\n      question: \"${data.question}\"\n      prediction: \"${run.outputs.answer}\"\n",
    );
    let run = ctx
        .cmd()
        .args(["experiment", "--name", "j"])
        .env("JUDGE_API_KEY", TEST_KEY)
        .env("JUDGE_API_BASE", ctx.mock().openai_base())
        .env("JUDGE_MODEL", "gpt-judge")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    let s = summary(&ctx.root().join(".flow/experiments/j"));
    assert_eq!(s["winner"], "ask.long", "{s}");
    assert_eq!(s["means"]["ask.long"]["relevance.mean"], 5.0);
    assert_eq!(s["means"]["default"]["relevance.mean"], 2.0);
    let eval_dir = ctx
        .root()
        .join(".flow/experiments/j")
        .join(s["runs"][0]["eval_dirs"][0].as_str().unwrap());
    assert!(eval_dir.join("judge_scores.jsonl").is_file());
    let described = read_json(&eval_dir.join("evaluators.json"));
    assert_eq!(described[0]["model"], "gpt-judge");

    // A judge whose key is refused: the comparison means nothing, and the experiment exits as
    // an unusable endpoint (3), not as a quality failure (1).
    let run = ctx
        .cmd()
        .args(["experiment", "--name", "j-refused", "--no-cache"])
        .env("JUDGE_API_KEY", "sk-refused-0000000000")
        .env("JUDGE_API_BASE", ctx.mock().openai_base())
        .env("JUDGE_MODEL", "gpt-judge")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("an evaluator's endpoint could not be used"),
        "{stderr}"
    );
    assert!(stderr.contains("JUDGE_API_KEY"), "{stderr}");

    // A judge without a connection is refused where it is written.
    ctx.write(
        "experiment.yaml",
        "name: judged\nflow: flows/ask\ndatasets:\n- name: d\n  source: data.jsonl\n  mappings: {}\nevaluators:\n- name: relevance\n  builtin: relevance\n  datasets: [{name: d, mappings: {}}]\n",
    );
    ctx.run(&["experiment"])
        .expect_code(2)
        .stderr_has("experiment.yaml:9:12")
        .stderr_has("connection");
}

#[test]
fn ctrl_c_stops_every_run_keeps_what_finished_and_a_rerun_finishes_from_the_cache() {
    let ctx = TestContext::with_mock();
    ctx.mock().set_latency(Duration::from_millis(150));
    many_variants(&ctx, 2, 20);
    let child = ctx
        .std_cmd()
        .args(["experiment", "--name", "stopped", "--concurrency", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while ctx.mock().request_count() < 6 {
        assert!(started.elapsed() < Duration::from_secs(20), "nothing ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("run the experiment again"), "{stderr}");
    let s = summary(&ctx.root().join(".flow/experiments/stopped"));
    let runs = s["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|r| r["status"] == "canceled"), "{s}");
    let asked = ctx.mock().request_count();
    assert!(asked < 40, "{asked}");

    ctx.mock().set_latency(Duration::ZERO);
    ctx.run(&["experiment", "--name", "finished"])
        .expect_code(0);
    let s = summary(&ctx.root().join(".flow/experiments/finished"));
    let cached: u64 = s["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["cache_hits"].as_u64().unwrap())
        .sum();
    assert!(cached >= 4, "finished lines come from the cache: {cached}");
    assert!(ctx.mock().request_count() - asked <= 40 - cached as usize + 2);
}

#[test]
fn every_rows_images_are_checked_before_the_first_run_starts() {
    let ctx = TestContext::with_mock();
    ctx.flow(
        "flows/look",
        &[
            (
                "flow.dag.yaml",
                "inputs:\n  q: {type: string}\n  img: {type: image}\noutputs:\n  a: {reference: '${ask.output}'}\nnodes:\n- name: ask\n  type: llm\n  source: {type: code, path: ask.jinja2}\n  inputs: {q: '${inputs.q}', img: '${inputs.img}', model: gpt-4o}\n  connection: open_ai_connection\n  api: chat\n",
            ),
            ("ask.jinja2", "user:\n{{q}}\n![image]({{img}})\n"),
        ],
    );
    std::fs::write(
        ctx.root().join("flows/look/red.png"),
        crate::images::png(2, 2, [255, 0, 0]),
    )
    .unwrap();
    ctx.write(
        "data.jsonl",
        "{\"q\": \"one\", \"img\": \"red.png\"}\n{\"q\": \"two\", \"img\": \"gone.png\"}\n",
    );
    ctx.write(
        "experiment.yaml",
        "name: look\nflow: flows/look\ndatasets:\n- name: d\n  source: data.jsonl\n  mappings:\n    q: \"${data.q}\"\n    img: \"${data.img}\"\n",
    );
    let run = ctx.run(&["experiment"]);
    run.expect_code(2)
        .stderr_has("dataset `d`")
        .stderr_has("data.jsonl:2")
        .stderr_has("gone.png")
        .stderr_has("experiment.yaml:");
    assert!(ctx.mock().requests().is_empty(), "no line ran");
}

/// A flex flow whose class entry needs `greeting`; the line for `Bob` fails until a marker
/// file exists (for resume). Its evaluation flow is a class too, needing `word`.
fn class_flows(ctx: &TestContext) {
    ctx.flow(
        "greet",
        &[
            ("flow.flex.yaml", "entry: flow:Greeter\n"),
            (
                "flow.py",
                "import os\n\nclass Greeter:\n    def __init__(self, greeting: str, times: int = 1):\n        self.greeting = greeting\n        self.times = times\n\n    def __call__(self, name: str) -> dict:\n        if name == 'Bob' and not os.path.exists(os.path.join(os.path.dirname(__file__), 'healed')):\n            raise ValueError('not yet')\n        return {'text': ' '.join([self.greeting + ' ' + name] * self.times)}\n",
            ),
        ],
    );
    ctx.flow(
        "judge",
        &[
            ("flow.flex.yaml", "entry: judge:Judge\n"),
            (
                "judge.py",
                "class Judge:\n    def __init__(self, word: str):\n        self.word = word\n\n    def __call__(self, text: str) -> dict:\n        return {'has_word': 1 if self.word in text else 0}\n\n    def __aggregate__(self, results):\n        return {'has_word': sum(r['has_word'] for r in results) / len(results)}\n",
            ),
        ],
    );
    ctx.write("people.jsonl", "{\"name\": \"Ada\"}\n{\"name\": \"Bob\"}\n");
}

const CLASS_EXPERIMENT: &str = "name: greet\nflow: greet\ninit:\n  greeting: Hello\n  times: 2\ndatasets:\n- name: people\n  source: people.jsonl\n  mappings:\n    name: \"${data.name}\"\nevaluators:\n- name: judge\n  flow: judge\n  init:\n    word: Hello\n  datasets:\n  - name: people\n    mappings:\n      text: \"${run.outputs.text}\"\n";

/// `init:` in the experiment file makes the flow's class entry (and `evaluators[].init` an
/// evaluation flow's), checked before the first run like `--init`, and recorded in each run's
/// meta so `flow run --resume` makes the class the same way.
#[test]
fn class_entries_take_their_init_from_the_experiment_file() {
    let ctx = TestContext::new();
    class_flows(&ctx);
    ctx.write("experiment.yaml", CLASS_EXPERIMENT);
    // Bob's line fails, the run still completes (its evaluation scores Ada's line)
    let run = ctx.run(&["experiment"]);
    assert!(run.code == 0 || run.code == 1, "{run:?}");
    let s = summary(&comparison(&ctx));
    assert_eq!(s["means"]["default"]["has_word"], 1.0, "{s:#}");
    let run_dir = comparison(&ctx).join(s["runs"][0]["run_dir"].as_str().unwrap());
    let out = std::fs::read_to_string(run_dir.join("flow_outputs/output.jsonl")).unwrap();
    assert!(out.contains("Hello Ada Hello Ada"), "{out}");
    let meta = read_json(&run_dir.join("meta.json"));
    assert_eq!(
        meta["settings"]["init_values"],
        serde_json::json!({"greeting": "Hello", "times": 2}),
        "{meta:#}"
    );
    let eval_dir = comparison(&ctx).join(s["runs"][0]["eval_dirs"][0].as_str().unwrap());
    let eval_meta = read_json(&eval_dir.join("meta.json"));
    assert_eq!(
        eval_meta["settings"]["init_values"],
        serde_json::json!({"word": "Hello"})
    );

    // Resumed, the failed line runs with the init the experiment gave.
    ctx.write("greet/healed", "");
    let name = meta["name"].as_str().unwrap().to_string();
    ctx.run(&["run", "--resume", &name]).expect_code(0);
    let out = std::fs::read_to_string(run_dir.join("flow_outputs/output.jsonl")).unwrap();
    assert!(out.contains("Hello Bob Hello Bob"), "{out}");

    // Checked before the first run, located at the experiment file's `init:`.
    let runs_before = std::fs::read_dir(ctx.root().join(".flow/runs"))
        .unwrap()
        .count();
    ctx.write(
        "experiment.yaml",
        &CLASS_EXPERIMENT.replace("  greeting: Hello\n", "  greting: Hello\n"),
    );
    let refused = ctx.run(&["experiment"]);
    refused
        .expect_code(2)
        .stderr_has("`init:` of ")
        .stderr_has("`greting` is not a parameter of `Greeter.__init__`")
        .stderr_has("did you mean `greeting`?")
        .stderr_has("experiment.yaml:4:")
        .stderr_has("add `greeting: ...` under `init:` in the experiment file");
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    for root in [ctx.root().to_path_buf(), ctx.root().canonicalize().unwrap()] {
        settings.add_filter(&regex::escape(&root.display().to_string()), "[PROJECT]");
    }
    settings.bind(|| insta::assert_snapshot!("experiment_init_unknown_key", refused.stderr));
    ctx.write(
        "experiment.yaml",
        &CLASS_EXPERIMENT.replace("    word: Hello\n", "    wrd: Hello\n"),
    );
    ctx.run(&["experiment"])
        .expect_code(2)
        .stderr_has("`wrd` is not a parameter of `Judge.__init__`");
    assert_eq!(
        std::fs::read_dir(ctx.root().join(".flow/runs"))
            .unwrap()
            .count(),
        runs_before
    );
    // `init` on a built-in evaluator is refused
    ctx.write(
        "experiment.yaml",
        &CLASS_EXPERIMENT.replace("  flow: judge\n", "  builtin: exact_match\n"),
    );
    ctx.run(&["experiment"])
        .expect_code(2)
        .stderr_has("`init` is for an evaluation flow's class entry");
}

/// The GenAIOps template's `init.json`: a class entry without `init:` in the experiment file is
/// made with the `init.json` beside its flow file, `${...}` values read from
/// `<ARGUMENT>_<FIELD>` (or `<ARGUMENT>`) as the template reads them; an unset one is refused
/// before anything runs, naming the file, the value and the variable.
#[test]
fn a_class_entrys_init_json_is_used_as_the_genaiops_template_uses_it() {
    let ctx = TestContext::new();
    class_flows(&ctx);
    ctx.write("greet/healed", "");
    ctx.write(
        "greet/init.json",
        "{\"greeting\": \"${greeting}\", \"times\": 2}",
    );
    ctx.write("judge/init.json", "{\"word\": \"Hello\"}");
    let experiment = "name: greet\nflow: greet\ndatasets:\n- name: people\n  source: people.jsonl\n  mappings:\n    name: \"${data.name}\"\nevaluators:\n- name: judge\n  flow: judge\n  datasets:\n  - name: people\n    mappings:\n      text: \"${run.outputs.text}\"\n";
    ctx.write("experiment.yaml", experiment);
    ctx.run(&["experiment"]).expect_code(2).stderr_has(
        "init.json: `greeting` is `${greeting}`, to be read from GREETING, which is not set",
    );
    let run = ctx
        .cmd()
        .env("GREETING", "Hello")
        .args(["experiment"])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let s = summary(&comparison(&ctx));
    assert_eq!(s["means"]["default"]["has_word"], 1.0, "{s:#}");
    let run_dir = comparison(&ctx).join(s["runs"][0]["run_dir"].as_str().unwrap());
    let out = std::fs::read_to_string(run_dir.join("flow_outputs/output.jsonl")).unwrap();
    assert!(out.contains("Hello Ada Hello Ada"), "{out}");
    assert_eq!(
        read_json(&run_dir.join("meta.json"))["settings"]["init_values"],
        serde_json::json!({"greeting": "Hello", "times": 2})
    );
    // The experiment file's own `init:` wins over init.json.
    ctx.write(
        "experiment.yaml",
        CLASS_EXPERIMENT
            .replace("  greeting: Hello\n", "  greeting: Hi\n")
            .as_str(),
    );
    ctx.run(&["experiment"]).expect_code(0);
    let s = summary(&comparison(&ctx));
    let run_dir = comparison(&ctx).join(s["runs"][0]["run_dir"].as_str().unwrap());
    let out = std::fs::read_to_string(run_dir.join("flow_outputs/output.jsonl")).unwrap();
    assert!(out.contains("Hi Ada Hi Ada"), "{out}");
    // Beside a function entry an init.json makes nothing, and the run says so.
    ctx.flow(
        "plain",
        &[
            ("flow.flex.yaml", "entry: plain:greet\n"),
            (
                "plain.py",
                "def greet(name: str) -> dict:\n    return {'text': 'hi ' + name}\n",
            ),
            ("init.json", "{\"greeting\": \"Hello\"}"),
        ],
    );
    ctx.write(
        "experiment.yaml",
        "name: plain\nflow: plain\ndatasets:\n- name: people\n  source: people.jsonl\n  mappings:\n    name: \"${data.name}\"\n",
    );
    ctx.run(&["experiment"])
        .expect_code(0)
        .stderr_has("init.json is not used: the flow's entry is not a class");
}
