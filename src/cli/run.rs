//! `flow run FLOW --inputs k=v ...`: one line, outputs printed, a detail record written.

use std::path::PathBuf;

use clap::Args;
use serde_json::{Map, Value};

use super::common::{
    OutputFormat, executor_options, line_failure, load_flow, parse_variants, prepare,
};
use super::output::{Failure, bold, color_stderr, dim, stdout_is_terminal};
use super::runtime;
use super::settings::{ModelArgs, OutputArgs};
use flow::executor::Executor;
use flow::model::Flow;
use flow::record::{LineResult, NodeRun, Status};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The flow: a directory holding flow.dag.yaml, the YAML file, or a .prompty file.
    #[arg(required_unless_present = "resume")]
    pub flow: Option<PathBuf>,
    /// Flow inputs as name=value (repeatable), or a JSON file holding an object of inputs.
    #[arg(long, short = 'i', value_name = "NAME=VALUE|FILE.json", num_args = 1..)]
    pub inputs: Vec<String>,
    /// Run only this node, with --inputs as its inputs.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Use a variant: '${node.variant_id}' (repeatable, one per node).
    #[arg(long, value_name = "${NODE.VARIANT}")]
    pub variant: Vec<String>,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub batch: super::batch::BatchArgs,
    #[command(flatten)]
    pub model: ModelArgs,
}

pub fn run(args: RunArgs) -> Result<(), Failure> {
    if args.batch.data.is_some() || args.batch.resume.is_some() {
        return super::batch::run(
            args.flow.as_deref(),
            &args.variant,
            args.output.format,
            &args.batch,
            &args.model,
        );
    }
    let Some(flow_path) = &args.flow else {
        return Err(Failure::usage(
            "error: give a flow to run (or --resume RUN)",
        ));
    };
    let selections = parse_variants(&args.variant)?;
    let mut flow = load_flow(flow_path, &selections)?;
    super::common::apply_init(&mut flow, &args.batch.init)?;
    let (mut given, from_files) = parse_inputs(&args.inputs)?;
    // As promptflow's script executor: a flex flow's line given no inputs at all runs on
    // `sample.inputs`.
    if given.is_empty() && args.node.is_none() {
        if let Some(sample) = flow.flex.as_ref().and_then(|f| f.sample_inputs.clone()) {
            eprintln!("note: no --inputs given: the flow's `sample.inputs` are used");
            given = sample;
        }
    }
    if args.node.is_none() {
        check_required_inputs(&flow, &mut given, &from_files)?;
    }
    check_images(&flow, &given)?;
    let options = executor_options(&args.model, &flow)?;
    let rt = runtime()?;
    rt.block_on(async {
        let executor = prepare(flow, &options).await?;
        let result = match &args.node {
            Some(node) => run_node(&executor, node, &given, &args).await,
            None => run_line(&executor, &given, &args, options.offline).await,
        };
        executor.shutdown().await;
        result
    })
}

/// Image inputs that cannot be loaded (a missing file, not an image) are refused before
/// anything runs.
fn check_images(flow: &flow::model::Flow, given: &Map<String, Value>) -> Result<(), Failure> {
    for (name, input) in &flow.inputs {
        let Some(value) = given.get(name) else {
            continue;
        };
        if let Err(e) =
            flow::executor::load_images(&input.ty, value.clone(), &flow.dir, flow.message_format)
        {
            return Err(Failure::usage(format!(
                "error: --inputs {name}: {e}\n  (a plain path is relative to the flow folder {})",
                flow.dir.display()
            )));
        }
    }
    Ok(())
}

/// `--inputs a=1 b=two` or `--inputs inputs.json`.
/// `--inputs` values: the inputs, and the names that came from JSON files (as opposed to
/// `NAME=VALUE`, which names an input on purpose).
pub fn parse_inputs(
    values: &[String],
) -> Result<(Map<String, Value>, std::collections::BTreeSet<String>), Failure> {
    let parsed = super::common::parse_name_values("--inputs", "inputs", "", values)?;
    Ok((parsed.values, parsed.from_files))
}

