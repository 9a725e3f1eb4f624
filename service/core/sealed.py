"""Seal a file with a passphrase: scrypt, then AES-256-GCM in numbered chunks.

Used for backups, which hold personal data and, with ``--with-keys``, the signing key: a
lost USB stick must not be a breach. The layout (all integers big-endian):

* ``MAGIC`` (16 bytes), a 4-byte header length, the header (JSON: kdf parameters, salt, chunk
  size, nonce prefix);
* chunks, each a 4-byte length and AES-GCM ciphertext of at most ``chunk`` plaintext bytes.

Every chunk's nonce is the 7-byte random prefix, its 4-byte number and a last-chunk flag, and
its associated data is the SHA-256 of magic and header: a changed header, a reordered,
dropped or appended chunk, or a cut after any chunk fails authentication (the STREAM
construction of Hoang, Reyhanitabar, Rogaway and Vizár). Pure: no Flask, no database.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from io import BufferedReader
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

MAGIC = b"CANHGAC-SEALED\x00\x01"
CHUNK = 1 << 20
MIN_PASSPHRASE = 12
# scrypt cost: 2**17 × 8 × 128 bytes = 128 MiB and about half a second, per open or seal.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 17, 8, 1
_MAX_HEADER = 4096
# What open_sealed accepts from a header before anything is authenticated: a crafted file
# must not make a restore spend gigabytes of memory on scrypt or one chunk.
_MAX_N, _MAX_R, _MAX_P, _MAX_CHUNK = 1 << 18, 8, 2, 8 << 20
# New files only: never follow a planted symlink, never reuse an existing name.
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
_LENGTH = struct.Struct(">I")


class SealError(Exception):
    """The file cannot be sealed or opened; the message says why (no secret in it)."""


def is_sealed(path: Path) -> bool:
    """Tell whether a file starts like a sealed file."""
    with Path(path).open("rb") as fh:
        return fh.read(len(MAGIC)) == MAGIC


def check_passphrase(passphrase: str) -> None:
    """Refuse a passphrase too short to stand up to guessing offline."""
    if len(passphrase) < MIN_PASSPHRASE:
        raise SealError(f"cụm mật khẩu cần ít nhất {MIN_PASSPHRASE} ký tự / the passphrase needs "
                        f"at least {MIN_PASSPHRASE} characters")


def _key(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


def _nonce(prefix: bytes, number: int, is_last: bool) -> bytes:
    return prefix + struct.pack(">I?", number, is_last)


def seal_file(source: Path, target: Path, passphrase: str, *, chunk: int = CHUNK,
              scrypt_n: int = SCRYPT_N) -> None:
    """Write ``source`` sealed with ``passphrase`` to a new file ``target`` (owner-only, fsynced)."""
    check_passphrase(passphrase)
    salt, prefix = os.urandom(16), os.urandom(7)
    header = json.dumps({
        "kdf": "scrypt", "n": scrypt_n, "r": SCRYPT_R, "p": SCRYPT_P,
        "salt": base64.b64encode(salt).decode(), "cipher": "AES-256-GCM",
        "chunk": chunk, "nonce_prefix": base64.b64encode(prefix).decode(),
    }, sort_keys=True).encode()
    aead = AESGCM(_key(passphrase, salt, scrypt_n, SCRYPT_R, SCRYPT_P))
    aad = hashlib.sha256(MAGIC + header).digest()
    fd = os.open(target, _CREATE, 0o600)
    with os.fdopen(fd, "wb") as out, Path(source).open("rb") as src:
        out.write(MAGIC + _LENGTH.pack(len(header)) + header)
        number = 0
        block = src.read(chunk)
        while True:
            following = src.read(chunk)
            is_last = not following
            sealed = aead.encrypt(_nonce(prefix, number, is_last), block, aad)
            out.write(_LENGTH.pack(len(sealed)) + sealed)
            if is_last:
                break
            number += 1
            block = following
        out.flush()
        os.fsync(out.fileno())


def _read_exact(fh: BufferedReader, size: int) -> bytes:
    data = fh.read(size)
    if len(data) != size:
        raise SealError("tệp bị cắt cụt / the file is truncated")
    return data


def _read_header(fh: BufferedReader) -> tuple[bytes, dict]:
    if fh.read(len(MAGIC)) != MAGIC:
        raise SealError("không phải tệp đã niêm phong / not a sealed file")
    (size,) = _LENGTH.unpack(_read_exact(fh, 4))
    if size > _MAX_HEADER:
        raise SealError("đầu tệp hỏng / damaged header")
    header = _read_exact(fh, size)
    try:
        params = json.loads(header)
        if params["kdf"] != "scrypt" or params["cipher"] != "AES-256-GCM":
            raise SealError("thuật toán không hỗ trợ / unsupported algorithm")
        int(params["n"]), int(params["r"]), int(params["p"]), int(params["chunk"])
        base64.b64decode(params["salt"], validate=True)
        if len(base64.b64decode(params["nonce_prefix"], validate=True)) != 7:
            raise SealError("đầu tệp hỏng / damaged header")
    except (ValueError, KeyError, TypeError) as exc:
        raise SealError("đầu tệp hỏng / damaged header") from exc
    return header, params


def open_sealed(source: Path, target: Path, passphrase: str) -> None:
    """Write the plaintext of a sealed ``source`` to ``target``; raise SealError if it fails.

    A wrong passphrase and a damaged file look the same (authentication fails); either way
    ``target`` is removed, so no partial plaintext is left behind.
    """
    fd = os.open(target, _CREATE, 0o600)  # an existing file is refused, and so never removed
    try:
        with os.fdopen(fd, "wb") as out:
            _open_sealed(Path(source), out, passphrase)
    except BaseException:
        Path(target).unlink(missing_ok=True)
        raise


def _open_sealed(source: Path, out: BinaryIO, passphrase: str) -> None:
    with source.open("rb") as fh:
        header, params = _read_header(fh)
        n, r, p = int(params["n"]), int(params["r"]), int(params["p"])
        if not (1 < n <= _MAX_N and n & (n - 1) == 0 and 1 <= r <= _MAX_R and 1 <= p <= _MAX_P
                and 1 <= int(params["chunk"]) <= _MAX_CHUNK):
            raise SealError("tham số không hợp lệ / bad sealing parameters")
        aead = AESGCM(_key(passphrase, base64.b64decode(params["salt"]), n, r, p))
        prefix = base64.b64decode(params["nonce_prefix"])
        limit = int(params["chunk"]) + 16
        aad = hashlib.sha256(MAGIC + header).digest()
        number = 0
        while True:
            (size,) = _LENGTH.unpack(_read_exact(fh, 4))
            if size > limit:
                raise SealError("khối hỏng / damaged chunk")
            sealed = _read_exact(fh, size)
            # the last chunk is the one the file ends with; its nonce says so too
            is_last = not fh.peek(1)
            try:
                block = aead.decrypt(_nonce(prefix, number, is_last), sealed, aad)
            except InvalidTag:
                raise SealError("sai cụm mật khẩu hoặc tệp đã bị sửa / wrong passphrase or "
                                "the file was changed") from None
            out.write(block)
            if is_last:
                break
            number += 1
        out.flush()
        os.fsync(out.fileno())
