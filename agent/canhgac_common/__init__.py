"""What the server and the agent share: the event schema (``events``) and the PII counters (``pii``).

No Flask, no SQLAlchemy: the agent's own distribution installs this package alone.
"""
