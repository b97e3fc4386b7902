"""Aggregation: pure functions over weight files, run in the coordinator's process pool."""
