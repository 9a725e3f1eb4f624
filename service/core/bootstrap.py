"""Prepare a data directory: keys (0600), TLS certificate, database schema."""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask


def prepare_data_dir(app: Flask, tls_names: list[str] | None = None) -> tuple[str, Path]:
    """Create keys, the certificate and the schema; return the verifier key and cert path."""
    from service.audit.keys import ensure_signing_key, ensure_witness_key
    from service.core import migrate, tls
    from service.core.db import get_engine
    from service.incidents.evidence import ensure_evidence_key

    settings = app.config["SETTINGS"]
    # The data directory holds citizen-data metadata: owner only, whatever the umask.
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(settings.data_dir, 0o700)
    settings.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(settings.keys_dir, 0o700)
    verifier = ensure_signing_key(settings.keys_dir, settings.audit_origin)
    ensure_evidence_key(settings.keys_dir)
    ensure_witness_key(settings.keys_dir, settings.resolved_witness_name)
    cert = tls.ensure_certificate(settings.keys_dir, tls_names)
    migrate.upgrade(get_engine(app))
    for pattern in ("*.db*", "*.log"):
        for path in settings.data_dir.glob(pattern):
            os.chmod(path, 0o600)
    return verifier, cert
