//! TODO(skeleton): executor
