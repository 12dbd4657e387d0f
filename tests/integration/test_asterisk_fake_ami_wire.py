"""The fake AMI server answers raw protocol lines as Asterisk does (keeps the fake honest)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.fakes.ami_server import FakeAmiServer


def _read_packet(stream: socket.SocketIO) -> str:
    lines: list[str] = []
    while True:
        line = stream.readline().decode()
        if line in ("\r\n", ""):
            return "".join(lines)
        lines.append(line)


@pytest.fixture
def wire() -> Iterator[tuple[FakeAmiServer, socket.SocketIO]]:
    with FakeAmiServer() as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
        yield server, sock.makefile("rwb", buffering=0)


def _send(stream: socket.SocketIO, text: str) -> None:
    stream.write(text.replace("\n", "\r\n").encode() + b"\r\n")


def test_banner_permission_login_ping_unknown_and_logoff(
    wire: tuple[FakeAmiServer, socket.SocketIO],
) -> None:
    server, stream = wire
    assert stream.readline() == b"Asterisk Call Manager/5.0.4\r\n"
    _send(stream, "Action: Ping\nActionID: a1\n")
    assert "Response: Error\r\nActionID: a1\r\nMessage: Permission denied" in _read_packet(stream)
    _send(
        stream,
        f"Action: Login\nActionID: a2\nUsername: {server.username}\nSecret: {server.secret}\n",
    )
    assert _read_packet(stream).startswith("Response: Success\r\nActionID: a2\r\n")
    assert _read_packet(stream).startswith("Event: FullyBooted")
    _send(stream, "Action: Ping\nActionID: a3\n")
    assert "Ping: Pong" in _read_packet(stream)
    _send(stream, "Action: Frobnicate\nActionID: a4\n")
    assert "Invalid/unknown command: Frobnicate" in _read_packet(stream)
    _send(stream, "Action: Logoff\nActionID: a5\n")
    assert _read_packet(stream).startswith("Response: Goodbye")
    assert stream.readline() == b""


def test_failed_login_closes_the_connection(wire: tuple[FakeAmiServer, socket.SocketIO]) -> None:
    _, stream = wire
    stream.readline()
    _send(stream, "Action: Login\nUsername: x\nSecret: y\n")
    assert "Message: Authentication failed" in _read_packet(stream)
    assert stream.readline() == b""
