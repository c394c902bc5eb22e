//! TODO(skeleton): dag
