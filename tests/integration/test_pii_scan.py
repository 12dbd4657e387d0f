"""The byte-level proof of the wipe (R-11).

A synthetic campaign is imported, worked (attempts with sealed notes, a promise, a hand-off,
a callback, IVR session state naming the resident, TTS and letter files with the names),
exported and wiped while the application logs to a file at DEBUG. Then every byte the
platform wrote is searched for the campaign's names, readings, phone numbers (E.164 and
national forms), birth dates (Gregorian and 和暦 forms) and addresses, in UTF-8, UTF-16 and
CP932, and for the sealed ciphertexts themselves:

* SQLite: the database file and its ``-wal``/``-shm``;
* PostgreSQL: every row of every table (via SQL) and, where the ``pageinspect`` extension can
  be created, every raw heap page (dead tuples included);
* the coordination store: every key and value (LocalCoordination and Redis);
* ``var/`` (TTS, letters, exports) and the log file.

Before the wipe the same scan must find the campaign's data (positive controls), and a
planted value must make the scanner fail, so the proof cannot pass vacuously.
"""

from __future__ import annotations

import csv
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select, text
from sqlalchemy.engine import Connection

from dialer.wipe import wipe_campaign
from kernel.coordination import Coordination, LocalCoordination
from kernel.db import Database
from kernel.models import (
    Attempt,
    AttemptStatus,
    CallbackRequest,
    Campaign,
    CampaignStatus,
    Channel,
    HandOff,
    Person,
    Receivable,
)
from kernel.pii import KeyRing, PiiCipher
from kernel.redis_coordination import RedisCoordination
from kernel.settings import SyncSettings
from sync.importer import import_file
from sync.results import NOTES_FIELD, export_results
from sync.synthetic import write_export
from tests.pii_scan import (
    Finding,
    Needle,
    NeedleSet,
    PersonalDataFound,
    assert_clean,
    blob_needles,
    date_spellings,
    files_under,
    name_spellings,
    scan_bytes,
    scan_items,
    scan_sqlite,
    scan_tree,
    text_needles,
)

