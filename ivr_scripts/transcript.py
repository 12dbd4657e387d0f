"""Feeding a scripted list of events through the engine, and a readable Japanese transcript."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import ivr_scripts.actions as act
import ivr_scripts.events as ev
from ivr_scripts.engine import start, step
from ivr_scripts.flow import Flow
from ivr_scripts.model import CallContext, OutcomeCode, State

_ANSWERED_BY = {"human": "本人または家族", "machine": "留守番電話", "unknown": "不明"}
_INPUT = {"dtmf": "ダイヤル", "speech": "音声"}
_BANDS = {"morning": "午前", "afternoon": "午後", "evening": "夕方", "any": "指定なし"}


@dataclass(frozen=True)
class Turn:
    event: ev.Event
    actions: tuple[act.Action, ...]


@dataclass(frozen=True)
class Transcript:
    turns: tuple[Turn, ...]
    state: State

    @property
    def actions(self) -> list[act.Action]:
        return [action for turn in self.turns for action in turn.actions]

    @property
    def outcomes(self) -> list[act.RecordOutcome]:
        return [a for a in self.actions if isinstance(a, act.RecordOutcome)]

    @property
    def outcome(self) -> OutcomeCode | None:
        return self.state.outcome

    @property
    def spoken(self) -> list[str]:
        return [a.text for a in self.actions if isinstance(a, act.Say)]

    def render(self) -> str:
        """One line per event and action: "IVR: ...", "住民: ...", ending with "結果: <code>"."""
        lines: list[str] = []
        for turn in self.turns:
            lines.append(describe_event(turn.event))
            lines += [describe_action(action) for action in turn.actions]
        lines.append(f"結果: {self.outcome.value if self.outcome else '(通話継続中)'}")
        return "\n".join(lines)


def run_script(flow: Flow, ctx: CallContext, events: Iterable[ev.Event]) -> Transcript:
    """Run ``events`` from the start of a call; useful for tests and demo transcripts."""
    state = start(flow, ctx)
    turns: list[Turn] = []
    for event in events:
        actions, state = step(flow, ctx, state, event)
        turns.append(Turn(event, tuple(actions)))
    return Transcript(tuple(turns), state)


def describe_event(event: ev.Event) -> str:
    if isinstance(event, ev.CallAnswered):
        return f"(応答: {_ANSWERED_BY[event.answered_by]})"
    if isinstance(event, ev.Digits):
        return f"住民: {event.digits}"
    if isinstance(event, ev.Speech):
        return f"住民: 「{event.text}」"
    if isinstance(event, ev.NoInput):
        return "住民: (無言)"
    if isinstance(event, ev.Hangup):
        return "住民: (電話を切る)"
    return f"(転送結果: {'成功' if event.ok else '失敗'})"


def describe_action(action: act.Action) -> str:
    if isinstance(action, act.Say):
        return f"IVR: {action.text}"
    if isinstance(action, act.Gather):
        modes = "・".join(_INPUT[mode] for mode in sorted(action.input))
        digits = f"{action.num_digits}桁, " if action.num_digits else ""
        return f"IVR: [入力待ち: {modes}, {digits}{action.timeout_s}秒]"
    if isinstance(action, act.RecordOutcome):
        return f"IVR: [結果記録: {action.code.value}]"
    if isinstance(action, act.RequestSms):
        return f"IVR: [SMS送信依頼: {action.template}]"
    if isinstance(action, act.RequestCallback):
        return f"IVR: [折り返し依頼: {_BANDS.get(action.time_band, action.time_band)}]"
    names = {
        act.Transfer: "オペレーターへ転送",
        act.Hangup: "切断",
        act.MarkWrongNumber: "番号誤り登録",
        act.AddDoNotCall: "架電停止登録",
    }
    return f"IVR: [{names[type(action)]}]"
