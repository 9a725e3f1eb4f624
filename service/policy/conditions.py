"""Rule conditions: small classes in ONE explicit registry, ``CONDITIONS`` (name → class).

A rule lists its conditions as one-key mappings, ``- action_in: {actions: [copy]}``; all must
hold. Each class validates its params with pydantic at load time, is compiled once against
the policy (sets, regexes, time zone) and then answers ``matches(ctx)`` on the hot path
without pydantic and without allocating where it can.

The context a condition reads (built by ``engine``) has, for events: ``event``, ``action``,
``data_class`` (id or None), ``dest_kind`` (DestinationKind or None), ``when`` (aware
datetime), ``at_us`` (event time in µs, clamped to ``now``), ``object_kind`` (the scope kind
of the object's own path), ``state`` (WindowState) and ``window`` (set by a windowed
condition that fired); for signals: ``signal`` and ``when`` (the ``now`` given).
"""

from __future__ import annotations

import fnmatch
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from canhgac_common.events import Action, DestinationKind, PiiKind
from service.policy.schemas import Glob, Id, Sensitivity, Subject

Loc = tuple[str | int, ...]
Issue = tuple[Loc, str]

MAX_NESTING = 8

# ---------------------------------------------------------------- globs


def normalize_path(text: str) -> str:
    """Return a path with '/' separators and NFC letters, ready for the compiled globs."""
    text = text.replace("\\", "/")
    # Windows and macOS may hand us decomposed Vietnamese letters; patterns are written composed.
    return text if text.isascii() else unicodedata.normalize("NFC", text)


_WILDCARDS = frozenset("*?[")


def _is_literal(text: str) -> bool:
    return not (_WILDCARDS & set(text))


def match_key(path: str) -> str:
    """Return the form of a path or target that ``PathMatcher.match`` expects."""
    return normalize_path(path).lower()


def _longest_literal(glob: str) -> str:
    # A text every match must contain; "" (always run the regex) when classes make it unsure.
    if "[" in glob:
        return ""
    return max(re.split(r"[*?]", glob), key=len)


class PathMatcher:
    """Ordered groups of globs compiled for speed; ``match`` returns the first group that matches.

    Globs follow ``fnmatch`` (``*`` also crosses separators), match the WHOLE path, ignore
    case and accept ``/`` or ``\\``. Common shapes skip the regex engine: exact paths,
    ``prefix*``, ``*/folder/*`` (a folder anywhere: one set test per path) and ``*text*``;
    every other glob goes into ONE combined regex per group built with ``fnmatch.translate``
    (skipped unless the glob's longest literal occurs in the path). The answer is the same
    as trying each group's globs in order.
    """

    def __init__(self, groups: Sequence[tuple[str, Sequence[str]]]) -> None:
        self.names = [name for name, _ in groups]
        self._exact: dict[str, int] = {}
        self._folders: dict[str, int] = {}
        self._prefixes: list[tuple[str, int]] = []
        self._substrings: list[tuple[str, int]] = []
        self._regexes: list[tuple[re.Pattern[str], int, tuple[str, ...]]] = []
        for index, (_, patterns) in enumerate(groups):
            fallback: list[str] = []
            for raw in patterns:
                self._add(match_key(raw), index, fallback)
            if fallback:
                literals = tuple(_longest_literal(g) for g in fallback)
                regex = re.compile("|".join(fnmatch.translate(g) for g in fallback), re.IGNORECASE)
                # one glob without any literal (e.g. "*") means the regex must always run
                self._regexes.append((regex, index, () if "" in literals else literals))
        self._prefix_tuple = tuple(prefix for prefix, _ in self._prefixes)
        self._folder_set = frozenset(self._folders)

    def _add(self, pattern: str, index: int, fallback: list[str]) -> None:
        body = pattern.strip("*")
        if _is_literal(pattern):
            self._exact.setdefault(pattern, index)
        elif pattern.endswith("*") and not pattern.startswith("*") and _is_literal(body):
            self._prefixes.append((body, index))
        elif (pattern.startswith("*/") and pattern.endswith("/*") and _is_literal(body)
              and len(body) > 2 and "/" not in body[1:-1]):
            self._folders.setdefault(body[1:-1], index)
        elif pattern.startswith("*") and pattern.endswith("*") and body and _is_literal(body):
            self._substrings.append((body, index))
        else:
            fallback.append(pattern)

    def match(self, key: str) -> int | None:
        """Return the index of the first group with a glob matching ``key`` (see ``match_key``)."""
        best = self._exact.get(key)
        if self._folder_set:
            # "*/x/*" needs a separator before and after x: the first and last parts never count
            parts = key.split("/")[1:-1]
            if not self._folder_set.isdisjoint(parts):
                folders = self._folders
                for part in parts:
                    index = folders.get(part)
                    if index is not None and (best is None or index < best):
                        best = index
        if self._prefix_tuple and key.startswith(self._prefix_tuple):
            for prefix, index in self._prefixes:
                if (best is None or index < best) and key.startswith(prefix):
                    best = index
        for substring, index in self._substrings:
            if (best is None or index < best) and substring in key:
                best = index
        for regex, index, literals in self._regexes:
            if best is not None and index >= best:
                break
            if literals:
                for literal in literals:
                    if literal in key:
                        break
                else:
                    continue  # no glob of this group can match: skip its regex
            if regex.match(key):
                return index
        return best

    def match_name(self, key: str) -> str | None:
        """Return the name of the first group matching ``key`` (see ``match_key``), or None."""
        index = self.match(key)
        return None if index is None else self.names[index]


