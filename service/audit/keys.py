"""The checkpoint signing key and its verifier key, kept under keys/ as signed-note key files.

``keys/checkpoint.key`` holds the signer key (``PRIVATE+KEY+…``, mode 0600); ``checkpoint.pub``
holds the verifier key (``name+keyid+…``), which ``canhgac init`` prints for the police to keep
on paper. The key name is the log's origin.
"""

from __future__ import annotations

import os
from pathlib import Path

from service.audit.checkpoint import generate_key, parse_signer_key
from service.core.files import write_private

SIGNER_FILE = "checkpoint.key"
VERIFIER_FILE = "checkpoint.pub"


class KeyMissingError(FileNotFoundError):
    """The data directory has no checkpoint key yet (run `canhgac init`)."""


def ensure_signing_key(keys_dir: Path, name: str) -> str:
    """Create the checkpoint key pair if missing (idempotent); return the verifier key."""
    signer_path = keys_dir / SIGNER_FILE
    verifier_path = keys_dir / VERIFIER_FILE
    if not signer_path.exists():
        signer, _verifier = generate_key(name)
        write_private(signer_path, signer + "\n")
    else:
        os.chmod(signer_path, 0o600)  # repair a copy restored with looser permissions
    # The verifier key is derived from the signer key, never trusted from a separate file.
    verifier = str(parse_signer_key(signer_path.read_text().strip()).verifier_key)
    if not verifier_path.exists() or verifier_path.read_text().strip() != verifier:
        verifier_path.write_text(verifier + "\n")
    return verifier


def load_signer_key(keys_dir: Path) -> str:
    """Return the signer key text; raise KeyMissingError with a hint when absent."""
    path = keys_dir / SIGNER_FILE
    if not path.exists():
        raise KeyMissingError(f"no checkpoint signing key at {path}; run `canhgac init`")
    return path.read_text().strip()


def load_verifier_key(keys_dir: Path) -> str:
    """Return the verifier key text; raise KeyMissingError with a hint when absent."""
    path = keys_dir / VERIFIER_FILE
    if not path.exists():
        raise KeyMissingError(f"no checkpoint verifier key at {path}; run `canhgac init`")
    return path.read_text().strip()


WITNESS_SIGNER_FILE = "witness.key"
WITNESS_VERIFIER_FILE = "witness.pub"


def ensure_witness_key(keys_dir: Path, name: str) -> str:
    """Create the witness (cosigning) key pair if missing; return its verifier key.

    Kept like the checkpoint key (0600, verifier derived from the signer), but separate: a
    witness key must never sign the log's own checkpoints, nor the log key cosign others.
    """
    from service.audit.cosign import generate_cosigner_key, parse_cosigner_signer

    signer_path = keys_dir / WITNESS_SIGNER_FILE
    verifier_path = keys_dir / WITNESS_VERIFIER_FILE
    if not signer_path.exists():
        signer, _verifier = generate_cosigner_key(name)
        write_private(signer_path, signer + "\n")
    else:
        os.chmod(signer_path, 0o600)
    verifier = str(parse_cosigner_signer(signer_path.read_text()).verifier)
    if not verifier_path.exists() or verifier_path.read_text().strip() != verifier:
        verifier_path.write_text(verifier + "\n")
    return verifier


def load_witness_signer(keys_dir: Path):
    """Return the witness signer key (CosignerSigner); raise KeyMissingError when absent."""
    from service.audit.cosign import parse_cosigner_signer

    path = keys_dir / WITNESS_SIGNER_FILE
    if not path.exists():
        raise KeyMissingError(f"no witness key at {path}; run `canhgac init`")
    return parse_cosigner_signer(path.read_text())
