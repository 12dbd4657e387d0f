"""Benchmark of the sync import (issue 3): rows/s into SQLite and PostgreSQL, peak RSS,
against the decode floor (pyarrow) and a straightforward row-by-row ORM import.

    .venv/bin/python bench/sync_import.py               # 1,000,000 rows, records RESULTS.md
    .venv/bin/python bench/sync_import.py --rows 200000 --no-postgres
    .venv/bin/python bench/sync_import.py --quick       # smoke run, records nothing

Every measurement runs in a fresh child process (``--child KIND``) that reports its own
wall time and peak RSS (sampled: its own plus its live children's, e.g. the load's worker;
and its ``ru_maxrss``), so one stage's memory never hides another's. The export is
generated once per row count in ``--workdir`` (CP932, streamed by
``sync.synthetic.write_export``) and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

AS_OF = date(2026, 11, 24)
SEED = 20261124
ROWS_PER_PERSON = 1.76  # what the synthetic generator averages
SECRET = "bench-secret-not-for-production-0123456789abcdef"
DEFAULT_PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
RESULTS = ROOT / "bench" / "RESULTS.md"
RATE_TARGET = 100_000
RSS_TARGET_MIB = 1024
SPEEDUP_TARGET = 10
IDLE_CALIBRATION_US = 11.0  # sum(range(1000)) on this 2-core machine when idle


# --------------------------------------------------------------------------- child side


class _CombinedRss:
    """Samples, every 20 ms, the RSS of this process plus that of its live children (the
    load's worker): the memory the import holds at one moment. ``ru_maxrss`` of the children
    is no substitute: a child started by fork-exec briefly counts the parent's pages."""

    def __init__(self) -> None:
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _rss_mib(pid: str) -> float:
        try:
            with open(f"/proc/{pid}/statm") as handle:
                return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, IndexError, ValueError):
            return 0.0

    @staticmethod
    def _children() -> list[str]:
        found: list[str] = []
        for task in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task}/children") as handle:
                    found += handle.read().split()
            except OSError:
                continue
        return found

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            total = self._rss_mib("self") + sum(map(self._rss_mib, self._children()))
            self.peak_mib = max(self.peak_mib, total)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return round(self.peak_mib, 1)


def _peak_rss_mib() -> tuple[float, float]:
    """Peak RSS of this process and of its (waited-for) children, in MiB (Linux: KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return round(own, 1), round(children, 1)


def _calibration_us() -> float:
    """CPU microseconds of ``sum(range(1000))`` here and now (median of 200 samples): how
    fast this machine runs Python at the moment, since other work shares its two cores (on
    this VM a busy neighbour inflates CPU time too). Idle, it is :data:`IDLE_CALIBRATION_US`."""
    samples = []
    for _ in range(200):
        started = time.process_time()
        for _ in range(100):
            sum(range(1000))
        samples.append((time.process_time() - started) * 1e4)
    return round(statistics.median(samples), 2)


def _cpu_seconds() -> tuple[float, float]:
    """CPU seconds (user + system) of this process and of its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def _fresh_database(url: str) -> Any:
    from kernel import migrate
    from kernel.db import Database

    database = Database(url)
    migrate.upgrade(database)
    return database


def child_import(path: Path, url: str) -> dict[str, Any]:
    """The project's importer, then the same file again (must load nothing: SHA-256)."""
    from kernel.pii import KeyRing
    from kernel.settings import SyncSettings
    from sync.importer import import_file

    database = _fresh_database(url)
    keyring, settings = KeyRing(SECRET), SyncSettings()
    started, cpu = time.perf_counter(), _cpu_seconds()
    summary = import_file(database, keyring, settings, path, as_of=AS_OF, actor="bench")
    seconds = time.perf_counter() - started
    cpu_main, cpu_workers = (now - before for now, before in zip(_cpu_seconds(), cpu, strict=True))
    again = time.perf_counter()
    repeat = import_file(database, keyring, settings, path, as_of=AS_OF, actor="bench")
    repeat_seconds = time.perf_counter() - again
    database.dispose()
    data = summary.to_dict()
    keys = ("rows_read", "rows_loaded", "rows_rejected", "persons_loaded", "receivables_loaded")
    return {
        "seconds": seconds,
        "cpu_main_s": round(cpu_main, 2),
        "cpu_workers_s": round(cpu_workers, 2),
        "counts": {key: data[key] for key in keys},
        "repeat_already_imported": repeat.already_imported,
        "repeat_seconds": repeat_seconds,
    }


