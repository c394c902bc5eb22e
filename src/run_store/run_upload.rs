//! A run's copy in object storage, kept up to date while the run is written: each checkpoint
//! sends only the files that are new or changed since the last one, in an order that leaves a
//! copy that can be resumed at every moment. A process killed outright (SIGKILL, a lost node)
//! then loses only the lines since its last checkpoint: the retry downloads the copy and
//! resumes it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use futures::{StreamExt, TryStreamExt};

use super::RunDir;
use super::remote::{RemoteDir, RemoteError, collect_files};

/// Uploads and downloads in flight at once.
const TRANSFERS: usize = 16;

/// What was sent of a file: its length, and its modification time (none for journal files,
/// which only grow).
type Sent = (u64, Option<SystemTime>);

/// A run directory and its copy in object storage.
pub struct RunUpload {
    dir: RunDir,
    remote: RemoteDir,
    sent: HashMap<PathBuf, Sent>,
}

impl RunUpload {
    /// The run in `dir`, copied to `remote` (nothing is sent yet).
    pub fn new(dir: RunDir, remote: RemoteDir) -> RunUpload {
        RunUpload {
            dir,
            remote,
            sent: HashMap::new(),
        }
    }

    /// Where the copy is.
    pub fn remote(&self) -> &RemoteDir {
        &self.remote
    }

    /// Takes every file of the directory as it is now as sent: the copy holds the same (the
    /// directory was just downloaded from it).
    pub fn mark_sent(&mut self) {
        let mut files = Vec::new();
        if collect_files(&self.dir.path, Path::new(""), &mut files).is_err() {
            return;
        }
        for rel in files {
            let stamp = if rel.starts_with("flow_artifacts") {
                self.stamp(&rel).map(|(len, _)| (len, None))
            } else {
                self.stamp(&rel)
            };
            if let Some(stamp) = stamp {
                self.sent.insert(rel, stamp);
            }
        }
    }

    /// Sends what changed since the last call (everything, the first time); returns how many
    /// files it sent. The journal (`flow_artifacts/`) is read first, up to its last whole
    /// record, and sent after the other files: the node records of every line it holds were
    /// written before that line's record, so the copy never has a line without them.
    /// `meta.json` goes last, so a copy that has one is a whole run.
    pub async fn checkpoint(&mut self) -> Result<usize, RemoteError> {
        let local = |source, path: &Path| RemoteError::Local {
            path: path.to_path_buf(),
            source,
        };
        let journal = self.journal().map_err(|e| local(e, &self.dir.path))?;
        let mut files = Vec::new();
        collect_files(&self.dir.path, Path::new(""), &mut files)
            .map_err(|e| local(e, &self.dir.path))?;
        let meta = PathBuf::from("meta.json");
        let changed: Vec<(PathBuf, Sent)> = files
            .into_iter()
            .filter(|rel| {
                !rel.starts_with("flow_artifacts")
                    && *rel != meta
                    && rel.extension().is_none_or(|x| x != "tmp")
            })
            .filter_map(|rel| {
                let stamp = self.stamp(&rel)?;
                (self.sent.get(&rel) != Some(&stamp)).then_some((rel, stamp))
            })
            .collect();
        let dir = &self.dir;
        let remote = &self.remote;
        let sent: Vec<Option<(PathBuf, Sent)>> =
            futures::stream::iter(changed.into_iter().map(|(rel, stamp)| async move {
                let path = dir.path.join(&rel);
                match tokio::fs::read(&path).await {
                    Ok(bytes) => {
                        remote.put(&rel, bytes).await?;
                        Ok(Some((rel, stamp)))
                    }
                    // Renamed or removed since it was listed (the run is being written).
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(source) => Err(RemoteError::Local { path, source }),
                }
            }))
            .buffer_unordered(TRANSFERS)
            .try_collect()
            .await?;
        let mut count = 0;
        for (rel, stamp) in sent.into_iter().flatten() {
            self.sent.insert(rel, stamp);
            count += 1;
        }
        for (rel, bytes) in journal {
            let stamp = (bytes.len() as u64, None);
            if self.sent.get(&rel) != Some(&stamp) {
                self.remote.put(&rel, bytes).await?;
                self.sent.insert(rel, stamp);
                count += 1;
            }
        }
        if let Some(stamp) = self.stamp(&meta)
            && self.sent.get(&meta) != Some(&stamp)
        {
            let path = self.dir.meta_file();
            let bytes = std::fs::read(&path).map_err(|e| local(e, &path))?;
            self.remote.put(&meta, bytes).await?;
            self.sent.insert(meta, stamp);
            count += 1;
        }
        Ok(count)
    }

    /// The upload of a run that ended: a last checkpoint, then the copy's files that the run
    /// no longer has (an earlier run's under this name, a removed `error.json`) are removed.
    pub async fn finish(&mut self) -> Result<usize, RemoteError> {
        let count = self.checkpoint().await?;
        let mut files = Vec::new();
        collect_files(&self.dir.path, Path::new(""), &mut files).map_err(|source| {
            RemoteError::Local {
                path: self.dir.path.clone(),
                source,
            }
        })?;
        let here: HashSet<PathBuf> = files.into_iter().collect();
        for rel in self.remote.files().await? {
            if !here.contains(&rel) {
                self.remote.delete(&rel).await?;
            }
        }
        Ok(count)
    }

    /// Length and modification time of the file `rel`, if it is there.
    fn stamp(&self, rel: &Path) -> Option<Sent> {
        let m = std::fs::metadata(self.dir.path.join(rel)).ok()?;
        Some((m.len(), m.modified().ok()))
    }

    /// Every journal file, cut after its last whole record.
    fn journal(&self) -> std::io::Result<Vec<(PathBuf, Vec<u8>)>> {
        let rd = match std::fs::read_dir(self.dir.flow_artifacts_dir()) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry?;
            let mut bytes = std::fs::read(entry.path())?;
            let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            bytes.truncate(whole);
            out.push((Path::new("flow_artifacts").join(entry.file_name()), bytes));
        }
        Ok(out)
    }
}
