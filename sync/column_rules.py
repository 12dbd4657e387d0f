"""Field rules of the import applied to whole Arrow columns of distinct cell texts.

The reference for every value is the per-cell rule of :class:`~sync.cached_rows.CachedRowParser`
(``parser.outcome``). A column here is the *distinct* cells of a field in one batch; each rule
first decides, with Arrow kernels, the cells whose shape it can prove it handles exactly like
the reference (``decided``), and hands every other cell to the reference rule in Python. So a
kernel never has to be right about an odd cell: it only has to recognise that it is odd.

Vectorized so far: ``normalize_text`` (NFKC, whitespace, dashes and ー next to ASCII; used
for 住所, 通知書番号 and phones), 宛名番号 in ASCII digits, 氏名 and 氏名カナ already in their
normal form, amounts (未納額, 延滞金: digits plain or comma-grouped, full-width, ¥ or 円), and
dates (ISO-like, compact, 和暦, era letters, era codes, full-width). Fields with few distinct
cells per batch (所管課, 債権種別, flags ...) use the reference rule for each distinct cell.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sync import normalize
from sync.cached_rows import REJECTED, CachedRowParser
from sync.rows import DEFAULT_MAX_LENGTH, FORMULA_PREFIXES, MAX_AMOUNT_YEN, MAX_LENGTHS

ALNUM = "0-9A-Za-z"
#: ``sync.normalize``'s dash-like characters (escaped for RE2).
DASHES = "".join(f"\\x{{{ord(c):04x}}}" for c in normalize._DASHES)
INVISIBLE = "[\\x{200b}\\x{200c}\\x{200d}\\x{2060}\\x{feff}]"
PROLONGED = "\\x{30fc}"
CONTROL = "[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f]"
_FORMULA_ESCAPE = "^'"  # rows.unescape may strip it: such cells go to the reference


class Decline(Exception):
    """The columnar first pass cannot be exact for this input: use the row pipeline."""


def _ranges_class(codes: Sequence[int]) -> str:
    """An RE2 character class of the code points (as ranges)."""
    parts: list[str] = []
    start = previous = -2
    for code in [*codes, -10]:
        if code == previous + 1:
            previous = code
            continue
        if start >= 0:
            parts.append(f"\\x{{{start:x}}}" if start == previous else
                         f"\\x{{{start:x}}}-\\x{{{previous:x}}}")  # fmt: skip
        start = previous = code
    return "[" + "".join(parts) + "]"


@functools.cache
def unassigned_class() -> str:
    """Characters Arrow may fold unlike Python: anything outside the BMP or unassigned in
    Python's Unicode database (Arrow's utf8proc may know newer characters; NFKC is stable
    for assigned ones)."""
    codes = [code for code in range(0x10000) if unicodedata.category(chr(code)) in ("Cn", "Cs")]
    return _ranges_class(codes)[:-1] + "\\x{10000}-\\x{10ffff}]"


@functools.cache
def whitespace_class() -> str:
    """Whitespace other than the ASCII space (``str.split`` folds it; left to Python)."""
    return _ranges_class([code for code in range(0x10000) if chr(code).isspace() and code != 32])


@dataclass
class Cells:
    """The distinct cells of one field in one batch (``text``) and the reference parser."""

    key: str
    text: pa.Array  # string
    parser: CachedRowParser
    clean: bool = False  # the batch has no control character and no apostrophe at all
    _plain: pa.Array | None = None

    @property
    def limit(self) -> int:
        return MAX_LENGTHS.get(self.key, DEFAULT_MAX_LENGTH)

    def plain(self) -> pa.Array:
        """Cells a kernel may read as the reference reads them: no code table, no escaped
        formula, no control character, within the field's length limit."""
        if self._plain is None:
            self._plain = self._find_plain()
        return self._plain

    def _find_plain(self) -> pa.Array:
        if self.key in self.parser.context.layout.code_tables:
            return pa.repeat(pa.scalar(False), len(self.text))
        if self.clean:
            plain = pa.repeat(pa.scalar(True), len(self.text))
        else:
            plain = pc.invert(pc.match_substring_regex(self.text, f"{_FORMULA_ESCAPE}|{CONTROL}"))
        if (pc.max(pc.binary_length(self.text)).as_py() or 0) <= self.limit:
            return plain  # no cell has more characters than bytes
        return pc.and_(plain, pc.less_equal(pc.utf8_length(self.text), self.limit))


@dataclass
class Outcomes:
    """Per distinct cell: the field's value (null where None), its issue code (null where
    none) and whether the cell makes the row rejected."""

    values: pa.Array
    issues: pa.Array
    rejected: pa.Array  # bool


