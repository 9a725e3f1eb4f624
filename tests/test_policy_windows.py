"""Sliding windows: counting, eviction, late events, bounds, JSON snapshots across a restart."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from canhgac_common.events import Event
from service.policy import WindowState, default_policy_dir, evaluate, load_policy

S = 1_000_000  # µs per second
KEY = ("rule", "actor", "host", "dan_cu")


def test_counts_and_sums_within_the_window() -> None:
    state = WindowState()
    assert state.add(KEY, 0, 5, 60 * S) == (1, 5)
    assert state.add(KEY, 30 * S, 7, 60 * S) == (2, 12)
    assert state.add(KEY, 59 * S, 1, 60 * S) == (3, 13)
    # exactly one window after the first entry: the first no longer counts
    assert state.add(KEY, 60 * S, 2, 60 * S) == (3, 10)
    assert state.count(KEY, 200 * S, 60 * S) == (0, 0)


def test_keys_are_separate_and_clear_forgets() -> None:
    state = WindowState()
    other = ("rule", "actor2", "host", "dan_cu")
    state.add(KEY, 0, 1, 60 * S)
    state.add(other, 0, 1, 60 * S)
    assert state.add(KEY, 1, 1, 60 * S) == (2, 2)
    state.clear(KEY)
    assert KEY not in state and other in state
    assert state.count(KEY, 2, 60 * S) == (0, 0)


def test_late_events_inside_the_window_are_sorted_in_and_too_late_ones_ignored() -> None:
    state = WindowState()
    state.add(KEY, 100 * S, 1, 60 * S)
    assert state.add(KEY, 50 * S, 1, 60 * S) == (2, 2)  # late but within (40 s, 100 s]
    assert state.add(KEY, 10 * S, 1, 60 * S) == (2, 2)  # older than the window: ignored
    # the window slides from the newest time seen, and the late entry leaves in order
    assert state.add(KEY, 111 * S, 1, 60 * S) == (2, 2)


def test_max_entries_per_key_drops_the_oldest() -> None:
    state = WindowState(max_entries_per_key=3)
    for second in range(5):
        events, total = state.add(KEY, second * S, 10 + second, 3600 * S)
    assert (events, total) == (3, 12 + 13 + 14)


def test_max_keys_evicts_oldest_deterministically() -> None:
    def fill() -> WindowState:
        state = WindowState(max_keys=10)
        for i in range(25):
            state.add(("r", f"a{i % 13}", None, None), i * S, 1, 3600 * S)
        return state

    first, second = fill(), fill()
    assert len(first) <= 10
    assert first.to_snapshot() == second.to_snapshot()
    assert ("r", "a11", None, None) in first  # recently used keys stay


def test_idle_keys_are_pruned_by_event_time() -> None:
    state = WindowState()
    day = 86_400 * S
    state.add(("r", "old", None, None), 0, 1, 60 * S)
    state.add(("r", "new", None, None), 400 * S, 1, 60 * S)
    assert ("r", "old", None, None) in state  # idle, but within the day of grace
    state.add(("r", "new", None, None), day + 400 * S, 1, 60 * S)
    assert ("r", "old", None, None) not in state and ("r", "new", None, None) in state
    assert state.prune(3 * day) == 1 and len(state) == 0


def test_snapshot_is_json_and_round_trips() -> None:
    state = WindowState(max_keys=100)
    state.add(KEY, 5 * S, 3, 60 * S)
    state.add(("r", None, "PC-1", None), 6 * S, 1, 900 * S)
    text = json.dumps(state.to_snapshot())
    restored = WindowState.from_snapshot(json.loads(text))
    assert restored.to_snapshot() == state.to_snapshot()
    assert restored.max_keys == 100
    assert restored.add(KEY, 10 * S, 1, 60 * S) == state.add(KEY, 10 * S, 1, 60 * S) == (2, 4)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(version=99),
        lambda d: d.pop("windows"),
        lambda d: d["windows"][0].update(key=[1, 2]),
        lambda d: d["windows"][0].update(entries=[[5, 1], [1, 1]]),
        lambda d: d["windows"][0].update(window_us="60"),
        lambda d: d["windows"][0].update(entries=[[True, 1]]),
        lambda d: d.update(windows=[None]),
    ],
)
def test_malformed_snapshots_are_refused(mutate) -> None:
    state = WindowState()
    state.add(KEY, 5 * S, 3, 60 * S)
    data = json.loads(json.dumps(state.to_snapshot()))
    mutate(data)
    with pytest.raises(ValueError):
        WindowState.from_snapshot(data)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 50_000), st.integers(0, 50)), max_size=60))
def test_counts_match_a_brute_force_reference(steps: list[tuple[int, int, int]]) -> None:
    """For a stream in time order, a key's window holds its entries newer than (newest - window)."""
    state = WindowState()
    window = 600
    seen: dict[int, list[tuple[int, int]]] = {}
    at = 0
    for actor, delta, amount in steps:
        at += delta
        seen.setdefault(actor, []).append((at, amount))
        kept = [(t, a) for t, a in seen[actor] if t > at - window]
        result = state.add(("r", str(actor), None, None), at * S, amount, window * S)
        assert result == (len(kept), sum(a for _, a in kept))


def test_counters_survive_a_restart_through_a_snapshot() -> None:
    """20 deletions fire xoa_hang_loat; a snapshot/restore after 12 of them changes nothing."""
    policy = load_policy(default_policy_dir())
    start = datetime(2026, 3, 2, 9, 0, tzinfo=timezone(timedelta(hours=7)))

    def delete(i: int) -> Event:
        return Event.model_validate({
            "id": str(uuid.uuid4()), "occurred_at": (start + timedelta(seconds=10 * i)).isoformat(),
            "host": "PC-HCC-02", "actor": "hcc.phamvane", "unit": "tt_hcc", "action": "delete",
            "object": {"path": f"D:\\HoSoTTHC\\2025\\{i}.pdf"},
        })

    state = WindowState()
    fired = []
    for i in range(20):
        if i == 12:
            state = WindowState.from_snapshot(json.loads(json.dumps(state.to_snapshot())))
        fired.append([v.rule_id for v in evaluate(delete(i), policy, state)])
    assert fired[:19] == [[]] * 19 and fired[19] == ["xoa_hang_loat"]
    # and without the snapshot the count restarts: the 20th deletion alone fires nothing
    fresh = WindowState()
    assert evaluate(delete(19), policy, fresh) == []
