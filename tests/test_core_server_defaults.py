"""`canhgac serve` runs the server as the benchmarks measure it."""

from __future__ import annotations


def test_serve_runs_as_many_worker_threads_as_the_server_by_default():
    from service import cli
    from service.core.server import DEFAULT_THREADS, DEFAULT_THREADS_PER_PROCESS
    from service.core.workers import serve_threads

    option = next(param for param in cli.serve.params if param.name == "threads")
    assert option.default is None  # then serve_threads(processes)
    assert f"{DEFAULT_THREADS} with one process" in option.help
    assert f"{DEFAULT_THREADS_PER_PROCESS} each with several" in option.help
    assert serve_threads(1) == DEFAULT_THREADS
    assert serve_threads(2) == DEFAULT_THREADS_PER_PROCESS
