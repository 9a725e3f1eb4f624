"""The pure policy engine: classify an event, evaluate rules, explain verdicts, run rule tests.

No I/O, no clock, no Flask, no database. ``evaluate`` takes the pydantic ``Event`` but only
reads its attributes; patterns were compiled when the policy was loaded.

Precedence when classifying (see docs/policy.md):

* data class: the class the sending application put in ``object.data_class`` if the policy
  knows it; otherwise the first data class (in file order) whose path pattern matches
  ``object.path``; otherwise none.
* destination kind: an official scope match (path, target or e-mail domain) always wins;
  otherwise the kind the agent reported, unless it is ``unknown``; otherwise the first scope
  kind whose patterns match, in the order removable, cloud, messaging, publishing, email,
  print; otherwise ``email`` for an address outside the official domains; otherwise ``print``
  for a print action; otherwise ``unknown``. No destination at all gives None (``print`` for
  a print action).
"""

from __future__ import annotations

import re
import string
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from canhgac_common.events import Action, Destination, DestinationKind, Event, EventObject
from service.policy.conditions import (
    ActionIn,
    CompileEnv,
    Condition,
    DataClassIn,
    DestinationKindIn,
    PathMatcher,
    fixed_offset_span,
    intersect_actions,
    match_key,
)
from service.policy.schemas import (
    WEEKDAYS,
    DataClassSpec,
    GroupKey,
    MonitoringSignal,
    RuleSpec,
    ScopeSpec,
    Settings,
    Subject,
    TestCase,
    TestFailure,
    UnitSpec,
    Verdict,
)
from service.policy.windows import WindowState

# Scope kinds tried after the official scope, most specific first.
KIND_ORDER: tuple[DestinationKind, ...] = (
    DestinationKind.REMOVABLE,
    DestinationKind.CLOUD,
    DestinationKind.MESSAGING,
    DestinationKind.PUBLISHING,
    DestinationKind.EMAIL,
    DestinationKind.PRINT,
)

# An event stamped more than this ahead of ``now`` is counted at ``now``: a wrong agent
# clock must not push a window's high-water mark into the future.
MAX_CLOCK_SKEW_US = 300 * 1_000_000

_CACHE_LIMIT = 65_536
_MISSING = object()
_EMAIL_DOMAIN = re.compile(r"[a-z0-9.-]+")

ACTION_LABELS: dict[str, str] = {
    "open": "mở", "read": "đọc", "modify": "sửa", "create": "tạo", "delete": "xóa",
    "move": "di chuyển", "copy": "sao chép", "export": "xuất", "print": "in",
    "share": "chia sẻ", "view": "xem", "login": "đăng nhập", "login_failed": "đăng nhập sai",
    "logout": "đăng xuất", "heartbeat": "tín hiệu định kỳ",
}
KIND_LABELS: dict[str, str] = {
    "official": "phạm vi công vụ",
    "removable": "thiết bị lưu trữ di động",
    "cloud": "dịch vụ lưu trữ đám mây",
    "messaging": "ứng dụng nhắn tin",
    "email": "thư điện tử ngoài phạm vi công vụ",
    "print": "máy in",
    "publishing": "thư mục đăng tải công khai",
    "unknown": "nơi nhận không xác định",
}
SENSITIVITY_LABELS: dict[str, str] = {"basic": "cơ bản", "sensitive": "nhạy cảm"}
PII_LABELS: dict[str, str] = {
    "cccd": "số định danh", "phone": "số điện thoại", "bhxh": "số BHXH", "email": "địa chỉ thư",
}

EVENT_FIELDS = frozenset({
    "title", "class", "class_label", "sensitivity", "action", "action_label", "kind",
    "kind_label", "records", "pii", "pii_total", "unit", "unit_name", "owner_name",
    "purpose_state", "window_events", "window_records", "window_minutes", "device_state",
})
SIGNAL_FIELDS = frozenset({"title", "signal", "missing", "silent_minutes", "silent_hours"})
DEFAULT_TEMPLATES = {
    Subject.EVENT: "{title}: {class_label}, thao tác {action_label}, {records} bản ghi",
    Subject.SIGNAL: "{title}",
}
_LONG_DIGITS = re.compile(r"\d{9,}")


