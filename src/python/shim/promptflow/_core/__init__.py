"""Internals of the `flow` promptflow shim."""
