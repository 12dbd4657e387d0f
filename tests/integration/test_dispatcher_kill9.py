"""kill -9 of a real dialer process, again and again: no number is ever called twice.

Each round starts ``tests.integration.kill9_worker`` in its own process, lets it dial for a
random moment and kills it with SIGKILL, wherever it is (claiming, between the carrier's
``place_call`` and the database write, reconciling). The carrier's ledger, fsynced before each
call is reported placed, is the ground truth. The whole run spans less simulated time than
the no-answer retry interval (4 h), so every number may be called at most once.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from kernel.db import Database
from tests.fakes.dialer_world import Target, World
from tests.integration.kill9_worker import read_ledger

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 6


def _run_and_kill(url: str, folder: Path, seconds: float) -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.kill9_worker", url, str(folder)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(seconds)
        assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)


def test_killing_the_dialer_never_calls_a_number_twice(database: Database, tmp_path: Path) -> None:
    world = World(database)
    world.exclusion_list()
    world.campaign([Target() for _ in range(300)])
    chance = random.Random(20261125)

    for _ in range(ROUNDS):
        _run_and_kill(database.url, tmp_path, chance.uniform(0.8, 2.0))

    ledger = read_ledger(tmp_path / "ledger.jsonl")
    assert len(ledger) >= 10, "the dialer placed too few calls for the test to mean anything"
    span = max(e.at for e in ledger) - min(e.at for e in ledger)
    assert span.total_seconds() < 4 * 3600
    per_key = Counter(e.key for e in ledger)
    per_number = Counter(e.to for e in ledger)
    twice = [e.key for e in ledger if per_key[e.key] > 1 or per_number[e.to] > 1]
    assert not twice, f"placed twice within the retry interval: {twice}"
