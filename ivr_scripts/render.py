"""Texts: which variables exist, what each reveals (R-4), and rendering them for one call."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from datetime import date
from string import Formatter

from ivr_scripts.flow import Sensitivity, Text
from ivr_scripts.kana import to_romaji
from ivr_scripts.model import CallContext, ReceivableItem

VARIABLES: Mapping[str, Sensitivity] = {
    "municipality": Sensitivity.PUBLIC,
    "section": Sensitivity.PUBLIC,
    "callback_number": Sensitivity.PUBLIC,
    "name": Sensitivity.PUBLIC,
    "payment_methods": Sensitivity.CONFIRMED,
    "items_summary": Sensitivity.SUMMARY,
    "items_detail": Sensitivity.DETAIL,
    "total_amount": Sensitivity.DETAIL,
}
NAME_VARIABLE = "name"
# The variables whose values belong to the resident called (the others are the town's).
RESIDENT_VARIABLES = frozenset({"name", "items_summary", "items_detail", "total_amount"})
# Literal words that tell a listener there is a debt: such texts need a confirmed identity.
SENSITIVE_WORDS_JA = ("滞納", "税", "未納", "延滞", "納付", "督促", "催告", "差押", "支払", "払い")
SENSITIVE_WORDS_EN = re.compile(
    r"\b(arrears|tax\w*|overdue|unpaid|pay\w*|debt\w*|owe\w*|bill\w*|due|delinquen\w*)\b",
    re.IGNORECASE,
)
_EN_MONTHS = (
    "January February March April May June July August September October November December"
).split()


@functools.lru_cache(maxsize=1024)
def template_variables(template: str) -> tuple[str, ...]:
    """The ``{name}`` fields of a template; raises ValueError for anything but plain names.
    Cached: a flow's few templates are rendered on every step of every call."""
    names: list[str] = []
    for _, field, spec, conversion in Formatter().parse(template):
        if field is None:
            continue
        if spec or conversion or not field.isidentifier():
            raise ValueError(f"only plain {{variable}} fields are allowed, got {{{field}}}")
        names.append(field)
    return tuple(names)


def literal_sensitivity(ja: str, en: str) -> Sensitivity:
    if any(word in ja for word in SENSITIVE_WORDS_JA) or SENSITIVE_WORDS_EN.search(en):
        return Sensitivity.CONFIRMED
    return Sensitivity.PUBLIC


def is_personal(text: Text, ctx: CallContext) -> bool:
    """Whether ``text``, rendered for ``ctx``, holds a value of the resident's."""
    template = text.en if ctx.language == "en" else text.ja
    return not RESIDENT_VARIABLES.isdisjoint(template_variables(template))


def render(text: Text, ctx: CallContext) -> str:
    template = text.en if ctx.language == "en" else text.ja
    values = {name: _VALUES[name](ctx) for name in template_variables(template)}
    return template.format_map(values)


def era_year(year: int) -> str:
    """Japanese era year of a Gregorian (fiscal) year: 2019 -> 令和元年, 2024 -> 令和6年."""
    if year >= 2019:
        return f"令和{_era_number(year - 2018)}年"
    return f"平成{_era_number(year - 1988)}年"


def era_date(day: date) -> str:
    if day >= date(2019, 5, 1):
        return f"令和{_era_number(day.year - 2018)}年{day.month}月{day.day}日"
    return f"平成{_era_number(day.year - 1988)}年{day.month}月{day.day}日"


def _era_number(number: int) -> str:
    return "元" if number == 1 else str(number)


def _summary_item(item: ReceivableItem, language: str) -> str:
    if language == "en":
        return f"{item.kind_name} for fiscal year {item.fiscal_year}"
    return f"{era_year(item.fiscal_year)}度の{item.kind_name}"


def _detail_item(item: ReceivableItem, language: str) -> str:
    if language == "en":
        due = f"{_EN_MONTHS[item.due_date.month - 1]} {item.due_date.day}, {item.due_date.year}"
        return f"{_summary_item(item, language)}: {item.amount_yen:,} yen, due {due}"
    return (
        f"{_summary_item(item, language)}、{item.amount_yen:,}円、納期限{era_date(item.due_date)}"
    )


def _joined(ctx: CallContext, parts: list[str]) -> str:
    return ("; " if ctx.language == "en" else "、また、").join(parts)


def _name(ctx: CallContext) -> str:
    return to_romaji(ctx.name_kana) if ctx.language == "en" else ctx.name_kana


def _municipality(ctx: CallContext) -> str:
    if ctx.language == "en":
        return ctx.municipality_en or to_romaji(ctx.municipality_kana)
    return ctx.municipality


def _section(ctx: CallContext) -> str:
    return (ctx.section_en or ctx.section) if ctx.language == "en" else ctx.section


_VALUES: Mapping[str, Callable[[CallContext], str]] = {
    "municipality": _municipality,
    "section": _section,
    "callback_number": lambda ctx: ctx.callback_number,
    "name": _name,
    "payment_methods": lambda ctx: ("、" if ctx.language == "ja" else ", ").join(
        ctx.payment_methods
    ),
    "items_summary": lambda ctx: _joined(ctx, [_summary_item(i, ctx.language) for i in ctx.items]),
    "items_detail": lambda ctx: _joined(ctx, [_detail_item(i, ctx.language) for i in ctx.items]),
    "total_amount": lambda ctx: f"{sum(item.amount_yen for item in ctx.items):,}",
}
