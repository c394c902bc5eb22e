//! `flow build FLOW --format docker --out-dir DIR`: a Docker build context (see `flow::build`).

use std::path::PathBuf;

use clap::Args;

use super::common::{load_flow, parse_variants};
use super::output::{Failure, color_stderr, dim};
use flow::build::{BinarySource, DockerBuild};
use flow::connection::EnvVars;

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The flow: a directory holding flow.dag.yaml, the YAML file, or a .prompty file.
    pub flow: PathBuf,
    /// What to build.
    #[arg(long, value_enum, default_value_t = BuildFormat::Docker)]
    pub format: BuildFormat,
    /// The build context directory to write (new or empty).
    #[arg(
        long,
        short = 'o',
        value_name = "DIR",
        required_unless_present = "output_dir"
    )]
    pub out_dir: Option<PathBuf>,
    /// Deprecated spelling of --out-dir (--output is the printed-results format elsewhere).
    #[arg(
        id = "output_dir",
        long = "output",
        value_name = "DIR",
        hide = true,
        conflicts_with = "out_dir"
    )]
    pub output_dir: Option<PathBuf>,
    /// Use a variant: '${node.variant_id}' (repeatable, one per node).
    #[arg(long, value_name = "${NODE.VARIANT}")]
    pub variant: Vec<String>,
    /// Copy this Linux flow binary into the image instead of building flow from source.
    #[arg(long, value_name = "PATH", conflicts_with = "source")]
    pub binary: Option<PathBuf>,
    /// flow's source checkout to build the binary from in the image [default: the source this
    /// flow was built from, when it is still there].
    #[arg(long, value_name = "DIR")]
    pub source: Option<PathBuf>,
    /// Read connections from this file instead of ./.env (only to describe them: no value is
    /// copied).
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BuildFormat {
    /// A Docker build context: Dockerfile, .dockerignore, README.md, the flow.
    Docker,
}

pub fn run(args: BuildArgs) -> Result<(), Failure> {
    let Some(out_dir) = args.out_dir.clone().or(args.output_dir.clone()) else {
        return Err(Failure::usage(
            "error: give the directory to write: --out-dir DIR",
        ));
    };
    let selections = parse_variants(&args.variant)?;
    let flow = load_flow(&args.flow, &selections)?;
    let cwd = std::env::current_dir()
        .map_err(|e| Failure::usage(format!("error: no working directory: {e}")))?;
    let env = EnvVars::load(args.env_file.as_deref(), &cwd).map_err(|e| Failure::of(&e))?;
    let binary = match (args.binary, args.source) {
        (Some(b), _) => BinarySource::Binary(b),
        (None, Some(s)) => BinarySource::Source(s),
        (None, None) => BinarySource::Source(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
    };
    let build = DockerBuild {
        output: out_dir.clone(),
        binary,
        env,
    };
    let report = flow::build::docker_context(&flow, &build).map_err(|e| Failure::of(&e))?;
    let color = color_stderr();
    for (path, why) in &report.skipped {
        let shown = path.strip_prefix(&flow.dir).unwrap_or(path);
        eprintln!("left out {}: {why}", shown.display());
    }
    outln!(
        "wrote {} ({} files, {:.1} KiB){}",
        out_dir.display(),
        report.files.len(),
        report.bytes as f64 / 1024.0,
        if report.python {
            ", with Python for the flow's Python nodes"
        } else {
            ", distroless runtime (no Python nodes)"
        }
    );
    let vars: Vec<String> = report
        .connections
        .iter()
        .flat_map(|c| c.variables.iter().filter(|v| v.secret).take(1))
        .map(|v| v.name.clone())
        .collect();
    if !vars.is_empty() {
        outln!("the container needs: {} (see README.md)", vars.join(", "));
    }
    eprintln!(
        "{}",
        dim(
            &format!(
                "next: docker build -t {}:latest {}",
                flow.name(),
                out_dir.display()
            ),
            color
        )
    );
    Ok(())
}
