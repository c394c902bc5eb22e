//! The embedded `worker.py` and `promptflow` shim, written once to a per-version cache directory.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use super::PythonError;

/// The embedded files: path inside the cache directory, contents.
const FILES: &[(&str, &str)] = &[
    ("worker.py", include_str!("worker.py")),
    (
        "promptflow/__init__.py",
        include_str!("shim/promptflow/__init__.py"),
    ),
    (
        "promptflow/_core/__init__.py",
        include_str!("shim/promptflow/_core/__init__.py"),
    ),
    (
        "promptflow/_core/tool.py",
        include_str!("shim/promptflow/_core/tool.py"),
    ),
    (
        "promptflow/_core/metric_logger.py",
        include_str!("shim/promptflow/_core/metric_logger.py"),
    ),
    (
        "promptflow/_internal/__init__.py",
        include_str!("shim/promptflow/_internal/__init__.py"),
    ),
    (
        "promptflow/connections/__init__.py",
        include_str!("shim/promptflow/connections/__init__.py"),
    ),
    (
        "promptflow/contracts/__init__.py",
        include_str!("shim/promptflow/contracts/__init__.py"),
    ),
    (
        "promptflow/contracts/multimedia.py",
        include_str!("shim/promptflow/contracts/multimedia.py"),
    ),
    (
        "promptflow/contracts/types.py",
        include_str!("shim/promptflow/contracts/types.py"),
    ),
    (
        "promptflow/core/__init__.py",
        include_str!("shim/promptflow/core/__init__.py"),
    ),
    (
        "promptflow/core/_flow.py",
        include_str!("shim/promptflow/core/_flow.py"),
    ),
    (
        "promptflow/core/_model_configuration.py",
        include_str!("shim/promptflow/core/_model_configuration.py"),
    ),
    (
        "promptflow/tracing/__init__.py",
        include_str!("shim/promptflow/tracing/__init__.py"),
    ),
    (
        "promptflow/tracing/_operation_context.py",
        include_str!("shim/promptflow/tracing/_operation_context.py"),
    ),
    (
        "promptflow/entities/__init__.py",
        include_str!("shim/promptflow/entities/__init__.py"),
    ),
    (
        "promptflow/_sdk/__init__.py",
        include_str!("shim/promptflow/_sdk/__init__.py"),
    ),
    (
        "promptflow/_sdk/entities/__init__.py",
        include_str!("shim/promptflow/_sdk/entities/__init__.py"),
    ),
    (
        "promptflow/_core/host.py",
        include_str!("shim/promptflow/_core/host.py"),
    ),
    (
        "promptflow/tools/__init__.py",
        include_str!("shim/promptflow/tools/__init__.py"),
    ),
    (
        "promptflow/tools/exception.py",
        include_str!("shim/promptflow/tools/exception.py"),
    ),
    (
        "promptflow/tools/common.py",
        include_str!("shim/promptflow/tools/common.py"),
    ),
    (
        "promptflow/tools/aoai.py",
        include_str!("shim/promptflow/tools/aoai.py"),
    ),
    (
        "promptflow/tools/openai.py",
        include_str!("shim/promptflow/tools/openai.py"),
    ),
    (
        "promptflow/tools/embedding.py",
        include_str!("shim/promptflow/tools/embedding.py"),
    ),
    (
        "promptflow/tools/serpapi.py",
        include_str!("shim/promptflow/tools/serpapi.py"),
    ),
];

/// The name of the worker script inside the shim directory.
pub(crate) const WORKER_SCRIPT: &str = "worker.py";

static INSTALLED: OnceLock<PathBuf> = OnceLock::new();

/// Write the embedded worker and shim under the system temp directory (once per version of
/// the embedded files) and return that directory. Safe when several processes race: each
/// writes a private directory and renames it into place. Blocking I/O: call it from
/// `spawn_blocking` in async code.
pub fn install_shim() -> Result<PathBuf, PythonError> {
    if let Some(dir) = INSTALLED.get() {
        return Ok(dir.clone());
    }
    let dir = install_into(&std::env::temp_dir())?;
    Ok(INSTALLED.get_or_init(|| dir).clone())
}

fn version_hash() -> String {
    let mut h = Sha256::new();
    for (path, contents) in FILES {
        h.update(path.as_bytes());
        h.update([0]);
        h.update(contents.as_bytes());
        h.update([0]);
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn is_complete(dir: &Path) -> bool {
    FILES.iter().all(|(path, _)| dir.join(path).is_file())
}

/// Install into `base/flow-python-<hash>` (separate from [`install_shim`] for tests).
pub(crate) fn install_into(base: &Path) -> Result<PathBuf, PythonError> {
    let target = base.join(format!("flow-python-{}", version_hash()));
    if is_complete(&target) {
        return Ok(target);
    }
    let err = |dir: &Path| {
        let dir = dir.to_path_buf();
        move |source| PythonError::ShimInstall { dir, source }
    };
    let tmp = base.join(format!(
        ".flow-python-{}.{}-{:x}",
        version_hash(),
        std::process::id(),
        fastrand::u64(..)
    ));
    for (path, contents) in FILES {
        let file = tmp.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(err(parent))?;
        }
        std::fs::write(&file, contents).map_err(err(&file))?;
    }
    if target.exists() && !is_complete(&target) {
        // a damaged earlier install (files deleted by a temp cleaner): replace it
        let _ = std::fs::remove_dir_all(&target);
    }
    match std::fs::rename(&tmp, &target) {
        Ok(()) => Ok(target),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            if is_complete(&target) {
                // another process won the race with identical contents
                Ok(target)
            } else {
                Err(PythonError::ShimInstall {
                    dir: target,
                    source: e,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_once_and_reuses_the_directory() {
        let base = tempfile::tempdir().unwrap();
        let a = install_into(base.path()).unwrap();
        assert!(a.join("promptflow/connections/__init__.py").is_file());
        assert!(a.join(WORKER_SCRIPT).is_file());
        let b = install_into(base.path()).unwrap();
        assert_eq!(a, b);
        // no temporary directories left behind
        let entries = std::fs::read_dir(base.path()).unwrap().count();
        assert_eq!(entries, 1);
    }

    #[test]
    fn racing_installs_agree() {
        let base = tempfile::tempdir().unwrap();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let p = base.path().to_path_buf();
                std::thread::spawn(move || install_into(&p).unwrap())
            })
            .collect();
        let dirs: Vec<PathBuf> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(dirs.windows(2).all(|w| w[0] == w[1]));
        assert!(is_complete(&dirs[0]));
        assert_eq!(std::fs::read_dir(base.path()).unwrap().count(), 1);
    }

    #[test]
    fn repairs_a_damaged_install() {
        let base = tempfile::tempdir().unwrap();
        let a = install_into(base.path()).unwrap();
        std::fs::remove_file(a.join("promptflow/core/__init__.py")).unwrap();
        let b = install_into(base.path()).unwrap();
        assert_eq!(a, b);
        assert!(is_complete(&b));
    }
}
