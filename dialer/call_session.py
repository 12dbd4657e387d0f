"""The dialer's call-session service: carrier reports in, IVR actions out, outcomes saved.

:class:`CallSession` is the :class:`~dialer.ports.CallEventSink` every carrier (Twilio, Asterisk,
the simulator) reports to. For each :class:`~dialer.ports.CallEvent` it finds the attempt (by
``attempt_key`` = ``Attempt.idempotency_key``, else by ``carrier_ref``), maps the event with the
shared :mod:`dialer.call_events` rules, steps the campaign's IVR flow and applies the actions'
side effects (:mod:`dialer.call_effects`) together with the attempt
(:mod:`dialer.live_attempts`) in one unit of work.

Coordination keys (all PII-free):

* ``ivr:{campaign_id}:{attempt_id}`` - the call's :class:`~dialer.call_records.SessionRecord`
  (:mod:`dialer.call_records`; JSON: call phase,
  engine state, digests of retry tokens seen) with a TTL of ``ivr.session_ttl_seconds``, so any
  process can take the next webhook. The campaign wipe deletes the ``ivr:{campaign_id}:``
  prefix.
* ``operators:free`` - how many operators can take a transferred call now, as a decimal string.
  The console sets it with :func:`set_free_operators` whenever an operator becomes free or busy
  and at least once a minute (it expires after :data:`OPERATORS_FREE_TTL_SECONDS`); a missing
  key means nobody is free. A ``Transfer`` action
  takes one operator (decrement under the ``operators:free`` lock).

Per process, in memory only (:mod:`dialer.call_memory`): which attempt an attempt key or carrier
reference names, and each live call's opened context (the resident's name reading, the
receivables, at ``detail`` the birth month-day), opened once per call by
:class:`~dialer.call_context.ContextOpener` and dropped when the call ends, after
:data:`CONTEXT_TTL_SECONDS` or when the attempt lost its person (a wipe).

Two ways in: :meth:`CallSession.on_call_event` handles one report in its own unit of work (the
simulator and Asterisk call it from their threads); :meth:`CallSession.submit_call_event` queues
it for the group commit (:mod:`dialer.call_batches`; :meth:`CallSession.queue_call_event`
answers through a callback instead of a future): one writer thread handles every report
queued so far in one unit of work, in arrival order, each call under its own lock, and commits
once; a batch that fails before its commit is handled again report by report, so one bad
report fails alone. :meth:`CallSession.handle_now` handles a batch the same way on the
caller's thread - the Twilio webhooks' event loop (:class:`~dialer.call_batches.LoopBatcher`)
- when nothing has to wait: only on SQLite with in-process coordination (every lock and the
database are in this process, so a batch is CPU work), and only when the writer thread has
nothing queued, no call of the batch is locked elsewhere and the database's write lock is free
(SQLite's busy wait is off for it); otherwise it declines and the reports go to the queue.
There, two threads taking turns at the GIL cost a webhook a seventh of its CPU
(``bench/ivr_webhook.py``); on PostgreSQL or Redis a batch waits on the network, so it stays
on the writer thread.

Repeats are harmless: status repeats and events after the end map to nothing, the attempt is
finished (and counted in the daily aggregates) once, and a carrier that can tell retries apart
puts a stable token in ``event.raw["idempotency_token"]`` (Twilio: the
``I-Twilio-Idempotency-Token`` header), whose second delivery gets ``[]``.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from functools import lru_cache

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

import ivr_scripts.actions as act
from dialer.call_batches import GroupCommitter
from dialer.call_context import ContextOpener
from dialer.call_effects import CallEffects
from dialer.call_events import (
    CallPhase,
    carrier_result,
    may_step_the_flow,
    next_phase,
    to_ivr_event,
)
from dialer.call_memory import CallIds, CallIndex, ContextCache, OpenedCall
from dialer.call_records import ParsedRecords, SessionRecord, retry_token, session_key
from dialer.clock import Clock, SystemClock
from dialer.live_attempts import LiveAttempt, lock_attempts, write_changes
from dialer.ports import CallEvent, InboundSms, SmsStatusEvent
from dialer.sms_reports import SmsReports
from ivr_scripts import Flow, State, load_builtin_flow, step
from ivr_scripts.events import CallAnswered, Event
from kernel.aggregates import (
    CounterBatch,
    record_attempt_result,
)
from kernel.calendar import CallingWindow
from kernel.coordination import Coordination, LocalCoordination
from kernel.db import Database, is_sqlite, lock_waits
from kernel.errors import DunningError
from kernel.models import (
    Attempt,
    AttemptStatus,
)
from kernel.pii import KeyRing
from kernel.settings import Settings

log = logging.getLogger(__name__)

OPERATORS_FREE_KEY = "operators:free"
OPERATORS_FREE_TTL_SECONDS = 120.0
CALL_LOCK_SECONDS = 30.0
LOCK_WAIT_SECONDS = 10.0
SEEN_TOKENS_KEPT = 64
CONTEXT_TTL_SECONDS = 600.0  # an opened call context is reopened after this, at the latest
_DONE = frozenset({AttemptStatus.COMPLETED, AttemptStatus.REFUSED, AttemptStatus.CANCELLED})
FlowLoader = Callable[[str], Flow]
# Built once (the queries of every report differ only in their parameters).
_BY_KEY = select(Attempt.id, Attempt.campaign_id).where(Attempt.idempotency_key == bindparam("key"))
_BY_KEYS = select(Attempt.id, Attempt.campaign_id, Attempt.idempotency_key).where(
    Attempt.idempotency_key.in_(bindparam("keys", expanding=True))
)
_BY_REF = (
    select(Attempt.id, Attempt.campaign_id)
    .where(Attempt.carrier_ref == bindparam("ref"))
    .order_by(Attempt.id.desc())
)


class CallSessionBusy(DunningError):
    """Another process holds this call for longer than expected; the carrier should retry."""

    http_status = 503


def set_free_operators(coordination: Coordination, count: int) -> None:
    """What the console calls when operators become free or busy (and at least every minute)."""
    coordination.put_state(OPERATORS_FREE_KEY, str(max(0, count)), OPERATORS_FREE_TTL_SECONDS)


# ------------------------------------------------------------------ the service


class _NotCommitted(Exception):
    """A batch failed before its commit (nothing of it was saved)."""


@dataclass
class _Unit:
    """What one unit of work has handled but not written yet: the session records of its
    reports (stored after the commit; a batch may hold several reports of one call), the
    counters of the calls it finished (written together before the commit) and its warnings
    (counted once it is committed: a batch handled again must not count them twice)."""

    records: dict[str, SessionRecord] = field(default_factory=dict)
    counts: CounterBatch = field(default_factory=CounterBatch)
    warnings: Counter[str] = field(default_factory=Counter)


@dataclass
class _Handled:
    actions: list[act.Action]
    key: str
    record: SessionRecord | None  # None: nothing to store (a repeat)
    ended: bool = False  # the call is over: its opened context is dropped


class CallSession:
    """Carrier reports -> IVR actions, with the attempt and its side effects saved together."""

    def __init__(
        self,
        database: Database,
        coordination: Coordination,
        keyring: KeyRing,
        settings: Settings,
        *,
        flows: FlowLoader | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._db = database
        self._coordination = coordination
        self._keyring = keyring
        self._settings = settings
        self._flows = flows or lru_cache(maxsize=16)(load_builtin_flow)
        self._clock = clock or SystemClock()
        self._effects = CallEffects(self._clock, CallingWindow(settings.calling_window.policy()))
        self._owner = f"call-session-{uuid.uuid4().hex[:12]}"
        self._holders = itertools.count(1)  # a lock owner per holder (uuid4 reads urandom)
        self._calls = CallIndex()
        ttl = min(CONTEXT_TTL_SECONDS, float(settings.ivr.session_ttl_seconds))
        self.contexts = ContextCache(ttl)
        self._parsed = ParsedRecords()
        self._opener = ContextOpener(keyring, settings)
        self._sms = SmsReports(database, keyring, self._effects, self._warn)
        self._writer = GroupCommitter(
            self._on_call_events,
            name="call-session-writer",
            linger_seconds=settings.ivr.group_commit_linger_ms / 1000,
        )
        self.warnings: Counter[str] = Counter()
        #: a batch is CPU work only: every lock and the database are in this process
        self.batches_inline = is_sqlite(database.engine) and isinstance(
            coordination, LocalCoordination
        )

    # ---------------------------------------------------------------- calls

    def on_call_event(self, event: CallEvent) -> list[act.Action]:
        found = self._find_call(event)
        if found is None:
            self._warn("unknown_call")
            return []
        return self._one_call_event(event, found)

    def submit_call_event(self, event: CallEvent) -> Future[list[act.Action]]:
        """:meth:`on_call_event` through the group commit: the report waits in a queue for
        the writer thread, which handles all the reports queued so far in one unit of work."""
        return self._writer.submit(event)

    def queue_call_event(
        self, event: CallEvent, reply: Callable[[list[act.Action] | BaseException], None]
    ) -> None:
        """:meth:`submit_call_event` answered through ``reply`` (called on the writer thread
        with the actions or the exception) instead of a future."""
        self._writer.submit_to(event, reply)

    def _one_call_event(self, event: CallEvent, found: CallIds) -> list[act.Action]:
        attempt_id = found.attempt_id
        with self._locked(f"ivr-call:{attempt_id}"):
            with self._db.unit_of_work() as session:
                attempt = lock_attempts(session, [attempt_id])[attempt_id]
                key = session_key(found.campaign_id, attempt_id)
                unit = _Unit()
                handled = self._handle(session, attempt, key, event, unit)
                write_changes(session, [attempt])
                unit.counts.write(session)
            self._warn_all(unit.warnings)
            self._store(handled)
        return self._after_commit(attempt_id, handled)

    def _after_commit(self, attempt_id: int, handled: _Handled) -> list[act.Action]:
        if handled.ended:
            self.contexts.drop(attempt_id)
        if any(isinstance(action, act.Transfer) for action in handled.actions):
            self._take_operator()
        return handled.actions

    def handle_now(self, events: Sequence[CallEvent]) -> list[list[act.Action] | Exception] | None:
        """A batch handled on the caller's thread (an event loop's), as the writer thread would
        handle it, when that needs no waiting: ``None`` - nothing of it handled - when reports
        cannot be batched here (:attr:`batches_inline` is false), when the writer thread still
        has reports (they come first), or when a call's lock or the database's write lock is
        held elsewhere; the caller then queues the reports for the writer thread."""
        if not self.batches_inline or not self._writer.idle:
            return None
        return self._batch(events, wait=False)

    def _on_call_events(self, events: Sequence[CallEvent]) -> list[list[act.Action] | Exception]:
        """A batch from the writer thread, in arrival order: one unit of work for all of it;
        when that fails, each report again in its own (so one bad report fails alone)."""
        results = self._batch(events, wait=True)
        assert results is not None, "a batch that may wait is always handled"
        return results

    def _batch(
        self, events: Sequence[CallEvent], *, wait: bool
    ) -> list[list[act.Action] | Exception] | None:
        self._look_up_keys(events)
        found = [self._find_call(event) for event in events]
        pairs = enumerate(zip(events, found, strict=True))
        known = [(n, event, ids) for n, (event, ids) in pairs if ids is not None]
        results: list[list[act.Action] | Exception] = [[] for _ in events]
        try:
            for n, actions in self._handle_together(known, wait=wait):
                results[n] = actions
        except _NotCommitted:  # nothing of the batch was saved
            if not wait:
                return None
            log.warning("call session: a batch of %d reports failed; one by one", len(known))
            for n, event, ids in known:
                try:
                    results[n] = self._one_call_event(event, ids)
                except Exception as error:  # answered to that report only
                    results[n] = error
        for _ in range(len(events) - len(known)):
            self._warn("unknown_call")
        return results

    def _handle_together(
        self, known: list[tuple[int, CallEvent, CallIds]], *, wait: bool = True
    ) -> list[tuple[int, list[act.Action]]]:
        """``wait=False``: a call lock or the database's write lock held elsewhere fails the
        batch (:class:`_NotCommitted`) at once instead of being waited for."""
        attempt_ids = sorted({ids.attempt_id for _, _, ids in known})
        handled: list[tuple[int, int, _Handled]] = []
        unit = _Unit()
        with ExitStack() as held:
            try:
                for attempt_id in attempt_ids:  # in id order: no deadlock between batches
                    held.enter_context(self._locked(f"ivr-call:{attempt_id}", wait=wait))
                with self._db.unit_of_work() as session, lock_waits(session, wait=wait):
                    attempts = lock_attempts(session, attempt_ids)
                    stepping = {
                        ids.attempt_id for _, event, ids in known if may_step_the_flow(event)
                    }
                    self._open_new_calls(session, [attempts[i] for i in sorted(stepping)])
                    for n, event, ids in known:
                        key = session_key(ids.campaign_id, ids.attempt_id)
                        one = self._handle(session, attempts[ids.attempt_id], key, event, unit)
                        if one.record is not None:
                            unit.records[key] = one.record
                        handled.append((n, ids.attempt_id, one))
                    write_changes(session, attempts.values())
                    unit.counts.write(session)
            except Exception as error:
                raise _NotCommitted from error
            # Committed. A failure from here on reaches every report of the batch, as it
            # reaches the caller of on_call_event: nothing is handled twice.
            self._warn_all(unit.warnings)
            for _, _, one in handled:
                self._store(one)
        return [(n, self._after_commit(attempt_id, one)) for n, attempt_id, one in handled]

    def _open_new_calls(self, session: Session, stepping: list[LiveAttempt]) -> None:
        """Opens together the contexts of a batch's live calls that are answered or keyed in
        and have none in memory (two queries for all, not two per call); other calls open theirs
        on their own step, if they get one."""
        new = [
            a
            for a in stepping
            if a.id not in self.contexts and a.person_id is not None and a.status not in _DONE
        ]
        if len(new) < 2:
            return
        opened = self._opener.open_many(session, new, self._operator_free() > 0)
        for attempt_id, call in opened.items():
            if call is not None:
                self.contexts.put(attempt_id, call)

    def _find_call(self, event: CallEvent) -> CallIds | None:
        """The attempt's ids: remembered from an earlier report of the call, else looked up."""
        names = [f"key:{event.attempt_key}"] if event.attempt_key else []
        names += [f"ref:{event.carrier_ref}"] if event.carrier_ref else []
        for name in names:
            known = self._calls.get(name)
            if known is not None:
                return known
        found = self._look_up_call(event)
        if found is not None:
            self._calls.put(found[0], found[1])
        return None if found is None else found[1]

    def _look_up_keys(self, events: Sequence[CallEvent]) -> None:
        """Remembers the attempts of the new calls of a batch with one query."""
        new = {
            event.attempt_key
            for event in events
            if event.attempt_key and self._calls.get(f"key:{event.attempt_key}") is None
        }
        if not new:
            return
        with self._db.read_only() as session:
            rows = session.execute(_BY_KEYS, {"keys": sorted(new)}).all()
        for attempt_id, campaign_id, key in rows:
            self._calls.put(f"key:{key}", CallIds(int(attempt_id), int(campaign_id)))

    def _look_up_call(self, event: CallEvent) -> tuple[str, CallIds] | None:
        with self._db.read_only() as session:
            if event.attempt_key:
                row = session.execute(_BY_KEY, {"key": event.attempt_key}).first()
                if row is not None:
                    return f"key:{event.attempt_key}", CallIds(int(row[0]), int(row[1]))
            if event.carrier_ref:
                row = session.execute(_BY_REF, {"ref": event.carrier_ref}).first()
                if row is not None:
                    return f"ref:{event.carrier_ref}", CallIds(int(row[0]), int(row[1]))
        return None

    def _handle(
        self,
        session: Session,
        attempt: LiveAttempt,
        key: str,
        event: CallEvent,
        unit: _Unit,
    ) -> _Handled:
        """One report on a locked attempt, in the unit of work ``unit`` describes."""
        record = unit.records.get(key) or self._load(key, attempt)
        token = retry_token(event)
        if token is not None and token in record.seen:
            unit.warnings["repeated_event"] += 1
            return _Handled([], key, None, ended=record.phase is CallPhase.ENDED)
        self._bind(attempt, event)
        ivr_event = to_ivr_event(event, record.phase)
        phase = next_phase(event, record.phase)
        actions: list[act.Action] = []
        engine = record.engine
        if ivr_event is not None:
            if isinstance(ivr_event, CallAnswered) and attempt.answered_at is None:
                attempt.update(answered_at=event.occurred_at)
            actions, engine = self._step(session, attempt, engine, ivr_event, unit)
            if engine.identity_confirmed and attempt.identity_confirmed_at is None:
                attempt.update(identity_confirmed_at=event.occurred_at)
            self._effects.apply(session, attempt, actions)
        if phase is CallPhase.ENDED and record.phase is not CallPhase.ENDED:
            self._finish(session, attempt, event, unit.counts)
        seen = (*record.seen, token)[-SEEN_TOKENS_KEPT:] if token else record.seen
        return _Handled(actions, key, SessionRecord(phase, engine, seen), phase is CallPhase.ENDED)

    def _load(self, key: str, attempt: LiveAttempt) -> SessionRecord:
        stored = self._coordination.get_state(key)
        if stored is not None:
            return self._parsed.parse(key, stored)
        if attempt.status in _DONE:  # state gone after the end: the call stays ended
            return SessionRecord(phase=CallPhase.ENDED, engine=State(ended=True))
        return SessionRecord()

    def _store(self, handled: _Handled) -> None:
        if handled.record is None:
            return
        if handled.record.phase is CallPhase.ENDED:  # the attempt row now says it all
            self._coordination.delete_state(handled.key)
            self._parsed.forget(handled.key)
            return
        ttl = float(self._settings.ivr.session_ttl_seconds)
        text = handled.record.to_json()
        self._coordination.put_state(handled.key, text, ttl)
        self._parsed.stored(handled.key, text, handled.record)

    @staticmethod
    def _bind(attempt: LiveAttempt, event: CallEvent) -> None:
        if attempt.carrier_ref is None and event.carrier_ref:
            attempt.update(carrier_ref=event.carrier_ref)
        if attempt.started_at is None:
            attempt.update(started_at=event.occurred_at)
        if attempt.status in (AttemptStatus.SCHEDULED, AttemptStatus.CLAIMED):
            attempt.update(status=AttemptStatus.IN_PROGRESS)

    def _step(
        self, session: Session, attempt: LiveAttempt, engine: State, ivr_event: Event, unit: _Unit
    ) -> tuple[list[act.Action], State]:
        opened = self._opened(session, attempt)
        if opened is None:
            unit.warnings["context_unavailable"] += 1
            return [act.Hangup()], replace(engine, ended=True)
        context = opened.context
        available = self._operator_free() > 0  # read afresh: operators come and go mid-call
        if context.operator_available is not available:
            context = replace(context, operator_available=available)
        return step(self._flows(opened.script_name), context, engine, ivr_event)

    def _opened(self, session: Session, attempt: LiveAttempt) -> OpenedCall | None:
        """The call's context, opened once per call (then from memory); None: cannot call."""
        if attempt.person_id is None:  # wiped or never had a person: forget what was opened
            self.contexts.drop(attempt.id)
            return None
        opened = self.contexts.get(attempt.id)
        if opened is not None:
            return opened
        opened = self._opener.open(session, attempt, self._operator_free() > 0)
        if opened is not None:
            self.contexts.put(attempt.id, opened)
        return opened

    # ---------------------------------------------------------------- side effects

    def _finish(
        self, session: Session, attempt: LiveAttempt, event: CallEvent, counts: CounterBatch
    ) -> None:
        """The final carrier status: the attempt is completed and counted, exactly once."""
        if attempt.status in _DONE:
            return
        if event.duration_seconds is not None:
            duration = event.duration_seconds
        elif attempt.answered_at is not None:
            duration = max(0, int((event.occurred_at - attempt.answered_at).total_seconds()))
        else:
            duration = 0
        attempt.update(
            status=AttemptStatus.COMPLETED,
            carrier_result=carrier_result(event),
            ended_at=event.occurred_at,
            duration_seconds=duration,
        )
        opened = self.contexts.get(attempt.id)  # its items are all the person's receivables
        kinds = [item.kind_name for item in opened.context.items] if opened else None
        record_attempt_result(session, attempt, kinds, batch=counts)

    # ---------------------------------------------------------------- operators

    def _operator_free(self) -> int:
        stored = self._coordination.get_state(OPERATORS_FREE_KEY)
        try:
            return max(0, int(stored)) if stored is not None else 0
        except ValueError:
            self._warn("operators_free_unreadable")
            return 0

    def _take_operator(self) -> None:
        with self._locked(OPERATORS_FREE_KEY):
            free = self._operator_free()
            if free > 0:
                self._coordination.put_state(
                    OPERATORS_FREE_KEY, str(free - 1), OPERATORS_FREE_TTL_SECONDS
                )

    # ---------------------------------------------------------------- SMS reports

    def on_sms_status(self, event: SmsStatusEvent) -> None:
        self._sms.on_sms_status(event)

    def on_inbound_sms(self, message: InboundSms) -> None:
        """停止 / STOP puts the sender's number (as a digest only) on the do-not-call list."""
        self._sms.on_inbound_sms(message)

    # ---------------------------------------------------------------- helpers

    @contextmanager
    def _locked(self, key: str, *, wait: bool = True) -> Iterator[None]:
        owner = f"{self._owner}:{next(self._holders)}"  # one owner per holder, even in-process
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while not self._coordination.acquire_lock(key, owner, CALL_LOCK_SECONDS):
            if not wait:
                raise CallSessionBusy(f"{key} is held elsewhere; not waiting for it here")
            if time.monotonic() > deadline:
                raise CallSessionBusy(f"{key} is held by another process")
            time.sleep(0.005)
        try:
            yield
        finally:
            self._coordination.release_lock(key, owner)

    def _warn(self, reason: str, times: int = 1) -> None:
        self.warnings[reason] += times
        log.warning("call session: %s (seen %d times)", reason, self.warnings[reason])

    def _warn_all(self, warnings: Counter[str]) -> None:
        for reason, times in warnings.items():
            self._warn(reason, times)
