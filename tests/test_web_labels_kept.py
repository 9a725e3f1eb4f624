"""Select boxes and policy names are kept between requests, per policy in force and language."""

from __future__ import annotations

import dataclasses

from service.web import labels
from tests.conftest import csrf_token_from


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


def test_option_tags_mark_the_chosen_code_and_escape_names(app):
    state = _policy_state(app)
    before = state.policy
    with app.test_request_context("/audit/"):
        pairs = labels.choices("data_class")
        html = str(labels.option_tags("data_class", "an_sinh"))
        assert html.count("<option ") == len(pairs)
        assert html.count(" selected") == 1
        assert '<option value="an_sinh" selected>' in html
        assert " selected" not in str(labels.option_tags("data_class", "khong_co"))
        state.policy = _renamed(before, "an_sinh", 'Hộ "nghèo" <b>&</b>')
        try:
            renamed = str(labels.option_tags("data_class"))
            assert ">Hộ &#34;nghèo&#34; &lt;b&gt;&amp;&lt;/b&gt;</option>" in renamed
            assert " selected" not in renamed
        finally:
            state.policy = before
        assert str(labels.option_tags("data_class", "an_sinh")) == html


def test_option_tags_follow_the_readers_language(app):
    with app.test_request_context("/audit/"):
        from flask import session
        from flask_babel import refresh

        vietnamese = str(labels.option_tags("action", "open"))
        session["lang"] = "en"
        refresh()
        english = str(labels.option_tags("action", "open"))
    assert '<option value="open" selected>Open</option>' in english
    assert '<option value="open" selected>Open</option>' not in vietnamese


def test_words_kept_between_requests_stay_per_language(client, make_user, login):
    make_user("congan1", "police")
    login("congan1")
    for lang in ("vi", "en", "vi", "en"):
        token = csrf_token_from(client, "/audit/")
        assert client.post(f"/lang/{lang}", data={"csrf_token": token, "next": "/audit/"}).status_code == 302
        page = client.get("/audit/").get_data(as_text=True)
        english = ("<h1>Audit trail</h1>", '<option value="open">Open</option>', ">Time</th>")
        vietnamese = ("<h1>Nhật ký kiểm toán</h1>", '<option value="open">Mở</option>',
                      ">Thời gian</th>")
        shown, hidden = (english, vietnamese) if lang == "en" else (vietnamese, english)
        assert all(words in page for words in shown), lang
        assert not any(words in page for words in hidden), lang


def test_words_translated_from_data_stay_bounded(app, monkeypatch):
    monkeypatch.setattr(labels, "_WORDS_LIMIT", 10)
    monkeypatch.setattr(labels, "_kept_words", {})
    with app.test_request_context("/audit/"):
        from flask_babel import get_locale

        get_locale()
        for n in range(25):
            assert labels.remembered_words(f"word {n}", lambda n=n: f"từ {n}") == f"từ {n}"
        assert len(labels._kept_words) <= 10
