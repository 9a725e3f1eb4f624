"""C2SP tlog-cosignature, Ed25519 ``cosignature/v1``: witness keys, cosigning and checking.

* verifier key ``<name>+<key id hex8>+<base64(0x04 || 32-byte public key)>`` (a vkey of
  signature type 0x04); signer key ``PRIVATE+KEY+<name>+<key id hex8>+<base64(0x04 || seed)>``;
* key id = SHA-256(name || "\\n" || 0x04 || public key)[:4];
* the signed message is ``cosignature/v1\\n``, ``time <t>\\n`` and the checkpoint body;
* a cosignature line is ``— <name> base64(key id || u64 big-endian timestamp || signature)``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import time
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from service.audit.checkpoint import SIGNATURE_PREFIX, KeyFormatError, _is_valid_name

ALG_COSIGNATURE_V1 = 0x04
MAX_TIMESTAMP = 2**63 - 1


class CosignatureError(ValueError):
    """A cosignature line is malformed, from another key, or does not verify."""


def cosigner_key_id(name: str, public_key: bytes) -> bytes:
    """Return SHA-256(name || "\\n" || 0x04 || public key)[:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ALG_COSIGNATURE_V1])
                          + public_key).digest()[:4]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class CosignerVerifier:
    """A witness's Ed25519 cosignature/v1 verifier key."""

    name: str
    key_id: bytes
    public_key: bytes
    _key: Ed25519PublicKey = field(repr=False, compare=False, hash=False)

    def __str__(self) -> str:
        """Return the vkey text."""
        return f"{self.name}+{self.key_id.hex()}+{_b64(bytes([ALG_COSIGNATURE_V1]) + self.public_key)}"


@dataclass(frozen=True)
class CosignerSigner:
    """A witness's Ed25519 cosignature/v1 signer key (the seed stays out of repr)."""

    name: str
    key_id: bytes
    _key: Ed25519PrivateKey = field(repr=False, compare=False, hash=False)

    @property
    def verifier(self) -> CosignerVerifier:
        """Return the matching verifier key."""
        public = self._key.public_key()
        return CosignerVerifier(self.name, self.key_id, public.public_bytes_raw(), public)


def generate_cosigner_key(name: str) -> tuple[str, str]:
    """Create a witness key pair; return (signer key, verifier key) texts."""
    if not _is_valid_name(name):
        raise KeyFormatError(f"invalid key name {name!r}: non-empty, no spaces, no '+'")
    seed = os.urandom(32)
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    kid = cosigner_key_id(name, public).hex()
    material = bytes([ALG_COSIGNATURE_V1])
    return (f"PRIVATE+KEY+{name}+{kid}+{_b64(material + seed)}",
            f"{name}+{kid}+{_b64(material + public)}")


def _material(name: str, hex_id: str, key64: str, what: str) -> tuple[bytes, bytes]:
    if not _is_valid_name(name):
        raise KeyFormatError(f"malformed {what}: invalid key name")
    try:
        kid = bytes.fromhex(hex_id)
        raw = base64.b64decode(key64, validate=True)
    except (ValueError, binascii.Error):
        raise KeyFormatError(f"malformed {what}") from None
    if len(kid) != 4 or _b64(raw) != key64:
        raise KeyFormatError(f"malformed {what}")
    if len(raw) != 33 or raw[0] != ALG_COSIGNATURE_V1:
        raise KeyFormatError(f"malformed {what}: not an Ed25519 cosignature/v1 key (type 0x04)")
    return kid, raw[1:]


def parse_cosigner_verifier(text: str) -> CosignerVerifier:
    """Parse a type-0x04 vkey; raise KeyFormatError."""
    name, _, rest = text.strip().partition("+")
    hex_id, _, key64 = rest.partition("+")
    kid, public = _material(name, hex_id, key64, "witness verifier key")
    if cosigner_key_id(name, public) != kid:
        raise KeyFormatError("malformed witness verifier key: key id does not match")
    try:
        loaded = Ed25519PublicKey.from_public_bytes(public)
    except ValueError:
        raise KeyFormatError("malformed witness verifier key") from None
    return CosignerVerifier(name, kid, public, loaded)


def parse_cosigner_signer(text: str) -> CosignerSigner:
    """Parse ``PRIVATE+KEY+name+id+base64(0x04||seed)``; raise KeyFormatError."""
    parts = text.strip().split("+", 4)
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
        raise KeyFormatError("malformed witness signer key")
    _, _, name, hex_id, key64 = parts
    kid, seed = _material(name, hex_id, key64, "witness signer key")
    key = Ed25519PrivateKey.from_private_bytes(seed)
    if cosigner_key_id(name, key.public_key().public_bytes_raw()) != kid:
        raise KeyFormatError("malformed witness signer key: key id does not match")
    return CosignerSigner(name, kid, key)


def signed_message(body: str, timestamp: int) -> bytes:
    """Return what a cosignature/v1 signs: header, time line, checkpoint body."""
    return f"cosignature/v1\ntime {timestamp}\n{body}".encode()


def cosign(body: str, signer: CosignerSigner, timestamp: int | None = None) -> str:
    """Return the cosignature line (without newline) over a checkpoint body."""
    stamp = int(time.time()) if timestamp is None else timestamp
    if not 0 < stamp <= MAX_TIMESTAMP:
        raise CosignatureError("a cosignature/v1 timestamp is a positive 63-bit integer")
    signature = signer._key.sign(signed_message(body, stamp))
    return f"{SIGNATURE_PREFIX}{signer.name} {_b64(signer.key_id + stamp.to_bytes(8, 'big') + signature)}"


def verify_cosignature(line: str, body: str, verifier: CosignerVerifier) -> int:
    """Check one cosignature line by ``verifier`` over ``body``; return its timestamp."""
    line = line.rstrip("\n")
    if not line.startswith(SIGNATURE_PREFIX):
        raise CosignatureError("a cosignature line starts with '— '")
    name, _, sig64 = line[len(SIGNATURE_PREFIX):].partition(" ")
    try:
        raw = base64.b64decode(sig64, validate=True)
    except (ValueError, binascii.Error):
        raise CosignatureError("cosignature is not base64") from None
    if name != verifier.name or raw[:4] != verifier.key_id:
        raise CosignatureError(f"cosignature is by {name}, not by {verifier.name}")
    if len(raw) != 4 + 8 + 64:
        raise CosignatureError("a cosignature/v1 Ed25519 signature has 76 bytes")
    stamp = int.from_bytes(raw[4:12], "big")
    if not 0 < stamp <= MAX_TIMESTAMP:
        raise CosignatureError("cosignature timestamp out of range")
    try:
        verifier._key.verify(raw[12:], signed_message(body, stamp))
    except InvalidSignature:
        raise CosignatureError(f"cosignature by {name} does not verify") from None
    return stamp


def find_cosignature(note_or_lines: str, body: str, verifier: CosignerVerifier) -> int | None:
    """Return the timestamp of the first valid cosignature by ``verifier`` among lines, or None.

    Lines by other keys are ignored; a line with this key's name and id that fails raises.
    """
    for line in note_or_lines.splitlines():
        if not line.startswith(SIGNATURE_PREFIX):
            continue
        name, _, sig64 = line[len(SIGNATURE_PREFIX):].partition(" ")
        try:
            kid = base64.b64decode(sig64, validate=True)[:4]
        except (ValueError, binascii.Error):
            continue
        if name == verifier.name and kid == verifier.key_id:
            return verify_cosignature(line, body, verifier)
    return None
