"""Code both the orchestrator (gpo_server) and the sidecars (rail_sidecars) depend on, depending on neither.

It may import the standard library and third-party packages, never gpo_server or rail_sidecars (an import
contract in pyproject.toml enforces it), so that either side can use it without importing the other.
"""
