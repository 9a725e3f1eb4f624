"""Choose the access monitor this computer allows: fanotify (root), inotify, or none."""

from __future__ import annotations

import logging
import sys

from canhgac_agent import paths
from canhgac_agent.access import AccessMonitor

logger = logging.getLogger("canhgac.agent")

# What can be asked for; "auto" tries fanotify with permission events, then inotify.
MODES = ("auto", "fanotify-perm", "fanotify", "inotify", "off")


def open_access_monitor(requested: str = "auto", platform: str | None = None,
                        meta=None) -> AccessMonitor | None:
    """Return a monitor for *requested* (or the best one for "auto"), or None for "off".

    On Windows it is the Security-log reader, which keeps its bookmark in *meta* (the spool).
    """
    if requested not in MODES:
        raise ValueError(f"unknown access mode {requested!r}; one of {', '.join(MODES)}")
    platform = platform or paths.current_platform()
    if requested == "off":
        return None
    if platform == paths.WINDOWS:
        if meta is None or not sys.platform.startswith("win"):
            return None
        from canhgac_agent.winaudit import SecurityLogMonitor

        return SecurityLogMonitor(meta)
    if not sys.platform.startswith("linux"):
        return None
    if requested in ("auto", "fanotify-perm", "fanotify"):
        from canhgac_agent.fanotify import FanotifyMonitor

        try:
            return FanotifyMonitor(use_permission_events=requested != "fanotify")
        except OSError as exc:
            logger.info(
                "Không dùng được fanotify (%s): lượt mở tệp được ghi không kèm chương trình "
                "và người dùng / fanotify unavailable (%s): opens are recorded without the "
                "program and user", exc.strerror or exc, exc.strerror or exc)
    from canhgac_agent.inotify import InotifyMonitor

    try:
        return InotifyMonitor()
    except OSError as exc:
        logger.warning("Không theo dõi được lượt mở tệp / cannot watch opens: %s", exc)
        return None
