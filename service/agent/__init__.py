"""Endpoint agent: sees copies of citizen data leave official scope on officials' PCs.

Modules: config (TOML), paths (platform helpers), fingerprints (index of protected files),
watcher (watchdog → events), spool (durable local queue), client (pinned HTTPS + sender),
runner (threads and lifecycle), cli (``canhgac agent``).
"""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("canhgac")
except metadata.PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
