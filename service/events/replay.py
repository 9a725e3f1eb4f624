"""Replay past events of the trail through a draft policy, changing nothing."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from canhgac_common.events import Event
from service.audit.models import AuditEntry
from service.policy import engine
from service.policy.windows import WindowState


@dataclass
class ReplayHit:
    """A verdict the draft policy would have made on a past entry."""

    seq: int
    occurred_at: str
    rule_id: str
    response: str
    explanation: str


@dataclass
class ReplayReport:
    """What a replay looked at and what it would have flagged."""

    events: int = 0
    skipped: int = 0
    hits: list[ReplayHit] = field(default_factory=list)

    def by_rule(self) -> Counter:
        """Count the hits by rule id."""
        return Counter(hit.rule_id for hit in self.hits)


def _events_since(session: Session, since: datetime) -> Iterator[tuple[int, dict]]:
    last = -1
    while True:
        rows = session.execute(
            select(AuditEntry.seq, AuditEntry.body)
            .where(AuditEntry.kind == "event", AuditEntry.recorded_at >= since, AuditEntry.seq > last)
            .order_by(AuditEntry.seq).limit(2000)
        ).all()
        if not rows:
            return
        for seq, body in rows:
            yield seq, json.loads(body)["body"]
        last = rows[-1][0]


def replay(session: Session, policy: engine.Policy, since: datetime) -> ReplayReport:
    """Run a policy over the trail's events recorded since a time; return the would-be verdicts."""
    report = ReplayReport()
    windows = WindowState()
    for seq, data in _events_since(session, since):
        data.pop("source", None)
        try:
            event = Event.model_validate(data)
        except ValidationError:
            report.skipped += 1
            continue
        report.events += 1
        for verdict in engine.evaluate(engine.enrich(event, policy), policy, windows):
            report.hits.append(ReplayHit(seq, data.get("occurred_at", ""), verdict.rule_id,
                                         str(verdict.response), verdict.explanation))
    return report
