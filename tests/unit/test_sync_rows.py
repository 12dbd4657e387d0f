"""The row pipeline: raw record -> parsed row or rejections, and 名寄せ. Pure, no I/O."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernel.models import PhoneKind
from kernel.settings import SharingPolicy
from sync.layouts import FIELDS, STANDARD, layout_from_dict
from sync.merge import CONFLICT, DUPLICATE_ITEM, Merger, PersonGroup
from sync.readers import RawRecord
from sync.rows import (
    ParsedRow,
    Rejection,
    RowContext,
    parse_row,
    policy_allows,
    unescape,
)

AS_OF = date(2026, 11, 24)
CONTEXT = RowContext(STANDARD, AS_OF, phone_max_age_years=5)
LABELS = dict(FIELDS)
BASE = {
    "atena_no": "0000012345",
    "name": "山田　太郎",
    "name_kana": "ヤマダ　タロウ",
    "birth_date": "昭和50年4月1日",
    "phone1": "090-1234-5678",
    "department": "納税課",
    "kind": "市県民税",
    "fiscal_year": "令和8年度",
    "period": "1",
    "due_date": "2026-06-30",
    "unpaid": "12,300円",
}


def record(line_no: int = 2, problem: str | None = None, **values: str) -> RawRecord:
    merged = {**BASE, **values}
    merged = {key: value for key, value in merged.items() if value is not None}
    return RawRecord(line_no, tuple(merged.values()), merged, problem)


def parsed(**values: str) -> ParsedRow:
    result = parse_row(record(**values), CONTEXT)
    assert isinstance(result, ParsedRow), result
    return result


def codes(**values: str) -> list[str]:
    result = parse_row(record(**values), CONTEXT)
    assert isinstance(result, list), result
    return [rejection.code for rejection in result]


def test_clean_row_is_normalized() -> None:
    row = parsed(
        atena_no="００１２３",
        name_kana="ﾔﾏﾀﾞ ﾀﾛｳ",
        unpaid="１２，３００円",
        late_fee="¥1,200",
        due_date="R8.6.30",
        demand_date="5080720",
        account_transfer="有",
        language="英語",
        postal_code="〒１２３－４５６７",
    )
    assert row.person.atena_no == "00123"
    assert row.person.name_kana == "ヤマダ\u3000タロウ"
    assert row.person.birth_date == date(1975, 4, 1)
    assert row.person.postal_code == "123-4567"
    assert row.person.language == "en"
    assert row.item.unpaid_yen == 12_300
    assert row.item.late_fee_yen == 1_200
    assert row.item.due_date == date(2026, 6, 30)
    assert row.item.demand_date == date(2026, 7, 20)
    assert row.item.fiscal_year == 2026
    assert row.item.account_transfer is True
    assert row.phones[0].e164 == "+819012345678"
    assert row.phones[0].kind is PhoneKind.MOBILE
    assert row.issues == ()


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("atena_no", "", "missing_atena_no"),
        ("atena_no", "A-12", "invalid_person_id"),
        ("name", "  ", "missing_name"),
        ("due_date", "", "missing_due_date"),
        ("due_date", "平成31年5月1日", "era_out_of_range"),
        ("due_date", "令和3年2月30日", "impossible_date"),
        ("due_date", "そのうち", "invalid_date"),
        ("unpaid", "", "missing_unpaid"),
        ("unpaid", "-500", "negative_amount"),
        ("unpaid", "▲500", "negative_amount"),
        ("unpaid", "12.5", "invalid_amount"),
        ("unpaid", "9" * 16, "invalid_amount"),
        ("unpaid", "1,000,000,001", "amount_too_large"),
        ("name", '=HYPERLINK("http://x")', "formula_like_name"),
        ("name", "'=1+1", "formula_like_name"),
        ("name", "＠山田", "formula_like_name"),
        ("address", "あ" * 301, "too_long"),
        ("kind", "税" * 65, "too_long"),
        ("kind", "市\x00民税", "control_character"),
        ("address", "架空市\x1b[2J", "control_character"),
    ],
)
def test_rejections(field: str, value: str, code: str) -> None:
    assert code in codes(**{field: value})


def test_rejection_names_line_and_column_in_japanese() -> None:
    result = parse_row(record(line_no=7, due_date="平成31年5月1日"), CONTEXT)
    assert isinstance(result, list)
    assert result[0].line_no == 7
    assert result[0].field == "納期限"
    assert "平成" in result[0].message_ja


def test_every_missing_required_field_is_listed() -> None:
    assert sorted(codes(atena_no="", name="", due_date="", unpaid="")) == [
        "missing_atena_no",
        "missing_due_date",
        "missing_name",
        "missing_unpaid",
    ]


def test_boundary_era_dates() -> None:
    assert parsed(due_date="平成31年4月30日").item.due_date == date(2019, 4, 30)
    assert parsed(due_date="令和元年5月1日").item.due_date == date(2019, 5, 1)
    assert parsed(due_date="昭和64年1月7日").item.due_date == date(1989, 1, 7)
    assert "era_out_of_range" in codes(due_date="昭和64年1月8日")


def test_structural_problem_rejects_the_row() -> None:
    result = parse_row(record(problem="encoding_mismatch"), CONTEXT)
    assert isinstance(result, list) and result[0].code == "encoding_mismatch"


def test_optional_problems_drop_the_value_not_the_row() -> None:
    row = parsed(birth_date="平成31年5月1日", gender="?", postal_code="12", name_kana="Yamada")
    assert row.person.birth_date is None and row.person.name_kana is None
    assert set(row.issues) == {
        "birth_date:era_out_of_range",
        "gender:invalid_gender",
        "postal_code:invalid_postal_code",
        "name_kana:invalid_kana",
    }


def test_unreadable_protection_flags_fail_safe() -> None:
    row = parsed(dv_support="要確認", suppressed="x")
    assert row.dv_protected and row.suppressed
    assert "dv_support:invalid_flag" in row.issues


@pytest.mark.parametrize(
    ("number", "bucket"),
    [
        ("0180-99-1234", "invalid"),  # テレドーム: not a phone
        ("090-1234-567", "invalid"),  # too short
        ("0570-123-456", "other"),  # ナビダイヤル: not a subscriber line
        ("０３－１２３４－５６７８", "FIXED_LINE"),
        ("050-1234-5678", "VOIP"),
        ("0120-123-456", "TOLL_FREE"),
    ],
)
def test_phone_buckets(number: str, bucket: str) -> None:
    row = parsed(phone1=number)
    assert [phone.bucket for phone in row.phones] == [bucket]


def test_phone_confirmed_too_long_ago_is_stale() -> None:
    stale = parsed(phone_verified_on="2021-11-23").phones[0]
    fresh = parsed(phone_verified_on="2021-11-24").phones[0]
    assert stale.bucket == "stale" and not stale.usable
    assert fresh.bucket == "MOBILE" and fresh.usable


def test_code_tables_and_unknown_codes() -> None:
    layout = layout_from_dict(
        {
            "format": "csv",
            "columns": {"宛名": "宛名番号", "氏名": "氏名", "期限": "納期限", "額": "未納額"},
            "code_tables": {"債権種別": {"01": "市県民税"}},
        },
        default_name="t",
        where="t",
    )
    context = RowContext(layout, AS_OF)
    good = parse_row(record(kind="０１"), context)
    assert isinstance(good, ParsedRow) and good.item.kind == "市県民税"
    bad = parse_row(record(kind="99"), context)
    assert isinstance(bad, list) and bad[0].code == "unknown_code"


def test_sharing_policy() -> None:
    secret = SharingPolicy(excluded_kinds=["特別徴収秘匿"])
    assert policy_allows(record(), STANDARD, secret)
    assert not policy_allows(record(kind="特別徴収秘匿"), STANDARD, secret)
    only_tax = SharingPolicy(departments=["納税課"], kinds=["市県民税", "固定資産税"])
    assert policy_allows(record(), STANDARD, only_tax)
    assert not policy_allows(record(department="こども課"), STANDARD, only_tax)
    assert not policy_allows(record(kind="保育料"), STANDARD, only_tax)
    assert policy_allows(record(kind="保育料"), STANDARD, SharingPolicy())


def test_unescape_reverses_the_rejects_guard_only() -> None:
    assert unescape("'=1+1") == "=1+1"
    assert unescape("'O'Brien") == "'O'Brien"


# ------------------------------------------------------------------ 名寄せ


def merge(*rows: ParsedRow) -> tuple[list[PersonGroup], list[Rejection]]:
    merger = Merger()
    rejected = [r for r in (merger.add(row) for row in rows) if r is not None]
    groups: list[PersonGroup] = []
    for result in merger.finish():
        if isinstance(result, Rejection):
            rejected.append(result)
        else:
            groups.append(result)
    return groups, rejected


def test_rows_merge_into_one_person_with_several_items() -> None:
    first = parsed(name_kana="", phone1="090-1111-2222")
    second = parse_row(
        record(line_no=3, kind="固定資産税", name="山田 太郎", phone1="09011112222"), CONTEXT
    )
    assert isinstance(second, ParsedRow)
    groups, rejected = merge(first, second)
    assert rejected == []
    (group,) = groups
    assert len(group.items) == 2 and group.lines == [2, 3]
    assert group.person.name_kana == "ヤマダ\u3000タロウ"  # filled from the second row
    assert len(group.phones) == 1
    assert group.unpaid_total_yen == 24_600


def test_conflicting_rows_are_all_rejected() -> None:
    rows = [
        parse_row(record(line_no=n, period=str(n), birth_date=birth), CONTEXT)
        for n, birth in ((2, "1975-04-01"), (3, "1975-04-01"), (4, "1975-04-02"))
    ]
    groups, rejected = merge(*(row for row in rows if isinstance(row, ParsedRow)))
    assert groups == []
    assert sorted(r.line_no for r in rejected) == [2, 3, 4]
    assert {r.code for r in rejected} == {CONFLICT}


def test_blank_birth_date_is_not_a_conflict_but_another_name_is() -> None:
    same = parse_row(record(line_no=3, period="2", birth_date=""), CONTEXT)
    other = parse_row(record(line_no=4, period="3", name="山田　次郎"), CONTEXT)
    assert isinstance(same, ParsedRow) and isinstance(other, ParsedRow)
    assert merge(parsed(), same)[1] == []
    assert {r.code for r in merge(parsed(), other)[1]} == {CONFLICT}


def test_zero_padding_does_not_split_a_person() -> None:
    padded = parse_row(record(line_no=3, atena_no="000１２３４５", period="2"), CONTEXT)
    assert isinstance(padded, ParsedRow)
    groups, rejected = merge(parsed(atena_no="12345"), padded)
    assert rejected == [] and len(groups) == 1 and groups[0].lines == [2, 3]


def test_duplicate_item_is_rejected() -> None:
    duplicate = parse_row(record(line_no=3, period="０１"), CONTEXT)
    assert isinstance(duplicate, ParsedRow)
    groups, rejected = merge(parsed(), duplicate)
    assert [r.code for r in rejected] == [DUPLICATE_ITEM] and rejected[0].line_no == 3
    assert groups[0].lines == [2]


# ------------------------------------------------------------------ property

_cells = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        ["", "0", "1", "令和8年6月30日", "R8.6.30", "平成31年5月1日", "12,300円", "-5", "=1+1"]
    ),
    st.from_regex(r"0[0-9]{1,4}-[0-9]{1,4}-[0-9]{3,5}", fullmatch=True),
)
_row = st.fixed_dictionaries(
    {
        "atena_no": st.one_of(st.sampled_from(["1", "2", "３"]), st.text(max_size=5)),
        "name": st.one_of(st.sampled_from(["山田　太郎", "山田太郎", "佐藤"]), st.text(max_size=8)),
    },
    optional={key: _cells for key, _ in FIELDS if key not in ("atena_no", "name")},
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_row, st.sampled_from([None, None, None, "csv_syntax"])), max_size=12))
def test_random_rows_never_crash_and_are_all_accounted_for(
    rows: list[tuple[dict[str, str], str | None]],
) -> None:
    merger = Merger()
    rejected: set[int] = set()
    for line_no, (values, problem) in enumerate(rows, start=2):
        raw = RawRecord(line_no, tuple(values.values()), values, problem)
        result = parse_row(raw, CONTEXT)
        if isinstance(result, list):
            assert result, "a rejected row always says why"
            rejected.add(line_no)
        elif (duplicate := merger.add(result)) is not None:
            rejected.add(duplicate.line_no)
    kept: list[int] = []
    for outcome in merger.finish():
        if isinstance(outcome, Rejection):
            rejected.add(outcome.line_no)
        else:
            kept.extend(outcome.lines)
    assert sorted(kept + sorted(rejected)) == list(range(2, len(rows) + 2))
    assert not set(kept) & rejected
