"""Measured effect: a random holdout (保留群) set aside before any contact.

A campaign with ``holdout_share > 0`` has exactly ``round(share * targets)`` of its active
targets drawn at random (seeded, so the draw can be reproduced and checked) and set to
``HOLDOUT``; the dispatcher skips them. The draw happens once, before the first attempt, and
is audited with counts only. The group sizes are stored as PII-free aggregates, so the effect
report (paid rate of the contact group versus the holdout) survives the wipe.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from dialer.campaigns import get_campaign
from kernel import aggregates, audit
from kernel.errors import Conflict, InvalidInput
from kernel.models import Attempt, Person, TargetStatus, utcnow

MAX_SHARE = 0.5


@dataclass(frozen=True)
class HoldoutResult:
    campaign_id: int
    seed: int
    targets: int
    holdout: int
    contact_group: int


def draw_holdout(person_ids: list[int], share: float, seed: int) -> list[int]:
    """The ids set aside: a seeded simple random sample of ``round(share * n)`` ids (pure)."""
    if not 0.0 <= share <= MAX_SHARE:
        raise InvalidInput(f"holdout_share must be between 0 and {MAX_SHARE} (got {share})")
    size = round(share * len(person_ids))
    return sorted(random.Random(seed).sample(sorted(person_ids), size))


def _check_untouched(session: Session, campaign_id: int, assigned_at: datetime | None) -> None:
    if assigned_at is not None:
        raise Conflict(f"campaign {campaign_id}: holdout already assigned")
    attempts = session.scalar(
        select(func.count()).select_from(Attempt).where(Attempt.campaign_id == campaign_id)
    )
    if attempts:
        raise Conflict(f"campaign {campaign_id}: holdout must be assigned before any contact")


def assign_holdout(
    session: Session,
    campaign_id: int,
    *,
    seed: int | None = None,
    actor: str = "system",
    now: datetime | None = None,
) -> HoldoutResult:
    """Draw and record the campaign's holdout (in the caller's transaction)."""
    campaign = get_campaign(session, campaign_id, for_update=True)
    _check_untouched(session, campaign_id, campaign.holdout_assigned_at)
    chosen_seed = seed if seed is not None else random.SystemRandom().randrange(2**31)
    ids = list(
        session.scalars(
            select(Person.id).where(
                Person.campaign_id == campaign_id, Person.status == TargetStatus.ACTIVE
            )
        )
    )
    held = draw_holdout(ids, campaign.holdout_share, chosen_seed)
    for start in range(0, len(held), 1000):
        session.execute(
            update(Person)
            .where(Person.id.in_(held[start : start + 1000]))
            .values(status=TargetStatus.HOLDOUT)
            .execution_options(synchronize_session=False)
        )
    when = now or utcnow()
    campaign.holdout_seed, campaign.holdout_assigned_at = chosen_seed, when
    aggregates.record_targets_loaded(session, campaign_id, when)
    result = HoldoutResult(campaign_id, chosen_seed, len(ids), len(held), len(ids) - len(held))
    _record(session, result, when, actor)
    return result


def _record(session: Session, result: HoldoutResult, at: datetime, actor: str) -> None:
    counts = Counter(
        {
            (aggregates.TOTAL, "holdout.persons"): result.holdout,
            (aggregates.TOTAL, "holdout.contact_group"): result.contact_group,
        }
    )
    aggregates.replace_snapshot(
        session,
        day=aggregates.local_day(at),
        campaign_id=result.campaign_id,
        prefix="holdout.",
        counts=counts,
    )
    audit.record(
        session,
        actor=actor,
        action="campaign.holdout_assigned",
        object_type="campaign",
        object_id=result.campaign_id,
        detail={
            "seed": result.seed,
            "targets": result.targets,
            "holdout": result.holdout,
            "contact_group": result.contact_group,
        },
    )
