"""The columnar first pass collects exactly what the row pipeline collects, or declines.

The reference is the row pipeline's first pass before merging (``CsvSource`` records, the
sharing policy, ``CachedRowParser``, ``rejected_person_key``), as ``importer._Job`` and
``parallel.collect_chunk`` run it. Checked on synthetic exports (several seeds, a sharing
policy), on hostile cells of every field (CP932 and UTF-8, a layout with code tables and its
own date formats), on random rows (hypothesis), and on the column kernels one by one.
"""

from __future__ import annotations

import csv
import unicodedata
from collections import Counter
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernel.errors import InvalidInput
from kernel.settings import SharingPolicy
from sync import column_rules, columnar_read, normalize
from sync.cached_rows import REJECTED, CachedRowParser
from sync.columnar_schema import ColumnarCollected, check_table, table_from_parsed
from sync.layouts import FIELDS, STANDARD, Layout, layout_from_dict
from sync.readers import CsvSource
from sync.rows import ParsedRow, RowContext, policy_allows, rejected_person_key
from sync.synthetic import HEADERS, write_export

AS_OF = date(2026, 11, 24)
YEARS = 5
FIELD_KEYS_IN_ORDER = tuple(key for key, _ in FIELDS)
NO_POLICY = SharingPolicy()
CODED = layout_from_dict(
    {
        "columns": {
            "宛名番号": "atena_no", "氏名": "name", "納期限": "due_date", "未納額": "unpaid",
            "税目": "kind", "停止": "suppressed", "電話": "phone1", "生年月日": "birth_date",
        },
        "date_formats": ["%Y%m%d"],
        "code_tables": {"kind": {"1": "市県民税"}, "suppressed": {"Y": "1", "N": "0"}},
    },
    default_name="coded",
    where="test",
)  # fmt: skip


def row_path(
    path: Path, layout: Layout = STANDARD, policy: SharingPolicy = NO_POLICY
) -> ColumnarCollected:
    """What the row pipeline's first pass collects, in the columnar form."""
    source = CsvSource(path, layout)
    parser = CachedRowParser(RowContext(layout, AS_OF, YEARS))
    collected = ColumnarCollected(rows=pa.table({}))
    accepted: list[ParsedRow] = []
    for record in source.records():
        collected.rows_read += 1
        if record.problem is None and not policy_allows(record, layout, policy):
            collected.excluded_by_policy += 1
            continue
        parsed = parser.parse(record)
        if isinstance(parsed, list):
            collected.rejections[record.line_no] = parsed
            protected = rejected_person_key(record)
            if protected is not None:
                collected.dv_ids.add(protected)
        else:
            accepted.append(parsed)
            collected.field_issues.update(parsed.issues)
    collected.blank_records = source.blank_records
    collected.rows = table_from_parsed(accepted)
    return collected


def columnar(
    path: Path, layout: Layout = STANDARD, policy: SharingPolicy = NO_POLICY
) -> ColumnarCollected | None:
    return columnar_read.collect_columnar(CsvSource(path, layout), layout, AS_OF, YEARS, policy)


def assert_same(got: ColumnarCollected | None, expected: ColumnarCollected) -> None:
    assert got is not None, "the columnar first pass declined"
    check_table(got.rows)
    assert got.rows_read == expected.rows_read
    assert got.excluded_by_policy == expected.excluded_by_policy
    assert got.blank_records == expected.blank_records
    assert got.rejections == expected.rejections
    assert got.dv_ids == expected.dv_ids
    assert got.field_issues == expected.field_issues
    for name in expected.rows.column_names:
        assert got.rows.column(name).to_pylist() == expected.rows.column(name).to_pylist(), name


def write_rows(
    path: Path, header: list[str], rows: list[list[str]], encoding: str = "cp932"
) -> Path:
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


# ------------------------------------------------------------------ whole exports


