"""Incident form definitions (incident_forms/*.yaml): pydantic models and the loader.

Pure: no Flask, no SQLAlchemy. A bad file raises FormDefinitionError naming the file and the
field (``incident_forms/report.yaml: fields[3] (noticed_at).default: …``).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from service.core.shipped import shipped_dir

FieldType = Literal["text", "textarea", "select", "datetime", "checkboxes", "number", "file"]

# What a field feeds in report_incident; every other field is kept in Incident.form_data only.
FieldRole = Literal[
    "kind",  # select: its option label becomes the incident's title
    "summary",  # text/textarea: what happened
    "detected_at",  # datetime: when it was noticed (starts the 72-hour clock)
    "location",  # text: appended to the title
    "data_classes",  # checkboxes: ids of data classes (policies/data_classes.yaml)
    "affected_people",  # number: roughly how many people are affected
    "personal_data",  # select with options yes / no / unknown
    "evidence",  # file: stored encrypted as the incident's first evidence
]
_ROLE_TYPES: dict[str, tuple[str, ...]] = {
    "kind": ("select",),
    "summary": ("text", "textarea"),
    "detected_at": ("datetime",),
    "location": ("text",),
    "data_classes": ("checkboxes",),
    "affected_people": ("number",),
    "personal_data": ("select",),
    "evidence": ("file",),
}
PERSONAL_DATA_VALUES = {"yes", "no", "unknown"}

Ident = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
Phrase = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class FormDefinitionError(ValueError):
    """A form definition file is missing or invalid; the message names the file and field."""


class LocalText(BaseModel):
    """A text in Vietnamese (source language) and English."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vi: Phrase
    en: Phrase

    def get(self, locale: str) -> str:
        """Return the text in the given language, Vietnamese for anything but English."""
        return self.en if locale == "en" else self.vi


class FieldOption(BaseModel):
    """One choice of a select or checkboxes field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: Ident
    label: LocalText


class FormField(BaseModel):
    """One field of a form: its type, labels, help, whether it is required, its default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Ident
    type: FieldType
    label: LocalText
    help: LocalText | None = None
    required: bool = False
    role: FieldRole | None = None
    section: Literal["main", "more"] = "main"
    options: list[FieldOption] = Field(default_factory=list)
    default: str | int | list[str] | None = None
    max_length: int | None = Field(default=None, ge=1, le=20_000)
    min: int | None = None
    max: int | None = None
    print_lines: int = Field(default=1, ge=1, le=20)

    @model_validator(mode="after")
    def _consistent(self) -> FormField:
        has_choices = self.type in ("select", "checkboxes")
        if has_choices and not self.options:
            raise ValueError(f"options: a {self.type} field needs options")
        if not has_choices and self.options:
            raise ValueError(f"options: only select and checkboxes fields have options, not {self.type}")
        values = [o.value for o in self.options]
        if len(values) != len(set(values)):
            raise ValueError("options: option values must be unique")
        self._check_default(values)
        if self.max_length is not None and self.type not in ("text", "textarea"):
            raise ValueError("max_length: only text and textarea fields have a maximum length")
        if (self.min is not None or self.max is not None) and self.type != "number":
            raise ValueError("min/max: only number fields have bounds")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min: must not be greater than max")
        if self.role is not None and self.type not in _ROLE_TYPES[self.role]:
            allowed = " or ".join(_ROLE_TYPES[self.role])
            raise ValueError(f"role: role {self.role} needs a field of type {allowed}")
        if self.role == "personal_data" and set(values) != PERSONAL_DATA_VALUES:
            raise ValueError("options: the personal_data field has exactly the options yes, no, unknown")
        return self

    def _check_default(self, values: list[str]) -> None:
        default = self.default
        if default is None:
            return
        if self.type == "datetime" and default != "now":
            raise ValueError("default: the only default of a datetime field is 'now'")
        if self.type == "select" and default not in values:
            raise ValueError(f"default: {default!r} is not one of the options")
        if self.type == "checkboxes" and (
            not isinstance(default, list) or not set(default) <= set(values)
        ):
            raise ValueError("default: a checkboxes default is a list of option values")
        if self.type == "number" and (isinstance(default, bool) or not isinstance(default, int)):
            raise ValueError("default: a number field's default is a whole number")
        if self.type == "file":
            raise ValueError("default: a file field has no default")
        if self.type in ("text", "textarea") and not isinstance(default, str):
            raise ValueError("default: a text field's default is text")

    @property
    def effective_max_length(self) -> int | None:
        """Return the maximum length of a text answer (defaults: 300 for text, 5000 for textarea)."""
        if self.type == "text":
            return self.max_length or 300
        if self.type == "textarea":
            return self.max_length or 5000
        return None

    def option_label(self, value: str, locale: str = "vi") -> str:
        """Return the label of an option value, or the value itself when unknown."""
        for option in self.options:
            if option.value == value:
                return option.label.get(locale)
        return value


