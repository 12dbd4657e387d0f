"""The wipe (R-11): erase every piece of personal data a campaign held, and certify it.

What goes:

* in the database (:mod:`dialer.wipe_rows`): the campaign's persons, phones and receivables
  deleted; personal columns nulled in every other campaign table, found from the models:
  attempts (notes, promise date and amount, carrier reference), hand-offs (operator and staff
  notes), callback requests, and any future table with ``person_id``/``phone_id`` or
  ``sealed_*`` columns (SMS records). The PII-free rest (channel, outcome code, times) stays,
  as do the :class:`~kernel.models.DailyAggregate` counters. Open work is closed (attempts
  and callbacks cancelled, hand-offs closed) so no worker picks up a row without a person;
* IVR session state in the coordination store (``ivr:<campaign>:*``), TTS audio, letters and
  import rejects (``<var>/{tts,letters,rejects}/campaign-<id>/``) and the campaign's results
  files (``<var>/exports/results_<id>_*``): files overwritten, then unlinked;
* the campaign's wrapped data key (crypto-shredding: any copy of a sealed value left in a
  backup, a WAL segment or a free page can no longer be opened).

Then the storage is compacted: SQLite (``secure_delete`` is on) is checkpointed with
``TRUNCATE`` and vacuumed, PostgreSQL tables are vacuumed. The certificate records what, how
many, how, who and when, with a SHA-256 over its canonical body; it is written in the
erasure's transaction and completed (storage step, end time, final digest) after compaction.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dialer.campaigns import check_move, get_campaign
from dialer.wipe_rows import checkpoint_wal, compact_storage, erase_rows, relax_reference_checks
from kernel import audit
from kernel.coordination import Coordination
from kernel.db import Database
from kernel.errors import Conflict, DunningError, InvalidInput, NotFound
from kernel.models import (
    Campaign,
    CampaignStatus,
    ErasureCertificate,
    ResultsExport,
    utcnow,
)
from kernel.settings import WipeSettings

log = logging.getLogger(__name__)

CERTIFICATE_VERSION = 1
METHOD: tuple[str, ...] = (
    "row_deletion",  # persons, phones, receivables
    "column_nulling",  # personal columns of the campaign's other rows
    "crypto_shredding",  # AES-256-GCM data key destroyed
    "file_overwrite_unlink",
    "coordination_key_deletion",
    "storage_compaction",  # SQLite secure_delete + WAL checkpoint + VACUUM; PostgreSQL VACUUM
)
ACTOR_AUTO = "scheduler:auto-wipe"
SHRED_CHUNK = 1 << 20  # bytes of random data written at a time over a file being erased


def ivr_state_prefix(campaign_id: int) -> str:
    return f"ivr:{campaign_id}:"


FILE_KINDS = ("tts", "letters", "rejects")  # <var>/<kind>/campaign-<id>/


def campaign_file_dirs(var_dir: Path, campaign_id: int) -> list[Path]:
    """Folders that hold a campaign's personal data on disk: TTS audio, letters, and the
    rejects of its imports (when the importer writes them there)."""
    return [var_dir / kind / f"campaign-{campaign_id}" for kind in FILE_KINDS]


def campaign_export_files(var_dir: Path, campaign_id: int) -> list[Path]:
    """Results files written by ``dunning export results`` into ``<var>/exports``."""
    return sorted((var_dir / "exports").glob(f"results_{campaign_id}_*"))


@dataclass(frozen=True)
class WipeResult:
    certificate_id: int
    campaign_id: int
    body: dict[str, Any]
    sha256: str


# --------------------------------------------------------------------------- outside the database


def _shred_file(path: Path) -> None:
    if path.is_symlink():  # never follow a link out of the campaign's folder
        path.unlink()
        return
    remaining = path.stat().st_size
    with path.open("r+b") as handle:
        while remaining > 0:
            chunk = min(remaining, SHRED_CHUNK)
            handle.write(os.urandom(chunk))
            remaining -= chunk
        handle.flush()
        os.fsync(handle.fileno())
    path.unlink()


def _shred_tree(folder: Path) -> int:
    if not folder.is_dir() or folder.is_symlink():
        return 0
    erased = 0
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        else:
            _shred_file(path)
            erased += 1
    folder.rmdir()
    return erased


def erase_outside_database(
    coordination: Coordination, var_dir: Path, campaign_id: int
) -> dict[str, int]:
    tts, letters, rejects = campaign_file_dirs(var_dir, campaign_id)
    exports = campaign_export_files(var_dir, campaign_id)
    for path in exports:
        _shred_file(path)
    return {
        "ivr_state_keys": coordination.delete_state_prefix(ivr_state_prefix(campaign_id)),
        "tts_files": _shred_tree(tts),
        "letter_files": _shred_tree(letters),
        "reject_files": _shred_tree(rejects),
        "export_files": len(exports),
    }


# --------------------------------------------------------------------------- certificate


def certificate_digest(body: dict[str, Any]) -> str:
    """SHA-256 over the canonical JSON of the body (sorted keys, no spaces, UTF-8)."""
    canonical = json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _certificate_body(
    campaign: Campaign, previous: CampaignStatus, actor: str, reason: str | None
) -> dict[str, Any]:
    return {
        "version": CERTIFICATE_VERSION,
        "campaign_id": campaign.id,
        "campaign_name": campaign.name,
        "from_status": previous.value,
        "forced": reason is not None,
        "forced_reason": reason,
        "method": list(METHOD),
        "erased_by": actor,
    }


def _has_export(session: Session, campaign_id: int) -> bool:
    query = select(ResultsExport.id).where(ResultsExport.campaign_id == campaign_id).limit(1)
    return session.scalar(query) is not None


def _check_allowed(
    session: Session, campaign: Campaign, force: bool, reason: str | None
) -> str | None:
    """The forced reason (``None`` for a regular wipe), or an error saying why not."""
    if campaign.status is CampaignStatus.WIPED:
        raise Conflict(f"campaign {campaign.id} is already wiped (dunning certificate)")
    if force:
        if not reason or not reason.strip():
            raise InvalidInput("--force needs --reason: why are the results not exported first?")
        return reason.strip()
    if campaign.status is not CampaignStatus.EXPORTED or not _has_export(session, campaign.id):
        raise Conflict(
            f"campaign {campaign.id} is {campaign.status.value}, results not exported: export "
            "them first (dunning export results), or wipe with --force --reason"
        )
    check_move(campaign.status, CampaignStatus.WIPED)
    return None


# --------------------------------------------------------------------------- the use case


def _erase(
    session: Session,
    coordination: Coordination,
    var_dir: Path,
    campaign_id: int,
    actor: str,
    force: bool,
    reason: str | None,
) -> tuple[ErasureCertificate, dict[str, Any]]:
    relax_reference_checks(session)  # before the transaction's first write
    campaign = get_campaign(session, campaign_id, for_update=True)
    forced_reason = _check_allowed(session, campaign, force, reason)
    previous = campaign.status
    erased = erase_rows(session, campaign_id)
    erased |= erase_outside_database(coordination, var_dir, campaign_id)
    erased["data_keys"] = 1 if campaign.wrapped_data_key else 0
    campaign.wrapped_data_key = None
    campaign.status, campaign.wiped_at = CampaignStatus.WIPED, utcnow()
    body = _certificate_body(campaign, previous, actor, forced_reason) | {"erased": erased}
    certificate = ErasureCertificate(
        campaign_id=campaign_id,
        issued_by=actor[:64],
        forced_reason=forced_reason,
        body=body,
        body_sha256=certificate_digest(body),
    )
    session.add(certificate)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="campaign.wiped_forced" if forced_reason else "campaign.wiped",
        object_type="campaign",
        object_id=campaign_id,
        detail={"certificate_id": certificate.id, "from": previous.value, "to": "wiped"},
    )
    return certificate, body


def _complete_certificate(
    database: Database, certificate_id: int, body: dict[str, Any], actor: str
) -> str:
    with database.unit_of_work() as session:
        certificate = session.get(ErasureCertificate, certificate_id)
        assert certificate is not None
        certificate.body = body
        certificate.body_sha256 = certificate_digest(body)
        audit.record(
            session,
            actor=actor,
            action="erasure.certified",
            object_type="erasure_certificate",
            object_id=certificate_id,
            detail={"campaign_id": certificate.campaign_id},
        )
        return certificate.body_sha256


def wipe_campaign(
    database: Database,
    coordination: Coordination,
    var_dir: Path,
    campaign_id: int,
    *,
    actor: str,
    force: bool = False,
    reason: str | None = None,
    vacuum_full: bool = False,
) -> WipeResult:
    """Erase the campaign's personal data and return its erasure certificate.

    A regular wipe needs an exported campaign; ``force`` (with a ``reason``, kept in the
    certificate and audited as ``campaign.wiped_forced``) wipes a campaign in any status.
    ``vacuum_full``: PostgreSQL rewrites the affected tables (see :func:`compact_storage`).
    """
    started = utcnow()
    with database.unit_of_work() as session:
        certificate, body = _erase(
            session, coordination, var_dir, campaign_id, actor, force, reason
        )
        certificate_id = certificate.id
    body = body | {"storage": compact_storage(database, full=vacuum_full)}
    body |= {"started_at": started.isoformat(), "finished_at": utcnow().isoformat()}
    digest = _complete_certificate(database, certificate_id, body, actor)
    checkpoint_wal(database)
    log.info("campaign %d wiped, certificate %d", campaign_id, certificate_id)
    return WipeResult(certificate_id, campaign_id, body, digest)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class StoredCertificate:
    id: int
    campaign_id: int
    issued_at: datetime
    issued_by: str
    body: dict[str, Any]
    sha256: str

    @property
    def intact(self) -> bool:
        """Whether the stored body still hashes to the stored digest."""
        return certificate_digest(self.body) == self.sha256


def latest_certificate(database: Database, campaign_id: int) -> StoredCertificate:
    with database.read_only() as session:
        row = session.scalars(
            select(ErasureCertificate)
            .where(ErasureCertificate.campaign_id == campaign_id)
            .order_by(ErasureCertificate.id.desc())
            .limit(1)
        ).first()
        if row is None:
            raise NotFound(f"campaign {campaign_id} has no erasure certificate")
        return StoredCertificate(
            row.id, row.campaign_id, row.issued_at, row.issued_by, dict(row.body), row.body_sha256
        )


# --------------------------------------------------------------------------- automatic wipe


def campaigns_due(session: Session, cutoff: datetime) -> list[int]:
    """Exported campaigns whose latest results export is at or before ``cutoff``."""
    latest = func.max(ResultsExport.exported_at)
    rows = session.execute(
        select(Campaign.id, Campaign.exported_at, latest)
        .join(ResultsExport, ResultsExport.campaign_id == Campaign.id)
        .where(Campaign.status == CampaignStatus.EXPORTED)
        .group_by(Campaign.id, Campaign.exported_at)
        .order_by(Campaign.id)
    ).all()
    due = []
    for campaign_id, exported_at, last_export in rows:
        moments = [moment for moment in (exported_at, last_export) if moment is not None]
        if moments and max(moments) <= cutoff:
            due.append(int(campaign_id))
    return due


def wipe_due_campaigns(
    database: Database,
    coordination: Coordination,
    var_dir: Path,
    settings: WipeSettings,
    now: datetime,
    *,
    actor: str = ACTOR_AUTO,
) -> list[WipeResult]:
    """The scheduler job: wipe every exported campaign past the grace period (if enabled).

    One campaign's failure is logged (campaign id and error class only) and does not stop
    the others; it is tried again on the next run.
    """
    if not settings.auto_wipe_after_export:
        return []
    if now.tzinfo is None:
        raise ValueError("now must carry a time zone")
    with database.read_only() as session:
        due = campaigns_due(session, now - timedelta(days=settings.grace_days))
    return _wipe_each(database, coordination, var_dir, due, actor, settings.postgres_vacuum_full)


def _wipe_each(
    database: Database,
    coordination: Coordination,
    var_dir: Path,
    campaign_ids: Sequence[int],
    actor: str,
    full: bool,
) -> list[WipeResult]:
    results = []
    for campaign_id in campaign_ids:
        try:
            result = wipe_campaign(
                database, coordination, var_dir, campaign_id, actor=actor, vacuum_full=full
            )
            results.append(result)
        except DunningError as error:
            log.warning("auto-wipe of campaign %d failed: %s", campaign_id, type(error).__name__)
    return results
