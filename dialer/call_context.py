"""Opening a call's context: the engine's view of the resident, from the sealed record.

:class:`ContextOpener` reads what the IVR engine needs for one attempt - the campaign's flow,
disclosure level and wrapped data key, the person's sealed record and language, the phone's
kind, the receivables - in two column-only queries (no ORM entities to build and track), opens
the sealed record under the campaign's data key and returns an
:class:`~dialer.call_memory.OpenedCall`. The call session keeps it in memory for the life of
the call (:class:`~dialer.call_memory.ContextCache`); nothing here is stored or logged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, bindparam, select
from sqlalchemy.orm import Session

from dialer.call_memory import OpenedCall
from dialer.live_attempts import LiveAttempt
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
from kernel.pii import KeyRing, PiiCipher
from kernel.settings import Settings

# Built once: the queries of every batch differ only in their parameters.
_CALL_ROWS = (
    select(
        Attempt.id.label("attempt_id"),
        Campaign.script_name,
        Campaign.disclosure_level,
        Campaign.wrapped_data_key,
        Person.sealed_pii,
        Person.language,
        Phone.kind,
    )
    .select_from(Attempt)
    .join(Person, Person.id == Attempt.person_id)
    .join(Campaign, Campaign.id == Attempt.campaign_id)
    .outerjoin(Phone, Phone.id == Attempt.phone_id)
    .where(Attempt.id.in_(bindparam("attempt_ids", expanding=True)))
)
_RECEIVABLES = select(
    Receivable.person_id,
    Receivable.fiscal_year,
    Receivable.kind,
    Receivable.unpaid_yen,
    Receivable.due_date,
).where(Receivable.person_id.in_(bindparam("person_ids", expanding=True)))


class ContextOpener:
    """Builds the :class:`CallContext` of attempts (None: that call cannot go on)."""

    def __init__(self, keyring: KeyRing, settings: Settings) -> None:
        self._keyring = keyring
        self._settings = settings

    def open(
        self, session: Session, attempt: LiveAttempt, operator_available: bool
    ) -> OpenedCall | None:
        return self.open_many(session, [attempt], operator_available).get(attempt.id)

    def open_many(
        self, session: Session, attempts: Sequence[LiveAttempt], operator_available: bool
    ) -> dict[int, OpenedCall | None]:
        """Every attempt's opened call (None: it cannot go on), with two queries for all of
        them: a batch of reports opens its new calls together."""
        opened: dict[int, OpenedCall | None] = {attempt.id: None for attempt in attempts}
        with_person = [attempt for attempt in attempts if attempt.person_id is not None]
        if not with_person:
            return opened
        # On the session's connection: plain rows, no ORM compile state, and no autoflush of
        # the batch (nothing read here is changed by the calls' reports).
        connection = session.connection()
        rows = connection.execute(_CALL_ROWS, {"attempt_ids": [a.id for a in with_person]}).all()
        items = receivable_items(connection, [a.person_id for a in with_person if a.person_id])
        ciphers: dict[tuple[bytes, int], PiiCipher] = {}  # this batch's only, never kept
        by_id = {attempt.id: attempt for attempt in with_person}
        for row in rows:
            attempt = by_id[row.attempt_id]
            if row.wrapped_data_key is None:
                continue
            cipher_key = (row.wrapped_data_key, attempt.campaign_id)
            if cipher_key not in ciphers:
                ciphers[cipher_key] = self._keyring.cipher(*cipher_key)
            record = ciphers[cipher_key].open_record(row.sealed_pii, "pii")
            person_items = items.get(attempt.person_id or 0, ())
            opened[attempt.id] = self._opened(row, record, person_items, operator_available)
        return opened

    def _opened(
        self,
        row: Row[Any],
        record: dict[str, Any],
        items: tuple[ReceivableItem, ...],
        operator_available: bool,
    ) -> OpenedCall | None:
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


def receivable_items(
    connection: Connection, person_ids: Sequence[int]
) -> dict[int, tuple[ReceivableItem, ...]]:
    """Each person's receivables, oldest fiscal year and due date first."""
    by_person: dict[int, list[Row[Any]]] = {}
    for row in connection.execute(_RECEIVABLES, {"person_ids": sorted(set(person_ids))}).all():
        by_person.setdefault(row.person_id, []).append(row)
    return {
        person_id: tuple(
            ReceivableItem(r.fiscal_year, r.kind, r.unpaid_yen, r.due_date)
            for r in sorted(rows, key=lambda r: (r.fiscal_year, r.due_date, r.kind))
        )
        for person_id, rows in by_person.items()
    }


def birth_mmdd(value: object) -> str | None:
    """``"1980-04-15"`` (how the loader seals a birth date) -> ``"0415"``."""
    text = str(value or "")
    if len(text) >= 10 and text[4] == "-" and text[7] == "-":
        mmdd = text[5:7] + text[8:10]
        return mmdd if mmdd.isdigit() else None
    return None
