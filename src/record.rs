//! TODO(skeleton): record