fn check_required_inputs(
    flow: &Flow,
    given: &mut Map<String, Value>,
    from_files: &std::collections::BTreeSet<String>,
) -> Result<(), Failure> {
    // A `NAME=VALUE` for a name the flow has no input for would be dropped: refuse it, as
    // `flow serve` does. A JSON file often holds a whole dataset row (ground truth and all):
    // its other keys are left out, and said so.
    let names: Vec<&str> = flow.inputs.keys().map(String::as_str).collect();
    let extra: Vec<String> = given
        .keys()
        .filter(|k| !flow.inputs.contains_key(k.as_str()) && from_files.contains(k.as_str()))
        .cloned()
        .collect();
    if !extra.is_empty() {
        eprintln!(
            "note: the --inputs file's {} {} not an input of the flow and {} left out",
            extra
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", "),
            if extra.len() == 1 { "is" } else { "are" },
            if extra.len() == 1 { "is" } else { "are" },
        );
        for k in &extra {
            given.remove(k);
        }
    }
    if let Some(unknown) = given.keys().find(|k| !flow.inputs.contains_key(k.as_str())) {
        let hint = flow::model::closest(unknown, names.iter().copied())
            .map(|c| format!(" (did you mean `{c}`?)"))
            .unwrap_or_default();
        return Err(Failure::usage(format!(
            "error: --inputs {unknown}=...: the flow has no input `{unknown}`{hint}\n  inputs: {}",
            if names.is_empty() {
                "(none)".to_string()
            } else {
                names.join(", ")
            }
        )));
    }
    // A chat flow's history starts empty when not given, as `pf flow test` starts it.
    let history = flow
        .inputs
        .values()
        .find(|i| i.is_chat_history)
        .or_else(|| flow.inputs.get("chat_history"));
    if let Some(h) = history {
        if h.default.is_none() && !given.contains_key(&h.name) {
            eprintln!(
                "note: chat history `{}` starts empty ([]); pass --inputs {}='[...]' to give one",
                h.name, h.name
            );
            given.insert(h.name.clone(), Value::Array(Vec::new()));
        }
    }
    let missing: Vec<&str> = flow
        .inputs
        .values()
        .filter(|i| i.default.is_none() && !given.contains_key(&i.name))
        .map(|i| i.name.as_str())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let example: Vec<String> = missing.iter().map(|m| format!("{m}=...")).collect();
    Err(Failure::usage(format!(
        "error: flow input{} {} {} no default and no value\n  help: pass --inputs {}",
        if missing.len() == 1 { "" } else { "s" },
        missing
            .iter()
            .map(|m| format!("`{m}`"))
            .collect::<Vec<_>>()
            .join(", "),
        if missing.len() == 1 { "has" } else { "have" },
        example.join(" ")
    )))
}

async fn run_line(
    executor: &Executor,
    given: &Map<String, Value>,
    args: &RunArgs,
    offline: bool,
) -> Result<(), Failure> {
    let mut line = executor.run_line(0, given).await;
    // The aggregation takes the line's values as they are (images in memory), before they are
    // written as files.
    let mut aggregation = if line.succeeded() && !executor.dag().aggregation_nodes.is_empty() {
        Some(executor.run_aggregation(std::slice::from_ref(&line)).await)
    } else {
        None
    };
    // Images go to files under .promptflow/flow_outputs, as `pf flow test` keeps them.
    let records = executor.flow().dir.join(".promptflow");
    let format = executor.flow().message_format;
    let persisted = flow::record::persist_images(&mut line, &records, "flow_outputs", format)
        .and_then(|()| match aggregation.as_mut() {
            Some(agg) => {
                flow::record::persist_nodes(&mut agg.nodes, &records, "flow_outputs", format)
            }
            None => Ok(()),
        });
    if let Err(e) = persisted {
        return Err(Failure::new(
            flow::error::ErrorClass::Io,
            format!(
                "error: cannot write the line's images under {}: {e}",
                records.display()
            ),
        ));
    }
    let flow = executor.flow();
    let detail = flow::record::write_detail(
        &flow.dir,
        &line,
        aggregation.as_ref(),
        &flow.variant_label(),
    );
    let color = color_stderr();
    match args.output.format {
        OutputFormat::Json => {
            let mut doc = serde_json::json!({
                "status": line.status,
                "outputs": line.outputs,
                "error": line.error,
                "tokens": line.tokens,
                "duration_ms": line.duration_ms,
                "cache_hits": line.cache_hits,
                "offline": offline,
            });
            if let Some(agg) = &aggregation {
                doc["metrics"] = Value::Object(agg.metrics.clone());
            }
            outln!(
                "{}",
                flow::non_finite::to_string_pretty(&doc).unwrap_or_default()
            );
        }
        OutputFormat::Text => {
            if line.succeeded() {
                print_outputs(&line.outputs);
                if let Some(agg) = &aggregation {
                    for (k, v) in &agg.metrics {
                        outln!(
                            "{} {}",
                            bold(&format!("metric {k}:"), stdout_is_terminal()),
                            super::batch_summary::human_value(v)
                        );
                    }
                }
            }
        }
    }
    if offline {
        eprintln!(
            "{}",
            dim(
                "offline: every model answer came from the echo provider, not a model",
                color
            )
        );
    }
    let summary = summarize(&line);
    match &detail {
        Ok(path) => eprintln!(
            "{}",
            dim(&format!("{summary} · detail: {}", path.display()), color)
        ),
        Err(e) => eprintln!(
            "warning: could not write the detail record under {}: {e}",
            flow.dir.display()
        ),
    }
    if let Some(err) = &line.error {
        return Err(line_failure(err));
    }
    if let Some(err) = aggregation.as_ref().and_then(|a| a.error.as_ref()) {
        return Err(line_failure(err));
    }
    Ok(())
}