def _issue(codes: tuple[str, ...]) -> str | None:
    if len(codes) > 1:
        raise Decline("a field with several issues")
    return codes[0] if codes else None


def outcomes(
    cells: Cells,
    value_type: pa.DataType,
    fast: tuple[pa.Array, pa.Array] | None = None,
) -> Outcomes:
    """Each distinct cell's outcome: ``fast`` = (decided mask, values) from kernels (an
    accepted value without issue), the reference rule for the rest."""
    count = len(cells.text)
    if fast is None:
        decided = pa.array([False] * count, pa.bool_())
        values: pa.Array = pa.nulls(count, value_type)
    else:
        decided, values = pc.fill_null(fast[0], False), fast[1].cast(value_type)
    pending = pc.indices_nonzero(pc.invert(decided)).to_pylist()
    if not pending:
        return Outcomes(values, pa.nulls(count, pa.string()), pa.array([False] * count))
    texts = cells.text.take(pa.array(pending, pa.int64())).to_pylist()
    found: list[Any] = []
    issues: list[str | None] = [None] * count
    rejected = [False] * count
    outcome = cells.parser.outcome
    for position, text in zip(pending, texts, strict=True):
        result = outcome(cells.key, text)
        if result is REJECTED:
            found.append(None)
            rejected[position] = True
            continue
        value, codes = result  # type: ignore[misc]
        found.append(value)
        issues[position] = _issue(codes)
    mask = pc.invert(decided)
    values = pc.replace_with_mask(values, mask, pa.array(found, value_type))
    return Outcomes(values, pa.array(issues, pa.string()), pa.array(rejected, pa.bool_()))


# --------------------------------------------------------------------------- text


def normalize_texts(text: pa.Array) -> tuple[pa.Array, pa.Array]:
    """``normalize.normalize_text`` of each cell where ``decided``; see the module doc.
    ASCII cells only need their spaces folded; the others go through NFKC and the rest."""
    decided, folded = _fold_spaces(text)
    others = pc.invert(pc.string_is_ascii(text))
    rest = text.filter(others)
    if not len(rest):
        return decided, folded
    rest_decided, rest_folded = _fold(rest)
    return (
        pc.replace_with_mask(decided, others, rest_decided),
        pc.replace_with_mask(folded, others, rest_folded),
    )


