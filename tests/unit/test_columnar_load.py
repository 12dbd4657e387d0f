"""名寄せ on columns gives exactly what :class:`sync.merge.Merger` gives row by row, and the
person records are the JSON texts :meth:`kernel.pii.PiiCipher.seal_record` seals.

Rows are drawn from small pools so that persons repeat (with and without zero padding),
items repeat (duplicates), names and birth dates disagree (conflicts), optional fields are
missing on some rows (filling) and phones repeat with other confirmation dates (merging).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernel.models import PhoneKind
from kernel.pii import KeyRing, PiiCipher, _record_text, digest_batch, seal_batches
from sync.cached_rows import CachedRowParser
from sync.columnar_load import record_texts
from sync.columnar_merge import (
    FILLED_FIELDS,
    MergedRows,
    Rows,
    merge_rejections,
    merge_rows,
    python_values,
)
from sync.columnar_schema import PHONE_KEYS, table_from_parsed
from sync.layouts import STANDARD
from sync.merge import Merger, PersonGroup
from sync.readers import CsvSource
from sync.rows import ItemFields, ParsedRow, PersonFields, PhoneEntry, Rejection, RowContext
from sync.synthetic import write_export

AS_OF = date(2026, 11, 24)
MOBILE = "+819011112222"
PHONES = (
    PhoneEntry(MOBILE, MOBILE, PhoneKind.MOBILE, "MOBILE", date(2026, 1, 1)),
    PhoneEntry(MOBILE, MOBILE, PhoneKind.MOBILE, "MOBILE", None),
    PhoneEntry(MOBILE, MOBILE, PhoneKind.MOBILE, "stale", date(2019, 1, 1)),
    PhoneEntry(MOBILE, MOBILE, PhoneKind.MOBILE, "MOBILE", date(2026, 1, 1)),
    PhoneEntry("+81333334444", "+81333334444", PhoneKind.FIXED_LINE, "FIXED_LINE", None),
    PhoneEntry("+81570000111", "+81570000111", PhoneKind.OTHER, "other", date(2025, 5, 1)),
    PhoneEntry("12-34", None, None, "invalid", date(2025, 5, 1)),
    PhoneEntry("+81333334444", "+81333334444", PhoneKind.FIXED_LINE, "stale", date.min),
)
_text = st.text(st.characters(codec="utf-8"), max_size=6)
_optional_text = st.one_of(st.none(), st.sampled_from(["ヤマダ　タロウ", 'a"b', "c\\d"]), _text)
_day = st.sampled_from([date(1975, 4, 1), date(1980, 1, 2), date(999, 12, 31)])


@st.composite
def _row(draw: st.DrawFn, line_no: int) -> ParsedRow:
    person = PersonFields(
        atena_no=draw(st.sampled_from(["1", "01", "001", "2", "0", "00", "3"])),
        name=draw(st.sampled_from(["山田　太郎", "山田太郎", " 山田 太郎\t", "佐藤"])),
        name_kana=draw(_optional_text),
        birth_date=draw(st.one_of(st.none(), _day)),
        gender=draw(st.sampled_from([None, "男", "女"])),
        postal_code=draw(st.sampled_from([None, "123-4567"])),
        address=draw(_optional_text),
        language=draw(st.sampled_from(["ja", "en"])),
    )
    item = ItemFields(
        department="納税課",
        kind=draw(st.sampled_from(["市県民税", "国民健康保険税"])),
        fiscal_year=draw(st.sampled_from([2025, 2026])),
        period=draw(st.sampled_from(["1", "2"])),
        notice_number=draw(st.sampled_from([None, "N-1"])),
        due_date=date(2026, 6, 30),
        unpaid_yen=draw(st.sampled_from([0, 12_300, 200_000])),
        late_fee_yen=0,
        demand_date=None,
        installment=draw(st.sampled_from([None, "履行中", "不履行"])),
        account_transfer=draw(st.booleans()),
    )
    phones = tuple(draw(st.lists(st.sampled_from(PHONES), max_size=2)))
    flags = draw(st.tuples(st.booleans(), st.booleans()))
    return ParsedRow(line_no, person, item, phones, flags[0], flags[1], ())


@st.composite
def _rows(draw: st.DrawFn) -> list[ParsedRow]:
    count = draw(st.integers(min_value=0, max_value=14))
    return [draw(_row(line_no)) for line_no in range(2, count + 2)]


def _reference(rows: list[ParsedRow]) -> tuple[list[PersonGroup], dict[int, list[Rejection]]]:
    merger = Merger()
    rejections: dict[int, list[Rejection]] = {}
    for parsed in rows:
        if (duplicate := merger.add(parsed)) is not None:
            rejections[parsed.line_no] = [duplicate]
    groups = []
    for outcome in merger.finish():
        if isinstance(outcome, Rejection):
            rejections[outcome.line_no] = [outcome]
        else:
            groups.append(outcome)
    return groups, rejections


def _value(merged: MergedRows, name: str, row: int) -> Any:
    return None if row < 0 else merged.table.column(name)[row].as_py()


def _phone(merged: MergedRows, row: int, slot: int) -> PhoneEntry:
    def field(name: str) -> Any:
        return _value(merged, f"{PHONE_KEYS[slot]}_{name}", row)

    kind = field("kind")
    return PhoneEntry(
        field("key"),
        field("e164"),
        PhoneKind(kind) if kind else None,
        field("bucket"),
        field("verified_on"),
    )


def _groups(merged: MergedRows, rows: list[ParsedRow]) -> list[PersonGroup]:
    """The consistent persons of the columnar merge, in the merger's form."""
    groups = []
    for group in np.flatnonzero(merged.conflict == 0).tolist():
        first = int(merged.first_row[group])
        filled = {
            name: _value(merged, name, int(merged.filled[name][group])) for name in FILLED_FIELDS
        }
        kept = merged.kept[merged.kept_starts[group] : merged.kept_starts[group + 1]].tolist()
        person = PersonFields(
            atena_no=rows[first].person.atena_no,
            name=rows[first].person.name,
            language=rows[first].person.language,
            **filled,
        )
        mine = merged.phones.group == group
        phones = [
            _phone(merged, row, slot)
            for row, slot in zip(
                merged.phones.row[mine].tolist(), merged.phones.slot[mine].tolist(), strict=True
            )
        ]
        groups.append(
            PersonGroup(
                person=person,
                lines=[rows[row].line_no for row in kept],
                items=[rows[row].item for row in kept],
                phones=phones,
                suppressed=any(rows[row].suppressed for row in kept),
                dv_protected=any(rows[row].dv_protected for row in kept),
            )
        )
    return groups


