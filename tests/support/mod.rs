//! Shared helpers for integration tests. Test files use `mod support;`.

#![allow(dead_code)]

pub mod mock_llm;
