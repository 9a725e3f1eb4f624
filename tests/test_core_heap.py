"""The server process settles its heap once started (service/core/heap.py)."""

from __future__ import annotations

import socket
import subprocess
import sys

from service.core import heap


def test_settle_heap_freezes_start_up_objects_and_raises_the_young_threshold():
    # In a process of its own: the test run keeps CPython's defaults.
    code = ("import gc; from service.core.heap import settle_heap, YOUNG_THRESHOLD; "
            "before = gc.get_threshold(); settle_heap(); after = gc.get_threshold(); "
            "print(gc.get_freeze_count() > 1000, after[0] == YOUNG_THRESHOLD, after[1:] == before[1:])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            timeout=60)
    assert result.stdout.split() == ["True", "True", "True"]


def test_serve_settles_the_heap_before_serving(runner, monkeypatch):
    from service import cli
    from service.core.server import Server

    calls: list[str] = []
    build = cli.make_app

    def make_app(*args, **kwargs):
        calls.append("make_app")
        return build(*args, **kwargs)

    monkeypatch.setattr(cli, "make_app", make_app)
    monkeypatch.setattr(heap, "settle_heap", lambda: calls.append("settle"))

    def run(self, on_signals=()):
        calls.append("run")
        self.stop()  # never served: closes the bound socket

    monkeypatch.setattr(Server, "run", run)
    with socket.socket() as probe:  # a free port; serve binds it and run() returns at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = runner.invoke(["serve", "--host", "127.0.0.1", "--port", str(port)])
    assert result.exit_code == 0, result.output
    assert calls == ["make_app", "settle", "run"]  # the app built before its heap is frozen
