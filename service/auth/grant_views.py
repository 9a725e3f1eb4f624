"""The page of role grants: leaders and police see what waits; leaders (or a second admin) decide."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user

from service.auth import grants
from service.auth.access import roles_required
from service.auth.operations import AccountError
from service.core.db import get_session, utcnow
from service.web.forms import Form

bp = Blueprint("grants", __name__, url_prefix="/grants")


class GrantActionForm(Form):
    """Approve, refuse or withdraw a grant: the CSRF token is the whole form."""


@bp.route("/")
@roles_required("leader", "police", "admin")
def index():
    """List the grants waiting for a decision and the latest decided ones."""
    return _page()


def _page(status: int = 200):
    session = get_session()
    now = utcnow()
    return render_template("auth/grants.html", pending=grants.open_grants(session, now),
                           recent=grants.recent_grants(session), now=now, form=GrantActionForm(),
                           may_decide=grants.may_decide), status


def _act(grant_id: int, operation, done: str):
    form = GrantActionForm()
    if not form.validate_on_submit():
        flash(_("Phiên biểu mẫu đã hết hạn; vui lòng thử lại."), "error")
        return _page(400)
    session = get_session()
    try:
        grant = operation(session, grant_id, by=current_user._get_current_object())
    except LookupError:
        session.rollback()
        abort(404)
    except AccountError as exc:
        session.rollback()
        flash(_("Không thực hiện được: %(reason)s", reason=str(exc)), "error")
        return _page(400)
    session.commit()
    flash(done % {"id": grant.id, "name": grant.user.username}, "success")
    return redirect(url_for("grants.index"))


@bp.route("/<int:grant_id>/approve", methods=["POST"])
@roles_required("leader", "admin")
def approve(grant_id: int):
    """Approve a grant someone else asked for, for someone else: the role applies at once."""
    return _act(grant_id, grants.approve, _("Đã phê duyệt đề nghị số %(id)s cho %(name)s."))


@bp.route("/<int:grant_id>/refuse", methods=["POST"])
@roles_required("leader", "admin")
def refuse(grant_id: int):
    """Refuse a grant."""
    return _act(grant_id, grants.refuse, _("Đã từ chối đề nghị số %(id)s cho %(name)s."))


@bp.route("/<int:grant_id>/withdraw", methods=["POST"])
@roles_required("admin")
def withdraw(grant_id: int):
    """Withdraw one's own grant request."""
    return _act(grant_id, grants.withdraw, _("Đã rút lại đề nghị số %(id)s cho %(name)s."))
