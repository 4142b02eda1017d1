"""Metrics (and, later, traces) of GPO processes."""