# ---------------------------------------------------------------- compile environment


@dataclass(frozen=True)
class CompileEnv:
    """What conditions may know about the policy when they are compiled and checked."""

    class_ids: frozenset[str]
    unit_ids: frozenset[str]
    class_sensitivity: dict[str, Sensitivity]
    owner_of: dict[str, str]
    permissions: dict[tuple[str, str], frozenset[str]]
    timezone: ZoneInfo
    workdays: frozenset[int]
    work_start_s: int
    work_end_s: int
    holidays: frozenset[date]
    # (month, day) pairs that are holidays every year
    yearly_holidays: frozenset[tuple[int, int]] = frozenset()
    # (offset, first year, last year) when the zone kept one UTC offset over those years
    fixed_offset: tuple[timedelta, int, int] | None = None


@lru_cache(maxsize=32)
def fixed_offset_span(zone: ZoneInfo, *, around: int = 2026, first: int = 2000,
                      last: int = 2100) -> tuple[timedelta, int, int] | None:
    """Return (offset, first year, last year) of the zone's constant offset around ``around``.

    Checked day by day from tzdata, so a zone that ever changes offset gets a shorter span
    (or None) and events outside the span take the exact, slower conversion.
    """
    def offsets(year: int) -> set[timedelta | None]:
        start = datetime(year, 1, 1, tzinfo=UTC)
        return {(start + timedelta(days=day)).astimezone(zone).utcoffset() for day in range(366)}

    found = offsets(around)
    if len(found) != 1 or None in found:
        return None
    (offset,) = found
    low = high = around
    while low > first and offsets(low - 1) == found:
        low -= 1
    while high < last and offsets(high + 1) == found:
        high += 1
    return offset, low, high  # type: ignore[return-value]


class WorkingHoursClock:
    """Working-hours test compiled from the environment (kept small: it runs per event)."""

    __slots__ = (
        "_end",
        "_first_year",
        "_fixed",
        "_holidays",
        "_last_year",
        "_start",
        "_workdays",
        "_yearly",
        "_zone",
    )

    def __init__(self, env: CompileEnv) -> None:
        self._zone = env.timezone
        fixed = env.fixed_offset
        self._fixed = fixed[0] if fixed else None
        self._first_year, self._last_year = (fixed[1], fixed[2]) if fixed else (0, -1)
        self._workdays = env.workdays
        self._holidays = frozenset(day.toordinal() for day in env.holidays)
        self._yearly = env.yearly_holidays
        self._start = env.work_start_s
        self._end = env.work_end_s

    def is_outside(self, when: datetime) -> bool:
        """Tell whether an aware time falls outside working hours, in the policy's zone."""
        tzinfo = when.tzinfo
        # Fast path: a time stamped with the zone's own constant offset is already local.
        if (self._fixed is None or tzinfo is None or tzinfo.utcoffset(None) != self._fixed
                or not self._first_year <= when.year <= self._last_year):
            when = when.astimezone(self._zone)
        ordinal = when.toordinal()
        if ordinal in self._holidays or (ordinal - 1) % 7 not in self._workdays:
            return True
        if self._yearly and (when.month, when.day) in self._yearly:
            return True
        second = when.hour * 3600 + when.minute * 60 + when.second
        return second < self._start or second >= self._end


