"""A loaded IVR flow: steps, texts, choices and transitions, each remembering its YAML line.

A step does, in order: speak ``say`` (then ``prompt``), apply its ``effects``, then exactly
one of: wait for input (``gather`` with ``choices`` or ``verify``), wait for a transfer
(``transfer``), continue (``goto`` or the first matching ``branch`` arm) or end the call
(``end``: one RecordOutcome, then Hangup unless ``hangup: false``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from functools import cached_property

from ivr_scripts.actions import InputMode
from ivr_scripts.model import OutcomeCode
from kernel.errors import InvalidInput


class FlowError(InvalidInput):
    """A flow file is broken; ``str()`` reads ``file:line: problem``."""

    def __init__(self, source: str, line: int, problem: str) -> None:
        super().__init__(f"{source}:{line}: {problem}")
        self.source = source
        self.line = line
        self.problem = problem


class Sensitivity(IntEnum):
    """What speaking a text reveals, and so what must hold before it is spoken (R-4)."""

    PUBLIC = 0  # municipality, section, callback number, the name reading
    CONFIRMED = 1  # that there is a matter to settle (notice level): identity confirmed
    SUMMARY = 2  # fiscal year and kind: confirmed and disclosure summary or detail
    DETAIL = 3  # amounts and due dates: confirmed, disclosure detail, second factor passed


class EffectKind(StrEnum):
    CONFIRM_IDENTITY = "confirm_identity"
    DENY_IDENTITY = "deny_identity"
    TRANSFER = "transfer"
    REQUEST_SMS = "request_sms"
    MARK_WRONG_NUMBER = "mark_wrong_number"
    ADD_DO_NOT_CALL = "add_do_not_call"
    REQUEST_CALLBACK = "request_callback"


class ConditionKey(StrEnum):
    MOBILE = "mobile"
    OPERATOR_AVAILABLE = "operator_available"
    DISCLOSURE = "disclosure"
    MACHINE_POLICY = "machine_policy"
    REACHED = "reached"


CONDITION_VALUES: Mapping[ConditionKey, frozenset[str]] = {
    ConditionKey.MOBILE: frozenset({"true", "false"}),
    ConditionKey.OPERATOR_AVAILABLE: frozenset({"true", "false"}),
    ConditionKey.DISCLOSURE: frozenset({"notice", "summary", "detail"}),
    ConditionKey.MACHINE_POLICY: frozenset({"message", "hangup"}),
    ConditionKey.REACHED: frozenset({"none", "notice", "summary", "detail"}),
}


@dataclass(frozen=True)
class Condition:
    """All of ``tests`` must hold; values are strings (booleans as "true"/"false")."""

    tests: tuple[tuple[ConditionKey, str], ...]
    line: int


@dataclass(frozen=True)
class Text:
    ja: str
    en: str
    line: int
    when: Condition | None = None
    sensitivity: Sensitivity = Sensitivity.PUBLIC
    uses_name: bool = False


@dataclass(frozen=True)
class Effect:
    kind: EffectKind
    arg: str | None
    line: int


@dataclass(frozen=True)
class Choice:
    keys: frozenset[str]
    words: tuple[str, ...]  # normalized keywords
    hints: tuple[str, ...]  # keywords as written, for the recognizer
    goto: str
    effects: tuple[Effect, ...]
    line: int
    when: Condition | None = None


@dataclass(frozen=True)
class GatherSpec:
    input: frozenset[InputMode]
    num_digits: int | None
    timeout_s: int
    line: int


@dataclass(frozen=True)
class Retry:
    """No input or invalid input: speak ``say`` and the prompt again up to ``max`` times."""

    max: int
    say: tuple[Text, ...]
    then: str
    line: int


@dataclass(frozen=True)
class Verify:
    """Second factor: 4 digits (keys or speech) compared with the birth month-day."""

    max_tries: int
    passed: str
    failed: str
    wrong_say: tuple[Text, ...]
    line: int


@dataclass(frozen=True)
class BranchArm:
    when: Condition | None
    goto: str
    line: int


@dataclass(frozen=True)
class TransferWait:
    connected: str
    failed: str
    line: int


@dataclass(frozen=True)
class Step:
    id: str
    line: int
    say: tuple[Text, ...] = ()
    prompt: tuple[Text, ...] = ()
    effects: tuple[Effect, ...] = ()
    discloses: Sensitivity = Sensitivity.PUBLIC
    gather: GatherSpec | None = None
    choices: tuple[Choice, ...] = ()
    verify: Verify | None = None
    retry: Retry | None = None
    transfer: TransferWait | None = None
    goto: str | None = None
    branch: tuple[BranchArm, ...] = ()
    end: OutcomeCode | None = None
    hangup: bool = True
    on_hangup: OutcomeCode | None = None

    def texts(self) -> tuple[Text, ...]:
        """Every text this step may speak (say, prompt, retry and wrong-try texts)."""
        extra = (self.retry.say if self.retry else ()) + (
            self.verify.wrong_say if self.verify else ()
        )
        return self.say + self.prompt + extra

    @cached_property  # a step never changes; the engine asks at every step it enters
    def sensitivity(self) -> Sensitivity:
        levels = [text.sensitivity for text in self.texts()]
        return Sensitivity(max([self.discloses, *levels]))

    @property
    def uses_name(self) -> bool:
        return any(text.uses_name for text in self.texts())


@dataclass(frozen=True)
class Flow:
    name: str
    source: str
    start: str
    machine: str
    steps: Mapping[str, Step]
    speech_min_confidence: float = 0.4

    def __getitem__(self, step_id: str) -> Step:
        return self.steps[step_id]
