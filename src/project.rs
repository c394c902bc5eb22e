//! The project a flow belongs to: its root is the nearest folder, from the flow's own up, that
//! holds `.git`, `.flow` or `flow.toml` (as cargo and git find theirs). Files a flow reads —
//! node sources, `additional_includes`, through symlinks too — must stay inside it
//! (docs/refusals.md), so a flow cannot read or ship files from elsewhere on the machine.

use std::path::{Path, PathBuf};

/// The files that mark a project's root.
pub const ROOT_MARKERS: [&str; 3] = [".git", ".flow", "flow.toml"];

/// The root of the project holding `dir`: the nearest ancestor (or `dir`) with a marker; without
/// one, the current directory when it holds `dir`, else `dir` itself.
pub fn root_of(dir: &Path) -> PathBuf {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    for ancestor in dir.ancestors() {
        if ROOT_MARKERS.iter().any(|m| ancestor.join(m).exists()) {
            return ancestor.to_path_buf();
        }
    }
    match std::env::current_dir().and_then(std::fs::canonicalize) {
        Ok(cwd) if dir.starts_with(&cwd) => cwd,
        _ => dir,
    }
}

/// Where `path` really is (symlinks followed), when that is outside `root`.
pub fn outside(path: &Path, root: &Path) -> Option<PathBuf> {
    let real = std::fs::canonicalize(path).ok()?;
    (!real.starts_with(root)).then_some(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_the_nearest_marked_folder_and_links_out_of_it_are_outside() {
        let tmp = tempfile::tempdir().unwrap();
        let project = tmp.path().join("repo");
        let flow = project.join("flows/f");
        std::fs::create_dir_all(&flow).unwrap();
        std::fs::create_dir_all(project.join(".git")).unwrap();
        let root = root_of(&flow);
        assert_eq!(root, std::fs::canonicalize(&project).unwrap());
        std::fs::write(project.join("common.py"), "x").unwrap();
        std::fs::write(tmp.path().join("secret.txt"), "x").unwrap();
        assert_eq!(outside(&project.join("common.py"), &root), None);
        assert!(outside(&tmp.path().join("secret.txt"), &root).is_some());
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(tmp.path().join("secret.txt"), flow.join("link.txt"))
                .unwrap();
            assert!(outside(&flow.join("link.txt"), &root).is_some());
        }
    }
}