@pytest.mark.parametrize("seed", [3, 17, 2026])
def test_synthetic_exports_are_collected_exactly(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "export.csv"
    write_export(path, 1500, seed=seed, as_of=AS_OF)
    expected = row_path(path)
    assert expected.rejections
    assert_same(columnar(path), expected)


def test_several_blocks_and_threads_give_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "export.csv"
    write_export(path, 2500, seed=8, as_of=AS_OF)
    monkeypatch.setattr(columnar_read, "BLOCK_BYTES", 64 << 10)
    seen: list[tuple[int, int]] = []
    source = CsvSource(path, STANDARD)
    got = columnar_read.collect_columnar(
        source, STANDARD, AS_OF, YEARS, NO_POLICY, lambda done, total: seen.append((done, total))
    )
    assert_same(got, row_path(path))
    assert len(seen) > 5 and seen[-1] == (source.total, source.total)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_sharing_policy_withholds_the_same_rows(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    write_export(path, 1200, seed=4, as_of=AS_OF)
    policy = SharingPolicy(departments=["納税課"], excluded_kinds=["軽自動車税"])
    expected = row_path(path, policy=policy)
    assert expected.excluded_by_policy > 0
    assert_same(columnar(path, policy=policy), expected)


# ------------------------------------------------------------------ hostile cells

HOSTILE: dict[str, tuple[str, ...]] = {
    "atena_no": ("", "A-12", "０００１２３", "1" * 21, "'=1", " 12 ", "12\t"),
    "name": ("", "  ", "=1+1", "'=1+1", "山田\x01太郎", "ﾔﾏﾀﾞ　太郎", "あ" * 101, "髙橋　﨑"),
    "name_kana": ("", "やまだ", "ﾔﾏﾀﾞ ﾀﾛｳ", "山田", "ア" * 101, "カ゛ッコ"),
    "birth_date": ("", "昭和64年1月8日", "H31.5.1", "そのうち", "19750401", "s50/3/5",
                   "Ｒ１.５.１", "平成元年1月8日", "2024/2/30", "0990-01-01", "3190501", "M05.1.1",
                   "2020-5-1 10:00", "２０２０年５月１日", "令和 2年5月1日", "R2\u30fc5\u30fc1"),
    "gender": ("", "男", "X", "9", "Female"),
    "postal_code": ("", "〒123-4567", "12-34", "１２３－４５６７"),
    "address": ("", "架空市\x1b[2J", "あ" * 301, " 架空市  夢見町 ", "霞ヶ丘5‐15‐16", "1ー2ー3",
                "Ａ棟\u3000１０１", "x\u200by", "コーヒー1-2", "市\u2028町", "ﾊﾟﾚｽ１－２"),
    "phone1": ("", "090-1234-5678", "0180-12-3456", "110", "+1 202 555 0100", "abc", "0090123",
               "０９０－１２３４－５６７８", "090 1234 5678", "(03)1234-5678", "+81 90-1234-5678",
               "090ｰ1234ｰ5678", "0120-123-456", "0570-123-456", "050-1234-5678", "06-1234-567"),
    "phone2": ("", "03(1234)5678", "050-1234-5678", "0570-123-456", "09012345678", "0990-123-456"),
    "phone_verified_on": ("", "2015-01-01", "壊れた日付", "令和8年1月1日", "2021-11-25"),
    "department": ("", "納税課", "課" * 65),
    "kind": ("", "市県民税", "市\x00民税", "税" * 65),
    "fiscal_year": ("", "令和8年度", "平成32年度", "R7", "1200"),
    "period": ("", "01", "１", "期" * 17),
    "notice_number": ("", "2026010001", "=cmd", "ＡＢ-12", "a" * 65),
    "due_date": ("", "令和8年6月30日", "平成31年5月1日", "令和3年2月30日", "2026-06-30",
                 "20260630"),
    "unpaid": ("", "12,300", "-500", "▲500", "12.5", "1,000,000,001", "１２３円", "￥1,000",
               "\\500", "1,000,000,000", "1000000000", "12,30", "+5", "0", "00012"),
    "late_fee": ("", "1,000", "-1", "2,000,000,000", "abc", "１，０００円"),
    "demand_date": ("", "R8.7.20", "2026/02/30"),
    "installment": ("", "履行中", "不履行", "たぶん"),
    "account_transfer": ("", "有", "無", "?"),
    "suppressed": ("", "0", "1", "はい"),
    "dv_support": ("", "0", "1", "2"),
    "language": ("", "英語", "pt-BR", "klingon language"),
}  # fmt: skip
BASE = {
    "atena_no": "0000123",
    "name": "山田　太郎",
    "due_date": "令和8年6月30日",
    "unpaid": "12,300",
    "phone1": "090-1234-5678",
    "phone_verified_on": "令和7年1月1日",
}


def _hostile_rows(keys: list[str]) -> list[list[str]]:
    rows = []
    for key, cells in HOSTILE.items():
        for cell in cells:
            values = BASE | {key: cell}
            rows.append([values.get(k, "") for k in keys])
    return rows


@pytest.mark.parametrize("encoding", ["cp932", "utf-8"])
def test_hostile_cells_of_every_field(tmp_path: Path, encoding: str) -> None:
    keys = [key for key, _ in FIELDS]
    rows = _hostile_rows(keys)
    if encoding == "cp932":  # CP932 cannot hold every hostile cell: those rows stay out
        rows = [row for row in rows if _encodes("".join(row), encoding)]
    path = write_rows(tmp_path / "hostile.csv", [label for _, label in FIELDS], rows, encoding)
    expected = row_path(path)
    assert len(expected.rejections) > 20
    assert_same(columnar(path), expected)


def test_layout_with_code_tables_and_date_formats(tmp_path: Path) -> None:
    rows = [
        ["1", "山田　太郎", "20260630", "1,000", "1", "N", "090-1234-5678", "19700101"],
        ["2", "佐藤　花子", "令和8年6月30日", "2000", "9", "Y", "", "1970-01-01"],
        ["3", "鈴木　一郎", "20260631", "3000", "", "?", "03-1234-5678", ""],
    ]
    header = ["宛名番号", "氏名", "納期限", "未納額", "税目", "停止", "電話", "生年月日"]
    path = write_rows(tmp_path / "coded.csv", header, rows)
    assert_same(columnar(path, CODED), row_path(path, CODED))


def _encodes(text: str, encoding: str) -> bool:
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


# ------------------------------------------------------------------ lines and bytes


def _standard_row(**cells: str) -> list[str]:
    values = BASE | cells
    return [values.get(key, "") for key, _ in FIELDS]


def test_utf8_line_in_a_cp932_file_is_rejected_as_the_reader_does(tmp_path: Path) -> None:
    header = [label for _, label in FIELDS]
    path = write_rows(tmp_path / "mixed.csv", header, [_standard_row(), _standard_row()])
    # these kanji in UTF-8 happen to be valid CP932 bytes (mojibake): only the
    # reader's check of each line tells them apart
    row = _standard_row(
        atena_no="99",
        name="山田",
        due_date="2026-06-30",
        unpaid="5",
        phone_verified_on="",
        dv_support="1",
    )
    utf8_line = ",".join(row).encode("utf-8")
    utf8_line.decode("cp932")
    with path.open("ab") as handle:
        handle.write(utf8_line + b"\r\n")
    expected = row_path(path)
    assert [r.code for r in expected.rejections[4]] == ["encoding_mismatch"]
    assert_same(columnar(path), expected)


def test_blank_records_are_counted_not_read(tmp_path: Path) -> None:
    header = [label for _, label in FIELDS]
    rows = [_standard_row(), [""] * len(header), [" "] + [""] * (len(header) - 1)]
    path = write_rows(tmp_path / "blank.csv", [*header, "備考"], [[*r, ""] for r in rows])
    expected = row_path(path)
    assert expected.blank_records == 2
    assert_same(columnar(path), expected)


def test_unknown_columns_and_missing_optional_columns(tmp_path: Path) -> None:
    header = ["備考", "宛名番号", "氏名", "納期限", "未納額", "電話番号"]
    rows = [
        ["x", "12", "山田　太郎", "R8.6.30", "1,000", "090-1234-5678"],
        ["y", "", "", "", "", ""],
    ]
    path = write_rows(tmp_path / "few.csv", header, rows)
    assert_same(columnar(path), row_path(path))


@pytest.mark.parametrize(
    "tail",
    [
        b'1,"quoted\r\nnewline",R8.6.30,1\r\n',  # a record over two lines
        b"1,x,R8.6.30\r\n",  # too few cells
        b"\r\n",  # a blank line
        b"1,\x82\xff,R8.6.30,1\r\n",  # bytes CP932 cannot read
        b'1,"x"y,R8.6.30,1\r\n',  # text after a closing quote
        b"1,a\rb,R8.6.30,1\r\n",  # a carriage return inside a line
    ],
)
def test_what_the_row_reader_reads_differently_is_declined(tmp_path: Path, tail: bytes) -> None:
    path = tmp_path / "odd.csv"
    path.write_bytes("宛名番号,氏名,納期限,未納額\r\n1,山田,R8.6.30,1\r\n".encode("cp932") + tail)
    assert columnar(path) is None


def test_utf16_is_declined(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text("宛名番号,氏名,納期限,未納額\r\n1,山田,R8.6.30,1\r\n", encoding="utf-16")
    assert columnar(path) is None


# ------------------------------------------------------------------ random rows

_cells = st.one_of(
    st.text(max_size=12),
    st.text(alphabet="0123456789０１２３-－ー‐/.年月日円,¥ 令和平成RHS元", max_size=12),
    st.sampled_from(
        [
            "",
            "0",
            "1",
            "令和8年6月30日",
            "R8.6.30",
            "平成31年5月1日",
            "12,300円",
            "-5",
            "=1+1",
            "有",
        ]
    ),
    st.from_regex(r"0[0-9]{1,4}-[0-9]{1,4}-[0-9]{3,5}", fullmatch=True),
)
_rows = st.lists(st.fixed_dictionaries({key: _cells for key, _ in FIELDS}), max_size=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=_rows, encoding=st.sampled_from(["utf-8", "cp932"]))
def test_random_rows_are_collected_exactly_or_declined(
    tmp_path_factory: pytest.TempPathFactory, rows: list[dict[str, str]], encoding: str
) -> None:
    path = tmp_path_factory.mktemp("random") / "random.csv"
    lines = [[row[key] for key, _ in FIELDS] for row in rows]
    lines = [line for line in lines if _encodes("".join(line), encoding)]
    write_rows(path, [label for _, label in FIELDS], lines, encoding)
    try:
        CsvSource(path, STANDARD)
    except InvalidInput:
        return  # both pipelines refuse the file (e.g. an unreadable header)
    got = columnar(path)
    if got is not None:
        assert_same(got, row_path(path))


# ------------------------------------------------------------------ kernels


def test_arrow_nfkc_agrees_with_python_on_every_assigned_bmp_character() -> None:
    characters = [
        chr(code) for code in range(0x10000) if unicodedata.category(chr(code)) not in ("Cn", "Cs")
    ]
    folded = pc.utf8_normalize(pa.array(characters), "NFKC").to_pylist()
    assert folded == [unicodedata.normalize("NFKC", c) for c in characters]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=16), min_size=1, max_size=20))
