"""The dispatcher tick: claim due attempts, check the interlocks, pace, call or send, record.

One tick:

1. releases the pacing reservations of calls that have ended;
2. plans the follow-up of every final attempt not yet followed up (retry, SMS, operator,
   letter; see :func:`dialer.followups.plan_follow_ups`);
3. stops if the active exclusion list is missing or stale (R-6): nothing is claimed;
4. claims due attempts (``SCHEDULED``, ``scheduled_at <= now``, campaign ``RUNNING``) with
   ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, marking them ``CLAIMED`` with
   ``claimed_by``/``claimed_at`` in the same transaction (SQLite has one writer; the
   conditional update makes a lost race claim nothing);
5. for the claimed attempts, a chunk (``check_chunk``, default 20) at a time and in one
   transaction per chunk, re-reads every interlock (:mod:`dialer.interlocks`) and records a
   refusal on the attempt, or postpones it (outside the window: to the next opening); then,
   for each allowed contact, takes the pacing reservations and asks the carrier, with the
   attempt's idempotency key, to place the call (or send the SMS); the chunk's starts
   (carrier, reference, start, ``IN_PROGRESS``) are recorded in one transaction.

Carrier errors (5xx, 429, timeouts) put the attempt back to ``SCHEDULED`` with an exponential
backoff and the same idempotency key. If Redis or the database goes away the tick stops:
nothing is dialed without its reservations, and what was claimed but not dialed is handed back
(or, if the database is gone, left for :mod:`dialer.reconcile`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from datetime import datetime

from sqlalchemy import ColumnElement, TextClause, bindparam, false, func, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from dialer import followups
from dialer.clock import Clock
from dialer.dispatch_config import DispatcherConfig, TickReport, retryable
from dialer.dispatch_facts import (
    DialOrder,
    dial_order,
    exclusion_as_of,
    gather_chunk,
    next_day_opening,
)
from dialer.interlocks import POSTPONING, Refusal, refusal
from dialer.pacing import Pacer, PaceVerdict
from dialer.planner import CARRIER_ERROR, SMS_SENT
from dialer.ports import CallHandle, CallRequest, Carrier, SmsHandle, SmsRequest
from dialer.sms import SmsCatalog
from kernel.aggregates import record_attempt_result, record_sms_status
from kernel.calendar import CallingWindow
from kernel.coordination import CoordinationUnavailable
from kernel.db import Database, is_sqlite
from kernel.models import Attempt, AttemptStatus, Campaign, CampaignStatus, Channel
from kernel.pii import KeyRing, PiiCipher
from kernel.settings import Settings

__all__ = ["Checkpoint", "Dispatcher", "DispatcherConfig", "TickReport", "retryable"]
log = logging.getLogger(__name__)

AUTOMATED = (Channel.IVR, Channel.SMS)
OPEN = (AttemptStatus.CLAIMED, AttemptStatus.IN_PROGRESS)
Checkpoint = Callable[[str, int], None]
FOLLOW_UP_BATCH = 500


class Dispatcher:
    """One dialer process's tick against one carrier."""

    def __init__(
        self,
        database: Database,
        carrier: Carrier,
        clock: Clock,
        window: CallingWindow,
        keyring: KeyRing,
        pacer: Pacer,
        config: DispatcherConfig,
        *,
        sms_catalog: SmsCatalog | None = None,
        settings: Settings | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> None:
        self.database = database
        self.carrier = carrier
        self.clock = clock
        self.window = window
        self.keyring = keyring
        self.pacer = pacer
        self.config = config
        self.sms_catalog = sms_catalog
        self._settings = settings
        self._ciphers: dict[int, PiiCipher] = {}
        self._checkpoint = checkpoint or (lambda _point, _attempt_id: None)
        self._pending: list[int] = []

    # ------------------------------------------------------------------ the tick

    def tick(self, channels: Collection[Channel] = AUTOMATED) -> TickReport:
        report = TickReport()
        try:
            self._housekeeping(report)
            stop = self._exclusion_gate()
            if stop is not None:
                report.stopped = stop.value
            else:
                self._pending = self._claim(channels)
                report.claimed = len(self._pending)
                self._work(report)
        except (CoordinationUnavailable, OperationalError) as error:
            report.stopped = type(error).__name__
            log.warning("dialer tick stopped: %s", type(error).__name__)
            self._hand_back(report)
        idle = not (report.claimed or report.follow_ups or report.released or report.stopped)
        log.log(logging.DEBUG if idle else logging.INFO, "dialer tick %s", report.as_log())
        return report

    def _housekeeping(self, report: TickReport) -> None:
        if self.pacer.held:
            with self.database.read_only() as session:
                still_open = set(
                    session.scalars(
                        select(Attempt.id).where(
                            Attempt.id.in_(list(self.pacer.held)), Attempt.status.in_(OPEN)
                        )
                    )
                )
            report.released = self.pacer.release_finished(still_open)
        report.follow_ups = self.plan_pending_follow_ups()

    def plan_pending_follow_ups(self) -> int:
        """Follow-ups of final automated attempts (finished by the call session, the SMS
        status handler, a refusal or reconciliation) that were not planned yet."""
        now = self.clock.now()
        with self.database.unit_of_work() as session:
            finished = session.scalars(
                select(Attempt)
                .join(Campaign, Campaign.id == Attempt.campaign_id)
                .where(
                    Attempt.status.in_((AttemptStatus.COMPLETED, AttemptStatus.REFUSED)),
                    Attempt.channel.in_(AUTOMATED),
                    Attempt.follow_up_planned == false(),
                    Campaign.status.in_((CampaignStatus.RUNNING, CampaignStatus.PAUSED)),
                )
                .order_by(Attempt.id)
                .limit(FOLLOW_UP_BATCH)
            ).all()
            planned = followups.plan_follow_ups(
                session, finished, self.window, self.config.policy, now
            )
        return planned

    def _exclusion_gate(self) -> Refusal | None:
        with self.database.read_only() as session:
            as_of = exclusion_as_of(session)
        if as_of is None:
            return Refusal.EXCLUSION_LIST_MISSING
        if self.clock.now() - as_of > self.config.exclusion_max_age:
            return Refusal.EXCLUSION_LIST_STALE
        return None

    # ------------------------------------------------------------------ claiming

    def _claim(self, channels: Collection[Channel]) -> list[int]:
        free = self.pacer.local_free
        if free <= 0 and Channel.SMS not in channels:
            return []  # every call slot of this process is busy: claiming would only hand back
        limit = min(self.config.claim_batch, max(1, free))
        now = self.clock.now()
        with self.database.unit_of_work() as session:
            query = (
                select(Attempt.id)
                .join(Campaign, Campaign.id == Attempt.campaign_id)
                .where(
                    Attempt.status == AttemptStatus.SCHEDULED,
                    Attempt.scheduled_at <= now,
                    Attempt.channel.in_(list(channels)),
                    Campaign.status == CampaignStatus.RUNNING,
                )
                .order_by(Attempt.scheduled_at, Attempt.id)
                .limit(limit)
            )
            sqlite = is_sqlite(self.database.engine)
            if not sqlite:
                query = query.with_for_update(skip_locked=True, of=Attempt)
            ids = list(session.scalars(query))
            if not ids:
                return []
            session.execute(
                update(Attempt)
                .where(Attempt.id.in_(ids), _still_scheduled(sqlite))
                .values(
                    status=AttemptStatus.CLAIMED,
                    claimed_by=self.config.worker_id,
                    claimed_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            rows = session.execute(
                select(Attempt.id, Attempt.status, Attempt.claimed_by, Attempt.claimed_at).where(
                    Attempt.id.in_(ids)
                )
            ).tuples()
            mine = {
                attempt_id
                for attempt_id, status, owner, at in rows
                if status is AttemptStatus.CLAIMED and owner == self.config.worker_id and at == now
            }
            return [attempt_id for attempt_id in ids if attempt_id in mine]

    # ------------------------------------------------------------------ per attempt

    def _work(self, report: TickReport) -> None:
        """Check a chunk of claims together, dial the ones allowed, record their starts."""
        while self._pending:
            chunk = self._pending[: self.config.check_chunk]  # undialed until proven otherwise
            for attempt_id in chunk:
                self._checkpoint("claimed", attempt_id)
            orders = self._check_chunk(chunk, report)
            self._pending = [*(o.attempt_id for o in orders), *self._pending[len(chunk) :]]
            if not self._dial(orders, report):
                self._hand_back(report)  # the rest of the claims, undialed
                return

    def _dial(self, orders: list[DialOrder], report: TickReport) -> bool:
        started: list[tuple[int, CallHandle]] = []
        try:
            for order in orders:
                if not self._dispatch(order, report, started):
                    return False
                self._pending.remove(order.attempt_id)
        except (CoordinationUnavailable, OperationalError):
            self._record_started(started)
            raise
        self._record_started(started)
        return True

    def _dispatch(
        self, order: DialOrder, report: TickReport, started: list[tuple[int, CallHandle]]
    ) -> bool:
        if order.channel is Channel.SMS:
            return self._send_sms(order, report)
        verdict = self.pacer.reserve_call(order.attempt_id, order.key, order.number_digest)
        if verdict is PaceVerdict.NUMBER_BUSY:
            self._postpone(order.attempt_id, self.clock.now() + self.config.household_retry)
            report.postponed["number_busy"] += 1
            return True
        if verdict is not PaceVerdict.GRANTED:
            report.postponed[verdict.value] += 1
            return False
        handle = self._place_call(order, report)
        if handle is not None:
            started.append((order.attempt_id, handle))
        return True

    def _check_chunk(self, attempt_ids: list[int], report: TickReport) -> list[DialOrder]:
        """Interlocks in one transaction: refusals are recorded, the rest become orders."""
        now = self.clock.now()
        orders = []
        with self.database.unit_of_work() as session:
            for gathered in gather_chunk(session, attempt_ids, self.config.worker_id, now):
                attempt, facts = gathered.attempt, gathered.facts
                reason = refusal(
                    facts, self.window, self.config.exclusion_max_age, self.config.caps
                )
                if reason is None:
                    orders.append(dial_order(gathered, self._cipher))
                elif reason in POSTPONING:
                    report.postponed[reason.value] += 1
                    self._postpone_for(session, attempt, reason, now)
                else:
                    report.refused[reason.value] += 1
                    self._refuse(session, attempt, reason, now)
        return orders

    def _postpone_for(
        self, session: Session, attempt: Attempt, reason: Refusal, now: datetime
    ) -> None:
        when: datetime | None = attempt.scheduled_at
        if reason is Refusal.OUTSIDE_WINDOW:
            when = self.window.next_open(now)
        elif reason is Refusal.CAP_REACHED:
            when = next_day_opening(self.window, now)
        if when is None:
            self._refuse(session, attempt, reason, now)
            return
        _unclaim(attempt, when)

    def _refuse(self, session: Session, attempt: Attempt, reason: Refusal, now: datetime) -> None:
        attempt.status = AttemptStatus.REFUSED
        attempt.refusal_reason = reason.value
        attempt.ended_at = now
        session.flush()
        record_attempt_result(session, attempt)
        followups.plan_follow_up(session, attempt, self.window, self.config.policy, now)

    # ------------------------------------------------------------------ the carrier

    def _place_call(self, order: DialOrder, report: TickReport) -> CallHandle | None:
        """Ask the carrier; the accepted handle, or None after recording a carrier error."""
        request = CallRequest(
            attempt_id=order.attempt_id,
            idempotency_key=order.key,
            to_e164=order.to_e164,
            from_e164=self.config.caller_id,
            ring_timeout_seconds=self.config.ring_timeout_seconds,
        )
        try:
            handle = self.carrier.place_call(request)
        except (CoordinationUnavailable, OperationalError):
            raise
        except Exception as error:  # a timeout or transport error: the carrier may retry-dedupe
            log.warning("carrier %s: place_call raised %s", self.carrier.name, type(error).__name__)
            handle = CallHandle(False, self.carrier.name, error_code="timeout")
        self._checkpoint("placed", order.attempt_id)
        if handle.accepted:
            report.placed += 1
            return handle
        self.pacer.release(order.attempt_id)
        report.carrier_errors += 1
        self._carrier_error(order.attempt_id, handle.error_code)
        return None

    def _record_started(self, started: list[tuple[int, CallHandle]]) -> None:
        """One transaction for the calls a chunk placed: carrier, reference, start, and
        IN_PROGRESS unless the call session already finished the attempt."""
        if not started:
            return
        now = self.clock.now()
        rows = [
            {"b_id": attempt_id, "b_carrier": handle.carrier[:16], "b_ref": handle.carrier_ref}
            for attempt_id, handle in started
        ]
        with self.database.unit_of_work() as session:
            connection = session.connection()
            connection.execute(
                update(Attempt)
                .where(Attempt.id == bindparam("b_id"))
                .values(
                    carrier=bindparam("b_carrier"),
                    carrier_ref=func.coalesce(Attempt.carrier_ref, bindparam("b_ref")),
                    started_at=func.coalesce(Attempt.started_at, now),
                ),
                rows,
            )
            connection.execute(
                update(Attempt)
                .where(Attempt.id == bindparam("b_id"), Attempt.status == AttemptStatus.CLAIMED)
                .values(status=AttemptStatus.IN_PROGRESS),
                [{"b_id": row["b_id"]} for row in rows],
            )

    def _carrier_error(self, attempt_id: int, code: str | None) -> None:
        """Back to scheduled with backoff (same key), or final after too many errors."""
        now = self.clock.now()
        with self.database.unit_of_work() as session:
            attempt = session.get(Attempt, attempt_id)
            if attempt is None or attempt.status is not AttemptStatus.CLAIMED:
                return
            attempt.dispatch_errors += 1
            if retryable(code) and attempt.dispatch_errors < self.config.max_dispatch_errors:
                backoff = self.config.carrier_error_backoff * 2 ** (attempt.dispatch_errors - 1)
                _unclaim(attempt, now + backoff)
                return
            attempt.status = AttemptStatus.COMPLETED
            attempt.carrier = self.carrier.name[:16]
            attempt.carrier_result = CARRIER_ERROR if retryable(code) else f"rejected:{code}"[:64]
            attempt.ended_at = now
            session.flush()
            record_attempt_result(session, attempt)
            followups.plan_follow_up(session, attempt, self.window, self.config.policy, now)

    def _send_sms(self, order: DialOrder, report: TickReport) -> bool:
        if self.pacer.reserve_sms() is not PaceVerdict.GRANTED:
            report.postponed["rate_limited"] += 1
            return False
        request = SmsRequest(
            attempt_id=order.attempt_id,
            idempotency_key=order.key,
            to_e164=order.to_e164,
            sender_id=self.config.sms_sender_id,
            body=self._sms_body(),
        )
        try:
            handle = self.carrier.send_sms(request)
        except (CoordinationUnavailable, OperationalError):
            raise
        except Exception as error:
            log.warning("carrier %s: send_sms raised %s", self.carrier.name, type(error).__name__)
            handle = SmsHandle(False, self.carrier.name, error_code="timeout")
        if not handle.accepted:
            report.carrier_errors += 1
            self._carrier_error(order.attempt_id, handle.error_code)
            return True
        self._record_sms(order.attempt_id, handle)
        report.sms_sent += 1
        return True

    def _sms_body(self) -> str:
        if self.sms_catalog is None or self._settings is None:
            raise RuntimeError("SMS attempts need the SMS catalog and the municipality settings")
        template = self.sms_catalog.get(self.config.sms_template)
        return template.render(self._settings.municipality)

    def _record_sms(self, attempt_id: int, handle: SmsHandle) -> None:
        now = self.clock.now()
        with self.database.unit_of_work() as session:
            attempt = session.get(Attempt, attempt_id)
            if attempt is None or attempt.status is not AttemptStatus.CLAIMED:
                return
            attempt.carrier = handle.carrier[:16]
            attempt.carrier_ref = handle.carrier_ref
            attempt.started_at = attempt.ended_at = now
            attempt.status = AttemptStatus.COMPLETED
            attempt.outcome_code = SMS_SENT
            session.flush()
            record_attempt_result(session, attempt)
            record_sms_status(
                session,
                campaign_id=attempt.campaign_id,
                person_id=attempt.person_id,
                status="sent",
                at=now,
            )
            followups.plan_follow_up(session, attempt, self.window, self.config.policy, now)

    # ------------------------------------------------------------------ helpers

    def _postpone(self, attempt_id: int, when: datetime) -> None:
        with self.database.unit_of_work() as session:
            attempt = session.get(Attempt, attempt_id)
            if attempt is not None and attempt.status is AttemptStatus.CLAIMED:
                _unclaim(attempt, self.window.next_open(when) or when)

    def _hand_back(self, report: TickReport) -> None:
        """Claimed but not dialed: back to scheduled, unchanged (best effort)."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        try:
            with self.database.unit_of_work() as session:
                result = session.execute(
                    update(Attempt)
                    .where(
                        Attempt.id.in_(pending),
                        Attempt.status == AttemptStatus.CLAIMED,
                        Attempt.claimed_by == self.config.worker_id,
                        Attempt.carrier_ref.is_(None),
                    )
                    .values(status=AttemptStatus.SCHEDULED, claimed_by=None, claimed_at=None)
                    .execution_options(synchronize_session=False)
                )
                report.handed_back += int(getattr(result, "rowcount", 0) or 0)
        except OperationalError:
            log.warning("dialer: %d claimed attempts left for reconciliation", len(pending))

    def _cipher(self, campaign: Campaign) -> PiiCipher:
        """The campaign's cipher, kept in memory only (numbers are opened just before use)."""
        cached = self._ciphers.get(campaign.id)
        if cached is None:
            if campaign.wrapped_data_key is None:
                raise RuntimeError(f"campaign {campaign.id} has no data key (wiped?)")
            cached = self.keyring.cipher(campaign.wrapped_data_key, campaign.id)
            self._ciphers[campaign.id] = cached
        return cached


def _still_scheduled(sqlite: bool) -> ColumnElement[bool] | TextClause:
    """``status = 'scheduled'``; on SQLite with a unary ``+`` so its planner looks the claimed
    ids up by primary key instead of walking every scheduled attempt of the (status, time)
    index (the documented way to keep SQLite off an index)."""
    if sqlite:
        return text("+attempts.status = :scheduled").bindparams(
            scheduled=AttemptStatus.SCHEDULED.value
        )
    return Attempt.status == AttemptStatus.SCHEDULED


def _unclaim(attempt: Attempt, when: datetime) -> None:
    attempt.status = AttemptStatus.SCHEDULED
    attempt.scheduled_at = when
    attempt.claimed_by = None
    attempt.claimed_at = None
