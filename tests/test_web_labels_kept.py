"""Select boxes and policy names are kept between requests, per policy in force and language."""

from __future__ import annotations

import dataclasses

from service.web import labels


def _policy_state(app):
    return app.extensions["canhgac.policy_state"]


def _renamed(policy, code: str, new_label: str):
    classes = dict(policy.data_classes)
    classes[code] = classes[code].model_copy(update={"label": new_label})
    return dataclasses.replace(policy, data_classes=classes)


def test_a_reloaded_policy_renames_its_classes_at_once(app):
    state = _policy_state(app)
    before = state.policy
    with app.test_request_context("/audit/"):
        first = dict(labels.choices("data_class"))
        assert labels.label("an_sinh", "data_class") == first["an_sinh"]
        assert labels.choices("data_class") == sorted(first.items(), key=lambda kv: labels.fold(kv[1]))
        state.policy = _renamed(before, "an_sinh", "Danh sách an sinh   (đổi tên)")
        try:
            assert dict(labels.choices("data_class"))["an_sinh"] == "Danh sách an sinh (đổi tên)"
            assert labels.label("an_sinh", "data_class") == "Danh sách an sinh (đổi tên)"
        finally:
            state.policy = before
        assert dict(labels.choices("data_class"))["an_sinh"] == first["an_sinh"]


def test_kept_choices_follow_the_readers_language(app):
    with app.test_request_context("/audit/"):
        from flask import session

        vietnamese = dict(labels.choices("action"))
        session["lang"] = "en"
        from flask_babel import refresh

        refresh()
        english = dict(labels.choices("action"))
    assert vietnamese["open"] != english["open"]
    assert english["open"] == "Open"


def test_a_caller_changing_its_copy_changes_nothing_kept(app):
    with app.test_request_context("/audit/"):
        pairs = labels.choices("entry_kind")
        pairs.clear()
        assert labels.choices("entry_kind")
