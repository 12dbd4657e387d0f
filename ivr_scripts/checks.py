"""Graph checks of a loaded flow: references, reachability, loops and the identity gate (R-4).

The identity gate is checked by exploring every path a call can take, tracking what is known
on that path (identity confirmed or denied, second factor passed, disclosure level decided by
a branch, disclosure reached so far). A step that would reveal more than the path allows is
an error, so a flow that loads cannot speak a detail before confirmation.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace

from ivr_scripts.flow import (
    Condition,
    ConditionKey,
    Effect,
    EffectKind,
    Flow,
    FlowError,
    Sensitivity,
    Step,
)

REACHED_NAMES: Mapping[Sensitivity, str] = {
    Sensitivity.PUBLIC: "none",
    Sensitivity.CONFIRMED: "notice",
    Sensitivity.SUMMARY: "summary",
    Sensitivity.DETAIL: "detail",
}


@dataclass(frozen=True)
class Edge:
    target: str
    line: int
    effects: tuple[Effect, ...] = ()
    when: Condition | None = None
    passes_second_factor: bool = False


@dataclass(frozen=True)
class PathFacts:
    """What is known on one path into a step."""

    step: str
    confirmed: bool = False
    denied: bool = False
    second_factor: bool = False
    disclosure: str | None = None
    reached: Sensitivity = Sensitivity.PUBLIC
    machine: bool = False


def edges(step: Step) -> Iterator[Edge]:
    """Every transition out of ``step``."""
    for choice in step.choices:
        yield Edge(choice.goto, choice.line, choice.effects, choice.when)
    if step.verify:
        yield Edge(step.verify.passed, step.verify.line, passes_second_factor=True)
        yield Edge(step.verify.failed, step.verify.line)
    if step.retry:
        yield Edge(step.retry.then, step.retry.line)
    if step.transfer:
        yield Edge(step.transfer.connected, step.transfer.line)
        yield Edge(step.transfer.failed, step.transfer.line)
    if step.goto:
        yield Edge(step.goto, step.line)
    for arm in step.branch:
        yield Edge(arm.goto, arm.line, when=arm.when)


def check_flow(flow: Flow, entry_lines: Mapping[str, int]) -> None:
    _check_references(flow, entry_lines)
    _check_no_silent_loops(flow)
    explore(flow)
    _check_reachable(flow)


def _check_references(flow: Flow, entry_lines: Mapping[str, int]) -> None:
    for entry in ("start", "machine"):
        target = flow.start if entry == "start" else flow.machine
        if target not in flow.steps:
            raise FlowError(flow.source, entry_lines[entry], f"unknown step {target!r} ({entry})")
    for step in flow.steps.values():
        for edge in edges(step):
            if edge.target not in flow.steps:
                problem = f"unknown step {edge.target!r} referenced from step {step.id!r}"
                raise FlowError(flow.source, edge.line, problem)


def _check_reachable(flow: Flow) -> None:
    seen = {flow.start, flow.machine}
    todo = list(seen)
    while todo:
        for edge in edges(flow.steps[todo.pop()]):
            if edge.target not in seen:
                seen.add(edge.target)
                todo.append(edge.target)
    for step in flow.steps.values():
        if step.id not in seen:
            raise FlowError(flow.source, step.line, f"unreachable step {step.id!r}")


def _check_no_silent_loops(flow: Flow) -> None:
    """goto/branch steps continue at once: a cycle of them would never wait or end."""
    state: dict[str, int] = {}

    def visit(sid: str) -> None:
        state[sid] = 1
        step = flow.steps[sid]
        if step.goto is not None or step.branch:
            for edge in edges(step):
                if state.get(edge.target) == 1:
                    problem = f"steps loop without waiting for input: {sid!r} -> {edge.target!r}"
                    raise FlowError(flow.source, edge.line, problem)
                if edge.target not in state:
                    visit(edge.target)
        state[sid] = 2

    for sid in flow.steps:
        if sid not in state:
            visit(sid)


def explore(flow: Flow) -> set[PathFacts]:
    """Every (step, facts) a call can be in; raises FlowError where a step reveals too much."""
    entries = [PathFacts(flow.start), PathFacts(flow.machine, machine=True)]
    seen: set[PathFacts] = set()
    todo = list(entries)
    while todo:
        facts = todo.pop()
        if facts in seen:
            continue
        seen.add(facts)
        step = flow.steps[facts.step]
        _check_gate(flow, step, facts)
        after = replace(facts, reached=max(facts.reached, step.sensitivity))
        for edge in edges(step):
            following = _follow(after, edge)
            if following is not None:
                todo.append(following)
    return seen


def steps_before_confirmation(flow: Flow) -> frozenset[str]:
    """The steps a call can be in before the listener confirmed their identity."""
    return frozenset(facts.step for facts in explore(flow) if not facts.confirmed)


def _follow(facts: PathFacts, edge: Edge) -> PathFacts | None:
    kinds = {effect.kind for effect in edge.effects}
    result = replace(
        facts,
        step=edge.target,
        confirmed=facts.confirmed or EffectKind.CONFIRM_IDENTITY in kinds,
        denied=facts.denied or EffectKind.DENY_IDENTITY in kinds,
        second_factor=facts.second_factor or edge.passes_second_factor,
    )
    for key, value in edge.when.tests if edge.when else ():
        if key is ConditionKey.DISCLOSURE:
            if result.disclosure not in (None, value):
                return None
            result = replace(result, disclosure=value)
        elif key is ConditionKey.REACHED and REACHED_NAMES[result.reached] != value:
            return None
    return result


def _check_gate(flow: Flow, step: Step, facts: PathFacts) -> None:
    problem = _gate_problem(step, facts)
    if problem:
        raise FlowError(flow.source, step.line, f"step {step.id!r} {problem} (R-4)")


def _gate_problem(step: Step, facts: PathFacts) -> str | None:
    level = step.sensitivity
    if facts.machine and (level > Sensitivity.PUBLIC or step.uses_name):
        return "speaks the name or a detail to an answering machine"
    if facts.denied and step.uses_name:
        return "repeats the name after the listener said they are not the person"
    if level >= Sensitivity.CONFIRMED and not facts.confirmed:
        return "reveals a detail but is reachable without passing identity confirmation"
    if level >= Sensitivity.SUMMARY and facts.disclosure not in ("summary", "detail"):
        return "reveals the fiscal year or kind but is reachable at disclosure level notice"
    if level >= Sensitivity.DETAIL and facts.disclosure != "detail":
        return "reveals amounts but is reachable below disclosure level detail"
    if level >= Sensitivity.DETAIL and not facts.second_factor:
        return "reveals amounts but is reachable without passing the second factor"
    return None
