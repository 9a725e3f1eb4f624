"""Sealed files: round trip, wrong passphrase, and every kind of tampering is refused."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.sealed import MAGIC, SealError, is_sealed, open_sealed, seal_file

PASS = "cum mat khau du dai 2026"
FAST = {"scrypt_n": 1 << 10}  # tests only; the default cost is 2**17


def _seal(tmp_path: Path, data: bytes, chunk: int = 64) -> Path:
    plain, sealed = tmp_path / "plain", tmp_path / "sealed"
    plain.write_bytes(data)
    seal_file(plain, sealed, PASS, chunk=chunk, **FAST)
    return sealed


def _open(tmp_path: Path, sealed: Path, passphrase: str = PASS) -> bytes:
    out = tmp_path / "out"
    open_sealed(sealed, out, passphrase)
    return out.read_bytes()


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=400), st.sampled_from([1, 16, 64, 100]))
def test_round_trip_at_every_size_around_chunk_edges(tmp_path_factory, data: bytes, chunk: int):
    tmp = tmp_path_factory.mktemp("rt")
    sealed = _seal(tmp, data, chunk)
    assert is_sealed(sealed)
    assert _open(tmp, sealed) == data


def test_default_cost_and_owner_only_files(tmp_path: Path):
    plain, sealed = tmp_path / "p", tmp_path / "s"
    plain.write_bytes(b"so dinh danh 001234567890" * 1000)
    seal_file(plain, sealed, PASS)
    assert os.stat(sealed).st_mode & 0o777 == 0o600
    assert b"001234567890" not in sealed.read_bytes()
    assert _open(tmp_path, sealed) == plain.read_bytes()
    assert os.stat(tmp_path / "out").st_mode & 0o777 == 0o600


def test_wrong_passphrase_leaves_no_plaintext(tmp_path: Path):
    sealed = _seal(tmp_path, b"x" * 500)
    with pytest.raises(SealError, match="sai cụm mật khẩu"):
        _open(tmp_path, sealed, "mot cum mat khau khac")
    assert not (tmp_path / "out").exists()


def test_short_passphrase_is_refused(tmp_path: Path):
    (tmp_path / "p").write_bytes(b"data")
    with pytest.raises(SealError, match="12"):
        seal_file(tmp_path / "p", tmp_path / "s", "ngan", **FAST)


def _chunks(raw: bytes) -> tuple[bytes, list[bytes]]:
    (size,) = struct.unpack(">I", raw[len(MAGIC):len(MAGIC) + 4])
    head_end = len(MAGIC) + 4 + size
    chunks, at = [], head_end
    while at < len(raw):
        (n,) = struct.unpack(">I", raw[at:at + 4])
        chunks.append(raw[at:at + 4 + n])
        at += 4 + n
    return raw[:head_end], chunks


@pytest.mark.parametrize("tamper", [
    "flip_byte", "drop_last_chunk", "drop_middle_chunk", "swap_chunks", "append_chunk",
    "cut_mid_chunk", "change_header", "not_sealed",
])
def test_tampering_is_refused(tmp_path: Path, tamper: str):
    sealed = _seal(tmp_path, os.urandom(300), chunk=64)  # five chunks
    raw = sealed.read_bytes()
    head, chunks = _chunks(raw)
    assert len(chunks) == 5
    changed = {
        "flip_byte": raw[:-10] + bytes([raw[-10] ^ 1]) + raw[-9:],
        "drop_last_chunk": head + b"".join(chunks[:-1]),
        "drop_middle_chunk": head + b"".join(chunks[:2] + chunks[3:]),
        "swap_chunks": head + b"".join([chunks[1], chunks[0], *chunks[2:]]),
        "append_chunk": raw + chunks[0],
        "cut_mid_chunk": raw[:-7],
        "change_header": head.replace(b'"chunk": 64', b'"chunk": 65') + b"".join(chunks),
        "not_sealed": b"PK\x03\x04" + raw[4:],
    }[tamper]
    sealed.write_bytes(changed)
    with pytest.raises(SealError):
        _open(tmp_path, sealed)
    assert not (tmp_path / "out").exists()


def test_existing_targets_and_planted_symlinks_are_never_written(tmp_path: Path):
    sealed = _seal(tmp_path, b"du lieu")
    kept = tmp_path / "kept"
    kept.write_bytes(b"khong duoc ghi de")
    with pytest.raises(FileExistsError):
        open_sealed(sealed, kept, PASS)
    assert kept.read_bytes() == b"khong duoc ghi de"  # refused, and not removed either
    victim = tmp_path / "victim"
    victim.write_bytes(b"nan nhan")
    (tmp_path / "trap").symlink_to(victim)
    with pytest.raises(FileExistsError):
        seal_file(tmp_path / "plain", tmp_path / "trap", PASS, **FAST)
    assert victim.read_bytes() == b"nan nhan"


def test_a_crafted_header_cannot_ask_for_huge_scrypt_work(tmp_path: Path):
    sealed = _seal(tmp_path, b"x" * 100)
    raw = sealed.read_bytes()
    (size,) = struct.unpack(">I", raw[len(MAGIC):len(MAGIC) + 4])
    header = raw[len(MAGIC) + 4:len(MAGIC) + 4 + size]
    greedy = header.replace(b'"n": 1024', b'"n": 1048576')
    assert greedy != header
    sealed.write_bytes(MAGIC + struct.pack(">I", len(greedy)) + greedy + raw[len(MAGIC) + 4 + size:])
    with pytest.raises(SealError, match="bad sealing parameters"):
        _open(tmp_path, sealed)
