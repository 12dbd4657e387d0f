"""Opening a call's context: the engine's view of the resident, from the sealed record.

:class:`ContextOpener` reads what the IVR engine needs for one attempt - the campaign's flow,
disclosure level and wrapped data key, the person's sealed record and language, the phone's
kind, the receivables - in two column-only queries (no ORM entities to build and track), opens
the sealed record under the campaign's data key and returns an
:class:`~dialer.call_memory.OpenedCall`. The call session keeps it in memory for the life of
the call (:class:`~dialer.call_memory.ContextCache`); nothing here is stored or logged.
"""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from dialer.call_memory import OpenedCall
from ivr_scripts import CallContext
from ivr_scripts.model import ReceivableItem
from kernel.models import (
    Attempt,
    Campaign,
    DisclosureLevel,
    Person,
    Phone,
    PhoneKind,
    Receivable,
)
from kernel.pii import KeyRing
from kernel.settings import Settings

# Built once: the queries of every call differ only in their parameters.
_CALL_ROW = (
    select(
        Campaign.script_name,
        Campaign.disclosure_level,
        Campaign.wrapped_data_key,
        Person.sealed_pii,
        Person.language,
        Phone.kind,
    )
    .select_from(Person)
    .join(Campaign, Campaign.id == bindparam("campaign_id"))
    .outerjoin(Phone, Phone.id == bindparam("phone_id"))
    .where(Person.id == bindparam("person_id"))
)
_RECEIVABLES = select(
    Receivable.fiscal_year, Receivable.kind, Receivable.unpaid_yen, Receivable.due_date
).where(Receivable.person_id == bindparam("person_id"))


class ContextOpener:
    """Builds the :class:`CallContext` of an attempt (None: the call cannot go on)."""

    def __init__(self, keyring: KeyRing, settings: Settings) -> None:
        self._keyring = keyring
        self._settings = settings

    def open(
        self, session: Session, attempt: Attempt, operator_available: bool
    ) -> OpenedCall | None:
        if attempt.person_id is None:
            return None
        ids = {
            "campaign_id": attempt.campaign_id,
            "phone_id": attempt.phone_id,
            "person_id": attempt.person_id,
        }
        # On the session's connection: plain rows, no ORM compile state, and no autoflush of
        # the batch (nothing read here is changed by the call's reports).
        connection = session.connection()
        row = connection.execute(_CALL_ROW, ids).first()
        items = receivable_items(connection, attempt.person_id)
        if row is None or row.wrapped_data_key is None:
            return None
        cipher = self._keyring.cipher(row.wrapped_data_key, attempt.campaign_id)
        record = cipher.open_record(row.sealed_pii, "pii")
        kana = str(record.get("name_kana") or "").strip()
        if not kana:
            return None
        detail = row.disclosure_level is DisclosureLevel.DETAIL
        town, ivr = self._settings.municipality, self._settings.ivr
        context = CallContext(
            municipality=town.name,
            municipality_kana=town.name_kana,
            section=town.section,
            callback_number=town.callback_number_display,
            name_kana=kana,
            disclosure=row.disclosure_level,
            items=items,
            birth_mmdd=birth_mmdd(record.get("birth_date")) if detail else None,
            mobile=row.kind is PhoneKind.MOBILE,
            operator_available=operator_available,
            payment_methods=tuple(ivr.payment_methods),
            machine_policy=ivr.machine_policy,
            language="en" if row.language == "en" else "ja",
        )
        return OpenedCall(row.script_name, context)


def receivable_items(connection: Connection, person_id: int) -> tuple[ReceivableItem, ...]:
    """The person's receivables, oldest fiscal year and due date first."""
    rows = connection.execute(_RECEIVABLES, {"person_id": person_id}).all()
    ordered = sorted(rows, key=lambda r: (r.fiscal_year, r.due_date, r.kind))
    return tuple(ReceivableItem(r.fiscal_year, r.kind, r.unpaid_yen, r.due_date) for r in ordered)


def birth_mmdd(value: object) -> str | None:
    """``"1980-04-15"`` (how the loader seals a birth date) -> ``"0415"``."""
    text = str(value or "")
    if len(text) >= 10 and text[4] == "-" and text[7] == "-":
        mmdd = text[5:7] + text[8:10]
        return mmdd if mmdd.isdigit() else None
    return None
