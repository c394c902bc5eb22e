//! One writer per run directory: a lock file (`.lock`, holding the writer's pid and host)
//! created before a run writes anything and removed when it ends. A second writer — another
//! `flow run --name X`, a second `--resume X`, the same shard started twice — is refused at once,
//! naming the holder. A lock left by a writer that died (kill -9, a lost node) is taken over:
//! on the same host when its pid is no longer running, from another host (a shared volume) when
//! the holder has not refreshed it for [`STALE_AFTER`].

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

/// The lock file's name in a run directory.
pub const LOCK_FILE: &str = ".lock";

/// How often a holder refreshes its lock (its modification time).
const REFRESH_EVERY: Duration = Duration::from_secs(10);

/// A lock from another host not refreshed for this long belongs to a writer that is gone.
pub const STALE_AFTER: Duration = Duration::from_secs(60);

/// Why a run directory cannot be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process writes the run.
    #[error(
        "run `{run}` is being written by another flow process (pid {pid} on {host}, since {since}): one writer at a time\n  help: wait for it to end, or stop it; a lock left by a process that died is taken over by itself ({})",
        .lock.display()
    )]
    Held {
        run: String,
        pid: u32,
        host: String,
        since: String,
        lock: PathBuf,
    },
    /// The lock file could not be written or read.
    #[error("cannot lock the run directory {}: {source}", .dir.display())]
    Io {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl crate::error::Classify for LockError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            LockError::Held { .. } => crate::error::ErrorClass::Config,
            LockError::Io { .. } => crate::error::ErrorClass::Io,
        }
    }
}

/// Who holds a lock, as its file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub since: String,
}

impl Holder {
    fn parse(text: &str) -> Option<Holder> {
        let mut pid = None;
        let mut host = None;
        let mut since = String::new();
        for line in text.lines() {
            match line.split_once('=') {
                Some(("pid", v)) => pid = v.trim().parse().ok(),
                Some(("host", v)) => host = Some(v.trim().to_string()),
                Some(("since", v)) => since = v.trim().to_string(),
                _ => {}
            }
        }
        Some(Holder {
            pid: pid?,
            host: host?,
            since,
        })
    }
}

/// This machine's name, as the lock records it.
fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Whether process `pid` runs on this machine.
fn pid_alive(pid: u32) -> bool {
    if Path::new("/proc/self").exists() {
        return Path::new(&format!("/proc/{pid}")).exists();
    }
    // Without /proc there is no cheap check: assume the holder lives (refusing is the safe side).
    true
}

/// Whether the lock at `path`, held by `holder`, belongs to a writer that is gone.
fn is_stale(path: &Path, holder: &Holder) -> bool {
    if holder.host == this_host() {
        return !pid_alive(holder.pid);
    }
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age > STALE_AFTER)
}

/// The writer of a run directory holds this while it runs; dropping it removes the lock.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    stop: Arc<AtomicBool>,
}

impl RunLock {
    /// Lock the run directory `dir` (which must exist), or say who holds it.
    pub fn acquire(dir: &Path) -> Result<RunLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io_err = |source| LockError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        let body = format!(
            "pid={}\nhost={}\nsince={}\n",
            std::process::id(),
            this_host(),
            crate::record::timestamp(SystemTime::now())
        );
        for _ in 0..3 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    file.write_all(body.as_bytes()).map_err(io_err)?;
                    return Ok(RunLock::hold(path));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    match Holder::parse(&text) {
                        Some(holder) if !is_stale(&path, &holder) => {
                            return Err(LockError::Held {
                                run: dir
                                    .file_name()
                                    .map(|n| n.to_string_lossy().into_owned())
                                    .unwrap_or_default(),
                                pid: holder.pid,
                                host: holder.host,
                                since: holder.since,
                                lock: path,
                            });
                        }
                        // A dead writer's lock (or a torn one): take it over.
                        _ => match std::fs::remove_file(&path) {
                            Ok(()) => continue,
                            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                            Err(e) => return Err(io_err(e)),
                        },
                    }
                }
                Err(e) => return Err(io_err(e)),
            }
        }
        Err(io_err(io::Error::other(
            "another process keeps taking the lock",
        )))
    }

    /// Hold the lock at `path`: refresh it now and then so a writer on another host can tell a
    /// live holder from a gone one.
    fn hold(path: PathBuf) -> RunLock {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, file) = (Arc::clone(&stop), path.clone());
        let refresher = std::thread::Builder::new()
            .name("flow-run-lock".into())
            .spawn(move || {
                let step = Duration::from_millis(250);
                let mut waited = Duration::ZERO;
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(step);
                    waited += step;
                    if waited >= REFRESH_EVERY {
                        waited = Duration::ZERO;
                        if let Ok(f) = std::fs::OpenOptions::new().append(true).open(&file) {
                            let _ = f.set_modified(SystemTime::now());
                        }
                    }
                }
            });
        // Without the refresher the lock still works on this host (pid liveness); only a
        // writer on another host would take it over after STALE_AFTER.
        drop(refresher);
        RunLock { path, stop }
    }
}

impl Drop for RunLock {
    /// Release the lock, unless another writer took it over meanwhile (then it is theirs).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let ours = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|t| Holder::parse(&t))
            .is_some_and(|h| h.pid == std::process::id() && h.host == this_host());
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Whether the run in `dir` has a live writer now (a `Running` run without one was stopped
/// by a crash or a kill and is interrupted).
pub fn has_live_writer(dir: &Path) -> bool {
    let path = dir.join(LOCK_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Holder::parse(&text).is_some_and(|h| !is_stale(&path, &h)),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_and_the_lock_goes_with_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        assert!(has_live_writer(dir.path()));
        // The same process locking again stands for a second writer only through another
        // process; here a lock held by a live pid of this host is what matters.
        std::fs::write(
            dir.path().join(LOCK_FILE),
            format!("pid=1\nhost={}\nsince=then\n", this_host()),
        )
        .unwrap();
        let err = RunLock::acquire(dir.path()).unwrap_err();
        assert!(matches!(err, LockError::Held { pid: 1, .. }), "{err}");
        // The first writer's lock was taken from it: dropping it leaves the new holder's.
        drop(first);
        assert!(dir.path().join(LOCK_FILE).exists());
        std::fs::remove_file(dir.path().join(LOCK_FILE)).unwrap();
        let again = RunLock::acquire(dir.path()).unwrap();
        drop(again);
        assert!(!dir.path().join(LOCK_FILE).exists());
    }

    #[test]
    fn a_dead_writers_lock_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        // No process has pid u32::MAX - 1.
        std::fs::write(
            dir.path().join(LOCK_FILE),
            format!("pid={}\nhost={}\nsince=then\n", u32::MAX - 1, this_host()),
        )
        .unwrap();
        assert!(!has_live_writer(dir.path()));
        let lock = RunLock::acquire(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert!(text.contains(&format!("pid={}", std::process::id())));
        drop(lock);
    }

    #[test]
    fn another_hosts_lock_is_held_until_it_goes_stale() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        std::fs::write(&path, "pid=7\nhost=another-node\nsince=then\n").unwrap();
        assert!(RunLock::acquire(dir.path()).is_err());
        let old = SystemTime::now() - STALE_AFTER - Duration::from_secs(5);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(RunLock::acquire(dir.path()).is_ok());
    }
}
