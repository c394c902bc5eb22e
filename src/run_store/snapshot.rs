//! `snapshot/`: the flow as it ran — its directory's files (and `additional_includes`), with
//! `flow.dag.yaml` rewritten so the variants that ran are the nodes and `node_variants` is gone.

use std::io;
use std::path::Path;

use crate::model::Flow;

/// Directories never copied into a snapshot.
const SKIPPED: &[&str] = &[
    ".promptflow",
    ".flow",
    "__pycache__",
    ".git",
    ".venv",
    "node_modules",
    ".runs",
];

/// Copy `flow` into `dest` with its variants applied.
pub fn write_snapshot(flow: &Flow, dest: &Path) -> io::Result<()> {
    copy_flow(flow, dest, &|_| false)
}

/// Copy `flow` into `dest` with its variants applied, leaving out the files for which `skip`
/// (given each source path) is true (`flow build` leaves out secrets).
pub fn copy_flow(flow: &Flow, dest: &Path, skip: &dyn Fn(&Path) -> bool) -> io::Result<()> {
    std::fs::create_dir_all(dest)?;
    // A link that leads out of the project is never followed (docs/refusals.md). The copy
    // itself is never copied: `dest` may lie inside the flow's folder (`flow build x.prompty
    // --out-dir out` copies the folder holding the .prompty, `out` among it).
    let root = crate::project::root_of(&flow.dir);
    let dest_real = dest.canonicalize()?;
    let skip = &|path: &Path| {
        skip(path)
            || (path.is_symlink() && crate::project::outside(path, &root).is_some())
            || (path.is_dir() && path.canonicalize().is_ok_and(|p| p == dest_real))
    };
    copy_tree(&flow.dir, dest, skip)?;
    for include in &flow.additional_includes {
        let src = flow.dir.join(include);
        let Some(name) = src.file_name() else {
            continue;
        };
        if src.is_dir() {
            copy_tree(&src, &dest.join(name), skip)?;
        } else if src.is_file() && !skip(&src) {
            std::fs::copy(&src, dest.join(name))?;
        }
    }
    if flow
        .file
        .extension()
        .is_some_and(|e| e == "yaml" || e == "yml")
    {
        let text = std::fs::read_to_string(&flow.file)?;
        let applied = crate::model::variant_applied_yaml(&text, &flow.selected_variants)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let name = flow.file.file_name().unwrap_or_default();
        std::fs::write(dest.join(name), applied)?;
    }
    Ok(())
}

fn copy_tree(src: &Path, dest: &Path, skip: &dyn Fn(&Path) -> bool) -> io::Result<()> {
    std::fs::create_dir_all(dest)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let name = entry.file_name();
        if SKIPPED.iter().any(|s| name == *s) {
            continue;
        }
        let path = entry.path();
        if skip(&path) {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&path, &dest.join(&name), skip)?;
        } else if kind.is_file() || (kind.is_symlink() && path.is_file()) {
            std::fs::copy(&path, dest.join(&name))?;
        }
    }
    Ok(())
}
