"""Evidence files encrypted at rest with AES-256-GCM; their SHA-256 goes into the audit trail."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from service.core.files import write_private

KEY_FILE = "evidence.key"
_MAGIC = b"CGEV1"


def ensure_evidence_key(keys_dir: Path) -> None:
    """Create the evidence encryption key under keys/ (0600) when missing."""
    path = keys_dir / KEY_FILE
    if not path.exists():
        write_private(path, AESGCM.generate_key(bit_length=256).hex() + "\n")


def _key(keys_dir: Path) -> bytes:
    return bytes.fromhex((keys_dir / KEY_FILE).read_text().strip())


def encrypt_evidence(keys_dir: Path, data: bytes, *, associated: bytes) -> tuple[bytes, str]:
    """Encrypt evidence bytes; return the stored form and the plaintext SHA-256 (hex)."""
    nonce = os.urandom(12)
    sealed = AESGCM(_key(keys_dir)).encrypt(nonce, data, associated)
    return _MAGIC + nonce + sealed, hashlib.sha256(data).hexdigest()


def decrypt_evidence(keys_dir: Path, stored: bytes, *, associated: bytes) -> bytes:
    """Decrypt stored evidence; raise ValueError when it was altered."""
    if not stored.startswith(_MAGIC):
        raise ValueError("not an evidence file")
    nonce, sealed = stored[len(_MAGIC) : len(_MAGIC) + 12], stored[len(_MAGIC) + 12 :]
    from cryptography.exceptions import InvalidTag

    try:
        return AESGCM(_key(keys_dir)).decrypt(nonce, sealed, associated)
    except InvalidTag as exc:
        raise ValueError("evidence file was altered or the key is wrong") from exc
