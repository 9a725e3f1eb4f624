"""``canhgac-agent install-service`` and ``uninstall-service`` (systemd on Linux, SCM on Windows)."""

from __future__ import annotations

from pathlib import Path

import click

from canhgac_agent import paths


def _install(config_file: str | None, token_file: str | None, no_start: bool,
             root: str) -> None:
    if paths.current_platform() == paths.WINDOWS:  # pragma: no cover - Windows only
        from canhgac_agent import winservice

        if not config_file:
            raise click.UsageError("Trên Windows cần --config / --config is required on Windows")
        try:
            winservice.install_service(Path(config_file).resolve(), start=not no_start)
        except winservice.WindowsServiceError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"OK: {winservice.SERVICE_NAME}")
        return
    from canhgac_agent import linux_service

    plan = linux_service.InstallPlan(root=Path(root))
    try:
        done = linux_service.install(
            plan,
            config_source=Path(config_file) if config_file else None,
            token_source=Path(token_file) if token_file else None,
            start=not no_start,
        )
    except (linux_service.ServiceInstallError, OSError) as exc:
        raise click.ClickException(
            f"Không cài được dịch vụ / cannot install the service: {exc}") from exc
    for line in done:
        click.echo(f"OK: {line}")


def _uninstall(purge: bool, root: str) -> None:
    if paths.current_platform() == paths.WINDOWS:  # pragma: no cover - Windows only
        from canhgac_agent import winservice

        try:
            winservice.remove_service()
        except winservice.WindowsServiceError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"OK: {winservice.SERVICE_NAME}")
        return
    from canhgac_agent import linux_service

    try:
        done = linux_service.uninstall(linux_service.InstallPlan(root=Path(root)), purge=purge)
    except (linux_service.ServiceInstallError, OSError) as exc:
        raise click.ClickException(
            f"Không gỡ được dịch vụ / cannot remove the service: {exc}") from exc
    for line in done:
        click.echo(f"OK: {line}")


_ROOT_OPTION = click.Option(
    ["--root"], default="/", hidden=True, type=click.Path(file_okay=False),
    help="Cài vào thư mục gốc khác, không gọi systemctl (ảnh đĩa, kiểm thử) / install under "
         "another root without calling systemctl (images, tests)")

install_service_command = click.Command(
    name="install-service",
    callback=_install,
    help=(
        "Cài tác tử thành dịch vụ hệ thống (cần root / quản trị): Linux: systemd, cấu hình ở "
        "/etc/canhgac-agent, spool ở /var/lib/canhgac-agent; Windows: dịch vụ CanhGacAgent (dùng "
        "install-agent.ps1). / Install the agent as a system service (root / administrator): "
        "Linux: systemd unit, configuration in /etc/canhgac-agent, spool in /var/lib/canhgac-agent; "
        "Windows: the CanhGacAgent service (use install-agent.ps1)."
    ),
    params=[
        click.Option(["--config", "config_file"], type=click.Path(exists=True, dir_okay=False),
                     help="Tệp cấu hình để chép vào /etc/canhgac-agent/agent.toml (Linux) hoặc "
                          "dùng tại chỗ (Windows) / configuration to copy (Linux) or use (Windows)"),
        click.Option(["--token-file"], type=click.Path(exists=True, dir_okay=False),
                     help="Tệp mã truy cập để chép vào /etc/canhgac-agent/agent-token.txt; trong "
                          'cấu hình đặt token_file = "agent-token.txt" / token to copy there; '
                          'the configuration then says token_file = "agent-token.txt"'),
        click.Option(["--no-start"], is_flag=True,
                     help="Bật nhưng chưa chạy / enable without starting now"),
        _ROOT_OPTION,
    ],
)

uninstall_service_command = click.Command(
    name="uninstall-service",
    callback=_uninstall,
    help="Dừng và gỡ dịch vụ / stop and remove the service.",
    params=[
        click.Option(["--purge"], is_flag=True,
                     help="Xoá cả cấu hình, mã truy cập và spool (sự kiện chưa gửi sẽ mất) / also "
                          "delete configuration, token and spool (unsent events are lost)"),
        _ROOT_OPTION,
    ],
)
