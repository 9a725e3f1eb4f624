"""Policy file models (pydantic v2), the engine's result types and the policy errors.

Everything a policy directory may contain is described here; the loader validates each
YAML file against these models and maps pydantic's error locations back to lines.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Annotated, Any, Literal, NamedTuple
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from canhgac_common.events import DestinationKind

# ---------------------------------------------------------------- enums


class Severity(enum.StrEnum):
    """How serious a rule's finding is."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Response(enum.StrEnum):
    """What the service does with a verdict: keep it, alert people, or open an incident."""

    RECORD = "record"
    ALERT = "alert"
    INCIDENT = "incident"


class Sensitivity(enum.StrEnum):
    """Decree 356/2025/NĐ-CP category: basic (Art. 3) or sensitive (Art. 4) personal data."""

    BASIC = "basic"
    SENSITIVE = "sensitive"


class Subject(enum.StrEnum):
    """What a rule looks at: access events, or monitoring signals (agent silent, event gap)."""

    EVENT = "event"
    SIGNAL = "signal"


WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# ---------------------------------------------------------------- scalar types

def _no_identifiers(value: str) -> str:
    # Labels and titles end up in alerts; a long digit run could be a citizen's ID number.
    if re.search(r"\d{9,}", value):
        raise ValueError("không được chứa dãy số dài / no long digit runs (identifiers) allowed")
    return value


Id = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
Label = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_no_identifiers),
]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
Glob = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
Purpose = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
_DOMAIN = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def _parse_clock(value: Any) -> time:
    # YAML 1.1 reads an unquoted 17:30 as the base-60 integer 1050; refuse anything but text.
    if isinstance(value, time):
        return value
    if not isinstance(value, str) or not _CLOCK.match(value):
        raise ValueError("giờ phải là chuỗi 'HH:MM' trong ngoặc kép / time must be a quoted 'HH:MM'")
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def _parse_day(value: Any) -> date:
    # pydantic would read an integer as a Unix timestamp; only ISO dates make sense here.
    if isinstance(value, datetime):
        raise ValueError("ngày không kèm giờ / a date without a time is expected")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError("ngày dạng YYYY-MM-DD / date must be YYYY-MM-DD")


def _lower_domain(value: Any) -> Any:
    return value.strip().lower().lstrip("@") if isinstance(value, str) else value


def _upper_letter(value: Any) -> Any:
    return value.strip().rstrip(":").upper() if isinstance(value, str) else value


def _parse_month_day(value: Any) -> Any:
    # "MM-DD": the same day every year (YAML would read an unquoted 01-01 as text anyway).
    if isinstance(value, str):
        match = re.fullmatch(r"(\d{2})-(\d{2})", value.strip())
        if match:
            month, day = int(match[1]), int(match[2])
            try:
                date(2000, month, day)  # a leap year: 02-29 is allowed
            except ValueError:
                pass
            else:
                return value.strip()
    raise ValueError("ngày lặp lại hằng năm dạng MM-DD / a yearly day must be MM-DD")


ClockTime = Annotated[time, BeforeValidator(_parse_clock)]
MonthDay = Annotated[str, BeforeValidator(_parse_month_day)]
Day = Annotated[date, BeforeValidator(_parse_day)]
Domain = Annotated[
    str, BeforeValidator(_lower_domain), StringConstraints(max_length=253, pattern=_DOMAIN.pattern)
]
DriveLetter = Annotated[str, BeforeValidator(_upper_letter), StringConstraints(pattern=r"^[A-Z]$")]


class _Strict(BaseModel):
    # Unknown keys are refused: a misspelt key in a policy must not silently weaken it.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# ---------------------------------------------------------------- policy documents


class WorkingHours(_Strict):
    """Office hours in the policy's time zone; access outside them is reported."""

    days: list[Weekday] = Field(default_factory=lambda: ["mon", "tue", "wed", "thu", "fri"])
    start: ClockTime = time(7, 0)
    end: ClockTime = time(17, 30)

    @model_validator(mode="after")
    def _end_after_start(self) -> WorkingHours:
        if self.end <= self.start:
            raise ValueError("giờ kết thúc phải sau giờ bắt đầu / end must be after start")
        if not self.days:
            raise ValueError("cần ít nhất một ngày làm việc / at least one working day")
        return self


class Settings(_Strict):
    """Commune-wide settings: name, time zone for people, working hours, public holidays."""

    commune: Label | None = None
    timezone: str = "Asia/Ho_Chi_Minh"
    working_hours: WorkingHours = Field(default_factory=WorkingHours)
    holidays: list[Day] = Field(default_factory=list)
    # Public holidays on the same solar date every year (Labour Code 2019, art. 112).
    yearly_holidays: list[MonthDay] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except Exception as exc:  # ZoneInfoNotFoundError is a KeyError; bad keys raise others
            raise ValueError(f"múi giờ không hợp lệ / unknown time zone {value!r}") from exc
        return value


class DataClassSpec(_Strict):
    """A class of citizen data, its Decree 356 category, owner unit and where its files live."""

    id: Id
    label: Label
    sensitivity: Sensitivity
    owner: Id
    paths: list[Glob] = Field(default_factory=list)
    description: Text | None = None


