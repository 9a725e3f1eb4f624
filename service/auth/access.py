"""Access control: one decorator that names the roles, and the registry the matrix test reads."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from flask import abort, request
from flask_login import current_user

PUBLIC = "public"  # no login (login page, static files, health)
TOKEN = "token"  # noqa: S105 - an access kind, not a secret; ingest bearer token, not a session
ANY_USER = "any_user"  # any logged-in user

# view function qualname -> frozenset of roles, or PUBLIC / TOKEN / ANY_USER, or
# (TOKEN, roles): a bearer token or a session holding one of the roles
ACCESS: dict[str, frozenset[str] | str | tuple[str, frozenset[str]]] = {}


def _key(func: Callable) -> str:
    return f"{func.__module__}.{func.__qualname__}"


def wants_json() -> bool:
    """Return whether the caller reads JSON: an /api/ path, or JSON preferred over HTML in Accept."""
    if request.path.startswith("/api/") or request.blueprint == "api":
        return True
    accept = request.accept_mimetypes
    return (accept.best_match(("text/html", "application/json")) == "application/json"
            and accept["application/json"] > 0)


def roles_required(*roles: str) -> Callable:
    """Allow the view only to logged-in users holding one of the named roles."""
    allowed = frozenset(roles)

    def decorate(func: Callable) -> Callable:
        ACCESS[_key(func)] = allowed or ANY_USER

        @wraps(func)
        def wrapper(*args, **kwargs):
            if not current_user.is_authenticated:
                from flask import redirect, url_for

                if wants_json():
                    abort(401)
                return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
            if allowed and not current_user.has_role(*allowed):
                abort(403)
            return func(*args, **kwargs)

        wrapper.access = ACCESS[_key(func)]  # type: ignore[attr-defined]
        return wrapper

    return decorate


def public(func: Callable) -> Callable:
    """Mark a view as reachable without login."""
    ACCESS[_key(func)] = PUBLIC
    func.access = PUBLIC  # type: ignore[attr-defined]
    return func


def token_required(func: Callable) -> Callable:
    """Mark a view as authenticated by an ingest token (checked inside the view)."""
    ACCESS[_key(func)] = TOKEN
    func.access = TOKEN  # type: ignore[attr-defined]
    return func


def token_or_roles(*roles: str) -> Callable:
    """Mark a view as open to a bearer token or a session with one of the roles (checked inside).

    Neither is a redirect to the login page: machines read these routes, so they answer 401.
    """
    allowed = frozenset(roles)

    def decorate(func: Callable) -> Callable:
        ACCESS[_key(func)] = (TOKEN, allowed)
        func.access = ACCESS[_key(func)]  # type: ignore[attr-defined]
        return func

    return decorate
