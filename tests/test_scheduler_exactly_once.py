"""Scheduler: a job runs once per slot of its interval, even with two service instances."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select, text

from service.core import jobs
from service.core.db import get_engine, new_session

BASE = datetime(2027, 1, 5, 8, 0, tzinfo=UTC)


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                    timezones=st.just(UTC)),
       st.integers(min_value=1, max_value=7 * 86400))
def test_slot_start_is_the_floor_of_now_by_interval(now, interval):
    start = jobs.slot_start(now, interval)
    assert start <= now < start + timedelta(seconds=interval)
    assert int(start.timestamp()) % interval == 0
    assert start.tzinfo is UTC


def test_slot_start_refuses_naive_times():
    with pytest.raises(ValueError):
        jobs.slot_start(datetime(2027, 1, 1), 60)


@pytest.fixture
def probe_job(app):
    """Register a job that appends a row per run, and its table; unregister afterwards."""
    with get_engine(app).begin() as conn:
        conn.execute(text("CREATE TABLE job_probe (slot BIGINT NOT NULL, pid INTEGER NOT NULL)"))
    calls = {"fail": False}

    @jobs.job("test.probe", every=lambda s: 60)
    def probe(app, session, now):
        session.execute(text("INSERT INTO job_probe (slot, pid) VALUES (:s, :p)"),
                        {"s": int(now.timestamp()) // 60, "p": os.getpid()})
        if calls["fail"]:
            raise RuntimeError("job failed on purpose")

    yield calls
    jobs.JOBS.pop("test.probe", None)


def _probe_rows(app) -> list[tuple[int, int]]:
    with get_engine(app).connect() as conn:
        return [tuple(r) for r in conn.execute(text("SELECT slot, pid FROM job_probe ORDER BY slot"))]


def test_run_job_once_per_slot_in_one_process(app, probe_job):
    assert jobs.run_job(app, "test.probe", now=BASE, exactly_once=True)
    assert not jobs.run_job(app, "test.probe", now=BASE + timedelta(seconds=59), exactly_once=True)
    assert jobs.run_job(app, "test.probe", now=BASE + timedelta(seconds=60), exactly_once=True)
    # Direct calls (tests, an operator) are not limited to one per slot.
    assert jobs.run_job(app, "test.probe", now=BASE)
    slots = [slot for slot, _ in _probe_rows(app)]
    first = int(BASE.timestamp()) // 60
    assert slots == [first, first, first + 1]
    session = new_session(app)
    try:
        claims = session.execute(select(jobs.JobRun.job_id, func.count())
                                 .group_by(jobs.JobRun.job_id)).all()
    finally:
        session.close()
    assert claims == [("test.probe", 2)]


def test_a_failed_run_frees_its_slot(app, probe_job):
    probe_job["fail"] = True
    assert not jobs.run_job(app, "test.probe", now=BASE, exactly_once=True)
    assert _probe_rows(app) == []  # the job's work rolled back with its claim
    probe_job["fail"] = False
    assert jobs.run_job(app, "test.probe", now=BASE + timedelta(seconds=30), exactly_once=True)
    assert len(_probe_rows(app)) == 1


def test_jobs_without_a_now_parameter_still_run(app):
    seen = []

    @jobs.job("test.plain", every=lambda s: 60)
    def plain(app, session):
        seen.append(session)

    try:
        assert jobs.run_job(app, "test.plain", exactly_once=True)
    finally:
        jobs.JOBS.pop("test.plain", None)
    assert len(seen) == 1


def test_scheduler_claims_slots_and_fires_just_after_boundaries(app):
    scheduler = jobs.build_scheduler(app)
    try:
        assert scheduler.get_jobs()
        for scheduled in scheduler.get_jobs():
            assert scheduled.kwargs == {"exactly_once": True}
            interval = scheduled.trigger.interval.total_seconds()
            offset = scheduled.trigger.start_date.timestamp() % interval
            assert 0 < offset <= min(5.0, interval / 10) + 1e-6
    finally:
        scheduler.remove_all_jobs()


SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    from datetime import UTC, datetime
    from pathlib import Path

    from sqlalchemy import text

    from service import create_app
    from service.config import load_settings
    from service.core.jobs import job, run_job

    cfg = json.loads(sys.argv[1])
    app = create_app(load_settings({
        "data_dir": cfg["data_dir"], "database_url": cfg["db_url"], "secret_key": "k",
        "scheduler_enabled": False, "policy_reload": False}, environ={}))

    @job("test.probe", every=lambda s: 60)
    def probe(app, session, now):
        session.execute(text("INSERT INTO job_probe (slot, pid) VALUES (:s, :p)"),
                        {"s": int(now.timestamp()) // 60, "p": os.getpid()})
        time.sleep(cfg["work_seconds"])  # hold the slot while the other instance tries

    Path(cfg["ready"]).touch()
    go = Path(cfg["go"])
    deadline = time.time() + 240
    while not go.exists() and time.time() < deadline:
        time.sleep(0.02)
    t0 = float(go.read_text())
    results = []
    for number, step in enumerate(cfg["steps"]):
        time.sleep(max(0.0, t0 + step["at"] - time.time()))
        if step.get("after"):  # wait until the other instance finished this slot
            while not Path(step["after"]).exists() and time.time() < deadline:
                time.sleep(0.02)
        started = time.time()
        ran = run_job(app, "test.probe", now=datetime.fromtimestamp(step["now"], UTC),
                      exactly_once=cfg["exactly_once"])
        results.append({"slot": step["now"] // 60, "ran": ran, "start": started, "end": time.time()})
        Path(cfg["done"].format(number)).touch()
    print(json.dumps(results))
""")


