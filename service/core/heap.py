"""The server process's heap, settled once after start so that collections skip what lives on."""

from __future__ import annotations

import gc

# Ingest allocates about ten container objects per event (models, dicts, rows). With CPython's
# default young-generation threshold (700) a batch of 1,000 events runs a dozen collections, and
# every few batches a full one walks the whole application: SQLAlchemy mappers, pydantic schemas,
# templates, the policy. Measured: 12-30 % of service-layer ingest time (bench/README.md, issue 18).
# Event objects hold no reference cycles, so reference counting frees them; the collector is
# only for the rare cycle, and running it every 20,000 allocations still finds those.
YOUNG_THRESHOLD = 20_000


def settle_heap() -> None:
    """Freeze what start-up built and collect the young generation less often."""
    gc.unfreeze()  # called again (the benchmarks build app after app): free what died since
    gc.collect()
    # Objects alive now (the app, its mappers and schemas) move to a permanent generation:
    # full collections no longer walk them. Dropped later, they are freed by reference counting
    # if they hold no cycle; a frozen cycle stays. Both are fine for what start-up built: it
    # lives as long as the process (a reloaded policy, the one thing replaced, has no cycles).
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
