"""Benchmark of the Twilio voice webhooks: 200 concurrent calls against one uvicorn worker.

    .venv/bin/python bench/ivr_webhook.py                  # 200 calls, records RESULTS.md
    .venv/bin/python bench/ivr_webhook.py --calls 50 --rounds 2 --no-record
    .venv/bin/python bench/ivr_webhook.py --sink memory    # the router alone (no database)

One uvicorn worker (a child process, loopback) serves ``twilio_router`` and, on the same
app, a trivial POST endpoint. Each simulated call steps the standard flow as Twilio does,
with signed form posts: the voice request on answer, key 1 (it is me), key 0 (end), then the
``completed`` status callback. Signatures are computed before the clock starts so the client
spends its CPU on sending, not on HMACs (the server still checks every one).

The sink (``--sink``):

* ``callsession`` (default): the production path. The router answers for the real
  :class:`~dialer.call_session.CallSession`, wired as ``dunning serve`` wires it
  (``dunning.wiring.build_services`` / ``build_telephony``: the settings' database, in-process
  coordination, the keyring) on a SQLite file database (WAL) in a temporary directory, so the
  reports of each pass of the event loop are saved together on the loop
  (``dialer.call_batches.LoopBatcher``), as ``dunning serve`` saves them there; migrated
  and seeded before the server starts: one running campaign, one target per simulated line
  (sealed PII, a mobile phone, a receivable) and one claimed IVR attempt per call the line
  makes; the client posts those attempts' keys. Every attempt must end ``completed`` with an
  outcome; the report lists them from the database afterwards.
* ``memory``: the in-memory sink (``tests.fakes.memory_sink.MemorySink``: the real IVR
  engine, no database), to see the router's own cost.

Two runs, each for the flow and then for the trivial endpoint with the same request count:

* paced: the calls start spread over ``--think-ms`` and each waits 0.5-1.5x ``--think-ms``
  between its requests (a resident pressing keys; real residents take seconds). Latency
  p50/p99 here is what a call experiences under a 200-call load. Target p99 <= 25 ms.
* saturated: no think time; requests/s is the worker's capacity. Target: the flow reaches at
  least 40 % of the trivial endpoint's requests/s. With one pair of runs of equal request
  counts (a trivial run of a quarter second), one neighbour's burst on this 2-core machine
  moved the share by +-15 points; so the trivial runs get 4x the requests (both halves last
  about a second), the pair (flow, then trivial) runs ``--repeats`` times and the verdict
  takes the median of the pairs' shares.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from twilio.request_validator import RequestValidator  # noqa: E402

if TYPE_CHECKING:
    from fastapi import APIRouter

    from dialer.ports import CallEvent
    from ivr_scripts import actions as act
    from kernel.settings import Settings

RESULTS = ROOT / "bench" / "RESULTS.md"
PUBLIC = "https://dunning.example.jp"
ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "bench-auth-token-0123456789abcdef"
P99_TARGET_MS = 25.0
THROUGHPUT_SHARE_TARGET = 0.40


# --- the server (child process) ------------------------------------------------------------


def bench_settings(database_url: str | None = None) -> Settings:
    """The settings of the benchmark's server: Twilio as the carrier, demo secrets."""
    from kernel.settings import load_settings

    extra = {"database_url": database_url} if database_url else {}
    return load_settings(
        environment="demo",
        carrier="twilio",
        public_base_url=PUBLIC,
        twilio={"account_sid": ACCOUNT, "auth_token": TOKEN},
        **extra,
    )


class NoLiveCalls:
    """The REST side is not exercised: no AMD verdict arrives in this flow."""

    def play_now(self, carrier_ref: str, twiml: str) -> None:
        del carrier_ref, twiml


def memory_router(inline_sink: bool) -> APIRouter:
    """``twilio_router`` over the in-memory sink (the real IVR engine, no database)."""
    from dialer.call_events import CallPhase
    from dialer.carriers.twilio_webhooks import twilio_router
    from tests.contract.scenarios import context
    from tests.fakes.memory_sink import MemorySink

    class BenchSink(MemorySink):
        """Expects every attempt key it has not seen (the bench has no dialer) and forgets
        ended calls, as the call session drops a call's context at its end."""

        def on_call_event(self, event: CallEvent) -> list[act.Action]:
            key = event.attempt_key
            if key and key not in self.calls:
                self.expect(key, context())
            actions: list[act.Action] = super().on_call_event(event)
            if key and self.calls[key].phase is CallPhase.ENDED:
                del self.calls[key]
                self._by_ref.pop(event.carrier_ref, None)
            return actions

    sink = BenchSink()
    return twilio_router(sink, bench_settings(), NoLiveCalls(), sink_blocks=not inline_sink)


