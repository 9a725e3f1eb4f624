"""structlog set-up: JSON lines to a file and stderr, console on a terminal, identifiers masked."""

from __future__ import annotations

import ipaddress
import logging
import re
import sys
from pathlib import Path
from typing import Any

import structlog

from canhgac_common.pii.mask import mask_pii

_SECRET_KEYS = re.compile(r"pass(word)?|passwd|token|secret|authorization|cookie|api[_-]?key", re.I)
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
_SECRET_ASSIGN = re.compile(r"(?i)\b(password|passwd|token|secret)(\s*[=:]\s*)([^\s,;&]+)")
MASK = "***"
_ADDRESS_KEYS = frozenset({"remote_addr", "client_addr", "peer"})


def mask_text(text: str) -> str:
    """Return text with ID numbers, phone numbers, bearer tokens and secrets masked.

    Identifiers go through the project's one masker (``canhgac_common.pii.mask``).
    """
    text = mask_pii(text)
    text = _BEARER.sub(r"\1" + MASK, text)
    return _SECRET_ASSIGN.sub(r"\1\2" + MASK, text)


def _is_ip_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _mask_value(key: str, value: Any) -> Any:
    if _SECRET_KEYS.search(key):
        return MASK
    if key in _ADDRESS_KEYS and isinstance(value, str) and _is_ip_address(value):
        # The masker masks 9+-digit chains, IPv4 included; a client's address stays readable.
        return value
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: _mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_value(key, v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and len(str(abs(value))) >= 10:
        return mask_text(str(value))
    return value


def mask_identifiers(_logger, _method, event_dict: dict) -> dict:
    """Mask personal ID numbers, phone numbers, passwords and tokens in every field."""
    return {key: _mask_value(key, value) for key, value in event_dict.items()}


def _shared_processors() -> list:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]


def configure_logging(data_dir: Path | None = None, level: str = "INFO") -> None:
    """Configure structlog and stdlib logging; safe to call more than once."""
    numeric = getattr(logging, level.upper(), logging.INFO)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_canhgac", False):
            root.removeHandler(handler)
            handler.close()
    json_renderer = structlog.processors.JSONRenderer(ensure_ascii=False)
    foreign = [*_shared_processors(), structlog.stdlib.ExtraAdder()]

    def add(handler: logging.Handler, renderer) -> None:
        handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=foreign,
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    # Last before rendering, so fields added by any processor are masked too.
                    mask_identifiers,
                    renderer,
                ],
            )
        )
        handler._canhgac = True  # type: ignore[attr-defined]
        handler.setLevel(numeric)
        root.addHandler(handler)

    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        add(logging.FileHandler(data_dir / "canhgac.log", encoding="utf-8"), json_renderer)
    if sys.stderr.isatty():
        add(logging.StreamHandler(sys.stderr), structlog.dev.ConsoleRenderer(colors=False))
    else:
        add(logging.StreamHandler(sys.stderr), json_renderer)
    root.setLevel(numeric)
    structlog.configure(
        processors=[*_shared_processors(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
