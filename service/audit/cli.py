"""`canhgac checkpoint`, `canhgac verify` and `canhgac export`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from service.core.cliutil import data_dir_option, make_app


@click.command("checkpoint")
@data_dir_option
def checkpoint_command(data_dir) -> None:
    """Sign a checkpoint of the trail now and print the signed note."""
    from service.audit.operations import sign_checkpoint
    from service.core.db import get_session

    app = make_app(data_dir)
    with app.app_context():
        session = get_session()
        cp = sign_checkpoint(session, app.config["SETTINGS"])
        session.commit()
        click.echo(cp.note, nl=False)


@click.command("verify")
@data_dir_option
@click.option("--checkpoint", "kept", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="A signed checkpoint kept outside the server; the log must extend it")
@click.option("--bundle", type=click.Path(exists=True, dir_okay=False),
              help="Verify an exported evidence bundle offline instead of the database")
@click.option("--key", "keys", multiple=True, help="Extra verifier key(s) to trust")
def verify_command(data_dir, kept, bundle, keys) -> None:
    """Recompute the trail and check every checkpoint; exit non-zero on the first problem."""
    if bundle:
        from service.audit.bundle import BundleError, verify_bundle

        try:
            summary = verify_bundle(Path(bundle), extra_keys=list(keys))
        except BundleError as exc:
            click.echo(f"KHÔNG HỢP LỆ / INVALID: {exc}", err=True)
            sys.exit(1)
        click.echo(f"HỢP LỆ / VALID: {summary}")
        return
    from service.audit.keys import load_verifier_key
    from service.audit.verify import VerifyError, verify_log
    from service.core.db import get_session

    app = make_app(data_dir)
    settings = app.config["SETTINGS"]
    notes = [Path(p).read_text(encoding="utf-8") for p in kept]
    with app.app_context():
        session = get_session()
        trusted = [load_verifier_key(settings.keys_dir), *keys]
        from service.audit.log import tree_size

        total = tree_size(session)
        try:
            if sys.stderr.isatty() and total:
                with click.progressbar(length=total, label="Kiểm tra / verifying", file=sys.stderr) as bar:
                    seen = [0]

                    def progress(done: int) -> None:
                        bar.update(done - seen[0])
                        seen[0] = done

                    report = verify_log(session, trusted, external_notes=notes, progress=progress)
            else:
                report = verify_log(session, trusted, external_notes=notes)
        except VerifyError as exc:
            click.echo(f"KHÔNG HỢP LỆ / INVALID: {exc}", err=True)
            sys.exit(1)
        session.rollback()
    import base64

    click.echo(
        f"HỢP LỆ / VALID: {report.size} entries, root {base64.b64encode(report.root).decode()}, "
        f"{report.checkpoints} signed checkpoints"
        + (f", extends kept checkpoint(s) of size {report.external}" if report.external else "")
    )


@click.command("export")
@data_dir_option
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--since", default=None, help="From (ISO date/time, Asia/Ho_Chi_Minh if no offset)")
@click.option("--until", default=None, help="Until (exclusive)")
@click.option("--actor", default=None)
@click.option("--host", default=None)
@click.option("--path", "path_contains", default=None, help="Path contains")
@click.option("--data-class", default=None)
@click.option("--incident", "incident_id", type=int, default=None)
@click.option("--action", default=None)
def export_command(data_dir, output, **filters) -> None:
    """Write an evidence bundle (zip) of the matching entries with proofs and a checkpoint."""
    from service.audit.bundle import export_bundle
    from service.audit.search import SearchFilter
    from service.core.db import get_session

    app = make_app(data_dir)
    with app.app_context():
        try:
            flt = SearchFilter.from_strings(app.config["SETTINGS"].timezone, **filters)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        session = get_session()
        count = export_bundle(session, app.config["SETTINGS"], flt, output, by="cli")
        session.commit()
    click.echo(f"Đã xuất {count} mục vào / exported {count} entries to {output}")
