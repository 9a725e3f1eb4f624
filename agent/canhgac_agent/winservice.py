"""Windows: the agent as the ``CanhGacAgent`` service (LocalSystem, automatic start, restarts).

NOT RUN ON WINDOWS YET. Written against pywin32's documented ``win32serviceutil.ServiceFramework``
and ``win32service`` API; on Linux only :func:`run_service` (the part without pywin32) is tested.
pywin32 is imported only on Windows, so nothing here loads it elsewhere.

The configuration file's path is kept in the service's registry key
(``HKLM\\SYSTEM\\CurrentControlSet\\Services\\CanhGacAgent\\Parameters\\ConfigFile``); the spool
goes next to it unless the file names one (``%ProgramData%\\CanhGac\\Agent``, see install-agent.ps1).
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import sys
import threading
from pathlib import Path

from canhgac_agent.config import AgentConfig, load_config
from canhgac_agent.permissions import check_service_permissions

SERVICE_NAME = "CanhGacAgent"
DISPLAY_NAME = "Canh Gac - tac tu giam sat / endpoint agent"
DESCRIPTION = ("Canh Gác: ghi lại truy cập tệp dữ liệu công dân và gửi về máy chủ của xã / "
               "records access to citizen data files and reports it to the commune's server")
CONFIG_OPTION = "ConfigFile"
SPOOL_NAME = "agent-spool.sqlite3"
LOG_NAME = "agent.log"
RESTART_DELAY_MS = 10_000

logger = logging.getLogger("canhgac.agent")


class WindowsServiceError(RuntimeError):
    """The Windows service cannot be installed, removed or started as asked."""


def load_service_config(config_file: Path) -> AgentConfig:
    """Load the configuration the way the service does: spool next to it unless named."""
    import tomllib

    raw = tomllib.loads(config_file.read_text(encoding="utf-8"))
    overrides = {} if "spool_path" in raw else {
        "spool_path": str(config_file.resolve().parent / SPOOL_NAME)}
    return load_config(config_file, overrides)


def _log_to_file(folder: Path) -> logging.Handler:
    # A service has no console: log next to the spool, rotated, readable by administrators only
    # (the folder's ACL).
    folder.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        folder / LOG_NAME, maxBytes=5_000_000, backupCount=3, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


def run_service(config_file: Path, stop_event: threading.Event, *, is_service: bool = True,
                ready_event: threading.Event | None = None) -> None:
    """Run the agent until *stop_event* is set, after the service-mode permission check."""
    from canhgac_agent import paths, runner

    config = load_service_config(config_file)
    handler = _log_to_file(Path(config.spool_path).parent)
    try:
        check_service_permissions(config_file, config, is_service=is_service)
        options = None
        if config.include_default_egress:
            options = {"default_egress": lambda: paths.existing_default_egress_folders(
                paths.service_user_homes())}
        runner.run_agent(config, stop_event, ready_event=ready_event, watcher_options=options)
    except Exception:
        logger.exception("Tác tử dừng vì lỗi / the agent stopped on an error")
        raise
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


if sys.platform == "win32":  # pragma: no cover - Windows only
    import servicemanager
    import win32service
    import win32serviceutil

    class CanhGacAgentService(win32serviceutil.ServiceFramework):
        """The Service Control Manager's view of the agent: start, stop, report status."""

        _svc_name_ = SERVICE_NAME
        _svc_display_name_ = DISPLAY_NAME
        _svc_description_ = DESCRIPTION

        def __init__(self, args) -> None:
            super().__init__(args)
            self.stop_event = threading.Event()

        def SvcStop(self) -> None:
            """Ask the agent to stop; it flushes and closes the spool within the wait hint."""
            self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING, waitHint=30_000)
            self.stop_event.set()

        def SvcDoRun(self) -> None:
            """Run the agent until SvcStop; an error ends the service so recovery restarts it."""
            servicemanager.LogMsg(servicemanager.EVENTLOG_INFORMATION_TYPE,
                                  servicemanager.PYS_SERVICE_STARTED, (self._svc_name_, ""))
            config_file = win32serviceutil.GetServiceCustomOption(SERVICE_NAME, CONFIG_OPTION)
            if not config_file:
                servicemanager.LogErrorMsg(f"{SERVICE_NAME}: no {CONFIG_OPTION} in the registry")
                raise WindowsServiceError("no configuration file registered")
            try:
                run_service(Path(config_file), self.stop_event)
            except Exception as exc:
                servicemanager.LogErrorMsg(f"{SERVICE_NAME}: {exc}")
                raise
            servicemanager.LogMsg(servicemanager.EVENTLOG_INFORMATION_TYPE,
                                  servicemanager.PYS_SERVICE_STOPPED, (self._svc_name_, ""))


