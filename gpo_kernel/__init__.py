"""Code both the orchestrator (gpo_server) and the sidecars (rail_sidecars) depend on, depending on neither.

Only the standard library may be imported here, so that either side can use it without importing the other.
"""
