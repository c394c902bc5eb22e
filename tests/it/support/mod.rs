//! Helpers shared by the integration-test modules: `use crate::support::...`.

pub mod batch;
pub mod child;
pub mod context;
pub mod docker;
pub mod local_model;
pub mod mock_llm;
pub mod otlp;
pub mod qa_project;
pub mod s3;
pub mod server;
