"""The bulk-import shortcuts give exactly what the reference code gives.

* Phone numbers dialled nationally reuse phonenumbers' verdict per (leading digits, length):
  checked against phonenumbers itself on random numbers of every leading-digit block.
* :class:`CachedRowParser` against :func:`parse_row` on a whole synthetic export (all its
  deliberate defects) and on hostile cells of every field, read twice (cache hits).
"""

from __future__ import annotations

import random
from datetime import date
from pathlib import Path

import pytest

from sync import normalize
from sync.cached_rows import CachedRowParser
from sync.layouts import FIELD_KEYS, STANDARD, layout_from_dict
from sync.readers import CsvSource, RawRecord
from sync.rows import RowContext, parse_row
from sync.synthetic import write_export

AS_OF = date(2026, 11, 24)
CONTEXT = RowContext(STANDARD, AS_OF, phone_max_age_years=5)


def _reference(digits: str) -> tuple[object, str]:
    verdict, e164 = normalize._phonenumbers_verdict(digits)
    return verdict, (e164 if not isinstance(verdict, tuple) else "")


def _shortcut(digits: str) -> tuple[object, str]:
    verdict, e164 = normalize._national_verdict(digits)
    return verdict, (e164 if not isinstance(verdict, tuple) else "")


def test_national_shortcut_agrees_with_phonenumbers_on_every_leading_block() -> None:
    rng = random.Random(7)
    normalize._verdicts.clear()
    checked = 0
    for block in range(10, 100):  # the first two national digits: 10 .. 99
        for _ in range(40):
            length = rng.choice((9, 10))
            national = str(block) + "".join(rng.choice("0123456789") for _ in range(length - 2))
            digits = "0" + national
            assert _shortcut(digits) == _reference(digits), digits
            checked += 1
    assert checked == 90 * 40


def test_national_shortcut_reuses_a_verdict_only_where_phonenumbers_agrees() -> None:
    rng = random.Random(11)
    prefixes = ["9012", "8012", "7012", "5012", "3123", "4523", "1201", "8001", "5701", "1801"]
    prefixes += ["9901", "6012", "2012", "1123", "2612", "9601"]
    for prefix in prefixes:
        for length in (9, 10):
            for _ in range(30):
                national = prefix + "".join(rng.choice("0123456789") for _ in range(length - 4))
                assert _shortcut("0" + national) == _reference("0" + national), national


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("090-1234-5678", ("+819012345678", normalize.PhoneKind.MOBILE)),
        ("03-1234-5678", ("+81312345678", normalize.PhoneKind.FIXED_LINE)),
        ("0120-123-456", ("+81120123456", normalize.PhoneKind.TOLL_FREE)),
        ("0570-123-456", ("+81570123456", normalize.PhoneKind.OTHER)),
    ],
)
def test_normalize_phone_results(text: str, expected: tuple[str, normalize.PhoneKind]) -> None:
    phone = normalize.normalize_phone(text)
    assert (phone.e164, phone.kind) == expected


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("0180-12-3456", "not_a_phone"),
        ("0990-123-456", "not_a_phone"),
        ("090-1234-567", "invalid_phone"),
    ],
)
def test_normalize_phone_errors_quote_the_cell(text: str, code: str) -> None:
    with pytest.raises(normalize.NormalizationError) as raised:
        normalize.normalize_phone(text)
    assert raised.value.code == code
    assert f"「{text}」" in raised.value.message_ja


def _records(path: Path) -> list[RawRecord]:
    return list(CsvSource(path, STANDARD).records())


