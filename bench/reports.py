"""Benchmark: 日報 and 月報 over 10,000,000 attempts' worth of aggregates on PostgreSQL.

Creates a throw-away database, migrates it, COPYs ``daily_aggregates`` rows that count
10M finished attempts (24 monthly campaigns x 45 days, 7 kind dimensions, 8 operators), then
times the daily report of the busiest day and the monthly report of the busiest month (all
campaigns, and one campaign). Each must take at most 1 s. Prints the figures and appends them
to bench/RESULTS.md with the date, ``uname -a`` and ``nproc``.

    .venv/bin/python bench/reports.py [--url postgresql+psycopg://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kernel import migrate  # noqa: E402
from kernel.db import Database  # noqa: E402
from reports.build import daily_report, monthly_report  # noqa: E402

ATTEMPTS = 10_000_000
CAMPAIGNS, DAYS = 24, 45
KINDS = ("市県民税", "固定資産税", "軽自動車税", "国民健康保険税", "保育料", "介護保険料")
OPERATORS = 8
IVR_OUTCOMES = ("rpc_confirmed", "rpc_promise_callback", "wrong_party", "no_input", "machine",
                "refused", "hangup_before_confirm", "paid_claimed")  # fmt: skip
OP_OUTCOMES = ("promise_made", "handoff_installment", "no_answer", "wrong_number", "callback_set")
LIMIT_S = 1.0
FIRST_DAY = date(2024, 4, 1)


def _campaign_start(campaign: int) -> date:
    month = FIRST_DAY.month - 1 + campaign
    return date(FIRST_DAY.year + month // 12, month % 12 + 1, 1)


def _split(total: int, shares: list[float], rng: random.Random) -> list[int]:
    weights = [s * rng.uniform(0.8, 1.2) for s in shares]
    parts = [int(total * w / sum(weights)) for w in weights]
    parts[0] += total - sum(parts)
    return parts


def _day_rows(campaign: int, day: date, attempts: int, rng: random.Random) -> Iterator[str]:
    ivr, op, sms, letter = _split(attempts, [0.6, 0.2, 0.15, 0.05], rng)
    answered_ivr, answered_op = int(ivr * 0.35), int(op * 0.55)
    base = {
        "attempts.ivr": ivr, "attempts.operator": op, "attempts.sms": sms,
        "attempts.letter": letter, "answered.ivr": answered_ivr, "answered.operator": answered_op,
        "talk_seconds.ivr": answered_ivr * 70, "talk_seconds.operator": answered_op * 240,
        "rpc.ivr": int(answered_ivr * 0.6), "rpc.operator": int(answered_op * 0.7),
        "identity_confirmed.ivr": int(answered_ivr * 0.55),
        "identity_confirmed.operator": int(answered_op * 0.6),
        "promises": int(answered_op * 0.25), "promise_yen": int(answered_op * 0.25) * 23_000,
        "sms.sent": sms, "sms.delivered": int(sms * 0.93), "sms.failed": sms - int(sms * 0.93),
        "letters_printed": letter, "handoffs": int(op * 0.05), "callbacks": int(ivr * 0.02),
    }  # fmt: skip
    for code, n in zip(
        IVR_OUTCOMES, _split(answered_ivr, [1.0] * len(IVR_OUTCOMES), rng), strict=True
    ):
        base[f"outcome.ivr.{code}"] = n
    for code, n in zip(
        OP_OUTCOMES, _split(answered_op, [1.0] * len(OP_OUTCOMES), rng), strict=True
    ):
        base[f"outcome.operator.{code}"] = n
    stamp = day.isoformat()
    for metric, value in base.items():
        yield f"{stamp}\t{campaign}\ttotal\t{metric}\t{value}\n"
        for kind, share in zip(KINDS, (0.45, 0.2, 0.08, 0.3, 0.04, 0.1), strict=True):
            yield f"{stamp}\t{campaign}\tkind:{kind}\t{metric}\t{int(value * share)}\n"
    per_op = _split(op, [1.0] * OPERATORS, rng)
    for operator, calls in enumerate(per_op, start=1):
        dimension = f"operator:{operator}"
        for metric, value in (("op.calls", calls), ("op.talk_seconds", calls * 130),
                              ("op.results", calls), ("op.rpc", int(calls * 0.4))):  # fmt: skip
            yield f"{stamp}\t{campaign}\t{dimension}\t{metric}\t{value}\n"


def _snapshot_rows(campaign: int, day: date, targets: int) -> Iterator[str]:
    stamp = day.isoformat()
    held = targets // 20
    figures = {
        "targets": targets, "targets.phone_known": int(targets * 0.66), "holdout.persons": held,
        "effect.contact.persons": targets - held, "effect.contact.paid": int(targets * 0.28),
        "effect.holdout.persons": held, "effect.holdout.paid": int(targets * 0.011),
    }  # fmt: skip
    for metric, value in figures.items():
        yield f"{stamp}\t{campaign}\ttotal\t{metric}\t{value}\n"


def generate(rng: random.Random) -> Iterator[str]:
    per_campaign = _split(ATTEMPTS, [1.0] * CAMPAIGNS, rng)
    for campaign, attempts in enumerate(per_campaign, start=1):
        start = _campaign_start(campaign - 1)
        yield from _snapshot_rows(campaign, start, attempts // 4)
        for offset, n in enumerate(_split(attempts, [1.0] * DAYS, rng)):
            yield from _day_rows(campaign, start + timedelta(days=offset), n, rng)


def load(database: Database, rng: random.Random) -> int:
    rows = 0
    with database.engine.begin() as connection:
        for campaign in range(1, CAMPAIGNS + 1):
            connection.execute(
                text(
                    "INSERT INTO campaigns (id, name, status, disclosure_level, script_name,"
                    " plan, holdout_share, created_by, created_at) VALUES (:id, :name, 'wiped',"
                    " 'notice', 'standard', '{}', 0.05, 'bench', now())"
                ),
                {"id": campaign, "name": f"催告 {_campaign_start(campaign - 1):%Y-%m}"},
            )  # fmt: skip
        raw: Any = connection.connection.dbapi_connection
        with (
            raw.cursor() as cursor,
            cursor.copy(
                "COPY daily_aggregates (day, campaign_id, dimension, metric, value) FROM STDIN"
            ) as copy,
        ):
            for line in generate(rng):
                copy.write(line)
                rows += 1
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE daily_aggregates"))
    return rows


def timed(action: Callable[[], object], runs: int = 5) -> tuple[float, float]:
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), max(seconds)


def run(url: str) -> tuple[int, list[tuple[str, float, float]]]:
    name = f"dunning_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    database = Database(make_url(url).set(database=name).render_as_string(hide_password=False))
    try:
        migrate.upgrade(database)
        started = time.perf_counter()
        rows = load(database, random.Random(20261125))
        elapsed = time.perf_counter() - started
        say(f"loaded {rows:,} aggregate rows ({ATTEMPTS:,} attempts) in {elapsed:.1f} s")
        with database.read_only() as session:
            busiest_day = _campaign_start(CAMPAIGNS - 1) + timedelta(days=20)
            month = f"{busiest_day:%Y-%m}"
            check = monthly_report(session, "2024-04", None)
            say(f"sanity: April 2024 attempts {check.total.attempts:,}")
            return rows, [
                ("daily, all campaigns", *timed(lambda: daily_report(session, busiest_day))),
                ("monthly, all campaigns", *timed(lambda: monthly_report(session, month))),
                (
                    "monthly, one campaign",
                    *timed(lambda: monthly_report(session, month, [CAMPAIGNS])),
                ),
            ]
    finally:
        database.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def say(line: str) -> None:
    print(line, flush=True)  # noqa: T201


def record(results: list[tuple[str, float, float]], rows: int, command: str) -> None:
    uname = subprocess.run(["uname", "-a"], capture_output=True, text=True).stdout.strip()
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    lines = [
        f"\n## reports: 日報・月報, 10M attempts' aggregates ({datetime.now(UTC):%Y-%m-%d} UTC)\n",
        f"- machine: `{uname}`, nproc {nproc}",
        f"- command: `{command}`",
        f"- data: {CAMPAIGNS} campaigns x {DAYS} days, 7 dimensions + {OPERATORS} operators"
        f" ({rows:,} rows); limit {LIMIT_S} s each",
        "",
        "| report | median s | max s | within limit |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {n} | {m:.3f} | {x:.3f} | {'yes' if x <= LIMIT_S else 'NO'} |" for n, m, x in results
    ]
    with (ROOT / "bench" / "RESULTS.md").open("a", encoding="utf-8") as stream:
        stream.write("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default = os.environ.get(
        "DUNNING_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    parser.add_argument("--url", default=default, help="PostgreSQL server (a database is created)")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    options = parser.parse_args()
    rows, results = run(options.url)
    for label, median, worst in results:
        say(f"{label:<24} median {median:.3f} s  max {worst:.3f} s")
    if not options.no_record:
        record(results, rows, ".venv/bin/python bench/reports.py")
    return 0 if all(worst <= LIMIT_S for _, _, worst in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