# ---------------------------------------------------------------- classification


class Classifier:
    """Compiled path and target patterns of the data classes and scopes."""

    def __init__(self, data_classes: Sequence[DataClassSpec], scopes: Sequence[ScopeSpec]) -> None:
        self.class_ids = frozenset(c.id for c in data_classes)
        self._classes = PathMatcher([(c.id, c.paths) for c in data_classes])
        official = [s for s in scopes if s.kind == DestinationKind.OFFICIAL]
        self._official_paths = PathMatcher([("official", _scope_paths(official))])
        self._official_targets = PathMatcher([("official", [t for s in official for t in s.targets])])
        self.official_domains = tuple(sorted({d for s in official for d in s.email_domains}))
        by_kind = {kind: [s for s in scopes if s.kind == kind] for kind in KIND_ORDER}
        self._kind_paths = PathMatcher([(kind, _scope_paths(by_kind[kind])) for kind in KIND_ORDER])
        self._kind_targets = PathMatcher(
            [(kind, [t for s in by_kind[kind] for t in s.targets]) for kind in KIND_ORDER]
        )
        self._class_cache: dict[str, str | None] = {}

    def data_class_of(self, obj: EventObject | None) -> str | None:
        """Return the object's data class id (see the module docstring for precedence)."""
        if obj is None:
            return None
        supplied = obj.data_class
        if supplied is not None and supplied in self.class_ids:
            return supplied
        path = obj.path
        if path is None:
            return None
        found = self._class_cache.get(path, _MISSING)
        if found is _MISSING:
            found = self._classes.match_name(match_key(path))
            if len(self._class_cache) >= _CACHE_LIMIT:
                self._class_cache.clear()
            self._class_cache[path] = found
        return found  # type: ignore[return-value]

    def path_class(self, path: str) -> str | None:
        """Return the first data class whose patterns match ``path``, uncached."""
        return self._classes.match_name(match_key(path))

    def destination_kind(self, action: Action, dest: Destination | None) -> DestinationKind | None:
        """Return the destination kind (see the module docstring for precedence)."""
        if dest is None:
            return DestinationKind.PRINT if action is Action.PRINT else None
        path = None if dest.path is None else match_key(dest.path)
        target = dest.target
        target_key = None if target is None else match_key(target)
        if self._is_official(path, target, target_key):
            return DestinationKind.OFFICIAL
        kind = dest.kind
        if kind is not None and kind is not DestinationKind.UNKNOWN:
            return kind
        if path is not None:
            found = self._kind_paths.match_name(path)
            if found is not None:
                return found  # type: ignore[return-value]
        if target_key is not None:
            found = self._kind_targets.match_name(target_key)
            if found is not None:
                return found  # type: ignore[return-value]
            if email_domain(target) is not None:  # type: ignore[arg-type]
                return DestinationKind.EMAIL
        if action is Action.PRINT:
            return DestinationKind.PRINT
        return DestinationKind.UNKNOWN

    def path_kind(self, path: str | None) -> DestinationKind | None:
        """Return the scope kind a path itself lies in (official first), or None without a path."""
        if path is None:
            return None
        key = match_key(path)
        if self._official_paths.match(key) is not None:
            return DestinationKind.OFFICIAL
        found = self._kind_paths.match_name(key)
        return found if found is not None else DestinationKind.UNKNOWN  # type: ignore[return-value]

    def is_official(self, path: str | None, target: str | None) -> bool:
        """Tell whether a destination path, target or address is inside the official scope."""
        return self._is_official(
            None if path is None else match_key(path),
            target,
            None if target is None else match_key(target),
        )

    def _is_official(self, path_key: str | None, target: str | None, target_key: str | None) -> bool:
        if path_key is not None and self._official_paths.match(path_key) is not None:
            return True
        if target is None or target_key is None:
            return False
        if self._official_targets.match(target_key) is not None:
            return True
        domain = email_domain(target)
        return domain is not None and any(
            domain == d or domain.endswith("." + d) for d in self.official_domains
        )