def test_normalize_texts_decides_only_what_normalize_text_gives(texts: list[str]) -> None:
    decided, folded = column_rules.normalize_texts(pa.array(texts, pa.string()))
    for text, sure, value in zip(texts, decided.to_pylist(), folded.to_pylist(), strict=True):
        if sure:
            assert value == normalize.normalize_text(text), text


def test_normalize_texts_decides_the_usual_cells() -> None:
    texts = [
        "霞ヶ丘5‐15‐16",
        " 架空市  夢見町 ",
        "Ａ棟１０１",
        "1ー2ー3ー4",
        "ab\u200bc",
        "2026010001",
    ]
    decided, folded = column_rules.normalize_texts(pa.array(texts))
    assert all(decided.to_pylist())
    assert folded.to_pylist() == [normalize.normalize_text(text) for text in texts]


_date_text = st.one_of(
    st.text(alphabet="0123456789０１２-/.年月日元令和平成昭大正明治RHSTMrhs ", max_size=14),
    st.dates(min_value=date(1850, 1, 1), max_value=date(2100, 1, 1)).map(
        lambda d: f"{d.year}/{d.month}/{d.day}"
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_date_text, min_size=1, max_size=20))
def test_parse_dates_decides_only_what_parse_date_gives(texts: list[str]) -> None:
    decided, days = column_rules.parse_dates(pa.array(texts, pa.string()))
    for text, sure, day in zip(texts, decided.to_pylist(), days.to_pylist(), strict=True):
        if sure:
            assert day == normalize.parse_date(text), text


