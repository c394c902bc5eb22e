//! Merging shard runs (`flow run --shard K/N`) into the run one machine would have written:
//! the shards are checked to belong together, every shard's line records go through the same
//! run writer a batch uses, the node records are copied, the aggregation nodes run over every
//! line, and `finalize` writes outputs, inputs, metrics and `meta.json` in line order.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::executor::Executor;
use crate::record::AggregationResult;
use crate::run_store::{self, RunDir, RunMeta, RunStatus, RunWriter, ShardInfo};

/// One shard run to merge.
#[derive(Debug, Clone)]
pub struct ShardRun {
    pub dir: RunDir,
    pub meta: RunMeta,
}

/// Why shards cannot be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("no shard runs to merge")]
    NoShards,
    #[error("run `{run}` is not a shard (it was not started with --shard K/N)")]
    NotAShard { run: String },
    #[error(
        "shard `{run}` does not belong with `{first}`: it ran {what} (`{found}`, not `{expected}`)"
    )]
    Mismatch {
        run: String,
        first: String,
        what: &'static str,
        expected: String,
        found: String,
    },
    #[error("shard {index} of {count} is given twice: `{first}` and `{second}`")]
    Doubled {
        index: usize,
        count: usize,
        first: String,
        second: String,
    },
    #[error("missing shard {} of {count} (have: {})", join(missing), join(present))]
    Missing {
        missing: Vec<usize>,
        present: Vec<usize>,
        count: usize,
    },
    #[error(
        "shard `{run}` did not finish (status {status:?}, {done} of {total} lines ran): resume it first with `flow run --resume {run}`"
    )]
    Unfinished {
        run: String,
        status: RunStatus,
        done: usize,
        total: usize,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl crate::error::Classify for MergeError {
    /// Shards that do not belong together are the user's to fix; a merged run that cannot be
    /// read or written is I/O.
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            MergeError::Io { .. } => crate::error::ErrorClass::Io,
            _ => crate::error::ErrorClass::Config,
        }
    }
}