STORED_TABLES = ("persons", "phones", "receivables")  # what an import stores, in its order


def child_store_floor(imported: Path, url: str) -> dict[str, Any]:
    """The store floor: the rows the import stored (read back from its database, untimed),
    inserted again into a fresh database of the same schema with nothing but the driver's
    ``executemany``, as the import's own connection would: the project's pragmas (WAL,
    foreign keys), its page cache and its CHECK handling, one transaction. No reading,
    validation, merging or sealing: SQLite's own cost of storing what a 1M-row import
    stores. Foreign keys are off here (the import keeps them on)."""
    import sqlite3

    from sync.columnar_load import SQLITE_CACHE_KIB

    source = sqlite3.connect(f"file:{imported}?mode=ro", uri=True)
    parents = {t: source.execute(f"SELECT * FROM {t}").fetchall() for t in PARENT_TABLES}
    stored = {t: source.execute(f"SELECT * FROM {t} ORDER BY id").fetchall() for t in STORED_TABLES}
    source.close()
    database = _fresh_database(url)
    driver = database.engine.raw_connection()
    try:
        cursor = driver.cursor()
        _insert_all(cursor, parents, PARENT_TABLES)
        driver.commit()
        cursor.execute("PRAGMA foreign_keys=OFF")  # a no-op inside a transaction: set it here
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        cursor.execute("PRAGMA ignore_check_constraints=ON")  # as sync.bulk does for enums
        started, cpu = time.perf_counter(), _cpu_seconds()[0]
        _insert_all(cursor, stored, STORED_TABLES)
        driver.commit()
        seconds = time.perf_counter() - started
        cpu_s = _cpu_seconds()[0] - cpu
    finally:
        driver.close()
        database.dispose()
    counts = {table: len(rows) for table, rows in stored.items()}
    return {"seconds": seconds, "cpu_main_s": round(cpu_s, 2), "stored": counts}


PARENT_TABLES = ("campaigns", "import_batches")


def _insert_all(cursor: Any, rows: dict[str, list[Any]], tables: tuple[str, ...]) -> None:
    for table in tables:
        if rows[table]:
            marks = ", ".join("?" * len(rows[table][0]))
            cursor.executemany(f"INSERT INTO {table} VALUES ({marks})", rows[table])


def child_floor(path: Path) -> dict[str, Any]:
    """pyarrow reads and decodes the CP932 file (streamed in batches), nothing else."""
    from pyarrow import csv as arrow_csv  # type: ignore[import-untyped]

    started = time.perf_counter()
    options = arrow_csv.ReadOptions(encoding="cp932", block_size=1 << 22)
    convert = arrow_csv.ConvertOptions(auto_dict_encode=False, strings_can_be_null=False)
    rows = 0
    with arrow_csv.open_csv(path, read_options=options, convert_options=convert) as reader:
        for batch in reader:
            rows += batch.num_rows
    return {"seconds": time.perf_counter() - started, "rows": rows, "reader": "pyarrow.csv"}