# ---------------------------------------------------------------- base classes


class Params(BaseModel):
    """Base of every condition's parameters: unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(Params):
    """A condition without parameters (write ``{}`` or nothing)."""


WindowKeyField = Literal["actor", "host", "data_class"]


class Condition:
    """Base class: validated params, optional reference checks, compile, then ``matches``."""

    name: ClassVar[str]
    params_model: ClassVar[type[Params]] = NoParams
    subjects: ClassVar[frozenset[Subject]] = frozenset({Subject.EVENT})
    is_stateful: ClassVar[bool] = False

    def __init__(self, params: Params, loc: Loc) -> None:
        self.params = params
        self.loc = loc

    def children(self) -> Sequence[Condition]:
        """Return nested conditions (combinators only)."""
        return ()

    def check(self, env: CompileEnv) -> Iterable[Issue]:
        """Yield problems with references (unknown data class, unit, ...)."""
        return ()

    def compile(self, env: CompileEnv, rule_id: str) -> None:
        """Precompute everything ``matches`` needs."""

    def restricts_actions(self) -> frozenset[Action] | None:
        """Return the only actions this condition can match, or None if it does not restrict."""
        return None

    def matches(self, ctx: Any) -> bool:  # pragma: no cover - every subclass overrides
        """Tell whether the condition holds for this event or signal."""
        raise NotImplementedError


# ---------------------------------------------------------------- event conditions


class _ActionsParams(Params):
    actions: list[Action] = Field(min_length=1)


class ActionIn(Condition):
    """The event's action is one of ``actions``."""

    name = "action_in"
    params_model = _ActionsParams

    def compile(self, env: CompileEnv, rule_id: str) -> None:
        self._actions = frozenset(self.params.actions)

    def restricts_actions(self) -> frozenset[Action]:
        return frozenset(self.params.actions)

    def matches(self, ctx: Any) -> bool:
        return ctx.action in self._actions


class _DataClassParams(Params):
    classes: list[Id] | None = Field(default=None, min_length=1)
    sensitivity: list[Sensitivity] | None = Field(default=None, min_length=1)


class DataClassIn(Condition):
    """The object holds personal data of a known class (optionally: these classes/categories)."""

    name = "data_class_in"
    params_model = _DataClassParams

    def check(self, env: CompileEnv) -> Iterable[Issue]:
        for index, class_id in enumerate(self.params.classes or ()):
            if class_id not in env.class_ids:
                yield (*self.loc, "classes", index), _unknown("lớp dữ liệu/data class", class_id)

    def compile(self, env: CompileEnv, rule_id: str) -> None:
        wanted = set(self.params.classes or env.class_ids)
        if self.params.sensitivity is not None:
            levels = set(self.params.sensitivity)
            wanted = {c for c in wanted if env.class_sensitivity.get(c) in levels}
        self.classes = frozenset(wanted)

    def matches(self, ctx: Any) -> bool:
        return ctx.data_class in self.classes


class _KindsParams(Params):
    kinds: list[DestinationKind] = Field(min_length=1)


class DestinationKindIn(Condition):
    """The destination (after classification) is of one of ``kinds``; no destination never matches."""

    name = "destination_kind_in"
    params_model = _KindsParams

    def compile(self, env: CompileEnv, rule_id: str) -> None:
        self.kinds: frozenset[DestinationKind] = frozenset(self.params.kinds)

    def matches(self, ctx: Any) -> bool:
        return ctx.dest_kind in self.kinds


DeviceStatus = Literal["registered", "unregistered", "any"]


class _DeviceParams(Params):
    status: DeviceStatus


class DestinationDevice(Condition):
    """The destination is (``registered``) or is not (``unregistered``) a registered official device.

    The server marks ``destination.device.is_registered`` from its register before the
    policy runs, so this stays a pure attribute test. A destination without a device identity,
    or whose device is not (or no longer) registered, is ``unregistered``; ``any`` holds for
    every event with a destination. No destination never matches.
    """

    name = "destination_device"
    params_model = _DeviceParams

    def compile(self, env: CompileEnv, rule_id: str) -> None:
        self._status = self.params.status

    def matches(self, ctx: Any) -> bool:
        dest = ctx.event.destination
        if dest is None:
            return False
        status = self._status
        if status == "any":
            return True
        device = dest.device
        is_registered = device is not None and device.is_registered is True
        return is_registered if status == "registered" else not is_registered


