"""How simulated residents behave on the phone: a seeded, PII-free model for the simulator.

The figures follow DOMAIN.md R-3: people answer far more often at weekends (NTA: 23% on a
weekday, 34% on Saturday, 41% on Sunday after two missed weekday calls), more in the evening
than during working hours, and fixed lines at home go unanswered on weekday daytimes. Everything
random is drawn from the :class:`random.Random` the simulator derives per call from its seed and
the attempt's idempotency key, so a call plays the same however calls interleave.

A :class:`Resident` is asked twice: how the phone is answered (:meth:`Resident.pick_up`) and,
for every gather, what the person does (:meth:`Resident.respond`). The simulator knows nothing
about the person: a second-factor question (birth month and day) is answered with a plausible
date that the IVR cannot confirm, so simulated calls fall back to the notice level.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal, Protocol

from ivr_scripts.actions import Gather
from kernel.calendar import TOKYO, is_national_holiday
from kernel.models.enums import PhoneKind

PickUpKind = Literal["human", "machine", "busy", "no-answer", "failed"]
_JP_MOBILE = re.compile(r"\+81[6789]0\d{8}")
_JP_VOIP = re.compile(r"\+8150\d{8}")


def line_kind(to_e164: str) -> PhoneKind:
    """The kind of a Japanese number from its prefix (070/080/090/060 mobile, 050 VoIP)."""
    if _JP_MOBILE.fullmatch(to_e164):
        return PhoneKind.MOBILE
    if _JP_VOIP.fullmatch(to_e164):
        return PhoneKind.VOIP
    return PhoneKind.FIXED_LINE


@dataclass(frozen=True)
class PickUp:
    """How the phone is answered, and after how many seconds of ringing."""

    kind: PickUpKind
    after_seconds: float


@dataclass(frozen=True)
class Keys:
    digits: str


@dataclass(frozen=True)
class Says:
    text: str
    confidence: float = 0.9


@dataclass(frozen=True)
class StaysSilent:
    """Lets the gather time out."""


@dataclass(frozen=True)
class PutsDown:
    """Hangs up instead of answering."""


Reply = Keys | Says | StaysSilent | PutsDown


@dataclass(frozen=True)
class Response:
    """What the resident does at one gather, ``after_seconds`` once the prompt has ended."""

    reply: Reply
    after_seconds: float


class Resident(Protocol):
    """One simulated person at the end of one call."""

    def pick_up(self, ring_timeout_seconds: float) -> PickUp: ...

    def respond(self, gather: Gather) -> Response: ...


class Question(StrEnum):
    """What a gather asks, told apart by its speech hints (the flow's keyword lists)."""

    IDENTITY = "identity"
    WRONG_NUMBER = "wrong_number"
    BIRTH_DAY = "birth_day"
    MENU = "menu"
    CALLBACK_BAND = "callback_band"
    OTHER = "other"


def question_of(gather: Gather) -> Question:
    hints = set(gather.hints)
    if gather.num_digits == 4:
        return Question.BIRTH_DAY
    if "wrong number" in hints or "番号が違います" in hints:
        return Question.WRONG_NUMBER
    if "morning" in hints or "午前" in hints:
        return Question.CALLBACK_BAND
    if "はい" in hints or "yes" in hints:
        return Question.IDENTITY
    if hints & {"operator", "担当者", "paid", "払いました"}:
        return Question.MENU
    return Question.OTHER


# ------------------------------------------------------------------------------ the model


@dataclass(frozen=True)
class AnswerModel:
    """Answer probabilities by day, time band and line kind (R-3 figures as the base)."""

    weekday: float = 0.23
    saturday: float = 0.34
    sunday: float = 0.41  # national holidays count as Sundays
    band_factor: tuple[float, float, float] = (0.9, 0.85, 1.3)  # morning, afternoon, evening
    fixed_line_workday_factor: float = 0.7  # nobody home on weekday daytimes
    mobile_factor: float = 1.1
    busy: float = 0.04
    machine_share_mobile: float = 0.3  # of calls not answered by a person: voicemail picks up
    machine_share_fixed: float = 0.2
    ring_seconds: tuple[float, float] = (4.0, 22.0)

    def human_probability(self, at: datetime, kind: PhoneKind) -> float:
        local = at.astimezone(TOKYO)
        weekday = 6 if is_national_holiday(local.date()) else local.weekday()
        base = (self.weekday, self.saturday, self.sunday)[max(0, weekday - 4)]
        band = 0 if local.hour < 12 else (1 if local.hour < 17 else 2)
        factor = self.band_factor[band]
        if kind is PhoneKind.MOBILE:
            factor *= self.mobile_factor
        elif weekday < 5 and band < 2:
            factor *= self.fixed_line_workday_factor
        return min(0.95, base * factor)

    def pick_up(
        self, rng: random.Random, at: datetime, kind: PhoneKind, ring_timeout: float
    ) -> PickUp:
        roll = rng.random()
        ring = rng.uniform(*self.ring_seconds)
        if roll < self.busy:
            return PickUp("busy", rng.uniform(1.0, 3.0))
        if roll < self.busy + self.human_probability(at, kind):
            return PickUp("human", min(ring, ring_timeout - 1.0))
        machine = (
            self.machine_share_mobile if kind is PhoneKind.MOBILE else self.machine_share_fixed
        )
        if rng.random() < machine:
            return PickUp("machine", min(ring + 4.0, ring_timeout - 1.0))
        return PickUp("no-answer", float(ring_timeout))


@dataclass(frozen=True)
class Temperament:
    """Per-person habits drawn once per call: speed, voice or keys, patience, identity."""

    delay_range: tuple[float, float]
    prefers_speech: bool
    hang_up_chance: float
    silence_chance: float
    is_the_person: bool
    number_is_theirs: bool


@dataclass(frozen=True)
class BehaviourModel:
    """How people react once they answered."""

    wrong_person: float = 0.08  # a family member or someone else answers
    not_their_number: float = 0.3  # of wrong persons: the number is not the target's at all
    prefers_speech: float = 0.2
    slow_caller: float = 0.25
    hang_up: float = 0.04
    hang_up_before_confirm: float = 0.08
    silence: float = 0.05
    menu: tuple[tuple[str, float], ...] = (
        ("0", 0.34),
        ("2", 0.2),
        ("3", 0.15),
        ("1", 0.12),
        ("4", 0.06),
        ("5", 0.05),
        ("8", 0.03),
        ("7", 0.05),  # a wrong key: the IVR asks again
    )

    def temperament(self, rng: random.Random) -> Temperament:
        slow = rng.random() < self.slow_caller
        wrong = rng.random() < self.wrong_person
        return Temperament(
            delay_range=(3.0, 7.5) if slow else (0.6, 2.5),
            prefers_speech=rng.random() < self.prefers_speech,
            hang_up_chance=self.hang_up,
            silence_chance=self.silence,
            is_the_person=not wrong,
            number_is_theirs=not (wrong and rng.random() < self.not_their_number),
        )


@dataclass(frozen=True)
class ResidentModel:
    answers: AnswerModel = field(default_factory=AnswerModel)
    behaviour: BehaviourModel = field(default_factory=BehaviourModel)

    def resident(self, rng: random.Random, at: datetime, to_e164: str) -> ModelResident:
        kind = line_kind(to_e164)
        return ModelResident(rng, self, at, kind, self.behaviour.temperament(rng))


@dataclass
class ModelResident:
    """A resident drawn from :class:`ResidentModel`; every choice uses the call's own RNG."""

    rng: random.Random
    model: ResidentModel
    called_at: datetime
    kind: PhoneKind
    temperament: Temperament
    confirmed: bool = False

    def pick_up(self, ring_timeout_seconds: float) -> PickUp:
        return self.model.answers.pick_up(self.rng, self.called_at, self.kind, ring_timeout_seconds)

    def respond(self, gather: Gather) -> Response:
        delay = self.rng.uniform(*self.temperament.delay_range)
        question = question_of(gather)
        give_up = self.model.behaviour.hang_up_before_confirm if not self.confirmed else 0.0
        if self.rng.random() < self.temperament.hang_up_chance + give_up:
            return Response(PutsDown(), delay)
        if self.rng.random() < self.temperament.silence_chance:
            return Response(StaysSilent(), float(gather.timeout_s))
        return Response(self._answer(question, gather), delay)

    def _answer(self, question: Question, gather: Gather) -> Reply:
        speech = self.temperament.prefers_speech and "speech" in gather.input
        if question is Question.IDENTITY:
            self.confirmed = self.temperament.is_the_person
            if speech:
                return Says("はい" if self.confirmed else "いいえ", self.rng.uniform(0.6, 0.98))
            return Keys("1" if self.confirmed else "2")
        if question is Question.WRONG_NUMBER:
            return StaysSilent() if self.temperament.number_is_theirs else Keys("9")
        if question is Question.BIRTH_DAY:
            return Keys(f"{self.rng.randint(1, 12):02d}{self.rng.randint(1, 28):02d}")
        if question is Question.CALLBACK_BAND:
            return Keys(self.rng.choice("123"))
        if question is Question.MENU:
            return Keys(self._menu_key())
        return Keys(str(self.rng.randint(0, 9)))

    def _menu_key(self) -> str:
        options = [
            (key, weight)
            for key, weight in self.model.behaviour.menu
            if key != "4" or self.kind is PhoneKind.MOBILE
        ]
        keys = [key for key, _weight in options]
        weights = [weight for _key, weight in options]
        chosen: str = self.rng.choices(keys, weights=weights)[0]
        return chosen
