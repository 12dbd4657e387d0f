"""Benchmark of the dialer on one node: a 100,000-target campaign on the simulator.

    .venv/bin/python bench/dialer_throughput.py                   # records bench/RESULTS.md
    .venv/bin/python bench/dialer_throughput.py --targets 20000 --starts 5000 --no-record
    .venv/bin/python bench/dialer_throughput.py --database-url postgresql+psycopg://...

What runs: the real dispatcher tick (claim, interlocks per attempt, pacing through the
in-process coordination with ``--concurrency`` call slots, per-number locks, the carrier
request, recording, follow-up planning) against the embedded ``SimulatedCarrier`` on a
compressed ``SimulatedClock``: each loop iteration ticks the dispatcher, lets the simulator
deliver every report due, then advances simulated time by ``--step`` seconds. The simulated
residents answer, listen to the IVR flow, press keys or hang up, so calls last tens of
simulated seconds and the slots fill up.

The call-event sink is the in-memory IVR engine (``tests.fakes.memory_sink.MemorySink``) plus
a batched recorder: the ends of calls are written back to the attempts once per loop
iteration, in one statement, as the dialer's persistent CallSession would (its per-event cost
is measured by ``bench/ivr_webhook.py``). Figures:

* call starts per second of real time, sustained over the measured window (after a warm-up
  of ``--warmup`` starts);
* CPU milliseconds per call start (process CPU time of the whole loop: dispatcher, simulator,
  IVR engine, database driver);
* concurrent calls held (in flight at the simulator), mean and max over the window.

Target: >= 200 call starts/s with 1,000 concurrent simulated calls (1,000 slots, at least 95 %
of them held on average: a slot is free from a call's end until the next tick releases it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import bindparam, insert, update  # noqa: E402

from dialer import campaigns  # noqa: E402
from dialer.call_events import carrier_result  # noqa: E402
from dialer.clock import SimulatedClock  # noqa: E402
from dialer.dispatcher import Dispatcher, DispatcherConfig  # noqa: E402
from dialer.pacing import Pacer  # noqa: E402
from dialer.ports import CallEvent  # noqa: E402
from dialer.simulator import SimulatedCarrier  # noqa: E402
from ivr_scripts import CallContext  # noqa: E402
from ivr_scripts.actions import Action  # noqa: E402
from kernel import migrate  # noqa: E402
from kernel.calendar import TOKYO, CallingPolicy, CallingWindow  # noqa: E402
from kernel.coordination import LocalCoordination  # noqa: E402
from kernel.db import Database  # noqa: E402
from kernel.models import (  # noqa: E402
    Attempt,
    AttemptStatus,
    Campaign,
    CampaignStatus,
    Channel,
    ExclusionList,
    Person,
    Phone,
    PhoneKind,
)
from kernel.pii import KeyRing  # noqa: E402
from tests.fakes.memory_sink import MemorySink  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
START = datetime(2026, 12, 7, 9, 0, tzinfo=TOKYO)  # a Monday, window open all day
SECRET = "bench-secret-" + "b" * 40
CONTEXT = CallContext(
    municipality="架空市",
    municipality_kana="カクウシ",
    section="納税課",
    callback_number="03-1234-5678",
    name_kana="ベンチ タロウ",
)
TARGET_STARTS_PER_S = 200.0
TARGET_CONCURRENCY = 1000


class RecordingSink(MemorySink):
    """The IVR engine in memory; the ends of calls are kept for one batched write."""

    def __init__(self) -> None:
        super().__init__()
        self.finished: list[dict[str, object]] = []

    def on_call_event(self, event: CallEvent) -> list[Action]:
        key = event.attempt_key
        if key is not None and key not in self.calls:
            self.expect(key, CONTEXT)
        actions = super().on_call_event(event)
        if event.status is not None and event.status.is_final and key is not None:
            call = self.calls.pop(key)
            outcome = call.outcome.value if call.outcome else None
            self.finished.append(
                {
                    "k": key,
                    "result": carrier_result(event),
                    "outcome": outcome,
                    "ended": event.occurred_at,
                }
            )
        return actions

    def flush(self, database: Database) -> int:
        batch, self.finished = self.finished, []
        if not batch:
            return 0
        statement = (
            update(Attempt)
            .where(Attempt.idempotency_key == bindparam("k"))
            .values(
                status=AttemptStatus.COMPLETED,
                carrier_result=bindparam("result"),
                outcome_code=bindparam("outcome"),
                ended_at=bindparam("ended"),
            )
        )
        with database.unit_of_work() as session:
            session.connection().execute(statement, batch)
        return len(batch)


def seed(database: Database, keyring: KeyRing, targets: int) -> int:
    """A running campaign of ``targets`` persons, one mobile each, first attempts planned."""
    with database.unit_of_work() as session:
        campaign = Campaign(name="bench", created_by="bench")
        session.add(campaign)
        session.flush()
        campaign.wrapped_data_key = keyring.new_wrapped_data_key(campaign.id)
        cipher = keyring.cipher(campaign.wrapped_data_key, campaign.id)
        campaign_id = campaign.id
        sealed_pii = cipher.seal_record({"name_kana": "ベンチ"}, "pii")
        people = [
            {
                "campaign_id": campaign_id,
                "ref_digest": f"{n:064x}",
                "sealed_pii": sealed_pii,
                "channel": Channel.IVR,
            }
            for n in range(targets)
        ]
        ids: list[int] = []
        for start in range(0, targets, 5000):
            chunk = people[start : start + 5000]
            ids += session.scalars(
                insert(Person).returning(Person.id, sort_by_parameter_order=True), chunk
            ).all()
        phones = []
        for n, person_id in enumerate(ids):
            number = f"+8190{n:08d}"
            phones.append(
                {
                    "person_id": person_id,
                    "campaign_id": campaign_id,
                    "sealed_number": cipher.seal_text(number, "phone"),
                    "number_digest": f"{n:064x}",
                    "kind": PhoneKind.MOBILE,
                }
            )
        for start in range(0, len(phones), 5000):
            session.execute(insert(Phone), phones[start : start + 5000])
        session.add(ExclusionList(as_of=START, entry_count=0, file_sha256="0" * 64))
    window = CallingWindow(CallingPolicy.default())
    with database.unit_of_work() as session:
        campaigns.prepare(session, campaign_id, window, START, "bench")
        campaigns.move(session, campaign_id, CampaignStatus.RUNNING, "bench")
    return campaign_id


@dataclass
class Sample:
    starts: int = 0
    cpu: float = 0.0
    wall: float = 0.0
    concurrency: list[int] = field(default_factory=list)


def run(args: argparse.Namespace) -> Sample:
    workdir = Path(tempfile.mkdtemp(prefix="dialer-bench-"))
    url = args.database_url or f"sqlite:///{workdir / 'bench.sqlite3'}"
    database = Database(url)
    migrate.upgrade(database)
    keyring = KeyRing(SECRET)
    began = time.perf_counter()
    seed(database, keyring, args.targets)
    elapsed = time.perf_counter() - began
    sys.stderr.write(f"seeded {args.targets:,} targets in {elapsed:.1f} s\n")

    clock = SimulatedClock(START)
    sink = RecordingSink()
    carrier = SimulatedCarrier(sink, clock=clock, seed=5)
    pacer = Pacer(
        LocalCoordination(),
        carrier.name,
        max_concurrent_calls=args.concurrency,
        calls_per_second=100_000.0,
        hold_seconds=1800.0,
    )
    config = DispatcherConfig(
        worker_id="bench", claim_batch=args.claim_batch, check_chunk=args.check_chunk
    )
    window = CallingWindow(CallingPolicy.default())
    dispatcher = Dispatcher(database, carrier, clock, window, keyring, pacer, config)
    return measure(args, database, clock, sink, carrier, dispatcher)


def measure(
    args: argparse.Namespace,
    database: Database,
    clock: SimulatedClock,
    sink: RecordingSink,
    carrier: SimulatedCarrier,
    dispatcher: Dispatcher,
) -> Sample:
    sample = Sample()
    total = 0
    warm_cpu = warm_wall = 0.0
    step = timedelta(seconds=args.step)
    while total < args.warmup + args.starts:
        report = dispatcher.tick((Channel.IVR,))
        carrier.run_until(clock.now())
        sink.flush(database)
        clock.advance(step)
        total += report.placed
        if total >= args.warmup:
            if not warm_wall:
                warm_cpu, warm_wall, counted_from = time.process_time(), time.perf_counter(), total
            sample.concurrency.append(len(carrier.active_calls()))
        if report.claimed == 0 and not carrier.active_calls() and total < args.warmup:
            break
    sample.starts = total - counted_from
    sample.cpu = time.process_time() - warm_cpu
    sample.wall = time.perf_counter() - warm_wall
    return sample


def record(args: argparse.Namespace, sample: Sample) -> str:
    rate = sample.starts / sample.wall
    cpu_ms = sample.cpu * 1000 / max(1, sample.starts)
    mean_conc = statistics.fmean(sample.concurrency) if sample.concurrency else 0.0
    max_conc = max(sample.concurrency, default=0)
    backend = "PostgreSQL" if args.database_url else "SQLite (file, WAL)"
    held = args.concurrency >= TARGET_CONCURRENCY and mean_conc >= 0.95 * TARGET_CONCURRENCY
    verdict = "yes" if rate >= TARGET_STARTS_PER_S and held else "no"
    command = " ".join(["bench/dialer_throughput.py", *sys.argv[1:]])
    stamp = f"{datetime.now(UTC):%Y-%m-%d %H:%M}"
    uname = subprocess.run(["uname", "-a"], capture_output=True, text=True).stdout.strip()
    return "\n".join(
        [
            "",
            f"## dialer: call starts on one node, simulator ({stamp} UTC)",
            "",
            f"- machine: `{uname}`, nproc {os.cpu_count()}, load average at the end "
            f"{os.getloadavg()[0]:.1f} (other work shares the machine)",
            f"- command: `.venv/bin/python {command}`",
            f"- campaign: {args.targets:,} targets, {backend}, in-process coordination, "
            f"{args.concurrency:,} call slots, claim batch {args.claim_batch}, "
            f"interlocks read per {args.check_chunk} claims, "
            f"simulated step {args.step} s per tick",
            f"- measured: {sample.starts:,} call starts after {args.warmup:,} warm-up starts",
            "",
            "| call starts/s | CPU ms per call | concurrent calls mean | max | target met |",
            "|---|---|---|---|---|",
            f"| {rate:.0f} | {cpu_ms:.2f} | {mean_conc:.0f} | {max_conc} | {verdict} |",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", type=int, default=100_000)
    parser.add_argument("--starts", type=int, default=20_000, help="call starts measured")
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=1_000)
    parser.add_argument("--claim-batch", type=int, default=500)
    parser.add_argument("--check-chunk", type=int, default=100, help="interlock read batch")
    parser.add_argument("--step", type=float, default=1.0, help="simulated seconds per tick")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    section = record(args, run(args))
    sys.stdout.write(section + "\n")
    if not args.no_record:
        with RESULTS.open("a", encoding="utf-8") as handle:
            handle.write(section)


if __name__ == "__main__":
    main()
