//! The project a flow belongs to: its root is the nearest folder, from the flow's own up, that
//! holds `.git`, `.flow` or `flow.toml` (as cargo and git find theirs). Files a flow reads —
//! node sources, `additional_includes`, through symlinks too — must stay inside it
//! (docs/refusals.md), so a flow cannot read or ship files from elsewhere on the machine.

use std::path::{Path, PathBuf};

/// The file `flow init` writes to mark a project's root (it holds no settings).
pub const ROOT_FILE: &str = "flow.toml";

/// The files that mark a project's root.
pub const ROOT_MARKERS: [&str; 3] = [".git", ".flow", ROOT_FILE];

/// The root of the project holding `dir`: the nearest ancestor (or `dir`) with a marker; without
/// one, the current directory when it holds `dir`, else `dir` itself.
pub fn root_of(dir: &Path) -> PathBuf {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    if let Some(root) = marked_ancestor(&dir) {
        return root.to_path_buf();
    }
    match std::env::current_dir().and_then(std::fs::canonicalize) {
        Ok(cwd) if dir.starts_with(&cwd) => cwd,
        _ => dir,
    }
}

/// Where a command works: the current directory, and the root of the project holding it — the
/// nearest folder from the current one up that holds `.git`, `.flow` or `flow.toml` (else the
/// current directory). `.flow/` (runs, cache, experiments, prices) lives at the root, so a
/// command finds the same runs from any folder of the project.
#[derive(Debug, Clone)]
pub struct Workdir {
    /// The current directory.
    pub cwd: PathBuf,
    /// The project's root.
    pub root: PathBuf,
}

impl Workdir {
    /// The current directory and its project root.
    pub fn current() -> std::io::Result<Workdir> {
        let cwd = std::env::current_dir()?;
        Ok(Workdir::at(cwd))
    }

    /// `cwd` and its project root.
    pub fn at(cwd: PathBuf) -> Workdir {
        let root = marked_ancestor(&cwd).unwrap_or(&cwd).to_path_buf();
        Workdir { cwd, root }
    }

    /// The first line of the root's `flow.toml` that is not blank or a comment (1-based line
    /// number and text): `flow` reads no settings from it, so one written there is refused
    /// rather than ignored.
    pub fn root_file_setting(&self) -> Option<(usize, String)> {
        let text = std::fs::read_to_string(self.root.join(ROOT_FILE)).ok()?;
        text.lines()
            .enumerate()
            .find(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .map(|(i, l)| (i + 1, l.to_string()))
    }

    /// The `.env` read by default: the nearest one from the current directory up to the
    /// project root; `Err` with the path one would be read from (at the root) when none exists.
    pub fn dotenv(&self) -> Result<PathBuf, PathBuf> {
        self.cwd
            .ancestors()
            .take_while(|a| a.starts_with(&self.root))
            .map(|a| a.join(".env"))
            .find(|p| p.is_file())
            .ok_or_else(|| self.root.join(".env"))
    }
}

/// The nearest of `dir` and its ancestors that holds a root marker.
fn marked_ancestor(dir: &Path) -> Option<&Path> {
    dir.ancestors()
        .find(|a| ROOT_MARKERS.iter().any(|m| a.join(m).exists()))
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
    fn a_commands_root_is_the_nearest_marked_folder_up_from_where_it_runs() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        let deep = repo.join("flows/f");
        std::fs::create_dir_all(&deep).unwrap();
        // No marker: the current directory is the root.
        assert_eq!(Workdir::at(deep.clone()).root, deep);
        assert_eq!(Workdir::at(deep.clone()).dotenv(), Err(deep.join(".env")));
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        let w = Workdir::at(deep.clone());
        assert_eq!(w.root, repo);
        assert_eq!(w.dotenv(), Err(repo.join(".env")));
        std::fs::write(repo.join(".env"), "A=1").unwrap();
        assert_eq!(w.dotenv(), Ok(repo.join(".env")));
        // The nearest .env wins; one above the root is never read.
        std::fs::write(repo.join("flows/.env"), "A=2").unwrap();
        assert_eq!(w.dotenv(), Ok(repo.join("flows/.env")));
        std::fs::write(tmp.path().join(".env"), "A=3").unwrap();
        std::fs::remove_file(repo.join(".env")).unwrap();
        std::fs::remove_file(repo.join("flows/.env")).unwrap();
        assert_eq!(w.dotenv(), Err(repo.join(".env")));
        // A nearer .flow marks a nearer root.
        std::fs::create_dir_all(repo.join("flows/.flow")).unwrap();
        assert_eq!(Workdir::at(deep).root, repo.join("flows"));
    }

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
