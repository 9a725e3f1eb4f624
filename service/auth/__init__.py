"""Accounts, roles, login and ingest tokens."""
