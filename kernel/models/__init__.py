"""The domain model (SQLAlchemy 2, typed)."""

from kernel.models.base import Base, UtcDateTime, utcnow
from kernel.models.campaign import Campaign, ErasureCertificate, ImportBatch, ResultsExport
from kernel.models.contact import (
    Attempt,
    CallbackRequest,
    DoNotCall,
    ExclusionEntry,
    ExclusionList,
    HandOff,
)
from kernel.models.enums import (
    AttemptStatus,
    CallbackStatus,
    CampaignStatus,
    Channel,
    DisclosureLevel,
    HandOffStatus,
    PhoneKind,
    PhoneStatus,
    Role,
    TargetStatus,
)
from kernel.models.person import Person, Phone, Receivable
from kernel.models.records import AuditEvent, DailyAggregate, User

__all__ = [
    "Attempt",
    "AttemptStatus",
    "AuditEvent",
    "Base",
    "CallbackRequest",
    "CallbackStatus",
    "Campaign",
    "CampaignStatus",
    "Channel",
    "DailyAggregate",
    "DisclosureLevel",
    "DoNotCall",
    "ErasureCertificate",
    "ExclusionEntry",
    "ExclusionList",
    "HandOff",
    "HandOffStatus",
    "ImportBatch",
    "Person",
    "Phone",
    "PhoneKind",
    "PhoneStatus",
    "Receivable",
    "ResultsExport",
    "Role",
    "TargetStatus",
    "User",
    "UtcDateTime",
    "utcnow",
]
