"""Our FastAGI server against a client that behaves as Asterisk does (loopback sockets)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from dialer.carriers.fastagi import FastAgiServer
from dialer.carriers.tts import PromptStore
from dialer.ports import AnsweredBy, CallStatus
from ivr_scripts.model import OutcomeCode
from tests.contract.harness_asterisk import CAMPAIGN_ID, fake_tts_command
from tests.contract.scenarios import context
from tests.fakes.agi_client import HANG_UP, STALL, TIMEOUT, AgiTranscript, FakeAsteriskAgi
from tests.fakes.memory_sink import MemoryCall, MemorySink

KEY = "attempt-key-1"
REF = "dun-0123456789abcdef"


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def server(tmp_path: Path, sink: MemorySink) -> Iterator[FastAgiServer]:
    prompts = PromptStore(tmp_path, fake_tts_command())
    campaigns = {KEY: CAMPAIGN_ID}
    with FastAgiServer(sink, prompts, campaigns.get, port=0, operator_dial="PJSIP/ops") as agi:
        yield agi


def run_call(
    server: FastAgiServer, sink: MemorySink, keypad: list[str], **options: object
) -> tuple[MemoryCall, AgiTranscript]:
    call = sink.expect(KEY, options.pop("ctx", context()))  # type: ignore[arg-type]
    client = FakeAsteriskAgi(
        "127.0.0.1",
        server.port,
        uniqueid=REF,
        variables={"DUNNING_ATTEMPT": KEY, "DUNNING_AMD": "1"},
        args=(str(options.pop("amd", "HUMAN")),),
        keypad=keypad,
        **options,  # type: ignore[arg-type]
    )
    finished = server.sessions_finished
    transcript = client.run()
    _wait(lambda: server.sessions_finished > finished)
    return call, transcript


def _wait(condition: object, timeout: float = 5.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def final_statuses(call: MemoryCall) -> list[CallStatus]:
    return [e.status for e in call.events if e.status is not None and e.status.is_final]


def test_answered_call_runs_the_flow_and_hangs_up(server: FastAgiServer, sink: MemorySink) -> None:
    call, transcript = run_call(server, sink, ["1", "0"])
    assert call.outcome is OutcomeCode.RPC_CONFIRMED
    first = call.events[0]
    assert (first.status, first.answered_by, first.attempt_key) == (
        CallStatus.IN_PROGRESS,
        AnsweredBy.HUMAN,
        KEY,
    )
    assert transcript.commands[0] == "GET VARIABLE DUNNING_ATTEMPT"
    assert transcript.commands[-1] == "HANGUP"
    assert transcript.ended_by == "server-hangup"
    assert final_statuses(call) == [CallStatus.COMPLETED]
    assert call.carrier_result == "completed"


def test_say_streams_a_campaign_prompt_and_gather_uses_get_data(
    server: FastAgiServer, sink: MemorySink, tmp_path: Path
) -> None:
    _, transcript = run_call(server, sink, ["2", TIMEOUT])
    stream = next(c for c in transcript.commands if c.startswith("STREAM FILE"))
    folder = tmp_path / "tts" / f"campaign-{CAMPAIGN_ID}"
    path = stream.split()[2]
    assert path.startswith(str(folder.absolute())) and stream.endswith(' ""')
    assert Path(path + ".wav").is_file()
    get_data = next(c for c in transcript.commands if c.startswith("GET DATA"))
    assert get_data.split()[3:] == ["6000", "1"]  # timeout ms, max digits
    assert "ヤマダ" not in " ".join(transcript.commands)


def test_timeout_is_no_input(server: FastAgiServer, sink: MemorySink) -> None:
    call, _ = run_call(server, sink, [TIMEOUT, TIMEOUT])
    assert call.outcome is OutcomeCode.NO_INPUT
    assert [e.no_input for e in call.events[1:3]] == [True, True]


def test_machine_verdict_from_amd_argument(server: FastAgiServer, sink: MemorySink) -> None:
    call, transcript = run_call(server, sink, [], amd="MACHINE")
    assert call.events[0].answered_by is AnsweredBy.MACHINE
    assert call.outcome is OutcomeCode.MACHINE
    assert transcript.commands[-1] == "HANGUP"


def test_resident_hangs_up_mid_get_data(server: FastAgiServer, sink: MemorySink) -> None:
    call, transcript = run_call(server, sink, [HANG_UP])
    assert transcript.ended_by == "resident"
    assert call.outcome is OutcomeCode.HANGUP_BEFORE_CONFIRM
    assert final_statuses(call) == [CallStatus.COMPLETED]
    assert call.events[-1].raw == {"agi": "hangup"}


def test_hangup_during_a_stream_file_command(server: FastAgiServer, sink: MemorySink) -> None:
    call, transcript = run_call(server, sink, ["1"], hang_up_at_command=2)
    assert transcript.commands[1].startswith("STREAM FILE")
    assert call.outcome is OutcomeCode.HANGUP_BEFORE_CONFIRM
    assert final_statuses(call) == [CallStatus.COMPLETED]


@pytest.mark.parametrize(
    "reply",
    [
        "510 Invalid or unknown command\n",
        "520-Invalid command syntax.  Proper usage follows:\nUsage: STREAM FILE\n"
        "520 End of proper usage.\n",
        "this is not AGI\n",
        "200 no result here\n",
    ],
    ids=["510", "520", "garbage", "200-without-result"],
)
def test_protocol_errors_end_the_call_as_failed(
    server: FastAgiServer, sink: MemorySink, reply: str
) -> None:
    call, transcript = run_call(server, sink, ["1"], replies={2: reply})
    assert final_statuses(call) == [CallStatus.FAILED]
    assert call.events[-1].raw == {"agi": "agi-protocol"}
    # the server survives and serves the next channel normally
    second = MemorySink()
    server.sink = second
    again, _ = run_call(server, second, ["1", "0"])
    assert again.outcome is OutcomeCode.RPC_CONFIRMED


def test_transfer_dials_the_operator(server: FastAgiServer, sink: MemorySink) -> None:
    ctx = replace(context(), operator_available=True)
    call, transcript = run_call(server, sink, ["1", "1"], ctx=ctx)
    assert "SET VARIABLE DUNNING_TRANSFER operator" in transcript.commands
    assert "EXEC Dial PJSIP/ops" in transcript.commands
    assert any(e.transfer_ok is True for e in call.events)
    assert call.outcome is OutcomeCode.TRANSFERRED


def test_failed_transfer_reports_it(server: FastAgiServer, sink: MemorySink) -> None:
    ctx = replace(context(), operator_available=True)
    call, _ = run_call(server, sink, ["1", "1", TIMEOUT, TIMEOUT], ctx=ctx, dial_status="BUSY")
    assert any(e.transfer_ok is False for e in call.events)


def test_tts_failure_ends_the_call_politely(
    tmp_path: Path, sink: MemorySink, caplog: pytest.LogCaptureFixture
) -> None:
    failing = [sys.executable, "-c", "import sys; sys.exit(3)", "{out}", "{text}"]
    prompts = PromptStore(tmp_path, failing)
    with FastAgiServer(sink, prompts, {KEY: CAMPAIGN_ID}.get, port=0) as server:
        with caplog.at_level(logging.DEBUG):
            call, transcript = run_call(server, sink, ["1"])
    assert transcript.commands[-2:] == ['STREAM FILE vm-goodbye ""', "HANGUP"]
    assert final_statuses(call) == [CallStatus.FAILED]
    assert call.events[-1].raw == {"agi": "tts-failed"}
    assert "exit status 3" in caplog.text
    assert "ヤマダ" not in caplog.text and "みどり" not in caplog.text


def test_unknown_campaign_ends_politely(tmp_path: Path, sink: MemorySink) -> None:
    prompts = PromptStore(tmp_path, fake_tts_command())
    with FastAgiServer(sink, prompts, lambda key: None, port=0) as server:
        call, transcript = run_call(server, sink, ["1"])
    assert transcript.commands[-1] == "HANGUP"
    assert final_statuses(call) == [CallStatus.FAILED]
    assert not (tmp_path / "tts").exists()


def test_a_reply_that_never_comes_times_out(tmp_path: Path, sink: MemorySink) -> None:
    prompts = PromptStore(tmp_path, fake_tts_command())
    campaigns = {KEY: CAMPAIGN_ID}
    with FastAgiServer(sink, prompts, campaigns.get, port=0, command_timeout=0.3) as server:
        call, transcript = run_call(server, sink, ["1"], replies={2: STALL})
    assert final_statuses(call) == [CallStatus.FAILED]
    assert transcript.commands[-1] == "HANGUP"
