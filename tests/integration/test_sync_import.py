"""Imports end to end on SQLite and PostgreSQL, and the readers on hostile files."""

from __future__ import annotations

import csv
import json
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from kernel import migrate
from kernel.db import Database
from kernel.errors import InvalidInput
from kernel.models import (
    AuditEvent,
    Base,
    Campaign,
    Channel,
    ExclusionList,
    ImportBatch,
    Person,
    Phone,
    PhoneKind,
    Receivable,
)
from kernel.pii import KeyRing
from kernel.settings import SharingPolicy, SyncSettings
from sync.exclusions import load_exclusions
from sync.importer import ImportSummary, import_file, import_sql
from sync.layouts import STANDARD, load_layout
from sync.loader import person_digest
from sync.readers import CsvSource, FixedWidthSource, RawRecord
from sync.rejects import REJECT_COLUMNS
from sync.synthetic import HEADERS, write_export

KEYRING = KeyRing("test-secret-sync-import-0123456789abcdef")
AS_OF = date(2026, 11, 24)
SETTINGS = SyncSettings()


def row(atena: str, name: str = "山田　太郎", **values: str) -> dict[str, str]:
    base = {
        "宛名番号": atena,
        "氏名": name,
        "氏名カナ": "ヤマダ　タロウ",
        "生年月日": "昭和50年4月1日",
        "電話番号1": "090-1234-5678",
        "所管課": "納税課",
        "債権種別": "市県民税",
        "年度": "令和8年度",
        "期別": "1",
        "納期限": "令和8年6月30日",
        "未納額": "12,300",
    }
    return base | values


def write_csv(
    path: Path,
    rows: Sequence[dict[str, str]],
    *,
    encoding: str = "cp932",
    header: Sequence[str] = HEADERS,
    delimiter: str = ",",
) -> Path:
    with path.open("w", encoding=encoding, newline="") as stream:
        writer = csv.writer(stream, delimiter=delimiter, lineterminator="\r\n")
        writer.writerow(header)
        for values in rows:
            writer.writerow([values.get(column, "") for column in header])
    return path


def run(database: Database, path: Path, **options: object) -> ImportSummary:
    return import_file(database, KEYRING, SETTINGS, path, as_of=AS_OF, **options)  # type: ignore[arg-type]


def count(database: Database, model: type[Base]) -> int:
    with database.read_only() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def read_rejects(path: Path, encoding: str = "cp932") -> list[dict[str, str]]:
    with path.open(encoding=encoding, newline="") as stream:
        return list(csv.DictReader(stream))


def assert_accounted(summary: ImportSummary) -> None:
    assert summary.rows_read == summary.rows_loaded + summary.rows_rejected
    assert sum(summary.rejected_by_reason.values()) == summary.rows_rejected
    assert summary.receivables_loaded == summary.rows_loaded - sum(summary.rows_excluded.values())
    assert sum(summary.channels.values()) == summary.persons_loaded


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'fast.sqlite3'}")
    migrate.upgrade(database)
    yield database
    database.dispose()


# ------------------------------------------------------------------ both backends


def test_synthetic_export_is_fully_accounted_for(database: Database, tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    stats = write_export(path, persons=150, seed=11, as_of=AS_OF)
    summary = run(database, path)
    assert summary.rows_read == stats.rows_written and summary.encoding == "cp932"
    assert_accounted(summary)
    assert summary.persons_loaded == count(database, Person) > 0
    assert summary.receivables_loaded == count(database, Receivable)
    assert summary.rows_rejected >= sum(stats.bad_rows.values()) - stats.bad_rows.get(
        "birth_date_conflict", 0
    )
    assert summary.rejects_file is not None
    rejects = read_rejects(Path(summary.rejects_file))
    assert len(rejects) == summary.rows_rejected
    assert all(r["取込エラーコード"] and r["取込エラー行"] for r in rejects)
    with database.read_only() as session:
        batch = session.scalars(select(ImportBatch)).one()
        assert batch.rows_read == summary.rows_read and batch.summary["persons_loaded"] > 0
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "sync.imported")
        ).one()
        assert event.object_id == str(batch.id) and event.detail["rows_read"] == summary.rows_read


