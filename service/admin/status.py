"""Read-only summaries for admin pages: notification channels and the policy in force.

Pure helpers (no Flask, no database): views pass in settings and the policy state object.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

# Setting names that hold secrets: the page says whether they are set, never their value.
SECRET_MARKERS = ("password", "secret", "token", "key")
# Prefixes of notification-related settings listed in full on the notifications page.
NOTIFY_PREFIXES = ("smtp_", "sms_", "mail_", "webhook_", "notify_", "escalation", "breach_", "ack_",
                   "reminder", "notification")


@dataclass(frozen=True)
class EscalationStep:
    """One escalation step: the roles and the accounts it notifies."""

    number: int
    roles: list[str]
    usernames: list[str]


@dataclass(frozen=True)
class NotificationStatus:
    """Which channels are configured and how escalation runs."""

    smtp_host: str | None
    smtp_port: int | None
    smtp_starttls: bool
    smtp_has_login: bool
    mail_from: str | None
    webhook_host: str | None
    webhook_has_secret: bool
    command_program: str | None
    ack_sla_minutes: int | None
    breach_notice_hours: int | None
    reminder_hours: list[int]
    escalation: list[EscalationStep]
    raw: list[tuple[str, str]]  # every notification-related setting, secrets masked


def is_secret_name(name: str) -> bool:
    """Return whether a setting name suggests a secret value."""
    return any(marker in name for marker in SECRET_MARKERS)


def _display(value: Any) -> str:
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "; ".join(_display(v) for v in value)
    return str(value)


def _webhook_host(url: str | None) -> str | None:
    # The path or query of a webhook URL may embed a token: show the host only.
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}" + (f":{parts.port}" if parts.port else "")


def _program(command: str | None) -> str | None:
    if not command:
        return None
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    return words[0].rsplit("/", 1)[-1] if words else None


def escalation_steps(steps: Iterable[Iterable[str]] | None) -> list[EscalationStep]:
    """Split each step's names into roles ("role:leader") and account names."""
    result = []
    for number, names in enumerate(steps or [], start=1):
        names = list(names)
        roles = [n.removeprefix("role:") for n in names if n.startswith("role:")]
        users = [n for n in names if not n.startswith("role:")]
        result.append(EscalationStep(number, roles, users))
    return result


def notification_status(settings: Any) -> NotificationStatus:
    """Summarize the notification settings without revealing secrets."""
    get = lambda name, default=None: getattr(settings, name, default)  # noqa: E731
    fields = getattr(type(settings), "model_fields", {})
    raw = []
    for name in sorted(fields):
        if not name.startswith(NOTIFY_PREFIXES):
            continue
        value = get(name)
        if is_secret_name(name):
            raw.append((name, "set" if value else "—"))
        elif name == "webhook_url":
            raw.append((name, _webhook_host(value) or "—"))
        elif name == "notify_command":
            raw.append((name, _program(value) or "—"))
        else:
            raw.append((name, _display(value)))
    return NotificationStatus(
        smtp_host=get("smtp_host"),
        smtp_port=get("smtp_port"),
        smtp_starttls=bool(get("smtp_starttls", False)),
        smtp_has_login=bool(get("smtp_user")),
        mail_from=get("mail_from"),
        webhook_host=_webhook_host(get("webhook_url")),
        webhook_has_secret=bool(get("webhook_secret")),
        command_program=_program(get("notify_command")),
        ack_sla_minutes=get("ack_sla_minutes"),
        breach_notice_hours=get("breach_notice_hours"),
        reminder_hours=list(get("breach_reminder_hours", []) or []),
        escalation=escalation_steps(get("escalation_steps")),
        raw=raw,
    )


@dataclass(frozen=True)
class RuleRow:
    """One rule as the policy page lists it."""

    id: str
    title: str
    severity: str
    response: str
    is_enabled: bool


@dataclass(frozen=True)
class TestRow:
    """One rule-test result (or failure) as the policy page lists it."""

    name: str
    is_ok: bool | None
    detail: str


@dataclass
class PolicyStatus:
    """The policy in force, as far as the policy engine has published it."""

    is_loaded: bool
    hash: str | None = None
    loaded_at: datetime | None = None
    last_error: str | None = None
    rules: list[RuleRow] = field(default_factory=list)
    tests_run: bool = False
    tests_total: int | None = None
    tests_failed: int = 0
    tests: list[TestRow] = field(default_factory=list)


def _attr(obj: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        if isinstance(obj, Mapping) and name in obj:
            return obj[name]
        if not isinstance(obj, Mapping) and hasattr(obj, name):
            return getattr(obj, name)
    return default


def _test_row(index: int, item: Any) -> TestRow:
    if isinstance(item, str):
        return TestRow(name=f"#{index}", is_ok=False, detail=item)
    name = _attr(item, "name", "test", "id", "title", "rule", "rule_id", default=f"#{index}")
    is_ok = _attr(item, "passed", "ok", "is_ok", "success", default=None)
    if is_ok is None and type(item).__name__.lower().endswith(("failure", "error")):
        is_ok = False  # a failure record (e.g. policy.engine.TestFailure) carries no flag
    detail = _attr(item, "message", "detail", "reason", "error", "problem", default="")
    where = _attr(item, "file", "path", default=None)
    line = _attr(item, "line", default=None)
    if where:
        detail = f"{where}{':' + str(line) if line else ''} {detail}".strip()
    return TestRow(name=str(name), is_ok=None if is_ok is None else bool(is_ok), detail=str(detail))


def _summarize_tests(status: PolicyStatus, results: Any, policy: Any) -> None:
    if results is None:
        return
    status.tests_run = True
    total = _attr(results, "total", "count", default=None)
    items = _attr(results, "results", "items", "failures", "cases", default=None)
    if items is None and isinstance(results, Iterable) and not isinstance(results, str | Mapping):
        items = results
    status.tests = [_test_row(i, item) for i, item in enumerate(items or [], start=1)]
    failed = _attr(results, "failed", "failures_count", default=None)
    if isinstance(failed, int):
        status.tests_failed = failed
    else:
        status.tests_failed = sum(1 for row in status.tests if row.is_ok is False)
    if isinstance(total, int):
        status.tests_total = total
    elif status.tests and all(row.is_ok is not None for row in status.tests) and any(
            row.is_ok for row in status.tests):
        status.tests_total = len(status.tests)
    else:
        # A list of failures alone: the policy's own test count is the total.
        tests = _attr(policy, "tests", default=None)
        status.tests_total = len(tests) if isinstance(tests, tuple | list) else None


def policy_status(state: Any | None) -> PolicyStatus:
    """Describe the policy engine's published state; "not loaded" when there is none."""
    if state is None:
        return PolicyStatus(is_loaded=False)
    policy = _attr(state, "policy")
    error = _attr(state, "last_error")
    status = PolicyStatus(
        is_loaded=policy is not None,
        hash=_attr(policy, "hash") if policy is not None else None,
        loaded_at=_attr(state, "loaded_at"),
        last_error=str(error) if error else None,
    )
    for rule in _attr(policy, "rules", default=()) or ():
        status.rules.append(RuleRow(
            id=str(_attr(rule, "id", default="?")),
            title=str(_attr(rule, "title", default="")),
            severity=str(_attr(rule, "severity", default="")),
            response=str(_attr(rule, "response", default="")),
            is_enabled=bool(_attr(rule, "enabled", default=True)),
        ))
    _summarize_tests(status, _attr(state, "test_results"), policy)
    return status
