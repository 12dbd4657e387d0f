"""A FastAGI client that behaves as Asterisk does on an answered channel.

It connects to the FastAGI server, sends the ``agi_`` environment block and a blank line,
then answers each command with the reply Asterisk gives: ``STREAM FILE`` ->
``200 result=0 endpos=<n>``, ``GET DATA`` -> ``200 result=<digits>`` or
``200 result= (timeout)``, ``GET VARIABLE`` -> ``200 result=1 (<value>)`` or
``200 result=0``, ``HANGUP`` -> ``200 result=1``, unknown verbs -> ``510``, missing
arguments -> the multi-line ``520`` usage reply. The resident's part is a list of keypad
answers, one per ``GET DATA``: digits, :data:`TIMEOUT` or :data:`HANG_UP` (Asterisk then
writes ``HANGUP`` and ``200 result=-1`` and closes, as with ``AGISIGHUP`` on).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

TIMEOUT = "<timeout>"
HANG_UP = "<hangup>"
STALL = "<stall>"  # a reply override: never answer this command (Asterisk stuck)
USAGE_520 = (
    "520-Invalid command syntax.  Proper usage follows:\n"
    "Usage: GET DATA <file to be streamed> [timeout] [maxdigits]\n"
    "520 End of proper usage.\n"
)


@dataclass
class AgiTranscript:
    """What the client saw: every command, and who ended the session."""

    commands: list[str] = field(default_factory=list)
    ended_by: str = ""  # "server-hangup", "resident", "server-closed", "client-abort"

    def verbs(self) -> list[str]:
        return [" ".join(c.split()[:2]) for c in self.commands]


class FakeAsteriskAgi:
    """One channel's FastAGI session; ``run()`` blocks until the session ends."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        uniqueid: str,
        channel: str = "PJSIP/trunk-00000001",
        variables: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        keypad: Sequence[str] = (),
        dial_status: str = "ANSWER",
        replies: Mapping[int, str] | None = None,
        hang_up_at_command: int | None = None,
        on_keypress: Callable[[str], None] | None = None,
    ) -> None:
        self.address = (host, port)
        self.uniqueid = uniqueid
        self.channel = channel
        self.variables = dict(variables or {})
        self.args = tuple(args)
        self.keypad = list(keypad)
        self.dial_status = dial_status
        self.replies = dict(replies or {})
        self.hang_up_at_command = hang_up_at_command
        self.on_keypress = on_keypress
        self.hangup_requested = threading.Event()
        self.transcript = AgiTranscript()

    def environment(self) -> str:
        env = {
            "agi_network": "yes",
            "agi_network_script": "dunning",
            "agi_request": f"agi://{self.address[0]}:{self.address[1]}/dunning",
            "agi_channel": self.channel,
            "agi_language": "ja",
            "agi_type": "PJSIP",
            "agi_uniqueid": self.uniqueid,
            "agi_version": "18.20.0",
            "agi_callerid": "0120000000",
            "agi_calleridname": "unknown",
            "agi_callingpres": "0",
            "agi_callingani2": "0",
            "agi_callington": "0",
            "agi_callingtns": "0",
            "agi_dnid": "unknown",
            "agi_rdnis": "unknown",
            "agi_context": "dunning-outbound",
            "agi_extension": "s",
            "agi_priority": "3",
            "agi_enhanced": "0.0",
            "agi_accountcode": "",
            "agi_threadid": "140523456789",
        }
        for number, value in enumerate(self.args, start=1):
            env[f"agi_arg_{number}"] = value
        return "".join(f"{key}: {value}\n" for key, value in env.items()) + "\n"

    def run(self) -> AgiTranscript:
        with socket.create_connection(self.address, timeout=10) as sock:
            stream = sock.makefile("rwb", buffering=0)
            stream.write(self.environment().encode())
            try:
                self._converse(stream)
            except (ConnectionError, OSError):
                self.transcript.ended_by = self.transcript.ended_by or "server-closed"
        return self.transcript

    def _converse(self, stream: socket.SocketIO) -> None:
        while True:
            raw = stream.readline()
            if not raw:
                self.transcript.ended_by = self.transcript.ended_by or "server-closed"
                return
            command = raw.decode().rstrip("\r\n")
            self.transcript.commands.append(command)
            number = len(self.transcript.commands)
            if self.hangup_requested.is_set() or number == self.hang_up_at_command:
                self._hang_up(stream)
                return
            reply = self.replies.get(number) or self._reply(command)
            if reply == HANG_UP:
                self._hang_up(stream)
                return
            if reply == STALL:
                continue
            stream.write(reply.encode())
            if command.strip().upper() == "HANGUP":
                self.transcript.ended_by = "server-hangup"
                return

    def _hang_up(self, stream: socket.SocketIO) -> None:
        """The resident puts the phone down while a command runs."""
        stream.write(b"HANGUP\n200 result=-1\n")
        self.transcript.ended_by = "resident"

    def _reply(self, command: str) -> str:
        words = command.split()
        verb = " ".join(words[:2]).upper()
        if verb == "STREAM FILE":
            return "200 result=0 endpos=48000\n" if len(words) >= 4 else USAGE_520
        if verb == "GET DATA":
            return self._get_data(words)
        if verb == "GET VARIABLE":
            value = self.variables.get(words[2]) if len(words) > 2 else None
            return f"200 result=1 ({value})\n" if value is not None else "200 result=0\n"
        if verb == "SET VARIABLE":
            if len(words) > 3:
                self.variables[words[2]] = words[3]
            return "200 result=1\n"
        if verb.startswith("EXEC DIAL"):
            self.variables["DIALSTATUS"] = self.dial_status
            return "200 result=0\n"
        if verb.startswith("HANGUP") or verb.startswith("ANSWER"):
            return "200 result=1\n" if verb.startswith("HANGUP") else "200 result=0\n"
        return "510 Invalid or unknown command\n"

    def _get_data(self, words: list[str]) -> str:
        if len(words) < 3:
            return USAGE_520
        answer = self.keypad.pop(0) if self.keypad else HANG_UP
        if answer == HANG_UP:
            return HANG_UP
        if answer == TIMEOUT:
            return "200 result= (timeout)\n"
        if self.on_keypress is not None:
            self.on_keypress(answer)
        return f"200 result={answer}\n"
