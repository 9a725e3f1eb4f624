"""The checkpoint signing key and its verifier key, kept under keys/ as signed-note key files."""

from __future__ import annotations

from pathlib import Path

from service.audit.checkpoint import generate_key
from service.core.files import write_private

SIGNER_FILE = "checkpoint.key"
VERIFIER_FILE = "checkpoint.pub"


def ensure_signing_key(keys_dir: Path, name: str) -> str:
    """Create the checkpoint key pair if missing; return the verifier key."""
    signer_path = keys_dir / SIGNER_FILE
    verifier_path = keys_dir / VERIFIER_FILE
    if not signer_path.exists():
        signer, verifier = generate_key(name)
        write_private(signer_path, signer + "\n")
        verifier_path.write_text(verifier + "\n")
    return verifier_path.read_text().strip()


def load_signer_key(keys_dir: Path) -> str:
    """Return the signer key text; raise FileNotFoundError with a hint when absent."""
    path = keys_dir / SIGNER_FILE
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint signing key at {path}; run `canhgac init`")
    return path.read_text().strip()


def load_verifier_key(keys_dir: Path) -> str:
    """Return the verifier key text."""
    return (keys_dir / VERIFIER_FILE).read_text().strip()