def test_same_file_twice_loads_nothing_new(database: Database, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", [row("1"), row("2", "佐藤　花子", 電話番号1="")])
    first = run(database, path)
    assert first.persons_loaded == 2 and not first.already_imported
    again = run(database, path)
    assert again.already_imported and again.import_id == first.import_id
    assert again.persons_loaded == 0 and again.rows_read == 0
    assert count(database, Person) == 2 and count(database, ImportBatch) == 1
    assert count(database, Campaign) == 1


def test_protected_persons_leave_no_personal_data(database: Database, tmp_path: Path) -> None:
    listed = tmp_path / "exclusions.csv"
    listed.write_text(
        "# 基準日時: 2026-11-24T06:00+09:00\r\n宛名番号,理由\r\n77777,支援措置\r\n",
        encoding="cp932",
    )
    load_exclusions(database, KEYRING, listed)
    rows = [
        row("1000"),
        row("0000077777", "除外リスト人物", 電話番号1="03-9999-0001"),
        row("0000088888", "秘匿花子", 支援措置="1", 住所="架空市秘匿町1-2-3"),
        row("0000088888", "秘匿花子", 期別="2", 納期限=""),  # rejected row of the same person
    ]
    summary = run(database, write_csv(tmp_path / "p.csv", rows))
    assert summary.persons_loaded == 1
    assert summary.persons_excluded == {"dv_protected": 1, "exclusion_list": 1}
    assert summary.rows_rejected == 1
    needles = ["秘匿花子", "0000088888", "88888", "除外リスト人物", "0000077777", "秘匿町", "9999"]
    assert scan_database(database, needles) == []
    with database.read_only() as session:
        refs = set(session.scalars(select(Person.ref_digest)))
    ref = person_digest(KEYRING)
    assert ref("1000") in refs and ref("0000088888") not in refs and ref("77777") not in refs
    rejects = Path(summary.rejects_file or "").read_text(encoding="cp932")
    assert "秘匿花子" not in rejects and "88888" not in rejects and "内容を出力しません" in rejects


def scan_database(database: Database, needles: Sequence[str]) -> list[str]:
    """Every table, every column: no needle in any text, JSON or blob (in any encoding)."""
    hits = []
    with database.engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            for record in connection.execute(table.select()):
                for column, value in record._mapping.items():
                    if isinstance(value, bytes):
                        blob = value
                    else:
                        blob = json.dumps(value, ensure_ascii=False, default=str).encode()
                    for needle in needles:
                        if any(needle.encode(e) in blob for e in ("utf-8", "cp932", "utf-16-le")):
                            hits.append(f"{table.name}.{column}: {needle}")
    return hits


def test_sealed_values_channels_phones_and_households(database: Database, tmp_path: Path) -> None:
    rows = [
        row("1", 氏名カナ="ﾔﾏﾀﾞ ﾀﾛｳ", 電話番号1="０９０－１１１１－２２２２", 通知書番号="N-1"),
        row("1", 期別="2", 電話番号1="09011112222", 電話番号2="0180-99-1234"),
        row("2", "山田　花子", 氏名カナ="", 電話番号1="03-3333-4444"),  # operator: no kana
        row("3", "山田　次郎", 電話番号1="03-3333-4444", 電話確認日="2019-01-01"),  # stale
        row("4", "佐藤　一郎", 電話番号1="0570-000-111"),  # not a subscriber line
        row("5", "鈴木　一郎", 電話番号1="06-6666-7777"),
        row("6", "鈴木　二郎", 電話番号1="06-6666-7777", 年度="令和6年度", 未納額="200,000"),
        row("7", "鈴木　三郎", 電話番号1="06-6666-7777", 納期限="2026-12-31"),
        row("8", "鈴木　四郎", 電話番号1="06-6666-7777"),
    ]
    summary = run(database, write_csv(tmp_path / "c.csv", rows))
    assert_accounted(summary)
    assert summary.persons_loaded == 6
    assert summary.persons_excluded == {"not_initial_delinquency": 1, "not_due": 1}
    assert summary.channels == {"ivr": 3, "operator": 1, "letter": 2}
    assert summary.phones["invalid"] == 1 and summary.phones["stale"] == 1
    assert summary.phones["other"] == 1 and summary.phones["MOBILE"] == 1
    assert summary.shared_household_phones == 2
    with database.read_only() as session:
        person = session.scalars(select(Person).order_by(Person.id)).first()
        assert person is not None and person.channel is Channel.IVR and person.has_kana
        campaign = session.get(Campaign, person.campaign_id)
        assert campaign is not None and campaign.wrapped_data_key is not None
        cipher = KEYRING.cipher(campaign.wrapped_data_key, campaign.id)
        pii = cipher.open_record(person.sealed_pii, "pii")
        assert pii["atena_no"] == "1" and pii["name_kana"] == "ヤマダ\u3000タロウ"
        assert pii["birth_date"] == "1975-04-01"
        (phone,) = person.phones
        assert cipher.open_text(phone.sealed_number, "phone") == "+819011112222"
        assert phone.kind is PhoneKind.MOBILE
        assert phone.number_digest == KEYRING.digest("phone", "+819011112222")
        notices = [r.sealed_notice_number for r in person.receivables if r.sealed_notice_number]
        assert [cipher.open_text(n, "notice_number") for n in notices] == ["N-1"]
        assert person.unpaid_total_yen == 24_600
        shared = session.scalars(select(Phone).where(Phone.shared_household.is_(True))).all()
        assert len(shared) == 2


def test_fixed_width_and_coded_csv_layouts(database: Database, tmp_path: Path) -> None:
    fields = load_layout("cobol_fixed").fixed_fields

    def record(values: dict[str, str]) -> bytes:
        out = bytearray(b" " * 202)
        for fixed in fields:
            data = values.get(fixed.key, "").encode("cp932")[: fixed.length]
            out[fixed.offset : fixed.offset + len(data)] = data
        return bytes(out)

    good = {"atena_no": "0000000042", "name": "髙橋　一郎", "name_kana": "ﾀｶﾊｼ ｲﾁﾛｳ",
            "birth_date": "4010108", "phone1": "09012345678", "kind": "01",
            "fiscal_year": "2026", "period": "01", "due_date": "20260630",
            "unpaid": "0000012300", "late_fee": "00000000"}  # fmt: skip
    path = tmp_path / "host.dat"
    path.write_bytes(record(good) + b"\r\n" + record(good | {"kind": "99", "period": "02"})[:120])
    summary = run(database, path, layout="cobol_fixed")
    assert (summary.rows_read, summary.persons_loaded) == (2, 1)
    assert summary.rejected_by_reason == {"record_too_short": 1}
    header = [
        "宛名ＣＤ",
        "漢字氏名",
        "納期限日",
        "未納税額",
        "税目コード",
        "課税年度",
        "期",
        "備考",
    ]
    coded = [
        {"宛名ＣＤ": "43", "漢字氏名": "髙橋　二郎", "納期限日": "20260630", "未納税額": "500",
         "税目コード": "04", "課税年度": "2026", "期": "1", "備考": "x"},
        {"宛名ＣＤ": "44", "漢字氏名": "髙橋　三郎", "納期限日": "20260630", "未納税額": "500",
         "税目コード": "77", "課税年度": "2026", "期": "1"},
    ]  # fmt: skip
    csv_path = write_csv(tmp_path / "kokuho.csv", coded, header=header)
    summary = run(database, csv_path, layout="kokuho_csv")
    assert summary.persons_loaded == 1 and summary.rejected_by_reason == {"unknown_code": 1}
    assert summary.unknown_columns == ["備考"]
    with database.read_only() as session:
        kinds = set(session.scalars(select(Receivable.kind)))
    assert kinds == {"市県民税", "国民健康保険税"}


def test_sql_source_is_streamed_and_idempotent(database: Database, tmp_path: Path) -> None:
    source = tmp_path / "arrears.sqlite3"
    with sqlite3.connect(source) as connection:
        connection.execute("CREATE TABLE t (atena_no TEXT, 氏名 TEXT, due_date TEXT, 未納額 INT)")
        connection.executemany(
            "INSERT INTO t VALUES (?, ?, ?, ?)",
            [("1", "山田　太郎", "2026-06-30", 1000), ("2", "佐藤　花子", None, 500)],
        )
        connection.execute("CREATE VIEW 催告対象 AS SELECT * FROM t")
    url = f"sqlite:///{source}"
    rejects = tmp_path / "sql.rejects.csv"
    options = {"as_of": AS_OF, "rejects_path": rejects}
    summary = import_sql(database, KEYRING, SETTINGS, url, "催告対象", **options)  # type: ignore[arg-type]
    assert (summary.rows_read, summary.persons_loaded, summary.rows_rejected) == (2, 1, 1)
    assert read_rejects(rejects, "utf-8-sig")[0]["取込エラーコード"] == "missing_due_date"
    again = import_sql(database, KEYRING, SETTINGS, url, "SELECT * FROM t", **options)  # type: ignore[arg-type]
    assert again.already_imported
    with pytest.raises(InvalidInput):
        import_sql(database, KEYRING, SETTINGS, url, "t; DROP TABLE t", **options)  # type: ignore[arg-type]


def test_sharing_policy_and_loading_into_an_existing_draft(
    database: Database, tmp_path: Path
) -> None:
    policy = SyncSettings(sharing_policy=SharingPolicy(excluded_kinds=["特別徴収分"]))
    rows = [row("1"), row("1", 債権種別="特別徴収分", 期別="2"), row("2", "佐藤　花子")]
    path = write_csv(tmp_path / "a.csv", rows)
    first = import_file(database, KEYRING, policy, path, as_of=AS_OF)
    assert first.rows_excluded == {"sharing_policy": 1} and first.receivables_loaded == 2
    assert_accounted(first)
    second = run(
        database,
        write_csv(tmp_path / "b.csv", [row("2", "佐藤　花子", 期別="3"), row("3", "林　一")]),
        campaign_id=first.campaign_id,
    )
    assert second.campaign_id == first.campaign_id and second.persons_loaded == 1
    assert second.rejected_by_reason == {"already_in_campaign": 1} and second.rejects_file
    assert count(database, Person) == 3


def test_exclusion_list_replacement(database: Database, tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("宛名番号,除外理由\r\n１２３,DV\r\n123,重複\r\n", encoding="cp932")
    with pytest.raises(InvalidInput, match="基準日時"):
        load_exclusions(database, KEYRING, path)
    future = datetime.now().astimezone() + timedelta(days=1)
    with pytest.raises(InvalidInput, match="未来"):
        load_exclusions(database, KEYRING, path, as_of=future)
    first = load_exclusions(database, KEYRING, path, as_of=datetime(2026, 11, 24, 6, 0))
    assert (first.entries, first.duplicates, first.replaced) == (1, 1, 0)
    second = load_exclusions(database, KEYRING, path, as_of=datetime(2026, 11, 24, 7, 0))
    assert second.replaced == 1
    with database.read_only() as session:
        active = session.scalars(select(ExclusionList).where(ExclusionList.active)).one()
    assert active.id == second.list_id and active.entry_count == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("宛名番号\r\n12\r\nABC\r\n", encoding="cp932")
    with pytest.raises(InvalidInput, match="3行目"):
        load_exclusions(database, KEYRING, bad, as_of=datetime(2026, 11, 24, 6, 0))


# ------------------------------------------------------------------ hostile files (SQLite)


def records(path: Path) -> list[RawRecord]:
    return list(CsvSource(path, STANDARD).records())


def test_empty_and_header_only_files(sqlite_db: Database, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(InvalidInput, match="空"):
        run(sqlite_db, empty)
    blank = tmp_path / "blank.csv"
    blank.write_bytes(b"\r\n\r\n")
    with pytest.raises(InvalidInput, match="見出し"):
        run(sqlite_db, blank)
    summary = run(sqlite_db, write_csv(tmp_path / "header.csv", []))
    assert (summary.rows_read, summary.persons_loaded, summary.rejects_file) == (0, 0, None)


def test_missing_and_duplicated_headers(tmp_path: Path) -> None:
    missing = write_csv(tmp_path / "m.csv", [], header=["宛名番号", "氏名", "未納額"])
    with pytest.raises(InvalidInput, match="納期限"):
        CsvSource(missing, STANDARD)
    twice = write_csv(tmp_path / "d.csv", [], header=[*HEADERS, "氏名"])
    with pytest.raises(InvalidInput, match="重複"):
        CsvSource(twice, STANDARD)


def test_wrong_declared_encoding_and_unwritable_rejects(
    sqlite_db: Database, tmp_path: Path
) -> None:
    header = ["宛名ＣＤ", "漢字氏名", "納期限日", "未納税額"]
    utf8 = write_csv(tmp_path / "u.csv", [], header=header, encoding="utf-8")
    with pytest.raises(InvalidInput, match="cp932"):
        run(sqlite_db, utf8, layout="kokuho_csv")
    path = write_csv(tmp_path / "r.csv", [row("1"), row("2", 未納額="-1")])
    with pytest.raises(InvalidInput, match="差戻しファイル"):
        run(sqlite_db, path, rejects_path=tmp_path / "no" / "such" / "dir.csv")
    assert count(sqlite_db, Person) == 0 and count(sqlite_db, ImportBatch) == 0


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "cp932"])
def test_encodings_are_detected(tmp_path: Path, encoding: str) -> None:
    path = write_csv(tmp_path / "e.csv", [row("1", "髙橋　①子")], encoding=encoding)
    source = CsvSource(path, STANDARD)
    (only,) = list(source.records())
    assert only.values["name"] == "髙橋　①子" and only.problem is None


def test_mixed_encodings_reject_only_the_foreign_lines(sqlite_db: Database, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "mixed.csv", [row("1"), row("2", "佐藤　花子")])
    with path.open("ab") as stream:
        stream.write(",".join(row("3", "林　一").get(h, "") for h in HEADERS).encode() + b"\r\n")
    summary = run(sqlite_db, path)
    assert summary.persons_loaded == 2 and summary.rejected_by_reason == {"encoding_mismatch": 1}
    utf8 = write_csv(tmp_path / "u.csv", [row("1"), row("2", "佐藤　花子")], encoding="utf-8")
    with utf8.open("ab") as stream:
        stream.write("4,林　一,,,,,,,,,,,,,,2026-06-30,1".encode("cp932") + b"\r\n")
    assert [r.problem for r in records(utf8)] == [None, None, "encoding_mismatch"]
    garbage = write_csv(tmp_path / "g.csv", [row("1")], encoding="utf-8")
    with garbage.open("ab") as stream:
        stream.write(b"5,\x81\x20\xff,,,,,,,,,,,,,,2026-06-30,1\r\n")
    assert [r.problem for r in records(garbage)] == [None, "encoding_error"]


def test_quotes_newlines_tsv_and_truncation(tmp_path: Path) -> None:
    quoted = row("1", 住所='架空市1-2\r\n"メゾン, 架空" 101', 氏名="山田　太郎")
    path = write_csv(tmp_path / "q.csv", [quoted, row("2")])
    first, second = records(path)
    assert first.values["address"] == '架空市1-2\r\n"メゾン, 架空" 101'
    assert (first.line_no, second.line_no) == (2, 4)
    tsv = write_csv(tmp_path / "t.tsv", [row("1")], delimiter="\t")
    assert CsvSource(tsv, STANDARD).kind == "tsv" and records(tsv)[0].problem is None
    data = path.read_bytes()
    cut_in_quotes = tmp_path / "cut1.csv"
    cut_in_quotes.write_bytes(data[: data.index("メゾン".encode("cp932"))])
    assert [r.problem for r in records(cut_in_quotes)] == ["csv_syntax"]
    cut_in_char = tmp_path / "cut2.csv"
    cut_in_char.write_bytes(data.rstrip(b"\r\n")[:-1])
    assert [r.problem for r in records(cut_in_char)][-1] in ("column_count", "encoding_error")


def test_long_fields_and_formulas_end_in_the_rejects_file(
    sqlite_db: Database, tmp_path: Path
) -> None:
    rows = [
        row("１２３", "ＹＡＭＡＤＡ　ＴＡＲＯ", 未納額="１２，３４５円", 納期限="Ｒ８．６．３０"),
        row("2", '=HYPERLINK("http://evil")'),
        row("3", "林　一", 住所="長" * 200_000),
        row("4", "林　二", 未納額="2,000,000,000"),
    ]
    summary = run(sqlite_db, write_csv(tmp_path / "f.csv", rows))
    assert summary.persons_loaded == 1
    assert summary.rejected_by_reason == {
        "formula_like_name": 1, "csv_syntax": 1, "amount_too_large": 1,
    }  # fmt: skip
    rejects = read_rejects(Path(summary.rejects_file or ""))
    assert [r["取込エラー行"] for r in rejects] == ["3", "4", "5"]
    assert rejects[0]["氏名"].startswith("'=")
    assert list(rejects[0])[-4:] == list(REJECT_COLUMNS)
    fixed = tmp_path / "fixed.csv"
    with fixed.open("w", encoding="cp932", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\r\n")
        writer.writerow([*HEADERS, *REJECT_COLUMNS])
        writer.writerow([*rejects[0].values()][:-4] + ["", "", "", ""])
    text = fixed.read_text(encoding="cp932").replace('\'=HYPERLINK(""http://evil"")', "林　三")
    fixed.write_text(text, encoding="cp932")
    again = run(sqlite_db, fixed, campaign_id=summary.campaign_id)
    assert again.persons_loaded == 1 and set(REJECT_COLUMNS) <= set(again.unknown_columns)


def test_fixed_width_reader_counts_bytes_not_characters(tmp_path: Path) -> None:
    layout = load_layout("cobol_fixed")
    path = tmp_path / "f.dat"
    name = "髙橋　一郎".encode("cp932").ljust(30)
    path.write_bytes(b"0000000001" + name + b" " * 162 + b"\r\n\r\n")
    source = FixedWidthSource(path, layout)
    (only,) = list(source.records())
    assert only.values["name"] == "髙橋　一郎" and only.values["atena_no"] == "0000000001"
    assert source.blank_records == 1


def test_cli_import_prints_one_json_object(
    sqlite_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from dunning.cli_sync import sync_app
    from kernel.settings import get_settings

    monkeypatch.setenv("DUNNING_ENVIRONMENT", "demo")
    monkeypatch.setenv("DUNNING_DATABASE_URL", sqlite_db.url)
    monkeypatch.setenv("DUNNING_VAR_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    try:
        path = write_csv(tmp_path / "cli.csv", [row("1"), row("2", "佐藤　花子", 未納額="-1")])
        result = CliRunner().invoke(
            sync_app, ["import", str(path), "--as-of", "R8.11.24", "--json"]
        )
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        for key in ("rows_read", "rows_loaded", "rows_rejected", "rejected_by_reason",
                    "persons_loaded", "receivables_loaded", "persons_excluded", "phones",
                    "channels", "unknown_columns", "file_sha256", "duration_s"):  # fmt: skip
            assert key in data
        assert set(data["phones"]) >= {"MOBILE", "FIXED_LINE", "VOIP", "TOLL_FREE", "other",
                                       "invalid", "stale"}  # fmt: skip
        assert (data["rows_read"], data["rows_rejected"], data["as_of"]) == (2, 1, "2026-11-24")
        table = CliRunner().invoke(sync_app, ["import", str(path)])
        assert table.exit_code == 0 and "取込済み" in table.stdout
    finally:
        get_settings.cache_clear()
