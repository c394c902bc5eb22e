//! `flow connections [FLOW]` and `flow connections check [FLOW]`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::common::load_flow;
use super::output::{Failure, bold, stdout_is_terminal};
use super::runtime;
use flow::connection::{self, Connection, EnvVars};
use flow::provider::{ClientConfig, LlmClient};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ConnectionsArgs {
    #[command(subcommand)]
    pub action: Option<Action>,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, Subcommand)]
pub enum Action {
    /// Make one cheap request (list models) to each connection and report what answered.
    Check(Target),
}

#[derive(Debug, Args, Clone)]
pub struct Target {
    /// The flow whose connections to show (default: the current directory).
    #[arg(default_value = ".")]
    pub flow: PathBuf,
    /// Read connections from this file instead of the nearest .env (from the current
    /// directory up to the project root).
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// Read promptflow connection files (*.yml, `${env:VAR}` for secrets) from this folder
    /// instead of the project root's connections/.
    #[arg(long, value_name = "DIR")]
    pub connections: Option<PathBuf>,
}

pub fn run(args: ConnectionsArgs) -> Result<(), Failure> {
    match args.action {
        None => list(&args.target),
        Some(Action::Check(target)) => check(&target),
    }
}

/// Each connection a flow uses, resolved or with the reason it does not resolve.
type Resolved = Vec<(String, Result<Connection, String>)>;

fn resolve_all(target: &Target) -> Result<Resolved, Failure> {
    let flow = load_flow(&target.flow, &[])?;
    let cwd = std::env::current_dir().map_err(|e| Failure::usage(format!("error: {e}")))?;
    let env = EnvVars::load_with(
        target.env_file.as_deref(),
        target.connections.as_deref(),
        &cwd,
    )
    .map_err(|e| Failure::of(&e))?;
    for warning in env.near_misses(&flow.connection_names()) {
        eprintln!("{warning}");
    }
    // Where the variables came from, so a key set in the wrong .env is visible.
    eprintln!(
        "{}",
        match env.file() {
            connection::EnvFile::Read(p) =>
                format!("variables: {} and the environment", p.display()),
            connection::EnvFile::Absent(p) => format!(
                "variables: the environment (no .env: one would be read from {})",
                p.display()
            ),
            connection::EnvFile::None => "variables: the environment".to_string(),
        }
    );
    let files = env.files();
    if let Some(dir) = &files.dir {
        let n = files.connections.len();
        eprintln!(
            "connection files: {} ({n} connection{})",
            dir.display(),
            if n == 1 { "" } else { "s" }
        );
    }
    let mut names = flow.connection_names();
    for name in python_connection_names(&flow) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names
        .into_iter()
        .map(|name| {
            let resolved = connection::resolve(&name, &env, false).map_err(|e| e.to_string());
            (name, resolved)
        })
        .collect())
}

/// The connections Python nodes name: the literal value of each node input whose tool
/// parameter is connection-typed (as `flow run` resolves them). Finding those takes the tools'
/// signatures, so this starts a Python worker; when that fails the names are missing and a
/// warning says why.
fn python_connection_names(flow: &flow::model::Flow) -> Vec<String> {
    use flow::model::{NodeKind, ValueSource};
    use flow::python::{PythonConfig, PythonPool};
    let nodes: Vec<_> = flow
        .nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Python)
        .collect();
    if nodes.is_empty() {
        return Vec::new();
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(_) => return Vec::new(),
    };
    rt.block_on(async {
        let pool = PythonPool::new(PythonConfig {
            python: None,
            working_dir: flow.dir.clone(),
            size: 1,
            env: Vec::new(),
        });
        let mut names = Vec::new();
        for node in nodes {
            let Some(file) = flow.resolve_file(&node.source) else {
                continue;
            };
            match pool.inspect(&file, node.function.as_deref()).await {
                Ok(signature) => {
                    for param in signature.params {
                        if param.connection_type.is_none() {
                            continue;
                        }
                        if let Some(ValueSource::Literal(serde_json::Value::String(name))) =
                            node.inputs.get(&param.name)
                        {
                            if !names.contains(name) {
                                names.push(name.clone());
                            }
                        }
                    }
                }
                Err(e) => eprintln!(
                    "warning: node `{}`: cannot read the connections its Python tool takes ({e}); they are not listed",
                    node.name
                ),
            }
        }
        pool.shutdown().await;
        names
    })
}

