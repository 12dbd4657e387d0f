"""The fixed vocabularies of the domain."""

from __future__ import annotations

from enum import StrEnum


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    READY = "ready"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    EXPORTED = "exported"
    WIPED = "wiped"


class DisclosureLevel(StrEnum):
    NOTICE = "notice"
    SUMMARY = "summary"
    DETAIL = "detail"


class Channel(StrEnum):
    IVR = "ivr"
    SMS = "sms"
    OPERATOR = "operator"
    LETTER = "letter"


class PhoneKind(StrEnum):
    MOBILE = "MOBILE"
    FIXED_LINE = "FIXED_LINE"
    VOIP = "VOIP"
    TOLL_FREE = "TOLL_FREE"
    OTHER = "OTHER"


class PhoneStatus(StrEnum):
    USABLE = "usable"
    WRONG_NUMBER = "wrong_number"
    OPTED_OUT = "opted_out"


class TargetStatus(StrEnum):
    """Where a person stands in a campaign."""

    ACTIVE = "active"
    HOLDOUT = "holdout"
    PAID = "paid"
    DONE = "done"
    STOPPED = "stopped"


class AttemptStatus(StrEnum):
    SCHEDULED = "scheduled"
    CLAIMED = "claimed"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    REFUSED = "refused"
    CANCELLED = "cancelled"


class HandOffStatus(StrEnum):
    OPEN = "open"
    TAKEN = "taken"
    CLOSED = "closed"


class CallbackStatus(StrEnum):
    PENDING = "pending"
    CLAIMED = "claimed"
    DONE = "done"
    CANCELLED = "cancelled"


class Role(StrEnum):
    OPERATOR = "operator"
    STAFF = "staff"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"
