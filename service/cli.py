"""The `canhgac` command line; each domain's commands live beside its code."""

from __future__ import annotations

import importlib
import os
import sys

import click
from sqlalchemy import func, select

from service.core.cliutil import data_dir_option, make_app


@click.group()
@click.version_option(package_name="canhgac")
def main() -> None:
    """Canh Gác — giám sát truy cập dữ liệu công dân / citizen-data access audit."""


@main.command()
@data_dir_option
@click.option("--admin", "admin_name", default="admin", show_default=True)
@click.option("--admin-email", default="admin@canhgac.local", show_default=True)
@click.option("--non-interactive", is_flag=True, help="Take the admin password from CANHGAC_ADMIN_PASSWORD")
@click.option("--tls-name", "tls_names", multiple=True,
              help="Extra host name or LAN IP address for the new TLS certificate (repeatable)")
def init(data_dir, admin_name, admin_email, non_interactive, tls_names) -> None:
    """Create the data directory, keys, database schema and first admin (idempotent)."""
    from service.audit.operations import sign_checkpoint
    from service.auth import operations
    from service.auth.models import User
    from service.core import tls
    from service.core.bootstrap import prepare_data_dir
    from service.core.db import get_session

    app = make_app(data_dir, must_exist=False, keeps_sessions=True)
    settings = app.config["SETTINGS"]
    verifier, cert = prepare_data_dir(app, list(tls_names))
    with app.app_context():
        session = get_session()
        has_admin = any(
            "admin" in u.roles for u in session.scalars(select(User).where(User.is_disabled.is_(False)))
        )
        if not has_admin:
            password = os.environ.get("CANHGAC_ADMIN_PASSWORD")
            if not password:
                if non_interactive:
                    raise click.ClickException("CANHGAC_ADMIN_PASSWORD is not set (--non-interactive)")
                password = click.prompt(
                    f"Mật khẩu cho {admin_name} / password", hide_input=True, confirmation_prompt=True
                )
            try:
                # Seeding only on a new installation: an admin re-created later (all others
                # disabled) is a change of who may do what, and is announced.
                is_new = session.scalar(select(func.count()).select_from(User)) == 0
                operations.create_user(
                    session, username=admin_name, password=password, roles=["admin"],
                    email=admin_email, min_password_length=settings.password_min_length, by="init",
                    is_seeding=is_new,
                )
            except operations.AccountError as exc:
                raise click.ClickException(str(exc)) from None
            click.echo(f"Đã tạo quản trị viên / admin created: {admin_name}")
        sign_checkpoint(session, settings)
        session.commit()
    click.echo(f"Thư mục dữ liệu / data directory: {settings.data_dir.resolve()}")
    click.echo(f"Chứng chỉ TLS / TLS certificate: {cert} (SHA-256 {tls.certificate_fingerprint(cert)})")
    click.echo("Khóa xác minh nhật ký (hãy lưu trên giấy) / audit-trail verifier key (keep on paper):")
    click.echo(verifier)


@main.command()
@data_dir_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--tls/--no-tls", default=False, help="Serve HTTPS with the certificate under keys/")
# The defaults are service.core.server's DEFAULT_THREADS and DEFAULT_THREADS_PER_PROCESS
# (tested): importing them here would load hypercorn for every command.
@click.option("--threads", type=click.IntRange(1, 64), default=None,
              help="Worker threads running requests in each process (slow connections do not "
                   "hold one) [default: 8 with one process, 2 each with several]")
@click.option("--read-deadline", default=30.0, show_default=True, type=click.FloatRange(1, 3600),
              help="Seconds a client has to send a request's headers, and then its body")
@click.option("--processes", type=click.IntRange(1, 16), default=None,
              help="Processes serving requests, each with its own threads "
                   "[default: one per core, at most 2, on Linux; 1 elsewhere]")
def serve(data_dir, host, port, tls, threads, read_deadline, processes) -> None:
    """Run the service with its production HTTP(S) server (hypercorn, service/core/server.py)."""
    from service.core.heap import settle_heap
    from service.core.jobs import start_background, stop_background
    from service.core.server import Server
    from service.core.workers import (
        Secondaries,
        default_processes,
        is_multiprocess_supported,
        serve_threads,
    )

    processes = processes or default_processes()
    if processes > 1 and not is_multiprocess_supported():
        raise click.ClickException("--processes above 1 needs Linux")
    threads = threads or serve_threads(processes)

    app = make_app(data_dir, keeps_sessions=True)  # stops on a missing or outdated schema
    keys = app.config["SETTINGS"].keys_dir
    try:
        server = Server(app, host, port, threads=threads, read_deadline=read_deadline,
                        certfile=keys / "tls.crt" if tls else None, keyfile=keys / "tls.key" if tls else None,
                        port_sharing="open" if processes > 1 else None)
    except OSError as exc:
        raise click.ClickException(f"{host}:{port}: {exc}") from None
    settle_heap()  # what start-up built lives as long as the process (service/core/heap.py)
    start_background(app)
    secondaries = None
    try:
        if processes > 1:
            # The others serve the same port (service/core/workers.py); they find the same
            # settings in the same environment, on the directory this one resolved.
            args = ["--data-dir", str(app.config["SETTINGS"].data_dir.resolve()),
                    "--host", server.host, "--port", str(server.port),
                    "--threads", str(threads), "--read-deadline", str(read_deadline)]
            secondaries = Secondaries(processes - 1, [*args, *(["--tls"] if tls else [])])
            ready = secondaries.start()
            if ready < processes - 1:
                click.echo(f"Cảnh báo / warning: {processes - 1 - ready} tiến trình phụ chưa sẵn sàng "
                           "/ secondary process(es) not ready; restarting", err=True)
        click.echo(f"Canh Gác đang chạy tại / serving at {server.url}/ "
                   f"({processes} tiến trình / processes)", err=True)
        # systemd and Windows service managers stop with SIGTERM: shut down as for Ctrl-C.
        server.run(on_signals=("SIGINT", "SIGTERM", "SIGBREAK"))
    except KeyboardInterrupt:
        pass
    finally:
        if secondaries is not None:
            secondaries.stop()
        stop_background(app)


def _register() -> None:
    from service.audit.cli import checkpoint_command, export_command, verify_command
    from service.audit.tlog_cli import monitor_command, proof_cli, witness_cli
    from service.auth.cli import token_cli, user_cli

    for command in (user_cli, token_cli, checkpoint_command, verify_command, export_command,
                    proof_cli, witness_cli, monitor_command):
        main.add_command(command)
    for module, name in (
        ("service.policy.cli", "policy_cli"),
        ("canhgac_agent.cli", "agent_command"),
        ("service.incidents.cli", "incident_cli"),
        ("service.reports.cli", "report_cli"),
        ("service.core.backup", "backup_command"),
        ("service.core.backup", "restore_command"),
        ("service.demo", "demo_command"),
        ("service.core.jobs", "worker_command"),
        ("service.devices.cli", "device_cli"),
    ):
        main.add_command(getattr(importlib.import_module(module), name))
    from service.events.cli import replay_command

    main.commands["policy"].add_command(replay_command)


_register()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