class ObjectPathKindIn(Condition):
    """The object's own path lies in a scope of one of ``kinds`` (e.g. the publishing folder)."""

    name = "object_path_kind_in"
    params_model = _KindsParams

    def compile(self, env: CompileEnv, rule_id: str) -> None:
        self._kinds = frozenset(self.params.kinds)

    def matches(self, ctx: Any) -> bool:
        return ctx.object_kind in self._kinds


class _RecordsParams(Params):
    min: Annotated[int, Field(ge=0)]


class RecordCountAtLeast(Condition):
    """The event reports at least ``min`` records (unknown counts never match)."""

    name = "record_count_at_least"
    params_model = _RecordsParams

    def compile(self, env: CompileEnv, rule_id: str) -> None:
        self._min = self.params.min

    def matches(self, ctx: Any) -> bool:
        obj = ctx.event.object
        count = obj.record_count if obj is not None else None
        return count is not None and count >= self._min


class _PiiParams(Params):
    kinds: list[PiiKind] | None = Field(default=None, min_length=1)
    min: Annotated[int, Field(ge=1)] = 1


class PiiAtLeast(Condition):
    """The PII scanner counted at least ``min`` values of ``kinds`` (all kinds if omitted)."""

    name = "pii_at_least"
    params_model = _PiiParams

    def compile(self, env: CompileEnv, rule_id: str) -> None:
        self._kinds = tuple(self.params.kinds) if self.params.kinds else None
        self._min = self.params.min

    def matches(self, ctx: Any) -> bool:
        pii = ctx.event.pii
        if not pii:
            return False
        if self._kinds is None:
            return sum(pii.values()) >= self._min
        return sum(pii.get(kind, 0) for kind in self._kinds) >= self._min


class PurposeMissing(Condition):
    """The event states no purpose."""

    name = "purpose_missing"

    def matches(self, ctx: Any) -> bool:
        purpose = ctx.event.purpose
        return purpose is None or not purpose.strip()


class UnitUseNotPermitted(Condition):
    """A unit uses a data class it does not own without a purpose the policy allows it.

    Matches when the event names its unit, the data class is known, the unit is not the
    class's owner, and either no purpose is stated or the stated one is not listed for that
    unit and class in ``units`` (``"*"`` there accepts any stated purpose).
    """

    name = "unit_use_not_permitted"

    def compile(self, env: CompileEnv, rule_id: str) -> None:
        self._owner_of = env.owner_of
        self._permissions = env.permissions

    def matches(self, ctx: Any) -> bool:
        unit = ctx.event.unit
        data_class = ctx.data_class
        if not unit or data_class is None or self._owner_of.get(data_class) == unit:
            return False
        purpose = ctx.event.purpose
        if purpose is None or not purpose.strip():
            return True
        allowed = self._permissions.get((unit, data_class))
        if allowed is None:
            return True
        return "*" not in allowed and purpose.strip().casefold() not in allowed


class _UnitsParams(Params):
    units: list[Id] = Field(min_length=1)


class UnitIn(Condition):
    """The event's unit is one of ``units``."""

    name = "unit_in"
    params_model = _UnitsParams

    def check(self, env: CompileEnv) -> Iterable[Issue]:
        for index, unit in enumerate(self.params.units):
            if unit not in env.unit_ids:
                yield (*self.loc, "units", index), _unknown("đơn vị/unit", unit)

    def compile(self, env: CompileEnv, rule_id: str) -> None:
        self._units = frozenset(self.params.units)

    def matches(self, ctx: Any) -> bool:
        return ctx.event.unit in self._units


class _ActorsParams(Params):
    actors: list[Glob] = Field(min_length=1)


class ActorIn(Condition):
    """The actor's account matches one of the globs (case-insensitive)."""

    name = "actor_in"
    params_model = _ActorsParams

    def compile(self, env: CompileEnv, rule_id: str) -> None:
        self._regex = re.compile("|".join(fnmatch.translate(p) for p in self.params.actors), re.I)

    def matches(self, ctx: Any) -> bool:
        return self._regex.match(ctx.event.actor) is not None


class _HostsParams(Params):
    hosts: list[Glob] = Field(min_length=1)


