"""Access events: schema, ingest operations and the HTTP API."""
