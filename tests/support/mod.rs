//! Shared helpers for integration tests. Test files use `mod support;`.

#![allow(dead_code)]

pub mod context;
pub mod mock_llm;
pub mod otlp;
pub mod qa_project;
pub mod s3;
pub mod server;
