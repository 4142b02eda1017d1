"""The sidecar conformance kit: `gpo-sidecar-conformance` runs the checks of docs/SIDECAR_CONTRACT.md
(section 10) against a sidecar in any language, started as a command, on PostgreSQL and RabbitMQ.

A top-level package of its own, not part of rail_sidecars: the kit drives GPO from outside (it mints
tokens, uses GPO's client, starts `gpo serve`), so it may import gpo_server, gpo_kernel and rail_sidecars,
while the sidecars themselves may not import the orchestrator and nothing imports the kit.
"""