def production_router(database_url: str) -> APIRouter:
    """``twilio_router`` over the real CallSession, wired as ``dunning serve`` wires it:
    the settings' database (SQLite file, WAL), in-process coordination, the keyring."""
    from dialer.carriers.twilio_webhooks import twilio_router
    from dunning.wiring import build_services, build_telephony

    services = build_services(bench_settings(database_url))
    telephony = build_telephony(services)
    return twilio_router(telephony.call_session, services.settings, live_calls=NoLiveCalls())


def serve(port: int, sink: str, inline_sink: bool, database_url: str | None) -> None:
    import uvicorn
    from fastapi.responses import PlainTextResponse

    from dialer.carriers.webhook_app import WebhooksFirst
    from kernel.collector import freeze_startup_objects

    if sink == "callsession":
        assert database_url, "the callsession sink needs --database-url"
        router = production_router(database_url)
    else:
        router = memory_router(inline_sink)
    # as ``dunning serve`` serves them (agent_console.app.create_console): the webhooks ahead
    # of the middleware; the trivial endpoint below is an ordinary FastAPI route
    app = WebhooksFirst(webhooks=[router])

    @app.post("/trivial")
    async def trivial() -> PlainTextResponse:
        return PlainTextResponse("ok")

    freeze_startup_objects()  # what ``dunning serve`` does once it has started
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        workers=1,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=60,
    )


# --- the database (callsession sink) ---------------------------------------------------------


def seed_database(database_url: str, calls: int, keys_per_call: list[str]) -> None:
    """A migrated database with one running campaign: ``calls`` targets (sealed PII, a mobile
    phone, a receivable), each with one claimed IVR attempt per key in ``keys_per_call``
    (attempt key ``{key}-{target}`` with the key's ``{i}`` filled in: the keys the client posts).
    """

    from kernel.db import Database
    from kernel.migrate import upgrade
    from kernel.models import Attempt, AttemptStatus, Channel
    from kernel.pii import KeyRing
    from tests.contract.seed import PII, add_target, running_campaign

    settings = bench_settings(database_url)
    keyring = KeyRing(settings.data_key_secret.get_secret_value())
    database = Database(database_url)
    upgrade(database)
    now = datetime.now(UTC)
    with database.unit_of_work() as session:
        campaign, cipher = running_campaign(session, keyring, name="ivr-bench", created_by="bench")
        for target in range(calls):
            pii = {**PII, "atena_no": str(100_000_000 + target)}
            number = "+8190" + str(10_000_000 + target)
            person, phone = add_target(
                session, keyring, cipher, campaign.id, pii=pii, number=number
            )
            for sequence, pattern in enumerate(keys_per_call, start=1):
                session.add(
                    Attempt(
                        campaign_id=campaign.id,
                        person_id=person.id,
                        phone_id=phone.id,
                        channel=Channel.IVR,
                        sequence_no=sequence,
                        status=AttemptStatus.CLAIMED,
                        scheduled_at=now,
                        idempotency_key=pattern.format(i=target),
                    )
                )
    database.dispose()


def attempt_key_patterns(rounds: int, repeats: int) -> list[str]:
    """The attempt keys of one simulated line (``{i}``: the line), as ``flow_calls`` posts them."""
    patterns = ["warm-{i}-0"]
    for tag in ("paced", *saturated_tags(repeats)):
        patterns += [f"{tag}-{{i}}-{r}" for r in range(rounds)]
    return patterns


#: The trivial endpoint answers ~4x faster: its saturated run gets 4x the requests, so that
#: both halves of a pair last about as long (a run of a quarter second swung by +-30%).
TRIVIAL_LENGTHENED = 4


def saturated_tags(repeats: int) -> list[str]:
    return [f"sat{k}" for k in range(repeats)]