def naive_import(database: Any, path: Path) -> int:
    """What a user would write: csv.DictReader, phonenumbers.parse per phone, one ORM object
    per person/receivable/phone with session.add, one commit at the end. Bad rows skipped."""
    import csv

    import phonenumbers

    from kernel.models import Campaign, Channel, Person, Phone, PhoneKind, Receivable
    from kernel.pii import KeyRing
    from sync.normalize import NormalizationError, parse_amount, parse_date

    keyring = KeyRing(SECRET)
    rows = 0
    with database.unit_of_work() as session, path.open(encoding="cp932", newline="") as handle:
        campaign = Campaign(name="naive", created_by="bench", as_of=AS_OF)
        session.add(campaign)
        session.flush()
        campaign.wrapped_data_key = keyring.new_wrapped_data_key(campaign.id)
        cipher = keyring.cipher(campaign.wrapped_data_key, campaign.id)
        persons: dict[str, Person] = {}
        for row in csv.DictReader(handle):
            rows += 1
            try:
                due, unpaid = parse_date(row["納期限"]), parse_amount(row["未納額"])
            except NormalizationError:
                continue
            atena = row["宛名番号"].strip()
            person = persons.get(atena)
            if person is None:
                record = {"atena_no": atena, "name": row["氏名"], "kana": row["氏名カナ"]}
                person = Person(
                    campaign_id=campaign.id,
                    ref_digest=keyring.digest("person", atena),
                    sealed_pii=cipher.seal_record(record | {"address": row["住所"]}, "pii"),
                    channel=Channel.IVR,
                )
                persons[atena] = person
                session.add(person)
                for position, key in enumerate(("電話番号1", "電話番号2"), start=1):
                    try:
                        number = phonenumbers.parse(row[key], "JP")
                    except phonenumbers.NumberParseException:
                        continue
                    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
                    phone = Phone(
                        campaign_id=campaign.id,
                        position=position,
                        sealed_number=cipher.seal_text(e164, "phone"),
                        number_digest=keyring.digest("phone", e164),
                        kind=PhoneKind.MOBILE,
                    )
                    person.phones.append(phone)
                    session.add(phone)
            receivable = Receivable(
                campaign_id=campaign.id,
                department=row["所管課"],
                kind=row["債権種別"],
                fiscal_year=due.year,
                period=row["期別"],
                due_date=due,
                unpaid_yen=unpaid,
            )
            person.receivables.append(receivable)
            session.add(receivable)
    return rows


def child_naive(path: Path, url: str) -> dict[str, Any]:
    database = _fresh_database(url)
    started, cpu = time.perf_counter(), _cpu_seconds()[0]
    rows = naive_import(database, path)
    seconds = time.perf_counter() - started
    database.dispose()
    return {"seconds": seconds, "rows": rows, "cpu_main_s": round(_cpu_seconds()[0] - cpu, 2)}


def run_child(kind: str, path: Path, url: str) -> None:
    sampler = _CombinedRss() if sys.platform == "linux" else None
    calibration = _calibration_us()
    if kind == "import":
        result = child_import(path, url)
    elif kind == "floor":
        result = child_floor(path)
    elif kind == "store_floor":
        imported, _, target = url.partition(" ")
        result = child_store_floor(Path(imported), target)
    elif kind == "naive":
        result = child_naive(path, url)
    else:
        raise SystemExit(f"unknown child kind {kind!r}")
    own, children = _peak_rss_mib()
    calibration = round((calibration + _calibration_us()) / 2, 2)
    result |= {
        "peak_rss_mib": own,
        "peak_rss_children_mib": children,
        "peak_rss_combined_mib": sampler.stop() if sampler else None,
        "calibration_us": calibration,
    }
    sys.stdout.write(json.dumps(result) + "\n")


# --------------------------------------------------------------------------- parent side


def spawn(kind: str, path: Path, url: str = "") -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", kind, str(path), url]
    done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def generate(path: Path, rows: int) -> dict[str, Any]:
    from sync.synthetic import write_export

    if path.is_file():
        return {"seconds": 0.0, "reused": True}
    started = time.perf_counter()
    persons = int(rows / ROWS_PER_PERSON * 1.2) + 10
    partial = path.with_name(path.name + ".part")
    stats = write_export(partial, persons, SEED, AS_OF, max_rows=rows)
    partial.replace(path)
    return {"seconds": time.perf_counter() - started, "persons": stats.persons, "reused": False}


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A throw-away PostgreSQL database for the bench, dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"dunning_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class Plan:
    rows: int
    naive_rows: int
    workdir: Path
    postgres: str | None
    record: bool
    command: str


