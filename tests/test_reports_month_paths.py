"""Months in report paths: out-of-range years answer 404 (or 400), never 500."""

from __future__ import annotations

import pytest

from service.reports import monthly
from tests.conftest import csrf_token_from

# Year 0 does not exist; 0001-01 starts before year 1 in UTC (the commune is east of UTC);
# 9999-12 ends in year 10000. Each used to raise inside datetime and answer 500.
EDGE_MONTHS = ("0000-12", "0001-01", "9999-12", "0000-01")
SUFFIXES = ("", "/report.csv", "/report.pdf", "/part")


@pytest.mark.parametrize("month", EDGE_MONTHS)
def test_edge_months_are_a_report_error(month):
    with pytest.raises(monthly.ReportError):
        monthly.month_period(month, "Asia/Ho_Chi_Minh", 8)


def test_edge_months_in_report_paths_answer_404_not_500(app, make_user, login):
    make_user("lanh.dao", "leader", unit="lanh_dao")
    make_user("cong.an", "police", unit="cong_an")
    answers = {}
    for username in ("lanh.dao", "cong.an"):
        client = app.test_client()
        assert login(username, c=client).status_code == 302
        for month in EDGE_MONTHS:
            for suffix in SUFFIXES:
                path = f"/reports/{month}{suffix}"
                answers[(username, path)] = client.get(path).status_code
        # The part form's POST takes the same path check.
        token = csrf_token_from(client, "/reports/")
        for month in EDGE_MONTHS:
            answers[(username, f"POST /reports/{month}/part")] = client.post(
                f"/reports/{month}/part", data={"csrf_token": token, "done_text": "x"}).status_code
    bad = {key: code for key, code in answers.items() if code not in (400, 403, 404)}
    assert not bad, bad
    # The leader sees 404 on every report path (403 is only the leader's part form).
    assert all(code == 404 for (user, path), code in answers.items()
               if user == "lanh.dao" and not path.endswith("/part"))
    assert all(code == 404 for (user, path), code in answers.items() if user == "cong.an")
