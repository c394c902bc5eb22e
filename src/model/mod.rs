//! The flow model: `flow.dag.yaml` (`flow.flex.yaml`, `.prompty`) loaded into typed, located values.
//!
//! Loading never runs anything: it reads the YAML, checks shapes and types, and keeps an index
//! of where every value is so later stages (the DAG check, the executor) can point at the text.

mod applied;
mod flex;
mod load;
pub mod locate;
pub mod prompty_flow;
pub mod reference;
mod types;
mod variant;

use std::path::Path;

pub use applied::variant_applied_yaml;
pub use flex::{InitSource, apply_init};
pub use load::{LoadError, closest, find_flow_file, parse_flow};
pub use reference::{PathStep, Reference, ValueSource};
pub use types::*;
pub use variant::VariantSelection;

use crate::diagnostic::Diagnostic;

/// Load a flow from a directory, a `flow.dag.yaml` or a `.prompty` file, and apply variants.
pub fn load(path: &Path, variants: &[VariantSelection]) -> Result<Flow, LoadError> {
    let file = find_flow_file(path)?;
    let text = std::fs::read_to_string(&file).map_err(|e| {
        LoadError::one(Diagnostic::error(format!(
            "cannot read {}: {e}",
            file.display()
        )))
    })?;
    let flow = if file.extension().is_some_and(|e| e == "prompty") {
        prompty_flow::flow_from_prompty(&file, &text)?
    } else {
        let mut flow = parse_flow(&file, &text)?;
        flex::complete(&mut flow)?;
        flow
    };
    flow.apply_variants(variants)
}
