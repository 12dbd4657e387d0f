"""Our FastAGI server (asyncio): runs the IVR on an answered Asterisk channel.

Asterisk connects (``AGI(agi://host:port/dunning,${AMDSTATUS})``) and sends the ``agi_``
header block; we read ``DUNNING_ATTEMPT`` with ``GET VARIABLE`` and report the answer to the
sink (``in-progress``; ``agi_arg_1`` is the AMD verdict: ``MACHINE`` -> machine, ``HUMAN``
-> human, else unknown). The IVR actions the sink returns become AGI commands:

* ``Say`` -> ``STREAM FILE <tts prompt> ""`` (no escape digits), except that the ``Say``
  right before a ``Gather`` becomes the prompt of ``GET DATA``, so a key pressed while the
  question is spoken is taken (barge-in);
* ``Gather`` -> ``GET DATA <prompt> <timeout ms> [<max digits>]``: ``result=<digits>`` is
  input, ``result= (timeout)`` with no digits is ``no_input``;
* ``Transfer`` -> ``SET VARIABLE DUNNING_TRANSFER operator``, ``EXEC Dial`` to
  ``asterisk.operator_dial``, then ``DIALSTATUS`` says whether the transfer worked;
* ``Hangup`` -> ``HANGUP``.

A ``HANGUP`` line from Asterisk, a closed connection, ``511`` (dead channel) or ``-1``
results end the session; the sink then gets ``completed``. ``510``/``520`` replies and
garbage lines are protocol errors: we hang up and report ``failed``. If a prompt cannot be
made (TTS failure, unknown campaign) the call ends politely: the fixed stock prompt
``asterisk.fallback_prompt`` is played, then ``HANGUP``, and the sink gets ``failed``. Speech
input is not supported. Logs name the channel's unique id, never what was said or keyed.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from dialer.carriers.tts import PromptStore, TtsError
from dialer.ports import AnsweredBy, CallEvent, CallEventSink, CallStatus
from ivr_scripts.actions import Gather, Hangup, Say, Transfer

if TYPE_CHECKING:
    from ivr_scripts.actions import Action

log = logging.getLogger(__name__)

REPLY = re.compile(r"^(\d{3})([ -])(.*)$")
RESULT = re.compile(r"^result=(\S*)(?:\s+\((.*?)\))?(?:\s+endpos=(\d+))?")
AMD_VERDICTS = {"MACHINE": AnsweredBy.MACHINE, "HUMAN": AnsweredBy.HUMAN}
CampaignLookup = Callable[[str], int | None]


class ChannelHungUp(Exception):
    """Asterisk reported the hangup (``HANGUP`` line, EOF, 511 or result -1)."""


class AgiProtocolError(Exception):
    """Asterisk answered with 510/520 or something that is not an AGI reply."""


@dataclass(frozen=True)
class AgiReply:
    code: int
    result: str = ""
    data: str | None = None
    endpos: int | None = None


def parse_reply(line: str) -> AgiReply:
    """One ``200 result=<n> [(data)] [endpos=<n>]`` line; other codes raise."""
    match = REPLY.match(line)
    if match is None:
        raise AgiProtocolError(f"not an AGI reply ({len(line)} chars)")
    code = int(match.group(1))
    if code == 511:
        raise ChannelHungUp("511 dead channel")
    if code != 200:
        raise AgiProtocolError(f"AGI error {code}: {match.group(3)[:80]}")
    result = RESULT.match(match.group(3))
    if result is None:
        raise AgiProtocolError("200 reply without result=")
    endpos = int(result.group(3)) if result.group(3) else None
    return AgiReply(200, result.group(1), result.group(2), endpos)


@dataclass(frozen=True)
class PlayPrompt:
    text: str


@dataclass(frozen=True)
class ReadDigits:
    prompt: str | None
    timeout_ms: int
    max_digits: int | None


@dataclass(frozen=True)
class DialOperator:
    pass


@dataclass(frozen=True)
class EndCall:
    pass


AgiStep = PlayPrompt | ReadDigits | DialOperator | EndCall


def render(actions: list[Action]) -> list[AgiStep]:
    """The AGI steps for the engine's actions (outcome bookkeeping actions are not ours)."""
    steps: list[AgiStep] = []
    for action in actions:
        if isinstance(action, Say):
            steps.append(PlayPrompt(action.text))
        elif isinstance(action, Gather):
            prompt = steps.pop() if steps and isinstance(steps[-1], PlayPrompt) else None
            text = prompt.text if isinstance(prompt, PlayPrompt) else None
            steps.append(ReadDigits(text, action.timeout_s * 1000, action.num_digits))
        elif isinstance(action, Transfer):
            steps.append(DialOperator())
        elif isinstance(action, Hangup):
            steps.append(EndCall())
    return steps


