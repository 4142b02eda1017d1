"""The sidecar SDK: what every rail shares (its state file) and what the runner applies to every rail
(its rate limit)."""