def _scope_paths(scopes: Sequence[ScopeSpec]) -> list[str]:
    patterns = [p for s in scopes for p in s.paths]
    for scope in scopes:
        for letter in scope.drive_letters:
            patterns += [f"{letter}:", f"{letter}:/*"]
    return patterns


def email_domain(target: str) -> str | None:
    """Return the lower-case domain of an e-mail address target, or None if it is not one."""
    if "@" not in target or "://" in target:
        return None
    match = _EMAIL_DOMAIN.match(target.rsplit("@", 1)[1].strip().lower())
    domain = match.group(0).strip(".") if match else ""
    return domain if "." in domain else None


# ---------------------------------------------------------------- the compiled policy


@dataclass(slots=True, eq=False)
class CompiledRule:
    """A rule ready for the hot path.

    ``classes`` and ``dest_kinds`` are the rule's top-level ``data_class_in`` and
    ``destination_kind_in`` as sets, checked inline before any call; top-level ``action_in``
    conditions are dropped because the rule is only looked up for the actions they allow;
    ``fields`` are the placeholders of ``template``.
    """

    spec: RuleSpec
    classes: frozenset[str] | None
    dest_kinds: frozenset[DestinationKind] | None
    conditions: tuple[Condition, ...]
    stateful: Condition | None
    actions: frozenset[Action] | None
    template: str
    fields: tuple[str, ...]
    # every top-level condition as written, for the reference evaluation in the tests
    written: tuple[Condition, ...] = ()


@dataclass(eq=False)
class Policy:
    """A loaded, validated and compiled policy; treat it as immutable."""

    settings: Settings
    data_classes: dict[str, DataClassSpec]
    units: dict[str, UnitSpec]
    scopes: dict[str, ScopeSpec]
    rules: tuple[RuleSpec, ...]
    tests: tuple[TestCase, ...]
    hash: str
    files: tuple[str, ...]
    directory: Path | None = None
    env: CompileEnv = field(repr=False, default=None)  # type: ignore[assignment]
    classifier: Classifier = field(repr=False, default=None)  # type: ignore[assignment]
    compiled_rules: tuple[CompiledRule, ...] = field(repr=False, default=())
    rules_by_action: dict[Action, tuple[CompiledRule, ...]] = field(repr=False, default_factory=dict)
    # action -> data class id (or None) -> the rules whose action and class prefilters pass
    candidates: dict[Action, dict[str | None, tuple[CompiledRule, ...]]] = field(
        repr=False, default_factory=dict)
    signal_rules: tuple[CompiledRule, ...] = field(repr=False, default=())
    # the actions (their values) some enabled windowed rule counts: only their events move windows
    windowed_actions: frozenset[str] = field(repr=False, default=frozenset())
    rule_origins: dict[str, tuple[str, int]] = field(repr=False, default_factory=dict)
    test_origins: tuple[tuple[str, int, tuple[int, ...]], ...] = field(repr=False, default=())
    test_subjects: tuple[tuple[Event | MonitoringSignal, ...], ...] = field(repr=False, default=())
    labels: Labels = field(repr=False, default=None)  # type: ignore[assignment]

    def rule(self, rule_id: str) -> RuleSpec:
        """Return the rule with this id (KeyError if there is none)."""
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)

    def summary(self) -> str:
        """Return a one-line Vietnamese/English summary for the CLI and logs."""
        enabled = sum(1 for r in self.rules if r.enabled)
        return (
            f"{len(self.data_classes)} lớp dữ liệu/data classes, {len(self.units)} đơn vị/units, "
            f"{len(self.scopes)} phạm vi/scopes, {enabled}/{len(self.rules)} quy tắc/rules, "
            f"{len(self.tests)} bài kiểm thử/tests"
        )


