"""Deciding what the resident's input means: conditions, choices, the spoken birth day."""

from __future__ import annotations

import re
import unicodedata

from ivr_scripts.events import Digits, NoInput, Speech
from ivr_scripts.flow import Choice, Condition, ConditionKey, Flow, GatherSpec, Step
from ivr_scripts.kana import normalize_speech
from ivr_scripts.model import CallContext, State

_DTMF = re.compile(r"[0-9*#]+")
_MONTH_DAY = re.compile(r"(\d{1,2})\s*月\s*(\d{1,2})\s*日?")
_DIGITS_ONLY = re.compile(r"(\d+)\s*(番|ばん)?")


def reached_name(state: State) -> str:
    return state.disclosure_reached.value if state.disclosure_reached else "none"


def holds(condition: Condition | None, ctx: CallContext, state: State) -> bool:
    if condition is None:
        return True
    return all(_actual(key, ctx, state) == value for key, value in condition.tests)


def _actual(key: ConditionKey, ctx: CallContext, state: State) -> str:
    """The call's value for a condition key, as flows write it (``true``, ``notice`` ...)."""
    if key == ConditionKey.MOBILE:
        return "true" if ctx.mobile else "false"
    if key == ConditionKey.OPERATOR_AVAILABLE:
        return "true" if ctx.operator_available else "false"
    if key == ConditionKey.DISCLOSURE:
        return ctx.disclosure.value
    if key == ConditionKey.MACHINE_POLICY:
        return ctx.machine_policy
    return reached_name(state)


def active_choices(step: Step, ctx: CallContext, state: State) -> list[Choice]:
    return [choice for choice in step.choices if holds(choice.when, ctx, state)]


def hints(step: Step, ctx: CallContext, state: State) -> tuple[str, ...]:
    words = [word for choice in active_choices(step, ctx, state) for word in choice.hints]
    return tuple(dict.fromkeys(words))


def match_choice(
    flow: Flow, ctx: CallContext, state: State, step: Step, event: Digits | Speech | NoInput
) -> Choice | None:
    """The one choice the input selects; None for no input, garbage or an ambiguous answer."""
    assert step.gather is not None
    choices = active_choices(step, ctx, state)
    if isinstance(event, Digits):
        keys = valid_keys(event.digits, step.gather)
        return _only([c for c in choices if keys in c.keys]) if keys else None
    if isinstance(event, Speech) and _speech_allowed(flow, step.gather, event):
        heard = normalize_speech(event.text)
        by_word = [c for c in choices if said(heard, c.words)]
        if by_word:
            return _only(by_word)
        spoken_key = _DIGITS_ONLY.fullmatch(heard)
        if spoken_key:
            return _only([c for c in choices if spoken_key.group(1) in c.keys])
    return None


def valid_keys(digits: str, gather: GatherSpec) -> str | None:
    """The keys pressed, or None when they are not DTMF or not the expected length."""
    if "dtmf" not in gather.input:
        return None
    keys = digits.strip()
    if not _DTMF.fullmatch(keys):
        return None
    if gather.num_digits is not None and len(keys) != gather.num_digits:
        return None
    return keys


def said(heard: str, words: tuple[str, ...]) -> bool:
    """Whether a normalized utterance contains a keyword (whole words for latin keywords)."""
    padded = f" {heard} "
    compact = heard.replace(" ", "")
    return any(
        (f" {word} " in padded) if word.isascii() else (word.replace(" ", "") in compact)
        for word in words
        if word
    )


def month_day(flow: Flow, step: Step, event: Digits | Speech | NoInput) -> str | None:
    """The 4-digit month-day the resident entered or said ("0415", "4月15日"), else None."""
    assert step.gather is not None
    if isinstance(event, Digits):
        keys = valid_keys(event.digits, step.gather)
        return keys if keys and keys.isdigit() and len(keys) == 4 else None
    if isinstance(event, Speech) and _speech_allowed(flow, step.gather, event):
        heard = unicodedata.normalize("NFKC", event.text).replace(" ", "")
        named = _MONTH_DAY.search(heard)
        if named:
            return f"{int(named.group(1)):02d}{int(named.group(2)):02d}"
        digits = "".join(ch for ch in heard if ch in "0123456789")
        return digits if len(digits) == 4 else None
    return None


def _speech_allowed(flow: Flow, gather: GatherSpec, event: Speech) -> bool:
    return "speech" in gather.input and event.confidence >= flow.speech_min_confidence


def _only(choices: list[Choice]) -> Choice | None:
    return choices[0] if len(choices) == 1 else None
