"""promptflow contracts used by flow code."""
