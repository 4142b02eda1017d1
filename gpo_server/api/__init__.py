"""The gRPC API: the public DisbursementService and the RailService that sidecars call."""
