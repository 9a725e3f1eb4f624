"""Hot reload in the running service: a good change takes effect, a bad one never unprotects."""

from __future__ import annotations

import shutil
import time

import pytest
from sqlalchemy import select

from service.audit.models import AuditEntry
from service.core.db import new_session
from service.incidents.models import Alert
from service.notify.models import OutboxMessage
from service.policy.loader import default_policy_dir


@pytest.fixture
def settings_overrides(settings_overrides, tmp_path):
    policy_dir = tmp_path / "policies"
    shutil.copytree(default_policy_dir(), policy_dir)
    return {**settings_overrides, "policy_dir": policy_dir, "policy_reload": True}


def _wait(predicate, seconds=15.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def _kinds(app):
    with app.app_context():
        s = new_session()
        try:
            return [e.kind for e in s.scalars(select(AuditEntry).order_by(AuditEntry.seq))]
        finally:
            s.close()


def test_change_takes_effect_and_its_hash_enters_the_trail(app, settings_overrides):
    processor = app.extensions["canhgac.processor"]
    processor.start()
    try:
        first = processor.state.policy.hash
        assert _kinds(app).count("policy.loaded") == 1
        rules = settings_overrides["policy_dir"] / "rules.yaml"
        rules.write_text(rules.read_text(encoding="utf-8").replace(
            'title: "Sao chép dữ liệu cá nhân ra thiết bị lưu trữ di động chưa đăng ký"',
            'title: "Sao chép dữ liệu cá nhân ra USB hoặc ổ cứng rời"', 1), encoding="utf-8")
        assert _wait(lambda: processor.state.policy.hash != first)
        assert _wait(lambda: _kinds(app).count("policy.loaded") == 2)
    finally:
        processor.stop_watching()


def test_broken_file_keeps_last_good_version_and_raises_an_alert(app, settings_overrides):
    processor = app.extensions["canhgac.processor"]
    processor.start()
    try:
        good = processor.state.policy.hash
        (settings_overrides["policy_dir"] / "rules.yaml").write_text("rules:\n  - id: [\n",
                                                                    encoding="utf-8")
        assert _wait(lambda: processor.state.last_error is not None)
        assert processor.state.policy.hash == good
        assert _wait(lambda: "policy.rejected" in _kinds(app))
        with app.app_context():
            s = new_session()
            alert = s.scalar(select(Alert).where(Alert.rule_id == "policy.rejected"))
            s.close()
        assert alert is not None and "rules.yaml" in alert.explanation
    finally:
        processor.stop_watching()


def test_windows_survive_a_restart(app, settings_overrides):
    """Counters are rebuilt from the trail: a restarted service still sees the burst."""
    import uuid
    from datetime import UTC, datetime, timedelta

    from canhgac_common.events import Event
    from service import create_app
    from service.config import load_settings
    from service.events.operations import ingest_events

    now = datetime.now(UTC)
    events = [Event.model_validate({
        "id": str(uuid.uuid4()), "occurred_at": (now - timedelta(minutes=30 - i)).isoformat(),
        "host": "PC-CA-01", "actor": "ca.a", "unit": "cong_an", "action": "delete",
        "object": {"path": f"C:\\DuLieu\\DanCu\\f{i}.xlsx"}}) for i in range(3)]
    with app.app_context():
        s = new_session()
        ingest_events(s, events, source="t", processor=app.extensions["canhgac.processor"])
        s.commit()
        s.close()
    restarted = create_app(load_settings({**settings_overrides, "policy_reload": False}, environ={}))
    processor = restarted.extensions["canhgac.processor"]
    with restarted.app_context():
        s = new_session(restarted)
        assert processor.warm_up(s) == 3
        s.close()
    assert len(processor.windows) > 0
    restarted.extensions["canhgac.engine"].dispose()


def _restart(settings_overrides):
    from service import create_app
    from service.config import load_settings

    app = create_app(load_settings({**settings_overrides, "policy_reload": False}, environ={}))
    app.extensions["canhgac.processor"].start()
    return app


def _security_subjects(app) -> list[str]:
    with app.app_context():
        s = new_session()
        try:
            return [m.subject for m in s.scalars(
                select(OutboxMessage).where(OutboxMessage.kind == "security.change")
                .order_by(OutboxMessage.id))]
        finally:
            s.close()


def test_a_policy_changed_while_stopped_is_announced_at_start(app, settings_overrides, make_user):
    make_user("chu_tich", "leader")
    app.extensions["canhgac.processor"].start()  # version 1 recorded
    # The service stops: its watcher must not see the edit below (under load it could record
    # and announce the change itself before the restarted service does).
    app.extensions["canhgac.processor"].stop_watching()
    rules = settings_overrides["policy_dir"] / "rules.yaml"
    first = app.extensions["canhgac.processor"].state.policy.hash
    rules.write_text(rules.read_text(encoding="utf-8").replace(
        'title: "Xóa hàng loạt tệp dữ liệu cá nhân"', 'title: "Xóa nhiều tệp dữ liệu cá nhân"', 1),
        encoding="utf-8")
    restarted = _restart(settings_overrides)  # the files changed while the service was down
    try:
        assert _security_subjects(restarted) == [
            "[Canh Gác] Thay đổi quyền: Chính sách phát hiện đang áp dụng khác phiên bản được ghi lần trước"]
        with restarted.app_context():
            s = new_session()
            body = s.scalar(select(OutboxMessage.body))
            s.close()
        now = restarted.extensions["canhgac.processor"].state.policy.hash
        assert now != first and first[:16] in body and now[:16] in body
        again = _restart(settings_overrides)  # same files: nothing new to say
        assert len(_security_subjects(again)) == 1
        again.extensions["canhgac.engine"].dispose()
    finally:
        restarted.extensions["canhgac.engine"].dispose()


def test_a_broken_policy_at_start_runs_the_default_and_raises_an_alert(app, settings_overrides):
    (settings_overrides["policy_dir"] / "rules.yaml").write_text("rules:\n  - id: [\n", encoding="utf-8")
    restarted = _restart(settings_overrides)
    try:
        processor = restarted.extensions["canhgac.processor"]
        assert processor.state.policy is not None and processor.state.last_error
        with restarted.app_context():
            s = new_session()
            alert = s.scalar(select(Alert).where(Alert.rule_id == "policy.rejected"))
            s.close()
        assert alert is not None and "mặc định" in alert.explanation and "rules.yaml" in alert.explanation
    finally:
        restarted.extensions["canhgac.engine"].dispose()


@pytest.fixture
def two_processes(app, settings_overrides):
    """Yield the processors of a primary and a secondary server process (core/workers.py), started."""
    from service import create_app
    from service.config import load_settings

    primary = app.extensions["canhgac.processor"]
    primary.start()
    second = create_app(load_settings(settings_overrides, environ={}))
    secondary = second.extensions["canhgac.processor"]
    secondary.start(is_primary=False)
    yield primary, secondary
    primary.stop_watching()
    secondary.stop_watching()
    second.extensions["canhgac.engine"].dispose()


def test_with_two_processes_a_change_takes_effect_in_both_and_is_announced_once(
        app, settings_overrides, make_user, two_processes):
    make_user("chu_tich", "leader")
    primary, secondary = two_processes
    first = primary.state.policy.hash
    rules = settings_overrides["policy_dir"] / "rules.yaml"
    rules.write_text(rules.read_text(encoding="utf-8").replace(
        'title: "Xóa hàng loạt tệp dữ liệu cá nhân"', 'title: "Xóa nhiều tệp dữ liệu cá nhân"', 1),
        encoding="utf-8")
    assert _wait(lambda: primary.state.policy.hash != first
                 and secondary.state.policy.hash == primary.state.policy.hash)
    assert _wait(lambda: _kinds(app).count("policy.loaded") == 2)
    assert _wait(lambda: len(_security_subjects(app)) == 1)
    time.sleep(1.0)  # anything the secondary would add comes within the debounce
    assert _kinds(app).count("policy.loaded") == 2
    assert _security_subjects(app) == [
        "[Canh Gác] Thay đổi quyền: Chính sách phát hiện đã được thay đổi và đang áp dụng"]


def test_with_two_processes_a_broken_change_is_recorded_once(app, settings_overrides, two_processes):
    primary, secondary = two_processes
    good = primary.state.policy.hash
    (settings_overrides["policy_dir"] / "rules.yaml").write_text("rules:\n  - id: [\n",
                                                                encoding="utf-8")
    assert _wait(lambda: primary.state.last_error and secondary.state.last_error)
    assert primary.state.policy.hash == secondary.state.policy.hash == good
    assert _wait(lambda: "policy.rejected" in _kinds(app))
    time.sleep(1.0)
    assert _kinds(app).count("policy.rejected") == 1
