"""`canhgac serve` runs the server as the benchmarks measure it."""

from __future__ import annotations


def test_serve_runs_as_many_worker_threads_as_the_server_by_default():
    from service import cli
    from service.core.server import DEFAULT_THREADS

    option = next(param for param in cli.serve.params if param.name == "threads")
    assert option.default == DEFAULT_THREADS
