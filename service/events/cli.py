"""`canhgac policy replay`: run a draft policy over past events, changing nothing."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import click

from service.core.cliutil import data_dir_option, make_app


@click.command("replay")
@data_dir_option
@click.option("--since", required=True, help="Từ ngày / since (YYYY-MM-DD or ISO time, local time)")
@click.option("--dir", "directory", default=None, type=click.Path(file_okay=False),
              help="Draft policy directory (default: policies/)")
@click.option("--limit", default=50, show_default=True, help="How many hits to list")
def replay_command(data_dir, since, directory, limit) -> None:
    """Print what a draft policy would have flagged in the trail since a date."""
    from service.core.db import get_session
    from service.events.replay import replay
    from service.policy.loader import load_policy, resolve_policy_dir
    from service.policy.schemas import PolicyError

    try:
        policy = load_policy(resolve_policy_dir(directory))
    except PolicyError as exc:
        raise click.ClickException(f"chính sách không hợp lệ / invalid policy: {exc}") from None
    app = make_app(data_dir)
    zone = ZoneInfo(app.config["SETTINGS"].timezone)
    try:
        start = datetime.fromisoformat(since)
    except ValueError:
        raise click.BadParameter(f"not a date: {since!r}", param_hint="--since") from None
    if start.tzinfo is None:
        start = start.replace(tzinfo=zone)
    with app.app_context():
        session = get_session()
        report = replay(session, policy, start)
        session.rollback()  # read-only: a replay changes nothing
    click.echo(f"Chính sách / policy {policy.hash[:16]}: {report.events} sự kiện / events, "
               f"{len(report.hits)} lần kích hoạt / hits, {report.skipped} bỏ qua / skipped")
    for rule_id, count in sorted(report.by_rule().items()):
        click.echo(f"  {rule_id:<40} {count}")
    for hit in report.hits[:limit]:
        click.echo(f"#{hit.seq}\t{hit.occurred_at}\t{hit.rule_id}\t{hit.response}\t{hit.explanation}")