def build_env(settings: Settings, data_classes: Sequence[DataClassSpec], units: Sequence[UnitSpec]) -> CompileEnv:
    """Return the compile environment conditions are checked and compiled against."""
    hours = settings.working_hours
    zone = ZoneInfo(settings.timezone)
    return CompileEnv(
        class_ids=frozenset(c.id for c in data_classes),
        unit_ids=frozenset(u.id for u in units),
        class_sensitivity={c.id: c.sensitivity for c in data_classes},
        owner_of={c.id: c.owner for c in data_classes},
        permissions={
            (unit.id, use.data_class): frozenset(p.strip().casefold() for p in use.purposes)
            for unit in units
            for use in unit.uses
        },
        timezone=zone,
        workdays=frozenset(WEEKDAYS.index(day) for day in hours.days),
        work_start_s=hours.start.hour * 3600 + hours.start.minute * 60,
        work_end_s=hours.end.hour * 3600 + hours.end.minute * 60,
        holidays=frozenset(settings.holidays),
        yearly_holidays=frozenset((int(md[:2]), int(md[3:])) for md in settings.yearly_holidays),
        fixed_offset=fixed_offset_span(zone),
    )


def template_problem(template: str, subject: Subject) -> str | None:
    """Return why an explanation template is unusable, or None if it is fine."""
    allowed = EVENT_FIELDS if subject is Subject.EVENT else SIGNAL_FIELDS
    if "\n" in template or "\r" in template:
        return "giải thích phải trên một dòng / explanation must be one line"
    if _LONG_DIGITS.search(template):
        return "giải thích không được chứa dãy số dài / no long digit runs (identifiers) allowed"
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"mẫu giải thích sai cú pháp / bad template: {exc}"
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in allowed or spec or conversion:
            known = ", ".join(sorted(allowed))
            return f"trường không cho phép / unknown placeholder {{{name}}} (allowed: {known})"
    return None


def _bake_title(template: str, title: str) -> str:
    """Return the one-line template with ``{title}`` replaced by the rule's title."""
    def escape(text: str) -> str:
        return text.replace("{", "{{").replace("}", "}}")

    parts = []
    for literal, name, _, _ in string.Formatter().parse(" ".join(template.split())):
        parts.append(escape(literal))
        if name == "title":
            parts.append(escape(_one_line(title)))
        elif name is not None:
            parts.append("{" + name + "}")
    return "".join(parts)


def compile_policy(
    *,
    settings: Settings,
    data_classes: Sequence[DataClassSpec],
    units: Sequence[UnitSpec],
    scopes: Sequence[ScopeSpec],
    rules: Sequence[tuple[RuleSpec, Sequence[Condition]]],
    tests: Sequence[TestCase] = (),
    test_subjects: Sequence[Sequence[Event | MonitoringSignal]] = (),
    test_origins: Sequence[tuple[str, int, tuple[int, ...]]] = (),
    rule_origins: dict[str, tuple[str, int]] | None = None,
    policy_hash: str = "",
    files: Sequence[str] = (),
    directory: Path | None = None,
) -> Policy:
    """Compile validated, reference-checked parts into a ``Policy`` (the loader calls this)."""
    env = build_env(settings, data_classes, units)
    compiled: list[CompiledRule] = []
    for spec, conditions in rules:
        if not spec.enabled:
            continue
        for condition in conditions:
            condition.compile(env, spec.id)
        classes: frozenset[str] | None = None
        kinds: frozenset[DestinationKind] | None = None
        stateless: list[Condition] = []
        for condition in conditions:
            if isinstance(condition, DataClassIn):
                classes = condition.classes if classes is None else classes & condition.classes
            elif isinstance(condition, DestinationKindIn):
                kinds = condition.kinds if kinds is None else kinds & condition.kinds
            elif isinstance(condition, ActionIn) or condition.is_stateful:
                continue
            else:
                stateless.append(condition)
        template = _bake_title(spec.explanation or DEFAULT_TEMPLATES[spec.subject], spec.title)
        compiled.append(CompiledRule(
            spec=spec,
            classes=classes,
            dest_kinds=kinds,
            conditions=tuple(stateless),
            stateful=next((c for c in conditions if c.is_stateful), None),
            actions=intersect_actions(conditions),
            template=template,
            fields=tuple(dict.fromkeys(
                name for _, name, _, _ in string.Formatter().parse(template) if name
            )),
            written=tuple(conditions),
        ))
    event_rules = [r for r in compiled if r.spec.subject is Subject.EVENT]
    by_action = {
        action: tuple(r for r in event_rules if r.actions is None or action in r.actions)
        for action in Action
    }
    return Policy(
        settings=settings,
        data_classes={c.id: c for c in data_classes},
        units={u.id: u for u in units},
        scopes={s.id: s for s in scopes},
        rules=tuple(spec for spec, _ in rules),
        tests=tuple(tests),
        hash=policy_hash,
        files=tuple(files),
        directory=directory,
        env=env,
        classifier=Classifier(data_classes, scopes),
        compiled_rules=tuple(compiled),
        rules_by_action=by_action,
        candidates={
            action: {
                data_class: tuple(r for r in rules if r.classes is None or data_class in r.classes)
                for data_class in (*env.class_ids, None)
            }
            for action, rules in by_action.items()
            if rules
        },
        signal_rules=tuple(r for r in compiled if r.spec.subject is Subject.SIGNAL),
        windowed_actions=frozenset(action.value for action, rules in by_action.items()
                                   if any(r.stateful is not None for r in rules)),
        rule_origins=dict(rule_origins or {}),
        test_origins=tuple(test_origins),
        test_subjects=tuple(tuple(s) for s in test_subjects),
        labels=Labels.build(data_classes, units),
    )


