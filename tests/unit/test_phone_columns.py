"""Phone cells decided a column at a time agree with the row parser's phone rule and with
phonenumbers itself.

* every phone cell of synthetic exports (all notations the generator writes);
* random Japanese numbers of every leading-digit block, written with separators, full-width
  digits, spaces, parentheses, ``+81`` and the prolonged sound mark (hypothesis);
* for the numbers dialled nationally, the E.164 and kind also agree with phonenumbers'
  own verdict (``normalize._phonenumbers_verdict``), not only with the cached shortcut.
"""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync import normalize
from sync.cached_rows import REJECTED, CachedRowParser
from sync.column_rules import Cells
from sync.layouts import STANDARD
from sync.phone_columns import phone_outcomes
from sync.rows import RowContext
from sync.synthetic import write_export

AS_OF = date(2026, 11, 24)
PARSER = CachedRowParser(RowContext(STANDARD, AS_OF, phone_max_age_years=5))
FULL_WIDTH = str.maketrans("0123456789-+()", "０１２３４５６７８９－＋（）")


def reference(cell: str) -> tuple[str | None, str | None, str | None, bool]:
    """(key, e164, kind, rejected) by the row parser's phone rule."""
    outcome = PARSER.rules["phone1"](cell)
    if outcome is REJECTED:
        return None, None, None, True
    parsed = outcome[0]  # type: ignore[index]
    if parsed is None:
        return None, None, None, False
    text, phone = parsed
    if phone is None:
        return text, None, None, False
    return phone.e164, phone.e164, phone.kind.value, False


def columnar(cells: list[str]) -> list[tuple[str | None, str | None, str | None, bool]]:
    found = phone_outcomes(Cells("phone1", pa.array(cells, pa.string()), PARSER))
    return list(
        zip(
            found.key.to_pylist(),
            found.e164.to_pylist(),
            found.kind.to_pylist(),
            found.rejected.to_pylist(),
            strict=True,
        )
    )


def assert_agree(cells: list[str]) -> None:
    assert columnar(cells) == [reference(cell) for cell in cells]


def test_every_phone_cell_of_synthetic_exports(tmp_path: Path) -> None:
    cells: set[str] = set()
    for seed in (1, 2):
        path = tmp_path / f"export{seed}.csv"
        write_export(path, 2000, seed=seed, as_of=AS_OF)
        with path.open(encoding="cp932", newline="") as handle:
            for row in csv.DictReader(handle):
                cells.update((row["電話番号1"], row["電話番号2"]))
    assert len(cells) > 2000
    assert_agree(sorted(cells))


@pytest.mark.parametrize(
    "cell",
    [
        "", " ", "090-1234-5678", "０９０－１２３４－５６７８", "090ｰ1234ｰ5678", "090ー1234ー5678",
        "(03)1234-5678", "03 1234 5678", "+81 90-1234-5678", "+81-3-1234-5678", "0180-12-3456",
        "0990-123-456", "0120-123-456", "0570-123-456", "050-1234-5678", "06-1234-567", "110",
        "abc", "+1 202 555 0100", "0090123", "'=1", "090\x001234", "0" * 65, "090・1234・5678",
        "[03]1234.5678", "090‐1234‐5678", "090\u200b12345678", "0３-１２３４-５６７８",
    ],
)  # fmt: skip
def test_notations(cell: str) -> None:
    assert_agree([cell])


_SEPARATORS = st.sampled_from(["", "-", " ", "－", "‐", "ー", "ｰ", ".", "・", "(", ")"])


@st.composite
def japanese_numbers(draw: st.DrawFn) -> str:
    """A national number of 9 or 10 digits (any leading block), as people write it."""
    length = draw(st.sampled_from([9, 10]))
    first = draw(st.integers(1, 9))
    rest = draw(st.text(alphabet="0123456789", min_size=length - 1, max_size=length - 1))
    digits = f"{first}{rest}"
    cuts = sorted(draw(st.sets(st.integers(1, length - 1), max_size=3)))
    pieces = [digits[i:j] for i, j in zip([0, *cuts], [*cuts, length], strict=True)]
    text = pieces[0]
    for piece in pieces[1:]:
        text += draw(_SEPARATORS) + piece
    prefix = draw(st.sampled_from(["0", "0", "0", "+81", "+81 ", "81"]))
    text = prefix + text
    if draw(st.booleans()):
        text = text.translate(FULL_WIDTH)
    return text


@settings(max_examples=200, deadline=None)
@given(st.lists(japanese_numbers(), min_size=1, max_size=30))
def test_random_japanese_numbers(cells: list[str]) -> None:
    assert_agree(cells)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.from_regex(r"0[1-9][0-9]{8,9}", fullmatch=True), min_size=1, max_size=20))
def test_national_numbers_agree_with_phonenumbers_itself(cells: list[str]) -> None:
    for cell, (_, e164, kind, rejected) in zip(cells, columnar(cells), strict=True):
        verdict, number = normalize._phonenumbers_verdict(cell)
        assert not rejected
        if isinstance(verdict, tuple):
            assert e164 is None and kind is None, cell
        else:
            assert (e164, kind) == (number, verdict.value), cell
