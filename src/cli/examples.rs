//! The "Examples:" block at the end of every command's `--help`: a few real command lines per
//! command, kept in one table so a test can check that every command has them and that each
//! one parses.

use clap::Command;

/// One example: what it does, and the command line (a `\n` continues it on the next line,
/// shown with a shell `\`).
type Example = (&'static str, &'static str);

/// The examples of each command, by subcommand path (`[]` is `flow` itself).
const EXAMPLES: &[(&[&str], &[Example])] = &[
    (
        &[],
        &[
            (
                "Run one line without a model (the offline echo provider)",
                "flow run flows/hello --inputs question=\"What is a DAG?\" --offline",
            ),
            (
                "Run a dataset as a batch run named main",
                "flow run flows/classification --data datasets/classification.jsonl --name main",
            ),
            (
                "Evaluate it and fail below 80% accuracy",
                "flow eval --run main flows/eval-accuracy\n--column-mapping groundtruth='${data.category}' prediction='${run.outputs.category}'\n--threshold 'accuracy>=0.8' --name main-eval",
            ),
            (
                "Report the run with its evaluation as one HTML page",
                "flow report main",
            ),
        ],
    ),
    (
        &["run"],
        &[
            (
                "Run one line and print its outputs",
                "flow run flows/hello --inputs question=\"What is a DAG?\"",
            ),
            (
                "Run one line with a variant, as JSON for a script",
                "flow run flows/classification --variant '${classify.variant_1}' --inputs text=hi --output json",
            ),
            (
                "Run every row of a dataset, 8 lines at a time",
                "flow run flows/classification --data datasets/classification.jsonl --concurrency 8 --name main",
            ),
            (
                "Finish a stopped or partly failed batch run",
                "flow run --resume main",
            ),
        ],
    ),
    (
        &["validate"],
        &[
            ("Check a flow", "flow validate flows/classification"),
            (
                "Check it with a variant applied",
                "flow validate flows/classification --variant '${classify.variant_1}'",
            ),
        ],
    ),
    (
        &["connections"],
        &[
            (
                "Show the connections a flow needs and whether each resolves",
                "flow connections flows/hello",
            ),
            (
                "The same, reading the variables from another file",
                "flow connections flows/hello --env-file .env.staging",
            ),
        ],
    ),
    (
        &["connections", "check"],
        &[
            (
                "Call each connection of a flow once",
                "flow connections check flows/hello",
            ),
            (
                "The same with the staging variables",
                "flow connections check flows/hello --env-file .env.staging",
            ),
        ],
    ),
    (
        &["eval"],
        &[
            (
                "Score a run with an evaluation flow, gate on a metric and write JUnit XML",
                "flow eval --run main flows/eval-accuracy\n--column-mapping groundtruth='${data.category}' prediction='${run.outputs.category}'\n--threshold 'accuracy>=0.8' --junit junit.xml",
            ),
            (
                "Score it with a built-in evaluator instead, and write a Markdown summary",
                "flow eval --run main --evaluator exact_match:ignore_case\n--column-mapping ground_truth='${data.category}' --summary summary.md",
            ),
            (
                "Fail a metric more than 0.02 worse than the main branch's evaluation, as JSON",
                "flow eval --run pr flows/eval-accuracy\n--column-mapping groundtruth='${data.category}' prediction='${run.outputs.category}'\n--baseline main-eval --tolerance 0.02 --output json",
            ),
        ],
    ),
    (
        &["experiment"],
        &[
            (
                "Run ./experiment.yaml: every variant, evaluated and compared",
                "flow experiment",
            ),
            (
                "Show the runs a PR overlay would plan, without running them",
                "flow experiment experiment.yaml --env pr --dry-run",
            ),
            (
                "Every combination of the nodes' variants, refusing more than 20 runs",
                "flow experiment --combinations --max-runs 20",
            ),
            (
                "Shard 1 of 4 of every run, kept in object storage",
                "flow experiment --shard 1/4 --upload s3://bucket/exp",
            ),
        ],
    ),
    (
        &["cache"],
        &[
            ("Show the response cache", "flow cache stats"),
            (
                "Remove responses older than a week",
                "flow cache clear --older-than 7d",
            ),
        ],
    ),
    (
        &["cache", "stats"],
        &[
            ("Show the project's response cache", "flow cache stats"),
            (
                "Show another cache directory",
                "flow cache stats --cache-dir /tmp/flow-cache",
            ),
        ],
    ),
    (
        &["cache", "clear"],
        &[
            ("Remove every cached response", "flow cache clear"),
            (
                "Remove responses older than a week",
                "flow cache clear --older-than 7d",
            ),
        ],
    ),
    (
        &["runs"],
        &[
            ("List the newest runs", "flow runs list --limit 10"),
            ("Show one run", "flow runs show main"),
            ("Delete a run", "flow runs delete main"),
        ],
    ),
    (
        &["runs", "list"],
        &[
            ("List the 10 newest runs", "flow runs list --limit 10"),
            ("Every run as JSON", "flow runs list --output json"),
        ],
    ),
    (
        &["runs", "show"],
        &[
            (
                "Show a run's counts, metrics and first errors",
                "flow runs show main",
            ),
            (
                "Its meta.json and metrics.json as one JSON object",
                "flow runs show main --output json",
            ),
        ],
    ),
    (
        &["runs", "merge"],
        &[
            (
                "Merge two local shard runs",
                "flow runs merge main-shard-1-of-2 main-shard-2-of-2 --name main",
            ),
            (
                "Merge the shards in object storage and upload the result",
                "flow runs merge s3://bucket/runs/main-shards --name main --to s3://bucket/runs",
            ),
        ],
    ),
    (
        &["runs", "delete"],
        &[
            ("Delete a run", "flow runs delete main"),
            ("Delete two runs", "flow runs delete main main_eval"),
        ],
    ),
    (
        &["init"],
        &[
            (
                "A standard project in a new directory",
                "flow init my-project",
            ),
            (
                "A chat flow in the current directory",
                "flow init --template chat",
            ),
        ],
    ),
    (
        &["serve"],
        &[
            ("Serve a flow on port 8080", "flow serve flows/chat"),
            (
                "Serve on every interface, as in a container, without a request log",
                "flow serve flows/chat --host 0.0.0.0 --port 8000 --log off",
            ),
        ],
    ),
    (
        &["build"],
        &[
            (
                "A Docker build context for a flow",
                "flow build flows/chat --out-dir build/chat",
            ),
            (
                "With a variant applied",
                "flow build flows/classification --variant '${classify.variant_1}' --out-dir build/cls",
            ),
        ],
    ),
    (
        &["deploy"],
        &[
            (
                "Write Kubernetes manifests for an image (nothing is applied)",
                "flow deploy --target kubernetes --image registry.example.com/chat:1.0 --out-dir deploy/chat",
            ),
            (
                "Roll out a canary taking 10% of the traffic, then smoke-test it",
                "flow deploy --target kubernetes --image app:1 --canary app:2 --weight 10 --flow build/app --apply",
            ),
            (
                "A batch run in 8 shards as a Kubernetes Indexed Job",
                "flow deploy --target kubernetes-job --image cls:1 --data d.jsonl --shards 8 --upload s3://b/runs",
            ),
        ],
    ),
    (
        &["deploy", "smoke"],
        &[
            (
                "Smoke-test a running server",
                "flow deploy smoke --url http://127.0.0.1:8080 --flow flows/chat",
            ),
            (
                "The same with a build context's sample request, waiting at most a minute",
                "flow deploy smoke --url http://127.0.0.1:8080 --flow build/chat --smoke-timeout 60",
            ),
        ],
    ),
    (
        &["probe"],
        &[
            ("Check the local server's /health", "flow probe"),
            (
                "Check readiness, waiting at most a second",
                "flow probe http://127.0.0.1:8080/ready --timeout 1",
            ),
        ],
    ),
    (
        &["report"],
        &[
            (
                "Compare two evaluations in one HTML page",
                "flow report main-eval pr-eval",
            ),
            (
                "One run's lines as CSV",
                "flow report main --format csv -o main.csv",
            ),
            (
                "An experiment's HTML and CSV files into a folder",
                "flow report .flow/experiments/classification_20261203_080000 --format all -o review/",
            ),
        ],
    ),
];

