"""The pure IVR engine: ``step(flow, ctx, state, event) -> (actions, state)``.

No I/O, no clock, no randomness: the same inputs always give the same actions. A call ends
with exactly one RecordOutcome; after it (and after the terminal Hangup) every event yields
no actions. The identity gate is enforced twice: the loader proves no path reveals a detail
too early, and :func:`_guard` refuses at run time should a context change break that proof.
"""

from __future__ import annotations

from collections.abc import Sequence

import ivr_scripts.actions as act
import ivr_scripts.events as ev
from ivr_scripts.flow import Effect, EffectKind, Flow, FlowError, Sensitivity, Step, Text
from ivr_scripts.matching import hints, holds, match_choice, month_day
from ivr_scripts.model import CallContext, OutcomeCode, SecondFactor, State, TimeBand
from ivr_scripts.render import is_personal, render
from kernel.models.enums import DisclosureLevel

Result = tuple[list[act.Action], State]
_LEVELS: dict[Sensitivity, DisclosureLevel] = {
    Sensitivity.CONFIRMED: DisclosureLevel.NOTICE,
    Sensitivity.SUMMARY: DisclosureLevel.SUMMARY,
    Sensitivity.DETAIL: DisclosureLevel.DETAIL,
}
_NOT_VERIFIED = frozenset({SecondFactor.FAILED, SecondFactor.NO_INPUT, SecondFactor.UNAVAILABLE})
_RANK = {None: 0, DisclosureLevel.NOTICE: 1, DisclosureLevel.SUMMARY: 2, DisclosureLevel.DETAIL: 3}


def start(flow: Flow, ctx: CallContext) -> State:
    """The state of a call that has been placed and not yet answered."""
    del flow, ctx  # the initial state is the same for every flow and call
    return State()


def step(flow: Flow, ctx: CallContext, state: State, event: ev.Event) -> Result:
    """Advance the call by one event; events after the end yield no actions."""
    if state.ended:
        return [], state
    if isinstance(event, ev.Hangup):
        return _resident_hung_up(flow, state)
    if state.step is None:
        if isinstance(event, ev.CallAnswered):
            entry = flow.machine if event.answered_by == "machine" else flow.start
            return _enter(flow, ctx, state, entry)
        return [], state
    current = flow.steps[state.step]
    if isinstance(event, ev.TransferResult):
        return _transfer_result(flow, ctx, state, current, event)
    if isinstance(event, ev.CallAnswered):
        return _late_verdict(flow, ctx, state, event)
    if current.gather is None:
        return [], state
    if current.verify is not None:
        return _verify(flow, ctx, state, current, event)
    choice = match_choice(flow, ctx, state, current, event)
    if choice is None:
        return _retry(flow, ctx, state, current)
    effect_actions, state = _apply_effects(choice.effects, ctx, state)
    actions, state = _enter(flow, ctx, state, choice.goto)
    return effect_actions + actions, state


def _late_verdict(flow: Flow, ctx: CallContext, state: State, event: ev.CallAnswered) -> Result:
    """An answering-machine verdict that arrives after the greeting began (Twilio's async AMD).

    While the resident has not answered anything yet, the greeting (which discloses nothing
    beyond R-4's name announcement) gives way to the machine message; later verdicts are
    ignored: someone has already interacted with the flow.
    """
    untouched = (
        state.step == flow.start
        and state.retries == 0
        and not state.identity_confirmed
        and not state.identity_denied
    )
    if event.answered_by != "machine" or not untouched:
        return [], state
    return _enter(flow, ctx, state, flow.machine)


def _enter(flow: Flow, ctx: CallContext, state: State, sid: str) -> Result:
    """Enter ``sid`` and continue through goto/branch steps until input is awaited or the end."""
    out: list[act.Action] = []
    for _ in range(len(flow.steps) + 1):
        current = flow.steps[sid]
        if current.verify is not None and ctx.birth_mmdd is None:
            state = state.evolve(second_factor=SecondFactor.UNAVAILABLE)
            sid = current.verify.failed
            continue
        _guard(flow, current, ctx, state)
        state = _arrive(state, current)
        out += _say(current.say + current.prompt, ctx, state)
        effect_actions, state = _apply_effects(current.effects, ctx, state)
        out += effect_actions
        if current.end is not None:
            finish, state = _finish(current, current.end, state)
            return out + finish, state
        if current.gather is not None:
            return [*out, _gather(current, ctx, state)], state
        if current.transfer is not None:
            return [*out, act.Transfer()], state
        sid = current.goto or _branch(current, ctx, state)
    raise FlowError(flow.source, flow.steps[sid].line, "steps loop without waiting for input")


def _arrive(state: State, current: Step) -> State:
    reached = state.disclosure_reached
    level = _LEVELS.get(current.sensitivity)
    if level is not None and _RANK[level] > _RANK[reached]:
        reached = level
    return state.evolve(step=current.id, retries=0, disclosure_reached=reached)


def _branch(current: Step, ctx: CallContext, state: State) -> str:
    for arm in current.branch:
        if holds(arm.when, ctx, state):
            return arm.goto
    raise AssertionError("the loader guarantees a default branch arm")


