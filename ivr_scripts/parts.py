"""Parsers for the small parts of a flow file: texts, conditions, effects, outcomes."""

from __future__ import annotations

from ivr_scripts.flow import (
    CONDITION_VALUES,
    Condition,
    ConditionKey,
    Effect,
    EffectKind,
    Sensitivity,
    Text,
)
from ivr_scripts.model import OutcomeCode, TimeBand
from ivr_scripts.render import (
    NAME_VARIABLE,
    VARIABLES,
    literal_sensitivity,
    template_variables,
)
from ivr_scripts.yamlnodes import YNode

_DISCLOSES = {
    "notice": Sensitivity.CONFIRMED,
    "summary": Sensitivity.SUMMARY,
    "detail": Sensitivity.DETAIL,
}
_EFFECT_ARGS: dict[EffectKind, frozenset[str] | None] = {
    EffectKind.CONFIRM_IDENTITY: None,
    EffectKind.DENY_IDENTITY: None,
    EffectKind.MARK_WRONG_NUMBER: None,
    EffectKind.ADD_DO_NOT_CALL: None,
    EffectKind.REQUEST_SMS: frozenset(),  # any template name
    EffectKind.REQUEST_CALLBACK: frozenset(band.value for band in TimeBand),
}


def parse_texts(node: YNode | None, what: str) -> tuple[Text, ...]:
    if node is None:
        return ()
    return tuple(parse_text(item, what) for item in node.items(what))


def parse_text(node: YNode, what: str) -> Text:
    fields = node.mapping(f"a text of {what}", ("ja", "en", "when"))
    for language in ("ja", "en"):
        if language not in fields:
            raise node.error(f"missing text: {what} has no {language!r}")
    ja, en = fields["ja"].text(f"{what}.ja"), fields["en"].text(f"{what}.en")
    names = _variables(fields["ja"], ja, f"{what}.ja") + _variables(fields["en"], en, f"{what}.en")
    levels = [literal_sensitivity(ja, en), *(VARIABLES[name] for name in names)]
    return Text(
        ja=ja,
        en=en,
        line=node.line,
        when=parse_condition(fields["when"]) if "when" in fields else None,
        sensitivity=Sensitivity(max(levels)),
        uses_name=NAME_VARIABLE in names,
    )


def _variables(node: YNode, template: str, what: str) -> list[str]:
    try:
        names = template_variables(template)
    except ValueError as error:
        raise node.error(f"{what}: {error}") from None
    for name in names:
        if name not in VARIABLES:
            known = ", ".join(sorted(VARIABLES))
            raise node.error(f"{what}: unknown variable {{{name}}} (known: {known})")
    return list(names)


def parse_condition(node: YNode) -> Condition:
    tests: list[tuple[ConditionKey, str]] = []
    for key, value_node in node.mapping("when").items():
        try:
            condition_key = ConditionKey(key)
        except ValueError:
            allowed = ", ".join(k.value for k in ConditionKey)
            raise node.error(f"unknown condition {key!r} (known: {allowed})") from None
        value = value_node.scalar(f"when.{key}").lower()
        if value not in CONDITION_VALUES[condition_key]:
            options = ", ".join(sorted(CONDITION_VALUES[condition_key]))
            raise value_node.error(f"when.{key} must be one of {options}, got {value!r}")
        tests.append((condition_key, value))
    if not tests:
        raise node.error("when is empty")
    return Condition(tuple(tests), node.line)


def parse_effects(node: YNode | None) -> tuple[Effect, ...]:
    if node is None:
        return ()
    return tuple(_effect(item) for item in node.items("effects"))


def _effect(node: YNode) -> Effect:
    if node.is_scalar():
        name, arg_node = node.scalar("effect"), None
    else:
        ((name, arg_node),) = _single(node, "an effect").items()
    try:
        kind = EffectKind(name)
    except ValueError:
        known = ", ".join(kind.value for kind in EffectKind)
        raise node.error(f"unknown action type {name!r} (known: {known})") from None
    allowed = _EFFECT_ARGS[kind]
    if allowed is None:
        if arg_node is not None:
            raise node.error(f"action {name!r} takes no argument")
        return Effect(kind, None, node.line)
    if arg_node is None:
        raise node.error(f"action {name!r} needs an argument")
    arg = arg_node.scalar(name)
    if allowed and arg not in allowed:
        raise arg_node.error(f"{name} must be one of {', '.join(sorted(allowed))}, got {arg!r}")
    return Effect(kind, arg, node.line)


def _single(node: YNode, what: str) -> dict[str, YNode]:
    fields = node.mapping(what)
    if len(fields) != 1:
        raise node.error(f"{what} must have exactly one key")
    return fields


def parse_discloses(node: YNode | None) -> Sensitivity:
    if node is None:
        return Sensitivity.PUBLIC
    value = node.scalar("discloses")
    if value not in _DISCLOSES:
        raise node.error(f"discloses must be notice, summary or detail, got {value!r}")
    return _DISCLOSES[value]


def parse_outcome(node: YNode) -> OutcomeCode:
    value = node.scalar("outcome")
    try:
        return OutcomeCode(value)
    except ValueError:
        known = ", ".join(code.value for code in OutcomeCode)
        raise node.error(f"unknown outcome {value!r} (known: {known})") from None
