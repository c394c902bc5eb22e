//! TODO(skeleton): prompty