def _guard(flow: Flow, current: Step, ctx: CallContext, state: State) -> None:
    level = current.sensitivity
    allowed = (
        (level < Sensitivity.CONFIRMED or state.identity_confirmed)
        and (level < Sensitivity.SUMMARY or ctx.disclosure is not DisclosureLevel.NOTICE)
        and (
            level < Sensitivity.DETAIL
            or (
                ctx.disclosure is DisclosureLevel.DETAIL
                and state.second_factor is SecondFactor.PASSED
            )
        )
    )
    if not allowed:
        problem = f"step {current.id!r} would reveal more than this call allows (R-4)"
        raise FlowError(flow.source, current.line, problem)


def _say(texts: Sequence[Text], ctx: CallContext, state: State) -> list[act.Action]:
    return [
        act.Say(render(text, ctx), ctx.language, is_personal(text, ctx))
        for text in texts
        if holds(text.when, ctx, state)
    ]


def _gather(current: Step, ctx: CallContext, state: State) -> act.Gather:
    assert current.gather is not None
    spec = current.gather
    return act.Gather(spec.input, spec.num_digits, spec.timeout_s, hints(current, ctx, state))


def _reprompt(current: Step, ctx: CallContext, state: State, texts: Sequence[Text]) -> Result:
    spoken = _say([*texts, *current.prompt], ctx, state)
    return [*spoken, _gather(current, ctx, state)], state


def _retry(flow: Flow, ctx: CallContext, state: State, current: Step) -> Result:
    assert current.retry is not None
    if state.retries < current.retry.max:
        state = state.evolve(retries=state.retries + 1)
        return _reprompt(current, ctx, state, current.retry.say)
    if current.verify is not None:
        state = state.evolve(second_factor=SecondFactor.NO_INPUT)
    return _enter(flow, ctx, state, current.retry.then)


def _verify(flow: Flow, ctx: CallContext, state: State, current: Step, event: ev.Event) -> Result:
    assert current.verify is not None
    if not isinstance(event, ev.Digits | ev.Speech | ev.NoInput):
        return [], state
    entered = month_day(flow, current, event)
    if entered is None:
        return _retry(flow, ctx, state, current)
    if entered == ctx.birth_mmdd:
        state = state.evolve(second_factor=SecondFactor.PASSED)
        return _enter(flow, ctx, state, current.verify.passed)
    tries = state.second_factor_tries + 1
    state = state.evolve(second_factor_tries=tries)
    if tries >= current.verify.max_tries:
        state = state.evolve(second_factor=SecondFactor.FAILED)
        return _enter(flow, ctx, state, current.verify.failed)
    return _reprompt(current, ctx, state, current.verify.wrong_say)


def _transfer_result(
    flow: Flow, ctx: CallContext, state: State, current: Step, event: ev.TransferResult
) -> Result:
    if current.transfer is None:
        return [], state
    if event.ok:
        return _enter(flow, ctx, state, current.transfer.connected)
    return _enter(flow, ctx, state.evolve(transfer_failed=True), current.transfer.failed)


def _apply_effects(effects: Sequence[Effect], ctx: CallContext, state: State) -> Result:
    out: list[act.Action] = []
    for effect in effects:
        if effect.kind is EffectKind.CONFIRM_IDENTITY:
            state = state.evolve(identity_confirmed=True)
        elif effect.kind is EffectKind.DENY_IDENTITY:
            state = state.evolve(identity_denied=True)
        elif effect.kind is EffectKind.MARK_WRONG_NUMBER:
            out.append(act.MarkWrongNumber())
        elif effect.kind is EffectKind.ADD_DO_NOT_CALL:
            out.append(act.AddDoNotCall())
        elif effect.kind is EffectKind.REQUEST_CALLBACK:
            band = TimeBand(str(effect.arg))
            out.append(act.RequestCallback(band))
            state = state.evolve(callback_band=band)
        elif ctx.mobile and not state.sms_requested:  # REQUEST_SMS: mobiles only, once
            out.append(act.RequestSms(str(effect.arg)))
            state = state.evolve(sms_requested=True)
    return out, state


def _resident_hung_up(flow: Flow, state: State) -> Result:
    current = flow.steps[state.step] if state.step is not None else None
    if current is not None and current.on_hangup is not None:
        code = current.on_hangup
    elif state.identity_denied:
        code = OutcomeCode.WRONG_PARTY
    elif state.identity_confirmed:
        code = OutcomeCode.RPC_CONFIRMED
    else:
        code = OutcomeCode.HANGUP_BEFORE_CONFIRM
    detail = _detail(state, state.step or "not_answered")
    detail["ended_by"] = "resident"
    return [act.RecordOutcome(code, detail)], state.evolve(ended=True, outcome=code)


def _finish(current: Step, code: OutcomeCode, state: State) -> Result:
    out: list[act.Action] = [act.RecordOutcome(code, _detail(state, current.id))]
    if current.hangup:
        out.append(act.Hangup())
    return out, state.evolve(ended=True, outcome=code)


def _detail(state: State, step_id: str) -> dict[str, str]:
    identity = "confirmed" if state.identity_confirmed else "unconfirmed"
    detail = {
        "step": step_id,
        "identity": "denied" if state.identity_denied else identity,
        "disclosure": state.disclosure_reached.value if state.disclosure_reached else "none",
        "second_factor": state.second_factor.value,
    }
    if state.second_factor in _NOT_VERIFIED:
        detail["fallback"] = "notice"
    if state.callback_band is not None:
        detail["callback_band"] = state.callback_band.value
    if state.sms_requested:
        detail["sms_requested"] = "true"
    if state.transfer_failed:
        detail["transfer"] = "failed"
    return detail