# ---------------------------------------------------------------- contexts


class EventContext:
    """What conditions read about one event; built at most once per ``evaluate`` call.

    Only six attributes are set up front (this runs for most events); the rest are
    properties or are set by the condition that produces them (``window``).
    """

    __slots__ = ("_at_us", "_classifier", "_now", "_object_kind", "data_class", "dest_kind",
                 "event", "state", "window")

    def __init__(self, event: Event, classifier: Classifier, state: WindowState,
                 now: datetime | None, data_class: str | None, dest_kind: Any) -> None:
        self.event = event
        self.data_class = data_class
        if dest_kind is _MISSING:
            dest = event.destination
            action = event.action
            dest_kind = (None if dest is None and action is not Action.PRINT
                         else classifier.destination_kind(action, dest))
        self.dest_kind = dest_kind
        self.state = state
        self._classifier = classifier
        self._now = now

    @property
    def action(self) -> Action:
        """The event's action."""
        return self.event.action

    @property
    def host(self) -> str:
        """The event's host."""
        return self.event.host

    @property
    def when(self) -> datetime:
        """The event's own time (aware)."""
        return self.event.occurred_at

    @property
    def at_us(self) -> int:
        """Event time in µs since the epoch, never more than the allowed skew after ``now``."""
        try:
            return self._at_us
        except AttributeError:
            pass
        at_us = round(self.event.occurred_at.timestamp() * 1_000_000)
        if self._now is not None:
            now_us = round(self._now.timestamp() * 1_000_000)
            if at_us > now_us + MAX_CLOCK_SKEW_US:
                at_us = now_us
        self._at_us = at_us
        return at_us

    @property
    def object_kind(self) -> DestinationKind | None:
        """Scope kind of the object's own path (e.g. a file created in the publishing folder)."""
        try:
            return self._object_kind
        except AttributeError:
            pass
        obj = self.event.object
        kind = self._object_kind = self._classifier.path_kind(obj.path if obj is not None else None)
        return kind


class SignalContext:
    """What conditions read about one monitoring signal."""

    __slots__ = ("host", "signal", "when")

    def __init__(self, signal: MonitoringSignal, now: datetime) -> None:
        self.signal = signal
        self.host = signal.host
        self.when = now


# ---------------------------------------------------------------- public API