async fn run_node(
    executor: &Executor,
    node: &str,
    given: &Map<String, Value>,
    args: &RunArgs,
) -> Result<(), Failure> {
    let Some(record) = executor.run_single_node(node, given).await else {
        let names: Vec<&str> = executor
            .flow()
            .nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect();
        let hint = flow::model::closest(node, names.iter().copied())
            .map(|c| format!("did you mean `{c}`? "))
            .unwrap_or_default();
        return Err(Failure::usage(format!(
            "error: the flow has no node `{node}`\n  help: {hint}nodes are: {}",
            names.join(", ")
        )));
    };
    print_node(&record, args.output.format);
    match &record.error {
        Some(err) => Err(line_failure(err)),
        None => Ok(()),
    }
}

fn print_node(record: &NodeRun, format: OutputFormat) {
    match format {
        OutputFormat::Json => outln!(
            "{}",
            flow::non_finite::to_string_pretty(&serde_json::json!({
                "node": record.node,
                "status": record.status,
                "output": record.output,
                "error": record.error,
                "tokens": record.tokens,
            }))
            .unwrap_or_default()
        ),
        OutputFormat::Text => {
            if record.status == Status::Completed {
                let mut m = Map::new();
                m.insert(record.node.clone(), record.output.clone());
                print_outputs(&m);
            }
        }
    }
}

/// Outputs as `name: value`, multi-line text indented under its name.
fn print_outputs(outputs: &Map<String, Value>) {
    let color = stdout_is_terminal();
    for (name, value) in outputs {
        let text = match value {
            Value::String(s) => {
                flow::non_finite::name(value).map_or_else(|| s.clone(), str::to_string)
            }
            other => flow::non_finite::to_string_pretty(other).unwrap_or_default(),
        };
        if text.contains('\n') {
            outln!("{}", bold(&format!("{name}:"), color));
            for l in text.lines() {
                outln!("  {l}");
            }
        } else {
            outln!("{} {text}", bold(&format!("{name}:"), color));
        }
    }
}

fn summarize(line: &LineResult) -> String {
    let ran = line
        .nodes
        .iter()
        .filter(|n| n.status == Status::Completed)
        .count();
    let bypassed = line
        .nodes
        .iter()
        .filter(|n| n.status == Status::Bypassed)
        .count();
    let mut parts = vec![format!("{ran} node{} ran", if ran == 1 { "" } else { "s" })];
    if bypassed > 0 {
        parts.push(format!("{bypassed} bypassed"));
    }
    parts.push(format!("{:.0} ms", line.duration_ms));
    if line.tokens.total_tokens > 0 {
        parts.push(format!("{} tokens", line.tokens.total_tokens));
    }
    if line.cache_hits > 0 {
        parts.push(format!(
            "{} answer{} from the cache (--no-cache to ask again)",
            line.cache_hits,
            if line.cache_hits == 1 { "" } else { "s" }
        ));
    }
    parts.join(" · ")
}