def _run_two_instances(tmp_path, settings_overrides, *, exactly_once: bool, tag: str):
    """Run the probe job from two OS processes over the same database; return their results."""
    script = tmp_path / "instance.py"
    script.write_text(SCRIPT)
    base = int(BASE.timestamp())
    work = 0.4
    # Slots 0-2: both instances at the same instant. Slots 3-5: the second one comes after the
    # first has committed (no lock is held any more: only the slot claim can stop it).
    done = str(tmp_path / f"done-{tag}-{{name}}-{{step}}")
    steps_a = [{"at": 1.2 * k, "now": base + 60 * k + 1} for k in range(6)]
    steps_b = [{"at": 1.2 * k, "now": base + 60 * k + 7,
                "after": None if k < 3 else done.format(name="a", step=k)} for k in range(6)]
    go = tmp_path / f"go-{tag}"
    procs = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANHGAC_")}
    for name, steps in (("a", steps_a), ("b", steps_b)):
        cfg = {"data_dir": str(settings_overrides["data_dir"]),
               "db_url": settings_overrides["database_url"], "work_seconds": work,
               "exactly_once": exactly_once, "steps": steps,
               "ready": str(tmp_path / f"ready-{tag}-{name}"), "go": str(go),
               "done": done.replace("{name}", name).replace("{step}", "{}")}
        procs.append(subprocess.Popen([sys.executable, str(script), json.dumps(cfg)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env=env))
    deadline = time.time() + 150
    while not all((tmp_path / f"ready-{tag}-{n}").exists() for n in "ab"):
        if time.time() > deadline or any(p.poll() is not None for p in procs):
            for p in procs:
                p.kill()
            errors = [p.communicate()[1][-2000:] for p in procs]
            pytest.fail(f"instances did not start: {errors}")
        time.sleep(0.05)
    go.write_text(str(time.time() + 0.5))
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


@pytest.fixture
def probe_table(app):
    with get_engine(app).begin() as conn:
        conn.execute(text("CREATE TABLE job_probe (slot BIGINT NOT NULL, pid INTEGER NOT NULL)"))


def test_two_instances_never_run_the_same_slot_twice(app, probe_table, tmp_path, settings_overrides):
    results_a, results_b = _run_two_instances(tmp_path, settings_overrides, exactly_once=True,
                                              tag="once")
    rows = _probe_rows(app)
    first = int(BASE.timestamp()) // 60
    assert [slot for slot, _ in rows] == [first + k for k in range(6)]  # one run per slot
    assert len({pid for _, pid in rows}) >= 1
    for a, b in zip(results_a, results_b, strict=True):
        assert a["slot"] == b["slot"]
        assert a["ran"] != b["ran"], (a, b)  # exactly one of the two instances ran it
    # The first three slots really were contended: the loser tried while the winner ran.
    overlapped = []
    for a, b in zip(results_a[:3], results_b[:3], strict=True):
        winner, loser = (a, b) if a["ran"] else (b, a)
        if loser["start"] < winner["end"]:
            overlapped.append(winner["slot"])
    assert overlapped, "the two instances never tried at the same time"


def test_without_the_slot_claim_two_instances_do_run_twice(app, probe_table, tmp_path,
                                                           settings_overrides):
    # The control: the same harness without exactly_once sees the duplicates it guards against.
    _run_two_instances(tmp_path, settings_overrides, exactly_once=False, tag="control")
    counts: dict[int, int] = {}
    for slot, _ in _probe_rows(app):
        counts[slot] = counts.get(slot, 0) + 1
    first = int(BASE.timestamp()) // 60
    assert [counts.get(first + k, 0) for k in range(3, 6)] == [2, 2, 2]


def test_old_slot_claims_are_pruned(app, probe_job):
    for days in (10, 8, 6, 0):
        assert jobs.run_job(app, "test.probe", now=BASE - timedelta(days=days), exactly_once=True)
    assert jobs.run_job(app, "core.prune_job_runs", now=BASE)
    session = new_session(app)
    try:
        left = sorted(session.scalars(select(jobs.JobRun.slot_start)
                                      .where(jobs.JobRun.job_id == "test.probe")))
    finally:
        session.close()
    assert left == [jobs.slot_start(BASE - timedelta(days=6), 60), jobs.slot_start(BASE, 60)]
