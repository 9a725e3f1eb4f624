"""Settings: defaults, then a TOML file (``CANHGAC_CONFIG``), then ``CANHGAC_<NAME>`` variables."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

ENV_PREFIX = "CANHGAC_"


class ConfigError(Exception):
    """A setting is missing or has a bad value; the message is one line naming it."""


class Settings(BaseModel):
    """Every setting of the service; docs/configuration.md describes each one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path = Path("audit_logs")
    database_url: str | None = None
    secret_key: str | None = None
    log_level: str = "INFO"
    base_url: str = "http://127.0.0.1:8080"
    audit_origin: str = "canhgac.nhanly.langson/audit"
    commune_name: str = "Xã Nhân Lý"
    province_name: str = "Lạng Sơn"
    policy_dir: Path | None = None
    policy_reload: bool = True
    incident_forms_dir: Path | None = None
    max_batch_events: int = Field(default=5000, ge=1, le=100_000)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    password_min_length: int = Field(default=10, ge=8, le=128)
    login_max_failures: int = Field(default=5, ge=1, le=100)
    login_lockout_seconds: int = Field(default=900, ge=1)
    session_idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    session_max_hours: int = Field(default=12, ge=1, le=7 * 24)
    checkpoint_interval_seconds: int = Field(default=60, ge=1)
    # The name of this service's witness key (cosigning other logs); default: the origin's
    # host with "/witness" (canhgac.nhanly.langson/witness).
    witness_name: str | None = None
    witness_submit_seconds: int = Field(default=60, ge=1)
    witness_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    monitor_interval_seconds: int = Field(default=60, ge=1)
    ack_sla_minutes: int = Field(default=15, ge=1)
    breach_notice_hours: int = Field(default=72, ge=1)
    breach_reminder_hours: list[int] = Field(default_factory=lambda: [24, 48, 66])
    escalation_steps: list[list[str]] = Field(default_factory=list)
    incident_join_hours: int = Field(default=24, ge=0)
    evidence_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    agent_silence_minutes: int = Field(default=30, ge=1)
    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    mail_from: str = "canhgac@localhost"
    webhook_url: str | None = None
    webhook_secret: str | None = None
    notify_command: str | None = None
    notify_command_timeout_seconds: float = Field(default=30.0, gt=0)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    notify_dispatch_immediately: bool = True
    notify_dispatch_interval_seconds: int = Field(default=30, ge=1)
    notify_retry_base_seconds: int = Field(default=30, ge=1)
    notify_retry_max_seconds: int = Field(default=900, ge=1)
    notify_failing_after_attempts: int = Field(default=6, ge=1)
    # A dispatcher's claim on the one message it is sending; it must outlast a send.
    notify_lease_seconds: int = Field(default=45, ge=10)
    notify_batch_size: int = Field(default=10, ge=1, le=1000)
    notify_retention_days: int = Field(default=90, ge=1)
    # SMS through gammu-smsd's FILES backend (docs/notifications.md): the folders are gammu's
    # outboxpath, inboxpath, sentsmspath and errorsmspath. No outbox folder: no SMS.
    sms_outbox_dir: Path | None = None
    sms_inbox_dir: Path | None = None
    sms_sent_dir: Path | None = None
    sms_error_dir: Path | None = None
    # Without diacritics an SMS fits in one 160-character GSM-7 message; with them it is sent
    # as UCS-2 (70 characters a part) and may take several parts.
    sms_without_diacritics: bool = False
    sms_code_valid_hours: int = Field(default=72, ge=1)
    sms_inbox_interval_seconds: int = Field(default=10, ge=1)
    scheduler_enabled: bool = True
    timezone: str = "Asia/Ho_Chi_Minh"
    evidence_retention_years: int = Field(default=5, ge=5)
    session_cookie_secure: bool | None = None
    # Official documents (Decree 30 layout; Mẫu số 08): who issues them and who answers for data.
    org_name: str = "Ủy ban nhân dân xã Nhân Lý"
    org_address: str = "Xã Nhân Lý, tỉnh Lạng Sơn"
    org_phone: str = ""
    org_website: str = ""
    document_place: str = "Nhân Lý"
    dpo_name: str = ""
    dpo_title: str = "Trưởng Công an xã"
    dpo_phone: str = ""
    dpo_email: str = ""
    signer_name: str = ""
    report_due_day: int = Field(default=8, ge=2, le=28)

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> Settings:
        # A claim that runs out mid-send lets a second dispatcher send the same message.
        longest = max(self.smtp_timeout_seconds, self.webhook_timeout_seconds,
                      self.notify_command_timeout_seconds)
        if self.notify_lease_seconds <= longest:
            raise ValueError(f"notify_lease_seconds ({self.notify_lease_seconds}) must exceed the "
                             f"longest channel timeout ({longest:g} s)")
        return self

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return upper

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("sqlite:", "postgresql")):
            raise ValueError("must start with sqlite: or postgresql")
        if value.startswith("postgresql://"):
            # psycopg 3 is the driver we ship; plain postgresql:// would pick psycopg2.
            value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value

    @field_validator("breach_reminder_hours", mode="before")
    @classmethod
    def _hours_from_text(cls, value: Any) -> Any:
        # Environment variables are text: accept "24,48,66" as well as a TOML list.
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("breach_reminder_hours")
    @classmethod
    def _sorted_positive_hours(cls, value: list[int]) -> list[int]:
        if any(hour <= 0 for hour in value):
            raise ValueError("reminder hours must be positive")
        return sorted(set(value))

    @field_validator("escalation_steps", mode="before")
    @classmethod
    def _steps_from_text(cls, value: Any) -> Any:
        # Text form: steps separated by ";", names in a step by ",": "role:leader,role:police;chutich".
        # An empty step (";chutich") means "all leaders and police" for that step.
        if isinstance(value, str):
            if not value.strip():
                return []
            return [[name.strip() for name in step.split(",") if name.strip()]
                    for step in value.split(";")]
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("unknown time zone") from exc
        return value

    @property
    def resolved_database_url(self) -> str:
        """Return the database URL, defaulting to SQLite under the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'canhgac.db').resolve()}"

    @property
    def resolved_witness_name(self) -> str:
        """Return the witness key name (``witness_name``, or derived from the origin)."""
        return self.witness_name or self.audit_origin.split("/", 1)[0] + "/witness"

    @property
    def keys_dir(self) -> Path:
        """Return the folder that holds the signing, encryption and TLS keys."""
        return self.data_dir / "keys"


def _env_values(environ: dict[str, str]) -> dict[str, Any]:
    names = Settings.model_fields.keys()
    values: dict[str, Any] = {}
    for name in names:
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is not None:
            values[name] = raw
    return values


def _first_error_line(exc: ValidationError, sources: dict[str, str]) -> str:
    err = exc.errors()[0]
    if not err["loc"]:  # a rule across settings: its message names them
        return f"bad settings: {err['msg'].removeprefix('Value error, ')}"
    field = str(err["loc"][0])
    where = sources.get(field, "setting")
    if err["type"] == "extra_forbidden":
        return f"unknown setting {field!r} in {where}"
    return f"bad value for setting {field} ({where} {ENV_PREFIX}{field.upper()}): {err['msg']}"


def load_settings(
    overrides: dict[str, Any] | None = None, environ: dict[str, str] | None = None
) -> Settings:
    """Build the settings from defaults, the TOML file, the environment and overrides."""
    environ = dict(os.environ if environ is None else environ)
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    config_path = environ.get(ENV_PREFIX + "CONFIG")
    if config_path:
        try:
            with open(config_path, "rb") as fh:
                file_values = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read CANHGAC_CONFIG file {config_path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"CANHGAC_CONFIG file {config_path} is not valid TOML: {exc}") from exc
        merged.update(file_values)
        sources.update(dict.fromkeys(file_values, f"file {config_path}"))
    env_values = _env_values(environ)
    merged.update(env_values)
    sources.update(dict.fromkeys(env_values, "environment"))
    for key, value in (overrides or {}).items():
        if value is not None:
            merged[key] = value
            sources[key] = "option"
    try:
        return Settings(**merged)
    except ValidationError as exc:
        raise ConfigError(_first_error_line(exc, sources)) from None
