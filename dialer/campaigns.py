"""Campaign life cycle: draft -> ready -> running <-> paused -> completed -> exported -> wiped."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kernel import audit
from kernel.errors import Conflict, NotFound
from kernel.models import Attempt, AttemptStatus, Campaign, CampaignStatus, Person, utcnow

TRANSITIONS: dict[CampaignStatus, frozenset[CampaignStatus]] = {
    CampaignStatus.DRAFT: frozenset({CampaignStatus.READY}),
    CampaignStatus.READY: frozenset({CampaignStatus.RUNNING, CampaignStatus.DRAFT}),
    CampaignStatus.RUNNING: frozenset({CampaignStatus.PAUSED, CampaignStatus.COMPLETED}),
    CampaignStatus.PAUSED: frozenset({CampaignStatus.RUNNING, CampaignStatus.COMPLETED}),
    CampaignStatus.COMPLETED: frozenset({CampaignStatus.EXPORTED}),
    CampaignStatus.EXPORTED: frozenset({CampaignStatus.WIPED}),
    CampaignStatus.WIPED: frozenset(),
}

STATUS_LABELS_JA: dict[CampaignStatus, str] = {
    CampaignStatus.DRAFT: "下書き",
    CampaignStatus.READY: "準備完了",
    CampaignStatus.RUNNING: "実行中",
    CampaignStatus.PAUSED: "一時停止",
    CampaignStatus.COMPLETED: "完了",
    CampaignStatus.EXPORTED: "結果出力済",
    CampaignStatus.WIPED: "消去済",
}


def can_move(current: CampaignStatus, target: CampaignStatus) -> bool:
    return target in TRANSITIONS[current]


def check_move(current: CampaignStatus, target: CampaignStatus) -> None:
    if not can_move(current, target):
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[current])) or "none"
        raise Conflict(
            f"campaign cannot move from {current.value} to {target.value} (allowed: {allowed})"
        )


def get_campaign(session: Session, campaign_id: int, *, for_update: bool = False) -> Campaign:
    query = select(Campaign).where(Campaign.id == campaign_id)
    if for_update:
        query = query.with_for_update()
    campaign = session.scalars(query).first()
    if campaign is None:
        raise NotFound(f"campaign {campaign_id} does not exist")
    return campaign


def move(session: Session, campaign_id: int, target: CampaignStatus, actor: str) -> Campaign:
    """Change a campaign's status if the life cycle allows it; audited."""
    campaign = get_campaign(session, campaign_id, for_update=True)
    previous = campaign.status
    check_move(previous, target)
    campaign.status = target
    _stamp(campaign, target, utcnow())
    audit.record(
        session,
        actor=actor,
        action=f"campaign.{target.value}",
        object_type="campaign",
        object_id=campaign.id,
        detail={"from": previous.value, "to": target.value},
    )
    return campaign


def _stamp(campaign: Campaign, target: CampaignStatus, now: datetime) -> None:
    if target is CampaignStatus.RUNNING and campaign.started_at is None:
        campaign.started_at = now
    elif target is CampaignStatus.COMPLETED:
        campaign.completed_at = now
    elif target is CampaignStatus.EXPORTED:
        campaign.exported_at = now
    elif target is CampaignStatus.WIPED:
        campaign.wiped_at = now


@dataclass(frozen=True)
class CampaignOverview:
    id: int
    name: str
    status: CampaignStatus
    targets: int
    attempts_open: int
    attempts_done: int

    @property
    def status_ja(self) -> str:
        return STATUS_LABELS_JA[self.status]


def overview(session: Session, campaign: Campaign) -> CampaignOverview:
    targets = session.scalar(
        select(func.count()).select_from(Person).where(Person.campaign_id == campaign.id)
    )
    open_statuses = (AttemptStatus.SCHEDULED, AttemptStatus.CLAIMED, AttemptStatus.IN_PROGRESS)
    counts = dict(
        session.execute(
            select(Attempt.status.in_(open_statuses), func.count())
            .where(Attempt.campaign_id == campaign.id)
            .group_by(Attempt.status.in_(open_statuses))
        ).tuples()
    )
    return CampaignOverview(
        id=campaign.id,
        name=campaign.name,
        status=campaign.status,
        targets=targets or 0,
        attempts_open=counts.get(True, 0),
        attempts_done=counts.get(False, 0),
    )


def list_campaigns(session: Session) -> list[CampaignOverview]:
    campaigns = session.scalars(select(Campaign).order_by(Campaign.id)).all()
    return [overview(session, campaign) for campaign in campaigns]
