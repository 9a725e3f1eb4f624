"""Sliding time windows for counting rules, with deterministic eviction and JSON snapshots.

Times are integer microseconds since the Unix epoch, taken from the events themselves, so a
replay of the same events gives the same counts. Each key keeps its own high-water mark:
an entry counts while it is newer than ``high_water - window`` (an entry exactly one window
older than the newest no longer counts); an event older than that arrives too late and is
ignored. Per-key marks suit agents that were offline and catch up. Keys idle for their
window plus a day of event time are dropped, so memory stays bounded. Pure: no I/O, no clock.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

WindowKey = tuple[str | None, ...]

SNAPSHOT_VERSION = 1
_PRUNE_EVERY_US = 300 * 1_000_000
# A key idle for its window plus this much event time is dropped. Only an event arriving
# later than that (relative to the newest event of any key) could have needed its entries.
PRUNE_GRACE_US = 86_400 * 1_000_000


class _Window:
    __slots__ = ("amounts", "high_water_us", "timestamps", "total", "window_us")

    def __init__(self, window_us: int) -> None:
        self.timestamps: list[int] = []
        self.amounts: list[int] = []
        self.total = 0
        self.high_water_us = -(2**62)
        self.window_us = window_us

    def evict(self, cutoff_us: int) -> None:
        cut = bisect_right(self.timestamps, cutoff_us)
        if cut:
            self.total -= sum(self.amounts[:cut])
            del self.timestamps[:cut]
            del self.amounts[:cut]


class WindowState:
    """Counters over sliding time windows, keyed by tuples (rule id, actor, host, data class).

    Bounded: at most ``max_keys`` keys and ``max_entries_per_key`` entries per key; beyond
    that the oldest go first, always in the same order for the same input.
    """

    def __init__(self, *, max_keys: int = 50_000, max_entries_per_key: int = 10_000) -> None:
        if max_keys < 1 or max_entries_per_key < 1:
            raise ValueError("limits must be positive")
        self.max_keys = max_keys
        self.max_entries_per_key = max_entries_per_key
        self._windows: dict[WindowKey, _Window] = {}
        self._clock_us: int | None = None
        self._last_prune_us: int | None = None

    def __len__(self) -> int:
        return len(self._windows)

    def __contains__(self, key: object) -> bool:
        return key in self._windows

    def add(self, key: WindowKey, at_us: int, amount: int, window_us: int) -> tuple[int, int]:
        """Record ``amount`` at ``at_us`` and return (entries, total amount) now in the window."""
        self._tick(at_us)
        window = self._windows.get(key)
        if window is None:
            if len(self._windows) >= self.max_keys:
                self._make_room()
            window = self._windows[key] = _Window(window_us)
        window.window_us = window_us
        if at_us > window.high_water_us:
            window.high_water_us = at_us
        cutoff = window.high_water_us - window_us
        if at_us > cutoff:
            stamps = window.timestamps
            if not stamps or at_us >= stamps[-1]:
                stamps.append(at_us)
                window.amounts.append(amount)
            else:  # a late event still inside the window: keep the list sorted
                index = bisect_right(stamps, at_us)
                stamps.insert(index, at_us)
                window.amounts.insert(index, amount)
            window.total += amount
        window.evict(cutoff)
        overflow = len(window.timestamps) - self.max_entries_per_key
        if overflow > 0:
            window.total -= sum(window.amounts[:overflow])
            del window.timestamps[:overflow]
            del window.amounts[:overflow]
        return len(window.timestamps), window.total

    def count(self, key: WindowKey, at_us: int, window_us: int) -> tuple[int, int]:
        """Return (entries, total amount) in the window ending at ``at_us`` without adding."""
        window = self._windows.get(key)
        if window is None:
            return 0, 0
        window.evict(max(window.high_water_us, at_us) - window_us)
        return len(window.timestamps), window.total

    def clear(self, key: WindowKey) -> None:
        """Forget a key (after a rule fired, counting starts again)."""
        self._windows.pop(key, None)

    def prune(self, now_us: int, *, grace_us: int = PRUNE_GRACE_US) -> int:
        """Drop keys idle for their window plus ``grace_us`` at ``now_us``; return how many."""
        stale = [
            key
            for key, window in self._windows.items()
            if window.high_water_us <= now_us - window.window_us - grace_us
        ]
        for key in stale:
            del self._windows[key]
        self._last_prune_us = now_us
        return len(stale)

    def _tick(self, at_us: int) -> None:
        # Idle keys are looked for every five minutes of event time: same input, same state.
        if self._clock_us is None or at_us > self._clock_us:
            self._clock_us = at_us
        if self._last_prune_us is None:
            self._last_prune_us = self._clock_us
        elif self._clock_us - self._last_prune_us >= _PRUNE_EVERY_US:
            self.prune(self._clock_us)

    def _make_room(self) -> None:
        if self._clock_us is not None:
            self.prune(self._clock_us, grace_us=0)
        if len(self._windows) < self.max_keys:
            return
        # Oldest high-water mark first, ties broken by the key's text: deterministic.
        keep = min(self.max_keys * 9 // 10, self.max_keys - 1)
        order = sorted(self._windows, key=lambda k: (self._windows[k].high_water_us, repr(k)))
        for key in order[: len(self._windows) - keep]:
            del self._windows[key]

    def to_snapshot(self) -> dict[str, Any]:
        """Return the whole state as a JSON-serialisable dict (keys sorted: stable output)."""
        windows = [
            {
                "key": list(key),
                "window_us": window.window_us,
                "high_water_us": window.high_water_us,
                "entries": [[t, a] for t, a in zip(window.timestamps, window.amounts, strict=True)],
            }
            for key, window in sorted(self._windows.items(), key=lambda item: repr(item[0]))
        ]
        return {
            "version": SNAPSHOT_VERSION,
            "max_keys": self.max_keys,
            "max_entries_per_key": self.max_entries_per_key,
            "clock_us": self._clock_us,
            "last_prune_us": self._last_prune_us,
            "windows": windows,
        }

    @classmethod
    def from_snapshot(cls, data: dict[str, Any]) -> WindowState:
        """Rebuild a state from ``to_snapshot()`` output; raise ValueError if it is malformed."""
        try:
            return cls._from_snapshot(data)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed window snapshot: {exc}") from exc

    @classmethod
    def _from_snapshot(cls, data: dict[str, Any]) -> WindowState:
        if data.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported window snapshot version {data.get('version')!r}")
        state = cls(
            max_keys=_int(data["max_keys"]), max_entries_per_key=_int(data["max_entries_per_key"])
        )
        state._clock_us = _opt_int(data["clock_us"])
        state._last_prune_us = _opt_int(data["last_prune_us"])
        for item in data["windows"]:
            key = tuple(item["key"])
            if not all(part is None or isinstance(part, str) for part in key):
                raise ValueError("window key parts must be strings or null")
            window = _Window(_int(item["window_us"]))
            window.high_water_us = _int(item["high_water_us"])
            previous = None
            for stamp, amount in item["entries"]:
                stamp, amount = _int(stamp), _int(amount)
                if previous is not None and stamp < previous:
                    raise ValueError("window entries must be in time order")
                previous = stamp
                window.timestamps.append(stamp)
                window.amounts.append(amount)
                window.total += amount
            state._windows[key] = window
        return state


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def _opt_int(value: Any) -> int | None:
    return None if value is None else _int(value)
