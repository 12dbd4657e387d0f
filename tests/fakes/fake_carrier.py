"""A scripted in-process :class:`~dialer.ports.Carrier` for the dialer's own tests.

It speaks the port exactly: ``place_call`` answers a :class:`CallHandle`, honours the
attempt's idempotency key (a repeated key returns the first handle and places no second call,
as a carrier that deduplicates requests does) and remembers every call per number with the
clock's time, so tests can assert that no number was called twice within its retry interval.
Faults are scripted per request: ``fail_next(...)`` queues carrier refusals (5xx, 429) or
raised exceptions (timeouts); ``raise_after_accept`` models a crash right after the carrier
accepted the call.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from dialer.clock import Clock
from dialer.ports import (
    CallHandle,
    CallRequest,
    Capabilities,
    SmsHandle,
    SmsRequest,
)


class CarrierTimeout(TimeoutError):
    """The HTTP request to the carrier timed out (the carrier may or may not have the call)."""


@dataclass(frozen=True)
class PlacedCall:
    request: CallRequest
    carrier_ref: str
    at: datetime


@dataclass(frozen=True)
class SentSms:
    request: SmsRequest
    carrier_ref: str
    at: datetime


Fault = CallHandle | Exception


@dataclass
class FakeCarrier:
    clock: Clock
    name: str = "fake"
    max_calls_per_second: float = 1000.0
    calls: list[PlacedCall] = field(default_factory=list)
    sms: list[SentSms] = field(default_factory=list)
    active: set[str] = field(default_factory=set)
    raise_after_accept: bool = False
    _faults: deque[Fault] = field(default_factory=deque)
    _by_key: dict[str, CallHandle] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _mutex: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------------ scripting

    def fail_next(self, *faults: Fault) -> None:
        """Queue faults for the next requests, in order (calls and SMS share the queue)."""
        self._faults.extend(faults)

    def server_error(self, status: int = 503) -> CallHandle:
        return CallHandle(False, self.name, error_code=str(status), error_message="server error")

    def finish(self, carrier_ref: str) -> None:
        """The call ended at the carrier (no longer active)."""
        self.active.discard(carrier_ref)

    def finish_all(self) -> None:
        self.active.clear()

    # ------------------------------------------------------------------ the port

    def capabilities(self) -> Capabilities:
        return Capabilities(
            voice=True,
            sms=True,
            click_to_call=False,
            answering_machine_detection=True,
            speech_input=True,
            max_calls_per_second=self.max_calls_per_second,
        )

    def place_call(self, request: CallRequest) -> CallHandle:
        with self._mutex:
            known = self._by_key.get(request.idempotency_key)
            if known is not None:
                return known
            fault = self._faults.popleft() if self._faults else None
            if isinstance(fault, Exception):
                raise fault
            if fault is not None:
                return fault
            ref = f"FK{next(self._ids):08d}"
            handle = CallHandle(True, self.name, ref)
            self._by_key[request.idempotency_key] = handle
            self.calls.append(PlacedCall(request, ref, self.clock.now()))
            self.active.add(ref)
        if self.raise_after_accept:
            raise RuntimeError("process killed after the carrier accepted the call")
        return handle

    def hang_up(self, carrier_ref: str) -> None:
        self.finish(carrier_ref)

    def send_sms(self, request: SmsRequest) -> SmsHandle:
        with self._mutex:
            fault = self._faults.popleft() if self._faults else None
            if isinstance(fault, Exception):
                raise fault
            if isinstance(fault, CallHandle):
                return SmsHandle(False, self.name, error_code=fault.error_code)
            ref = f"SM{next(self._ids):08d}"
            self.sms.append(SentSms(request, ref, self.clock.now()))
            return SmsHandle(True, self.name, ref)

    def active_calls(self) -> list[str]:
        return sorted(self.active)

    # ------------------------------------------------------------------ assertions

    def calls_per_number(self) -> Counter[str]:
        return Counter(call.request.to_e164 for call in self.calls)

    def closest_repeat(self) -> timedelta | None:
        """The shortest gap between two calls to the same number (None: no number repeated)."""
        last: dict[str, datetime] = {}
        shortest: timedelta | None = None
        for call in sorted(self.calls, key=lambda c: c.at):
            number = call.request.to_e164
            if number in last:
                gap = call.at - last[number]
                shortest = gap if shortest is None else min(shortest, gap)
            last[number] = call.at
        return shortest
