"""The values the IVR engine works on: the call context (input), the call state, the outcomes.

Everything here is an immutable value. The dialer builds a :class:`CallContext` per call
(and may rebuild it between events, e.g. when an operator becomes free); the engine threads a
:class:`State` through :func:`ivr_scripts.engine.step`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import date
from enum import StrEnum
from typing import Any, Literal

from kernel.errors import InvalidInput
from kernel.models.enums import DisclosureLevel

MachinePolicy = Literal["message", "hangup"]
Language = Literal["ja", "en"]
LANGUAGES: tuple[Language, ...] = ("ja", "en")
_MMDD = re.compile(r"(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])")


class OutcomeCode(StrEnum):
    """How an IVR call ended: exactly one per call (the dialer's planner reads these)."""

    RPC_CONFIRMED = "rpc_confirmed"
    RPC_PROMISE_CALLBACK = "rpc_promise_callback"
    PAID_CLAIMED = "paid_claimed"
    WRONG_PARTY = "wrong_party"
    WRONG_NUMBER = "wrong_number"
    NO_INPUT = "no_input"
    MACHINE = "machine"
    REFUSED = "refused"
    DO_NOT_CALL = "do_not_call"
    TRANSFERRED = "transferred"
    HANGUP_BEFORE_CONFIRM = "hangup_before_confirm"


class SecondFactor(StrEnum):
    """Where the second identity factor (birth month-day) stands in a call."""

    NOT_ASKED = "not_asked"
    PASSED = "passed"
    FAILED = "failed"
    NO_INPUT = "no_input"
    UNAVAILABLE = "unavailable"


class TimeBand(StrEnum):
    """The callback time bands a resident can choose (same values as the dialer's bands)."""

    MORNING = "morning"
    AFTERNOON = "afternoon"
    EVENING = "evening"
    ANY = "any"


@dataclass(frozen=True)
class ReceivableItem:
    """One overdue receivable as the IVR may mention it (summary: year + kind; detail: all)."""

    fiscal_year: int
    kind_name: str
    amount_yen: int
    due_date: date


@dataclass(frozen=True)
class CallContext:
    """What the engine needs to know about one call; ``name_kana`` is what TTS speaks."""

    municipality: str
    municipality_kana: str
    section: str
    callback_number: str
    name_kana: str
    disclosure: DisclosureLevel = DisclosureLevel.NOTICE
    items: tuple[ReceivableItem, ...] = ()
    birth_mmdd: str | None = None
    mobile: bool = False
    operator_available: bool = False
    payment_methods: tuple[str, ...] = ()
    machine_policy: MachinePolicy = "message"
    language: Language = "ja"
    municipality_en: str | None = None
    section_en: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "disclosure", DisclosureLevel(self.disclosure))
        if self.birth_mmdd is not None and not _MMDD.fullmatch(self.birth_mmdd):
            raise InvalidInput(f"birth_mmdd must be MMDD (4 digits), got {self.birth_mmdd!r}")
        if self.language not in LANGUAGES:
            raise InvalidInput(f"language must be one of {LANGUAGES}, got {self.language!r}")
        if self.machine_policy not in ("message", "hangup"):
            raise InvalidInput(f"machine_policy must be message or hangup: {self.machine_policy!r}")
        if not self.name_kana.strip():
            raise InvalidInput("name_kana is required: the name is spoken from the kana reading")


@dataclass(frozen=True)
class State:
    """Where a call stands. ``step`` is None until the call is answered."""

    step: str | None = None
    ended: bool = False
    retries: int = 0
    identity_confirmed: bool = False
    identity_denied: bool = False
    second_factor: SecondFactor = SecondFactor.NOT_ASKED
    second_factor_tries: int = 0
    disclosure_reached: DisclosureLevel | None = None
    callback_band: TimeBand | None = None
    sms_requested: bool = False
    transfer_failed: bool = False
    outcome: OutcomeCode | None = None

    @property
    def started(self) -> bool:
        return self.step is not None or self.ended

    def evolve(self, **changes: Any) -> State:
        """``dataclasses.replace(self, **changes)`` without its per-field work (the engine
        makes a new state several times per step). The fields are plain values that need no
        ``__post_init__``; an unknown name raises as ``replace`` does."""
        unknown = changes.keys() - _STATE_FIELDS
        if unknown:
            raise TypeError(f"State has no field {', '.join(sorted(unknown))}")
        new = object.__new__(State)
        values = new.__dict__
        values.update(self.__dict__)
        values.update(changes)
        return new


_STATE_FIELDS = frozenset(field.name for field in fields(State))
