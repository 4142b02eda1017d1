"""GPO, the G2P Payments Orchestrator: the orchestrator service."""
