"""The columnar load gives exactly the row pipeline's import: the same summary, the same
rejects file, the same decrypted database content per 宛名番号 (SQLite and PostgreSQL).

The row path is :func:`sync.importer.import_file`. The columnar path here reads with the row
parser (so only the load differs), converts the accepted rows with
:func:`sync.columnar_schema.table_from_parsed` and loads them with
:func:`sync.columnar_load.load_columnar` in a transaction shaped like the importer's.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from kernel import migrate
from kernel.db import Database
from kernel.models import Campaign, DoNotCall, Person, Phone, Receivable
from kernel.pii import KeyRing
from kernel.settings import SharingPolicy, SyncSettings
from sync import columnar_load, loader
from sync.cached_rows import CachedRowParser
from sync.columnar_load import load_columnar
from sync.columnar_schema import ColumnarCollected, table_from_parsed
from sync.exclusions import load_exclusions
from sync.importer import ImportSummary, _redactor, import_file
from sync.layouts import STANDARD, Layout
from sync.readers import CsvSource, sha256_file
from sync.rejects import write_rejects
from sync.rows import ParsedRow, RowContext, policy_allows, rejected_person_key
from sync.synthetic import write_export
from tests.integration.test_sync_import import row, write_csv

KEYRING = KeyRing("test-secret-columnar-load-0123456789abcdef")
AS_OF = date(2026, 11, 24)
SETTINGS = SyncSettings()
WITH_WORKER = SyncSettings(seal_in_worker=True)
VOLATILE = ("campaign_id", "import_id", "duration_s", "rejects_file", "file_sha256")


# ------------------------------------------------------------------ the columnar path


def collect_columnar(source: CsvSource, layout: Layout, sync: SyncSettings) -> ColumnarCollected:
    """The importer's sequential first pass (``collect_sequentially`` and ``take``) without
    the merger: accepted rows as a table, rejections by line, protected rejected persons."""
    parser = CachedRowParser(RowContext(layout, AS_OF, sync.phone_max_age_years))
    collected = ColumnarCollected(rows=table_from_parsed(()))
    accepted: list[ParsedRow] = []
    for record in source.records():
        collected.rows_read += 1
        if record.problem is None and not policy_allows(record, layout, sync.sharing_policy):
            collected.excluded_by_policy += 1
            continue
        result = parser.parse(record)
        if isinstance(result, list):
            collected.rejections[record.line_no] = result
            if (protected := rejected_person_key(record)) is not None:
                collected.dv_ids.add(protected)
        else:
            accepted.append(result)
            collected.field_issues.update(result.issues)
    collected.rows = table_from_parsed(accepted)
    collected.blank_records = source.blank_records
    return collected


def import_columnar(
    database: Database,
    path: Path,
    rejects_path: Path,
    *,
    sync: SyncSettings = SETTINGS,
    layout: Layout = STANDARD,
    campaign_id: int | None = None,
) -> ImportSummary:
    """``import_file`` with the columnar load (no "already imported" check: the batch gets
    a digest of its own, so the same file can go through both paths into one database)."""
    source = CsvSource(path, layout)
    summary = ImportSummary(source.name, layout.name, source.encoding, sha256_file(path))
    summary.as_of = AS_OF.isoformat()
    collected = collect_columnar(source, layout, sync)
    summary.rows_read, summary.blank_records = collected.rows_read, collected.blank_records
    if collected.excluded_by_policy:
        summary.rows_excluded["sharing_policy"] += collected.excluded_by_policy
    summary.field_issues.update(collected.field_issues)
    summary.unknown_columns = list(source.unknown_columns)
    batch_digest = hashlib.sha256(f"columnar:{summary.file_sha256}".encode()).hexdigest()
    with database.unit_of_work() as session:
        campaign, cipher = loader.open_campaign(
            session, KEYRING, campaign_id=campaign_id, name="columnar", as_of=AS_OF, actor="t"
        )
        batch = loader.start_batch(
            session,
            campaign_id=campaign.id,
            kind=source.kind,
            layout=layout.name,
            sha256=batch_digest,
            actor="t",
        )
        exclusions = loader.active_exclusions(session)
        dv_ids = load_columnar(
            session,
            collected,
            keyring=KEYRING,
            settings=sync,
            as_of=AS_OF,
            campaign_id=campaign.id,
            batch_id=batch.id,
            cipher=cipher,
            exclusions=exclusions,
            summary=summary,
        )
        summary.campaign_id, summary.import_id = campaign.id, batch.id
        summary.rows_rejected = len(collected.rejections)
        summary.rows_loaded = summary.rows_read - summary.rows_rejected
        summary.rejected_by_reason.update(r[0].code for r in collected.rejections.values())
        loader.finish_batch(session, batch, summary.to_dict(), "t")
        redact = _redactor(dv_ids, exclusions, loader.person_digest(KEYRING))
        if collected.rejections:
            write_rejects(source, collected.rejections, rejects_path, redact)
        else:
            rejects_path.unlink(missing_ok=True)
    return summary


# ------------------------------------------------------------------ comparing


def campaign_content(database: Database, campaign_id: int) -> dict[str, dict[str, Any]]:
    """Every person of the campaign by 宛名番号, decrypted: the record, the person's columns,
    the receivables (insertion order) and the phones (by position)."""
    with database.read_only() as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None and campaign.wrapped_data_key is not None
        cipher = KEYRING.cipher(campaign.wrapped_data_key, campaign.id)

        def notice(sealed: bytes | None) -> str | None:
            return None if sealed is None else cipher.open_text(sealed, "notice_number")

        receivables: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
        query = select(Receivable).where(Receivable.campaign_id == campaign_id)
        for r in session.scalars(query.order_by(Receivable.id)):
            receivables[r.person_id].append(
                (r.department, r.kind, r.fiscal_year, r.period, notice(r.sealed_notice_number),
                 r.due_date, r.unpaid_yen, r.late_fee_yen, r.demand_date, r.installment,
                 r.account_transfer)
            )  # fmt: skip
        phones: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
        query_phones = select(Phone).where(Phone.campaign_id == campaign_id)
        for p in session.scalars(query_phones.order_by(Phone.person_id, Phone.position)):
            phones[p.person_id].append(
                (p.position, cipher.open_text(p.sealed_number, "phone"), p.number_digest,
                 p.kind, p.verified_on, p.status, p.shared_household)
            )  # fmt: skip
        content: dict[str, dict[str, Any]] = {}
        for person in session.scalars(select(Person).where(Person.campaign_id == campaign_id)):
            record = cipher.open_record(person.sealed_pii, "pii")
            content[record["atena_no"]] = {
                "record": record,
                "ref_digest": person.ref_digest,
                "has_kana": person.has_kana,
                "language": person.language,
                "channel": person.channel,
                "status": person.status,
                "unpaid_total_yen": person.unpaid_total_yen,
                "receivables": receivables.pop(person.id, []),
                "phones": phones.pop(person.id, []),
            }
        assert not receivables and not phones  # nothing without its person
    return content


def summary_data(summary: ImportSummary) -> dict[str, Any]:
    return {k: v for k, v in summary.to_dict().items() if k not in VOLATILE}


def assert_same_import(
    database: Database,
    path: Path,
    tmp_path: Path,
    *,
    sync: SyncSettings = SETTINGS,
    row_campaign: int | None = None,
    columnar_campaign: int | None = None,
) -> ImportSummary:
    """Import ``path`` both ways into ``database``; both give the same result."""
    row_rejects, columnar_rejects = tmp_path / "row.rejects.csv", tmp_path / "col.rejects.csv"
    expected = import_file(
        database,
        KEYRING,
        sync.model_copy(update={"columnar_import": False}),  # the row pipeline
        path,
        as_of=AS_OF,
        campaign_id=row_campaign,
        rejects_path=row_rejects,
    )
    assert not expected.already_imported
    actual = import_columnar(
        database, path, columnar_rejects, sync=sync, campaign_id=columnar_campaign
    )
    assert summary_data(actual) == summary_data(expected)
    assert expected.campaign_id is not None and actual.campaign_id is not None
    row_content = campaign_content(database, expected.campaign_id)
    columnar_content = campaign_content(database, actual.campaign_id)
    assert columnar_content.keys() == row_content.keys()
    for atena, content in row_content.items():
        assert columnar_content[atena] == content, atena
    assert columnar_rejects.exists() == row_rejects.exists()
    if row_rejects.exists():
        assert columnar_rejects.read_bytes() == row_rejects.read_bytes()
    return expected


# ------------------------------------------------------------------ both backends


@pytest.mark.parametrize("seed", [3, 11, 2026])
def test_synthetic_exports_load_the_same(database: Database, tmp_path: Path, seed: int) -> None:
    path = tmp_path / "export.csv"
    write_export(path, persons=400, seed=seed, as_of=AS_OF)
    summary = assert_same_import(database, path, tmp_path)
    assert summary.persons_loaded > 0 and summary.rows_rejected > 0


def test_sealing_on_a_worker_process_in_chunks(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(columnar_load, "WORKER_MIN_ROWS", 0)
    monkeypatch.setattr(columnar_load, "CHUNK_PERSONS", 97)
    path = tmp_path / "export.csv"
    write_export(path, persons=600, seed=7, as_of=AS_OF)
    summary = assert_same_import(database, path, tmp_path, sync=WITH_WORKER)
    assert summary.persons_loaded > 3 * 97


def test_protection_exclusions_do_not_call_and_households(
    database: Database, tmp_path: Path
) -> None:
    listed = tmp_path / "exclusions.csv"
    listed.write_text(
        "# 基準日時: 2026-11-24T06:00+09:00\r\n宛名番号,理由\r\n77777,支援措置\r\n",
        encoding="cp932",
    )
    load_exclusions(database, KEYRING, listed)
    with database.unit_of_work() as session:
        digest = KEYRING.digest("phone", "+81666667777")
        session.add(DoNotCall(number_digest=digest, reason="opted_out", source="test"))
    rows = [
        row("1000"),
        row("0000077777", "除外リスト人物", 電話番号1="03-9999-0001"),
        row("0000088888", "秘匿花子", 支援措置="1", 住所="架空市秘匿町1-2-3"),
        row("0000088888", "秘匿花子", 期別="2", 納期限=""),  # rejected row of the same person
        row("99", "重複　太郎"),
        row("099", "重複　太郎", 期別="1", 支援措置="1"),  # a duplicate item, flagged
        row("1", 氏名カナ="ﾔﾏﾀﾞ ﾀﾛｳ", 電話番号1="０９０－１１１１－２２２２", 通知書番号="N-1"),
        row("1", 期別="2", 電話番号1="09011112222", 電話番号2="0180-99-1234"),
        row("2", "山田　花子", 氏名カナ="", 電話番号1="03-3333-4444"),
        row("3", "山田　次郎", 電話番号1="03-3333-4444", 電話確認日="2019-01-01"),
        row("4", "佐藤　一郎", 電話番号1="0570-000-111"),
        row("5", "鈴木　一郎", 電話番号1="06-6666-7777"),
        row("6", "鈴木　二郎", 電話番号1="06-6666-7777", 電話番号2="03-3333-4444"),
        row("7", "鈴木　三郎", 電話番号1="06-6666-7777", 納期限="2026-12-31"),
        row("8", "鈴木　四郎", 電話番号1="06-6666-7777", 年度="令和6年度", 未納額="200,000"),
        row("9", "分納　中", 分納="履行中"),
        row("10", "停止　中", 催告停止="1"),
        row("11", "名前　違い"),
        row("11", "名前違い", 期別="2"),  # the same name without the space
        row("11", "名前　別人", 期別="3"),  # conflict: every row of 11 is rejected
        row("12", "生年　違い", 生年月日=""),
        row("12", "生年　違い", 期別="2", 生年月日="1980-01-01"),
        row("12", "生年　違い", 期別="3", 生年月日="1980-01-02"),
        row("13", "ゼロ　円", 未納額="0"),
        row("14", "古い　年度", 年度="令和5年度", 未納額="50,000", 電話確認日="令和7年1月1日"),
        row("14", "古い　年度", 年度="令和6年度", 未納額="49,999", 電話確認日="令和8年1月1日"),
        row("15", "英語　話者", 言語="英語", 住所='架空市"引用"町\\1'),
    ]
    summary = assert_same_import(database, write_csv(tmp_path / "p.csv", rows), tmp_path)
    assert summary.persons_excluded["dv_protected"] == 1
    assert summary.persons_excluded["exclusion_list"] == 1
    assert summary.rejected_by_reason["person_conflict"] == 6
    assert summary.phones_do_not_call > 0 and summary.shared_household_phones > 0


def test_already_in_campaign_and_sharing_policy(database: Database, tmp_path: Path) -> None:
    policy = SyncSettings(sharing_policy=SharingPolicy(excluded_kinds=["特別徴収分"]))
    first = write_csv(tmp_path / "first.csv", [row("1"), row("2", "佐藤　花子")])
    campaigns = [import_file(database, KEYRING, SETTINGS, first, as_of=AS_OF).campaign_id]
    campaigns.append(import_columnar(database, first, tmp_path / "first.rejects.csv").campaign_id)
    second = [
        row("0002", "佐藤　花子", 期別="3"),
        row("2", "佐藤　花子", 期別="4"),
        row("3", "林　一"),
        row("3", "林　一", 債権種別="特別徴収分", 期別="2"),
    ]
    summary = assert_same_import(
        database,
        write_csv(tmp_path / "second.csv", second),
        tmp_path,
        sync=policy,
        row_campaign=campaigns[0],
        columnar_campaign=campaigns[1],
    )
    assert summary.rejected_by_reason == {"already_in_campaign": 2}
    assert summary.rows_excluded == {"sharing_policy": 1}


def test_an_export_without_accepted_rows(database: Database, tmp_path: Path) -> None:
    rows = [row("1", 納期限=""), row("2", 未納額="")]
    summary = assert_same_import(database, write_csv(tmp_path / "bad.csv", rows), tmp_path)
    assert summary.persons_loaded == 0 and summary.rows_rejected == 2
    header_only = assert_same_import(database, write_csv(tmp_path / "none.csv", []), tmp_path)
    assert header_only.rows_read == 0


# ------------------------------------------------------------------ random rows (SQLite)

_cells = st.sampled_from(["", "0", "1", "令和8年6月30日", "2026-12-31", "R6.5.31", "12,300"])
_phones = st.sampled_from(["", "090-1111-2222", "03-3333-4444", "0570-000-111", "12", "０９０"])
_random_row = st.fixed_dictionaries(
    {
        "宛名番号": st.sampled_from(["1", "01", "2", "3", "0", "00"]),
        "氏名": st.sampled_from(["山田　太郎", "山田太郎", "佐藤　花子"]),
        "期別": st.sampled_from(["1", "2", "01"]),
        "納期限": st.sampled_from(["令和8年6月30日", "2026-12-31", ""]),
        "未納額": st.sampled_from(["12,300", "0", "150,000", "x"]),
    },
    optional={
        "氏名カナ": st.sampled_from(["", "ヤマダ　タロウ", "ｻﾄｳ"]),
        "生年月日": st.sampled_from(["", "昭和50年4月1日", "1980-01-02"]),
        "住所": st.sampled_from(["", "架空市1-2", "架空市3-4"]),
        "電話番号1": _phones,
        "電話番号2": _phones,
        "電話確認日": st.sampled_from(["", "2019-01-01", "令和7年1月1日", "令和8年1月1日"]),
        "年度": st.sampled_from(["令和8年度", "令和5年度", ""]),
        "分納": st.sampled_from(["", "履行中", "不履行"]),
        "催告停止": _cells,
        "支援措置": _cells,
        "通知書番号": st.sampled_from(["", "N-1", "N-2"]),
    },
)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_random_row, min_size=1, max_size=10))
def test_random_rows_load_the_same(tmp_path: Path, rows: list[dict[str, str]]) -> None:
    folder = tmp_path / hashlib.sha256(repr(rows).encode()).hexdigest()[:16]
    folder.mkdir(exist_ok=True)
    database = Database(f"sqlite:///{folder / 'db.sqlite3'}")
    migrate.upgrade(database)
    try:
        assert_same_import(database, write_csv(folder / "r.csv", rows), folder)
    finally:
        database.dispose()


def _dying_pool(**options: Any) -> ProcessPoolExecutor:
    """A real pool whose worker process exits as soon as it starts."""
    return ProcessPoolExecutor(initializer=os._exit, initargs=(3,), **options)


def test_a_worker_that_dies_leaves_the_work_to_the_importer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(columnar_load, "WORKER_MIN_ROWS", 0)
    monkeypatch.setattr(columnar_load, "ProcessPoolExecutor", _dying_pool)
    database = Database(f"sqlite:///{tmp_path / 'dying.sqlite3'}")
    migrate.upgrade(database)
    path = tmp_path / "export.csv"
    write_export(path, persons=120, seed=4, as_of=AS_OF)
    try:
        assert assert_same_import(database, path, tmp_path, sync=WITH_WORKER).persons_loaded > 0
    finally:
        database.dispose()
    assert "no worker process for the load's cryptography" in caplog.text


def test_sqlite_settings_are_restored_after_the_load(tmp_path: Path) -> None:
    """The load widens SQLite's page cache and skips its enum CHECKs while it inserts enum
    members: both are back as they were afterwards, on the same connection."""
    database = Database(f"sqlite:///{tmp_path / 'pragmas.sqlite3'}")
    migrate.upgrade(database)
    path = write_csv(tmp_path / "a.csv", [row("1"), row("2", "佐藤　花子")])
    source = CsvSource(path, STANDARD)
    collected = collect_columnar(source, STANDARD, SETTINGS)
    summary = ImportSummary(source.name, STANDARD.name, source.encoding)
    try:
        with database.unit_of_work() as session:
            connection = session.connection()

            def pragma(name: str) -> int:
                return int(connection.exec_driver_sql(f"PRAGMA {name}").scalar_one())

            before = pragma("cache_size"), pragma("ignore_check_constraints")
            campaign, cipher = loader.open_campaign(
                session, KEYRING, campaign_id=None, name="p", as_of=AS_OF, actor="t"
            )
            batch = loader.start_batch(
                session, campaign_id=campaign.id, kind="csv", layout="standard",
                sha256="0" * 64, actor="t",
            )  # fmt: skip
            load_columnar(
                session,
                collected,
                keyring=KEYRING,
                settings=SETTINGS,
                as_of=AS_OF,
                campaign_id=campaign.id,
                batch_id=batch.id,
                cipher=cipher,
                exclusions=set(),
                summary=summary,
            )
            assert summary.persons_loaded == 2
            assert (pragma("cache_size"), pragma("ignore_check_constraints")) == before == (
                before[0], 0,
            )  # fmt: skip
    finally:
        database.dispose()