def measure(plan: Plan) -> dict[str, Any]:
    export = plan.workdir / f"export_{plan.rows}.csv"
    sample = plan.workdir / f"export_{plan.naive_rows}.csv"
    results: dict[str, Any] = {"rows": plan.rows, "naive_rows": plan.naive_rows}
    say(f"generating {plan.rows:,} rows -> {export}")
    results["generate"] = generate(export, plan.rows)
    results["file_mib"] = round(export.stat().st_size / 2**20, 1)
    generate(sample, plan.naive_rows)
    say("floor: pyarrow reads and decodes the file")
    results["floor"] = spawn("floor", export)
    say("import into SQLite")
    sqlite_path = plan.workdir / f"bench_{uuid.uuid4().hex[:8]}.sqlite3"
    try:
        results["sqlite"] = spawn("import", export, f"sqlite:///{sqlite_path}")
        say("store floor: the imported rows inserted again with bare executemany")
        floor_path = plan.workdir / f"store_{uuid.uuid4().hex[:8]}.sqlite3"
        try:
            results["store_floor"] = spawn(
                "store_floor", export, f"{sqlite_path} sqlite:///{floor_path}"
            )
        finally:
            _remove_sqlite(floor_path)
    finally:
        _remove_sqlite(sqlite_path)
    if plan.postgres:
        say("import into PostgreSQL")
        with postgres_database(plan.postgres) as url:
            results["postgresql"] = spawn("import", export, url)
    say(f"straightforward import of a {plan.naive_rows:,}-row sample into SQLite")
    naive_path = plan.workdir / f"naive_{uuid.uuid4().hex[:8]}.sqlite3"
    try:
        results["naive"] = spawn("naive", sample, f"sqlite:///{naive_path}")
    finally:
        _remove_sqlite(naive_path)
    return results


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def figures(results: dict[str, Any]) -> dict[str, Any]:
    rows = results["rows"]
    sqlite = results["sqlite"]
    naive = results["naive"]
    naive_rate = naive["rows"] / naive["seconds"]
    sqlite_rate = rows / sqlite["seconds"]
    naive_cpu_us = _idle_cpu_us(naive["cpu_main_s"], naive["rows"], naive["calibration_us"])
    sqlite_cpu = sqlite["cpu_main_s"] + sqlite["cpu_workers_s"]
    sqlite_cpu_us = _idle_cpu_us(sqlite_cpu, rows, sqlite["calibration_us"])
    out: dict[str, Any] = {
        "sqlite_cpu_us_per_row_idle": round(sqlite_cpu_us, 1),
        "naive_cpu_us_per_row_idle": round(naive_cpu_us, 1),
        "cpu_speedup_vs_naive": round(naive_cpu_us / sqlite_cpu_us, 1),
        "sqlite_rows_per_s_idle_estimate": _idle_rate(sqlite, rows),
        "sqlite_rows_per_s": round(sqlite_rate),
        "sqlite_seconds": round(sqlite["seconds"], 2),
        "sqlite_peak_rss_mib": sqlite["peak_rss_combined_mib"] or sqlite["peak_rss_mib"],
        "floor_seconds": round(results["floor"]["seconds"], 2),
        "naive_rows_per_s": round(naive_rate),
        "naive_extrapolated_seconds": round(rows / naive_rate, 1),
        "speedup_vs_naive": round(sqlite_rate / naive_rate, 1),
        "ratio_to_floor": round(sqlite["seconds"] / results["floor"]["seconds"], 1),
    }
    if "store_floor" in results:
        store = results["store_floor"]["seconds"]
        out["store_floor_seconds"] = round(store, 2)
        out["store_floor_rows_per_s"] = round(rows / store)
        out["store_floor_share_of_import"] = round(store / sqlite["seconds"], 2)
    if "postgresql" in results:
        pg = results["postgresql"]
        out["postgresql_rows_per_s"] = round(rows / pg["seconds"])
        out["postgresql_seconds"] = round(pg["seconds"], 2)
        out["postgresql_peak_rss_mib"] = pg["peak_rss_combined_mib"] or pg["peak_rss_mib"]
    return out


