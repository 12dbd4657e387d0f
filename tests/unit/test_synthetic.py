"""The synthetic arrears export: reproducible, CP932, realistic mix, defects labelled."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter, defaultdict
from datetime import date, timedelta
from pathlib import Path

import pytest

from sync.normalize import (
    NormalizationError,
    normalize_kana,
    normalize_name,
    normalize_person_id,
    normalize_phone,
    normalize_postal_code,
    parse_amount,
    parse_date,
    parse_fiscal_year,
    parse_gender,
    parse_unpaid_amount,
)
from sync.synthetic import (
    BAD_KINDS,
    DATE_COLUMNS,
    HEADERS,
    LabelledRow,
    generate_labelled_rows,
    generate_rows,
    write_export,
)

AS_OF = date(2025, 11, 15)
PERSONS = 2000


@pytest.fixture(scope="module")
def labelled() -> list[LabelledRow]:
    return list(generate_labelled_rows(PERSONS, seed=2025, as_of=AS_OF))


def _column(rows: list[LabelledRow], header: str) -> list[str]:
    return [item.row[header] for item in rows]


# ------------------------------------------------------------------ files


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    paths = [tmp_path / name for name in ("a.csv", "b.csv", "c.csv")]
    for path, seed in zip(paths, (1, 1, 2), strict=True):
        write_export(path, 300, seed, AS_OF)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()


def test_export_is_cp932_csv_with_crlf_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    stats = write_export(path, 500, 3, AS_OF)
    raw = path.read_bytes()
    text = raw.decode("cp932")
    assert raw.count(b"\r\n") >= stats.rows_written + 1
    assert b"\n" not in raw.replace(b"\r\n", b"")
    records = list(csv.reader(io.StringIO(text, newline="")))
    assert tuple(records[0]) == HEADERS
    expected = [[row[header] for header in HEADERS] for row in generate_rows(500, 3, AS_OF)]
    assert records[1:] == expected
    assert stats.rows_written == len(expected)
    assert stats.persons == 500


def test_other_encodings_can_be_asked_for(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    write_export(path, 50, 3, AS_OF, encoding="utf-8")
    assert path.read_text(encoding="utf-8").startswith(",".join(HEADERS))


def test_cp932_only_characters_appear(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    write_export(path, PERSONS, 2025, AS_OF)
    text = path.read_bytes().decode("cp932")
    for char in "髙﨑①㈱":
        assert char in text, char
    with pytest.raises(UnicodeEncodeError):
        text.encode("shift_jis")


def test_stats_count_the_labelled_rows(tmp_path: Path, labelled: list[LabelledRow]) -> None:
    stats = write_export(tmp_path / "export.csv", PERSONS, 2025, AS_OF)
    counted = Counter(item.bad for item in labelled if item.bad is not None)
    assert stats.rows_written == len(labelled)
    assert dict(stats.bad_rows) == dict(counted)


def test_rows_are_streamed() -> None:
    rows = generate_rows(10**9, 1, AS_OF)  # would never finish if it built a list
    first = next(rows)
    assert set(first) == set(HEADERS)


def test_generate_rows_are_the_labelled_rows(labelled: list[LabelledRow]) -> None:
    rows = list(generate_rows(PERSONS, 2025, AS_OF))
    assert rows == [item.row for item in labelled]
    assert all(list(row) and set(row) == set(HEADERS) for row in rows)


# ------------------------------------------------------------------ the mix


def test_every_kind_of_bad_row_appears_in_a_small_share(labelled: list[LabelledRow]) -> None:
    kinds = Counter(item.bad for item in labelled if item.bad is not None)
    assert set(kinds) == set(BAD_KINDS)
    assert 0.005 < sum(kinds.values()) / len(labelled) < 0.03


def test_bad_rows_are_bad_in_the_way_they_say(labelled: list[LabelledRow]) -> None:
    for item in labelled:
        row = item.row
        if item.bad == "missing_due_date":
            assert row["納期限"] == ""
        elif item.bad == "negative_amount":
            assert parse_amount(row["未納額"]) < 0
        elif item.bad == "impossible_date":
            with pytest.raises(NormalizationError) as info:
                parse_date(row["納期限"])
            assert info.value.code in {"era_out_of_range", "impossible_date"}
        elif item.bad == "formula_name":
            assert row["氏名"].startswith("=")
        else:
            assert not row["氏名"].startswith("=")


def test_one_to_four_receivables_per_person(labelled: list[LabelledRow]) -> None:
    per_person = Counter(normalize_person_id(item.row["宛名番号"]) for item in labelled)
    assert len(per_person) == PERSONS
    assert set(per_person.values()) == {1, 2, 3, 4}


def test_receivables_are_mostly_past_due_some_future_some_carried_over(
    labelled: list[LabelledRow],
) -> None:
    dues = [parse_date(item.row["納期限"]) for item in labelled if item.bad is None]
    years = Counter(parse_fiscal_year(item.row["年度"]) for item in labelled)
    past = sum(due < AS_OF for due in dues)
    assert past / len(dues) > 0.8
    assert len(dues) - past > 0.03 * len(dues)
    assert years.most_common(1)[0][0] == 2025
    assert {2021, 2022, 2023, 2024} <= set(years)


def test_kinds_and_sections(labelled: list[LabelledRow]) -> None:
    kinds = set(_column(labelled, "債権種別"))
    sections = set(_column(labelled, "所管課"))
    assert {"市県民税", "固定資産税", "軽自動車税", "国民健康保険税", "保育料"} <= kinds
    assert {"納税課", "国保年金課", "こども課"} <= sections


def test_flags_appear_in_their_shares(labelled: list[LabelledRow]) -> None:
    first_rows = {item.row["宛名番号"]: item.row for item in labelled}.values()
    share = {
        header: Counter(row[header] for row in first_rows)
        for header in ("催告停止", "支援措置", "分納", "口座振替", "言語")
    }
    assert 0.003 < share["催告停止"]["1"] / PERSONS < 0.03
    assert 0.001 < share["支援措置"]["1"] / PERSONS < 0.015
    assert set(share["催告停止"]) == set(share["支援措置"]) == {"", "1"}
    assert set(share["分納"]) == {"", "履行中", "不履行"}
    assert set(share["口座振替"]) == {"有", "無"}
    assert set(share["言語"]) == {"", "ja", "en", "zh", "ko", "vi", "pt"}


def test_every_phone_type_appears(labelled: list[LabelledRow]) -> None:
    outcomes: Counter[str] = Counter()
    for value in _column(labelled, "電話番号1") + _column(labelled, "電話番号2"):
        if not value:
            outcomes["blank"] += 1
            continue
        try:
            outcomes[normalize_phone(value).kind.value] += 1
        except NormalizationError as error:
            outcomes[error.code] += 1
    expected = {"MOBILE", "FIXED_LINE", "VOIP", "TOLL_FREE", "OTHER"}
    assert expected | {"invalid_phone", "not_a_phone", "blank"} == set(outcomes)
    assert outcomes["MOBILE"] > outcomes["FIXED_LINE"] > outcomes["VOIP"]


def test_phone_notations_vary(labelled: list[LabelledRow]) -> None:
    phones = set(_column(labelled, "電話番号1"))
    assert any(re.fullmatch(r"0[0-9]{9,10}", phone) for phone in phones)
    assert any("－" in phone and "０" in phone for phone in phones)
    assert any("(" in phone for phone in phones)
    for dash in "-－‐ーｰ":
        assert any(dash in phone for phone in phones), dash


def test_some_households_share_a_phone(labelled: list[LabelledRow]) -> None:
    holders: defaultdict[str, set[str]] = defaultdict(set)
    for item in labelled:
        if item.row["電話番号1"]:
            holders[item.row["電話番号1"]].add(item.row["宛名番号"])
    shared = [ids for ids in holders.values() if len(ids) == 2]
    assert 5 <= len(shared) < PERSONS * 0.05


def test_some_phone_checks_are_older_than_five_years(labelled: list[LabelledRow]) -> None:
    checked = [parse_date(value) for value in _column(labelled, "電話確認日") if value]
    stale = [day for day in checked if day < AS_OF - timedelta(days=5 * 365)]
    assert 0.03 < len(stale) / len(checked) < 0.3
    assert all(day <= AS_OF for day in checked)


def test_kana_is_written_in_several_ways(labelled: list[LabelledRow]) -> None:
    kana = _column(labelled, "氏名カナ")
    assert "" in kana
    assert any(re.search("[ｦ-ﾟ]", value) for value in kana)
    assert any(re.search("[ぁ-ゖ]", value) for value in kana)
    full = sum(bool(re.fullmatch("[ァ-ヶー\u3000]+", value)) for value in kana)
    assert full / len(kana) > 0.6


def test_dates_are_written_in_mixed_forms(labelled: list[LabelledRow]) -> None:
    values = {item.row[header] for item in labelled for header in DATE_COLUMNS}
    forms = {
        "kanji era": "(令和|平成|昭和)(元|[0-9]{1,2})年[0-9]{1,2}月[0-9]{1,2}日",
        "letter era": r"[RHS][0-9]{1,2}\.[0-9]{1,2}\.[0-9]{1,2}",
        "padded letter era": "[RHS][0-9]{2}/[0-9]{2}/[0-9]{2}",
        "era code": "[1-5][0-9]{6}",
        "iso": "[0-9]{4}-[0-9]{2}-[0-9]{2}",
        "slashes": "[0-9]{4}/[0-9]{1,2}/[0-9]{1,2}",
        "compact": "[0-9]{8}",
        "full-width kanji era": "(令和|平成|昭和)(元|[０-９]{1,2})年[０-９]{1,2}月[０-９]{1,2}日",
    }
    for label, pattern in forms.items():
        assert any(re.fullmatch(pattern, value) for value in values), label


def test_values_survive_a_cp932_round_trip(labelled: list[LabelledRow]) -> None:
    for item in labelled:
        for value in item.row.values():
            assert value.encode("cp932").decode("cp932") == value


def test_amounts_are_written_in_mixed_forms(labelled: list[LabelledRow]) -> None:
    amounts = _column(labelled, "未納額")
    assert any("," in value for value in amounts)
    assert any(value.endswith("円") for value in amounts)
    assert any(re.search("[０-９]", value) for value in amounts)
    assert any(value.startswith("￥") for value in amounts)


def test_addresses_are_fictional(labelled: list[LabelledRow]) -> None:
    for item in labelled:
        assert item.row["住所"].startswith("架空県架空市")
        assert normalize_postal_code(item.row["郵便番号"]).startswith("000-")


# ------------------------------------------------------------------ parses with the normalizers


def test_every_date_parses_except_the_deliberately_bad_ones(labelled: list[LabelledRow]) -> None:
    for item in labelled:
        for header in DATE_COLUMNS:
            value = item.row[header]
            if value and not (item.bad == "impossible_date" and header == "納期限"):
                parse_date(value)
        if item.bad != "missing_due_date":
            assert item.row["納期限"]


def test_birth_dates_agree_except_in_conflict_rows(labelled: list[LabelledRow]) -> None:
    births: defaultdict[str, set[date]] = defaultdict(set)
    conflicts = set()
    for item in labelled:
        person = item.row["宛名番号"]
        if item.bad == "birth_date_conflict":
            conflicts.add(person)
        else:
            births[person].add(parse_date(item.row["生年月日"]))
    assert all(len(days) == 1 for days in births.values())
    assert conflicts
    for person in conflicts:
        rows = [item.row for item in labelled if item.row["宛名番号"] == person]
        assert len({parse_date(row["生年月日"]) for row in rows}) == 2


def test_every_other_field_normalizes(labelled: list[LabelledRow]) -> None:
    for item in labelled:
        row = item.row
        normalize_person_id(row["宛名番号"])
        normalize_name(row["氏名"])
        normalize_postal_code(row["郵便番号"])
        parse_gender(row["性別"])
        parse_fiscal_year(row["年度"])
        assert parse_amount(row["延滞金"]) >= 0
        if row["氏名カナ"]:
            normalize_kana(row["氏名カナ"])
        if item.bad != "negative_amount":
            assert parse_unpaid_amount(row["未納額"]) > 0
