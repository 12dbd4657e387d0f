"""The wipe (R-11): erase every piece of personal data a campaign held, and certify it.

What goes: persons, phones and receivables (rows deleted), the personal fields of attempts,
hand-offs and callback requests (nulled: the PII-free rest stays for the reports), IVR
session state in the coordination store, the campaign's TTS audio and letter files, and the
campaign's data key (crypto-shredding: any copy of the sealed values left in backups or free
pages can no longer be opened). Then SQLite is checkpointed and vacuumed (``secure_delete``
is on), PostgreSQL vacuumed. The certificate records what, how many, how, who and when, with
a SHA-256 over its canonical body.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from dialer.campaigns import check_move, get_campaign
from kernel import audit
from kernel.coordination import Coordination
from kernel.db import Database
from kernel.errors import Conflict, InvalidInput
from kernel.models import (
    Attempt,
    CallbackRequest,
    CampaignStatus,
    ErasureCertificate,
    HandOff,
    Person,
    Phone,
    Receivable,
    utcnow,
)

METHOD = (
    "rows deleted or personal columns nulled in one transaction; campaign data key destroyed "
    "(AES-256-GCM crypto-shredding); files overwritten then unlinked; coordination keys "
    "deleted; database vacuumed (SQLite secure_delete + WAL checkpoint)"
)
PII_TABLES = ("persons", "phones", "receivables", "attempts", "handoffs", "callback_requests")


def ivr_state_prefix(campaign_id: int) -> str:
    return f"ivr:{campaign_id}:"


def campaign_file_dirs(var_dir: Path, campaign_id: int) -> list[Path]:
    """Folders that may hold a campaign's personal data on disk (TTS audio, letters)."""
    return [var_dir / kind / f"campaign-{campaign_id}" for kind in ("tts", "letters")]


@dataclass(frozen=True)
class WipeResult:
    certificate_id: int
    body: dict[str, Any]
    sha256: str


def _count(session: Session, model: type[Any], campaign_id: int) -> int:
    query = select(func.count()).select_from(model).where(model.campaign_id == campaign_id)
    return int(session.scalar(query) or 0)


def _erase_rows(session: Session, campaign_id: int) -> dict[str, int]:
    counts = {
        "persons": _count(session, Person, campaign_id),
        "phones": _count(session, Phone, campaign_id),
        "receivables": _count(session, Receivable, campaign_id),
        "attempts_scrubbed": _count(session, Attempt, campaign_id),
        "handoffs_scrubbed": _count(session, HandOff, campaign_id),
        "callbacks_scrubbed": _count(session, CallbackRequest, campaign_id),
    }
    session.execute(
        update(Attempt)
        .where(Attempt.campaign_id == campaign_id)
        .values(person_id=None, phone_id=None, sealed_notes=None, carrier_ref=None)
    )
    session.execute(
        update(HandOff)
        .where(HandOff.campaign_id == campaign_id)
        .values(person_id=None, sealed_notes=None)
    )
    session.execute(
        update(CallbackRequest)
        .where(CallbackRequest.campaign_id == campaign_id)
        .values(person_id=None)
    )
    for model in (Receivable, Phone, Person):
        session.execute(delete(model).where(model.campaign_id == campaign_id))
    return counts


def _shred_file(path: Path) -> None:
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.write(os.urandom(size))
        handle.flush()
        os.fsync(handle.fileno())
    path.unlink()


def _erase_files(var_dir: Path, campaign_id: int) -> int:
    erased = 0
    for folder in campaign_file_dirs(var_dir, campaign_id):
        if not folder.exists():
            continue
        for path in sorted(folder.rglob("*"), reverse=True):
            if path.is_file():
                _shred_file(path)
                erased += 1
            elif path.is_dir():
                path.rmdir()
        folder.rmdir()
    return erased


def _certificate_body(
    campaign_id: int, name: str, counts: dict[str, int], actor: str, reason: str | None
) -> dict[str, Any]:
    return {
        "campaign_id": campaign_id,
        "campaign_name": name,
        "erased": counts,
        "method": METHOD,
        "erased_by": actor,
        "forced_reason": reason,
    }


def _seal_certificate(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _check_allowed(status: CampaignStatus, force: bool, reason: str | None) -> None:
    if status is CampaignStatus.WIPED:
        raise Conflict("campaign is already wiped")
    if force:
        if not reason or not reason.strip():
            raise InvalidInput("--force needs --reason: why are results not exported first?")
        return
    if status is not CampaignStatus.EXPORTED:
        raise Conflict(
            f"campaign is {status.value}: export the results first "
            "(dunning export results), or wipe with --force --reason"
        )
    check_move(status, CampaignStatus.WIPED)


def wipe_campaign(
    database: Database,
    coordination: Coordination,
    var_dir: Path,
    campaign_id: int,
    *,
    actor: str,
    force: bool = False,
    reason: str | None = None,
) -> WipeResult:
    """Erase the campaign's personal data and return the erasure certificate."""
    started = utcnow()
    with database.unit_of_work() as session:
        campaign = get_campaign(session, campaign_id, for_update=True)
        _check_allowed(campaign.status, force, reason)
        counts = _erase_rows(session, campaign_id)
        counts["ivr_state_keys"] = coordination.delete_state_prefix(ivr_state_prefix(campaign_id))
        counts["files"] = _erase_files(var_dir, campaign_id)
        counts["data_keys"] = 1 if campaign.wrapped_data_key else 0
        campaign.wrapped_data_key = None
        previous = campaign.status
        campaign.status = CampaignStatus.WIPED
        campaign.wiped_at = utcnow()
        body = _certificate_body(
            campaign_id, campaign.name, counts, actor, reason if force else None
        )
        body.update(started_at=started.isoformat(), finished_at=campaign.wiped_at.isoformat())
        body["from_status"] = previous.value
        digest = _seal_certificate(body)
        certificate = ErasureCertificate(
            campaign_id=campaign_id,
            issued_by=actor,
            forced_reason=body["forced_reason"],
            body=body,
            body_sha256=digest,
        )
        session.add(certificate)
        session.flush()
        audit.record(
            session,
            actor=actor,
            action="campaign.wiped_forced" if force else "campaign.wiped",
            object_type="campaign",
            object_id=campaign_id,
            detail={"certificate_id": certificate.id, "persons": counts["persons"]},
        )
        certificate_id = certificate.id
    compact_storage(database)
    return WipeResult(certificate_id, body, digest)


def compact_storage(database: Database) -> None:
    """Physically drop freed pages so erased values do not linger in the database files."""
    engine = database.engine
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            connection.exec_driver_sql("VACUUM")
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in PII_TABLES:
            connection.execute(text(f"VACUUM {table}"))