def test_field_issues_are_counted_per_code(tmp_path: Path) -> None:
    header = [label for _, label in FIELDS]
    rows = [_standard_row(gender="X", dv_support="2"), _standard_row(gender="X", atena_no="9")]
    path = write_rows(tmp_path / "issues.csv", header, rows)
    got = columnar(path)
    assert got is not None
    assert got.field_issues == Counter({"gender:invalid_gender": 2, "dv_support:invalid_flag": 1})
    assert got.rows.column("issues").to_pylist() == [
        ["gender:invalid_gender", "dv_support:invalid_flag"],
        ["gender:invalid_gender"],
    ]


def test_headers_of_the_synthetic_export_are_the_standard_ones() -> None:
    assert list(HEADERS) == [label for _, label in FIELDS]


_name_text = st.one_of(
    st.text(max_size=10),
    st.text(alphabet="山田太郎ﾔﾏﾀﾞやまだヤマダー\u3000 =＝'\u200b\t", max_size=10),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_name_text, min_size=1, max_size=20))
def test_name_and_kana_kernels_decide_only_what_the_reference_gives(texts: list[str]) -> None:
    parser = CachedRowParser(RowContext(STANDARD, AS_OF, YEARS))
    for key, rule in (("name", column_rules.names), ("name_kana", column_rules.kana_readings)):
        found = rule(column_rules.Cells(key, pa.array(texts, pa.string()), parser))
        values, rejected = found.values.to_pylist(), found.rejected.to_pylist()
        issues = found.issues.to_pylist()
        for text, value, bad, issue in zip(texts, values, rejected, issues, strict=True):
            expected = parser.rules[key](text)
            if bad:
                assert expected is REJECTED, text
            else:
                assert expected == (value, (issue,) if issue else ()), text


def test_katakana_the_kana_kernel_keeps_are_stable_under_nfkc() -> None:
    kept = [*range(0x30A1, 0x30FB), 0x30FC, *range(0x31F0, 0x3200)]
    assert all(unicodedata.normalize("NFKC", chr(code)) == chr(code) for code in kept)


def test_utf8_with_a_byte_order_mark(tmp_path: Path) -> None:
    header = [label for _, label in FIELDS]
    rows = _hostile_rows(list(FIELD_KEYS_IN_ORDER))
    path = write_rows(tmp_path / "bom.csv", header, rows, "utf-8-sig")
    assert CsvSource(path, STANDARD).encoding == "utf-8-sig"
    line = ",".join(_standard_row(unpaid="12300")).encode() + b"\r\n"
    with path.open("ab") as handle:
        handle.write(line)
    assert_same(columnar(path), row_path(path))
    with path.open("ab") as handle:  # the row reader drops a mark at the start of any line
        handle.write(b"\xef\xbb\xbf" + line)
    assert columnar(path) is None
