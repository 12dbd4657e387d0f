"""Checks made immediately before every contact; each refusal is counted by its reason.

The decision is a pure function of a :class:`ContactFacts` snapshot gathered in the same
transaction that claimed the attempt, so what was checked is what was true when dialing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from kernel.calendar import CallingWindow
from kernel.models import CampaignStatus, Channel, PhoneKind, PhoneStatus, TargetStatus


class Refusal(StrEnum):
    OUTSIDE_WINDOW = "outside_window"
    EXCLUSION_LIST_MISSING = "exclusion_list_missing"
    EXCLUSION_LIST_STALE = "exclusion_list_stale"
    EXCLUDED = "exclusion_list"
    DO_NOT_CALL = "do_not_call"
    PAID = "paid"
    TARGET_STOPPED = "target_stopped"
    PHONE_UNUSABLE = "phone_unusable"
    CAMPAIGN_NOT_RUNNING = "campaign_not_running"
    PERSON_GONE = "person_gone"
    NOT_MOBILE = "not_mobile"
    CAP_REACHED = "cap_reached"


#: Refusals that only postpone the attempt (the next open moment may allow it). A missing or
#: stale exclusion list stops all dialing until a fresh list is loaded, so it postpones too.
POSTPONING = frozenset(
    {
        Refusal.OUTSIDE_WINDOW,
        Refusal.CAMPAIGN_NOT_RUNNING,
        Refusal.EXCLUSION_LIST_MISSING,
        Refusal.EXCLUSION_LIST_STALE,
        Refusal.CAP_REACHED,
    }
)


@dataclass(frozen=True)
class Caps:
    """Contacts allowed per number per local day and per rolling 7 days (R-3)."""

    per_day: int = 2
    per_week: int = 7


@dataclass(frozen=True)
class ContactFacts:
    now: datetime
    campaign_status: CampaignStatus
    target_status: TargetStatus | None
    phone_status: PhoneStatus | None
    needs_phone: bool
    exclusion_list_as_of: datetime | None
    on_exclusion_list: bool
    on_do_not_call: bool
    channel: Channel = Channel.IVR
    phone_kind: PhoneKind | None = None
    number_contacts_today: int = 0
    number_contacts_week: int = 0


def refusal(
    facts: ContactFacts,
    window: CallingWindow,
    exclusion_max_age: timedelta,
    caps: Caps | None = None,
) -> Refusal | None:
    """Why this contact must not happen now, or None when every interlock passes."""
    if facts.campaign_status is not CampaignStatus.RUNNING:
        return Refusal.CAMPAIGN_NOT_RUNNING
    if facts.target_status is None:
        return Refusal.PERSON_GONE
    if facts.needs_phone and not window.is_open(facts.now):
        return Refusal.OUTSIDE_WINDOW
    if facts.exclusion_list_as_of is None:
        return Refusal.EXCLUSION_LIST_MISSING
    if facts.now - facts.exclusion_list_as_of > exclusion_max_age:
        return Refusal.EXCLUSION_LIST_STALE
    if facts.on_exclusion_list:
        return Refusal.EXCLUDED
    return _target_refusal(facts) or _number_refusal(facts, caps or Caps())


def _target_refusal(facts: ContactFacts) -> Refusal | None:
    if facts.target_status is TargetStatus.PAID:
        return Refusal.PAID
    if facts.target_status is not TargetStatus.ACTIVE:
        return Refusal.TARGET_STOPPED
    if facts.needs_phone:
        if facts.on_do_not_call:
            return Refusal.DO_NOT_CALL
        if facts.phone_status is not PhoneStatus.USABLE:
            return Refusal.PHONE_UNUSABLE
    return None


def _number_refusal(facts: ContactFacts, caps: Caps) -> Refusal | None:
    if not facts.needs_phone:
        return None
    if facts.channel is Channel.SMS and facts.phone_kind is not PhoneKind.MOBILE:
        return Refusal.NOT_MOBILE
    if facts.number_contacts_today >= caps.per_day or facts.number_contacts_week >= caps.per_week:
        return Refusal.CAP_REACHED
    return None
