"""One percentile definition for every benchmark, so p50/p99 mean the same in each table row."""

from __future__ import annotations


def percentile(values: list[float], q: float) -> float:
    """Return the q-quantile (0..1) by linear interpolation between closest ranks; NaN if empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