class HostIn(Condition):
    """The host name matches one of the globs (case-insensitive)."""

    name = "host_in"
    params_model = _HostsParams
    subjects = frozenset({Subject.EVENT, Subject.SIGNAL})

    def compile(self, env: CompileEnv, rule_id: str) -> None:
        self._regex = re.compile("|".join(fnmatch.translate(p) for p in self.params.hosts), re.I)

    def matches(self, ctx: Any) -> bool:
        return self._regex.match(ctx.host) is not None


class OutsideWorkingHours(Condition):
    """The event (or, for a signal, ``now``) falls outside ``settings.working_hours``."""

    name = "outside_working_hours"
    subjects = frozenset({Subject.EVENT, Subject.SIGNAL})

    def compile(self, env: CompileEnv, rule_id: str) -> None:
        self.is_outside = WorkingHoursClock(env).is_outside

    def matches(self, ctx: Any) -> bool:
        return self.is_outside(ctx.when)


# ---------------------------------------------------------------- windowed (stateful) conditions

_MAX_WINDOW_SECONDS = 31 * 86400


class _CountParams(Params):
    window_seconds: Annotated[int, Field(ge=1, le=_MAX_WINDOW_SECONDS)]
    min_events: Annotated[int, Field(ge=1)] | None = None
    min_records: Annotated[int, Field(ge=1)] | None = None
    key: list[WindowKeyField] = Field(default_factory=lambda: ["actor", "host", "data_class"])

    @model_validator(mode="after")
    def _threshold(self) -> _CountParams:
        if self.min_events is None and self.min_records is None:
            raise ValueError("cần min_events hoặc min_records / min_events or min_records needed")
        if len(set(self.key)) != len(self.key):
            raise ValueError("key có phần tử lặp / key has duplicates")
        return self


def _key_flags(fields: Sequence[str]) -> tuple[bool, bool, bool]:
    return "actor" in fields, "host" in fields, "data_class" in fields


class _Windowed(Condition):
    is_stateful = True

    def compile(self, env: CompileEnv, rule_id: str) -> None:
        self._rule_id = rule_id
        self._by_actor, self._by_host, self._by_class = _key_flags(self.params.key)
        self._window_us = self.params.window_seconds * 1_000_000

    def key_fields(self) -> tuple[bool, bool, bool]:
        """Return which of (actor, host, data class) the window is keyed by."""
        return self._by_actor, self._by_host, self._by_class

    def _key(self, ctx: Any) -> tuple[str | None, ...]:
        event = ctx.event
        return (
            self._rule_id,
            event.actor if self._by_actor else None,
            event.host if self._by_host else None,
            ctx.data_class if self._by_class else None,
        )


class CountInWindow(_Windowed):
    """Counts events that passed the rule's other conditions over a sliding window.

    Fires when, within ``window_seconds``, the events reach ``min_events`` or their records
    reach ``min_records`` (an event without a record count counts as one record). After
    firing, the count for that key starts again from zero.
    """

    name = "count_in_window"
    params_model = _CountParams

    def compile(self, env: CompileEnv, rule_id: str) -> None:
        super().compile(env, rule_id)
        self._min_events = self.params.min_events
        self._min_records = self.params.min_records

    def matches(self, ctx: Any) -> bool:
        obj = ctx.event.object
        records = obj.record_count if obj is not None and obj.record_count is not None else 1
        key = self._key(ctx)
        events, total = ctx.state.add(key, ctx.at_us, records, self._window_us)
        if (self._min_events is not None and events >= self._min_events) or (
            self._min_records is not None and total >= self._min_records
        ):
            ctx.state.clear(key)
            ctx.window = (events, total, self.params.window_seconds)
            return True
        return False


class _FailuresParams(Params):
    failure_actions: list[Action] = Field(default_factory=lambda: [Action.LOGIN_FAILED], min_length=1)
    success_actions: list[Action] = Field(default_factory=lambda: [Action.LOGIN], min_length=1)
    min_failures: Annotated[int, Field(ge=1)] = 5
    window_seconds: Annotated[int, Field(ge=1, le=_MAX_WINDOW_SECONDS)] = 900
    key: list[WindowKeyField] = Field(default_factory=lambda: ["actor", "host"])

    @model_validator(mode="after")
    def _disjoint(self) -> _FailuresParams:
        if set(self.failure_actions) & set(self.success_actions):
            raise ValueError("failure_actions và success_actions phải khác nhau / must not overlap")
        if len(set(self.key)) != len(self.key):
            raise ValueError("key có phần tử lặp / key has duplicates")
        return self


