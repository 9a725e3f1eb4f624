"""`canhgac proof …` (RFC 9162 proofs) and `canhgac witness …` (witnessing, being witnessed)."""

from __future__ import annotations

import base64

import click

from service.core.cliutil import cli_actor, with_app
from service.core.db import get_session


def _print_hashes(hashes: list[bytes]) -> None:
    for value in hashes:
        click.echo(base64.b64encode(value).decode("ascii"))


@click.group("proof")
def proof_cli() -> None:
    """Print RFC 9162 proofs of the trail (base64, one hash a line)."""


@proof_cli.command("inclusion")
@click.option("--seq", type=click.IntRange(min=0), required=True, help="Số mục / entry number")
@click.option("--size", type=click.IntRange(min=1), default=None,
              help="Kích thước cây / tree size (default: the latest signed checkpoint)")
@with_app
def proof_inclusion(app, seq, size) -> None:
    """Print the inclusion proof of entry SEQ in the tree of SIZE entries."""
    from service.audit import log
    from service.audit.operations import latest_checkpoint

    session = get_session()
    if size is None:
        cp = latest_checkpoint(session)
        if cp is None:
            raise click.ClickException("no signed checkpoint yet: give --size or run "
                                       "`canhgac checkpoint`")
        size = cp.size
    total = log.tree_size(session)
    if size > total:
        raise click.ClickException(f"the trail has {total} entries, fewer than --size {size}")
    if seq >= size:
        raise click.ClickException(f"entry {seq} is not in a tree of {size} entries")
    proof = log.inclusion_proof(session, seq, size)
    session.rollback()
    click.echo(f"# inclusion proof of entry {seq} in the tree of size {size}", err=True)
    _print_hashes(proof)


@proof_cli.command("consistency")
@click.option("--from", "old", type=click.IntRange(min=1), required=True,
              help="Kích thước cũ / old tree size")
@click.option("--to", "new", type=click.IntRange(min=1), required=True,
              help="Kích thước mới / new tree size")
@with_app
def proof_consistency(app, old, new) -> None:
    """Print the consistency proof from the tree of FROM entries to the tree of TO entries."""
    from service.audit import log

    session = get_session()
    total = log.tree_size(session)
    if old > new:
        raise click.ClickException("--from must not be larger than --to")
    if new > total:
        raise click.ClickException(f"the trail has {total} entries, fewer than --to {new}")
    proof = log.consistency_proof(session, old, new)
    session.rollback()
    click.echo(f"# consistency proof from size {old} to size {new}", err=True)
    _print_hashes(proof)


@click.group("witness")
def witness_cli() -> None:
    """Witness other logs, and choose the witnesses of this one."""


@witness_cli.command("add-log")
@click.option("--key", "key", required=True,
              help="Khóa xác minh của nhật ký / the log's verifier key (its name is the origin)")
@with_app
def witness_add_log(app, key) -> None:
    """Witness another log (a neighbouring commune, the province) identified by its key."""
    from service.audit.witness import WitnessError, add_log

    session = get_session()
    try:
        row = add_log(session, key, by=cli_actor())
    except WitnessError as exc:
        raise click.ClickException(str(exc)) from None
    session.commit()
    click.echo(f"Đã thêm nhật ký / now witnessing {row.origin}")


@witness_cli.command("add-witness")
@click.option("--url", required=True,
              help="Tiền tố gửi của nhân chứng / the witness's submission prefix "
                   "(add-checkpoint is appended)")
@click.option("--key", "key", required=True,
              help="Khóa xác minh của nhân chứng / the witness's cosignature verifier key")
@with_app
def witness_add_witness(app, url, key) -> None:
    """Have a witness cosign this log's checkpoints (sent by the background job)."""
    from service.audit.witnessing import WitnessingError, add_witness

    session = get_session()
    try:
        row = add_witness(session, url, key, by=cli_actor())
    except WitnessingError as exc:
        raise click.ClickException(str(exc)) from None
    session.commit()
    click.echo(f"Đã thêm nhân chứng / added witness {row.name} at {row.url}")


@witness_cli.command("reset")
@click.argument("name")
@with_app
def witness_reset(app, name) -> None:
    """Send checkpoints again to a witness whose refusal was investigated."""
    from service.audit.witnessing import WitnessingError, reset_witness

    session = get_session()
    try:
        reset_witness(session, name, by=cli_actor())
    except WitnessingError as exc:
        raise click.ClickException(str(exc)) from None
    session.commit()
    click.echo(f"Đã đặt lại / reset witness {name}")


@witness_cli.command("list")
@with_app
def witness_list(app) -> None:
    """List the logs this service witnesses and the witnesses of this log."""
    from service.audit.keys import WITNESS_VERIFIER_FILE
    from service.audit.witness import witnessed_logs
    from service.audit.witnessing import log_witnesses

    settings = app.config["SETTINGS"]
    session = get_session()
    key_path = settings.keys_dir / WITNESS_VERIFIER_FILE
    if key_path.exists():
        click.echo(f"Khóa nhân chứng / witness key: {key_path.read_text().strip()}")
    click.echo("Nhật ký được chứng kiến / logs witnessed (origin, latest size cosigned):")
    for row in witnessed_logs(session):
        when = row.cosigned_at.isoformat() if row.cosigned_at else "-"
        click.echo(f"  {row.origin}\t{row.size}\t{when}")
    click.echo("Nhân chứng của nhật ký này / witnesses of this log (name, url, size cosigned):")
    for row in log_witnesses(session):
        state = f"\tlỗi / error: {row.last_error}" if row.last_error else ""
        if row.refused_size is not None:
            state += f"\tTỪ CHỐI / REFUSED size {row.refused_size}"
        click.echo(f"  {row.name}\t{row.url}\t{row.size}{state}")
    session.rollback()


@click.command("monitor")
@click.option("--reset", is_flag=True,
              help="Bắt đầu lại từ đầu sau khi đã điều tra / after an investigation, forget the "
                   "verified state and re-verify the whole trail")
@with_app
def monitor_command(app, reset) -> None:
    """Re-verify the entries signed since the monitor's last run (what the job does)."""
    from service.audit.monitor import reset_monitor, verify_new_stretch

    session = get_session()
    if reset:
        reset_monitor(session, by=cli_actor())
        session.commit()
    result = verify_new_stretch(session, app.config["SETTINGS"])
    session.commit()
    if not result.is_ok:
        raise click.ClickException(f"KHÔNG HỢP LỆ / INVALID: {result.problem}")
    click.echo(f"HỢP LỆ / VALID: mục / entries {result.from_size}–{result.to_size} đã kiểm tra "
               f"/ verified ({result.checkpoints} checkpoint)")
