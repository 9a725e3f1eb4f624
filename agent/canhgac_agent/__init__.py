"""Endpoint agent: sees copies of citizen data leave official scope on officials' PCs.

Modules: config (TOML), paths (platform helpers), fingerprints (index of protected files),
watcher (watchdog → events), spool (durable local queue), client (pinned HTTPS + sender),
runner (threads and lifecycle), cli (``canhgac-agent``, also ``canhgac agent``).
"""

from __future__ import annotations

from importlib import metadata


def _version() -> str:
    # The agent's own distribution on an official's PC; the server's, which ships it too, elsewhere.
    for distribution in ("canhgac-agent", "canhgac"):
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return "0.0.0"  # running from a source tree that was not installed


__version__ = _version()