def classify(event: Event, policy: Policy) -> tuple[str | None, DestinationKind | None]:
    """Return (data class id or None, destination kind or None when there is no destination)."""
    classifier = policy.classifier
    return (
        classifier.data_class_of(event.object),
        classifier.destination_kind(event.action, event.destination),
    )


def enrich(event: Event, policy: Policy) -> Event:
    """Return a copy with ``object.data_class`` and ``destination.kind`` filled from the policy.

    An application's class the policy does not know is kept when no pattern matches.
    """
    data_class, kind = classify(event, policy)
    update: dict[str, Any] = {}
    obj = event.object
    if obj is not None and data_class is not None and data_class != obj.data_class:
        update["object"] = obj.model_copy(update={"data_class": data_class})
    dest = event.destination
    if kind is not None and (dest is None or dest.kind != kind):
        update["destination"] = (
            Destination(kind=kind) if dest is None else dest.model_copy(update={"kind": kind})
        )
    return event.model_copy(update=update)


def evaluate(event: Event, policy: Policy, state: WindowState | None, *,
             now: datetime | None = None) -> list[Verdict]:
    """Return the verdicts of every rule the event triggers, in rule order.

    Windows and working hours use the event's own time; ``now`` (the receive time) only
    caps event times from clocks running ahead. ``state`` is updated by windowed rules
    (None: a throw-away state, so windowed rules see this event alone).
    """
    action = event.action
    by_class = policy.candidates.get(action)
    if by_class is None:
        return []
    classifier = policy.classifier
    # data_class_of always answers a class id of the policy or None: both are keys here
    data_class = classifier.data_class_of(event.object)
    rules = by_class[data_class]
    if not rules:
        return []
    verdicts: list[Verdict] = []
    dest_kind: Any = _MISSING
    ctx = None
    for rule in rules:
        kinds = rule.dest_kinds
        if kinds is not None:
            if dest_kind is _MISSING:
                dest = event.destination
                dest_kind = (None if dest is None and action is not Action.PRINT
                             else classifier.destination_kind(action, dest))
            if dest_kind not in kinds:
                continue
        if ctx is None:
            ctx = EventContext(event, classifier, _state(state), now, data_class, dest_kind)
        for condition in rule.conditions:
            if not condition.matches(ctx):
                break
        else:
            stateful = rule.stateful
            if stateful is None or stateful.matches(ctx):
                verdicts.append(_event_verdict(rule, ctx, policy))
    return verdicts


def _state(state: WindowState | None) -> WindowState:
    return WindowState() if state is None else state


def evaluate_signal(signal: MonitoringSignal, policy: Policy, *, now: datetime) -> list[Verdict]:
    """Return the verdicts of the signal rules for a monitoring signal observed at ``now``."""
    ctx = SignalContext(signal, now)
    return [
        _signal_verdict(rule, signal)
        for rule in policy.signal_rules
        if all(condition.matches(ctx) for condition in rule.conditions)
    ]


# ---------------------------------------------------------------- verdicts and explanations


def _num(value: float) -> str:
    # Vietnamese thousands separator; also keeps any count from reading like an ID number.
    return f"{int(value):,}".replace(",", ".")


def _event_verdict(rule: CompiledRule, ctx: EventContext, policy: Policy) -> Verdict:
    event = ctx.event
    stateful = rule.stateful
    if stateful is None:
        obj = event.object
        key = GroupKey(event.actor, event.host, ctx.data_class, obj.path if obj is not None else None)
    else:
        by_actor, by_host, by_class = stateful.key_fields()  # type: ignore[attr-defined]
        key = GroupKey(
            event.actor if by_actor else None,
            event.host if by_host else None,
            ctx.data_class if by_class else None,
            None,
        )
    labels = policy.labels
    facts = {name: _EVENT_FACTS[name](ctx, labels) for name in rule.fields}
    spec = rule.spec
    return Verdict(spec.id, spec.title, spec.severity, spec.response,
                   rule.template.format_map(facts), key)


