"""The identity gate (R-4) over every text reachable before confirmation, and random calls."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr_scripts import (
    CallAnswered,
    CallContext,
    Digits,
    NoInput,
    RecordOutcome,
    Say,
    SecondFactor,
    Speech,
    State,
    TransferResult,
    start,
    step,
    steps_before_confirmation,
)
from ivr_scripts import actions as act
from ivr_scripts import events as ev
from ivr_scripts.events import AnsweredBy
from ivr_scripts.kana import to_romaji
from ivr_scripts.model import LANGUAGES
from ivr_scripts.render import render
from kernel.models.enums import DisclosureLevel
from tests.unit.test_ivr_engine import AMOUNTS, BASE, FLOW, HUMAN, KINDS, run

FORBIDDEN_JA = ("滞納", "税", "未納", "延滞", "納付", "督促", "支払", "円", "令和", "年度")
FORBIDDEN_EN = ("arrears", "tax", "overdue", "unpaid", "payment", "yen", "fiscal", "due")
ANSWERS: list[AnsweredBy] = ["human", "machine", "unknown"]
YEARS = ("2024", "2023", "6年", "5年")


def _contexts() -> list[CallContext]:
    return [
        replace(BASE, disclosure=level, language=language, mobile=mobile)
        for level in DisclosureLevel
        for language in LANGUAGES
        for mobile in (True, False)
    ]


def _without_allowed(text: str, ctx: CallContext) -> str:
    """Remove what R-4 allows before confirmation: municipality, section, name, callback."""
    allowed = (
        ctx.callback_number,
        ctx.municipality,
        ctx.section,
        ctx.name_kana,
        to_romaji(ctx.name_kana),
        to_romaji(ctx.municipality_kana),
    )
    for value in allowed:
        text = text.replace(value, "")
    return text


def assert_reveals_nothing(text: str, ctx: CallContext) -> None:
    rest = _without_allowed(text, ctx)
    lowered = rest.lower()
    assert not any(word in rest for word in (*FORBIDDEN_JA, *KINDS, *AMOUNTS, *YEARS)), rest
    assert not any(word in lowered for word in FORBIDDEN_EN), rest


def test_every_text_reachable_before_confirmation_reveals_nothing() -> None:
    before = steps_before_confirmation(FLOW)
    assert {"greeting", "not_person", "no_input_end", "machine_message"} <= before
    assert not {"notice_message", "menu", "summary_message", "detail_message"} & before
    for ctx in _contexts():
        for sid in before:
            for text in FLOW.steps[sid].texts():
                assert_reveals_nothing(render(text, ctx), ctx)


def test_calls_that_never_confirm_speak_nothing_revealing() -> None:
    scripts: list[list[ev.Event]] = [
        [HUMAN, NoInput(), NoInput()],
        [HUMAN, Digits("9"), Digits("#"), Digits("0415")],
        [HUMAN, Digits("2"), Digits("9")],
        [HUMAN, Speech("いいえ"), NoInput()],
        [HUMAN, Speech("結構です")],
        [CallAnswered("machine")],
        [HUMAN, ev.Hangup()],
    ]
    for ctx in _contexts():
        for events in scripts:
            transcript = run(*events, context=ctx)
            assert not transcript.state.identity_confirmed
            for text in transcript.spoken:
                assert_reveals_nothing(text, ctx)


# --- random event sequences --------------------------------------------------------------

KEYS = ["0", "1", "2", "3", "4", "5", "8", "9", "0415", "0101", "*", "#", "*#12ab", "", "12"]
WORDS = ["はい", "いいえ", "結構です", "オペレーター", "もう払いました", "4月15日", "午前", "stop"]
LIKELY: list[ev.Event] = [
    *(Digits(key) for key in KEYS),
    *(Speech(word) for word in WORDS),
    NoInput(),
    TransferResult(True),
    TransferResult(False),
    ev.Hangup(),
]
random_events = st.one_of(
    st.sampled_from(ANSWERS).map(CallAnswered),
    st.text(alphabet="0123456789*#ab", max_size=5).map(Digits),
    st.builds(Speech, st.sampled_from(WORDS) | st.text(max_size=8), st.floats(0, 1)),
    st.just(NoInput()),
    st.just(ev.Hangup()),
    st.booleans().map(TransferResult),
)
# Mostly plausible input after an answer (so calls go deep), sometimes anything at all.
likely_events = st.sampled_from(LIKELY)
events_strategy = st.one_of(likely_events, likely_events, likely_events, random_events)
answer_strategy = st.sampled_from([*ANSWERS, "human"]).map(CallAnswered)
# Prefixes that get past the greeting (and the second factor) so the menu gets explored too.
prefix_strategy = st.sampled_from(
    [[], [Digits("1")], [Speech("はい")], [Digits("1"), Digits("0415")], [Digits("2")]]
)
calls_strategy = st.one_of(
    st.builds(
        lambda first, prefix, rest: [first, *prefix, *rest],
        answer_strategy,
        prefix_strategy,
        st.lists(events_strategy, max_size=12),
    ),
    st.lists(random_events, max_size=6),
)
contexts_strategy = st.builds(
    replace,
    st.just(BASE),
    disclosure=st.sampled_from(list(DisclosureLevel)),
    birth_mmdd=st.sampled_from(["0415", None]),
    mobile=st.booleans(),
    operator_available=st.booleans(),
    machine_policy=st.sampled_from(["message", "hangup"]),
    language=st.sampled_from(["ja", "en"]),
)


@settings(max_examples=300, deadline=None)
@given(ctx=contexts_strategy, events=calls_strategy)
def test_random_calls_keep_every_invariant(ctx: CallContext, events: list[ev.Event]) -> None:
    state = start(FLOW, ctx)
    everything: list[act.Action] = []
    for event in events:
        actions, state = step(FLOW, ctx, state, event)
        assert not (everything and everything[-1] == act.Hangup() and actions)
        if any(isinstance(a, RecordOutcome) for a in everything):
            assert actions == []
        everything += actions
        _check_spoken(actions, ctx, state)
    outcomes = [a for a in everything if isinstance(a, RecordOutcome)]
    assert len(outcomes) == (1 if state.ended else 0)
    if act.Hangup() in everything:
        assert everything[-1] == act.Hangup() and everything.count(act.Hangup()) == 1


def _check_spoken(actions: list[act.Action], ctx: CallContext, state: State) -> None:
    for action in actions:
        if not isinstance(action, Say):
            continue
        if not state.identity_confirmed:
            assert_reveals_nothing(action.text, ctx)
        if any(amount in action.text for amount in AMOUNTS):
            assert ctx.disclosure is DisclosureLevel.DETAIL
            assert state.second_factor is SecondFactor.PASSED
        if any(kind in action.text for kind in KINDS):
            assert state.identity_confirmed and ctx.disclosure is not DisclosureLevel.NOTICE


states_strategy = st.builds(
    State,
    step=st.none() | st.sampled_from(sorted(FLOW.steps)),
    ended=st.booleans(),
    retries=st.integers(0, 3),
    identity_confirmed=st.booleans(),
    second_factor=st.sampled_from(list(SecondFactor)),
    disclosure_reached=st.none() | st.sampled_from(list(DisclosureLevel)),
)


@given(state=states_strategy, retries=st.integers(0, 5), confirmed=st.booleans())
def test_state_evolve_equals_dataclasses_replace(
    state: State, retries: int, confirmed: bool
) -> None:
    before = vars(state).copy()
    evolved = state.evolve(retries=retries, identity_confirmed=confirmed)
    expected = replace(state, retries=retries, identity_confirmed=confirmed)
    assert evolved == expected
    assert hash(evolved) == hash(expected)
    assert vars(state) == before  # the original is untouched


def test_state_evolve_refuses_an_unknown_field() -> None:
    with pytest.raises(TypeError, match="retry"):
        State().evolve(retry=1)