def _person_record(person: PersonFields) -> bytes:
    """The record :mod:`sync.loader` seals for a person."""
    names = ("atena_no", "name", "name_kana", "birth_date", "gender", "postal_code")
    record = {name: getattr(person, name) for name in (*names, "address", "language")}
    return _record_text(record).encode()


def assert_merges_alike(rows: list[ParsedRow]) -> None:
    expected_groups, expected_rejections = _reference(rows)
    merged = merge_rows(table_from_parsed(rows))
    assert merge_rejections(merged) == expected_rejections
    assert _groups(merged, rows) == expected_groups
    consistent = np.flatnonzero(merged.conflict == 0)
    texts = record_texts(merged, consistent)
    assert texts == [_person_record(group.person) for group in expected_groups]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_rows())
def test_random_rows_merge_as_the_merger_does(rows: list[ParsedRow]) -> None:
    assert_merges_alike(rows)


def test_rows_out_of_file_order_merge_in_file_order() -> None:
    rows = [
        ParsedRow(n, PersonFields("1", name, None, None, None, None, address, "ja"),
                  ItemFields("納税課", "市県民税", 2026, period, None, date(2026, 6, 30), 100, 0,
                             None, None, False), (PHONES[n - 2],), False, False)
        for n, name, address, period in ((2, "山田", None, "1"), (3, "山田", "架空市", "1"),
                                         (4, "山田", "夢見町", "2"))
    ]  # fmt: skip
    table = table_from_parsed(rows)
    shuffled = table.take(pa.array([2, 0, 1]))
    merged = merge_rows(shuffled)
    assert merge_rejections(merged) == _reference(rows)[1]  # line 3 is the duplicate
    assert merged.table.column("line_no").to_pylist() == [2, 3, 4]
    assert record_texts(merged, np.array([0])) == [_person_record(_reference(rows)[0][0].person)]