fn join(numbers: &[usize]) -> String {
    numbers
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> MergeError + '_ {
    move |source| MergeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn info(shard: &ShardRun) -> Result<&ShardInfo, MergeError> {
    shard
        .meta
        .shard
        .as_ref()
        .ok_or_else(|| MergeError::NotAShard {
            run: shard.meta.name.clone(),
        })
}

/// Check that `shards` are the N finished shards of one run (same flow, data, column mapping
/// and N; every K once), and sort them by K.
pub fn check_shards(shards: &mut [ShardRun]) -> Result<(), MergeError> {
    let Some(first) = shards.first() else {
        return Err(MergeError::NoShards);
    };
    let first_info = info(first)?.clone();
    let first_name = first.meta.name.clone();
    let first_mapping = first.meta.column_mapping.clone();
    let mut seen: BTreeMap<usize, String> = BTreeMap::new();
    for shard in shards.iter() {
        let i = info(shard)?;
        let run = shard.meta.name.clone();
        let mismatch = |what, expected: &str, found: &str| MergeError::Mismatch {
            run: run.clone(),
            first: first_name.clone(),
            what,
            expected: expected.to_string(),
            found: found.to_string(),
        };
        if i.flow_hash != first_info.flow_hash {
            return Err(mismatch(
                "another flow",
                &first_info.flow_hash,
                &i.flow_hash,
            ));
        }
        if i.data_hash != first_info.data_hash {
            return Err(mismatch("other data", &first_info.data_hash, &i.data_hash));
        }
        if i.count != first_info.count {
            return Err(mismatch(
                "another shard count",
                &first_info.count.to_string(),
                &i.count.to_string(),
            ));
        }
        if shard.meta.column_mapping != first_mapping {
            return Err(mismatch(
                "another column mapping",
                &first_mapping.join(" "),
                &shard.meta.column_mapping.join(" "),
            ));
        }
        if let Some(other) = seen.insert(i.index, run.clone()) {
            return Err(MergeError::Doubled {
                index: i.index,
                count: i.count,
                first: other,
                second: run,
            });
        }
    }
    let missing: Vec<usize> = (1..=first_info.count)
        .filter(|k| !seen.contains_key(k))
        .collect();
    if !missing.is_empty() {
        return Err(MergeError::Missing {
            missing,
            present: seen.keys().copied().collect(),
            count: first_info.count,
        });
    }
    for shard in shards.iter() {
        let m = &shard.meta;
        let done = m.completed_lines + m.failed_lines;
        if matches!(m.status, RunStatus::Running | RunStatus::Canceled) || done < m.total_lines {
            return Err(MergeError::Unfinished {
                run: m.name.clone(),
                status: m.status,
                done,
                total: m.total_lines,
            });
        }
    }
    shards.sort_by_key(|s| s.meta.shard.as_ref().map_or(0, |i| i.index));
    Ok(())
}

/// Write the line records of checked `shards` into the new run directory `dest`: the snapshot
/// of the first shard, every node record, and every line through the run writer. Returns the
/// merged run's `meta.json` (status Running), for `finish_merge`.
pub fn write_merged_lines(shards: &[ShardRun], dest: &RunDir) -> Result<RunMeta, MergeError> {
    let first = shards.first().ok_or(MergeError::NoShards)?;
    std::fs::create_dir_all(&dest.path).map_err(io_at(&dest.path))?;
    let snapshot = first.dir.snapshot_dir();
    if snapshot.is_dir() {
        copy_tree(&snapshot, &dest.snapshot_dir())?;
    }
    let mut meta = first.meta.clone();
    meta.name = dest.name();
    meta.shard = None;
    meta.status = RunStatus::Running;
    meta.end_time = None;
    meta.merged_from = shards.iter().map(|s| s.meta.name.clone()).collect();
    meta.total_lines = first
        .meta
        .shard
        .as_ref()
        .map_or(0, |i| i.dataset_lines)
        .max(shards.iter().map(|s| s.meta.total_lines).sum());
    meta.created = shards
        .iter()
        .map(|s| s.meta.created.clone())
        .min()
        .unwrap_or_default();
    // The shards ran side by side: the run took as long as the slowest.
    meta.duration_s = shards.iter().map(|s| s.meta.duration_s).fold(0.0, f64::max);
    meta.concurrency = shards.iter().map(|s| s.meta.concurrency).sum();
    meta.offline = shards.iter().all(|s| s.meta.offline);
    run_store::write_meta(dest, &meta).map_err(io_at(&dest.path))?;

    // The shards' records are written already (their images are files): the format only says
    // how images held in memory would be referred to, and these lines hold none.
    let writer =
        RunWriter::start(dest, crate::image::MessageFormat::Basic).map_err(io_at(&dest.path))?;
    for shard in shards {
        copy_tree(&shard.dir.node_artifacts_dir(), &dest.node_artifacts_dir())?;
        // the shard's image files, which its line records refer to (named by content: shards
        // holding the same image write the same file)
        let images = shard.dir.path.join("flow_outputs").join("images");
        if images.is_dir() {
            copy_tree(&images, &dest.path.join("flow_outputs").join("images"))?;
        }
        let journal = run_store::read_journal(&shard.dir).map_err(io_at(&shard.dir.path))?;
        journal
            .for_each(|line| writer.line(line))
            .map_err(io_at(&shard.dir.path))?;
    }
    writer.finish().map_err(io_at(&dest.path))?;
    Ok(meta)
}

/// Run the aggregation nodes over every succeeded line of the merged run `dest` (when
/// `executor` has any), record them, and finalise the run like a batch that ended.
pub async fn finish_merge(
    dest: &RunDir,
    meta: &mut RunMeta,
    executor: Option<&Executor>,
) -> Result<Option<AggregationResult>, MergeError> {
    let mut aggregation = None;
    if let Some(executor) = executor.filter(|e| !e.dag().aggregation_nodes.is_empty()) {
        let journal = run_store::read_journal(dest).map_err(io_at(&dest.path))?;
        let lines = run_store::succeeded_lines_with(
            dest,
            &journal,
            &executor.aggregation_dependencies(),
            executor.flow().message_format,
        )
        .map_err(io_at(&dest.path))?;
        let agg = executor.run_aggregation(&lines).await;
        let writer =
            RunWriter::start(dest, executor.flow().message_format).map_err(io_at(&dest.path))?;
        writer.aggregation(agg.clone()).map_err(io_at(&dest.path))?;
        writer.finish().map_err(io_at(&dest.path))?;
        aggregation = Some(agg);
    }
    let metrics = aggregation
        .as_ref()
        .map(|a| a.metrics.clone())
        .unwrap_or_default();
    run_store::finalize(dest, meta, &metrics, false).map_err(io_at(&dest.path))?;
    Ok(aggregation)
}

fn copy_tree(src: &Path, dest: &Path) -> Result<(), MergeError> {
    std::fs::create_dir_all(dest).map_err(io_at(dest))?;
    let entries = match std::fs::read_dir(src) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_at(src)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_at(src))?;
        let path = entry.path();
        let target = dest.join(entry.file_name());
        if path.is_dir() {
            copy_tree(&path, &target)?;
        } else {
            std::fs::copy(&path, &target).map_err(io_at(&path))?;
        }
    }
    Ok(())
}
