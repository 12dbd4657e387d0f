"""Loading flow files: YAML -> :class:`Flow`, with ``file:line: problem`` errors.

The only I/O in this package: reading a flow file. Structure is checked here; the graph
(references, reachability, the identity gate) is checked by :mod:`ivr_scripts.checks`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import cast

from ivr_scripts.actions import InputMode
from ivr_scripts.checks import check_flow
from ivr_scripts.flow import (
    BranchArm,
    Choice,
    Flow,
    FlowError,
    GatherSpec,
    Retry,
    Step,
    TransferWait,
    Verify,
)
from ivr_scripts.kana import normalize_speech
from ivr_scripts.parts import (
    parse_condition,
    parse_discloses,
    parse_effects,
    parse_outcome,
    parse_texts,
)
from ivr_scripts.yamlnodes import YNode, compose

FLOWS_DIR = Path(__file__).parent / "flows"
_NAME = re.compile(r"[a-z0-9_]+")
_DTMF = re.compile(r"[0-9*#]+")
_TOP_KEYS = ("flow", "start", "machine", "speech_min_confidence", "keywords", "steps")
_STEP_KEYS = (
    "say", "prompt", "effects", "discloses", "gather", "choices", "verify", "retry",
    "transfer", "goto", "branch", "end", "hangup", "on_hangup",
)  # fmt: skip
_CONTINUATIONS = ("gather", "transfer", "goto", "branch", "end")
Keywords = dict[str, tuple[str, ...]]


def load_flow(path: str | Path) -> Flow:
    """Read and validate a flow file; any problem raises FlowError naming ``file:line``."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise FlowError(str(file), 1, f"cannot read the flow file: {error}") from None
    return parse_flow(text, str(file))


def load_builtin_flow(name: str = "standard") -> Flow:
    """A flow shipped in ``ivr_scripts/flows/`` (``standard`` is the default)."""
    if not _NAME.fullmatch(name):
        raise FlowError(name, 1, "a built-in flow name is lower-case letters, digits and _")
    return load_flow(FLOWS_DIR / f"{name}.yaml")


def parse_flow(text: str, source: str = "<flow>") -> Flow:
    root = compose(text, source)
    top = root.mapping("the flow", _TOP_KEYS)
    for key in ("flow", "start", "machine", "steps"):
        if key not in top:
            raise root.error(f"missing key {key!r}")
    keywords = _keywords(top["keywords"]) if "keywords" in top else {}
    steps_node = top["steps"].entries("steps")
    if not steps_node:
        raise top["steps"].error("steps is empty")
    steps = {sid: _step(sid, key, node, keywords) for sid, (key, node) in steps_node.items()}
    flow = Flow(
        name=top["flow"].scalar("flow"),
        source=source,
        start=top["start"].scalar("start"),
        machine=top["machine"].scalar("machine"),
        steps=steps,
        speech_min_confidence=_confidence(top.get("speech_min_confidence")),
    )
    check_flow(flow, {"start": top["start"].line, "machine": top["machine"].line})
    return flow


def _confidence(node: YNode | None) -> float:
    if node is None:
        return 0.4
    value = node.number("speech_min_confidence")
    if not 0.0 <= value <= 1.0:
        raise node.error("speech_min_confidence must be between 0 and 1")
    return value


def _keywords(node: YNode) -> Keywords:
    result: Keywords = {}
    for name, words in node.mapping("keywords").items():
        result[name] = tuple(item.text(f"a word of keywords.{name}") for item in words.items(name))
    return result


def _step(sid: str, key: YNode, node: YNode, keywords: Keywords) -> Step:
    fields = node.mapping(f"step {sid!r}", _STEP_KEYS)
    present = [name for name in _CONTINUATIONS if name in fields]
    if len(present) != 1:
        found = ", ".join(present) or "none"
        raise key.error(
            f"step {sid!r} needs exactly one of {', '.join(_CONTINUATIONS)} (found {found})"
        )
    _require_pairs(sid, key, fields)
    return Step(
        id=sid,
        line=key.line,
        say=parse_texts(fields.get("say"), f"{sid}.say"),
        prompt=parse_texts(fields.get("prompt"), f"{sid}.prompt"),
        effects=parse_effects(fields.get("effects")),
        discloses=parse_discloses(fields.get("discloses")),
        gather=_gather(fields["gather"], "verify" in fields) if "gather" in fields else None,
        choices=_choices(fields.get("choices"), keywords),
        verify=_verify(fields["verify"]) if "verify" in fields else None,
        retry=_retry(fields["retry"], sid) if "retry" in fields else None,
        transfer=_transfer(fields["transfer"]) if "transfer" in fields else None,
        goto=fields["goto"].scalar("goto") if "goto" in fields else None,
        branch=_branch(fields["branch"]) if "branch" in fields else (),
        end=parse_outcome(fields["end"]) if "end" in fields else None,
        hangup=fields["hangup"].boolean("hangup") if "hangup" in fields else True,
        on_hangup=parse_outcome(fields["on_hangup"]) if "on_hangup" in fields else None,
    )