KEYRING = KeyRing("test-secret-pii-scan-0123456789abcdef0123456789")
AS_OF = date(2026, 11, 24)
PERSONS = 120
SEED = 17
CALLED_AT = datetime(2026, 11, 25, 1, 30, tzinfo=UTC)
Dump = Callable[[], list[tuple[str, str | bytes]]]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def app_log(tmp_path: Path) -> Iterator[Path]:
    """Everything the application logs, at DEBUG, into a file (as a deployment would), plus
    SQLAlchemy's statements with their parameters."""
    path = tmp_path / "logs" / "dunning.log"
    path.parent.mkdir(parents=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    sql = logging.getLogger("sqlalchemy.engine")  # statements and parameters too: stricter
    previous = root.level, sql.level
    root.setLevel(logging.DEBUG)
    sql.setLevel(logging.INFO)
    root.addHandler(handler)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(previous[0])
        sql.setLevel(previous[1])


def _local_dump(store: LocalCoordination) -> Dump:
    # White-box: the in-process store has no "list everything" call, and the scan must see
    # every entry, expired ones included.
    return lambda: [(key, value) for key, (value, _) in store._state.items()]


def _redis_dump(client: redis.Redis, namespace: str) -> Dump:
    """Every key of the namespace with its value serialized by Redis itself (DUMP), so any
    data type is scanned byte for byte."""

    def dump() -> list[tuple[str, str | bytes]]:
        items: list[tuple[str, str | bytes]] = []
        for key in client.scan_iter(match=f"{namespace}:*", count=500):
            value = client.dump(key)
            assert value is None or isinstance(value, bytes)
            items.append((key.decode("utf-8", "replace"), value or b""))
        return items

    return dump


@pytest.fixture(params=["local", "redis"])
def coordination(request: pytest.FixtureRequest) -> Iterator[tuple[Coordination, Dump]]:
    if request.param == "local":
        store = LocalCoordination()
        yield store, _local_dump(store)
        return
    url = request.getfixturevalue("redis_url")
    namespace = f"pii-scan-{uuid.uuid4().hex[:12]}"
    shared = RedisCoordination(url, namespace)
    client = redis.Redis.from_url(url)
    try:
        yield shared, _redis_dump(client, namespace)
    finally:
        for key in client.scan_iter(match=f"{namespace}:*"):
            client.delete(key)
        client.close()
        shared.close()


# --------------------------------------------------------------------------- the campaign


@dataclass
class Worked:
    campaign_id: int
    needles: list[Needle]  # plaintext personal values
    sealed: list[Needle]  # the campaign's ciphertexts
    people: list[dict[str, Any]]  # decrypted person records with their phones


def _raw_needles(export: Path) -> list[Needle]:
    """The values as the arrears system wrote them (every row, rejected ones included)."""
    needles = NeedleSet.empty()
    with export.open(encoding="cp932", newline="") as stream:
        for row in csv.DictReader(stream):
            if row["氏名"]:
                needles.add(text_needles("raw_name", name_spellings(row["氏名"])))
            for column in ("氏名カナ", "電話番号1", "電話番号2", "生年月日", "住所"):
                if row[column]:
                    needles.add(text_needles(f"raw_{column}", [row[column]]))
    return needles.needles


def _people(database: Database, campaign_id: int) -> tuple[list[dict[str, Any]], list[bytes]]:
    with database.read_only() as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None and campaign.wrapped_data_key is not None
        cipher = KEYRING.cipher(campaign.wrapped_data_key, campaign_id)
        people, blobs = [], []
        for person in session.scalars(select(Person).where(Person.campaign_id == campaign_id)):
            record = cipher.open_record(person.sealed_pii, "pii")
            phones = [cipher.open_text(p.sealed_number, "phone") for p in person.phones]
            people.append(record | {"id": person.id, "phones": phones})
            blobs += [person.sealed_pii] + [p.sealed_number for p in person.phones]
        blobs += [
            n
            for n in session.scalars(
                select(Receivable.sealed_notice_number).where(Receivable.campaign_id == campaign_id)
            )
            if n
        ]
    return people, blobs


def _note(person: dict[str, Any]) -> str:
    return f"{person['name']}様本人と通話 生年月日{person.get('birth_date')} 来週納付"


def _work(
    database: Database, campaign_id: int, people: list[dict[str, Any]]
) -> tuple[list[bytes], PiiCipher]:
    """Attempts with sealed notes naming the resident, a promise, a hand-off, a callback."""
    sealed = []
    with database.unit_of_work() as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None and campaign.wrapped_data_key is not None
        cipher = KEYRING.cipher(campaign.wrapped_data_key, campaign_id)
        for index, person in enumerate(people):
            note = cipher.seal_text(_note(person), NOTES_FIELD)
            sealed.append(note)
            attempt = Attempt(
                campaign_id=campaign_id, person_id=person["id"], channel=Channel.OPERATOR,
                status=AttemptStatus.COMPLETED, scheduled_at=CALLED_AT, started_at=CALLED_AT,
                answered_at=CALLED_AT, idempotency_key=f"scan-{campaign_id}-{index}",
                outcome_code="promise", promise_date=date(2026, 12, 10),
                promise_amount_yen=3000 + index, sealed_notes=note,
            )  # fmt: skip
            session.add(attempt)
            if index % 40 == 0:
                session.flush()
                handoff_note = cipher.seal_text(_note(person), "handoff")
                sealed.append(handoff_note)
                session.add_all([
                    HandOff(campaign_id=campaign_id, person_id=person["id"],
                            attempt_id=attempt.id, reason="installment",
                            sealed_notes=handoff_note),
                    CallbackRequest(campaign_id=campaign_id, person_id=person["id"],
                                    attempt_id=attempt.id, time_band="evening",
                                    due_at=CALLED_AT),
                ])  # fmt: skip
        campaign.status = CampaignStatus.COMPLETED
    return sealed, cipher


def _outside(
    coordination: Coordination, var_dir: Path, campaign_id: int, people: list[dict[str, Any]]
) -> None:
    """IVR state, TTS prompts and letters, each naming residents (as the real ones would)."""
    tts = var_dir / "tts" / f"campaign-{campaign_id}"
    letters = var_dir / "letters" / f"campaign-{campaign_id}"
    tts.mkdir(parents=True)
    letters.mkdir(parents=True)
    for index, person in enumerate(people[:30]):
        kana = person.get("name_kana") or person["name"]
        state = {"node": "confirm", "name_kana": kana, "to": (person["phones"] or [""])[0]}
        coordination.put_state(
            f"ivr:{campaign_id}:CA{index:04d}", json.dumps(state, ensure_ascii=False), 3600
        )
        prompt = f"こちらは架空市納税課です。{kana}様でいらっしゃいますか。"
        (tts / f"prompt-{index}.wav").write_bytes(b"RIFF\0\0\0\0WAVE" + prompt.encode("utf-16-le"))
        letter = f"〒000-0000\n{person.get('address', '')}\n{person['name']} 様\n催告書\n"
        encoding = "cp932" if index % 2 else "utf-8"
        (letters / f"letter-{index}.txt").write_bytes(letter.encode(encoding, "replace"))


def _quiet_autovacuum(database: Database) -> None:
    """PostgreSQL: an automatic ANALYZE running in this database holds a snapshot that keeps
    just-deleted tuples alive through the wipe's VACUUM, which would make the page checks
    depend on timing; switch it off for the test's tables."""
    if database.engine.dialect.name != "postgresql":
        return
    with database.engine.begin() as connection:
        for table in _public_tables(connection):
            connection.execute(
                text(f'ALTER TABLE "{table}" SET (autovacuum_enabled = off, '
                     "toast.autovacuum_enabled = off)")
            )  # fmt: skip


def work_campaign(
    database: Database, coordination: Coordination, tmp_path: Path, var_dir: Path
) -> Worked:
    _quiet_autovacuum(database)
    export = tmp_path / "in" / "arrears.csv"
    export.parent.mkdir(parents=True)
    write_export(export, persons=PERSONS, seed=SEED, as_of=AS_OF)
    summary = import_file(database, KEYRING, SyncSettings(), export, as_of=AS_OF)
    assert summary.campaign_id is not None and summary.persons_loaded > PERSONS // 2
    campaign_id = summary.campaign_id
    people, blobs = _people(database, campaign_id)
    notes, _ = _work(database, campaign_id, people)
    _outside(coordination, var_dir, campaign_id, people)
    out = var_dir / "exports" / f"results_{campaign_id}_20261201-0900.csv"
    export_results(database, KEYRING, campaign_id, out, actor="staff.tanaka")
    needles = NeedleSet.empty()
    for person in people:
        needles.add_person(person, person["phones"])
    needles.add(_raw_needles(export))
    return Worked(campaign_id, needles.unique(), blob_needles("sealed", blobs + notes), people)


# --------------------------------------------------------------------------- PostgreSQL


def _cell_bytes(value: Any) -> bytes:
    if isinstance(value, bytes | memoryview):
        return bytes(value)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False).encode("utf-8")
    return str(value).encode("utf-8")


