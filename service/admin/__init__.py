"""Administration pages: users and roles, ingest tokens, agents, notification and policy status."""
