"""C2SP tlog-tiles: the trail's hash tiles and entry bundles, built from the stored tree.

A tile at level L, index N holds up to 256 hashes; hash i is the Merkle Tree Hash of leaves
``[(N·256 + i)·256^L, (N·256 + i + 1)·256^L)``: the complete node at tree level 8·L, index
N·256 + i, which log.py already stores (level 0: the leaf hashes; log.py stores every level
from ``log.MIN_STORED_LEVEL``, this tile height, so every tile is one range read). Entry
bundles are the entries' bytes (the leaf data) with a big-endian uint16 length before each.

Tiles are served for the latest signed checkpoint's size: a full tile only once the signed
tree covers it, a partial one of width W only when the signed tree reaches that far.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy.orm import Session

from service.audit import log

TILE_WIDTH = 256
TILE_HEIGHT = 8  # tree levels per tile level
# Tiles above level 0 read only stored nodes; a lower stored level would still work, a higher
# one would make every tile rebuild its nodes from leaves.
assert log.MIN_STORED_LEVEL == TILE_HEIGHT
MAX_ENTRY_BYTES = 0xFFFF  # uint16 length prefix

_INDEX = re.compile(r"(?:x[0-9]{3}/)*[0-9]{3}")
_LEVEL = re.compile(r"0|[1-9][0-9]?")
_WIDTH = re.compile(r"[1-9][0-9]{0,2}")


class TilePathError(ValueError):
    """A tile path that the spec does not allow (a 404, never a guess)."""


@dataclass(frozen=True)
class TileRef:
    """A tile (``level`` None: an entry bundle), its index and width (256: full)."""

    level: int | None
    index: int
    width: int = TILE_WIDTH

    @property
    def is_partial(self) -> bool:
        """Return whether the tile is narrower than 256."""
        return self.width < TILE_WIDTH

    def leaves_needed(self) -> int:
        """Return the tree size from which this tile (at its width) exists."""
        level = self.level or 0
        return (self.index * TILE_WIDTH + self.width) * TILE_WIDTH**level

    def path(self) -> str:
        """Return the path under ``tile/`` (``<L>/<N>[.p/<W>]`` or ``entries/<N>[.p/<W>]``)."""
        head = "entries" if self.level is None else str(self.level)
        tail = f".p/{self.width}" if self.is_partial else ""
        return f"{head}/{encode_index(self.index)}{tail}"


def encode_index(index: int) -> str:
    """Encode a tile index as 3-digit path elements, all but the last prefixed with ``x``."""
    if index < 0:
        raise ValueError("tile index must not be negative")
    groups = []
    while True:
        groups.append(f"{index % 1000:03d}")
        index //= 1000
        if index == 0:
            break
    groups.reverse()
    return "/".join([f"x{g}" for g in groups[:-1]] + [groups[-1]])


def decode_index(text: str) -> int:
    """Decode ``x001/x234/067`` into 1234067; raise TilePathError if malformed."""
    if _INDEX.fullmatch(text) is None:
        raise TilePathError(f"malformed tile index {text!r}")
    value = 0
    for group in text.split("/"):
        value = value * 1000 + int(group.lstrip("x"))
    return value


def parse_tile_path(path: str) -> TileRef:
    """Parse ``<L>/<N>[.p/<W>]`` or ``entries/<N>[.p/<W>]``; raise TilePathError."""
    head, _, rest = path.partition("/")
    if head == "entries":
        level = None
    elif _LEVEL.fullmatch(head) and int(head) <= 63:
        level = int(head)
    else:
        raise TilePathError(f"malformed tile level {head!r}")
    index_text, partial, width_text = rest.partition(".p/")
    width = TILE_WIDTH
    if partial:
        if _WIDTH.fullmatch(width_text) is None or not 1 <= int(width_text) <= 255:
            raise TilePathError(f"malformed partial tile width {width_text!r}")
        width = int(width_text)
    return TileRef(level, decode_index(index_text), width)


def tile_hashes(session: Session, ref: TileRef) -> bytes:
    """Return the concatenated hashes of a hash tile (``32 · width`` bytes)."""
    assert ref.level is not None
    first = ref.index * TILE_WIDTH
    hashes = log.node_range(session, TILE_HEIGHT * ref.level, first, first + ref.width)
    return b"".join(hashes)


def entry_bundle(session: Session, ref: TileRef) -> bytes:
    """Return an entry bundle: each entry's bytes after its big-endian uint16 length."""
    first = ref.index * TILE_WIDTH
    parts = []
    for offset, data in enumerate(log.entry_range(session, first, first + ref.width)):
        if len(data) > MAX_ENTRY_BYTES:
            raise ValueError(f"entry {first + offset} has {len(data)} bytes: more than an "
                             "entry bundle's uint16 length can carry")
        parts.append(len(data).to_bytes(2, "big"))
        parts.append(data)
    return b"".join(parts)


def split_entry_bundle(data: bytes) -> list[bytes]:
    """Split an entry bundle into its entries; raise ValueError when truncated."""
    entries, at = [], 0
    while at < len(data):
        if at + 2 > len(data):
            raise ValueError("entry bundle truncated in a length prefix")
        length = int.from_bytes(data[at:at + 2], "big")
        at += 2
        if at + length > len(data):
            raise ValueError("entry bundle truncated in an entry")
        entries.append(data[at:at + length])
        at += length
    return entries