class FormDefinition(BaseModel):
    """A whole form: id, version, title, introduction and fields in display order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Ident
    version: int = Field(ge=1)
    title: LocalText
    intro: LocalText | None = None
    submit: LocalText | None = None
    fields: list[FormField] = Field(min_length=1, max_length=60)

    @model_validator(mode="after")
    def _unique(self) -> FormDefinition:
        names = [f.name for f in self.fields]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"fields: duplicate field names: {', '.join(duplicates)}")
        roles = [f.role for f in self.fields if f.role]
        twice = sorted({r for r in roles if roles.count(r) > 1})
        if twice:
            raise ValueError(f"fields: a role may be used once; used twice: {', '.join(twice)}")
        if "summary" not in roles:
            raise ValueError("fields: one field must have role summary (what happened)")
        return self

    def by_role(self, role: str) -> FormField | None:
        """Return the field that plays a role, if any."""
        return next((f for f in self.fields if f.role == role), None)


def _describe_location(loc: tuple, data: Any) -> str:
    # ('fields', 3, 'default') -> "fields[3] (noticed_at).default": people find fields by name.
    text = ""
    node = data
    for item in loc:
        if isinstance(item, int):
            text += f"[{item}]"
            node = node[item] if isinstance(node, list) and 0 <= item < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                text += f" ({node['name']})"
        else:
            text += ("." if text else "") + str(item)
            node = node.get(item) if isinstance(node, dict) else None
    return text or "(file)"


def parse_form(text: str, source: str = "<form>") -> FormDefinition:
    """Parse and validate a form definition from YAML text; errors name source and field."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise FormDefinitionError(f"{source}:{where} not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise FormDefinitionError(f"{source}: a form definition is a mapping (id, version, title, fields)")
    try:
        return FormDefinition.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            # Errors raised by our validators carry "field: message"; keep pydantic's location too.
            location = _describe_location(tuple(err["loc"]), data)
            message = err["msg"].removeprefix("Value error, ")
            problems.append(f"{source}: {location}: {message}")
        raise FormDefinitionError("\n".join(problems)) from None


def default_forms_dir() -> Path:
    """Return the form definitions shipped with the code (``incident_forms/`` of the project)."""
    return shipped_dir("incident_forms")


def resolve_forms_dir(directory: Path | str | None = None) -> Path:
    """Return ``directory``, else ``./incident_forms`` if it exists, else the packaged default."""
    if directory is not None:
        return Path(directory)
    local = Path("incident_forms")
    return local if (local / "report.yaml").is_file() else default_forms_dir()


_cache: dict[Path, tuple[float, FormDefinition]] = {}
_cache_lock = threading.Lock()


def load_form(directory: Path | str | None, form_id: str = "report") -> FormDefinition:
    """Load ``<directory>/<form_id>.yaml`` (cached until the file changes)."""
    path = resolve_forms_dir(directory) / f"{form_id}.yaml"
    try:
        mtime = path.stat().st_mtime
        with _cache_lock:
            cached = _cache.get(path)
            if cached and cached[0] == mtime:
                return cached[1]
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FormDefinitionError(f"{path}: cannot read the form definition: {exc.strerror}") from None
    definition = parse_form(text, str(path))
    if definition.id != form_id:
        raise FormDefinitionError(f"{path}: id: is {definition.id!r}, the file name says {form_id!r}")
    with _cache_lock:
        _cache[path] = (mtime, definition)
    return definition
