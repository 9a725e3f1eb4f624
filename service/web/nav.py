"""The navigation bar by role, and links to pages other subsystems may or may not have yet.

A link is shown only when its endpoint is registered and the endpoint's own access
declaration (``@roles_required``) lets the current user in, so the menu never offers a page
that answers 403 and keeps working while other subsystems are still being built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from flask import current_app, request, url_for
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from service.auth.access import ANY_USER, PUBLIC

# Endpoint names other subsystems may choose; the first one registered wins.
INCIDENT_REPORT = ("incidents.report", "incidents.new", "incidents.report_form", "incidents.create")
INCIDENT_MINE = ("incidents.mine", "incidents.my_reports")
INCIDENT_LIST = ("incidents.index", "incidents.list", "incidents.list_incidents",
                 "incidents.incidents")
INCIDENT_DETAIL = ("incidents.detail", "incidents.show", "incidents.view", "incidents.incident")
ALERT_QUEUE = ("incidents.alerts", "incidents.alert_queue", "incidents.alert_list")
MONTHLY_REPORTS = ("reports.index", "reports.monthly", "reports.monthly_list", "reports.list")


@dataclass(frozen=True)
class NavItem:
    """One menu entry: a label and the endpoints that may serve it."""

    label: object
    endpoints: Sequence[str]
    roles: frozenset[str] | None = None  # narrow further than the endpoint's access, to declutter


NAV: tuple[NavItem, ...] = (
    NavItem(_l("Tổng quan"), ("web.dashboard",)),
    NavItem(_l("Báo cáo sự cố"), INCIDENT_REPORT, frozenset({"official", "police", "leader"})),
    NavItem(_l("Báo cáo của tôi"), INCIDENT_MINE, frozenset({"official"})),
    NavItem(_l("Sự cố"), INCIDENT_LIST),
    NavItem(_l("Cảnh báo"), ALERT_QUEUE),
    NavItem(_l("Nhật ký kiểm toán"), ("audit.search",)),
    NavItem(_l("Báo cáo tháng"), MONTHLY_REPORTS),
    NavItem(_l("Người dùng"), ("admin.users",)),
    NavItem(_l("Mã truy cập"), ("admin.tokens",)),
    NavItem(_l("Thiết bị giám sát"), ("admin.agents",)),
    NavItem(_l("USB công vụ"), ("devices.index",)),
    NavItem(_l("Thông báo"), ("admin.notifications",)),
    NavItem(_l("Chính sách"), ("admin.policy",)),
)


def first_endpoint(candidates: Sequence[str]) -> str | None:
    """Return the first of the candidate endpoints that the app has registered."""
    views = current_app.view_functions
    return next((name for name in candidates if name in views), None)


def may_open(endpoint: str) -> bool:
    """Return whether the current user passes the endpoint's declared access."""
    view = current_app.view_functions.get(endpoint)
    access = getattr(view, "access", None)
    if access is None:
        return False  # undeclared routes are never advertised
    if access == PUBLIC:
        return True
    if not current_user.is_authenticated:
        return False
    if access == ANY_USER:
        return True
    return isinstance(access, frozenset) and current_user.has_role(*access)


def link(candidates: Sequence[str] | str, **values) -> str | None:
    """Return a URL for the first registered candidate the user may open, else None."""
    if isinstance(candidates, str):
        candidates = (candidates,)
    endpoint = first_endpoint(candidates)
    if endpoint is None or not may_open(endpoint):
        return None
    return url_for(endpoint, **values)


def record_link(candidates: Sequence[str], record_id: int) -> str | None:
    """Return the URL of a detail page whose rule takes one id, whatever it names the id."""
    endpoint = first_endpoint(candidates)
    if endpoint is None or not may_open(endpoint):
        return None
    for rule in current_app.url_map.iter_rules(endpoint):
        if len(rule.arguments) == 1:
            return url_for(endpoint, **{next(iter(rule.arguments)): record_id})
    return None


def nav_items() -> list[dict]:
    """Return the menu for the current user: label, URL and whether it is the current page."""
    if not current_user.is_authenticated:
        return []
    items = []
    for item in NAV:
        if item.roles is not None and not current_user.has_role(*item.roles):
            continue
        endpoint = first_endpoint(item.endpoints)
        if endpoint is None or not may_open(endpoint):
            continue
        blueprint, _, view = endpoint.partition(".")
        is_current = request.endpoint == endpoint or (
            # Sub-pages (a user's page under "Users") keep their section highlighted.
            blueprint == "admin" and (request.endpoint or "").startswith(f"admin.{view.rstrip('s')}")
        )
        items.append({"label": item.label, "url": url_for(endpoint), "is_current": is_current})
    return items