def _fold_spaces(text: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Trim and collapse spaces; undecided where other whitespace is left."""
    decided = pc.invert(pc.match_substring_regex(text, whitespace_class()))
    folded = pc.utf8_trim(text, " ")
    if pc.any(pc.match_substring(folded, "  ")).as_py():
        folded = pc.replace_substring_regex(folded, " {2,}", " ")
    return decided, folded


def _fold(text: pa.Array) -> tuple[pa.Array, pa.Array]:
    decided = pc.invert(pc.match_substring_regex(text, unassigned_class()))
    if pc.any(pc.match_substring_regex(text, INVISIBLE)).as_py():
        text = pc.replace_substring_regex(text, INVISIBLE, "")
    spaced, folded = _fold_spaces(pc.utf8_normalize(text, "NFKC"))
    decided = pc.and_(decided, spaced)
    between = f"([{ALNUM}]){PROLONGED}([{ALNUM}])"
    if pc.any(pc.match_substring_regex(folded, between)).as_py():
        for _ in range(2):  # RE2 has no lookaround: matches overlap at most every other mark
            folded = pc.replace_substring_regex(folded, between, "\\1-\\2")
        decided = pc.and_not(decided, pc.match_substring_regex(folded, between))
    if pc.any(pc.match_substring_regex(folded, f"[{DASHES}]")).as_py():
        folded = pc.replace_substring_regex(folded, f"([{ALNUM}])[{DASHES}]", "\\1-")
        folded = pc.replace_substring_regex(folded, f"[{DASHES}]([{ALNUM}])", "-\\1")
    return decided, folded


def optional_text(cells: Cells) -> Outcomes:
    """An optional field normalized with ``normalize_text`` (住所, 通知書番号)."""
    decided, folded = normalize_texts(cells.text)
    decided = pc.and_(pc.and_(decided, cells.plain()), pc.not_equal(folded, ""))
    return outcomes(cells, pa.string(), (decided, folded))


@functools.cache
def _name_pattern() -> str:
    """Names ``parse_name`` keeps as they are: words of characters that are not whitespace,
    not control (Cc), not invisible, not half-width katakana, joined by single U+3000, the
    first not one a formula starts with."""
    odd = [c for c in range(0x10000) if chr(c).isspace() or unicodedata.category(chr(c)) == "Cc"]
    odd += [0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, *range(0xFF61, 0xFFA0)]
    word = "[^" + _ranges_class(sorted(set(odd)))[1:]
    first = "[^" + _ranges_class(sorted(set(odd) | {ord(c) for c in FORMULA_PREFIXES}))[1:]
    return f"^{first}{word}*(?:\\x{{3000}}{word}+)*$"


def names(cells: Cells) -> Outcomes:
    """氏名 (required): words already joined by one U+3000 are kept as they are."""
    decided = pc.and_(cells.plain(), pc.match_substring_regex(cells.text, _name_pattern()))
    return outcomes(cells, pa.string(), (decided, cells.text))


#: full-width katakana (and ー) that NFKC and ``normalize_kana`` leave as they are
_KANA = "[\\x{30a1}-\\x{30fa}\\x{30fc}\\x{31f0}-\\x{31ff}]"


def kana_readings(cells: Cells) -> Outcomes:
    """氏名カナ (optional): full-width katakana words joined by one U+3000 are kept."""
    shape = f"^{_KANA}+(?:\\x{{3000}}{_KANA}+)*$"
    decided = pc.and_(cells.plain(), pc.match_substring_regex(cells.text, shape))
    return outcomes(cells, pa.string(), (decided, cells.text))


def person_ids(cells: Cells) -> Outcomes:
    """宛名番号: ASCII digits are taken as they are (``normalize_person_id``)."""
    decided = pc.and_(cells.plain(), pc.match_substring_regex(cells.text, "^[0-9]{1,20}$"))
    return outcomes(cells, pa.string(), (decided, cells.text))


#: what ``normalize.parse_amount`` reads as a non-negative amount once NFKC and the removal
#: of spaces are done: an optional currency sign, plain or comma-grouped digits, optional 円
_AMOUNT = "^(?:\\x{a5}|\\\\)?([0-9]{1,3}(?:,[0-9]{3}){1,4}|[0-9]{1,15})円?$"


def _amounts(cells: Cells) -> tuple[pa.Array, pa.Array]:
    """(decided, int64) of amounts from 0 to ``MAX_AMOUNT_YEN`` the kernels can read."""
    decided, folded = normalize_texts(cells.text)
    folded = pc.replace_substring(folded, " ", "")
    decided = pc.and_(pc.and_(decided, cells.plain()), pc.match_substring_regex(folded, _AMOUNT))
    digits = pc.replace_substring_regex(folded, "[^0-9]", "")
    amounts = pc.if_else(decided, digits, "0").cast(pa.int64())
    return pc.and_(decided, pc.less_equal(amounts, MAX_AMOUNT_YEN)), amounts


def unpaid_amounts(cells: Cells) -> Outcomes:
    """未納額 (required)."""
    return outcomes(cells, pa.int64(), _amounts(cells))


def late_fees(cells: Cells) -> Outcomes:
    """延滞金 (optional; 0 when blank; out of range is an issue, left to the reference)."""
    return outcomes(cells, pa.int64(), _amounts(cells))


# --------------------------------------------------------------------------- dates

_TOKEN = "(明治|大正|昭和|平成|令和|[明大昭平令MTSHR])"
#: normalize._parse_date_uncached's patterns (kind, groups, pattern), tried in its order: a
#: cell goes to the first that matches, and stays undecided if that one finds it invalid
_SHAPES = (
    ("era", 4, f"{_TOKEN}(元|[0-9]{{1,2}})(?:年|[./-])([0-9]{{1,2}})(?:月|[./-])([0-9]{{1,2}})日?"),
    ("era", 4, "([MTSHR])([0-9]{2})([0-9]{2})([0-9]{2})"),
    ("era", 4, "0?([1-5])([0-9]{2})([0-9]{2})([0-9]{2})"),
    ("gregorian", 3, "([0-9]{4})(?:年|[./-])([0-9]{1,2})(?:月|[./-])([0-9]{1,2})日?"),
    ("gregorian", 3, "([0-9]{4})([0-9]{2})([0-9]{2})"),
)
#: cells whose NFKC form ``_clean_date`` leaves as it is, but for upper case: ASCII letters
#: and digits, full-width ones, the era and date kanji, . / - and their full-width forms
_DATE_CELL = (
    "^[0-9A-Za-z\\x{ff10}-\\x{ff19}\\x{ff21}-\\x{ff3a}\\x{ff41}-\\x{ff5a}"
    "明大昭平令治正和成元年月日./\\-\\x{ff0e}\\x{ff0f}\\x{ff0d}]+$"
)


def _era_table() -> dict[str, tuple[int, date, date]]:
    table: dict[str, tuple[int, date, date]] = {}
    for era in normalize._ERAS:
        last = era.last or date(9999, 12, 31)
        for token in (era.name, era.name[0], era.letter, era.digit):
            table[token] = (era.offset, era.first, last)
    return table


def _dates(year: pa.Array, month: pa.Array, day: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(valid, date32) of year/month/day integers; invalid ones are left undecided."""
    iso = pc.binary_join_element_wise(
        pc.utf8_lpad(year.cast(pa.string()), 4, "0"),
        pc.utf8_lpad(month.cast(pa.string()), 2, "0"),
        pc.utf8_lpad(day.cast(pa.string()), 2, "0"),
        "-",
    )
    stamps = pc.strptime(iso, format="%Y-%m-%d", unit="s", error_is_null=True)
    # strptime rolls 30 February over into March: the day must come back unchanged
    valid = pc.and_(pc.equal(pc.month(stamps), month), pc.equal(pc.day(stamps), day))
    valid = pc.and_(valid, pc.equal(pc.year(stamps), year))
    return pc.fill_null(valid, False), stamps.cast(pa.date32())


def _gregorian(fields: list[pa.Array]) -> tuple[pa.Array, pa.Array]:
    year, month, day = (pc.cast(f, pa.int32()) for f in fields)
    valid, days = _dates(year, month, day)
    in_range = pc.and_(pc.greater_equal(year, 1868), pc.less_equal(year, 2999))
    return pc.and_(valid, in_range), days


def _era(fields: list[pa.Array]) -> tuple[pa.Array, pa.Array]:
    token, era_year, month_text, day_text = fields
    table = _era_table()
    tokens = list(table)
    era_index = pc.index_in(token, value_set=pa.array(tokens))
    offsets = pa.array([table[t][0] for t in tokens], pa.int32()).take(era_index)
    firsts = pa.array([table[t][1] for t in tokens], pa.date32()).take(era_index)
    lasts = pa.array([table[t][2] for t in tokens], pa.date32()).take(era_index)
    number = pc.cast(pc.if_else(pc.equal(era_year, "元"), "1", era_year), pa.int32())
    month, day = pc.cast(month_text, pa.int32()), pc.cast(day_text, pa.int32())
    valid, days = _dates(pc.add(offsets, number), month, day)
    valid = pc.and_(valid, pc.greater_equal(number, 1))
    in_era = pc.and_(pc.greater_equal(days, firsts), pc.less_equal(days, lasts))
    return pc.fill_null(pc.and_(valid, in_era), False), days


def parse_dates(text: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(decided, date32): ``normalize.parse_date`` of the cells it reads without error."""
    count = len(text)
    remaining = pc.match_substring_regex(text, _DATE_CELL)
    folded = pc.ascii_upper(pc.utf8_normalize(text, "NFKC"))
    result: pa.Array = pa.nulls(count, pa.date32())
    for number, (kind, _, shape) in enumerate(_SHAPES):
        matches = pc.match_substring_regex(folded, f"^{shape}$")
        chosen = pc.and_(remaining, matches)
        remaining = pc.and_not(remaining, matches)
        subset = folded.filter(chosen)
        if not len(subset):
            continue
        parts = pc.extract_regex(subset, f"^{_named(shape, number)}$")
        fields = [parts.field(i) for i in range(parts.type.num_fields)]
        valid, days = _gregorian(fields) if kind == "gregorian" else _era(fields)
        mask = pc.replace_with_mask(chosen, chosen, valid)
        result = pc.replace_with_mask(result, mask, days.filter(valid))
    return pc.is_valid(result), result


def _named(pattern: str, shape: int) -> str:
    """The pattern with its groups named (``extract_regex`` wants names)."""
    out, group = [], 0
    for index, char in enumerate(pattern):
        if char == "(" and not pattern.startswith("(?", index):
            out.append(f"(?P<s{shape}g{group}>")
            group += 1
        else:
            out.append(char)
    return "".join(out)


def date_cells(cells: Cells) -> Outcomes:
    """A date field (the layout's own formats, if any, go to the reference)."""
    if cells.parser.context.layout.date_formats:
        return outcomes(cells, pa.date32())
    decided, days = parse_dates(cells.text)
    return outcomes(cells, pa.date32(), (pc.and_(decided, cells.plain()), days))
