"""What the call session keeps in coordination between two reports of a call: no PII.

``ivr:{campaign_id}:{attempt_id}`` (:func:`session_key`) holds the call's
:class:`SessionRecord` as JSON: the call phase, the IVR engine's state and digests of the
carrier retry tokens seen (:func:`retry_token`). Any process can take the call's next report
from it; the campaign wipe deletes the ``ivr:{campaign_id}:`` prefix.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import Any

from dialer.call_events import CallPhase
from dialer.ports import CallEvent
from ivr_scripts import State
from ivr_scripts.model import OutcomeCode, SecondFactor, TimeBand
from kernel.models import DisclosureLevel


def session_key(campaign_id: int, attempt_id: int) -> str:
    """The coordination key of a call's :class:`SessionRecord`."""
    return f"ivr:{campaign_id}:{attempt_id}"


@dataclass(frozen=True)
class SessionRecord:
    """What lives in coordination between two reports of one call (no personal values)."""

    phase: CallPhase = CallPhase.DIALING
    engine: State = State()
    seen: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps(
            {
                "phase": self.phase.value,
                "engine": _engine_fields(self.engine),
                "seen": list(self.seen),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> SessionRecord:
        data = json.loads(text)
        engine: dict[str, Any] = dict(data["engine"])
        engine["second_factor"] = SecondFactor(engine["second_factor"])
        for name, kind in (
            ("disclosure_reached", DisclosureLevel),
            ("callback_band", TimeBand),
            ("outcome", OutcomeCode),
        ):
            engine[name] = None if engine[name] is None else kind(engine[name])
        return cls(CallPhase(data["phase"]), State(**engine), tuple(data["seen"]))


_STATE_FIELDS = tuple(field.name for field in fields(State))
PARSED_RECORDS_KEPT = 10_000


class ParsedRecords:
    """The records this process stored last, by key, with their JSON (bounded, thread-safe).

    A call's next report usually finds in coordination the very JSON this process stored
    after the previous one; it then takes the record stored with it instead of decoding the
    JSON again. Any other JSON (another process handled the call meanwhile) is decoded."""

    def __init__(self, size: int = PARSED_RECORDS_KEPT) -> None:
        self._size = size
        self._records: OrderedDict[str, tuple[str, SessionRecord]] = OrderedDict()
        self._mutex = threading.Lock()

    def parse(self, key: str, text: str) -> SessionRecord:
        with self._mutex:
            known = self._records.get(key)
        if known is not None and known[0] == text:
            return known[1]
        return SessionRecord.from_json(text)

    def stored(self, key: str, text: str, record: SessionRecord) -> None:
        with self._mutex:
            self._records[key] = (text, record)
            self._records.move_to_end(key)
            while len(self._records) > self._size:
                self._records.popitem(last=False)

    def forget(self, key: str) -> None:
        with self._mutex:
            self._records.pop(key, None)


def _engine_fields(engine: State) -> dict[str, object]:
    """The engine state as JSON values (its fields are flat: str, int, bool, str enums, None);
    what ``dataclasses.asdict`` gives, without its recursive copy (several times slower)."""
    return {name: getattr(engine, name) for name in _STATE_FIELDS}


def retry_token(event: CallEvent) -> str | None:
    """A digest of the carrier's retry token, when the carrier supplied one."""
    token = event.raw.get("idempotency_token") or event.raw.get("I-Twilio-Idempotency-Token")
    return hashlib.sha256(token.encode()).hexdigest()[:24] if token else None
