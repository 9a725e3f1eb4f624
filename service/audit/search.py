"""Search the trail by actor, host, path, data class, action, time range and incident."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import Select, func, select

from canhgac_common.pii.mask import mask_pii
from service.audit.models import AuditEntry

FIELD_NAMES = {"since": _l("Từ ngày"), "until": _l("Đến ngày"), "actor": _l("Người thực hiện"),
               "host": _l("Máy"), "path_contains": _l("Đường dẫn chứa"), "data_class": _l("Loại dữ liệu"),
               "action": _l("Hành động"), "kind": _l("Loại mục")}


# Letters that a Vietnamese mark (or đ) can hide behind once folded; wildcards in the SQL pattern.
LOOSE_LETTERS = frozenset("aeiouyd")
MAX_PATH_CANDIDATES = 5000


def _like_escape(ch: str) -> str:
    return "\\" + ch if ch in "%_\\" else ch


def _field(name: str) -> str:
    return str(FIELD_NAMES[name])


@dataclass(frozen=True)
class SearchFilter:
    """A trail filter; every field optional, combined with AND.

    ``since`` (inclusive) and ``until`` (exclusive) bound when the recorded thing happened: the
    event's own ``occurred_at`` when it has one, else the entry's ``recorded_at``. ``path_contains``
    matches case-insensitively (Windows paths are). The search columns are copies made at append
    time for finding entries; the entry body is the evidence.
    """

    since: datetime | None = None
    until: datetime | None = None
    actor: str | None = None
    host: str | None = None
    path_contains: str | None = None
    data_class: str | None = None
    action: str | None = None
    incident_id: int | None = None
    kind: str | None = None
    # Filled by with_matches(): the stored actors and hosts the typed text matches, ignoring
    # case and Vietnamese diacritics ("nguyen" finds "Nguyễn"); None means "match exactly".
    actor_matches: tuple[str, ...] | None = None
    host_matches: tuple[str, ...] | None = None
    path_matches: tuple[str, ...] | None = None

    def with_matches(self, session) -> SearchFilter:
        """Return this filter with actor and host matched loosely against the stored names."""
        from service.web.labels import fold

        found: dict[str, tuple[str, ...]] = {}
        for name, column in (("actor", AuditEntry.actor), ("host", AuditEntry.host)):
            needle = fold(getattr(self, name))
            if needle:
                stored = session.scalars(select(column).where(column.is_not(None)).distinct())
                found[f"{name}_matches"] = tuple(v for v in stored if needle in fold(v))
        needle = fold(self.path_contains)
        if needle:
            # Paths are too many to fold all: SQL narrows them with a pattern where every letter
            # that can carry a Vietnamese mark is a wildcard ("dan cu" → "%d_n c_%", which finds
            # "Dân cư"), then the candidates are folded and compared here.
            pattern = "%" + "".join("_" if ch in LOOSE_LETTERS else _like_escape(ch)
                                    for ch in needle) + "%"
            candidates = session.scalars(
                select(AuditEntry.path).where(AuditEntry.path.ilike(pattern, escape="\\"))
                .distinct().limit(MAX_PATH_CANDIDATES + 1)).all()
            if len(candidates) <= MAX_PATH_CANDIDATES:  # else: plain case-insensitive search
                found["path_matches"] = tuple(v for v in candidates if needle in fold(v))
        return replace(self, **found)

    @classmethod
    def from_strings(cls, timezone: str, **raw) -> SearchFilter:
        """Build a filter from form or CLI strings; dates without offset are local time."""
        values: dict = {}
        for name in ("actor", "host", "path_contains", "data_class", "action", "kind"):
            value = (raw.get(name) or "").strip()
            if "\x00" in value:  # PostgreSQL text cannot hold NUL: refuse, do not fail
                raise ValueError(_("%(field)s: có ký tự không hợp lệ.", field=_field(name)))
            if value and name in ("actor", "host", "path_contains"):
                # The columns hold masked text, and the search itself is written to the trail.
                value = mask_pii(value)
            if value:
                values[name] = value[:512]
        for name in ("since", "until"):
            value = (raw.get(name) or "").strip()
            if value:
                try:
                    parsed = datetime.fromisoformat(value)
                except ValueError as exc:
                    raise ValueError(_("%(field)s: “%(value)s” không phải ngày hợp lệ (viết theo dạng năm-tháng-ngày, ví dụ 2026-12-01).",
                                       field=_field(name), value=value[:40])) from exc
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=ZoneInfo(timezone))
                try:
                    values[name] = parsed.astimezone(UTC)
                except OverflowError as exc:  # year 1 east of UTC, year 9999 west of it
                    raise ValueError(_("%(field)s: ngày “%(value)s” nằm ngoài khoảng cho phép.",
                                       field=_field(name), value=value[:40])) from exc
        incident = raw.get("incident_id")
        if incident not in (None, ""):
            try:
                values["incident_id"] = int(incident)
            except (TypeError, ValueError) as exc:
                raise ValueError(_("Sự cố số: phải là một số.")) from exc
            if not 0 <= values["incident_id"] < 2**31:  # the column is a 32-bit integer
                raise ValueError(_("Sự cố số: không có sự cố số này."))
        if "since" in values and "until" in values and values["since"] >= values["until"]:
            raise ValueError(_("“Từ ngày” phải trước “Đến ngày”."))
        return cls(**values)

    def describe(self) -> dict:
        """Return the filter as JSON-ready data (for the audit entry of the search)."""
        return {k: (v.isoformat() if isinstance(v, datetime) else v)
                for k, v in asdict(self).items() if v is not None and not k.endswith("_matches")}

    def apply(self, query: Select) -> Select:
        """Add this filter's conditions to a query over AuditEntry."""
        e = AuditEntry
        if self.since or self.until:
            happened = func.coalesce(e.occurred_at, e.recorded_at, type_=e.recorded_at.type)
            if self.since:
                query = query.where(happened >= self.since)
            if self.until:
                query = query.where(happened < self.until)
        if self.actor_matches is not None:
            query = query.where(e.actor.in_(self.actor_matches))
        elif self.actor:
            query = query.where(e.actor == self.actor)
        if self.host_matches is not None:
            query = query.where(e.host.in_(self.host_matches))
        elif self.host:
            query = query.where(e.host == self.host)
        if self.path_matches is not None:
            query = query.where(e.path.in_(self.path_matches))
        elif self.path_contains:
            query = query.where(e.path.icontains(self.path_contains, autoescape=True))
        if self.data_class:
            query = query.where(e.data_class == self.data_class)
        if self.action:
            query = query.where(e.action == self.action)
        if self.incident_id is not None:
            query = query.where(e.incident_id == self.incident_id)
        if self.kind:
            query = query.where(e.kind == self.kind)
        return query


def search_query(flt: SearchFilter, *, newest_first: bool = True) -> Select:
    """Return the query for entries matching a filter (newest first unless told otherwise)."""
    order = AuditEntry.seq.desc() if newest_first else AuditEntry.seq
    return flt.apply(select(AuditEntry)).order_by(order)
