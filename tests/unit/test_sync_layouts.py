"""Layouts: the standard layout, layout files and header mapping."""

from __future__ import annotations

from typing import Any

import pytest

from kernel.errors import ConfigurationError, InvalidInput
from sync.layouts import FIELDS, REQUIRED_FIELDS, STANDARD, layout_from_dict, load_layout
from sync.readers import decode_line, map_header

REQUIRED_HEADERS = ["宛名番号", "氏名", "納期限", "未納額"]


def test_standard_layout_knows_every_documented_header() -> None:
    for key, label in FIELDS:
        assert STANDARD.key_for(label) == key
        assert STANDARD.label(key) == label
    assert set(REQUIRED_FIELDS) == {"atena_no", "name", "due_date", "unpaid"}


def test_headers_match_across_widths_spaces_and_bom() -> None:
    assert STANDARD.key_for("電話番号１") == "phone1"
    assert STANDARD.key_for(" 宛名 番号 ") == "atena_no"
    assert STANDARD.key_for("\ufeff宛名番号") == "atena_no"
    assert STANDARD.key_for("備考") is None


def test_header_mapping_in_any_order_lists_unknown_columns() -> None:
    positions, unknown = map_header(
        ["未納額", "備考", "氏名", "納期限", "宛名番号", ""], STANDARD, "f"
    )
    assert positions == {0: "unpaid", 2: "name", 3: "due_date", 4: "atena_no"}
    assert unknown == ["備考", "(列6)"]


@pytest.mark.parametrize("missing", REQUIRED_HEADERS)
def test_missing_required_header_is_refused_by_name(missing: str) -> None:
    headers = [h for h in REQUIRED_HEADERS if h != missing]
    with pytest.raises(InvalidInput, match=missing):
        map_header(headers, STANDARD, "export.csv")


def test_duplicated_header_is_refused() -> None:
    with pytest.raises(InvalidInput, match="重複"):
        map_header([*REQUIRED_HEADERS, "氏名"], STANDARD, "export.csv")
    with pytest.raises(InvalidInput, match="重複"):  # an alias of the same field
        map_header([*REQUIRED_HEADERS, "電話番号", "電話番号1"], STANDARD, "export.csv")


def test_sql_columns_may_use_english_keys() -> None:
    positions, _ = map_header(
        ["atena_no", "NAME", "due_date", "unpaid"], STANDARD, "sql", english_keys=True
    )
    assert sorted(positions.values()) == ["atena_no", "due_date", "name", "unpaid"]


def test_shipped_example_layouts_load() -> None:
    csv_layout = load_layout("kokuho_csv")
    assert csv_layout.key_for("宛名ＣＤ") == "atena_no"
    assert csv_layout.label("atena_no") == "宛名CD"
    assert csv_layout.code_tables["kind"]["01"] == "市県民税"
    fixed = load_layout("cobol_fixed")
    assert fixed.format == "fixed" and fixed.encoding == "cp932"
    assert [f.key for f in fixed.fixed_fields][:2] == ["atena_no", "name"]
    assert load_layout(None) is STANDARD and load_layout("standard") is STANDARD


def _base(**extra: Any) -> dict[str, Any]:
    columns = {"ID": "宛名番号", "NM": "name", "DUE": "納期限", "AMT": "未納額"}
    return {"format": "csv", "columns": columns, **extra}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_base(format="xml"), "format"),
        (_base(encoding="klingon"), "unknown encoding"),
        (_base(columns={"ID": "宛名番号", "NM": "氏名", "DUE": "納期限"}), "未納額"),
        (_base(columns={"ID": "宛名番号", "X": "好きな色"}), "unknown field"),
        (_base(columns={"A": "宛名番号", "B": "atena_no"}), "mapped twice"),
        ({"format": "fixed"}, "fields"),
        (
            {"format": "fixed", "fields": [{"name": "宛名番号", "offset": -1, "length": 3}]},
            "offset",
        ),
        (_base(code_tables={"債権種別": "01=市民税"}), "code_tables"),
    ],
)
def test_bad_layout_files_name_the_problem(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        layout_from_dict(data, default_name="bad", where="bad.toml")


def test_unknown_layout_name() -> None:
    with pytest.raises(ConfigurationError, match="not found"):
        load_layout("no_such_layout")


def test_decode_line_flags_bad_and_foreign_bytes() -> None:
    assert decode_line("山田,1\r\n".encode("cp932"), "cp932") == ("山田,1\r\n", None)
    assert decode_line("山田\n".encode(), "cp932")[1] == "encoding_mismatch"
    assert decode_line("山田\n".encode("cp932"), "utf-8")[1] == "encoding_mismatch"
    assert decode_line(b"\x81\x20\xff\n", "utf-8")[1] == "encoding_error"
    assert decode_line(b"abc\n", "cp932") == ("abc\n", None)
    assert decode_line("髙橋①\n".encode("cp932"), "cp932") == ("髙橋①\n", None)
