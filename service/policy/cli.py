"""``canhgac policy check|test``: validate a policy directory and run its rule tests.

``policy_cli`` is a click group; the main CLI registers it (and adds ``replay``).
Without ``--dir`` the directory is ``./policies`` if it exists, else the packaged default.
"""

from __future__ import annotations

from pathlib import Path

import click

from service.policy.engine import Policy, run_policy_tests
from service.policy.loader import load_policy, resolve_policy_dir
from service.policy.schemas import PolicyError

policy_cli = click.Group("policy", help="Chính sách và quy tắc / policy and rules.")

_DIR_OPTION = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Thư mục chính sách (mặc định ./policies) / policy directory (default ./policies).",
)


def _load(directory: Path | None) -> Policy:
    root = resolve_policy_dir(directory)
    try:
        return load_policy(root)
    except PolicyError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        click.echo(
            f"Chính sách không hợp lệ: {len(exc.problems)} lỗi / invalid policy: "
            f"{len(exc.problems)} problem(s) in {root}",
            err=True,
        )
        raise SystemExit(1) from None


@policy_cli.command("check")
@_DIR_OPTION
def check_command(directory: Path | None) -> None:
    """Kiểm tra tệp chính sách / validate the policy files; exit 1 listing every problem."""
    policy = _load(directory)
    click.echo(f"Chính sách hợp lệ / policy OK: {policy.directory}")
    click.echo(policy.summary())
    click.echo(f"sha256 {policy.hash}")


@policy_cli.command("test")
@_DIR_OPTION
def test_command(directory: Path | None) -> None:
    """Chạy bài kiểm thử quy tắc / run the policy's rule tests; exit 1 on any mismatch."""
    policy = _load(directory)
    failures = run_policy_tests(policy)
    for failure in failures:
        click.echo(f"FAIL {failure}", err=True)
    steps = sum(len(t.steps) for t in policy.tests)
    if failures:
        click.echo(
            f"{len(failures)} lỗi trong {len(policy.tests)} bài kiểm thử ({steps} bước) / "
            f"{len(failures)} failure(s) in {len(policy.tests)} tests ({steps} steps)",
            err=True,
        )
        raise SystemExit(1)
    click.echo(
        f"Đạt / passed: {len(policy.tests)} bài kiểm thử/tests, {steps} bước/steps, "
        f"{sum(1 for r in policy.rules if r.enabled)} quy tắc/rules — sha256 {policy.hash}"
    )