def _win32():  # pragma: no cover - Windows only
    try:
        import win32service
        import win32serviceutil
    except ImportError as exc:
        raise WindowsServiceError("Cần pywin32 (pip install -r requirements/agent.txt) / "
                                  "pywin32 is required") from exc
    return win32service, win32serviceutil


def install_service(config_file: Path, *, start: bool = True) -> None:  # pragma: no cover - Windows only
    """Register CanhGacAgent (LocalSystem, automatic, restart on failure) and start it."""
    win32service, win32serviceutil = _win32()
    if not config_file.is_file():
        raise WindowsServiceError(f"không thấy / not found: {config_file}")
    load_service_config(config_file).bearer_token()  # fail here, not in the service
    class_string = win32serviceutil.GetServiceClassString(CanhGacAgentService)
    try:
        win32serviceutil.InstallService(
            class_string, SERVICE_NAME, DISPLAY_NAME,
            startType=win32service.SERVICE_AUTO_START, description=DESCRIPTION)
    except Exception as exc:  # pywintypes.error: already installed → update it instead
        if getattr(exc, "winerror", None) != 1073:  # ERROR_SERVICE_EXISTS
            raise WindowsServiceError(f"InstallService: {exc}") from exc
        win32serviceutil.ChangeServiceConfig(
            class_string, SERVICE_NAME, displayName=DISPLAY_NAME,
            startType=win32service.SERVICE_AUTO_START, description=DESCRIPTION)
    win32serviceutil.SetServiceCustomOption(SERVICE_NAME, CONFIG_OPTION, str(config_file))
    _set_recovery(win32service)
    if start:
        win32serviceutil.StartService(SERVICE_NAME)


def _set_recovery(win32service) -> None:  # pragma: no cover - Windows only
    # Restart after 10 s on every failure, including a clean exit with an error code.
    manager = win32service.OpenSCManager(None, None, win32service.SC_MANAGER_ALL_ACCESS)
    try:
        handle = win32service.OpenService(manager, SERVICE_NAME, win32service.SERVICE_ALL_ACCESS)
        try:
            restart = (win32service.SC_ACTION_RESTART, RESTART_DELAY_MS)
            win32service.ChangeServiceConfig2(
                handle, win32service.SERVICE_CONFIG_FAILURE_ACTIONS,
                {"ResetPeriod": 86_400, "RebootMsg": None, "Command": None,
                 "Actions": [restart, restart, restart]})
            win32service.ChangeServiceConfig2(
                handle, win32service.SERVICE_CONFIG_FAILURE_ACTIONS_FLAG, True)
        finally:
            win32service.CloseServiceHandle(handle)
    finally:
        win32service.CloseServiceHandle(manager)


def remove_service() -> None:  # pragma: no cover - Windows only
    """Stop and remove CanhGacAgent (its folder and spool stay)."""
    _, win32serviceutil = _win32()
    # Already stopped is fine; RemoveService below reports real errors.
    with contextlib.suppress(Exception):
        win32serviceutil.StopService(SERVICE_NAME)
    try:
        win32serviceutil.RemoveService(SERVICE_NAME)
    except Exception as exc:
        raise WindowsServiceError(f"RemoveService: {exc}") from exc


if __name__ == "__main__":  # pragma: no cover - Windows only: pythonservice.exe and debugging
    if sys.platform != "win32":
        sys.exit("CanhGacAgent is a Windows service / chỉ dùng trên Windows")
    win32serviceutil.HandleCommandLine(CanhGacAgentService)
