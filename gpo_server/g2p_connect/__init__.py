"""The G2P Connect v1.0.0 disbursement interface: see docs/G2P_CONNECT.md."""