class FailuresThenSuccess(_Windowed):
    """At least ``min_failures`` failures within the window, then a success, for the same key.

    Failures are counted; a success fires when enough failures precede it, and in any case
    starts the count again (a user who mistyped twice and then got in is not a streak).
    """

    name = "failures_then_success"
    params_model = _FailuresParams

    def compile(self, env: CompileEnv, rule_id: str) -> None:
        super().compile(env, rule_id)
        self._failures = frozenset(self.params.failure_actions)
        self._successes = frozenset(self.params.success_actions)
        self._min = self.params.min_failures

    def restricts_actions(self) -> frozenset[Action]:
        return frozenset(self.params.failure_actions) | frozenset(self.params.success_actions)

    def matches(self, ctx: Any) -> bool:
        action = ctx.event.action
        if action in self._failures:
            ctx.state.add(self._key(ctx), ctx.at_us, 1, self._window_us)
            return False
        if action not in self._successes:
            return False
        key = self._key(ctx)
        failures, _ = ctx.state.count(key, ctx.at_us, self._window_us)
        ctx.state.clear(key)
        if failures >= self._min:
            ctx.window = (failures, failures, self.params.window_seconds)
            return True
        return False


# ---------------------------------------------------------------- signal conditions


class _SilentParams(Params):
    min_seconds: Annotated[int, Field(ge=1)]


class AgentSilent(Condition):
    """The signal says an agent has sent nothing for at least ``min_seconds``."""

    name = "agent_silent"
    params_model = _SilentParams
    subjects = frozenset({Subject.SIGNAL})

    def matches(self, ctx: Any) -> bool:
        signal = ctx.signal
        return signal.kind == "agent_silent" and signal.silent_seconds >= self.params.min_seconds


class _GapParams(Params):
    min_missing: Annotated[int, Field(ge=1)] = 1


class EventGap(Condition):
    """The signal says at least ``min_missing`` event numbers of an agent never arrived."""

    name = "event_gap"
    params_model = _GapParams
    subjects = frozenset({Subject.SIGNAL})

    def matches(self, ctx: Any) -> bool:
        signal = ctx.signal
        return signal.kind == "event_gap" and signal.missing >= self.params.min_missing


# ---------------------------------------------------------------- combinators


class _Combinator(Condition):
    subjects = frozenset({Subject.EVENT, Subject.SIGNAL})

    def __init__(self, items: Sequence[Condition], loc: Loc) -> None:
        super().__init__(NoParams(), loc)
        self.items = tuple(items)

    def children(self) -> Sequence[Condition]:
        return self.items

    def compile(self, env: CompileEnv, rule_id: str) -> None:
        for item in self.items:
            item.compile(env, rule_id)


class AnyOf(_Combinator):
    """At least one of the listed conditions holds."""

    name = "any_of"

    def restricts_actions(self) -> frozenset[Action] | None:
        union: set[Action] = set()
        for item in self.items:
            restricted = item.restricts_actions()
            if restricted is None:
                return None
            union |= restricted
        return frozenset(union)

    def matches(self, ctx: Any) -> bool:
        # A plain loop: any() with a generator costs an allocation per event.
        for item in self.items:  # noqa: SIM110
            if item.matches(ctx):
                return True
        return False


class AllOf(_Combinator):
    """All the listed conditions hold (useful inside ``any_of``)."""

    name = "all_of"

    def restricts_actions(self) -> frozenset[Action] | None:
        return intersect_actions(self.items)

    def matches(self, ctx: Any) -> bool:
        for item in self.items:  # noqa: SIM110 - see AnyOf.matches
            if not item.matches(ctx):
                return False
        return True


class Not(_Combinator):
    """The single nested condition does not hold."""

    name = "not"

    def matches(self, ctx: Any) -> bool:
        return not self.items[0].matches(ctx)


# ---------------------------------------------------------------- the registry

CONDITIONS: dict[str, type[Condition]] = {
    cls.name: cls
    for cls in (
        ActionIn,
        DataClassIn,
        DestinationKindIn,
        DestinationDevice,
        ObjectPathKindIn,
        RecordCountAtLeast,
        PiiAtLeast,
        PurposeMissing,
        UnitUseNotPermitted,
        UnitIn,
        ActorIn,
        HostIn,
        OutsideWorkingHours,
        CountInWindow,
        FailuresThenSuccess,
        AgentSilent,
        EventGap,
        AnyOf,
        AllOf,
        Not,
    )
}


