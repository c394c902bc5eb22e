//! The integration tests, one test binary: a module per area, the real `flow` binary and library
//! against loopback servers (mock LLM, S3, OTLP) and the real `python3`. Shared helpers live in
//! `support/`, fixtures in `tests/fixtures/`, insta snapshots in `snapshots/`.
//!
//! Run one area with `cargo test --test it batch::`, one test with its full path.

mod support;

mod aggregation;
mod bad_input;
mod batch;
mod batch_faults;
mod bounded;
mod build;
mod cache;
mod cache_cli;
mod cancel;
mod ci_examples;
mod ci_report;
mod conformance;
mod connections;
mod connections_cli;
mod data;
mod deploy;
mod deploy_job;
mod docker_image;
mod eval;
mod evaluators;
mod exit_status;
mod experiment;
mod flex;
mod gate;
mod images;
mod init;
mod judge;
mod limiter;
mod local_model;
mod object_storage;
mod pf_connections;
mod pf_tools;
mod pool;
mod project_root;
mod promptflow_examples;
mod prompty;
mod providers;
mod python_nodes;
mod refusals;
mod report;
mod report_browser;
mod resume;
mod run_line;
mod runs_command;
mod serve;
mod shards;
mod shim_semantics;
mod shipped_flows;
mod snapshots;
mod telemetry;
mod template_conformance;
mod validate;
