"""Web wiring: CSRF, Babel (Vietnamese first), time formatting, navigation, error pages."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from flask import (
    Flask,
    current_app,
    has_request_context,
    jsonify,
    render_template,
    request,
    session,
)
from flask_babel import Babel, get_translations
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError, CSRFProtect

from canhgac_common.pii.mask import mask_pii
from service.auth.access import wants_json

csrf = CSRFProtect()
babel = Babel()
LANGUAGES = ("vi", "en")
# Catalogs live in service/translations/<lang>/LC_MESSAGES/messages.{po,mo}.
TRANSLATIONS_DIR = Path(__file__).resolve().parent.parent / "translations"


def select_locale() -> str:
    """Return the interface language: the user's choice, else Vietnamese."""
    if not has_request_context():
        return "vi"  # mails, PDFs and jobs outside a request: the first language
    chosen = session.get("lang")
    return chosen if chosen in LANGUAGES else "vi"


def return_path() -> str:
    """Return where the language switch should lead back to: this page, if it can be fetched.

    A page rendered in answer to a POST (a token just created, a refused form) has no GET
    route of its own, so the switch leads home rather than to a 405.
    """
    if request.method == "GET":
        return request.full_path.rstrip("?")
    from werkzeug.exceptions import HTTPException

    try:
        current_app.url_map.bind_to_environ(request.environ).match(request.path, method="GET")
    except HTTPException:
        return "/"
    return request.path


def local_time(value: datetime | None, with_seconds: bool = False, *,
               zone: ZoneInfo | None = None) -> str:
    """Format an aware UTC datetime for people, in the commune's time zone (dd/mm/yyyy HH:MM).

    A caller formatting many times passes the ``zone`` it looked up once.
    """
    if value is None:
        return "—"
    zone = zone or ZoneInfo(current_app.config["SETTINGS"].timezone)
    fmt = "%d/%m/%Y %H:%M:%S" if with_seconds else "%d/%m/%Y %H:%M"
    return value.astimezone(zone).strftime(fmt)


def local_date(value: datetime | None) -> str:
    """Format an aware UTC datetime as a date in the commune's time zone (dd/mm/yyyy)."""
    if value is None:
        return "—"
    zone = ZoneInfo(current_app.config["SETTINGS"].timezone)
    return value.astimezone(zone).strftime("%d/%m/%Y")


def iso_utc(value: datetime | None) -> str:
    """Return an aware datetime as RFC 3339 UTC with a Z, for <time datetime> and scripts."""
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def b64(value: bytes | None) -> str:
    """Return bytes in standard base64, as checkpoints show hashes."""
    import base64

    return base64.b64encode(value).decode() if value else ""


def clock_text(seconds: float) -> str:
    """Format a span as HH:MM:SS, with whole days in front ("2 ngày 03:04:05").

    static/app.js formats the same way when it keeps the clock running.
    """
    total = int(abs(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    if days:
        text = _("%(d)s ngày", d=days) + " " + text
    return text


def _template_gettext(message: str) -> str:
    """Translate a template's message once per language for the process (labels.remembered_words)."""
    from service.web.labels import remembered_words

    return remembered_words(message, lambda: get_translations().ugettext(message))


def init_app(app: Flask) -> None:
    """Register CSRF protection, Babel, template helpers, error pages, web and admin views."""
    from service.admin import views as admin_views
    from service.web import labels, nav, views

    csrf.init_app(app)
    babel.init_app(
        app,
        locale_selector=select_locale,
        default_locale="vi",
        default_timezone=app.config["SETTINGS"].timezone,
        # Absolute, so it does not depend on app.root_path (which is service/ today).
        default_translation_directories=str(TRANSLATIONS_DIR),
    )
    app.jinja_env.install_gettext_callables(
        gettext=_template_gettext,
        ngettext=lambda s, p, n: get_translations().ungettext(s, p, n),
        pgettext=lambda c, s: get_translations().upgettext(c, s),
        npgettext=lambda c, s, p, n: get_translations().unpgettext(c, s, p, n),
        newstyle=True,
    )
    app.jinja_env.filters["local_time"] = local_time
    app.jinja_env.filters["local_date"] = local_date
    app.jinja_env.filters["iso_utc"] = iso_utc
    app.jinja_env.filters["clock_text"] = clock_text
    app.jinja_env.filters["b64"] = b64
    app.jinja_env.filters["label"] = labels.label
    app.jinja_env.filters["labels"] = labels.labels
    app.jinja_env.filters["pii_summary"] = labels.pii_summary
    app.jinja_env.globals["option_tags"] = labels.option_tags
    # Agent ids, actors and hosts stored before ingest masked identifiers (issue #15, item 1).
    app.jinja_env.filters["mask_pii"] = mask_pii
    app.jinja_env.globals["LANGUAGES"] = LANGUAGES
    app.jinja_env.globals["current_locale"] = select_locale
    app.jinja_env.globals["return_path"] = return_path
    app.jinja_env.globals["nav_items"] = nav.nav_items
    app.jinja_env.globals["nav_link"] = nav.link
    app.jinja_env.globals["record_link"] = nav.record_link
    app.jinja_env.globals["NAV"] = {
        "incident_report": nav.INCIDENT_REPORT, "incident_mine": nav.INCIDENT_MINE,
        "incident_list": nav.INCIDENT_LIST,
        "incident_detail": nav.INCIDENT_DETAIL, "alert_queue": nav.ALERT_QUEUE,
        "monthly_reports": nav.MONTHLY_REPORTS,
    }
    app.register_blueprint(views.bp)
    app.register_blueprint(admin_views.bp)

    @app.errorhandler(CSRFError)
    def _csrf_error(exc):
        if wants_json():
            return jsonify(error="csrf", detail=exc.description), 400
        return render_template("error.html", code=400, message=exc.description), 400

    for code in (400, 401, 403, 404, 405, 409, 413, 429, 500):

        def _handler(exc, code=code):
            # Keep what the exception says in headers (a 405's Allow, RFC 9110 15.5.6).
            headers = [(name, value) for name, value in getattr(exc, "get_headers", lambda: [])()
                       if name.lower() != "content-type"]
            if wants_json():
                return jsonify(error=getattr(exc, "name", "error"), status=code), code, headers
            return render_template("error.html", code=code, message=None), code, headers

        app.register_error_handler(code, _handler)
