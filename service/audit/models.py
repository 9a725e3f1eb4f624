"""Audit trail storage: entries (leaves), complete-subtree hashes, the head and checkpoints."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from service.core.db import Base, UTCDateTime

# SQLite only makes INTEGER PRIMARY KEY an alias of the rowid; BigInteger elsewhere.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class AuditEntry(Base):
    """One leaf of the append-only log: canonical JSON body and its RFC 6962 leaf hash."""

    __tablename__ = "audit_entry"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(48))
    body: Mapped[str] = mapped_column(Text)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    # Search columns copied from the body when it is appended; the body stays the truth.
    actor: Mapped[str | None] = mapped_column(String(255))
    host: Mapped[str | None] = mapped_column(String(255))
    action: Mapped[str | None] = mapped_column(String(32))
    path: Mapped[str | None] = mapped_column(Text)
    data_class: Mapped[str | None] = mapped_column(String(64))
    incident_id: Mapped[int | None] = mapped_column(Integer)
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    event_id: Mapped[str | None] = mapped_column(String(36))
    # Entries of kind "event" only: the first 64 bits of SHA-256 of event_id as a signed
    # integer (log.event_key). Ingest deduplicates on it, then on the whole id; a unique index on the
    # random 36-character ids cost half the insert rate (bench/README.md).
    event_key: Mapped[int | None] = mapped_column(BigInteger)

    # Every index is paid for by each append; each here serves queries (checked 2026-12-07):
    # kind_seq the trail's kind filter, warm-up, replay and "latest policy version"; actor the
    # search by person; recorded_at the monthly reports and warm-up; incident_id an incident's
    # entries; event_key dedupe. occurred_at had one and no query could use it (the search
    # filters on coalesce(occurred_at, recorded_at)): dropped in 0009.
    __table_args__ = (
        Index("ix_audit_entry_kind_seq", "kind", "seq"),
        Index("ix_audit_entry_actor", "actor"),
        Index("ix_audit_entry_recorded_at", "recorded_at"),
        # Partial: only entries of an incident are looked up by it (always with "= id", which
        # implies the condition), and events never carry one: they do not pay for the index.
        Index("ix_audit_entry_incident_id", "incident_id",
              sqlite_where=text("incident_id IS NOT NULL"),
              postgresql_where=text("incident_id IS NOT NULL")),
        Index("ix_audit_entry_event_key", "event_key",
              sqlite_where=text("event_key IS NOT NULL"),
              postgresql_where=text("event_key IS NOT NULL")),
    )


class MerkleNode(Base):
    """The hash of a complete subtree: level L, index i covers leaves [i·2^L, (i+1)·2^L)."""

    __tablename__ = "merkle_node"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    index: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditHead(Base):
    """The single row holding the tree size; locking it serializes appends."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigId)
    # The tree's border at ``size`` (8-byte size, then its subtree hashes, highest first), kept
    # by every append so the next one need not rebuild it; derived data, recomputed when absent.
    border: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class Checkpoint(Base):
    """A signed checkpoint (C2SP signed note) of the tree at some size."""

    __tablename__ = "checkpoint"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(BigId)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_checkpoint_size", "size"),)


class MonitorState(Base):
    """How far the monitor has re-verified the trail: a size and the compact range at it.

    The border hashes are recomputed by the monitor from entry bodies, never copied from
    merkle_node, so the next stretch is checked against what the monitor itself computed.
    """

    __tablename__ = "audit_monitor_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    verified_size: Mapped[int] = mapped_column(BigId)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    border: Mapped[str] = mapped_column(Text)  # base64 hashes, one per line, left to right
    verified_at: Mapped[datetime] = mapped_column(UTCDateTime())
    failed_size: Mapped[int | None] = mapped_column(BigId)  # the checkpoint that last failed


class WitnessedLog(Base):
    """Another log this service witnesses, and the latest checkpoint it cosigned for it."""

    __tablename__ = "witnessed_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    origin: Mapped[str] = mapped_column(String(255), unique=True)
    verifier_key: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigId, default=0)
    root_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    note: Mapped[str | None] = mapped_column(Text)  # the log's checkpoint with our cosignature
    added_at: Mapped[datetime] = mapped_column(UTCDateTime())
    cosigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class LogWitness(Base):
    """A witness of this log: where to submit checkpoints and the key its cosignatures use."""

    __tablename__ = "log_witness"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    url: Mapped[str] = mapped_column(Text)  # submission prefix; add-checkpoint is appended
    verifier_key: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigId, default=0)  # latest size it cosigned, as we know
    added_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    refused_size: Mapped[int | None] = mapped_column(BigId)  # last checkpoint refused as inconsistent


class Cosignature(Base):
    """A witness's cosignature line (tlog-cosignature, cosignature/v1) on a stored checkpoint."""

    __tablename__ = "cosignature"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    checkpoint_id: Mapped[int] = mapped_column(Integer, ForeignKey("checkpoint.id"))
    witness_id: Mapped[int] = mapped_column(Integer, ForeignKey("log_witness.id"))
    line: Mapped[str] = mapped_column(Text)
    cosigned_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("checkpoint_id", "witness_id"),)
