"""Retention: the trail is never pruned; evidence of ended incidents is kept at least 5 years."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from service.audit import log
from service.audit.models import AuditEntry
from service.config import ConfigError, load_settings
from service.core.jobs import run_job
from service.incidents.models import Incident, IncidentEvidence
from service.reports.jobs import retention_horizon, review_retention


def test_horizon_examples():
    now = datetime(2032, 6, 15, 8, 30, tzinfo=UTC)
    assert retention_horizon(now, 5) == datetime(2027, 6, 15, 8, 30, tzinfo=UTC)
    assert retention_horizon(now, 7) == datetime(2025, 6, 15, 8, 30, tzinfo=UTC)
    leap = datetime(2028, 2, 29, 12, 0, tzinfo=UTC)
    assert retention_horizon(leap, 5) == datetime(2023, 2, 28, 12, 0, tzinfo=UTC)


@given(st.datetimes(min_value=datetime(2030, 1, 1), max_value=datetime(2200, 1, 1),
                    timezones=st.just(UTC)),
       st.integers(min_value=5, max_value=30))
def test_horizon_is_never_less_than_the_years_asked(now, years):
    horizon = retention_horizon(now, years)
    # Nothing younger than `years` full calendar years is ever past the horizon.
    assert horizon <= now - timedelta(days=365 * years)
    assert horizon >= now - timedelta(days=366 * years + 1)
    assert (horizon.month, horizon.hour, horizon.minute) == (now.month, now.hour, now.minute)


@pytest.mark.parametrize("years", [0, 4])
def test_fewer_than_five_years_is_refused(years):
    with pytest.raises(ValueError):
        retention_horizon(datetime(2030, 1, 1, tzinfo=UTC), years)
    with pytest.raises(ConfigError, match="evidence_retention_years"):
        load_settings({"evidence_retention_years": years}, environ={})


def _incident(session, *, closed_at=None, dismissed_at=None, evidence=1) -> Incident:
    incident = Incident(title="Sự cố cũ", origin="report", state="closed" if closed_at else
                        "dismissed" if dismissed_at else "investigating",
                        closed_at=closed_at, dismissed_at=dismissed_at,
                        detected_at=datetime(2020, 1, 1, tzinfo=UTC),
                        created_at=datetime(2020, 1, 1, tzinfo=UTC))
    session.add(incident)
    session.flush()
    for i in range(evidence):
        session.add(IncidentEvidence(incident_id=incident.id, filename=f"bang-chung-{i}.pdf",
                                     size=10, sha256="0" * 64, stored_name=f"{incident.id}-{i}"))
    return incident


def test_review_counts_what_passed_the_horizon_and_deletes_nothing(app, session):
    now = datetime(2033, 3, 1, tzinfo=UTC)
    _incident(session, closed_at=datetime(2027, 2, 1, tzinfo=UTC), evidence=2)  # 6 years: past
    _incident(session, dismissed_at=datetime(2027, 1, 1, tzinfo=UTC))  # past
    _incident(session, closed_at=datetime(2028, 3, 2, tzinfo=UTC))  # 4 years 364 days: kept
    _incident(session)  # still open
    session.commit()
    size = log.tree_size(session)
    entries = session.scalar(select(func.count()).select_from(AuditEntry))
    assert review_retention(session, app.config["SETTINGS"], now) == 3
    session.commit()
    assert session.scalar(select(func.count()).select_from(IncidentEvidence)) == 5
    assert session.scalar(select(func.count()).select_from(Incident)) == 4
    body = json.loads(session.scalars(select(AuditEntry.body).where(
        AuditEntry.kind == "retention.reviewed")).one())["body"]
    assert body == {"horizon": "2028-03-01T00:00:00+00:00", "years": 5,
                    "evidence_past_horizon": 3, "deleted": 0}
    # The trail only grew.
    assert log.tree_size(session) == size + 1
    assert session.scalar(select(func.count()).select_from(AuditEntry)) == entries + 1


def test_retention_job_runs_with_its_clock(app, session):
    _incident(session, closed_at=datetime(2020, 1, 1, tzinfo=UTC))
    session.commit()
    assert run_job(app, "reports.retention_review", now=datetime(2030, 6, 1, tzinfo=UTC))
    body = json.loads(session.scalars(select(AuditEntry.body).where(
        AuditEntry.kind == "retention.reviewed")).one())["body"]
    assert body["evidence_past_horizon"] == 1 and body["deleted"] == 0
