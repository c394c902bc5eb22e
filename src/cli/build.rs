//! `flow build FLOW --format docker --out-dir DIR`: a Docker build context (see `flow::build`).

use std::path::PathBuf;

use clap::Args;

use super::common::{load_flow, parse_variants};
use super::output::{Failure, color_stderr, dim};
use flow::build::{BinarySource, DockerBuild, PipOptions};
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
    /// Copy this Linux flow binary into the image [default: the flow binary running this
    /// command].
    #[arg(long, value_name = "PATH", conflicts_with = "source")]
    pub binary: Option<PathBuf>,
    /// Build flow from source inside `docker build` instead (a Rust toolchain image, minutes of
    /// compiling, crates from the network): from DIR, or without DIR from the checkout this
    /// flow was built from.
    #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = env!("CARGO_MANIFEST_DIR"))]
    pub source: Option<PathBuf>,
    /// The port the image serves on: its FLOW_SERVE_PORT (which `docker run -e` overrides),
    /// EXPOSE and health check.
    #[arg(long, default_value_t = flow::build::PORT)]
    pub port: u16,
    /// The package index pip installs the flow's requirements from (instead of PyPI).
    #[arg(long, value_name = "URL")]
    pub pip_index_url: Option<String>,
    /// Another package index pip may use besides (repeatable).
    #[arg(long, value_name = "URL")]
    pub pip_extra_index_url: Vec<String>,
    /// A CA bundle (PEM) pip trusts for the index: copied into the context, used only while
    /// installing, not in the image.
    #[arg(long, value_name = "FILE")]
    pub pip_cert: Option<PathBuf>,
    /// Read connections from this file instead of the nearest .env up to the project root
    /// (only to describe them: no value is copied).
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
        (None, None) => BinarySource::Binary(std::env::current_exe().map_err(|e| {
            Failure::usage(format!(
                "error: cannot find the running flow binary ({e}): pass --binary PATH or --source DIR"
            ))
        })?),
    };
    let build = DockerBuild {
        output: out_dir.clone(),
        binary,
        port: args.port,
        pip: PipOptions {
            index_url: args.pip_index_url,
            extra_index_urls: args.pip_extra_index_url,
            cert: args.pip_cert,
        },
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
            ", no Python nodes: the runtime is the binary and its libraries"
        }
    );
    match &report.binary {
        Some(b) => outln!(
            "binary: copied ({}, {}): nothing is compiled in `docker build`",
            b.platform,
            b.glibc
                .map_or("static".to_string(), |(x, y)| format!("glibc {x}.{y}"))
        ),
        None => outln!("binary: built from source in `docker build` (a Rust toolchain image)"),
    }
    let vars: Vec<String> = report
        .connections
        .iter()
        .flat_map(|c| c.variables.iter().filter(|v| v.secret).take(1))
        .map(|v| v.name.clone())
        .collect();
    if !vars.is_empty() {
        outln!("the container needs: {} (see README.md)", vars.join(", "));
    }
    if let Some(f) = flow.flex.as_ref().filter(|f| f.is_class && !f.init_applied) {
        let needed: Vec<&str> = f
            .init_params
            .iter()
            .filter(|p| !p.has_default)
            .map(|p| p.name.as_str())
            .collect();
        outln!(
            "the class entry {} needs init ({}): the image runs `flow serve`, so give it after the image name, e.g. `docker run ... -v $PWD/init.json:/init.json:ro {}:latest --init /init.json`",
            f.function,
            needed.join(", "),
            flow.name()
        );
    }
    eprintln!(
        "{}",
        dim(
            &format!(
                "next: docker build -t {name}:latest {}\nthen: docker run --rm -p {port}:{port} --env-file .env --read-only --tmpfs /tmp {name}:latest",
                out_dir.display(),
                name = flow.name(),
                port = args.port
            ),
            color
        )
    );
    Ok(())
}
