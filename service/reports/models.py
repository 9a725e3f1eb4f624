"""Monthly report parts filed by each unit, and the reminders already sent about them."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, Date, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.core.db import Base, UTCDateTime

PART_FIELDS = ("done_text", "not_done_text", "difficulties_text", "causes_text", "proposals_text")


class UnitReportPart(Base):
    """What one unit reports for one month (plan VII: done, not done, difficulties, causes, proposals)."""

    __tablename__ = "unit_report_part"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    unit: Mapped[str] = mapped_column(String(64))
    month: Mapped[str] = mapped_column(String(7))  # "YYYY-MM", the month reported on
    done_text: Mapped[str] = mapped_column(Text, default="")
    not_done_text: Mapped[str] = mapped_column(Text, default="")
    difficulties_text: Mapped[str] = mapped_column(Text, default="")
    causes_text: Mapped[str] = mapped_column(Text, default="")
    proposals_text: Mapped[str] = mapped_column(Text, default="")
    # The first filing decides lateness; later amendments keep it and set amended_at.
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime())
    submitted_by: Mapped[str] = mapped_column(String(64))
    amended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    is_late: Mapped[bool] = mapped_column(Boolean, default=False)
    text_sha256: Mapped[str] = mapped_column(String(64))

    __table_args__ = (UniqueConstraint("unit", "month", name="uq_unit_report_part_unit_month"),)


class ReportReminder(Base):
    """A reminder (or due notice) sent for a month, at most one per kind, unit and local day."""

    __tablename__ = "report_reminder"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    month: Mapped[str] = mapped_column(String(7))
    kind: Mapped[str] = mapped_column(String(16))  # "part" (to a unit) | "due" (to police, leaders)
    unit: Mapped[str] = mapped_column(String(64))  # "" for the due notice
    sent_on: Mapped[date] = mapped_column(Date)  # local calendar day
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recipients: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        UniqueConstraint("month", "kind", "unit", "sent_on", name="uq_report_reminder_once"),
        Index("ix_report_reminder_month", "month"),
    )