def test_cached_parser_matches_reference_on_a_synthetic_export(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    write_export(path, 3000, seed=5, as_of=AS_OF)
    records = _records(path)
    parser = CachedRowParser(CONTEXT)
    for _ in range(2):  # the second round is served from the caches
        for record in records:
            assert parser.parse(record) == parse_row(record, CONTEXT), record.line_no


HOSTILE: dict[str, tuple[str, ...]] = {
    "atena_no": ("", "A-12", "０００１２３", "1" * 21, "'=1"),
    "name": ("", "  ", "=1+1", "'=1+1", "山田\x00太郎", "ﾔﾏﾀﾞ　太郎", "あ" * 101),
    "name_kana": ("", "やまだ", "ﾔﾏﾀﾞ ﾀﾛｳ", "山田", "ア" * 101),
    "birth_date": ("", "昭和64年1月8日", "H31.5.1", "そのうち", "19750401"),
    "gender": ("", "男", "X", "9"),
    "postal_code": ("", "〒123-4567", "12-34"),
    "address": ("", "架空市\x1b[2J", "あ" * 301, " 架空市 夢見町 "),
    "phone1": ("", "090-1234-5678", "0180-12-3456", "110", "+1 202 555 0100", "abc", "0090123"),
    "phone2": ("", "03(1234)5678", "050-1234-5678", "0570-123-456"),
    "phone_verified_on": ("", "2015-01-01", "壊れた日付", "令和8年1月1日"),
    "department": ("", "納税課", "課" * 65),
    "kind": ("", "市県民税", "市\x00民税", "税" * 65),
    "fiscal_year": ("", "令和8年度", "平成32年度", "R7", "1200"),
    "period": ("", "01", "１", "期" * 17),
    "notice_number": ("", "2026010001", "=cmd"),
    "due_date": ("", "令和8年6月30日", "平成31年5月1日", "令和3年2月30日", "2026-06-30"),
    "unpaid": ("", "12,300", "-500", "▲500", "12.5", "1,000,000,001", "１２３円"),
    "late_fee": ("", "1,000", "-1", "2,000,000,000", "abc"),
    "demand_date": ("", "R8.7.20", "2026/02/30"),
    "installment": ("", "履行中", "不履行", "たぶん"),
    "account_transfer": ("", "有", "無", "?"),
    "suppressed": ("", "0", "1", "はい"),
    "dv_support": ("", "0", "1", "2"),
    "language": ("", "英語", "pt-BR", "klingon language"),
}
BASE = {
    "atena_no": "0000123",
    "name": "山田　太郎",
    "due_date": "令和8年6月30日",
    "unpaid": "12,300",
    "phone1": "090-1234-5678",
    "phone_verified_on": "令和7年1月1日",
}


def _hostile_records() -> list[RawRecord]:
    assert set(HOSTILE) == FIELD_KEYS
    records = []
    line = 1
    for key, cells in HOSTILE.items():
        for cell in cells:
            line += 1
            values = BASE | {key: cell}
            records.append(RawRecord(line, tuple(values.values()), values))
    return records


@pytest.mark.parametrize(
    "layout",
    [
        STANDARD,
        layout_from_dict(
            {
                "columns": {"A": "atena_no", "B": "name", "C": "due_date", "D": "unpaid"},
                "date_formats": ["%Y%m%d"],
                "code_tables": {"kind": {"1": "市県民税"}, "suppressed": {"Y": "1", "N": "0"}},
            },
            default_name="coded",
            where="test",
        ),
    ],
)
def test_cached_parser_matches_reference_on_hostile_cells(layout: object) -> None:
    context = RowContext(layout, AS_OF, phone_max_age_years=5)  # type: ignore[arg-type]
    parser = CachedRowParser(context)
    records = _hostile_records()
    for _ in range(2):
        for record in records:
            assert parser.parse(record) == parse_row(record, context), record.values


def test_reader_problems_go_to_the_reference_parser() -> None:
    record = RawRecord(9, ("x",), dict(BASE), "encoding_mismatch")
    assert CachedRowParser(CONTEXT).parse(record) == parse_row(record, CONTEXT)


def test_records_on_lines_reads_just_those_records(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    write_export(path, 800, seed=9, as_of=AS_OF)
    records = [r for r in _records(path) if r.line_end in (None, r.line_no)]
    chosen = random.Random(3).sample(records, 40) + [records[0], records[-1]]
    chosen.sort(key=lambda record: record.line_no)
    source = CsvSource(path, STANDARD)
    got = list(source.records_on_lines({record.line_no for record in chosen}))
    assert got == chosen
    assert list(source.records_on_lines(())) == []
