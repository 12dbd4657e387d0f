"""The append-only, hash-chained audit log.

Each event stores the hash of its predecessor and its own hash over a canonical encoding of
(previous hash, time, actor, action, object type, object id, detail). Changing, inserting or
deleting any event breaks the chain at that point, which :func:`verify_chain` reports. The
log records who did what to which object, never personal values: :func:`record` refuses
detail values that look like names, phone numbers or free text.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from kernel.errors import InvalidInput
from kernel.models import AuditEvent, utcnow

GENESIS_HASH = "0" * 64
DetailValue = str | int | float | bool | None
_SAFE_TEXT = re.compile(r"^[A-Za-z0-9_.:/\-]{0,64}$")
_LONG_DIGITS = re.compile(r"\d{7,}")
_CHAIN_LOCK_KEY = 0x6A756E6B  # PostgreSQL advisory lock id serializing appends


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    events_checked: int
    head_hash: str
    first_bad_id: int | None = None
    problem: str | None = None


def _check_detail(detail: Mapping[str, DetailValue]) -> dict[str, DetailValue]:
    for key, value in detail.items():
        if not _SAFE_TEXT.match(key):
            raise InvalidInput(f"audit detail key {key!r} is not a plain identifier")
        if isinstance(value, str) and (not _SAFE_TEXT.match(value) or _LONG_DIGITS.search(value)):
            raise InvalidInput(
                f"audit detail {key!r} must be a code or id, not free text or personal data"
            )
        if not isinstance(value, str | int | float | bool | type(None)):
            raise InvalidInput(f"audit detail {key!r} has an unsupported type")
    return dict(detail)


def _check_identifier(name: str, value: str) -> None:
    if not _SAFE_TEXT.match(value) or _LONG_DIGITS.search(value):
        raise InvalidInput(f"audit {name} {value!r} must be a system identifier")


def event_hash(
    prev_hash: str,
    occurred_at: datetime,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    detail: Mapping[str, DetailValue],
) -> str:
    canonical = json.dumps(
        [
            prev_hash,
            occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
            actor,
            action,
            object_type,
            object_id,
            dict(sorted(detail.items())),
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _lock_chain(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHAIN_LOCK_KEY})


def _head_hash(session: Session) -> str:
    latest = session.scalars(select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1))
    return latest.first() or GENESIS_HASH


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: str | int,
    detail: Mapping[str, DetailValue] | None = None,
) -> AuditEvent:
    """Append one event to the chain in the caller's transaction."""
    for name, value in (("actor", actor), ("action", action), ("object type", object_type)):
        _check_identifier(name, value)
    if isinstance(object_id, str):
        _check_identifier("object id", object_id)
    object_key = str(object_id)
    clean = _check_detail(detail or {})
    _lock_chain(session)
    prev = _head_hash(session)
    occurred_at = utcnow()
    event = AuditEvent(
        occurred_at=occurred_at,
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=object_key,
        detail=clean,
        prev_hash=prev,
        hash=event_hash(prev, occurred_at, actor, action, object_type, object_key, clean),
    )
    session.add(event)
    session.flush()
    return event


def iter_events(session: Session, batch: int = 1000) -> Iterator[AuditEvent]:
    last_id = 0
    while True:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.id > last_id).order_by(AuditEvent.id).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last_id = rows[-1].id


def verify_chain(session: Session) -> ChainReport:
    """Recompute every hash in order; report the first event where the chain breaks."""
    expected_prev = GENESIS_HASH
    count = 0
    for event in iter_events(session):
        count += 1
        if event.prev_hash != expected_prev:
            return ChainReport(False, count, expected_prev, event.id, "link to previous broken")
        recomputed = event_hash(
            event.prev_hash,
            event.occurred_at,
            event.actor,
            event.action,
            event.object_type,
            event.object_id,
            event.detail,
        )
        if recomputed != event.hash:
            return ChainReport(False, count, expected_prev, event.id, "content does not match hash")
        expected_prev = event.hash
    return ChainReport(True, count, expected_prev)
