//! TODO(skeleton): python