@pytest.mark.parametrize("seed", [5, 17])
def test_a_synthetic_export_merges_as_the_merger_does(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "export.csv"
    write_export(path, 1500, seed=seed, as_of=AS_OF)
    parser = CachedRowParser(RowContext(STANDARD, AS_OF, phone_max_age_years=5))
    parsed = (parser.parse(record) for record in CsvSource(path, STANDARD).records())
    rows = [row for row in parsed if isinstance(row, ParsedRow)]
    assert len(rows) > 2000
    assert_merges_alike(rows)


@pytest.mark.parametrize(
    "values",
    [
        pa.array([3, 1, 3], type=pa.int64()),
        pa.array([True, False, True]),
        pa.array([1, None, 2], type=pa.int32()),
        pa.array(["a", None, "a", "b"]),
        pa.array([date(2026, 6, 30), None, date(999, 1, 1)]),
        pa.chunked_array([["x", "y"], [None, "x"]]),
        pa.chunked_array([], type=pa.string()),
    ],
)
def test_python_values_are_to_pylist(values: pa.Array | pa.ChunkedArray) -> None:
    converted = python_values(values)
    assert converted == values.to_pylist()
    assert [type(v) for v in converted] == [type(v) for v in values.to_pylist()]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.text(max_size=3)), max_size=40),
    st.lists(st.integers(min_value=0, max_value=40), max_size=5),
    st.lists(st.integers(min_value=-2, max_value=60), max_size=50),
)
def test_rows_take_as_arrow_takes(
    values: list[str | None], cuts: list[int], rows: list[int]
) -> None:
    """:class:`Rows` takes from each chunk what Arrow's ``take`` takes from the column
    (negative rows: null), in the rows' order, whatever the chunks."""
    bounds = sorted({0, len(values), *(cut for cut in cuts if cut <= len(values))})
    column = pa.chunked_array(
        [values[start:end] for start, end in zip(bounds, bounds[1:], strict=False)] or [[]],
        type=pa.string(),
    )
    wanted = np.array([row for row in rows if row < len(values)], dtype=np.int64)
    expected = [None if row < 0 else values[row] for row in wanted.tolist()]
    assert Rows(wanted).take(column).to_pylist() == expected
    assert Rows(wanted).take(column.combine_chunks()).to_pylist() == expected


def test_bulk_digests_and_seals_are_those_of_one_value() -> None:
    keyring = KeyRing("test-secret-columnar-unit-0123456789abcdef")
    values = ["", "0", "+819011112222", "山田　太郎", "x" * 300]
    assert digest_batch(keyring, "phone", values) == [keyring.digest("phone", v) for v in values]
    cipher = PiiCipher(bytes(range(32)), 7)
    encoded = [value.encode() for value in values]
    pii, phones = seal_batches(cipher.data_key, 7, [("pii", encoded), ("phone", encoded[:2])])
    assert [cipher.open_text(sealed, "pii") for sealed in pii] == values
    assert [cipher.open_text(sealed, "phone") for sealed in phones] == values[:2]
    assert len({sealed[1:13] for sealed in pii}) == len(values)  # a nonce of its own each
