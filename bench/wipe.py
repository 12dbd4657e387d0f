"""Benchmark of the wipe (R-11): a 1,000,000-target campaign erased in at most 60 s, on
SQLite and on PostgreSQL.

    .venv/bin/python bench/wipe.py                     # 1,000,000 targets, records RESULTS.md
    .venv/bin/python bench/wipe.py --targets 100000 --no-postgres --no-record

The campaign is generated in the database itself (a recursive CTE on SQLite,
``generate_series`` on PostgreSQL) with random placeholder blobs where sealed values go, so
the setup takes seconds instead of a full import; only :func:`dialer.wipe.wipe_campaign` is
timed. Per target: one person, 1.2 phones, 1.5 receivables, one finished attempt (10 % with
sealed notes and a promise); 1 % of the targets have a hand-off and 1 % a callback request.
A second, small campaign is generated too: it must survive the wipe untouched.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import Table, create_engine, func, insert, select, text, update  # noqa: E402
from sqlalchemy.engine import Connection, make_url  # noqa: E402

from dialer.wipe import wipe_campaign  # noqa: E402
from kernel import migrate  # noqa: E402
from kernel.coordination import LocalCoordination  # noqa: E402
from kernel.db import Database  # noqa: E402
from kernel.models import (  # noqa: E402
    Attempt,
    CallbackRequest,
    Campaign,
    CampaignStatus,
    HandOff,
    Person,
    Phone,
    Receivable,
    ResultsExport,
)
from kernel.pii import KeyRing  # noqa: E402

SECRET = "bench-secret-not-for-production-0123456789abcdef"
DEFAULT_PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
RESULTS = ROOT / "bench" / "RESULTS.md"
TARGET_SECONDS = 60.0
SURVIVOR_TARGETS = 1_000
Expressions = dict[str, str]


# --------------------------------------------------------------------------- SQL per dialect


class Dialect:
    """The few SQL snippets that differ between SQLite and PostgreSQL."""

    def __init__(self, name: str) -> None:
        self.name = name

    def series(self, count: int) -> tuple[str, str]:
        """(prefix, FROM clause) producing integers ``i`` = 1..count."""
        if self.name == "sqlite":
            prefix = (
                "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq "
                f"WHERE i < {count}) "
            )
            return prefix, "seq"
        return "", f"generate_series(1, {count}) AS seq(i)"

    def blob(self, size: int) -> str:
        if self.name == "sqlite":
            return f"randomblob({size})"
        repeats = -(-size // 16)
        return f"decode(repeat(md5(i::text || random()::text), {repeats}), 'hex')"

    def digest(self) -> str:
        if self.name == "sqlite":
            return "lower(hex(randomblob(32)))"
        return "md5(i::text) || md5(random()::text)"

    def boolean(self, value: bool) -> str:
        if self.name == "sqlite":
            return "1" if value else "0"
        return "true" if value else "false"

    def day(self, iso: str) -> str:
        return f"'{iso}'" if self.name == "sqlite" else f"DATE '{iso}'"

    def when(self, condition: str, then: str) -> str:
        return f"CASE WHEN {condition} THEN {then} ELSE NULL END"


def _literal(dialect: Dialect, value: Any) -> str:
    if isinstance(value, bool):
        return dialect.boolean(value)
    if isinstance(value, int | float):
        return str(value)
    if hasattr(value, "value"):  # enums stored by value
        value = value.value
    return "'" + str(value).replace("'", "''") + "'"


def _fill_defaults(table: Table, given: Expressions, dialect: Dialect) -> Expressions:
    """Columns other engineers add later (NOT NULL with a scalar default) get that default."""
    filled = dict(given)
    for column in table.columns:
        if column.name in filled or column.nullable or column.primary_key:
            continue
        default = column.default
        if default is None or not getattr(default, "is_scalar", False):
            raise SystemExit(f"bench: no value for {table.name}.{column.name}")
        filled[column.name] = _literal(dialect, getattr(default, "arg", None))
    return filled


def _insert(
    connection: Connection, model: Any, count: int, values: Expressions, dialect: Dialect
) -> None:
    table: Table = model.__table__
    filled = _fill_defaults(table, values, dialect)
    prefix, source = dialect.series(count)
    columns = ", ".join(filled)
    expressions = ", ".join(filled.values())
    if dialect.name == "sqlite":
        sql = f"{prefix}INSERT INTO {table.name} ({columns}) SELECT {expressions} FROM {source}"
    else:
        sql = f"INSERT INTO {table.name} ({columns}) SELECT {expressions} FROM {source}"
    connection.execute(text(sql))


# --------------------------------------------------------------------------- the data


def _campaign(connection: Connection, keyring: KeyRing, name: str) -> int:
    now = datetime(2026, 11, 20, tzinfo=UTC)
    campaign_id = int(
        connection.execute(
            insert(Campaign).returning(Campaign.id),
            {
                "name": name,
                "status": CampaignStatus.EXPORTED,
                "disclosure_level": "notice",
                "script_name": "standard",
                "plan": {},
                "holdout_share": 0.0,
                "created_by": "bench",
                "created_at": now,
                "exported_at": now,
            },
        ).scalar_one()
    )
    connection.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id)
        .values(wrapped_data_key=keyring.new_wrapped_data_key(campaign_id))
    )
    connection.execute(
        insert(ResultsExport),
        {
            "campaign_id": campaign_id,
            "row_count": 0,
            "file_sha256": "0" * 64,
            "exported_by": "bench",
            "exported_at": now,
        },
    )
    return campaign_id


def _next_id(connection: Connection, model: Any) -> int:
    return int(connection.execute(select(func.coalesce(func.max(model.id), 0))).scalar_one())


def _generate(connection: Connection, dialect: Dialect, campaign_id: int, targets: int) -> None:
    d = dialect
    base = _next_id(connection, Person)
    stamp = "'2026-11-10 01:00:00.000000'" if d.name == "sqlite" else "'2026-11-10 01:00:00Z'"
    person = f"{base} + i"
    _insert(connection, Person, targets, {
        "id": person, "campaign_id": str(campaign_id), "ref_digest": d.digest(),
        "sealed_pii": d.blob(220), "has_kana": d.boolean(True), "language": "'ja'",
        "channel": "'ivr'", "status": "'done'", "unpaid_total_yen": "i % 90000 + 1000",
        "created_at": stamp,
    }, d)  # fmt: skip
    phone_base = _next_id(connection, Phone)
    phones = targets + targets // 5
    _insert(connection, Phone, phones, {
        "id": f"{phone_base} + i", "campaign_id": str(campaign_id),
        "person_id": f"{base} + ((i - 1) % {targets}) + 1",
        "position": f"CASE WHEN i > {targets} THEN 2 ELSE 1 END",
        "sealed_number": d.blob(45), "number_digest": d.digest(), "kind": "'MOBILE'",
        "status": "'usable'", "shared_household": d.boolean(False),
    }, d)  # fmt: skip
    _insert(connection, Receivable, targets + targets // 2, {
        "campaign_id": str(campaign_id), "person_id": f"{base} + ((i - 1) % {targets}) + 1",
        "department": "'納税課'", "kind": "'市県民税'", "fiscal_year": "2026",
        "period": f"CASE WHEN i > {targets} THEN '2' ELSE '1' END",
        "sealed_notice_number": d.blob(40), "due_date": "'2026-06-30'",
        "unpaid_yen": "i % 90000 + 1000", "late_fee_yen": "0",
        "account_transfer": d.boolean(False),
    }, d)  # fmt: skip
    attempt_base = _next_id(connection, Attempt)
    _insert(connection, Attempt, targets, {
        "id": f"{attempt_base} + i", "campaign_id": str(campaign_id),
        "person_id": f"{base} + i", "phone_id": f"{phone_base} + i", "channel": "'ivr'",
        "sequence_no": "1", "status": "'completed'", "scheduled_at": stamp,
        "idempotency_key": f"'bench-{campaign_id}-' || i", "carrier": "'simulator'",
        "carrier_ref": "'SIM' || i", "started_at": stamp, "outcome_code": "'promise'",
        "promise_amount_yen": d.when("i % 10 = 0", "5000"),
        "promise_date": d.when("i % 10 = 0", d.day("2026-12-10")),
        "sealed_notes": d.when("i % 10 = 0", d.blob(120)), "created_at": stamp,
    }, d)  # fmt: skip
    _insert(connection, HandOff, targets // 100, {
        "campaign_id": str(campaign_id), "person_id": f"{base} + i * 100",
        "attempt_id": f"{attempt_base} + i * 100", "reason": "'installment'",
        "sealed_notes": d.blob(120), "status": "'open'", "created_at": stamp,
    }, d)  # fmt: skip
    _insert(connection, CallbackRequest, targets // 100, {
        "campaign_id": str(campaign_id), "person_id": f"{base} + i * 100 - 50",
        "attempt_id": f"{attempt_base} + i * 100 - 50", "time_band": "'evening'",
        "due_at": stamp, "status": "'pending'", "created_at": stamp,
    }, d)  # fmt: skip


def _counts(database: Database, campaign_id: int) -> dict[str, int]:
    counts = {}
    with database.read_only() as session:
        for model in (Person, Phone, Receivable, Attempt, HandOff, CallbackRequest):
            query = select(func.count()).select_from(model).where(model.campaign_id == campaign_id)
            counts[model.__tablename__] = int(session.scalar(query) or 0)
    return counts


# --------------------------------------------------------------------------- one run


class _ServerCpu:
    """CPU seconds spent by this database's PostgreSQL backends (read from /proc, so only
    for a server on this machine): with other work on the machine, CPU time says more about
    the wipe's own cost than wall time does."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.start = self._ticks()

    def _ticks(self) -> dict[int, int]:
        if self.database.engine.dialect.name != "postgresql":
            return {}
        with self.database.engine.connect() as connection:
            pids = connection.execute(
                text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            ).scalars()
            ticks = {}
            for pid in pids:
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                ticks[int(pid)] = int(fields[11]) + int(fields[12])  # utime + stime
            return ticks

    def used(self) -> float:
        end = self._ticks()
        spent = sum(value - self.start.get(pid, 0) for pid, value in end.items())
        return spent / os.sysconf("SC_CLK_TCK")