def _signal_verdict(rule: CompiledRule, signal: MonitoringSignal) -> Verdict:
    spec = rule.spec
    facts = {
        "signal": "tác tử im lặng" if signal.kind == "agent_silent" else "thiếu sự kiện",
        "missing": _num(signal.missing),
        "silent_minutes": _num(signal.silent_seconds // 60),
        "silent_hours": _num(signal.silent_seconds // 3600),
    }
    return Verdict(spec.id, spec.title, spec.severity, spec.response,
                   rule.template.format_map(facts), GroupKey(None, signal.host, None, None))


def _one_line(text: str) -> str:
    return " ".join(text.split())


@dataclass(frozen=True)
class Labels:
    """One-line texts for explanations, prepared once per policy (never event text)."""

    class_label: dict[str, str]
    sensitivity: dict[str, str]
    owner_name: dict[str, str]
    unit_name: dict[str, str]

    @classmethod
    def build(cls, data_classes: Sequence[DataClassSpec], units: Sequence[UnitSpec]) -> Labels:
        """Return the labels of a policy's classes and units."""
        unit_names = {u.id: _one_line(u.name) for u in units}
        return cls(
            class_label={c.id: _one_line(c.label) for c in data_classes},
            sensitivity={c.id: SENSITIVITY_LABELS[c.sensitivity] for c in data_classes},
            owner_name={c.id: unit_names.get(c.owner, "không rõ") for c in data_classes},
            unit_name=unit_names,
        )


def _fact_records(ctx: EventContext, labels: Labels) -> str:
    obj = ctx.event.object
    count = obj.record_count if obj is not None else None
    return _num(count) if count is not None else "không rõ số"


def _fact_unit(ctx: EventContext, labels: Labels) -> str:
    # Only a unit the policy knows is named: free text from an app never reaches the text.
    unit = ctx.event.unit
    return unit if unit in labels.unit_name else "không rõ"


def _fact_purpose_state(ctx: EventContext, labels: Labels) -> str:
    # The purpose text itself is never quoted: it may name a citizen.
    purpose = ctx.event.purpose
    if purpose is None or not purpose.strip():
        return "không nêu mục đích"
    return "mục đích không thuộc danh mục được phép"


def _fact_device_state(ctx: EventContext, labels: Labels) -> str:
    # Whether the device is registered, never its strings: they come from the agent's OS.
    dest = ctx.event.destination
    if dest is None:
        return "không có nơi nhận"
    device = dest.device
    if device is None:
        return "thiết bị không rõ định danh"
    if device.is_registered is True:
        return "thiết bị lưu trữ công vụ đã đăng ký"
    return "thiết bị chưa đăng ký"


def _window_part(index: int) -> Any:
    def fact(ctx: EventContext, labels: Labels) -> str:
        window = getattr(ctx, "window", None) or (0, 0, 0)
        return _num(window[index] // 60 if index == 2 else window[index])
    return fact


_EVENT_FACTS: dict[str, Any] = {
    "class": lambda ctx, labels: ctx.data_class or "không rõ",
    "class_label": lambda ctx, labels: labels.class_label.get(ctx.data_class, "dữ liệu chưa phân loại"),
    "sensitivity": lambda ctx, labels: labels.sensitivity.get(ctx.data_class, "không rõ"),
    "action": lambda ctx, labels: str(ctx.action),
    "action_label": lambda ctx, labels: ACTION_LABELS.get(ctx.action, str(ctx.action)),
    "kind": lambda ctx, labels: str(ctx.dest_kind) if ctx.dest_kind is not None else "none",
    "kind_label": lambda ctx, labels: KIND_LABELS.get(ctx.dest_kind, "không có nơi nhận"),
    "records": _fact_records,
    "pii": lambda ctx, labels: _pii_summary(ctx.event.pii),
    "pii_total": lambda ctx, labels: _num(sum(ctx.event.pii.values())),
    "unit": _fact_unit,
    "unit_name": lambda ctx, labels: labels.unit_name.get(ctx.event.unit, "đơn vị không có trong chính sách"),
    "owner_name": lambda ctx, labels: labels.owner_name.get(ctx.data_class, "không rõ"),
    "purpose_state": _fact_purpose_state,
    "device_state": _fact_device_state,
    "window_events": _window_part(0),
    "window_records": _window_part(1),
    "window_minutes": _window_part(2),
}


def _pii_summary(pii: dict[str, int]) -> str:
    # Kind names come from agents and apps: only the kinds we know are named, the rest summed.
    parts = [f"{PII_LABELS[kind]} {_num(count)}" for kind, count in sorted(pii.items())
             if count and kind in PII_LABELS]
    other = sum(count for kind, count in pii.items() if kind not in PII_LABELS)
    if other:
        parts.append(f"loại khác {_num(other)}")
    return ", ".join(parts) if parts else "không phát hiện"


# ---------------------------------------------------------------- rule tests

_TEST_NAMESPACE = uuid.UUID("6f1c2a52-3d1f-4a39-9a43-6c0f2f1d8b11")


def run_policy_tests(policy: Policy) -> list[TestFailure]:
    """Run the policy's own YAML rule tests and check every rule is covered; return failures.

    Each test starts with empty windows. A step's ``expect`` is the exact set of rule ids
    fired over all its repetitions. Every enabled rule needs a step expecting it and a
    near miss: a test about it (``rule:``) with a step where it must not fire.
    """
    failures: list[TestFailure] = []
    for test, origin, subjects in zip(policy.tests, policy.test_origins, policy.test_subjects, strict=True):
        failures.extend(_run_test(policy, test, origin, subjects))
    failures.extend(_coverage_failures(policy))
    return failures


def _run_test(policy: Policy, test: TestCase, origin: tuple[str, int, tuple[int, ...]],
              subjects: Sequence[Event | MonitoringSignal]) -> list[TestFailure]:
    file, _, step_lines = origin
    failures: list[TestFailure] = []
    state = WindowState()
    clock = test.start
    for index, (step, subject) in enumerate(zip(test.steps, subjects, strict=True)):
        start = step.at if step.at is not None else clock + timedelta(seconds=step.after_seconds)
        fired: set[str] = set()
        when = start
        for repetition in range(step.repeat):
            when = start + timedelta(seconds=step.interval_seconds * repetition)
            if isinstance(subject, MonitoringSignal):
                verdicts = evaluate_signal(subject, policy, now=when)
            else:
                event_id = uuid.uuid5(_TEST_NAMESPACE, f"{test.name}/{index}/{repetition}")
                event = subject.model_copy(update={"id": event_id, "occurred_at": when})
                verdicts = evaluate(event, policy, state, now=when)
            fired.update(v.rule_id for v in verdicts)
        clock = when
        expected = set(step.expect)
        if fired != expected:
            missing = ", ".join(sorted(expected - fired)) or "-"
            extra = ", ".join(sorted(fired - expected)) or "-"
            failures.append(TestFailure(
                test=test.name, file=file, line=step_lines[index], step=index + 1,
                expected=tuple(sorted(expected)), actual=tuple(sorted(fired)),
                message=f"thiếu/missing: {missing}; thừa/unexpected: {extra}",
            ))
    return failures


def _coverage_failures(policy: Policy) -> list[TestFailure]:
    fires: set[str] = set()
    near_miss: set[str] = set()
    for test in policy.tests:
        for step in test.steps:
            fires.update(step.expect)
            if test.rule is not None and test.rule not in step.expect:
                near_miss.add(test.rule)
    failures = []
    for rule in policy.rules:
        if not rule.enabled:
            continue
        file, line = policy.rule_origins.get(rule.id, ("?", 1))
        lacking = []
        if rule.id not in fires:
            lacking.append("chưa có bước kích hoạt / no step expects it to fire")
        if rule.id not in near_miss:
            lacking.append(f"chưa có bài 'rule: {rule.id}' có bước không kích hoạt / no near-miss test")
        if lacking:
            failures.append(TestFailure(
                test=f"(coverage) {rule.id}", file=file, line=line, step=None,
                expected=(rule.id,), actual=(), message="; ".join(lacking),
            ))
    return failures
