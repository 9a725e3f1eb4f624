"""Tamper-evident audit trail: RFC 6962 Merkle tree, signed checkpoints, canonical JSON."""