/// The examples block of the command at `path`, if it has one.
fn block(path: &[String]) -> Option<String> {
    let (_, examples) = EXAMPLES.iter().find(|(p, _)| *p == path)?;
    let mut text = String::from("Examples:");
    for (what, line) in examples.iter() {
        text.push_str(&format!(
            "\n  # {what}\n  {}",
            line.replace('\n', " \\\n      ")
        ));
    }
    Some(text)
}

/// Append each command's examples to its help; `flow`'s own keep `tail` (the exit statuses) last.
pub fn add(cmd: Command, tail: &str) -> Command {
    add_at(cmd, &mut Vec::new(), tail)
}

fn add_at(mut cmd: Command, path: &mut Vec<String>, tail: &str) -> Command {
    if let Some(text) = block(path) {
        cmd = if path.is_empty() {
            cmd.after_help(format!("{text}\n\n{tail}"))
        } else {
            cmd.after_help(text)
        };
    }
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in names {
        path.push(name.clone());
        cmd = cmd.mut_subcommand(&name, |sub| add_at(sub, path, tail));
        path.pop();
    }
    cmd
}

/// Every example with its command path, continuation lines joined by spaces (for tests).
#[cfg(test)]
pub(super) fn all() -> impl Iterator<Item = (&'static [&'static str], &'static str)> {
    EXAMPLES
        .iter()
        .flat_map(|(path, ex)| ex.iter().map(move |(_, line)| (*path, *line)))
}
