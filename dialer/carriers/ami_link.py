"""One supervised AMI login over the ``asterisk-ami`` package, with its defects guarded.

Defects of the ``asterisk-ami`` package (0.1.7) guarded here:

* its socket has a read timeout (3 s by default) and a timeout raises inside the listener
  thread, which then dies silently: nothing reads events any more although the client looks
  connected. We set ``asterisk.ami_read_timeout_seconds`` (30 s), send ``Ping`` every
  ``ami_keepalive_seconds`` so the socket never idles that long, and a supervisor thread
  checks that the listener thread is alive, reconnecting with exponential backoff if not;
* ``FutureResponse.set_response`` calls ``traceback.print_exc()`` without importing
  ``traceback``: an exception in a response callback becomes a ``NameError`` that kills the
  listener thread. We never pass callbacks (we wait on the future instead), our event
  listener never lets an exception escape, and every call into the package is wrapped so any
  exception (``NameError``, ``OSError``, ...) becomes :class:`AmiUnavailable` at our boundary;
* ``disconnect()`` only closes the socket, which does not wake the listener blocked in
  ``recv``; we shut the socket down first so the thread ends at once;
* it wakes waiters with the deprecated ``Condition.notifyAll()``; that warning is filtered.
"""

from __future__ import annotations

import logging
import socket
import threading
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from asterisk.ami import Action as AmiAction
from asterisk.ami import AMIClient

from kernel.errors import DunningError
from kernel.settings import AsteriskSettings

log = logging.getLogger(__name__)
# The package wakes response waiters with Condition.notifyAll(), deprecated since 3.10.
warnings.filterwarnings(
    "ignore", r"notifyAll\(\) is deprecated", DeprecationWarning, r"asterisk\.ami"
)


class AmiUnavailable(DunningError):
    """The AMI link is down or the package failed; the message never holds personal data."""


class AmiLoginError(AmiUnavailable):
    """Asterisk refused our AMI username/secret."""


class AmiLink:
    """One supervised AMI login: keepalive, dead-listener detection, reconnect with backoff."""

    def __init__(
        self,
        settings: AsteriskSettings,
        on_event: Callable[[dict[str, str]], None],
        on_connected: Callable[[], None],
    ) -> None:
        self._settings = settings
        self._on_event = on_event
        self._on_connected = on_connected
        self._client: Any = None
        self._send_lock = threading.Lock()
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None
        self.generation = 0

    def start(self) -> None:
        """Log in now (raises :class:`AmiLoginError` on bad credentials), then supervise."""
        try:
            self._connect()
        except AmiLoginError:
            raise
        except AmiUnavailable as error:
            log.warning("AMI not reachable yet, will retry: %s", error)
        self._supervisor = threading.Thread(target=self._supervise, name="ami-supervisor")
        self._supervisor.daemon = True
        self._supervisor.start()

    def stop(self) -> None:
        """Log off politely (``Logoff`` -> ``Goodbye``), then close the link."""
        self._stop.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=5)
        if self.healthy:
            try:
                self.send("Logoff", {})
            except AmiUnavailable:
                log.debug("AMI logoff failed; closing anyway")
        self._drop()

    @property
    def healthy(self) -> bool:
        client = self._client
        if client is None or client.finished is None or client.finished.is_set():
            return False
        thread = getattr(client, "_thread", None)
        return thread is not None and thread.is_alive()

    def send(self, name: str, keys: Mapping[str, str], variables: Mapping[str, str] = {}) -> Any:
        """Send one action and wait for its response (None when none came in time)."""
        if not self.healthy:
            raise AmiUnavailable("AMI link is down")
        action = AmiAction(name, dict(keys), dict(variables))
        try:
            with self._send_lock:
                future = self._client.send_action(action)
            return future.response
        except Exception as error:  # the package's own defects surface here too
            raise AmiUnavailable(f"AMI {name} failed ({type(error).__name__})") from None

    def _connect(self) -> None:
        self._drop()
        settings = self._settings
        client = AMIClient(
            address=settings.ami_host,
            port=settings.ami_port,
            timeout=settings.ami_read_timeout_seconds,
        )
        client.add_event_listener(self._listen)
        try:
            future = client.login(
                username=settings.ami_username, secret=settings.ami_secret.get_secret_value()
            )
            response = future.response
        except Exception as error:
            self._quietly_disconnect(client)
            raise AmiUnavailable(f"AMI connect failed ({type(error).__name__})") from None
        if response is None or response.is_error():
            self._quietly_disconnect(client)
            if response is None:
                raise AmiUnavailable("AMI login got no response")
            raise AmiLoginError(
                f"AMI login refused for user {settings.ami_username!r}: "
                f"{response.keys.get('Message', 'error')}"
            )
        self._client = client
        self.generation += 1
        log.info("AMI logged in (link generation %d)", self.generation)

    def _listen(self, event: Any, source: Any) -> None:
        """Runs in the package's listener thread: nothing may escape, or the thread dies."""
        try:
            keys = {k: v for k, v in event.keys.items() if isinstance(v, str)}
            keys["Event"] = str(event.name)
            self._on_event(keys)
        except Exception:
            log.exception("AMI event handler failed (event kept the listener alive)")

    def _supervise(self) -> None:
        delay = self._settings.reconnect_initial_seconds
        check = min(self._settings.ami_keepalive_seconds, 0.25)
        last_ping = 0.0
        clock = 0.0
        while not self._stop.wait(check):
            clock += check
            if self.healthy:
                delay = self._settings.reconnect_initial_seconds
                if clock - last_ping >= self._settings.ami_keepalive_seconds:
                    last_ping = clock
                    self._ping()
                continue
            delay = self._reconnect(delay)

    def _ping(self) -> None:
        try:
            response = self.send("Ping", {})
        except AmiUnavailable:
            return
        if response is None:
            log.warning("AMI ping unanswered; reconnecting")
            self._drop()

    def _reconnect(self, delay: float) -> float:
        log.warning("AMI link lost; reconnecting in %.1f s", delay)
        if self._stop.wait(delay):
            return delay
        try:
            self._connect()
        except AmiUnavailable as error:
            log.warning("AMI reconnect failed: %s", error)
            return min(delay * 2, self._settings.reconnect_max_seconds)
        try:
            self._on_connected()
        except Exception:
            log.exception("AMI reconciliation after reconnect failed")
        return self._settings.reconnect_initial_seconds

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            self._quietly_disconnect(client)

    @staticmethod
    def _quietly_disconnect(client: Any) -> None:
        """Shut the socket down first: a plain close does not wake the listener's recv."""
        try:
            if client._socket is not None:
                client._socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            if client.finished is not None:
                client.disconnect()
        except Exception:
            log.debug("AMI disconnect raised; ignored")
