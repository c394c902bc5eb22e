//! A small question-answering project for report tests: a flow with two variants of an LLM
//! node (`ask`) and a Python node (`clean`), a dataset with nasty text (markup, a template, a
//! spreadsheet formula), a mock that answers each variant differently, and runs made by the
//! binary: `v0`, `v1` and their evaluations `v0-eval`, `v1-eval` (exact_match).

use super::context::TestContext;

const FLOW: &str = r#"
inputs:
  question: {type: string}
outputs:
  answer: {type: string, reference: '${clean.output}'}
nodes:
- {name: ask, use_variants: true}
- name: clean
  type: python
  source: {type: code, path: clean.py}
  inputs: {text: '${ask.output}'}
node_variants:
  ask:
    default_variant_id: variant_0
    variants:
      variant_0:
        node:
          type: llm
          source: {type: code, path: ask0.jinja2}
          inputs: {model: gpt-4o-mini, temperature: 0, question: '${inputs.question}'}
          connection: open_ai_connection
          api: chat
      variant_1:
        node:
          type: llm
          source: {type: code, path: ask1.jinja2}
          inputs: {model: gpt-4o-mini, temperature: 0, question: '${inputs.question}'}
          connection: open_ai_connection
          api: chat
"#;

const CLEAN: &str = "from promptflow.core import tool\n\n@tool\ndef clean(text: str) -> str:\n    if 'boom' in text:\n        raise ValueError('boom: the answer could not be cleaned')\n    return text.strip()\n";

/// An output that would set `data-pwned` on the body if it ever ran as markup.
pub const XSS_IMG: &str =
    r#""><img src=x onerror="document.body.setAttribute('data-pwned','img')">"#;
/// An output that would set `data-pwned` if it ever ran as a script.
pub const XSS_SCRIPT: &str =
    "</script><script>document.body.setAttribute('data-pwned','script')</script>";
/// A dataset question that tries to close a textarea, run a script and inject a template.
pub const XSS_INPUT: &str =
    "</textarea><script>document.title='pwned'</script> {{ 7*7 }} {% raw %}";
/// A dataset question that is a spreadsheet formula.
pub const FORMULA_INPUT: &str = r#"=HYPERLINK("http://evil.example","click me")"#;

/// (question, ground truth, variant_0's answer, variant_1's answer)
pub const LINES: [(&str, &str, &str, &str); 6] = [
    (
        "What is the capital of France?",
        "Paris",
        "Paris",
        "Paris, France",
    ),
    ("How much is 2 plus 2?", "4", "4", "4"),
    (XSS_INPUT, "safe", XSS_IMG, XSS_SCRIPT),
    (FORMULA_INPUT, "no", "-2+3", "@SUM(A1:A2)"),
    ("Which answer explodes?", "ok", "boom", "ok"),
    (
        "What colour is a clear sky?",
        "blue",
        "blue",
        "Blue, mostly.",
    ),
];

/// Write the flow and the dataset, and teach the mock each variant's answers.
pub fn setup(ctx: &TestContext) {
    ctx.flow(
        "qa",
        &[
            ("flow.dag.yaml", FLOW),
            ("clean.py", CLEAN),
            (
                "ask0.jinja2",
                "# system:\nAnswer briefly.\n# user:\nQ0: {{question}}\n",
            ),
            (
                "ask1.jinja2",
                "# system:\nAnswer in a sentence.\n# user:\nQ1: {{question}}\n",
            ),
        ],
    );
    let data: String = LINES
        .iter()
        .map(|(q, truth, _, _)| {
            format!(
                "{}\n",
                serde_json::json!({"question": q, "ground_truth": truth})
            )
        })
        .collect();
    ctx.write("data.jsonl", &data);
    for (q, _, a0, a1) in LINES {
        ctx.mock().reply_when(&format!("Q0: {q}"), a0);
        ctx.mock().reply_when(&format!("Q1: {q}"), a1);
    }
}

/// Run both variants (`v0`, `v1`; line 4 of v0 fails) and evaluate each with exact_match
/// (`v0-eval`, `v1-eval`).
pub fn runs_and_evaluations(ctx: &TestContext) {
    ctx.run(&[
        "run",
        "qa",
        "--data",
        "data.jsonl",
        "--name",
        "v0",
        "--no-cache",
    ])
    .expect_code(1);
    ctx.run(&[
        "run",
        "qa",
        "--data",
        "data.jsonl",
        "--name",
        "v1",
        "--variant",
        "${ask.variant_1}",
        "--no-cache",
    ])
    .expect_code(0);
    for run in ["v0", "v1"] {
        let eval = ctx.run(&[
            "eval",
            "--run",
            run,
            "--evaluator",
            "exact_match",
            "--name",
            &format!("{run}-eval"),
        ]);
        assert!(
            eval.code == 0 || eval.code == 1,
            "flow eval --run {run}: {eval:?}"
        );
    }
}