class UnitUse(_Strict):
    """A data class a unit may use although it does not own it, and for which purposes."""

    data_class: Id
    purposes: list[Purpose] = Field(min_length=1)


class UnitSpec(_Strict):
    """An organisational unit of the commune."""

    id: Id
    name: Label
    uses: list[UnitUse] = Field(default_factory=list)
    description: Text | None = None


class ScopeSpec(_Strict):
    """Destination patterns: official scope, or a kind of place outside it."""

    id: Id
    label: Label
    kind: DestinationKind
    paths: list[Glob] = Field(default_factory=list)
    targets: list[Glob] = Field(default_factory=list)
    email_domains: list[Domain] = Field(default_factory=list)
    drive_letters: list[DriveLetter] = Field(default_factory=list)
    description: Text | None = None

    @model_validator(mode="after")
    def _coherent(self) -> ScopeSpec:
        if self.kind == DestinationKind.UNKNOWN:
            raise ValueError("kind 'unknown' không dùng cho phạm vi / is not a scope kind")
        if self.email_domains and self.kind != DestinationKind.OFFICIAL:
            raise ValueError("email_domains chỉ dùng cho phạm vi official / only for kind official")
        if not (self.paths or self.targets or self.email_domains or self.drive_letters):
            raise ValueError("phạm vi rỗng / a scope needs paths, targets, domains or drive letters")
        return self


class RuleSpec(_Strict):
    """A detection rule: all conditions must hold for the verdict to be given."""

    id: Id
    title: Label
    severity: Severity
    response: Response
    description: Text
    subject: Subject = Subject.EVENT
    enabled: bool = True
    explanation: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = None
    conditions: list[Any] = Field(min_length=1)


class PolicyDocument(_Strict):
    """One top-level policy file; the sections of all files are merged."""

    settings: Settings | None = None
    data_classes: list[DataClassSpec] = Field(default_factory=list)
    units: list[UnitSpec] = Field(default_factory=list)
    scopes: list[ScopeSpec] = Field(default_factory=list)
    rules: list[RuleSpec] = Field(default_factory=list)


# ---------------------------------------------------------------- rule tests


class TestStep(_Strict):
    """One event or monitoring signal (optionally repeated) and the rules expected to fire."""

    event: dict[str, Any] | None = None
    signal: dict[str, Any] | None = None
    at: AwareDatetime | None = None
    after_seconds: Annotated[float, Field(ge=0, le=366 * 86400)] = 0
    repeat: Annotated[int, Field(ge=1, le=10_000)] = 1
    interval_seconds: Annotated[float, Field(ge=0, le=366 * 86400)] = 1
    expect: list[Id] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_subject(self) -> TestStep:
        if (self.event is None) == (self.signal is None):
            raise ValueError("mỗi bước cần đúng một trong event/signal / exactly one of event, signal")
        return self


class TestCase(_Strict):
    """A named sequence of steps; every step states exactly which rules fire."""

    __test__ = False  # not a pytest class

    name: Label
    rule: Id | None = None
    description: Text | None = None
    start: AwareDatetime
    defaults: dict[str, Any] = Field(default_factory=dict)
    steps: list[TestStep] = Field(min_length=1)


class TestDocument(_Strict):
    """One file under tests/."""

    __test__ = False

    tests: list[TestCase] = Field(default_factory=list)


# ---------------------------------------------------------------- monitoring signals


class MonitoringSignal(BaseModel):
    """A fact about monitoring itself, not an access: an agent went silent or skipped numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: Literal["agent_silent", "event_gap"]
    agent_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    host: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    missing: Annotated[int, Field(ge=0, le=2**53)] = 0
    silent_seconds: Annotated[float, Field(ge=0, le=100 * 366 * 86400)] = 0


# ---------------------------------------------------------------- engine output


class GroupKey(NamedTuple):
    """What a verdict is about, for grouping alerts; fields a windowed rule spans are None."""

    actor: str | None
    host: str | None
    data_class: str | None
    object_path: str | None


class Verdict(NamedTuple):
    """One rule that fired, with a one-line Vietnamese explanation free of personal identifiers.

    A named tuple: immutable and cheap to build on the hot path.
    """

    rule_id: str
    title: str
    severity: Severity
    response: Response
    explanation: str
    group_key: GroupKey


@dataclass(frozen=True, slots=True)
class TestFailure:
    """A rule test whose outcome differs from what the YAML expects (or a rule left untested)."""

    __test__ = False

    test: str
    file: str
    line: int
    step: int | None
    expected: tuple[str, ...]
    actual: tuple[str, ...]
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        step = f" bước/step {self.step}" if self.step is not None else ""
        return f"{where}: {self.test}{step}: {self.message}"


# ---------------------------------------------------------------- errors


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a policy: the file, the 1-based line and the field it concerns."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field or '-'}: {self.message}"


class PolicyError(Exception):
    """A policy that cannot be used; ``problems`` lists every problem found, one per line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)
