//! Per-environment overlays (`experiment.pr.yaml`, `experiment.dev.yaml`), applied as the
//! GenAIOps template's `_apply_overlay` does: a block present in the overlay (`init` too)
//! replaces the base block whole, an empty block empties it, `name` and `flow` always come from the base file.
//! New evaluators are checked against the datasets in effect (the overlay's when it has them);
//! base evaluators that are kept stay as the base file defined them.

use super::doc::Doc;
use super::file::{
    Experiment, ExperimentFileError, read_connections, read_datasets, read_evaluators, read_extras,
};
use crate::diagnostic::Diagnostic;

/// Apply the overlay `doc` to `experiment`.
pub(crate) fn apply(experiment: &mut Experiment, doc: &Doc) -> Result<(), ExperimentFileError> {
    let mut d: Vec<Diagnostic> = Vec::new();
    if doc.has("datasets") {
        experiment.datasets = read_datasets(doc, &experiment.dir, &mut d);
        if experiment.datasets.is_empty() && d.is_empty() {
            d.push(
                doc.error("datasets", "this overlay empties `datasets`: there is nothing to run")
                    .with_help("list the datasets for this environment, or remove `datasets:` to keep the base file's"),
            );
        }
    }
    if doc.has("evaluators") {
        experiment.evaluators = read_evaluators(doc, &experiment.dir, &experiment.datasets, &mut d);
    }
    if doc.has("connections") {
        experiment.connections = read_connections(doc, &mut d);
    }
    if doc.has("init") {
        experiment.init = super::file::read_init(doc, &doc.root, "", &mut d);
    }
    if doc.has("runtime") {
        experiment.runtime = super::doc::optional_str(doc, &doc.root, "", "runtime", &mut d);
    }
    let extras = read_extras(doc, &mut d);
    if doc.has("variants") {
        experiment.extras.variants = extras.variants;
    }
    if doc.has("combinations") {
        experiment.extras.combinations = extras.combinations;
    }
    if doc.has("sweep") {
        experiment.extras.sweeps = extras.sweeps;
    }
    if doc.has("winner") {
        experiment.extras.winner = extras.winner;
    }
    if d.is_empty() {
        Ok(())
    } else {
        Err(ExperimentFileError { diagnostics: d })
    }
}

#[cfg(test)]
mod tests {
    fn project() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("flows/f")).unwrap();
        std::fs::create_dir_all(dir.path().join("flows/eval")).unwrap();
        std::fs::write(dir.path().join("flows/f/flow.dag.yaml"), "inputs: {}\n").unwrap();
        std::fs::write(dir.path().join("flows/eval/flow.dag.yaml"), "inputs: {}\n").unwrap();
        std::fs::write(dir.path().join("a.jsonl"), "{}\n").unwrap();
        std::fs::write(dir.path().join("b.jsonl"), "{}\n").unwrap();
        std::fs::write(
            dir.path().join("experiment.yaml"),
            "name: x\nflow: f\ndatasets:\n- name: a\n  source: a.jsonl\n  mappings: {q: \"${data.q}\"}\nevaluators:\n- name: eval\n  datasets:\n  - name: a\n    mappings: {p: \"${run.outputs.o}\"}\nruntime: r1\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn an_empty_evaluators_block_turns_evaluation_off_and_datasets_are_replaced() {
        let dir = project();
        std::fs::write(
            dir.path().join("experiment.pr.yaml"),
            "name: x\ndatasets:\n- name: b\n  source: b.jsonl\n  mappings: {q: \"${data.q}\"}\nevaluators:\n",
        )
        .unwrap();
        let e = super::super::file::load(&dir.path().join("experiment.yaml"), Some("pr")).unwrap();
        assert_eq!(e.datasets.len(), 1);
        assert_eq!(e.datasets[0].name, "b");
        assert!(e.evaluators.is_empty());
        assert_eq!(
            e.runtime.as_deref(),
            Some("r1"),
            "blocks absent from the overlay stay"
        );
        assert!(e.overlay.is_some());
    }

    #[test]
    fn a_missing_or_empty_overlay_keeps_the_base() {
        let dir = project();
        let e = super::super::file::load(&dir.path().join("experiment.yaml"), Some("dev")).unwrap();
        assert!(e.overlay.is_none());
        assert_eq!(e.evaluators.len(), 1);
        std::fs::write(dir.path().join("experiment.dev.yaml"), "").unwrap();
        let e = super::super::file::load(&dir.path().join("experiment.yaml"), Some("dev")).unwrap();
        assert_eq!(e.evaluators.len(), 1);
        assert_eq!(e.datasets[0].name, "a");
    }

    #[test]
    fn overlay_evaluators_are_checked_against_the_overlay_datasets() {
        let dir = project();
        std::fs::write(
            dir.path().join("experiment.pr.yaml"),
            "datasets:\n- name: b\n  source: b.jsonl\n  mappings: {}\nevaluators:\n- name: eval\n  datasets:\n  - name: a\n    mappings: {}\n",
        )
        .unwrap();
        let err =
            super::super::file::load(&dir.path().join("experiment.yaml"), Some("pr")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("has no `reference`"), "{text}");
        assert!(err.diagnostics[0].location.is_some());
        assert!(
            err.diagnostics[0]
                .file
                .as_ref()
                .unwrap()
                .ends_with("experiment.pr.yaml")
        );
    }
}
