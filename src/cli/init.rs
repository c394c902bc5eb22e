//! `flow init [DIR] --template standard|chat|evaluation`.

use std::path::PathBuf;

use clap::Args;

use super::output::Failure;
use flow::init::{InitTemplate, scaffold};

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to create the project (default: the current directory).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// What kind of flow to start from.
    #[arg(long, short, value_enum, default_value_t = InitTemplate::Standard)]
    pub template: InitTemplate,
    /// Overwrite files that already exist.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: InitArgs) -> Result<(), Failure> {
    let result = scaffold(&args.dir, args.template, args.force).map_err(|e| Failure::of(&e))?;
    outln!(
        "Created a {} flow in {}:",
        result.template,
        result.root.display()
    );
    for file in &result.files {
        outln!("  {}", file.display());
    }
    outln!("\nNext:");
    for step in result.next_steps() {
        outln!("  {step}");
    }
    Ok(())
}