fn list(target: &Target) -> Result<(), Failure> {
    let all = resolve_all(target)?;
    let color = stdout_is_terminal();
    if all.is_empty() {
        outln!("this flow uses no connections");
        return Ok(());
    }
    let mut missing = 0;
    for (name, resolved) in &all {
        match resolved {
            Ok(c) if c.is_pool() => {
                let names: Vec<&str> = c.pool.iter().map(|m| m.name.as_str()).collect();
                outln!(
                    "{} ok (pool of {}: {})",
                    bold(name, color),
                    names.len(),
                    names.join(", ")
                );
                for m in &c.pool {
                    outln!("  {}", m.name);
                    describe(m, "    ");
                }
            }
            Ok(c) => {
                outln!("{} ok", bold(name, color));
                describe(c, "  ");
            }
            Err(e) => {
                missing += 1;
                outln!("{} NOT CONFIGURED", bold(name, color));
                outln!("  {e}");
            }
        }
    }
    if missing > 0 {
        return Err(Failure::usage(format!(
            "{missing} connection{} not configured (or run with --offline to use the echo provider)",
            if missing == 1 { " is" } else { "s are" }
        )));
    }
    Ok(())
}

/// A connection's settings, one per line, secrets masked.
fn describe(c: &Connection, indent: &str) {
    outln!("{indent}type:    {}", c.api_type.as_str());
    if let Some(base) = &c.api_base {
        outln!("{indent}base:    {base}");
    }
    if let Some(key) = &c.api_key {
        outln!("{indent}key:     {}", key.masked());
    }
    if let Some(v) = &c.api_version {
        outln!("{indent}version: {v}");
    }
    if let Some(m) = c.model.as_ref().or(c.deployment.as_ref()) {
        outln!("{indent}model:   {m}");
    }
    if let Some(file) = &c.file {
        outln!("{indent}file:    {}", file.display());
    }
    if !c.source.is_empty() {
        outln!("{indent}from:    {}", c.source.join(", "));
    }
}

fn check(target: &Target) -> Result<(), Failure> {
    let all = resolve_all(target)?;
    let client = LlmClient::with_config(ClientConfig::default())
        .map_err(|e| Failure::usage(format!("error: {e}")))?;
    let rt = runtime()?;
    let color = stdout_is_terminal();
    let mut failed = 0;
    let mut unconfigured = 0;
    for (name, resolved) in all {
        match resolved {
            Ok(c) => {
                // A pool is checked member by member: each is its own endpoint and key.
                let members: Vec<(String, &Connection)> = if c.is_pool() {
                    c.pool
                        .iter()
                        .map(|m| (format!("{name} / {}", m.name), m))
                        .collect()
                } else {
                    vec![(name.clone(), &c)]
                };
                for (label, conn) in members {
                    let outcome = rt.block_on(client.check(conn));
                    let mark = if outcome.ok { "ok" } else { "FAILED" };
                    outln!(
                        "{} {mark} ({} ms) {}\n  {}",
                        bold(&label, color),
                        outcome.elapsed.as_millis(),
                        outcome.url,
                        outcome.detail
                    );
                    if !outcome.ok {
                        failed += 1;
                    }
                }
            }
            Err(e) => {
                unconfigured += 1;
                outln!("{} NOT CONFIGURED\n  {e}", bold(&name, color));
            }
        }
    }
    if unconfigured > 0 {
        return Err(Failure::usage(format!(
            "{unconfigured} connection(s) not configured"
        )));
    }
    if failed > 0 {
        return Err(Failure::endpoint(format!(
            "{failed} connection(s) did not answer correctly"
        )));
    }
    Ok(())
}
