//! Argument parsing (clap) and dispatch. Each command lives in its own file and only parses,
//! calls the library and prints.

/// `println!` for command output: a closed pipe (`flow ... | head`) ends the program quietly
/// instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::output::write_stdout_line(&format!($($arg)*))
    };
}

mod batch;
mod batch_summary;
mod build;
mod cache;
mod common;
mod connections;
mod deploy;
mod eval;
mod examples;
mod experiment;
mod init;
mod merge;
mod output;
mod probe;
mod progress;
mod report;
mod run;
mod runs;
mod serve;
mod settings;
mod validate;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

pub use output::Failure;
pub use settings::ModelArgs;

const EXIT_STATUSES: &str = "\
Exit status:
  0  success
  1  quality failure: a line failed (or, for eval, a gate failed)
  2  usage or configuration error: bad flags, invalid flow, missing connection variable
  3  the endpoint could not be used at all (unreachable, key refused), so nothing meaningful ran
  4  flow could not read or write its own files (run directory, cache, report): disk or permissions
  130  a batch run was stopped with Ctrl-C (flow run --resume RUN finishes it)";

/// Run promptflow flows (flow.dag.yaml) from one binary: locally, in CI, in production.
#[derive(Debug, Parser)]
#[command(name = "flow", version, about, after_help = EXIT_STATUSES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a flow on one input and print its outputs.
    Run(Box<run::RunArgs>),
    /// Check a flow and print its nodes in the order they run.
    Validate(validate::ValidateArgs),
    /// List the connections a flow needs and whether each resolves; `check` calls each one.
    Connections(connections::ConnectionsArgs),
    /// Evaluate a run: an evaluation flow and/or built-in evaluators, gates, JUnit and summary.
    #[command(alias = "evaluate")]
    Eval(Box<eval::EvalArgs>),
    /// Run variants, combinations and parameter sweeps over datasets (experiment.yaml), evaluate
    /// every run and compare them.
    Experiment(Box<experiment::ExperimentArgs>),
    /// Show or clear the response cache (.flow/cache).
    Cache(cache::CacheArgs),
    /// List, show and delete batch runs (under .flow/runs).
    Runs(runs::RunsArgs),
    /// Create a working project: a flow, a prompt, a Python node, a dataset and .env.example.
    Init(init::InitArgs),
    /// Serve a flow over HTTP: POST /score, streaming, /health, /ready, /metrics, /openapi.json.
    Serve(Box<serve::ServeArgs>),
    /// Write a Docker build context that serves the flow (Dockerfile, .dockerignore, README).
    Build(build::BuildArgs),
    /// Roll a built image out (Kubernetes or compose, with a canary), run a sharded batch run or experiment as a Kubernetes Indexed Job, or smoke-test a server.
    Deploy(Box<deploy::DeployArgs>),
    /// GET a URL and exit 0 when it answers 2xx (the image's HEALTHCHECK).
    Probe(probe::ProbeArgs),
    /// Report runs, evaluations and experiments: one self-contained HTML page, CSV or JSON.
    Report(report::ReportArgs),
}

/// Parse `flow eval ARGS` (an evaluation's recorded command line, for `flow eval --resume`).
pub(crate) fn parse_eval(args: &[String]) -> Result<eval::EvalArgs, clap::Error> {
    let argv = ["flow", "eval"]
        .into_iter()
        .map(String::from)
        .chain(args.iter().cloned());
    let matches = command().try_get_matches_from(argv)?;
    match Cli::from_arg_matches(&matches)?.command {
        Command::Eval(args) => Ok(*args),
        _ => Err(clap::Error::new(clap::error::ErrorKind::InvalidSubcommand)),
    }
}

/// Parse arguments, run the command, and turn its result into an exit status.
pub fn main() -> ExitCode {
    let parsed = command()
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches).map(|cli| (cli, matches)));
    let cli = match parsed {
        Ok((cli, matches)) => {
            for warning in settings::deprecation_warnings(&matches) {
                eprintln!("{warning}");
            }
            cli
        }
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.command {
        Command::Run(args) => run::run(*args),
        Command::Validate(args) => validate::run(args),
        Command::Connections(args) => connections::run(args),
        Command::Init(args) => init::run(args),
        Command::Runs(args) => runs::run(args),
        Command::Cache(args) => cache::run(args),
        Command::Eval(args) => eval::run(*args),
        Command::Serve(args) => serve::run(*args),
        Command::Build(args) => build::run(args),
        Command::Probe(args) => probe::run(args),
        Command::Deploy(args) => deploy::run(*args),
        Command::Report(args) => report::run(args),
        Command::Experiment(args) => experiment::run(*args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if !failure.message.is_empty() {
                eprintln!("{}", failure.message.trim_end());
            }
            ExitCode::from(failure.exit_status())
        }
    }
}

/// The command line parser: the derived one with every command's examples in its help.
fn command() -> clap::Command {
    examples::add(Cli::command(), EXIT_STATUSES)
}

/// Run `work` on `rt`'s worker threads and wait for it. A future given to `block_on` runs on
/// the calling thread, so every HTTP response (read on a worker) would have to wake that thread
/// to reach its line; spawned, a batch's lines run beside their connections and a response
/// wakes its line on the same thread (fewer thread switches per line: docs/performance.md).
pub fn on_workers<T: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    work: impl Future<Output = Result<T, Failure>> + Send + 'static,
) -> Result<T, Failure> {
    rt.block_on(rt.spawn(work)).unwrap_or_else(|e| {
        Err(Failure::usage(format!(
            "error: flow stopped unexpectedly: {e}\n  help: this is a bug in flow; please report it with the command you ran"
        )))
    })
}

/// A tokio runtime for commands that do I/O.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::usage(format!("error: cannot start the async runtime: {e}")))
}

#[cfg(test)]
mod tests;
