"""A removable device the commune registered as official."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from service.core.db import Base, UTCDateTime, utcnow


class RegisteredDevice(Base):
    """An official USB stick (or other removable medium) and who registered or revoked it.

    ``serial_key`` and ``fs_uuid_key`` are the normalised forms events are matched on
    (``operations.normalize_identity``); the other columns keep what the admin typed.
    """

    __tablename__ = "registered_device"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(String(128))
    owner_unit: Mapped[str] = mapped_column(String(64))
    serial: Mapped[str] = mapped_column(String(128))
    serial_key: Mapped[str] = mapped_column(String(128), index=True)
    fs_uuid: Mapped[str | None] = mapped_column(String(128))
    fs_uuid_key: Mapped[str | None] = mapped_column(String(128), index=True)
    vendor: Mapped[str | None] = mapped_column(String(128))
    model: Mapped[str | None] = mapped_column(String(128))
    registered_by: Mapped[str] = mapped_column(String(64))
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_by: Mapped[str | None] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @property
    def is_revoked(self) -> bool:
        """Return whether the device was taken off the register."""
        return self.revoked_at is not None
