"""C2SP signed notes with Ed25519 keys, and C2SP tlog-checkpoint bodies.

Formats (see docs/audit-log.md):

* verifier key ``<name>+<key id hex8>+<base64(0x01 || 32-byte public key)>`` (C2SP signed-note);
* signer key ``PRIVATE+KEY+<name>+<key id hex8>+<base64(0x01 || 32-byte seed)>``
  (golang.org/x/mod/sumdb/note);
* key id = the first 4 bytes of SHA-256(name || "\\n" || 0x01 || public key);
* signed note = text (ending in "\\n"), a blank line, then one line per signature:
  ``— <name> <base64(key id || 64-byte Ed25519 signature of the text)>`` (U+2014 EM DASH);
* checkpoint body = origin line, decimal tree size, base64 root hash, optional extension lines.

What counts as malformed follows golang.org/x/mod/sumdb/note ``Open``; keys and checkpoints are
parsed strictly (canonical base64, 32-byte roots, no leading zeros).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "ALG_ED25519",
    "MAX_SIGNATURES",
    "AmbiguousKeyError",
    "Checkpoint",
    "CheckpointError",
    "InvalidSignatureError",
    "KeyFormatError",
    "MalformedNoteError",
    "NoteError",
    "NoteSignature",
    "OpenedNote",
    "SignerKey",
    "UnverifiedNoteError",
    "VerifierKey",
    "format_checkpoint",
    "generate_key",
    "key_id",
    "open_checkpoint",
    "open_note",
    "parse_checkpoint",
    "parse_signer_key",
    "parse_verifier_key",
    "sign_note",
    "verify_note",
]

ALG_ED25519 = 0x01
MAX_SIGNATURES = 100  # as golang.org/x/mod/sumdb/note; C2SP only asks verifiers to accept 16
SIGNATURE_PREFIX = "\u2014 "  # EM DASH, space
MAX_TREE_SIZE = 2**64 - 1  # tree sizes are uint64 everywhere else (Go, C2SP tiles)

_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
# A note may contain any Unicode except C0 controls other than "\n" (and, in str form, lone
# surrogates, which have no UTF-8 encoding).
_BAD_NOTE_CHAR = re.compile(r"[\x00-\x09\x0b-\x1f\ud800-\udfff]")
_BAD_LINE_CHAR = re.compile(r"[\x00-\x1f\ud800-\udfff]")


class NoteError(ValueError):
    """Base class for signed-note and key errors."""


class MalformedNoteError(NoteError):
    """The note does not have the signed-note shape (text, blank line, signature lines)."""


class InvalidSignatureError(NoteError):
    """A signature by a known key does not verify: the note was altered or forged."""

    def __init__(self, name: str, key_id: bytes) -> None:
        """Name the key whose signature failed."""
        super().__init__(f"invalid signature for key {name}+{key_id.hex()}")
        self.name = name
        self.key_id = key_id


class UnverifiedNoteError(NoteError):
    """No known key signed the note (signatures by unknown keys are ignored)."""

    def __init__(self, note: OpenedNote) -> None:
        """Keep the parsed note, so callers can say who did sign it."""
        super().__init__("note has no verifiable signatures")
        self.note = note


class AmbiguousKeyError(NoteError):
    """Two verifier keys with the same name and key id were given."""


class KeyFormatError(NoteError):
    """A signer or verifier key string is malformed, has a bad name or a wrong key id."""


class CheckpointError(ValueError):
    """A checkpoint body is malformed, or is not from the expected log."""


def _is_valid_name(name: str) -> bool:
    """Check a key name as golang.org/x/mod/sumdb/note does: non-empty, no spaces, no '+'."""
    return (
        bool(name)
        and "+" not in name
        and not any(c.isspace() for c in name)
        and _BAD_LINE_CHAR.search(name) is None
    )


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(text: str) -> bytes:
    """Decode padded standard base64; raise ValueError on anything else."""
    if _BASE64.fullmatch(text) is None:
        raise ValueError("not padded standard base64")
    return base64.b64decode(text, validate=True)


def _b64decode_canonical(text: str) -> bytes:
    """Decode base64 that must be exactly what an encoder produces (no stray trailing bits)."""
    data = _b64decode(text)
    if _b64encode(data) != text:
        raise ValueError("non-canonical base64")
    return data


def key_id(name: str, public_key: bytes) -> bytes:
    """Return the 4-byte key id: SHA-256(name || "\\n" || 0x01 || public key)[:4]."""
    material = name.encode("utf-8") + b"\n" + bytes([ALG_ED25519]) + public_key
    return hashlib.sha256(material).digest()[:4]


@dataclass(frozen=True)
class VerifierKey:
    """An Ed25519 signed-note verifier key."""

    name: str
    key_id: bytes
    public_key: bytes
    _key: Ed25519PublicKey = field(repr=False, compare=False, hash=False)

    def __str__(self) -> str:
        """Return the key in ``name+keyid+base64`` form."""
        encoded = _b64encode(bytes([ALG_ED25519]) + self.public_key)
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Return whether ``signature`` is this key's Ed25519 signature of ``message``."""
        if len(signature) != 64:
            return False
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class SignerKey:
    """An Ed25519 signed-note signer key (the seed is kept out of repr)."""

    name: str
    key_id: bytes
    _key: Ed25519PrivateKey = field(repr=False, compare=False, hash=False)

    @property
    def verifier_key(self) -> VerifierKey:
        """Return the matching verifier key."""
        public = self._key.public_key()
        return VerifierKey(self.name, self.key_id, public.public_bytes_raw(), public)

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``message``."""
        return self._key.sign(message)


def generate_key(name: str) -> tuple[str, str]:
    """Create a new Ed25519 key pair; return (signer key, verifier key) strings."""
    if not _is_valid_name(name):
        raise KeyFormatError(f"invalid key name {name!r}: non-empty, no spaces, no '+'")
    seed = os.urandom(32)
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    kid = key_id(name, public).hex()
    signer = f"PRIVATE+KEY+{name}+{kid}+{_b64encode(bytes([ALG_ED25519]) + seed)}"
    verifier = f"{name}+{kid}+{_b64encode(bytes([ALG_ED25519]) + public)}"
    return signer, verifier


def _parse_key_material(name: str, hex_id: str, key64: str, what: str) -> tuple[bytes, bytes]:
    """Check the name, key id and base64 parts of a key; return (key id, raw 32-byte key)."""
    if not _is_valid_name(name):
        raise KeyFormatError(f"malformed {what}: invalid key name")
    if _HEX8.fullmatch(hex_id) is None:
        raise KeyFormatError(f"malformed {what}: key id must be 8 hex digits")
    try:
        material = _b64decode_canonical(key64)
    except (ValueError, binascii.Error):
        raise KeyFormatError(f"malformed {what}: key is not base64") from None
    if not material:
        raise KeyFormatError(f"malformed {what}: empty key")
    if material[0] != ALG_ED25519:
        raise KeyFormatError(f"malformed {what}: unknown algorithm {material[0]:#04x}")
    if len(material) != 33:
        raise KeyFormatError(f"malformed {what}: an Ed25519 key has 32 bytes")
    return bytes.fromhex(hex_id), material[1:]


def parse_verifier_key(text: str) -> VerifierKey:
    """Parse ``name+keyid+base64(0x01||pubkey)``; raise KeyFormatError if anything is off."""
    if not isinstance(text, str):
        raise KeyFormatError("a verifier key is a str")
    name, _, rest = text.partition("+")
    hex_id, _, key64 = rest.partition("+")
    kid, public = _parse_key_material(name, hex_id, key64, "verifier key")
    if key_id(name, public) != kid:
        raise KeyFormatError("malformed verifier key: key id does not match the name and key")
    try:
        loaded = Ed25519PublicKey.from_public_bytes(public)
    except ValueError:
        raise KeyFormatError("malformed verifier key: not an Ed25519 public key") from None
    return VerifierKey(name, kid, public, loaded)


def parse_signer_key(text: str) -> SignerKey:
    """Parse ``PRIVATE+KEY+name+keyid+base64(0x01||seed)``; raise KeyFormatError if off."""
    if not isinstance(text, str):
        raise KeyFormatError("a signer key is a str")
    private, _, rest = text.partition("+")
    word, _, rest = rest.partition("+")
    name, _, rest = rest.partition("+")
    hex_id, _, key64 = rest.partition("+")
    if private != "PRIVATE" or word != "KEY":
        raise KeyFormatError("malformed signer key: it must start with PRIVATE+KEY+")
    kid, seed = _parse_key_material(name, hex_id, key64, "signer key")
    private_key = Ed25519PrivateKey.from_private_bytes(seed)
    if key_id(name, private_key.public_key().public_bytes_raw()) != kid:
        raise KeyFormatError("malformed signer key: key id does not match the name and key")
    return SignerKey(name, kid, private_key)


def _check_text(text: str) -> None:
    """Reject note text that no signed-note reader would accept."""
    if not isinstance(text, str) or not text.endswith("\n"):
        raise MalformedNoteError("note text must be a str ending in a newline")
    if _BAD_NOTE_CHAR.search(text):
        raise MalformedNoteError("note text must be UTF-8 without control characters except \\n")


def sign_note(text: str, signer_key: str | SignerKey) -> str:
    """Sign ``text`` (ending in "\\n"); return text, a blank line and the signature line."""
    _check_text(text)
    key = parse_signer_key(signer_key) if isinstance(signer_key, str) else signer_key
    signature = key.sign(text.encode("utf-8"))
    return f"{text}\n{SIGNATURE_PREFIX}{key.name} {_b64encode(key.key_id + signature)}\n"


@dataclass(frozen=True)
class NoteSignature:
    """One signature line of a note: key name, key id, and the base64 as written."""

    name: str
    key_id: bytes
    base64: str


@dataclass(frozen=True)
class OpenedNote:
    """A note whose signatures were checked: its text and who signed it."""

    text: str
    verified: tuple[NoteSignature, ...]
    unverified: tuple[NoteSignature, ...]


def _index_keys(
    verifier_keys: Iterable[str | VerifierKey],
) -> dict[tuple[str, bytes], list[VerifierKey]]:
    """Map (name, key id) to the given keys (a list, to detect ambiguity lazily as Go does)."""
    if isinstance(verifier_keys, str | VerifierKey):
        verifier_keys = [verifier_keys]
    known: dict[tuple[str, bytes], list[VerifierKey]] = {}
    for item in verifier_keys:
        key = parse_verifier_key(item) if isinstance(item, str) else item
        known.setdefault((key.name, key.key_id), []).append(key)
    return known


def verify_note(note: str | bytes, verifier_keys: Iterable[str | VerifierKey]) -> OpenedNote:
    """Check a signed note against known verifier keys; return its text and signers.

    Raises MalformedNoteError, InvalidSignatureError (a known key's signature is bad),
    AmbiguousKeyError, or UnverifiedNoteError (no known key signed it).
    """
    known = _index_keys(verifier_keys)
    if isinstance(note, bytes | bytearray | memoryview):
        try:
            note = bytes(note).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedNoteError("malformed note: not UTF-8") from None
    if not isinstance(note, str):
        raise MalformedNoteError("malformed note: expected str or bytes")
    if _BAD_NOTE_CHAR.search(note):
        raise MalformedNoteError("malformed note: control character or invalid UTF-8")
    split = note.rfind("\n\n")
    if split < 0:
        raise MalformedNoteError("malformed note: no blank line before the signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block.endswith("\n"):
        raise MalformedNoteError("malformed note: no signature lines, or no final newline")

    verified: list[NoteSignature] = []
    unverified: list[NoteSignature] = []
    seen_known: set[tuple[str, bytes]] = set()
    seen_unknown: set[str] = set()
    message = text.encode("utf-8")
    for count, line in enumerate(block[:-1].split("\n"), start=1):
        if not line.startswith(SIGNATURE_PREFIX):
            raise MalformedNoteError("malformed note: a signature line must start with '— '")
        body = line[len(SIGNATURE_PREFIX) :]
        name, _, sig64 = body.partition(" ")
        try:
            raw = _b64decode(sig64)
        except (ValueError, binascii.Error):
            raw = b""
        if not _is_valid_name(name) or not sig64 or len(raw) < 5:
            raise MalformedNoteError("malformed note: bad signature line")
        if count > MAX_SIGNATURES:
            raise MalformedNoteError(f"malformed note: more than {MAX_SIGNATURES} signatures")
        kid, signature = raw[:4], raw[4:]
        candidates = known.get((name, kid))
        if candidates is None:
            if body not in seen_unknown:  # drop repeated identical unknown signatures
                seen_unknown.add(body)
                unverified.append(NoteSignature(name, kid, sig64))
            continue
        if len(candidates) > 1:
            raise AmbiguousKeyError(f"ambiguous key {name}+{kid.hex()}")
        if (name, kid) in seen_known:  # only the first signature by a key counts
            continue
        seen_known.add((name, kid))
        if not candidates[0].verify(message, signature):
            raise InvalidSignatureError(name, kid)
        verified.append(NoteSignature(name, kid, sig64))
    opened = OpenedNote(text, tuple(verified), tuple(unverified))
    if not verified:
        raise UnverifiedNoteError(opened)
    return opened


def open_note(note: str | bytes, verifier_keys: Iterable[str | VerifierKey]) -> str:
    """Check a signed note against known verifier keys and return its text (see verify_note)."""
    return verify_note(note, verifier_keys).text


# --- tlog-checkpoint --------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A C2SP tlog-checkpoint body: which log, how many leaves, and the root hash."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> str:
        """Return the checkpoint text (what gets signed)."""
        return format_checkpoint(self.origin, self.size, self.root, self.extensions)


def _check_line(what: str, line: str) -> None:
    """Checkpoint lines are non-empty and free of control characters."""
    if not isinstance(line, str) or not line:
        raise CheckpointError(f"{what} must be a non-empty str")
    if _BAD_LINE_CHAR.search(line):
        raise CheckpointError(f"{what} must not contain control characters or newlines")


def format_checkpoint(
    origin: str, size: int, root: bytes, extensions: Iterable[str] = ()
) -> str:
    """Return the tlog-checkpoint body: origin, size, base64 root, extension lines."""
    _check_line("origin", origin)
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_TREE_SIZE:
        raise CheckpointError(f"tree size must be an int in [0, 2**64), got {size!r}")
    if not isinstance(root, bytes | bytearray) or len(root) != 32:
        raise CheckpointError("root hash must be 32 bytes")
    lines = [origin, str(size), _b64encode(bytes(root))]
    for extension in extensions:
        _check_line("extension line", extension)
        lines.append(extension)
    return "\n".join(lines) + "\n"


def parse_checkpoint(
    text: str, *, origin: str | None = None, root_size: int | None = 32
) -> Checkpoint:
    """Parse a tlog-checkpoint body strictly; raise CheckpointError.

    With ``origin``, the checkpoint must be from that log. ``root_size=None`` accepts roots of
    any length (other hash functions' logs); ours are SHA-256, so the default is 32.
    """
    if not isinstance(text, str) or not text.endswith("\n"):
        raise CheckpointError("checkpoint must be a str ending in a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError("checkpoint needs origin, size and root lines")
    found_origin, size_text, root_text, *extensions = lines
    _check_line("origin", found_origin)
    if origin is not None and found_origin != origin:
        raise CheckpointError(f"checkpoint is from {found_origin!r}, expected {origin!r}")
    if _DECIMAL.fullmatch(size_text) is None:
        raise CheckpointError("tree size must be decimal digits without leading zeros")
    # Length first: int() of over 4,300 digits raises a plain ValueError (a 500, not a refusal).
    if len(size_text) > 20 or int(size_text) > MAX_TREE_SIZE:
        raise CheckpointError("tree size does not fit in 64 bits")
    size = int(size_text)
    try:
        root = _b64decode_canonical(root_text)
    except (ValueError, binascii.Error):
        raise CheckpointError("root hash must be canonical standard base64") from None
    if root_size is not None and len(root) != root_size:
        raise CheckpointError(f"root hash must be {root_size} bytes, got {len(root)}")
    for extension in extensions:
        _check_line("extension line", extension)
    return Checkpoint(found_origin, size, root, tuple(extensions))


def open_checkpoint(
    note: str | bytes, origin: str, verifier_keys: Iterable[str | VerifierKey]
) -> Checkpoint:
    """Verify a signed checkpoint from the log named ``origin`` and return it parsed."""
    return parse_checkpoint(open_note(note, verifier_keys), origin=origin)
