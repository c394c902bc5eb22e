//! Content hashes that tell two runs or experiments apart (a shard's flow and data, an
//! experiment's inputs): SHA-256 of the flow as it ran (the YAML with
//! the variant and swept parameters applied, plus the files of the flow's folder — prompts,
//! Python tools and their helpers — and its `additional_includes`, leaving out the prompts of
//! variants that are not applied), of each dataset file, and of the experiment file(s). Equal
//! hashes mean equal inputs.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use crate::model::Flow;

/// Folders that are not part of a flow (caches, local state).
const SKIPPED: &[&str] = &[
    ".promptflow",
    ".flow",
    "__pycache__",
    ".git",
    ".venv",
    "node_modules",
    ".runs",
];

/// `sha256:<hex>` of some bytes.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// `sha256:<hex>` of a file, read in chunks (datasets may be large).
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex(&hasher.finalize())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The flow's YAML as it runs: the selected variants applied (`node_variants` dropped) and the
/// swept `parameters` (node → input → value) written into the nodes' inputs.
pub fn applied_yaml(
    flow: &Flow,
    parameters: &IndexMap<String, IndexMap<String, Json>>,
) -> Result<String, String> {
    let text = std::fs::read_to_string(&flow.file)
        .map_err(|e| format!("cannot read {}: {e}", flow.file.display()))?;
    let applied = crate::model::variant_applied_yaml(&text, &flow.selected_variants)?;
    if parameters.is_empty() {
        return Ok(applied);
    }
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&applied).map_err(|e| e.to_string())?;
    if let Some(serde_yaml::Value::Sequence(nodes)) = doc.get_mut("nodes") {
        for node in nodes.iter_mut() {
            let Some(name) = node
                .get("name")
                .and_then(|n| n.as_str())
                .map(str::to_string)
            else {
                continue;
            };
            let Some(params) = parameters.get(&name) else {
                continue;
            };
            let Some(map) = node.as_mapping_mut() else {
                continue;
            };
            let inputs = map
                .entry("inputs".into())
                .or_insert_with(|| serde_yaml::Value::Mapping(Default::default()));
            if let Some(inputs) = inputs.as_mapping_mut() {
                for (k, v) in params {
                    let v = serde_yaml::to_value(v).map_err(|e| e.to_string())?;
                    inputs.insert(serde_yaml::Value::String(k.clone()), v);
                }
            }
        }
    }
    serde_yaml::to_string(&doc).map_err(|e| e.to_string())
}

/// The hash of the flow as it runs: `applied` stands in for the flow file; every other file of
/// the flow folder and its `additional_includes` counts by relative path and content.
pub fn flow_hash(flow: &Flow, applied: &str) -> io::Result<String> {
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    collect(&flow.dir, &flow.dir, &mut files)?;
    for include in &flow.additional_includes {
        let src = flow.dir.join(include);
        if src.is_dir() {
            collect(&src, src.parent().unwrap_or(&flow.dir), &mut files)?;
        } else if src.is_file() {
            let name = src
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            files.push((name, src));
        }
    }
    // `flow.dir` is absolute; `flow.file` is as the user wrote it (maybe relative).
    let file = std::path::absolute(&flow.file).unwrap_or_else(|_| flow.file.clone());
    let flow_file = file
        .strip_prefix(&flow.dir)
        .map(|p| p.to_string_lossy().replace('\\', "/"))
        .unwrap_or_default();
    // Prompts of variants that are not applied are not part of this flow.
    let used: Vec<PathBuf> = flow
        .nodes
        .iter()
        .map(|n| flow.dir.join(&n.source))
        .collect();
    let unused: Vec<PathBuf> = flow
        .node_variants
        .values()
        .flat_map(|nv| nv.variants.values())
        .map(|v| flow.dir.join(&v.node.source))
        .filter(|p| !used.contains(p))
        .collect();
    files.retain(|(rel, path)| *rel != flow_file && !unused.contains(path));
    files.sort();
    let mut hasher = Sha256::new();
    hasher.update(format!(
        "{flow_file}\0{}\n",
        sha256_bytes(applied.as_bytes())
    ));
    for (rel, path) in files {
        hasher.update(format!("{rel}\0{}\n", sha256_file(&path)?));
    }
    Ok(format!("sha256:{}", hex(&hasher.finalize())))
}

fn collect(dir: &Path, root: &Path, out: &mut Vec<(String, PathBuf)>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if SKIPPED.iter().any(|s| name == *s) {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            collect(&path, root, out)?;
        } else if path.is_file() {
            let rel = path
                .strip_prefix(root)
                .map(|p| p.to_string_lossy().replace('\\', "/"))
                .unwrap_or_default();
            out.push((rel, path));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("flow.dag.yaml"),
            "inputs: {q: {type: string}}\noutputs: {a: {type: string, reference: \"${ask.output}\"}}\nnodes:\n- name: ask\n  type: llm\n  source: {type: code, path: p.jinja2}\n  inputs: {temperature: 0, model: m, q: \"${inputs.q}\"}\n  connection: c\n  api: chat\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("p.jinja2"), "user:\n{{q}}").unwrap();
        std::fs::create_dir_all(dir.path().join("__pycache__")).unwrap();
        std::fs::write(dir.path().join("__pycache__/x.pyc"), "junk").unwrap();
        dir
    }

    #[test]
    fn the_flow_hash_follows_prompts_and_parameters_but_not_caches() {
        let dir = flow_dir();
        let flow = crate::model::load(dir.path(), &[]).unwrap();
        let none = IndexMap::new();
        let a = flow_hash(&flow, &applied_yaml(&flow, &none).unwrap()).unwrap();
        let again = flow_hash(&flow, &applied_yaml(&flow, &none).unwrap()).unwrap();
        assert_eq!(a, again);
        std::fs::write(dir.path().join("__pycache__/x.pyc"), "other junk").unwrap();
        assert_eq!(
            a,
            flow_hash(&flow, &applied_yaml(&flow, &none).unwrap()).unwrap()
        );

        let mut params = IndexMap::new();
        let mut p = IndexMap::new();
        p.insert("temperature".to_string(), serde_json::json!(0.7));
        params.insert("ask".to_string(), p);
        let yaml = applied_yaml(&flow, &params).unwrap();
        assert!(yaml.contains("temperature: 0.7"), "{yaml}");
        assert_ne!(a, flow_hash(&flow, &yaml).unwrap());

        std::fs::write(dir.path().join("p.jinja2"), "user:\nchanged {{q}}").unwrap();
        assert_ne!(
            a,
            flow_hash(&flow, &applied_yaml(&flow, &none).unwrap()).unwrap()
        );
    }

    #[test]
    fn file_hashes_are_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.jsonl");
        std::fs::write(&p, "abc").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(sha256_bytes(b"abc"), sha256_file(&p).unwrap());
    }
}
