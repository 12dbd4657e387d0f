"""A loopback server that speaks the Asterisk Manager Interface wire protocol.

Packets are ``Key: Value`` lines ending in CRLF, a blank line ending each packet; the banner
is ``Asterisk Call Manager/5.0.4``. Implemented actions: ``Login`` (``Success`` /
``Error`` + ``Authentication failed``, then the connection closes as Asterisk does),
``Ping`` (``Ping: Pong``), ``Originate`` (``Async: true`` -> ``Originate successfully
queued``, then the call's behaviour runs in its own thread), ``Hangup``,
``CoreShowChannels`` (an event list), ``Logoff`` (``Goodbye``); anything else is
``Invalid/unknown command``, and actions before login get ``Permission denied``. Events
follow Asterisk 16-20 (``Newchannel``, ``Newstate``, ``OriginateResponse``, ``DTMFEnd``,
``Hangup`` with ``Cause``/``Cause-txt``).

Test controls: :meth:`FakeAmiServer.drop_connections` (a deliberate disconnect),
``mute`` (stop answering, so the client's socket read times out), ``refuse_logins``.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

BANNER = b"Asterisk Call Manager/5.0.4\r\n"
CAUSE_TEXT = {
    1: "Unallocated (unassigned) number",
    16: "Normal Clearing",
    17: "User busy",
    18: "No user responding",
    19: "User alerting, no answer",
    21: "Call Rejected",
    34: "Circuit/channel congestion",
}


@dataclass
class Packet:
    headers: dict[str, str]
    variables: dict[str, str] = field(default_factory=dict)

    def get(self, key: str, default: str = "") -> str:
        return self.headers.get(key, default)


def parse_packet(text: str) -> Packet:
    packet = Packet({})
    for line in text.split("\r\n"):
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key.lower() == "variable":
            name, _, var_value = value.partition("=")
            packet.variables[name] = var_value
        else:
            packet.headers[key] = value
    return packet


def encode(pairs: list[tuple[str, str]]) -> bytes:
    return ("".join(f"{key}: {value}\r\n" for key, value in pairs) + "\r\n").encode()


@dataclass
class FakeChannel:
    uniqueid: str
    name: str
    originate: Packet
    answered: bool = False
    hangup_requested: threading.Event = field(default_factory=threading.Event)
    hangup_cause: int = 16


class AmiSession:
    def __init__(self, server: FakeAmiServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.logged_in = False
        self.lock = threading.Lock()

    def send(self, pairs: list[tuple[str, str]]) -> None:
        with self.lock:
            self.sock.sendall(encode(pairs))

    def serve(self) -> None:
        self.sock.sendall(BANNER)
        buffer = b""
        while True:
            chunk = self.sock.recv(4096)
            if not chunk:
                return
            buffer += chunk
            while b"\r\n\r\n" in buffer:
                raw, buffer = buffer.split(b"\r\n\r\n", 1)
                if not self.server.mute and not self.handle(parse_packet(raw.decode())):
                    return

    def handle(self, packet: Packet) -> bool:
        """Answer one action; False closes the connection."""
        self.server.actions.append(packet)
        action = packet.get("Action").lower()
        ids = [("ActionID", packet.get("ActionID"))] if packet.get("ActionID") else []
        if action == "login":
            return self._login(packet, ids)
        if not self.logged_in:
            self.send([("Response", "Error"), *ids, ("Message", "Permission denied")])
            return True
        if action == "logoff":
            self.send([("Response", "Goodbye"), *ids, ("Message", "Thanks for all the fish.")])
            return False
        handler = self.server.action_handlers.get(action)
        if handler is None:
            message = f"Invalid/unknown command: {packet.get('Action')}. Use Action: ListCommands"
            self.send([("Response", "Error"), *ids, ("Message", message)])
            return True
        handler(self, packet, ids)
        return True

    def _login(self, packet: Packet, ids: list[tuple[str, str]]) -> bool:
        server = self.server
        ok = (packet.get("Username"), packet.get("Secret")) == (server.username, server.secret)
        if not ok or server.refuse_logins:
            self.send([("Response", "Error"), *ids, ("Message", "Authentication failed")])
            return False
        self.logged_in = True
        server.logins += 1
        self.send([("Response", "Success"), *ids, ("Message", "Authentication accepted")])
        self.send([("Event", "FullyBooted"), ("Privilege", "system,all"), ("Status", "Fully")])
        return True


CallBehaviour = Callable[["FakeAmiServer", FakeChannel], None]


class FakeAmiServer:
    """Threaded AMI server on 127.0.0.1; ``behaviour`` acts out each originated call."""

    def __init__(self, username: str = "dunning", secret: str = "ami-secret") -> None:
        self.username = username
        self.secret = secret
        self.behaviour: CallBehaviour | None = None
        self.mute = False
        self.refuse_logins = False
        self.logins = 0
        self.actions: list[Packet] = []
        self.channels: dict[str, FakeChannel] = {}
        self.sessions: list[AmiSession] = []
        self.call_threads: list[threading.Thread] = []
        self._sequence = itertools.count(1)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        self.action_handlers: dict[
            str, Callable[[AmiSession, Packet, list[tuple[str, str]]], None]
        ] = {
            "ping": self._ping,
            "originate": self._originate,
            "hangup": self._hangup,
            "coreshowchannels": self._core_show_channels,
        }

    def start(self) -> FakeAmiServer:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.drop_connections()
        for thread in self.call_threads:
            thread.join(timeout=10)

    def __enter__(self) -> FakeAmiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            session = AmiSession(self, sock)
            self.sessions.append(session)
            threading.Thread(target=self._serve, args=(session,), daemon=True).start()

    def _serve(self, session: AmiSession) -> None:
        try:
            session.serve()
        except OSError:
            pass
        finally:
            session.sock.close()
            if session in self.sessions:
                self.sessions.remove(session)

    def drop_connections(self) -> None:
        """Close every AMI connection at once (Asterisk restarting, a network cut)."""
        for session in list(self.sessions):
            try:
                session.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            session.sock.close()
        self.sessions.clear()

    def wait_for_logins(self, count: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.logins >= count and any(s.logged_in for s in self.sessions):
                return True
            time.sleep(0.02)
        return False

    def emit(self, name: str, pairs: list[tuple[str, str]]) -> None:
        """Send an event to every logged-in session (a lost link just misses it)."""
        for session in list(self.sessions):
            if session.logged_in and not self.mute:
                try:
                    session.send([("Event", name), ("Privilege", "call,all"), *pairs])
                except OSError:
                    pass

    def channel_event(self, name: str, channel: FakeChannel, *extra: tuple[str, str]) -> None:
        state = ("6", "Up") if channel.answered else ("5", "Ringing")
        self.emit(
            name,
            [
                ("Channel", channel.name),
                ("ChannelState", state[0]),
                ("ChannelStateDesc", state[1]),
                ("CallerIDNum", channel.originate.get("CallerID")),
                ("CallerIDName", "<unknown>"),
                ("Language", "ja"),
                ("Context", channel.originate.get("Context")),
                ("Exten", channel.originate.get("Exten")),
                ("Priority", "1"),
                ("Uniqueid", channel.uniqueid),
                ("Linkedid", channel.uniqueid),
                *extra,
            ],
        )

    def _ping(self, session: AmiSession, packet: Packet, ids: list[tuple[str, str]]) -> None:
        stamp = f"{time.time():.6f}"
        session.send([("Response", "Success"), *ids, ("Ping", "Pong"), ("Timestamp", stamp)])

    def _originate(self, session: AmiSession, packet: Packet, ids: list[tuple[str, str]]) -> None:
        uniqueid = packet.get("ChannelId") or f"1732500000.{next(self._sequence)}"
        if uniqueid in self.channels:
            session.send([("Response", "Error"), *ids, ("Message", "Originate failed")])
            return
        if packet.get("Async").lower() not in ("true", "yes", "1"):
            session.send([("Response", "Error"), *ids, ("Message", "Only Async is faked")])
            return
        name = f"PJSIP/trunk-{next(self._sequence):08x}"
        channel = FakeChannel(uniqueid, name, packet)
        self.channels[uniqueid] = channel
        session.send([("Response", "Success"), *ids, ("Message", "Originate successfully queued")])
        if self.behaviour is not None:
            thread = threading.Thread(target=self.behaviour, args=(self, channel), daemon=True)
            thread.start()
            self.call_threads.append(thread)

    def _hangup(self, session: AmiSession, packet: Packet, ids: list[tuple[str, str]]) -> None:
        wanted = packet.get("Channel")
        channel = self.channels.get(wanted) or next(
            (c for c in self.channels.values() if c.name == wanted), None
        )
        if channel is None:
            session.send([("Response", "Error"), *ids, ("Message", "No such channel")])
            return
        channel.hangup_cause = int(packet.get("Cause") or 16)
        channel.hangup_requested.set()
        session.send([("Response", "Success"), *ids, ("Message", "Channel Hungup")])

    def _core_show_channels(
        self, session: AmiSession, packet: Packet, ids: list[tuple[str, str]]
    ) -> None:
        session.send(
            [
                ("Response", "Success"),
                *ids,
                ("EventList", "start"),
                ("Message", "Channels will follow"),
            ]
        )
        listed = list(self.channels.values())
        for channel in listed:
            session.send(
                [
                    ("Event", "CoreShowChannel"),
                    *ids,
                    ("Channel", channel.name),
                    ("Uniqueid", channel.uniqueid),
                    ("ChannelState", "6" if channel.answered else "5"),
                    ("ChannelStateDesc", "Up" if channel.answered else "Ringing"),
                    ("Context", channel.originate.get("Context")),
                    ("Application", "AGI" if channel.answered else "AppDial"),
                    ("Duration", "00:00:05"),
                ]
            )
        session.send(
            [
                ("Event", "CoreShowChannelsComplete"),
                *ids,
                ("EventList", "Complete"),
                ("ListItems", str(len(listed))),
            ]
        )

    # Canned call behaviours, as Asterisk reports them.

    def end_unanswered(self, channel: FakeChannel, reason: int, cause: int) -> None:
        """Newchannel, ringing, Hangup(cause), then OriginateResponse Failure(reason)."""
        self.channel_event("Newchannel", channel)
        self.channel_event("Newstate", channel)
        self.hang_up_channel(channel, cause)
        self.originate_response(channel, "Failure", reason)

    def hang_up_channel(self, channel: FakeChannel, cause: int) -> None:
        self.channels.pop(channel.uniqueid, None)
        self.channel_event(
            "Hangup", channel, ("Cause", str(cause)), ("Cause-txt", CAUSE_TEXT.get(cause, ""))
        )

    def originate_response(self, channel: FakeChannel, response: str, reason: int) -> None:
        originate = channel.originate
        self.emit(
            "OriginateResponse",
            [
                ("ActionID", originate.get("ActionID")),
                ("Response", response),
                ("Channel", originate.get("Channel")),
                ("Context", originate.get("Context")),
                ("Exten", originate.get("Exten")),
                ("Reason", str(reason)),
                ("Uniqueid", channel.uniqueid if response == "Success" else "<null>"),
                ("CallerIDNum", "<unknown>"),
                ("CallerIDName", "<unknown>"),
            ],
        )

    def dtmf(self, channel: FakeChannel, digits: str) -> None:
        """``DTMFEnd`` per key, as Asterisk reports keys the far end pressed."""
        for digit in digits:
            self.channel_event(
                "DTMFEnd",
                channel,
                ("Digit", digit),
                ("DurationMs", "120"),
                ("Direction", "Received"),
            )

    def answer(self, channel: FakeChannel) -> None:
        """Newchannel, ringing, Up, OriginateResponse Success (Reason 4)."""
        self.channel_event("Newchannel", channel)
        self.channel_event("Newstate", channel)
        channel.answered = True
        self.channel_event("Newstate", channel)
        self.originate_response(channel, "Success", 4)
