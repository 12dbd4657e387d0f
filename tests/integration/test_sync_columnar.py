"""The columnar import gives exactly what the row pipeline (the reference) gives.

The same file is imported twice: with ``columnar_import`` off into a fresh SQLite database (the
row pipeline), and with it on into the backend under test. The summaries, the rejects files
(byte for byte) and the decrypted contents of the databases must be equal, and the columnar
pipeline must really have been used (it declines files it cannot read exactly, which would make
this test vacuous).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from kernel import migrate
from kernel.db import Database
from kernel.models import Campaign, DoNotCall, Person
from kernel.pii import KeyRing
from kernel.settings import SharingPolicy, SyncSettings
from sync import columnar_read, normalize
from sync.exclusions import load_exclusions
from sync.importer import ImportSummary, import_file
from sync.layouts import STANDARD
from sync.readers import CsvSource
from sync.synthetic import write_export

KEYRING = KeyRing("test-secret-sync-columnar-0123456789abcdef")
AS_OF = date(2026, 11, 24)
VOLATILE = ("duration_s", "rejects_file")


@pytest.fixture
def reference_db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'reference.sqlite3'}")
    migrate.upgrade(database)
    yield database
    database.dispose()


@pytest.fixture
def used_columnar(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Records, per import, whether the columnar first pass accepted the file."""
    outcomes: list[bool] = []
    original = columnar_read.collect_columnar

    def spy(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        outcomes.append(result is not None)
        return result

    monkeypatch.setattr(columnar_read, "collect_columnar", spy)
    return outcomes


def _import(database: Database, path: Path, rejects: Path, *, columnar: bool, **kw: Any) -> Any:
    settings = SyncSettings(columnar_import=columnar, **kw)
    return import_file(
        database, KEYRING, settings, path, as_of=AS_OF, actor="test", rejects_path=rejects
    )


def _summary(summary: ImportSummary) -> dict[str, Any]:
    data = summary.to_dict()
    for key in VOLATILE:
        data.pop(key)
    return data


def _person(cipher: Any, person: Person) -> tuple[Any, ...]:
    def notice(sealed: bytes | None) -> str | None:
        return cipher.open_text(sealed, "notice_number") if sealed else None

    receivables = sorted(
        (
            r.department,
            r.kind,
            r.fiscal_year,
            r.period,
            notice(r.sealed_notice_number),
            r.due_date,
            r.unpaid_yen,
            r.late_fee_yen,
            r.demand_date,
            r.installment,
            r.account_transfer,
        )  # fmt: skip
        for r in person.receivables
    )
    phones = sorted(
        (
            p.position,
            cipher.open_text(p.sealed_number, "phone"),
            p.number_digest,
            p.kind,
            p.verified_on,
            p.status,
            p.shared_household,
        )  # fmt: skip
        for p in person.phones
    )
    return (
        cipher.open_record(person.sealed_pii, "pii"), person.ref_digest, person.has_kana,
        person.language, person.channel, person.unpaid_total_yen, receivables, phones,
    )  # fmt: skip


def content(database: Database) -> dict[str, tuple[Any, ...]]:
    """Every person of the (one) campaign, decrypted, by 宛名番号."""
    found: dict[str, tuple[Any, ...]] = {}
    with database.read_only() as session:
        for campaign in session.scalars(select(Campaign)):
            assert campaign.wrapped_data_key is not None
            cipher = KEYRING.cipher(campaign.wrapped_data_key, campaign.id)
            persons = session.scalars(select(Person).where(Person.campaign_id == campaign.id))
            for person in persons:
                values = _person(cipher, person)
                found[values[0]["atena_no"]] = values
    return found


def assert_same_import(
    reference_db: Database,
    database: Database,
    path: Path,
    tmp_path: Path,
    used_columnar: list[bool],
    **settings: Any,
) -> ImportSummary:
    expected = _import(reference_db, path, tmp_path / "row.rejects.csv", columnar=False, **settings)
    got = _import(database, path, tmp_path / "col.rejects.csv", columnar=True, **settings)
    assert used_columnar == [True], "the columnar first pass declined the file"
    assert _summary(got) == _summary(expected)
    if expected.rejects_file:
        row_rejects = (tmp_path / "row.rejects.csv").read_bytes()
        assert (tmp_path / "col.rejects.csv").read_bytes() == row_rejects
    else:
        assert got.rejects_file is None
    assert content(database) == content(reference_db)
    return got


@pytest.mark.parametrize("seed", [1, 2])
def test_synthetic_exports_import_identically(
    reference_db: Database,
    database: Database,
    tmp_path: Path,
    used_columnar: list[bool],
    seed: int,
) -> None:
    path = tmp_path / "export.csv"
    write_export(path, 1500, seed=seed, as_of=AS_OF)
    got = assert_same_import(reference_db, database, path, tmp_path, used_columnar)
    assert got.persons_loaded > 500 and got.rows_rejected > 0
    assert sum(got.persons_excluded.values()) > 0


def test_exclusions_do_not_call_and_sharing_policy_act_the_same(
    reference_db: Database, database: Database, tmp_path: Path, used_columnar: list[bool]
) -> None:
    path = tmp_path / "export.csv"
    write_export(path, 600, seed=3, as_of=AS_OF)
    records = list(CsvSource(path, STANDARD).records())[:40]
    atenas = [record.values["atena_no"] for record in records[::8]]
    numbers = {_e164(record.values.get("phone1", "")) for record in records[1::5]} - {None}
    excluded = tmp_path / "exclusions.csv"
    lines = "".join(f"{atena},係争中\r\n" for atena in atenas)
    excluded.write_text("宛名番号,理由\r\n" + lines, "cp932")
    for target in (reference_db, database):
        load_exclusions(target, KEYRING, excluded, as_of=datetime.now(UTC), actor="test")
        with target.unit_of_work() as session:
            for number in numbers:
                digest = KEYRING.digest("phone", str(number))
                session.add(DoNotCall(number_digest=digest, reason="test", source="test"))
    policy = SharingPolicy(excluded_kinds=["国民健康保険税"])
    got = assert_same_import(
        reference_db, database, path, tmp_path, used_columnar, sharing_policy=policy
    )
    assert got.rows_excluded.get("sharing_policy", 0) > 0
    assert got.persons_excluded.get("exclusion_list", 0) > 0 and got.phones_do_not_call > 0


def _e164(cell: str) -> str | None:
    try:
        return normalize.normalize_phone(cell).e164
    except normalize.NormalizationError:
        return None
