"""Admin page of the device register: list, register, revoke. Operations write the audit
entry and the announcement; the view commits once."""

from __future__ import annotations

from flask import Blueprint, Flask, abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user

from service.auth.access import roles_required
from service.core.db import get_session
from service.devices import forms, operations

bp = Blueprint("devices", __name__, url_prefix="/admin/devices")


def _render(status: int = 200, *, form: forms.RegisterDeviceForm | None = None):
    return render_template(
        "admin/devices.html", devices=operations.list_devices(get_session()),
        form=form or forms.RegisterDeviceForm(), revoke_form=forms.RevokeDeviceForm(),
    ), status


@bp.route("/")
@roles_required("admin")
def index():
    """List registered devices and offer to register one."""
    return _render()


@bp.route("/new", methods=["POST"])
@roles_required("admin")
def register():
    """Register an official device."""
    form = forms.RegisterDeviceForm()
    if not form.validate_on_submit():
        for message in forms.form_errors(form):
            flash(message, "error")
        return _render(400, form=form)
    session = get_session()
    try:
        device = operations.register_device(
            session, label=form.label.data, owner_unit=form.owner_unit.data,
            serial=form.serial.data, fs_uuid=form.fs_uuid.data or None,
            vendor=form.vendor.data or None, model=form.model.data or None,
            by=current_user.username)
    except operations.DeviceError as exc:
        session.rollback()
        flash(_("Không thực hiện được: %(reason)s", reason=str(exc)), "error")
        return _render(400, form=form)
    session.commit()
    flash(_("Đã đăng ký thiết bị %(label)s.", label=device.label), "success")
    return redirect(url_for("devices.index"))


@bp.route("/<int:device_id>/revoke", methods=["POST"])
@roles_required("admin")
def revoke(device_id: int):
    """Take a device off the register."""
    form = forms.RevokeDeviceForm()
    if not form.validate_on_submit():
        for message in forms.form_errors(form):
            flash(message, "error")
        return _render(400)
    session = get_session()
    try:
        device = operations.revoke_device(session, device_id, by=current_user.username)
    except operations.DeviceError:
        session.rollback()
        abort(404)
    session.commit()
    flash(_("Đã thu hồi đăng ký thiết bị %(label)s.", label=device.label), "success")
    return redirect(url_for("devices.index"))


def init_app(app: Flask) -> None:
    """Register the device register's pages."""
    app.register_blueprint(bp)