def _postgres_database(admin_url: str) -> tuple[str, Callable[[], None]]:
    name = f"dunning_bench_wipe_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    return url, drop


def run(url: str, targets: int, workdir: Path) -> dict[str, Any]:
    database = Database(url)
    migrate.upgrade(database)
    dialect = Dialect(database.engine.dialect.name)
    keyring = KeyRing(SECRET)
    started = time.perf_counter()
    with database.engine.begin() as connection:
        wiped = _campaign(connection, keyring, "bench: wiped")
        _generate(connection, dialect, wiped, targets)
        survivor = _campaign(connection, keyring, "bench: survivor")
        _generate(connection, dialect, survivor, SURVIVOR_TARGETS)
    if dialect.name == "postgresql":
        with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text("VACUUM ANALYZE"))
    setup_s = time.perf_counter() - started
    before = _counts(database, wiped)
    survivor_before = _counts(database, survivor)
    load_before = os.getloadavg()[0]
    cpu = _ServerCpu(database)
    started, cpu_started = time.perf_counter(), time.process_time()
    result = wipe_campaign(database, LocalCoordination(), workdir / "var", wiped, actor="bench")
    wipe_s = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_started + cpu.used()
    after = _counts(database, wiped)
    assert after["persons"] == after["phones"] == after["receivables"] == 0, after
    assert _counts(database, survivor) == survivor_before, "the other campaign was touched"
    database.dispose()
    return {
        "engine": dialect.name,
        "targets": targets,
        "rows_before": before,
        "erased": result.body["erased"],
        "setup_s": round(setup_s, 1),
        "wipe_s": round(wipe_s, 1),
        "cpu_s": round(cpu_s, 1),
        "load": f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}",
    }


