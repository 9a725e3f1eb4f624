"""Load a policy directory: read the YAML files, validate them, check references, compile.

Layout: every ``*.yaml``/``*.yml`` file directly in the directory is a policy document
(sections ``settings``, ``data_classes``, ``units``, ``scopes``, ``rules``, merged across
files); every such file under ``tests/`` is a rule-test document (``tests``). Hidden files
and other folders are ignored. Every problem is reported with FILE, LINE and FIELD: the
YAML is composed into nodes first so that pydantic's error locations map back to lines.

Policy hash: SHA-256 over the policy files sorted by relative POSIX path, each contributing
``len(path) ‖ path ‖ len(bytes) ‖ bytes`` (lengths as 8-byte big-endian, path in UTF-8).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from canhgac_common.events import Event
from service.core.shipped import shipped_dir
from service.policy.conditions import Condition, Loc, check_conditions, parse_rule_conditions
from service.policy.engine import Policy, build_env, compile_policy, template_problem
from service.policy.schemas import (
    DataClassSpec,
    MonitoringSignal,
    PolicyDocument,
    PolicyError,
    Problem,
    RuleSpec,
    Settings,
    TestCase,
    TestDocument,
    UnitSpec,
)

try:  # the C parser is much faster and keeps the same node marks
    from yaml import CSafeLoader as _YamlLoader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _YamlLoader  # type: ignore[assignment]

POLICY_SUFFIXES = (".yaml", ".yml")
TESTS_DIR = "tests"
MAX_FILE_BYTES = 1 << 20
MAX_FILES = 500
MAX_DEPTH = 64
MAX_TEST_EVENTS = 200_000
_PLACEHOLDER_ID = "00000000-0000-4000-8000-000000000000"


# ---------------------------------------------------------------- directories and hashing


def default_policy_dir() -> Path:
    """Return the default commune policy shipped with the code (``policies/`` of the project)."""
    return shipped_dir("policies")


def resolve_policy_dir(directory: str | Path | None = None) -> Path:
    """Return ``directory``, else ``./policies`` if it exists, else the packaged default."""
    if directory is not None:
        return Path(directory)
    local = Path("policies")
    return local if local.is_dir() else default_policy_dir()


def read_policy_files(directory: str | Path) -> dict[str, bytes]:
    """Return {relative POSIX path: bytes} of the policy files in ``directory``."""
    root = Path(directory)
    if not root.is_dir():
        raise PolicyError([Problem(str(root), 1, "", "không phải thư mục / not a directory")])
    found: dict[str, bytes] = {}
    candidates = [p for p in root.iterdir() if p.is_file()]
    tests = root / TESTS_DIR
    if tests.is_dir():
        candidates += [p for p in tests.rglob("*") if p.is_file()]
    for path in candidates:
        rel = path.relative_to(root)
        if path.suffix.lower() not in POLICY_SUFFIXES or any(part.startswith(".") for part in rel.parts):
            continue
        if len(found) >= MAX_FILES:
            raise PolicyError([Problem(str(root), 1, "", f"quá nhiều tệp / more than {MAX_FILES} files")])
        try:
            found[rel.as_posix()] = path.read_bytes()
        except OSError as exc:
            raise PolicyError([Problem(str(path), 1, "", f"không đọc được / unreadable: {exc}")]) from exc
    return found


def policy_hash(files: Mapping[str, bytes]) -> str:
    """Return the policy hash: SHA-256 over (relative path, bytes) pairs sorted by path."""
    digest = hashlib.sha256()
    for rel in sorted(files):
        name = rel.encode("utf-8")
        data = files[rel]
        digest.update(len(name).to_bytes(8, "big") + name + len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def load_policy(directory: str | Path) -> Policy:
    """Load, validate and compile the policy in ``directory``; raise PolicyError if unusable."""
    root = Path(directory)
    return load_policy_files(read_policy_files(root), directory=root)


# ---------------------------------------------------------------- YAML with line numbers


@dataclass
class _Doc:
    rel: str
    name: str
    node: Node | None
    value: Any


def _line(node: Node | None, loc: Sequence[Any]) -> int:
    """Return the 1-based line of the node a pydantic-style location points to."""
    if node is None:
        return 1
    current = node
    line = node.start_mark.line
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(current, MappingNode):
            for key, value in current.value:
                if isinstance(key, ScalarNode) and key.value == str(part):
                    if last:
                        return key.start_mark.line + 1
                    current = value
                    line = value.start_mark.line
                    break
        elif (isinstance(current, SequenceNode) and isinstance(part, int)
              and not isinstance(part, bool) and 0 <= part < len(current.value)):
            current = current.value[part]
            line = current.start_mark.line
        # parts that match nothing (pydantic's union tags, a missing field) are skipped
    return line + 1


def _child(node: Node | None, loc: Sequence[Any]) -> Node | None:
    """Return the node exactly at ``loc``, or None."""
    current = node
    for part in loc:
        if isinstance(current, MappingNode):
            current = next(
                (v for k, v in current.value if isinstance(k, ScalarNode) and k.value == str(part)), None
            )
        elif isinstance(current, SequenceNode) and isinstance(part, int) and 0 <= part < len(current.value):
            current = current.value[part]
        else:
            return None
    return current


def _field(loc: Sequence[Any]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        else:
            name = str(part)
            # A key with control characters must not split the one-line message.
            if not name.isprintable():
                name = repr(name)
            text += ("." if text else "") + name
    return text


def _inspect(root: Node) -> list[tuple[Node, str]]:
    """Refuse aliases, duplicate keys and extreme nesting before anything is constructed."""
    issues: list[tuple[Node, str]] = []
    seen: set[int] = set()
    reported: set[int] = set()
    stack: list[tuple[Node, int]] = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        if id(node) in seen:
            if id(node) not in reported:
                reported.add(id(node))
                issues.append((node, "không hỗ trợ anchor/alias (&, *, <<) / "
                                     "anchors and aliases are not supported"))
            continue
        seen.add(id(node))
        if depth > MAX_DEPTH:
            issues.append((node, "lồng quá sâu / nested too deeply"))
            continue
        if isinstance(node, MappingNode):
            keys: set[tuple[str, str]] = set()
            for key, value in node.value:
                if isinstance(key, ScalarNode):
                    if (key.tag, key.value) in keys:
                        issues.append((key, f"khóa lặp lại / duplicate key {key.value!r}"))
                    keys.add((key.tag, key.value))
                stack.append((value, depth + 1))
                stack.append((key, depth + 1))
        elif isinstance(node, SequenceNode):
            stack.extend((item, depth + 1) for item in node.value)
    return issues


def _parse(rel: str, name: str, data: bytes) -> tuple[_Doc | None, list[Problem]]:
    if len(data) > MAX_FILE_BYTES:
        return None, [Problem(name, 1, "", f"tệp quá lớn / file larger than {MAX_FILE_BYTES} bytes")]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return None, [Problem(name, line, "", "không phải UTF-8 / not valid UTF-8")]
    loader = _YamlLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return _Doc(rel, name, None, None), []
        issues = _inspect(node)
        if issues:
            return None, [Problem(name, n.start_mark.line + 1, "", msg) for n, msg in issues]
        return _Doc(rel, name, node, loader.construct_document(node)), []
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        message = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        return None, [Problem(name, line, "", f"YAML không hợp lệ / invalid YAML: {message}")]
    except (yaml.YAMLError, RecursionError, ValueError, OverflowError) as exc:
        # e.g. a date like 2026-02-30 makes the constructor raise ValueError
        return None, [Problem(name, 1, "", f"YAML không hợp lệ / invalid YAML: {exc}")]
    finally:
        loader.dispose()


def _validation_problems(doc: _Doc, exc: ValidationError, prefix: Loc = (),
                         base: Node | None = None) -> list[Problem]:
    node = base if base is not None else doc.node
    problems = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if isinstance(p, str | int))
        full = (*prefix, *loc)
        problems.append(Problem(doc.name, _line(node, loc), _field(full), err["msg"]))
    return problems


def _validate(model: type[BaseModel], doc: _Doc) -> tuple[Any, list[Problem]]:
    value = {} if doc.value is None else doc.value
    try:
        return model.model_validate(value), []
    except ValidationError as exc:
        return None, _validation_problems(doc, exc)


# ---------------------------------------------------------------- the whole policy


@dataclass
class _Item:
    spec: Any
    doc: _Doc
    loc: Loc

    @property
    def node(self) -> Node | None:
        return _child(self.doc.node, self.loc)

    def problem(self, sub: Loc, message: str) -> Problem:
        return Problem(self.doc.name, _line(self.node, sub), _field((*self.loc, *sub)), message)


def load_policy_files(files: Mapping[str, bytes], *, directory: str | Path | None = None) -> Policy:
    """Load a policy from {relative path: bytes}; raise PolicyError listing every problem."""
    root = Path(directory) if directory is not None else None

    def display(rel: str) -> str:
        return str(root / rel) if root is not None else rel

    problems: list[Problem] = []
    policy_docs: list[tuple[_Doc, PolicyDocument]] = []
    test_docs: list[tuple[_Doc, TestDocument]] = []
    for rel in sorted(files):
        parts = rel.split("/")
        is_test = len(parts) > 1 and parts[0] == TESTS_DIR
        if len(parts) > 1 and not is_test:
            problems.append(Problem(display(rel), 1, "", "chỉ đọc tệp ở thư mục gốc và tests/ / "
                                                         "only top-level files and tests/ are read"))
            continue
        doc, found = _parse(rel, display(rel), files[rel])
        problems += found
        if doc is None:
            continue
        model: type[BaseModel] = TestDocument if is_test else PolicyDocument
        parsed, found = _validate(model, doc)
        problems += found
        if parsed is not None:
            (test_docs if is_test else policy_docs).append((doc, parsed))  # type: ignore[arg-type]
    if problems:
        raise PolicyError(problems)

    settings, classes, units, scopes, rules = _merge(policy_docs, problems)
    if problems:
        raise PolicyError(problems)
    _check_references(classes, units, problems)
    env = build_env(settings, [i.spec for i in classes], [i.spec for i in units])
    parsed_rules = _parse_rules(rules, env, problems)
    tests, subjects, origins = _parse_tests(test_docs, {i.spec.id for i in rules}, problems)
    if problems:
        raise PolicyError(problems)

    return compile_policy(
        settings=settings,
        data_classes=[i.spec for i in classes],
        units=[i.spec for i in units],
        scopes=[i.spec for i in scopes],
        rules=parsed_rules,
        tests=tests,
        test_subjects=subjects,
        test_origins=origins,
        rule_origins={i.spec.id: (i.doc.name, _line(i.node, ())) for i in rules},
        policy_hash=policy_hash(files),
        files=sorted(files),
        directory=root,
    )


def _merge(docs: list[tuple[_Doc, PolicyDocument]], problems: list[Problem]
           ) -> tuple[Settings, list[_Item], list[_Item], list[_Item], list[_Item]]:
    settings: Settings | None = None
    sections: dict[str, list[_Item]] = {"data_classes": [], "units": [], "scopes": [], "rules": []}
    for doc, parsed in docs:
        if parsed.settings is not None:
            if settings is not None:
                problems.append(Problem(doc.name, _line(doc.node, ("settings",)), "settings",
                                        "settings chỉ được khai báo một lần / settings declared twice"))
            settings = parsed.settings
        for section, items in sections.items():
            for index, spec in enumerate(getattr(parsed, section)):
                items.append(_Item(spec, doc, (section, index)))
    for items in sections.values():
        seen: dict[str, _Item] = {}
        for item in items:
            if item.spec.id in seen:
                first = seen[item.spec.id]
                problems.append(item.problem(("id",), f"id lặp lại / duplicate id {item.spec.id!r} "
                                                      f"(first at {first.doc.name}:{_line(first.node, ())})"))
            seen.setdefault(item.spec.id, item)
    return (settings or Settings(), sections["data_classes"], sections["units"],
            sections["scopes"], sections["rules"])


def _check_references(classes: list[_Item], units: list[_Item], problems: list[Problem]) -> None:
    unit_ids = {i.spec.id for i in units}
    class_ids = {i.spec.id for i in classes}
    for item in classes:
        spec: DataClassSpec = item.spec
        if spec.owner not in unit_ids:
            problems.append(item.problem(("owner",), f"đơn vị không tồn tại / unknown unit {spec.owner!r}"))
    for item in units:
        unit: UnitSpec = item.spec
        used: set[str] = set()
        for index, use in enumerate(unit.uses):
            where = ("uses", index, "data_class")
            if use.data_class not in class_ids:
                problems.append(item.problem(where, f"lớp dữ liệu không tồn tại / unknown data class "
                                                    f"{use.data_class!r}"))
            elif use.data_class in used:
                problems.append(item.problem(where, f"lớp dữ liệu lặp lại / {use.data_class!r} listed twice"))
            used.add(use.data_class)


def _parse_rules(rules: list[_Item], env: Any, problems: list[Problem]
                 ) -> list[tuple[RuleSpec, list[Condition]]]:
    parsed: list[tuple[RuleSpec, list[Condition]]] = []
    for item in rules:
        spec: RuleSpec = item.spec
        conditions, issues = parse_rule_conditions(spec.conditions, spec.subject)
        if not issues:
            issues = check_conditions(conditions, env)
        problems.extend(item.problem(loc, message) for loc, message in issues)
        template_issue = template_problem(spec.explanation, spec.subject) if spec.explanation else None
        if template_issue:
            problems.append(item.problem(("explanation",), template_issue))
        parsed.append((spec, conditions))
    return parsed


def _parse_tests(docs: list[tuple[_Doc, TestDocument]], rule_ids: set[str], problems: list[Problem]
                 ) -> tuple[list[TestCase], list[list[Any]], list[tuple[str, int, tuple[int, ...]]]]:
    tests: list[TestCase] = []
    subjects: list[list[Any]] = []
    origins: list[tuple[str, int, tuple[int, ...]]] = []
    names: set[str] = set()
    total_events = 0
    for doc, parsed in docs:
        for t_index, test in enumerate(parsed.tests):
            item = _Item(test, doc, ("tests", t_index))
            if test.name in names:
                problems.append(item.problem(("name",), f"tên bài kiểm thử lặp lại / duplicate test name "
                                                        f"{test.name!r}"))
            names.add(test.name)
            if test.rule is not None and test.rule not in rule_ids:
                problems.append(item.problem(("rule",), f"quy tắc không tồn tại / unknown rule {test.rule!r}"))
            step_subjects = []
            clock = test.start
            for s_index, step in enumerate(test.steps):
                for e_index, rule_id in enumerate(step.expect):
                    if rule_id not in rule_ids:
                        problems.append(item.problem(("steps", s_index, "expect", e_index),
                                                     f"quy tắc không tồn tại / unknown rule {rule_id!r}"))
                step_subjects.append(_test_subject(item, test, s_index, problems))
                total_events += step.repeat
                clock = _step_end(item, clock, s_index, problems)
            tests.append(test)
            subjects.append(step_subjects)
            origins.append((doc.name, _line(item.node, ()),
                            tuple(_line(item.node, ("steps", i)) for i in range(len(test.steps)))))
    if total_events > MAX_TEST_EVENTS and docs:
        problems.append(Problem(docs[0][0].name, 1, "tests",
                                f"quá nhiều sự kiện kiểm thử / more than {MAX_TEST_EVENTS} test events"))
    return tests, subjects, origins


def _step_end(item: _Item, clock: datetime | None, s_index: int, problems: list[Problem]) -> datetime | None:
    step = item.spec.steps[s_index]
    try:
        start = step.at if step.at is not None else clock + timedelta(seconds=step.after_seconds)
        return start + timedelta(seconds=step.interval_seconds * (step.repeat - 1))
    except (OverflowError, TypeError):
        problems.append(item.problem(("steps", s_index), "thời gian vượt giới hạn / time out of range"))
        return None if step.at is None else step.at


def _test_subject(item: _Item, test: TestCase, s_index: int, problems: list[Problem]) -> Any:
    step = test.steps[s_index]
    here: Loc = ("steps", s_index)
    if step.signal is not None:
        try:
            return MonitoringSignal.model_validate(step.signal)
        except ValidationError as exc:
            problems.extend(_subproblems(item, exc, (*here, "signal")))
            return None
    event = step.event or {}
    for key in ("id", "occurred_at"):
        if key in event or key in test.defaults:
            where = (*here, "event", key) if key in event else ("defaults", key)
            problems.append(item.problem(where, "do trình chạy kiểm thử sinh ra / set by the test runner "
                                                "(use start, at, after_seconds)"))
    merged = {**test.defaults, **event, "id": _PLACEHOLDER_ID, "occurred_at": test.start}
    try:
        return Event.model_validate(merged)
    except ValidationError as exc:
        found = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if isinstance(p, str | int))
            head = loc[0] if loc else None
            if head in event:
                where = (*here, "event", *loc)
            elif head in test.defaults:
                where = ("defaults", *loc)
            else:
                where = (*here, "event", *loc)
            found.append(item.problem(where, err["msg"]))
        problems.extend(found)
        return None


def _subproblems(item: _Item, exc: ValidationError, prefix: Loc) -> list[Problem]:
    return [
        item.problem((*prefix, *(p for p in err["loc"] if isinstance(p, str | int))), err["msg"])
        for err in exc.errors()
    ]
