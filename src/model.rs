//! TODO(skeleton): model