def database_outcomes(database_url: str) -> dict[str, int]:
    """How the attempts ended (to check that every call was persisted)."""
    from sqlalchemy import func, select

    from kernel.db import Database
    from kernel.models import Attempt

    database = Database(database_url)
    try:
        with database.read_only() as session:
            rows = session.execute(
                select(Attempt.status, Attempt.outcome_code, func.count()).group_by(
                    Attempt.status, Attempt.outcome_code
                )
            ).all()
    finally:
        database.dispose()
    return {f"{status.value}/{outcome}": int(count) for status, outcome, count in rows}


# --- the client ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signed:
    path: str
    body: bytes
    headers: dict[str, str]


def _signed(validator: RequestValidator, path: str, params: dict[str, str]) -> Signed:
    signature = validator.compute_signature(PUBLIC + path, params)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": signature,
        "I-Twilio-Idempotency-Token": secrets.token_hex(12),
    }
    return Signed(path, urlencode(params).encode(), headers)


def call_steps(validator: RequestValidator, key: str) -> list[Signed]:
    """The signed requests Twilio sends for one call that confirms and then ends."""
    sid = "CA" + secrets.token_hex(16)
    base = {
        "CallSid": sid,
        "AccountSid": ACCOUNT,
        "From": "+81312345678",
        "To": "+8190" + str(secrets.randbelow(10**8)).zfill(8),
        "CallStatus": "in-progress",
        "Direction": "outbound-api",
        "ApiVersion": "2010-04-01",
    }
    gather = f"/twilio/voice?a={key}&ev=gather"
    return [
        _signed(validator, f"/twilio/voice?a={key}", base),
        _signed(validator, gather, {**base, "Digits": "1"}),
        _signed(validator, gather, {**base, "Digits": "0"}),
        _signed(
            validator,
            f"/twilio/status?a={key}",
            {**base, "CallStatus": "completed", "CallDuration": "35"},
        ),
    ]