def quote(argument: str) -> str:
    """An AGI command argument, double-quoted when it holds spaces or quotes."""
    if argument and not re.search(r'[\s"\\]', argument):
        return argument
    return '"' + argument.replace("\\", "\\\\").replace('"', '\\"') + '"'


class AgiChannel:
    """The command/reply conversation on one FastAGI connection."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout

    async def read_environment(self) -> dict[str, str]:
        env: dict[str, str] = {}
        while True:
            line = await self._line(self.timeout)
            if not line:
                return env
            key, sep, value = line.partition(":")
            if not sep or not key.startswith("agi_"):
                raise AgiProtocolError("malformed agi_ header line")
            env[key.strip()] = value.strip()

    async def command(self, text: str, *, unbounded: bool = False) -> AgiReply:
        """Send one command and read its reply (``unbounded``: no read timeout, e.g. Dial)."""
        self.writer.write(text.encode() + b"\n")
        await self.writer.drain()
        line = await self._line(None if unbounded else self.timeout)
        if line.startswith("520-"):
            while not line.startswith("520 "):
                line = await self._line(self.timeout)
        reply = parse_reply(line)
        if reply.result == "-1":
            raise ChannelHungUp("result -1")
        return reply

    async def get_variable(self, name: str) -> str | None:
        reply = await self.command(f"GET VARIABLE {name}")
        return reply.data if reply.result == "1" else None

    async def _line(self, timeout: float | None) -> str:
        raw = await asyncio.wait_for(self.reader.readline(), timeout)
        if not raw:
            raise ChannelHungUp("connection closed")
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if line.strip() == "HANGUP":
            raise ChannelHungUp("HANGUP")
        return line


@dataclass
class AgiCall:
    """One answered call: identity, campaign (for prompt files) and the events so far."""

    channel: AgiChannel
    carrier_ref: str
    attempt_key: str | None
    answered_by: AnsweredBy = AnsweredBy.UNKNOWN
    campaign_id: int | None = None
    ended: bool = False

    def event(self, **fields: object) -> CallEvent:
        return CallEvent(
            carrier_ref=self.carrier_ref,
            occurred_at=datetime.now(UTC),
            attempt_key=self.attempt_key,
            **fields,  # type: ignore[arg-type]
        )


class FastAgiServer:
    """Serves FastAGI on ``host:port`` in its own thread and event loop."""

    def __init__(
        self,
        sink: CallEventSink,
        prompts: PromptStore,
        campaign_of: CampaignLookup,
        *,
        host: str = "127.0.0.1",
        port: int = 4573,
        operator_dial: str = "PJSIP/operators",
        fallback_prompt: str = "vm-goodbye",
        command_timeout: float = 300.0,
    ) -> None:
        self.sink = sink
        self.prompts = prompts
        self.campaign_of = campaign_of
        self.host = host
        self.port = port
        self.operator_dial = operator_dial
        self.fallback_prompt = fallback_prompt
        self.command_timeout = command_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.sessions_finished = 0

    def start(self) -> FastAgiServer:
        """Bind and serve in a background thread; ``port=0`` picks a free port."""
        self._thread = threading.Thread(target=self._run, name="fastagi", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._server is None:
            raise OSError(f"FastAGI server could not listen on {self.host}:{self.port}")
        return self

    def stop(self) -> None:
        """Stop listening, end the sessions still running, and stop the loop's thread."""
        loop = self._loop
        if loop is not None and self._server is not None and loop.is_running():
            done = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            try:
                done.result(timeout=5)
            except (TimeoutError, asyncio.CancelledError):
                log.warning("FastAGI sessions did not end in time")
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        current = asyncio.current_task()
        sessions = [task for task in asyncio.all_tasks() if task is not current]
        for task in sessions:
            task.cancel()
        await asyncio.gather(*sessions, return_exceptions=True)

    def __enter__(self) -> FastAgiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._serve, self.host, self.port)
            )
            self.port = self._server.sockets[0].getsockname()[1]
        except OSError:
            log.exception("FastAGI server could not bind")
            self._ready.set()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        channel = AgiChannel(reader, writer, self.command_timeout)
        call: AgiCall | None = None
        try:
            call = await self._answer(channel)
            await self._converse(call)
        except ChannelHungUp:
            await self._report_end(call, CallStatus.COMPLETED, "hangup")
        except (AgiProtocolError, TimeoutError, UnicodeError) as error:
            log.warning("FastAGI protocol error on %s: %s", _ref(call), error)
            await self._hang_up_quietly(channel)
            await self._report_end(call, CallStatus.FAILED, "agi-protocol")
        except (ConnectionError, OSError):
            await self._report_end(call, CallStatus.COMPLETED, "connection-lost")
        except Exception:
            log.exception("FastAGI session on %s failed", _ref(call))
            await self._hang_up_quietly(channel)
            await self._report_end(call, CallStatus.FAILED, "internal-error")
        finally:
            writer.close()
            self.sessions_finished += 1

    async def _answer(self, channel: AgiChannel) -> AgiCall:
        env = await channel.read_environment()
        ref = env.get("agi_uniqueid", "")
        if not ref:
            raise AgiProtocolError("no agi_uniqueid")
        key = await channel.get_variable("DUNNING_ATTEMPT")
        verdict = AMD_VERDICTS.get(env.get("agi_arg_1", "").upper(), AnsweredBy.UNKNOWN)
        call = AgiCall(channel, ref, key, answered_by=verdict)
        if key is not None:
            call.campaign_id = await asyncio.to_thread(self.campaign_of, key)
        return call

    async def _converse(self, call: AgiCall) -> None:
        status = CallStatus.IN_PROGRESS
        event: CallEvent | None = call.event(status=status, answered_by=call.answered_by)
        while event is not None:
            actions = await asyncio.to_thread(self.sink.on_call_event, event)
            event = await self._perform(call, render(actions))
        await self._report_end(call, CallStatus.COMPLETED, "ivr-hangup")

    async def _perform(self, call: AgiCall, steps: list[AgiStep]) -> CallEvent | None:
        """Run the steps; the event they produced (input, timeout, transfer) or None at end."""
        try:
            for step in steps:
                if isinstance(step, PlayPrompt):
                    prompt = await self._prompt(call, step.text)
                    await call.channel.command(f'STREAM FILE {prompt} ""')
                elif isinstance(step, ReadDigits):
                    return await self._read_digits(call, step)
                elif isinstance(step, DialOperator):
                    return await self._dial_operator(call)
                else:
                    await call.channel.command("HANGUP")
                    return None
        except TtsError as error:
            log.error("prompt unavailable on %s: %s", call.carrier_ref, error)
            await call.channel.command(f'STREAM FILE {quote(self.fallback_prompt)} ""')
            await call.channel.command("HANGUP")
            await self._report_end(call, CallStatus.FAILED, "tts-failed")
            return None
        if steps:
            log.warning("flow left %s with nothing to wait for; hanging up", call.carrier_ref)
        await call.channel.command("HANGUP")
        return None

    async def _prompt(self, call: AgiCall, text: str | None) -> str:
        """The STREAM FILE / GET DATA file argument (path without extension) for ``text``."""
        if text is None:
            return "silence/1"
        if call.campaign_id is None:
            raise TtsError("no campaign known for this call; prompts cannot be made")
        path = await asyncio.to_thread(self.prompts.prompt_for, call.campaign_id, text)
        return quote(str(Path(path).absolute().with_suffix("")))

    async def _read_digits(self, call: AgiCall, step: ReadDigits) -> CallEvent:
        prompt = await self._prompt(call, step.prompt)
        command = f"GET DATA {prompt} {step.timeout_ms}"
        if step.max_digits is not None:
            command += f" {step.max_digits}"
        reply = await call.channel.command(command)
        digits = "".join(ch for ch in reply.result if ch in "0123456789*#")
        if digits:
            return call.event(digits=digits)
        return call.event(no_input=True)

    async def _dial_operator(self, call: AgiCall) -> CallEvent:
        channel = call.channel
        await channel.command("SET VARIABLE DUNNING_TRANSFER operator")
        # the reply comes when the operator's conversation ends: no read timeout
        await channel.command(f"EXEC Dial {quote(self.operator_dial)}", unbounded=True)
        status = await channel.get_variable("DIALSTATUS")
        return call.event(transfer_ok=status == "ANSWER", raw={"dialstatus": status or ""})

    async def _report_end(self, call: AgiCall | None, status: CallStatus, why: str) -> None:
        if call is None or call.ended:
            return
        call.ended = True
        event = call.event(status=status, raw={"agi": why})
        try:
            await asyncio.to_thread(self.sink.on_call_event, event)
        except Exception:
            log.exception("sink refused the end of %s", call.carrier_ref)

    @staticmethod
    async def _hang_up_quietly(channel: AgiChannel) -> None:
        try:
            channel.writer.write(b"HANGUP\n")
            await channel.writer.drain()
        except (ConnectionError, OSError):
            pass


def _ref(call: AgiCall | None) -> str:
    return call.carrier_ref if call is not None else "(before agi_uniqueid)"
