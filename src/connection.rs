//! TODO(skeleton): connection
