//! `flow runs merge SHARD... --name RUN`: the shard runs of `flow run --shard K/N`, local or in
//! object storage, merged into one run directory equal to the one a single machine would have
//! written (aggregation nodes run here, over every line).

use std::path::{Path, PathBuf};

use clap::Args;

use super::ModelArgs;
use super::common::{executor_options, load_flow, prepare};
use super::output::Failure;
use super::runtime;
use flow::batch::merge::{ShardRun, check_shards, finish_merge, write_merged_lines};
use flow::run_store::remote::{RemoteDir, is_remote};
use flow::run_store::{RunDir, RunStatus, find_run, runs_root};

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The shard runs: run names, run directories, folders holding shard runs (all of them are
    /// taken), or s3:// az:// gs:// URLs of a shard run or of a folder of them.
    #[arg(required = true, value_name = "SHARD")]
    pub shards: Vec<String>,
    /// The merged run's name (under .flow/runs).
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// Also upload the merged run to <URL>/<name>/ (s3://, az://, gs://).
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
    /// Exit 0 even when some lines failed (a run where every line failed still exits 1).
    #[arg(long)]
    pub allow_failures: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// Removes the folder of downloaded shards when the merge ends.
pub(super) struct Downloads(pub(super) PathBuf);

impl Drop for Downloads {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn run(project: &Path, args: MergeArgs) -> Result<(), Failure> {
    let usage = |m: String| Failure::usage(format!("error: {m}"));
    let name = &args.name;
    if name.is_empty() || name.contains(['/', '\\']) || name == "." || name == ".." {
        return Err(usage(format!(
            "`{name}` is not a valid run name (no slashes)"
        )));
    }
    let dest = RunDir::new(runs_root(project).join(name));
    if dest.path.exists() {
        return Err(usage(format!(
            "a run named `{name}` already exists at {}\n  help: pick another --name, or `flow runs delete {name}`",
            dest.path.display()
        )));
    }
    let upload_to = match &args.to {
        Some(url) => Some(
            RemoteDir::parse(url)
                .map_err(|e| usage(format!("--to: {e}")))?
                .child(name),
        ),
        None => None,
    };
    let rt = runtime()?;
    let downloads =
        Downloads(std::env::temp_dir().join(format!("flow-merge-{}-{name}", std::process::id())));
    let mut dirs: Vec<RunDir> = Vec::new();
    for given in &args.shards {
        if is_remote(given) {
            dirs.extend(rt.block_on(download(given, &downloads.0))?);
        } else {
            dirs.extend(local(project, given)?);
        }
    }
    let mut shards = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let meta = dir
            .read_meta()
            .map_err(|e| Failure::own_file("cannot read", &dir.meta_file(), &e))?;
        shards.push(ShardRun { dir, meta });
    }
    check_shards(&mut shards).map_err(|e| Failure::of(&e))?;

    let mut meta = match write_merged_lines(&shards, &dest) {
        Ok(meta) => meta,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dest.path);
            return Err(Failure::of(&e));
        }
    };
    let flow = aggregation_flow(&dest, &meta.settings)?;
    let aggregation = rt.block_on(async {
        let executor = match flow {
            Some(flow) => {
                let mut model = args.model.clone();
                // The shards' .env, when it is here too (shards may have run elsewhere).
                if model.env_file.is_none() {
                    model.env_file = meta
                        .settings
                        .env_file
                        .as_ref()
                        .map(PathBuf::from)
                        .filter(|p| p.is_file());
                }
                // And their connection files' folder, likewise.
                if model.connections.is_none() {
                    model.connections = meta
                        .settings
                        .connections
                        .as_ref()
                        .map(PathBuf::from)
                        .filter(|p| p.is_dir());
                }
                model.offline = model.offline || meta.offline;
                let options = executor_options(&model, &flow)?;
                Some(prepare(flow, &options).await?)
            }
            None => None,
        };
        let result = finish_merge(&dest, &mut meta, executor.as_ref()).await;
        if let Some(executor) = executor {
            executor.shutdown().await;
        }
        result.map_err(|e| Failure::of(&e))
    })?;

    eprintln!(
        "merged {} shards into {}: {}/{} lines succeeded · {} tokens · run {}",
        shards.len(),
        meta.name,
        meta.completed_lines,
        meta.total_lines,
        meta.tokens.total_tokens,
        dest.path.display()
    );
    if let Some(agg) = &aggregation {
        for (k, v) in &agg.metrics {
            eprintln!("metric {k}: {v}");
        }
    }
    if let Some(remote) = &upload_to {
        let files = rt
            .block_on(remote.upload(&dest.path))
            .map_err(|e| Failure::endpoint(format!("error: cannot upload the merged run: {e}")))?;
        eprintln!("uploaded {} ({files} files) to {remote}", meta.name);
    }
    if let Some(e) = aggregation.as_ref().and_then(|a| a.error.as_ref()) {
        return Err(Failure::quality(format!(
            "error: aggregation failed: {}",
            e.message
        )));
    }
    if meta.status != RunStatus::Completed && !(args.allow_failures && meta.completed_lines > 0) {
        return Err(Failure::quality(format!(
            "{} of {} lines failed (see {})",
            meta.failed_lines,
            meta.total_lines,
            dest.error_file().display()
        )));
    }
    Ok(())
}

