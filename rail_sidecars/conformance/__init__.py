"""The sidecar conformance kit: `gpo-sidecar-conformance` runs the checks of docs/SIDECAR_CONTRACT.md
(section 10) against a sidecar in any language, started as a command, on PostgreSQL and RabbitMQ."""
