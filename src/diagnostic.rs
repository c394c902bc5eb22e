//! TODO(skeleton): diagnostic