def _public_tables(connection: Connection) -> list[str]:
    return list(
        connection.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        ).scalars()
    )


def scan_postgres_rows(database: Database, needles: list[Needle]) -> list[Finding]:
    findings = []
    with database.engine.connect() as connection:
        for table in _public_tables(connection):
            for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                data = b"\x00".join(_cell_bytes(v) for v in row if v is not None)
                findings += scan_bytes(f"postgres:{table}", data, needles)
    return findings


def scan_postgres_pages(database: Database, needles: list[Needle]) -> list[Finding] | None:
    """Every raw heap page (and TOAST page) of every table, or ``None`` without pageinspect."""
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        try:
            c.execute(text("CREATE EXTENSION IF NOT EXISTS pageinspect"))
        except Exception:  # noqa: BLE001 - not a superuser, or the extension is not installed
            return None
        relations = c.execute(
            text(
                "SELECT c.oid::regclass::text, c.reltoastrelid::regclass::text FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND c.relkind = 'r'"
            )
        ).all()
        findings: list[Finding] = []
        for table, toast in relations:
            for relation in [table] + ([toast] if toast and toast != "-" else []):
                blocks = c.execute(
                    text("SELECT pg_relation_size(CAST(:r AS regclass)) / 8192"), {"r": relation}
                ).scalar_one()
                for block in range(int(blocks)):
                    page = c.execute(
                        text("SELECT get_raw_page(:r, :b)"), {"r": relation, "b": block}
                    ).scalar_one()
                    findings += scan_bytes(f"page:{relation}#{block}", bytes(page), needles)
        return findings