def trivial_steps(count: int) -> list[Signed]:
    body = urlencode({"CallSid": "CA" + "0" * 32, "Digits": "1"}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    return [Signed("/trivial", body, headers) for _ in range(count)]


@dataclass(frozen=True)
class Figures:
    requests: int
    seconds: float
    latencies_ms: list[float]
    server_cpu_seconds: float | None = None

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def line(self, label: str) -> str:
        return (
            f"{label}: {self.requests} requests in {self.seconds:.2f} s = "
            f"{self.per_second:,.0f} req/s; p50 {self.quantile(0.50):.1f} ms, "
            f"p99 {self.quantile(0.99):.1f} ms, mean {statistics.fmean(self.latencies_ms):.1f} ms"
            + self.cpu_note()
        )

    @property
    def cpu_ms_per_request(self) -> float | None:
        if self.server_cpu_seconds is None:
            return None
        return self.server_cpu_seconds * 1000 / self.requests

    def cpu_note(self) -> str:
        cost = self.cpu_ms_per_request
        return "" if cost is None else f"; server CPU {cost:.2f} ms/request"


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of ``pid`` (Linux /proc), robust to other load on the machine."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Connection:
    """One keep-alive HTTP/1.1 connection: a minimal asyncio client.

    httpx's async client spent about seven times the server's CPU per request here, so with
    it the benchmark measured the client; this one writes a request and reads one response.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def post(self, step: Signed) -> int:
        head = [f"POST {step.path} HTTP/1.1", "Host: 127.0.0.1"]
        head += [f"{name}: {value}" for name, value in step.headers.items()]
        head.append(f"Content-Length: {len(step.body)}")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + step.body)
        await self.writer.drain()
        status_line, *lines = (await self.reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
        status = int(status_line.split()[1])
        length = 0
        for line in lines:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        if length:
            await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def _one_call(
    port: int, steps: list[Signed], think: float, out: list[float], pacing: random.Random
) -> None:
    connection = await Connection.open(port)
    try:
        if think:  # calls do not all start at the same instant
            await asyncio.sleep(pacing.uniform(0, think))
        for step in steps:
            started = time.perf_counter()
            status = await connection.post(step)
            out.append((time.perf_counter() - started) * 1000)
            if status >= 400:
                raise RuntimeError(f"{step.path}: HTTP {status}")
            if think:  # residents differ: 0.5x to 1.5x the think time
                await asyncio.sleep(think * pacing.uniform(0.5, 1.5))
    finally:
        await connection.close()


async def run(port: int, calls: list[list[Signed]], think: float) -> Figures:
    latencies: list[float] = []
    pacing = random.Random(20261125)
    started = time.perf_counter()
    await asyncio.gather(*(_one_call(port, s, think, latencies, pacing) for s in calls))
    return Figures(len(latencies), time.perf_counter() - started, latencies)


def flow_calls(count: int, rounds: int, tag: str) -> list[list[Signed]]:
    validator = RequestValidator(TOKEN)
    return [
        [s for r in range(rounds) for s in call_steps(validator, f"{tag}-{i}-{r}")]
        for i in range(count)
    ]


def trivial_calls(count: int, rounds: int) -> list[list[Signed]]:
    return [trivial_steps(4 * rounds) for _ in range(count)]


@dataclass
class Measured:
    """The paced runs, and the saturated runs repeated in pairs (flow, then trivial)."""

    paced: dict[str, Figures]
    flow: list[Figures]
    trivial: list[Figures]

    def pair_shares(self) -> list[float]:
        """Each saturated flow run's requests/s over the trivial run right after it: the two
        halves of a pair see the same machine, so a neighbour's burst skews one pair only."""
        return [f.per_second / t.per_second for f, t in zip(self.flow, self.trivial, strict=True)]


async def measure(
    port: int, server_pid: int, calls: int, rounds: int, think: float, repeats: int
) -> Measured:
    await run(port, flow_calls(calls, 1, "warm"), 0.0)  # threads, connections, caches
    await run(port, trivial_calls(calls, 1), 0.0)
    measured = Measured({}, [], [])
    for label, planned, pause in (
        ("paced flow", flow_calls(calls, rounds, "paced"), think),
        ("paced trivial", trivial_calls(calls, rounds), think),
    ):
        measured.paced[label] = await _timed(port, server_pid, planned, pause, label)
    for n, tag in enumerate(saturated_tags(repeats), start=1):
        flow = flow_calls(calls, rounds, tag)
        trivial = trivial_calls(calls, rounds * TRIVIAL_LENGTHENED)
        measured.flow.append(await _timed(port, server_pid, flow, 0.0, f"saturated flow #{n}"))
        label = f"saturated trivial #{n}"
        measured.trivial.append(await _timed(port, server_pid, trivial, 0.0, label))
    return measured


async def _timed(
    port: int, server_pid: int, planned: list[list[Signed]], pause: float, label: str
) -> Figures:
    cpu_before = process_cpu_seconds(server_pid)
    measured = await run(port, planned, pause)
    cpu_after = process_cpu_seconds(server_pid)
    if cpu_before is not None and cpu_after is not None:
        measured = replace(measured, server_cpu_seconds=cpu_after - cpu_before)
    print(measured.line(label), flush=True)  # noqa: T201
    return measured


# --- orchestration -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(port: int, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(Path(__file__).resolve()), "--serve", "--port", str(port)]
    command += ["--sink", args.sink]
    command += ["--inline-sink"] if args.inline_sink else []
    command += ["--database-url", args.database_url] if args.database_url else []
    server = subprocess.Popen(command, env=env, cwd=ROOT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.post(f"http://127.0.0.1:{port}/trivial", timeout=1)
            return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("the benchmark server did not start")


def report(measured: Measured, args: argparse.Namespace) -> list[str]:
    paced = measured.paced
    p99 = paced["paced flow"].quantile(0.99)
    lines = [paced[label].line(label) for label in paced]
    lines += [_saturated_line("saturated flow", measured.flow)]
    lines += [_saturated_line("saturated trivial", measured.trivial)]
    lines.append(
        f"paced flow p99 {p99:.1f} ms (target <= {P99_TARGET_MS:.0f} ms): "
        f"{'met' if p99 <= P99_TARGET_MS else 'NOT met'}"
    )
    shares = measured.pair_shares()
    share = statistics.median(shares)
    lines.append(
        f"saturated flow throughput = {share:.0%} of the trivial endpoint, the median of "
        f"{len(shares)} pairs ({', '.join(f'{s:.0%}' for s in shares)}) "
        f"(target >= {THROUGHPUT_SHARE_TARGET:.0%}): "
        f"{'met' if share >= THROUGHPUT_SHARE_TARGET else 'NOT met'}"
    )
    flow_cost = _median_cpu_ms(measured.flow)
    trivial_cost = _median_cpu_ms(measured.trivial)
    if flow_cost and trivial_cost:
        lines.append(
            f"by server CPU per request (median of the runs; other load inflates it less): "
            f"the flow costs {flow_cost:.2f} ms, the trivial endpoint {trivial_cost:.2f} ms, "
            f"a throughput share of {trivial_cost / flow_cost:.0%}"
        )
    return lines


def _saturated_line(label: str, runs: list[Figures]) -> str:
    rates = [run.per_second for run in runs]
    p99 = statistics.median(run.quantile(0.99) for run in runs)
    cost = _median_cpu_ms(runs)
    return (
        f"{label}, {len(runs)} runs of {runs[0].requests} requests: median "
        f"{statistics.median(rates):,.0f} req/s ({', '.join(f'{r:,.0f}' for r in rates)}); "
        f"median p99 {p99:.1f} ms"
        + ("" if cost is None else f"; median server CPU {cost:.2f} ms/request")
    )


def _median_cpu_ms(runs: list[Figures]) -> float | None:
    costs = [run.cpu_ms_per_request for run in runs]
    known = [cost for cost in costs if cost is not None]
    return statistics.median(known) if known else None


def sink_description(args: argparse.Namespace) -> str:
    if args.sink == "callsession":
        return (
            "the production path: twilio_router + the real CallSession wired as `dunning serve` "
            "wires it (dunning.wiring.build_services/build_telephony), SQLite file database "
            "(WAL) in a temporary directory, in-process coordination (the reports batched on "
            "the event loop); "
            f"{args.calls} targets with sealed PII, one claimed attempt per simulated call"
        )
    return "the in-memory MemorySink (real IVR engine, no database; CallSession not measured), " + (
        "called on the event loop (--inline-sink)"
        if args.inline_sink
        else "called through the thread pool as a database-backed sink is"
    )


def record(lines: list[str], args: argparse.Namespace) -> None:
    machine = f"{platform.uname().system} {platform.uname().release} {platform.machine()}"
    command = " ".join(["python", "bench/ivr_webhook.py", *sys.argv[1:]])
    section = [
        "",
        f"## ivr_webhook: Twilio voice webhooks ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"- machine: {machine}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"load average at the end {os.getloadavg()[0]:.1f} (other work shares the machine)",
        f"- command: `{command}`",
        f"- {args.calls} concurrent calls x {args.rounds} round(s), 4 signed requests per call "
        f"(answer, key 1, key 0, completed); think time {args.think_ms} ms in the paced run",
        "- one uvicorn worker on loopback; the client (another process) is a minimal asyncio "
        "HTTP/1.1 keep-alive client, one connection per call (httpx's async client cost ~7x "
        "the server's CPU per request on this machine and capped the figures)",
        f"- sink: {sink_description(args)}",
        "",
        *[f"- {line}" for line in lines],
        "",
    ]
    with RESULTS.open("a", encoding="utf-8") as out:
        out.write("\n".join(section))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="calls each simulated line makes")
    parser.add_argument("--think-ms", type=int, default=500)
    parser.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="saturated runs of the flow and of the trivial endpoint, alternated",
    )
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument(
        "--sink",
        choices=("callsession", "memory"),
        default="callsession",
        help="callsession: the production CallSession on SQLite (default); memory: MemorySink",
    )
    parser.add_argument(
        "--inline-sink",
        action="store_true",
        help="run the in-memory sink on the event loop (sink_blocks=False), not in threads",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--database-url", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.port, args.sink, args.inline_sink, args.database_url)
        return
    with tempfile.TemporaryDirectory(prefix="ivr-bench-") as scratch:
        if args.sink == "callsession":
            args.database_url = f"sqlite:///{scratch}/bench.db"
            patterns = attempt_key_patterns(args.rounds, args.repeats)
            seed_database(args.database_url, args.calls, patterns)
        lines = benchmark(args)
    print("\n".join(lines))  # noqa: T201
    if not args.no_record:
        record(lines, args)


def benchmark(args: argparse.Namespace) -> list[str]:
    port = free_port()
    server = start_server(port, args)
    try:
        think = args.think_ms / 1000
        measured = asyncio.run(
            measure(port, server.pid, args.calls, args.rounds, think, args.repeats)
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
    lines = report(measured, args)
    if args.database_url:
        outcomes = database_outcomes(args.database_url)
        lines.append(
            "attempts in the database afterwards (status/outcome: count): "
            + ", ".join(f"{name}: {count}" for name, count in sorted(outcomes.items()))
        )
    return lines


if __name__ == "__main__":
    main()
