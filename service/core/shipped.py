"""Find the commune files shipped beside the code: ``policies/`` and ``incident_forms/``.

In a checkout (and an editable install) they sit at the project root; a wheel installs them
as data files under ``<prefix>/share/canhgac/``. The checkout wins so a developer's edits count.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHARE = Path("share") / "canhgac"


def shipped_dir(name: str, *, prefixes: tuple[str, ...] | None = None) -> Path:
    """Return the shipped directory ``name``: the project's own, else the installed data copy.

    When neither exists the project path is returned, so the error names where it looked first.
    """
    local = PROJECT_ROOT / name
    # Only a real checkout counts: in a wheel install PROJECT_ROOT is site-packages, where
    # another distribution's top-level folder of the same name must not win.
    if local.is_dir() and (PROJECT_ROOT / "setup.cfg").is_file():
        return local
    for prefix in prefixes if prefixes is not None else _prefixes():
        candidate = Path(prefix) / SHARE / name
        if candidate.is_dir():
            return candidate
    return local


def _prefixes() -> tuple[str, ...]:
    # the venv or interpreter prefix, then a user install (pip install --user)
    data = sysconfig.get_path("data")
    user = sysconfig.get_path("data", sysconfig.get_preferred_scheme("user"))
    return tuple(dict.fromkeys(p for p in (data, sys.prefix, user) if p))