# --------------------------------------------------------------------------- the proof


def _sqlite_path(database: Database) -> Path | None:
    if database.engine.dialect.name != "sqlite":
        return None
    assert database.engine.url.database
    return Path(database.engine.url.database)


def _check_postgres_pages(database: Database, worked: Worked, storage: dict[str, Any]) -> None:
    """Raw pages never hold plaintext. Plain VACUUM leaves the bytes of dead tuples in the
    free space of pages still in use, so ciphertext (under the destroyed key) may remain in
    the pages of tables whose rows survive the wipe; VACUUM FULL leaves none at all. A
    transaction left open anywhere on the server keeps just-deleted rows until a later
    vacuum: the certificate reports how many (``dead_rows_kept``), and then ciphertext may
    remain in any table the wipe touched."""
    pages = scan_postgres_pages(database, worked.needles + worked.sealed)
    if pages is None:
        return  # pageinspect unavailable: the SQL scan above is what can be checked
    assert_clean([f for f in pages if f.kind != "sealed"], context="postgres pages")
    residue = {f.where.removeprefix("page:").split("#")[0] for f in pages}
    kept = storage["dead_rows_kept"]
    if kept is None or kept > 0:
        assert residue <= set(storage["tables"]), residue
    elif storage["full"]:
        assert_clean(pages, context="postgres pages after VACUUM FULL")
    else:
        assert residue <= {"attempts", "handoffs"}, residue


def test_nothing_personal_survives_the_wipe(
    database: Database,
    coordination: tuple[Coordination, Dump],
    app_log: Path,
    tmp_path: Path,
) -> None:
    store, dump = coordination
    var_dir = tmp_path / "var"
    worked = work_campaign(database, store, tmp_path, var_dir)
    everything = worked.needles + worked.sealed
    sqlite_path = _sqlite_path(database)

    # positive controls: before the wipe the scanner sees the campaign everywhere it is
    kinds = {f.kind for f in scan_tree(var_dir, worked.needles)}
    assert {"name", "kana", "address"} <= kinds
    assert {f.kind for f in scan_items("coordination", dump(), worked.needles)} >= {"phone"}
    if sqlite_path is not None:
        assert {f.kind for f in scan_sqlite(sqlite_path, worked.sealed)} == {"sealed"}
    else:
        assert scan_postgres_rows(database, worked.sealed)
        pages_before = scan_postgres_pages(database, worked.sealed)
        assert pages_before is None or {f.kind for f in pages_before} == {"sealed"}

    result = wipe_campaign(database, store, var_dir, worked.campaign_id, actor="staff.tanaka")
    assert result.body["erased"]["persons"] == len(worked.people)

    assert_clean(scan_items("coordination", dump(), worked.needles), context="coordination")
    assert_clean(scan_tree(var_dir, everything), context="var")
    assert_clean(scan_tree(app_log.parent, everything), context="logs")
    if sqlite_path is not None:
        assert_clean(scan_sqlite(sqlite_path, everything), context="sqlite files")
        wal = sqlite_path.with_name(sqlite_path.name + "-wal")
        assert not wal.exists() or wal.stat().st_size == 0
    else:
        assert_clean(scan_postgres_rows(database, everything), context="postgres rows")
        _check_postgres_pages(database, worked, result.body["storage"])
    # the log scan read something real: the application logged SQL and the wipe at DEBUG
    logged = app_log.read_text(encoding="utf-8")
    assert "DELETE FROM persons" in logged and "wiped, certificate" in logged