def intersect_actions(conditions: Iterable[Condition]) -> frozenset[Action] | None:
    """Return the actions all conditions allow together, or None if none of them restricts."""
    result: frozenset[Action] | None = None
    for condition in conditions:
        restricted = condition.restricts_actions()
        if restricted is not None:
            result = restricted if result is None else result & restricted
    return result


def _unknown(what: str, value: str) -> str:
    return f"{what} không tồn tại / unknown {what.split('/')[-1]} {value!r}"


def parse_condition(raw: Any, loc: Loc, subject: Subject, *, depth: int = 0) -> tuple[Condition | None, list[Issue]]:
    """Parse one ``{name: params}`` entry into a condition, or return the issues found."""
    if not isinstance(raw, dict) or len(raw) != 1:
        return None, [(loc, "điều kiện phải là ánh xạ một khóa {tên: tham số} / "
                            "a condition is a one-key mapping {name: params}")]
    ((name, value),) = raw.items()
    if not isinstance(name, str) or name not in CONDITIONS:
        known = ", ".join(sorted(CONDITIONS))
        return None, [(loc, f"điều kiện không tồn tại / unknown condition {name!r} (known: {known})")]
    cls = CONDITIONS[name]
    here = (*loc, name)
    if depth > MAX_NESTING:
        return None, [(here, "lồng quá sâu / conditions nested too deeply")]
    if issubclass(cls, _Combinator):
        return _parse_combinator(cls, value, here, subject, depth)
    if subject not in cls.subjects:
        return None, [(here, f"không dùng được cho subject {subject.value!r} / "
                             f"not usable in a rule about {subject.value}s")]
    if cls.is_stateful and depth > 0:
        return None, [(here, "điều kiện theo cửa sổ thời gian chỉ đặt ở cấp ngoài cùng / "
                             "windowed conditions only at the top level of a rule")]
    try:
        params = cls.params_model.model_validate({} if value is None else value)
    except ValidationError as exc:
        return None, [((*here, *_clean_loc(err["loc"])), err["msg"]) for err in exc.errors()]
    return cls(params, here), []


def _parse_combinator(cls: type[_Combinator], value: Any, here: Loc, subject: Subject,
                      depth: int) -> tuple[Condition | None, list[Issue]]:
    if cls is Not:
        if not isinstance(value, dict):
            return None, [(here, "'not' cần một điều kiện / 'not' takes one condition mapping")]
        child, issues = parse_condition(value, here, subject, depth=depth + 1)
        return (cls([child], here) if child is not None else None), issues
    if not isinstance(value, list) or not value:
        return None, [(here, f"'{cls.name}' cần danh sách điều kiện / takes a non-empty list")]
    items: list[Condition] = []
    issues: list[Issue] = []
    for index, entry in enumerate(value):
        child, child_issues = parse_condition(entry, (*here, index), subject, depth=depth + 1)
        issues.extend(child_issues)
        if child is not None:
            items.append(child)
    return (cls(items, here) if not issues else None), issues


def parse_rule_conditions(raw: list[Any], subject: Subject, loc: Loc = ("conditions",)
                          ) -> tuple[list[Condition], list[Issue]]:
    """Parse a rule's condition list; at most one windowed condition is allowed."""
    conditions: list[Condition] = []
    issues: list[Issue] = []
    windowed = 0
    for index, entry in enumerate(raw):
        condition, found = parse_condition(entry, (*loc, index), subject)
        issues.extend(found)
        if condition is None:
            continue
        if condition.is_stateful:
            windowed += 1
            if windowed > 1:
                issues.append((condition.loc, "tối đa một điều kiện theo cửa sổ thời gian mỗi quy tắc / "
                                              "at most one windowed condition per rule"))
        conditions.append(condition)
    return conditions, issues


def check_conditions(conditions: Iterable[Condition], env: CompileEnv) -> list[Issue]:
    """Return reference problems of conditions and their nested conditions."""
    issues: list[Issue] = []
    stack = list(conditions)
    while stack:
        condition = stack.pop()
        issues.extend(condition.check(env))
        stack.extend(condition.children())
    return issues


def _clean_loc(loc: Sequence[Any]) -> Loc:
    return tuple(part for part in loc if isinstance(part, str | int))