def _idle_rate(result: dict[str, Any], rows: int) -> int:
    """Rows/s the import would reach on the idle machine, at best: its CPU time scaled to
    the idle speed, the main process's share running alone, the rest spread on 2 cores."""
    scale = IDLE_CALIBRATION_US / result["calibration_us"]
    main, workers = result["cpu_main_s"] * scale, result["cpu_workers_s"] * scale
    return int(rows / max(main, (main + workers) / 2))


def _idle_cpu_us(cpu_seconds: float, rows: int, calibration_us: float) -> float:
    """CPU microseconds per row, scaled to the idle machine's speed."""
    return cpu_seconds / rows * 1e6 * IDLE_CALIBRATION_US / calibration_us


def report(plan: Plan, results: dict[str, Any], summary: dict[str, Any]) -> str:
    rows = results["rows"]
    sqlite = results["sqlite"]
    lines = [
        f"## sync_import: {rows:,} receivable rows ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"- machine: `{' '.join(platform.uname())}`, nproc {os.cpu_count()}, "
        f"Python {platform.python_version()}; load average at the end "
        f"{os.getloadavg()[0]:.1f} (other work shares the machine)",
        f"- command: `{plan.command}`",
        f"- export: {rows:,} rows, {results['file_mib']} MiB CP932 "
        f"(sync.synthetic, seed {SEED}, as of {AS_OF})",
        f"- loaded: {json.dumps(sqlite['counts'])}",
        "",
        "| measurement | time (s) | rows/s | peak RSS (MiB) | CPU s (main + workers) |",
        "|---|---:|---:|---:|---:|",
        f"| floor: pyarrow.csv reads + decodes CP932 | {summary['floor_seconds']} | "
        f"{round(rows / results['floor']['seconds']):,} | "
        f"{results['floor']['peak_rss_mib']} | |",
        _import_line("SQLite", results["sqlite"], rows),
        *_store_floor_line(results, summary),
    ]
    if "postgresql" in results:
        lines.append(_import_line("PostgreSQL", results["postgresql"], rows))
    naive = results["naive"]
    lines += [
        f"| straightforward import (csv.DictReader + phonenumbers + ORM session.add per row), "
        f"{naive['rows']:,}-row sample timed, {rows:,} extrapolated | "
        f"{summary['naive_extrapolated_seconds']} (extrapolated) | "
        f"{summary['naive_rows_per_s']:,} | {naive['peak_rss_mib']} (sample) | |",
        "",
        f"- CPU per row, scaled to the idle machine's speed (calibration: CPU µs of "
        f"`sum(range(1000))` in each child, {IDLE_CALIBRATION_US} µs idle; SQLite import "
        f"{results['sqlite']['calibration_us']} µs, straightforward "
        f"{results['naive']['calibration_us']} µs): import into SQLite "
        f"{summary['sqlite_cpu_us_per_row_idle']} µs/row (main + workers), straightforward "
        f"{summary['naive_cpu_us_per_row_idle']} µs/row: "
        f"**{summary['cpu_speedup_vs_naive']}x less CPU**; on the idle machine that is at "
        f"best ~{summary['sqlite_rows_per_s_idle_estimate']:,} rows/s into SQLite",
        f"- wall clock: SQLite import {summary['speedup_vs_naive']}x the straightforward import, "
        f"{summary['ratio_to_floor']}x the decode floor's time; the same file again: "
        f"already imported = {sqlite['repeat_already_imported']} "
        f"in {sqlite['repeat_seconds']:.2f} s (SHA-256)",
        *_target_lines(summary),
        "",
    ]
    return "\n".join(lines)


