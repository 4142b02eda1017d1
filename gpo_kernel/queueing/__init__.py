"""Queueing: the Broker interface (base.py) with one module per implementation."""
