"""Agent configuration: a TOML file read with tomllib into a validated pydantic model."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import socket
import tomllib
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from canhgac_agent import paths

EgressKind = Literal["removable", "cloud", "messaging", "email", "publishing", "unknown"]
DataClassId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class ConfigError(ValueError):
    """The agent configuration is missing, unreadable or invalid."""


class _Strict(BaseModel):
    # A misspelt key must be an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid")


class ProtectedRoot(_Strict):
    """A folder that holds citizen data in official scope."""

    path: Path
    data_class: DataClassId | None = None


class EgressRoot(_Strict):
    """A folder where a file leaves official scope (USB stick, cloud sync, Zalo, ...)."""

    path: Path
    kind: EgressKind = "unknown"


class ScanLimits(_Strict):
    """Bounds on the PII scan of one file, so a huge file cannot stall the agent."""

    max_bytes: int = Field(default=50_000_000, ge=1)
    max_seconds: float = Field(default=10.0, gt=0)


class AgentConfig(_Strict):
    """Everything the endpoint agent needs to watch, spool and send."""

    server_url: str
    token: str | None = Field(default=None, repr=False)
    token_file: Path | None = None
    pinned_sha256: str | None = None
    allow_insecure_http: bool = False
    agent_id: str = Field(default_factory=socket.gethostname, min_length=1, max_length=128)
    host: str = Field(default_factory=socket.gethostname, min_length=1, max_length=255)
    unit: str | None = Field(default=None, max_length=64)
    spool_path: Path = Field(
        default_factory=lambda: Path(str(paths.default_data_dir())) / "agent-spool.sqlite3"
    )
    spool_max_mb: int = Field(default=1024, ge=1)
    protected_roots: list[ProtectedRoot] = Field(default_factory=list)
    egress_roots: list[EgressRoot] = Field(default_factory=list)
    include_default_egress: bool = True
    auto_detect_removable: bool = True
    removable_poll_seconds: float = Field(default=5.0, gt=0)
    ignore_patterns: list[str] = Field(default_factory=list)
    batch_size: int = Field(default=500, ge=1, le=10_000)
    heartbeat_seconds: float = Field(default=60.0, gt=0)
    settle_seconds: float = Field(default=0.5, ge=0)
    delete_settle_seconds: float = Field(default=2.0, ge=0)
    request_timeout_seconds: float = Field(default=15.0, gt=0)
    backoff_initial_seconds: float = Field(default=1.0, gt=0)
    backoff_max_seconds: float = Field(default=300.0, gt=0)
    scan: ScanLimits = Field(default_factory=ScanLimits)
    # Opens and reads of protected files (fanotify as root, inotify otherwise).
    watch_opens: bool = True
    access_window_seconds: float = Field(default=5.0, gt=0, le=3600)
    access_ignore_programs: list[str] = Field(default_factory=list)

    @field_validator("pinned_sha256")
    @classmethod
    def _normalise_pin(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return normalise_fingerprint(value)

    @field_validator("server_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("server_url must be https://host[:port] (or http:// for a local demo)")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check_transport_and_token(self) -> AgentConfig:
        scheme = urlsplit(self.server_url).scheme
        if scheme == "http" and not self.allow_insecure_http:
            raise ValueError(
                "http:// needs allow_insecure_http = true (only for tests or a demo on loopback)"
            )
        if scheme == "https" and not self.pinned_sha256:
            raise ValueError("https:// needs pinned_sha256, the server certificate's SHA-256")
        if self.token and self.token_file:
            raise ValueError("give either token or token_file, not both")
        if not self.token and not self.token_file:
            raise ValueError("token or token_file is required")
        return self

    @property
    def is_loopback_server(self) -> bool:
        """Tell whether the server URL names this computer (loopback address or localhost)."""
        host = urlsplit(self.server_url).hostname or ""
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def watch_fingerprint(self) -> str:
        """Return the SHA-256 (hex) of what this agent watches and how, for the heartbeat.

        Covers every setting that widens or narrows monitoring (roots, ignore patterns,
        removable detection and its timing, scan limits, opens and the programs they ignore),
        none that only tunes transport. A changed value
        on the server means someone changed what this PC reports.
        """
        watched = {
            "protected_roots": [[str(r.path), r.data_class] for r in self.protected_roots],
            "egress_roots": [[str(r.path), r.kind] for r in self.egress_roots],
            "include_default_egress": self.include_default_egress,
            "auto_detect_removable": self.auto_detect_removable,
            # a very slow poll or settle delay switches detection off as surely as a flag
            "removable_poll_seconds": self.removable_poll_seconds,
            "settle_seconds": self.settle_seconds,
            "delete_settle_seconds": self.delete_settle_seconds,
            "ignore_patterns": list(self.ignore_patterns),
            "scan": self.scan.model_dump(mode="json"),
            "unit": self.unit,
        }
        # Added later: counted only when changed, so an upgrade alone does not change the hash.
        if not self.watch_opens:
            watched["watch_opens"] = False
        if self.access_ignore_programs:
            watched["access_ignore_programs"] = list(self.access_ignore_programs)
        if self.access_window_seconds != 5.0:
            watched["access_window_seconds"] = self.access_window_seconds
        text = json.dumps(watched, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def bearer_token(self) -> str:
        """Return the ingest token, reading token_file when the token is kept in a file."""
        if self.token:
            return self.token
        assert self.token_file is not None  # guaranteed by the validator
        try:
            token = self.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read token_file {self.token_file}: {exc}") from exc
        if not token:
            raise ConfigError(f"token_file {self.token_file} is empty")
        return token


def normalise_fingerprint(value: str) -> str:
    """Return a SHA-256 fingerprint as 64 lower-case hex digits (colons and spaces allowed)."""
    cleaned = re.sub(r"[\s:]", "", value).lower()
    if cleaned.startswith("sha256"):
        cleaned = cleaned[len("sha256"):].lstrip("=")
    if not re.fullmatch(r"[0-9a-f]{64}", cleaned):
        raise ValueError("pinned_sha256 must be 64 hex digits (SHA-256 of the certificate DER)")
    return cleaned


def _resolve(base: Path, value: object) -> object:
    # Relative paths in the file are relative to the file, not to the agent's working directory.
    if isinstance(value, str) and value:
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else base / path)
    return value


def load_config(path: str | Path, overrides: dict | None = None) -> AgentConfig:
    """Read and validate an agent TOML file; raise ConfigError with a readable message."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    raw.update(overrides or {})
    base = path.resolve().parent
    for key in ("token_file", "spool_path"):
        if key in raw:
            raw[key] = _resolve(base, raw[key])
    for key in ("protected_roots", "egress_roots"):
        for entry in raw.get(key, []) or []:
            if isinstance(entry, dict) and "path" in entry:
                entry["path"] = _resolve(base, entry["path"])
    try:
        return AgentConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(file)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None