def _store_floor_line(results: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    if "store_floor" not in results:
        return []
    store = results["store_floor"]
    stored = ", ".join(f"{count:,} {table}" for table, count in store["stored"].items())
    return [
        f"| store floor: the rows the import stored ({stored}) inserted again by bare "
        f"`executemany`, same schema, pragmas and transaction, foreign keys off | "
        f"{summary['store_floor_seconds']} | {summary['store_floor_rows_per_s']:,} | | "
        f"{store['cpu_main_s']} |"
    ]


def _target_lines(summary: dict[str, Any]) -> list[str]:
    def verdict(met: bool) -> str:
        return "met" if met else "NOT met"

    rate, rss = summary["sqlite_rows_per_s"], summary["sqlite_peak_rss_mib"]
    speedup = summary["speedup_vs_naive"]
    return [
        f"- target >= {RATE_TARGET:,} rows/s into SQLite: {rate:,} rows/s, "
        f"{verdict(rate >= RATE_TARGET)}" + _store_floor_note(summary),
        f"- target peak RSS < {RSS_TARGET_MIB:,} MiB: {rss} MiB, {verdict(rss < RSS_TARGET_MIB)}",
        f"- target >= {SPEEDUP_TARGET}x the straightforward import (wall clock): {speedup}x, "
        f"{verdict(speedup >= SPEEDUP_TARGET)}",
    ]


def _store_floor_note(summary: dict[str, Any]) -> str:
    if "store_floor_seconds" not in summary:
        return ""
    return (
        f" (SQLite alone takes {summary['store_floor_seconds']} s to store the same rows in "
        f"the same order by bare executemany, {summary['store_floor_share_of_import']:.0%} "
        f"of the import's time: {summary['store_floor_rows_per_s']:,} rows/s before any "
        "reading, validation, merging or sealing)"
    )


def _import_line(name: str, result: dict[str, Any], rows: int) -> str:
    rss = f"{result['peak_rss_combined_mib']} (main + live workers, sampled)"
    rss += f"; ru_maxrss {result['peak_rss_mib']} main"
    cpu = f"{result['cpu_main_s']} + {result['cpu_workers_s']}"
    rate = round(rows / result["seconds"])
    return f"| import into {name} | {result['seconds']:.2f} | {rate:,} | {rss} | {cpu} |"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="receivable rows")
    parser.add_argument("--quick", action="store_true", help="smoke run: 20,000 rows")
    parser.add_argument("--naive-rows", type=int, default=50_000, help="naive sample size")
    parser.add_argument("--workdir", type=Path, default=None, help="keeps generated exports")
    parser.add_argument("--postgres-admin", default=DEFAULT_PG_ADMIN, help="admin URL")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--no-record", action="store_true", help="do not append RESULTS.md")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "FILE", "URL"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.child:
        kind, file, url = args.child
        run_child(kind, Path(file), url)
        return 0
    rows, naive_rows = (20_000, 5_000) if args.quick else (args.rows, args.naive_rows)
    workdir = args.workdir or Path(tempfile.gettempdir()) / "dunning-bench"
    workdir.mkdir(parents=True, exist_ok=True)
    plan = Plan(
        rows=rows,
        naive_rows=min(naive_rows, rows),
        workdir=workdir,
        postgres=None if args.no_postgres else args.postgres_admin,
        record=not (args.quick or args.no_record),
        command="python bench/sync_import.py " + " ".join(sys.argv[1:] if argv is None else argv),
    )
    results = measure(plan)
    summary = figures(results)
    text = report(plan, results, summary)
    sys.stdout.write(text + "\n")
    sys.stdout.write(json.dumps(summary) + "\n")
    if plan.record:
        with RESULTS.open("a", encoding="utf-8") as handle:
            handle.write("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
