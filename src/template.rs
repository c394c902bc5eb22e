//! TODO(skeleton): template