# --------------------------------------------------------------------------- report


def _record(results: list[dict[str, Any]], command: str) -> None:
    uname = subprocess.run(["uname", "-a"], capture_output=True, text=True).stdout.strip()
    lines = [
        "",
        f"## Wipe (R-11), {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"- machine: `{uname or ' '.join(platform.uname())}`, nproc {os.cpu_count()}",
        f"- command: `{command}`",
        f"- target: a {results[0]['targets']:,}-target campaign wiped in at most "
        f"{TARGET_SECONDS:.0f} s (only `wipe_campaign` is timed: erase, shred the key, "
        "compact the storage, certificate)",
        "- wall s: the whole `wipe_campaign` call; CPU s: this process plus (PostgreSQL) the "
        "database's server backends; load: 1-minute load average before -> after",
        "",
        "| engine | persons | phones | receivables | attempts scrubbed | wall s | CPU s "
        "| load | target met |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        erased = r["erased"]
        met = "yes" if r["wipe_s"] <= TARGET_SECONDS else "NO"
        lines.append(
            f"| {r['engine']} | {erased['persons']:,} | {erased['phones']:,} | "
            f"{erased['receivables']:,} | {erased.get('attempts_scrubbed', 0):,} | "
            f"{r['wipe_s']} | {r['cpu_s']} | {r['load']} | {met} |"
        )
    with RESULTS.open("a", encoding="utf-8") as stream:
        stream.write("\n".join(lines) + "\n")


def _postgres_version(admin_url: str) -> str:
    engine = create_engine(admin_url)
    with engine.connect() as connection:
        version = str(connection.execute(text("SHOW server_version")).scalar_one())
    engine.dispose()
    return version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=1_000_000)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--no-record", action="store_true", help="Do not append RESULTS.md.")
    parser.add_argument(
        "--postgres-admin-url",
        default=os.environ.get("DUNNING_BENCH_POSTGRES_URL", DEFAULT_PG_ADMIN),
    )
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-wipe-") as tmp:
        workdir = Path(tmp)
        if not args.no_sqlite:
            results.append(run(f"sqlite:///{workdir / 'wipe.sqlite3'}", args.targets, workdir))
            print(results[-1], flush=True)  # noqa: T201
        if not args.no_postgres:
            url, drop = _postgres_database(args.postgres_admin_url)
            try:
                results.append(run(url, args.targets, workdir))
                results[-1]["engine"] += f" {_postgres_version(args.postgres_admin_url)}"
                print(results[-1], flush=True)  # noqa: T201
            finally:
                drop()
    if not args.no_record and results:
        _record(results, "python " + " ".join(sys.argv[:1] + sys.argv[1:]))


if __name__ == "__main__":
    main()
