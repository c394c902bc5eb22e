//! `flow`: run promptflow `flow.dag.yaml` flows from one binary.
//!
//! Data flows one way: `model` (typed, located flow definition) → `dag` (validated, ordered)
//! → `executor` (one line = one future) → `record` (what ran). Connections resolve from `.env`
//! and the environment (`connection`), and `provider` turns an LLM request into an HTTP call.
//! `template` renders Jinja2 prompts and splits them into chat messages; `python` runs `@tool`
//! functions in long-lived worker processes.

pub mod batch;
pub mod build;
pub mod cache;
pub mod chat;
pub mod ci_report;
pub mod connection;
pub mod cost;
pub mod dag;
pub mod data;
pub mod deploy;
pub mod diagnostic;
pub mod error;
pub mod eval;
pub mod evaluators;
pub mod executor;
pub mod experiment;
pub mod gate;
pub mod hash;
pub mod image;
pub mod init;
pub mod judge;
pub mod model;
pub mod non_finite;
pub mod project;
pub mod prompty;
pub mod provider;
pub mod python;
pub mod record;
pub mod report;
pub mod run_store;
pub mod serve;
pub mod telemetry;
pub mod template;
pub mod token_count;