def _require_pairs(sid: str, node: YNode, fields: dict[str, YNode]) -> None:
    if "gather" in fields:
        if ("choices" in fields) == ("verify" in fields):
            raise node.error(f"step {sid!r} gathers input: it needs either choices or verify")
        if "retry" not in fields:
            raise node.error(f"step {sid!r} gathers input: it needs a retry (no/invalid input)")
        return
    for key in ("choices", "verify", "retry", "prompt"):
        if key in fields:
            raise fields[key].error(f"step {sid!r} has {key} but no gather")
    if "hangup" in fields and "end" not in fields:
        raise fields["hangup"].error(f"step {sid!r}: hangup only applies to an end step")


def _gather(node: YNode, verify: bool) -> GatherSpec:
    fields = node.mapping("gather", ("input", "num_digits", "timeout_s"))
    modes = ["dtmf", "speech"]
    if "input" in fields:
        modes = [item.scalar("gather.input") for item in fields["input"].items("gather.input")]
    bad = [mode for mode in modes if mode not in ("dtmf", "speech")]
    if bad or not modes:
        raise node.error(f"gather.input must list dtmf and/or speech, got {modes!r}")
    num_digits: int | None = 4 if verify else None
    if "num_digits" in fields and not fields["num_digits"].is_null():
        num_digits = fields["num_digits"].integer("gather.num_digits", minimum=1)
    timeout = fields["timeout_s"].integer("gather.timeout_s", 1) if "timeout_s" in fields else 6
    return GatherSpec(frozenset(cast(list[InputMode], modes)), num_digits, timeout, node.line)


def _choices(node: YNode | None, keywords: Keywords) -> tuple[Choice, ...]:
    if node is None:
        return ()
    choices = tuple(_choice(item, keywords) for item in node.items("choices"))
    seen: dict[str, int] = {}
    for choice in choices:
        for key in choice.keys:
            if key in seen:
                raise FlowError(node.source, choice.line, f"key {key!r} used twice in a step")
            seen[key] = choice.line
    return choices


def _choice(node: YNode, keywords: Keywords) -> Choice:
    fields = node.mapping("a choice", ("keys", "words", "goto", "effects", "when"))
    if "goto" not in fields:
        raise node.error("a choice needs goto")
    keys = (
        [item.scalar("keys") for item in fields["keys"].items("keys")] if "keys" in fields else []
    )
    bad = [key for key in keys if not _DTMF.fullmatch(key)]
    if bad:
        raise node.error(f"keys must be DTMF digits 0-9, * or #, got {bad[0]!r}")
    hints = _words(fields["words"], keywords) if "words" in fields else ()
    if not keys and not hints:
        raise node.error("a choice needs keys or words")
    return Choice(
        keys=frozenset(keys),
        words=tuple(normalize_speech(word) for word in hints),
        hints=hints,
        goto=fields["goto"].scalar("goto"),
        effects=parse_effects(fields.get("effects")),
        line=node.line,
        when=parse_condition(fields["when"]) if "when" in fields else None,
    )


def _words(node: YNode, keywords: Keywords) -> tuple[str, ...]:
    if node.is_scalar():
        name = node.scalar("words")
        if name not in keywords:
            raise node.error(f"unknown keyword list {name!r}")
        return keywords[name]
    return tuple(item.text("a word") for item in node.items("words"))


def _verify(node: YNode) -> Verify:
    fields = node.mapping("verify", ("max_tries", "passed", "failed", "wrong_say"))
    for key in ("passed", "failed"):
        if key not in fields:
            raise node.error(f"verify needs {key!r}")
    tries = fields["max_tries"].integer("max_tries", 1) if "max_tries" in fields else 2
    return Verify(
        max_tries=tries,
        passed=fields["passed"].scalar("verify.passed"),
        failed=fields["failed"].scalar("verify.failed"),
        wrong_say=parse_texts(fields.get("wrong_say"), "verify.wrong_say"),
        line=node.line,
    )


def _retry(node: YNode, sid: str) -> Retry:
    fields = node.mapping("retry", ("max", "say", "then"))
    if "then" not in fields:
        raise node.error("retry needs then (the step after the last retry)")
    return Retry(
        max=fields["max"].integer("retry.max") if "max" in fields else 1,
        say=parse_texts(fields.get("say"), f"{sid}.retry.say"),
        then=fields["then"].scalar("retry.then"),
        line=node.line,
    )


def _transfer(node: YNode) -> TransferWait:
    fields = node.mapping("transfer", ("connected", "failed"))
    for key in ("connected", "failed"):
        if key not in fields:
            raise node.error(f"transfer needs {key!r}")
    return TransferWait(
        fields["connected"].scalar("transfer.connected"),
        fields["failed"].scalar("transfer.failed"),
        node.line,
    )


def _branch(node: YNode) -> tuple[BranchArm, ...]:
    arms: list[BranchArm] = []
    for item in node.items("branch"):
        fields = item.mapping("a branch arm", ("when", "goto"))
        if "goto" not in fields:
            raise item.error("a branch arm needs goto")
        when = parse_condition(fields["when"]) if "when" in fields else None
        arms.append(BranchArm(when, fields["goto"].scalar("goto"), item.line))
    if not arms:
        raise node.error("branch needs at least one arm")
    if arms[-1].when is not None:
        raise FlowError(node.source, arms[-1].line, "the last branch arm must have no when")
    for arm in arms[:-1]:
        if arm.when is None:
            raise FlowError(node.source, arm.line, "only the last branch arm may omit when")
    return tuple(arms)