/// The flow of the merged run's snapshot, when it has aggregation nodes to run (a flex
/// flow's class entry with `__aggregate__` made with the `--init` the shards recorded).
fn aggregation_flow(
    dest: &RunDir,
    settings: &flow::run_store::RunSettings,
) -> Result<Option<flow::model::Flow>, Failure> {
    let snapshot = dest.snapshot_dir();
    let has_flow = [
        "flow.dag.yaml",
        "flow.dag.yml",
        "flow.flex.yaml",
        "flow.flex.yml",
    ]
    .iter()
    .any(|f| snapshot.join(f).is_file());
    if !has_flow {
        return Ok(None);
    }
    let mut flow = load_flow(&snapshot, &[])?;
    if !flow.nodes.iter().any(|n| n.aggregation) {
        return Ok(None);
    }
    super::common::apply_recorded_init(&mut flow, &settings.init, &settings.init_values)?;
    Ok(Some(flow))
}

/// A shard run, or every shard run in a folder.
fn local(project: &Path, given: &str) -> Result<Vec<RunDir>, Failure> {
    if let Some(dir) = find_run(project, given) {
        return Ok(vec![dir]);
    }
    let folder = Path::new(given);
    let shards = shard_dirs(folder);
    if folder.is_dir() && shards.is_empty() {
        return Err(Failure::usage(format!(
            "error: {given} holds no shard runs (folders with a meta.json written by `flow run --shard K/N`)"
        )));
    }
    if shards.is_empty() {
        return Err(Failure::usage(format!(
            "error: no run `{given}` (looked in .flow/runs and at the path)"
        )));
    }
    Ok(shards)
}

/// The shard runs directly inside `folder`, by name.
fn shard_dirs(folder: &Path) -> Vec<RunDir> {
    let mut dirs: Vec<RunDir> = std::fs::read_dir(folder)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| RunDir::new(e.path()))
                .filter(|d| d.read_meta().is_ok_and(|m| m.shard.is_some()))
                .collect()
        })
        .unwrap_or_default();
    dirs.sort_by_key(RunDir::name);
    dirs
}

/// Download a remote shard run, or every run in a remote folder, under `into`; return the shard
/// runs among them.
pub(super) async fn download(url: &str, into: &Path) -> Result<Vec<RunDir>, Failure> {
    let remote = RemoteDir::parse(url).map_err(|e| Failure::of(&e))?;
    // Object storage that cannot be read is an unusable endpoint (exit 3), which a Job retries.
    let err = |e: flow::run_store::remote::RemoteError| Failure::of(&e);
    if remote.has("meta.json").await.map_err(err)? {
        let dir = RunDir::new(into.join(remote.name()));
        remote.download(&dir.path).await.map_err(err)?;
        return Ok(vec![dir]);
    }
    let folder = into.join(format!("folder-{}", remote.name()));
    let mut found = false;
    for child in remote.children().await.map_err(err)? {
        let run = remote.child(&child);
        if run.has("meta.json").await.map_err(err)? {
            run.download(&folder.join(&child)).await.map_err(err)?;
            found = true;
        }
    }
    let shards = shard_dirs(&folder);
    if !found || shards.is_empty() {
        return Err(Failure::usage(format!(
            "error: {url} holds no shard runs (folders with a meta.json written by `flow run --shard K/N`)"
        )));
    }
    Ok(shards)
}
