//! TODO(skeleton): provider