# --------------------------------------------------------------------------- negative controls


@pytest.fixture
def pg_database(postgres_database: str) -> Iterator[Database]:
    """PostgreSQL only (SQLite's VACUUM always rebuilds the whole file), migrated afresh."""
    from kernel import migrate
    from kernel.models import Base

    database = Database(postgres_database)
    with database.engine.begin() as connection:
        Base.metadata.drop_all(connection)
        connection.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    migrate.upgrade(database)
    try:
        yield database
    finally:
        database.dispose()


@pytest.mark.postgres
def test_vacuum_full_leaves_not_even_ciphertext_in_postgres_pages(
    pg_database: Database, tmp_path: Path, app_log: Path
) -> None:
    database = pg_database
    store = LocalCoordination()
    var_dir = tmp_path / "var"
    worked = work_campaign(database, store, tmp_path, var_dir)
    result = wipe_campaign(
        database, store, var_dir, worked.campaign_id, actor="cli", vacuum_full=True
    )
    assert result.body["storage"]["full"] is True
    _check_postgres_pages(database, worked, result.body["storage"])


def _birth(worked: Worked) -> date:
    return next(
        date.fromisoformat(str(p["birth_date"])) for p in worked.people if p.get("birth_date")
    )


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16-le", "utf-16-be", "cp932"])
def test_the_scanner_finds_a_planted_name_in_any_encoding(
    database: Database, tmp_path: Path, app_log: Path, encoding: str
) -> None:
    store = LocalCoordination()
    var_dir = tmp_path / "var"
    worked = work_campaign(database, store, tmp_path, var_dir)
    wipe_campaign(database, store, var_dir, worked.campaign_id, actor="cli")
    name = next(p["name"] for p in worked.people if len(p["name"]) >= 4)
    planted = var_dir / "stray" / "copy.bin"
    planted.parent.mkdir(parents=True)
    planted.write_bytes(b"\x00junk" + name.encode(encoding) + b"junk")
    with pytest.raises(PersonalDataFound, match=f"name \\({encoding}\\)"):
        assert_clean(scan_tree(var_dir, worked.needles))


def test_the_scanner_finds_a_logged_birth_date_and_a_value_left_in_the_database(
    database: Database, tmp_path: Path, app_log: Path
) -> None:
    store = LocalCoordination()
    var_dir = tmp_path / "var"
    worked = work_campaign(database, store, tmp_path, var_dir)
    wipe_campaign(database, store, var_dir, worked.campaign_id, actor="cli")
    birth = _birth(worked)
    wareki = next(s for s in date_spellings(birth) if s[0] in "令平昭大明")
    logging.getLogger("dunning.careless").warning("resident born %s", wareki)
    with pytest.raises(PersonalDataFound, match="birth_date"):
        assert_clean(scan_tree(app_log.parent, worked.needles))
    phone = next(p["phones"][0] for p in worked.people if p["phones"])
    with database.unit_of_work() as session:
        campaign = session.get(Campaign, worked.campaign_id)
        assert campaign is not None
        campaign.name = f"連絡先 {phone}"  # a careless campaign name holding a number
    sqlite_path = _sqlite_path(database)
    findings = (
        scan_sqlite(sqlite_path, worked.needles)
        if sqlite_path is not None
        else scan_postgres_rows(database, worked.needles)
    )
    with pytest.raises(PersonalDataFound, match="phone"):
        assert_clean(findings)


def test_needles_cover_every_file_kind_the_platform_writes(tmp_path: Path) -> None:
    """files_under sees nested files and ignores nothing by extension."""
    for name in ("a/b/c.wav", "d.pdf", "e"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    assert len(list(files_under(tmp_path))) == 3
