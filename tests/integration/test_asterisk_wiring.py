"""build_asterisk from settings: the real CallSession as sink, prompts filed per campaign."""

from __future__ import annotations

from pathlib import Path

import pytest

from dialer.call_session import CallSession
from dialer.carriers.asterisk import attempt_campaigns, build_asterisk, channel_id_for
from dialer.ports import CallRequest
from kernel.coordination import LocalCoordination
from kernel.db import Database
from kernel.models import Attempt
from kernel.pii import KeyRing
from kernel.settings import load_settings
from tests.contract.harness_asterisk import fake_tts_command, harness_settings
from tests.contract.seed import CALLER_ID, MASTER_SECRET, RESIDENT_E164, seed_campaign
from tests.fakes.agi_client import FakeAsteriskAgi
from tests.fakes.ami_server import FakeAmiServer, FakeChannel

pytestmark = pytest.mark.filterwarnings("ignore:notifyAll:DeprecationWarning")


def test_attempt_campaigns_reads_the_attempt(database: Database) -> None:
    seeded = seed_campaign(database, KeyRing(MASTER_SECRET), ["one"])
    lookup = attempt_campaigns(database)
    assert lookup(seeded.attempt_keys["one"]) == seeded.campaign_id
    assert lookup("no-such-attempt") is None


def test_a_call_through_the_wired_stack(database: Database, tmp_path: Path) -> None:
    keyring = KeyRing(MASTER_SECRET)
    seeded = seed_campaign(database, keyring, ["call"])
    key = seeded.attempt_keys["call"]
    with FakeAmiServer() as ami:
        asterisk = harness_settings(ami, 4573).model_copy(
            update={"tts_command": fake_tts_command(), "agi_port": 0}
        )
        settings = load_settings(
            environment="demo", database_url=database.url, var_dir=tmp_path, asterisk=asterisk
        )
        sink = CallSession(database, LocalCoordination(), keyring, settings)
        stack = build_asterisk(settings, sink, database).start()
        try:
            port = stack.agi.port

            def answer(server: FakeAmiServer, channel: FakeChannel) -> None:
                server.answer(channel)
                client = FakeAsteriskAgi(
                    "127.0.0.1",
                    port,
                    uniqueid=channel.uniqueid,
                    variables=channel.originate.variables,
                    args=("HUMAN",),
                    keypad=["1", "0"],
                )
                client.run()
                server.hang_up_channel(channel, 16)

            ami.behaviour = answer
            request = CallRequest(seeded.attempt_ids["call"], key, RESIDENT_E164, CALLER_ID, 30)
            handle = stack.carrier.place_call(request)
            assert handle.carrier_ref == channel_id_for(key)
            for thread in ami.call_threads:
                thread.join(timeout=15)
            _wait_final(stack.carrier.ledger.get(handle.carrier_ref))
        finally:
            stack.close()
    with database.read_only() as session:
        attempt = session.get(Attempt, seeded.attempt_ids["call"])
        assert attempt is not None
        assert attempt.outcome_code == "rpc_confirmed"
    prompts = list((tmp_path / "tts" / f"campaign-{seeded.campaign_id}").glob("*.wav"))
    assert prompts, "prompts are filed under the attempt's campaign"


def _wait_final(call: object) -> None:
    import time

    deadline = time.monotonic() + 10
    while not getattr(call, "final", False):
        assert time.monotonic() < deadline
        time.sleep(0.01)
