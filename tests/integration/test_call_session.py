"""CallSession on SQLite and PostgreSQL, with in-process and Redis coordination.

Events are fed as a carrier reports them (Twilio's shapes); the assertions read the database
and the coordination store the way other processes would.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import select

import ivr_scripts.actions as act
from dialer.call_effects import callback_due
from dialer.call_memory import ContextCache
from dialer.call_records import session_key
from dialer.call_session import OPERATORS_FREE_KEY, CallSession, set_free_operators
from dialer.clock import SimulatedClock
from dialer.ports import (
    AnsweredBy,
    CallEvent,
    CallStatus,
    InboundSms,
    SmsStatus,
    SmsStatusEvent,
)
from ivr_scripts.model import TimeBand
from kernel.calendar import TOKYO, CallingPolicy, CallingWindow
from kernel.coordination import Coordination, CoordinationUnavailable, LocalCoordination
from kernel.db import Database
from kernel.models import (
    Attempt,
    AttemptStatus,
    CallbackRequest,
    Channel,
    DailyAggregate,
    DisclosureLevel,
    DoNotCall,
    Phone,
    PhoneStatus,
)
from kernel.pii import KeyRing
from kernel.redis_coordination import RedisCoordination
from kernel.settings import load_settings
from tests.contract.seed import MASTER_SECRET, PII, RESIDENT_E164, Seeded, seed_campaign

NOW = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)  # Wednesday 10:00 in Tokyo


@pytest.fixture(params=["local", pytest.param("redis", marks=pytest.mark.redis)])
def coordination(request: pytest.FixtureRequest) -> Iterator[Coordination]:
    if request.param == "local":
        yield LocalCoordination()
        return
    store = RedisCoordination(request.getfixturevalue("redis_url"), f"test-{uuid.uuid4().hex}")
    yield store
    store.delete_state_prefix("")
    store.close()


@pytest.fixture
def keyring() -> KeyRing:
    return KeyRing(MASTER_SECRET)


@dataclass
class Call:
    """One seeded attempt and a way to report events on it."""

    sink: CallSession
    seeded: Seeded
    database: Database
    coordination: Coordination
    key: str
    attempt_id: int
    ref: str = "CA0123456789abcdef0123456789abcdef"

    def __post_init__(self) -> None:
        self._ticks = itertools.count(1)

    def report(self, **fields: Any) -> list[act.Action]:
        at = NOW + timedelta(seconds=5 * next(self._ticks))
        base = CallEvent(self.ref, at, attempt_key=self.key)
        return self.sink.on_call_event(_with(base, **fields))

    def answer(self) -> list[act.Action]:
        return self.report(status=CallStatus.IN_PROGRESS, answered_by=AnsweredBy.HUMAN)

    def attempt(self) -> Attempt:
        with self.database.read_only() as session:
            attempt = session.get(Attempt, self.attempt_id)
            assert attempt is not None
            return attempt

    def state(self) -> str | None:
        return self.coordination.get_state(session_key(self.seeded.campaign_id, self.attempt_id))


def _with(event: CallEvent, **fields: Any) -> CallEvent:
    return replace(event, **fields)


def _session(
    database: Database, coordination: Coordination, keyring: KeyRing, clock: SimulatedClock
) -> CallSession:
    settings = load_settings(environment="demo", database_url=database.url)
    return CallSession(database, coordination, keyring, settings, clock=clock)


def _call(
    database: Database,
    coordination: Coordination,
    keyring: KeyRing,
    disclosure: DisclosureLevel = DisclosureLevel.NOTICE,
) -> Call:
    seeded = seed_campaign(database, keyring, ["a", "b"], disclosure=disclosure)
    sink = _session(database, coordination, keyring, SimulatedClock(NOW))
    return Call(
        sink, seeded, database, coordination, seeded.attempt_keys["a"], seeded.attempt_ids["a"]
    )


@pytest.fixture
def call(database: Database, coordination: Coordination, keyring: KeyRing) -> Call:
    return _call(database, coordination, keyring)


def _counted(database: Database, metric: str, dimension: str = "total") -> int:
    with database.read_only() as session:
        values = session.scalars(
            select(DailyAggregate.value).where(
                DailyAggregate.metric == metric, DailyAggregate.dimension == dimension
            )
        )
        return sum(values)


def _kinds(actions: list[act.Action]) -> list[str]:
    return [type(action).__name__ for action in actions]


def test_a_call_runs_the_flow_and_finishes_the_attempt_once(call: Call) -> None:
    assert call.report(status=CallStatus.INITIATED) == []
    assert call.report(status=CallStatus.RINGING) == []
    greeting = call.answer()
    assert _kinds(greeting)[-1] == "Gather"
    assert any("ヤマダ タロウ" in a.text for a in greeting if isinstance(a, act.Say))
    assert _kinds(call.report(digits="1"))[-1] == "Gather"  # the menu
    assert "Hangup" in _kinds(call.report(digits="3"))  # already paid
    assert call.report(status=CallStatus.COMPLETED, duration_seconds=42) == []
    assert call.report(status=CallStatus.COMPLETED, duration_seconds=42) == []  # a repeat
    attempt = call.attempt()
    assert attempt.status is AttemptStatus.COMPLETED
    assert attempt.outcome_code == "paid_claimed"
    assert attempt.carrier_result == "completed"
    assert attempt.carrier_ref == call.ref
    assert attempt.duration_seconds == 42
    assert attempt.answered_at is not None and attempt.ended_at is not None
    assert attempt.identity_confirmed_at is not None
    assert _counted(call.database, "attempts.ivr") == 1
    assert _counted(call.database, "outcome.ivr.paid_claimed") == 1
    assert _counted(call.database, "attempts.ivr", "kind:市民税") == 1  # kinds from the context
    assert call.state() is None


def test_retried_webhooks_and_repeated_statuses_change_nothing(call: Call) -> None:
    call.answer()
    assert call.answer() == []  # in-progress again: the flow does not restart
    token = {"idempotency_token": "retry-1"}
    first = call.report(digits="1", raw=token)
    assert _kinds(first)[-1] == "Gather"
    assert call.report(digits="1", raw=token) == []  # the same webhook, retried
    assert call.sink.warnings["repeated_event"] == 1
    call.report(digits="0")
    call.report(status=CallStatus.COMPLETED)
    assert call.attempt().outcome_code == "rpc_confirmed"


def test_a_final_status_before_the_answer_ends_the_call(call: Call) -> None:
    assert call.report(status=CallStatus.COMPLETED, duration_seconds=3) == []
    assert call.answer() == []  # late, after the end
    assert call.report(digits="1") == []
    attempt = call.attempt()
    assert attempt.status is AttemptStatus.COMPLETED
    assert attempt.outcome_code is None and attempt.carrier_result == "completed"
    assert _counted(call.database, "attempts.ivr", "kind:市民税") == 1  # no context: read
    assert _counted(call.database, "attempts.ivr") == 1


def test_unanswered_results_are_recorded_without_an_outcome(call: Call) -> None:
    call.report(status=CallStatus.RINGING)
    call.report(status=CallStatus.NO_ANSWER)
    attempt = call.attempt()
    assert attempt.carrier_result == "no-answer" and attempt.outcome_code is None
    assert _counted(call.database, "carrier_result.ivr.no-answer") == 1


def test_unknown_calls_get_nothing_and_a_counted_warning(
    call: Call, caplog: pytest.LogCaptureFixture
) -> None:
    stranger = CallEvent("CAunknown", NOW, status=CallStatus.IN_PROGRESS, attempt_key="nope")
    assert call.sink.on_call_event(stranger) == []
    assert call.sink.on_call_event(CallEvent("CAunknown", NOW, digits="1")) == []
    assert call.sink.warnings["unknown_call"] == 2
    assert call.attempt().status is AttemptStatus.CLAIMED
    assert "CAunknown" not in caplog.text and "nope" not in caplog.text


def test_events_found_by_carrier_ref_once_bound(call: Call) -> None:
    call.answer()  # binds the carrier ref to the attempt
    by_ref = CallEvent(call.ref, NOW + timedelta(minutes=1), digits="1")
    assert _kinds(call.sink.on_call_event(by_ref))[-1] == "Gather"


def test_wrong_number_marks_the_phone(call: Call) -> None:
    call.answer()
    call.report(digits="2")
    call.report(digits="9")
    call.report(status=CallStatus.COMPLETED)
    assert call.attempt().outcome_code == "wrong_number"
    with call.database.read_only() as session:
        phone = session.get(Phone, call.seeded.phone_id)
        assert phone is not None and phone.status is PhoneStatus.WRONG_NUMBER


def test_do_not_call_from_the_menu_blocks_the_number_by_digest(call: Call) -> None:
    call.answer()
    call.report(digits="1")
    call.report(digits="5")
    call.report(status=CallStatus.COMPLETED)
    with call.database.read_only() as session:
        entries = session.scalars(select(DoNotCall)).all()
        phone = session.get(Phone, call.seeded.phone_id)
    assert [e.number_digest for e in entries] == [call.seeded.phone_digest]
    assert phone is not None and phone.status is PhoneStatus.OPTED_OUT


def test_callback_request_is_due_in_the_chosen_band_inside_the_window(call: Call) -> None:
    call.answer()
    call.report(digits="1")
    actions = call.report(digits="1")  # operator: nobody is free -> callback offer
    assert "Transfer" not in _kinds(actions)
    call.report(digits="3")  # evening
    call.report(status=CallStatus.COMPLETED)
    with call.database.read_only() as session:
        requests = session.scalars(select(CallbackRequest)).all()
    assert len(requests) == 1
    request = requests[0]
    assert request.time_band == "evening" and request.attempt_id == call.attempt_id
    window = CallingWindow(load_settings(environment="demo").calling_window.policy())
    assert window.is_open(request.due_at)
    assert request.due_at.astimezone(TOKYO).hour >= 17 and request.due_at >= NOW
    assert call.attempt().outcome_code == "rpc_promise_callback"
    assert _counted(call.database, "callbacks") == 1


def test_a_free_operator_takes_the_transfer(call: Call) -> None:
    set_free_operators(call.coordination, 1)
    call.answer()
    call.report(digits="1")
    assert "Transfer" in _kinds(call.report(digits="1"))
    assert call.coordination.get_state(OPERATORS_FREE_KEY) == "0"
    call.report(transfer_ok=True)
    call.report(status=CallStatus.COMPLETED, duration_seconds=300)
    assert call.attempt().outcome_code == "transferred"


def test_sms_request_schedules_one_sms_attempt_now(call: Call) -> None:
    call.answer()
    call.report(digits="1")
    call.report(digits="4")
    call.report(digits="4")  # asked twice: the engine sends once
    call.report(digits="0")
    call.report(status=CallStatus.COMPLETED)
    with call.database.read_only() as session:
        sms = session.scalars(select(Attempt).where(Attempt.channel == Channel.SMS)).all()
    assert len(sms) == 1
    assert sms[0].status is AttemptStatus.SCHEDULED and sms[0].scheduled_at == NOW
    assert sms[0].phone_id == call.seeded.phone_id


def test_state_lives_in_coordination_and_another_process_continues(
    call: Call, keyring: KeyRing, request: pytest.FixtureRequest
) -> None:
    call.answer()
    stored = call.state()
    assert stored is not None and json.loads(stored)["phase"] == "in_flow"
    other_store = call.coordination
    if isinstance(call.coordination, RedisCoordination):
        other_store = RedisCoordination(
            request.getfixturevalue("redis_url"), call.coordination.namespace
        )
        request.addfinalizer(other_store.close)
    other = _session(call.database, other_store, keyring, SimulatedClock(NOW))
    event = CallEvent(call.ref, NOW + timedelta(minutes=1), digits="1", attempt_key=call.key)
    assert _kinds(other.on_call_event(event))[-1] == "Gather"
    assert json.loads(call.state() or "{}")["engine"]["identity_confirmed"] is True


def test_no_personal_value_reaches_the_coordination_state(
    database: Database, coordination: Coordination, keyring: KeyRing
) -> None:
    call = _call(database, coordination, keyring, DisclosureLevel.DETAIL)
    call.answer()
    call.report(digits="1")
    detail = call.report(digits="0415")  # the birth month-day: the detail is disclosed
    assert any("38,500" in a.text for a in detail if isinstance(a, act.Say))
    stored = call.state() or ""
    assert json.loads(stored)["engine"]["second_factor"] == "passed"
    personal = [
        PII["name"],
        PII["name_kana"],
        "ヤマダ",
        "0415",
        "1980",
        "38500",
        "38,500",
        RESIDENT_E164,
        "9012345678",
        "市民税",
    ]
    assert [value for value in personal if value in stored] == []


def test_inbound_stop_blocks_the_sender_without_storing_the_number(
    call: Call, keyring: KeyRing
) -> None:
    call.sink.on_inbound_sms(InboundSms("SMin1", NOW, "+819099998888", "こんにちは"))
    call.sink.on_inbound_sms(InboundSms("SMin2", NOW, RESIDENT_E164, " ＳＴＯＰ "))
    call.sink.on_inbound_sms(InboundSms("SMin3", NOW, RESIDENT_E164, "停止"))  # again
    with call.database.read_only() as session:
        entries = session.scalars(select(DoNotCall)).all()
        phone = session.get(Phone, call.seeded.phone_id)
    assert [(e.number_digest, e.source) for e in entries] == [
        (keyring.digest("phone", RESIDENT_E164), "sms")
    ]
    assert all("9012345678" not in str(vars(e)) for e in entries)
    assert phone is not None and phone.status is PhoneStatus.OPTED_OUT
    assert call.sink.warnings["inbound_sms_not_opt_out"] == 1


def test_sms_delivery_status_is_recorded_once(call: Call) -> None:
    with call.database.unit_of_work() as session:  # as the dispatcher records a sent SMS
        sms = Attempt(
            campaign_id=call.seeded.campaign_id,
            person_id=call.seeded.person_id,
            phone_id=call.seeded.phone_id,
            channel=Channel.SMS,
            status=AttemptStatus.COMPLETED,
            outcome_code="sms_sent",
            scheduled_at=NOW,
            idempotency_key="sms-test-1",
            carrier_ref="SM1",
        )
        session.add(sms)
    call.sink.on_sms_status(SmsStatusEvent("SM1", NOW, SmsStatus.SENT))
    call.sink.on_sms_status(SmsStatusEvent("SM1", NOW, SmsStatus.DELIVERED))
    call.sink.on_sms_status(SmsStatusEvent("SM1", NOW, SmsStatus.SENT))  # late, out of order
    call.sink.on_sms_status(SmsStatusEvent("SM1", NOW, SmsStatus.DELIVERED))  # repeated
    call.sink.on_sms_status(SmsStatusEvent("SMnope", NOW, SmsStatus.DELIVERED))
    with call.database.read_only() as session:
        stored = session.scalars(select(Attempt).where(Attempt.carrier_ref == "SM1")).one()
    assert stored.carrier_result == "delivered" and stored.outcome_code == "sms_sent"
    assert _counted(call.database, "sms.delivered") == 1
    assert _counted(call.database, "sms.sent") == 0  # counted by the sender, not here
    assert call.sink.warnings["unknown_sms"] == 1


# ------------------------------------------------------------------ callback_due (pure)

WINDOW = CallingWindow(CallingPolicy.default())  # Mon-Sat 09:00-20:00


@pytest.mark.parametrize(
    ("after_local", "band", "expected_local"),
    [
        (datetime(2026, 11, 25, 10, 0), TimeBand.EVENING, datetime(2026, 11, 25, 17, 0)),
        (datetime(2026, 11, 25, 10, 0), TimeBand.MORNING, datetime(2026, 11, 25, 10, 0)),
        (datetime(2026, 11, 25, 13, 0), TimeBand.MORNING, datetime(2026, 11, 26, 9, 0)),
        (datetime(2026, 11, 25, 21, 30), TimeBand.ANY, datetime(2026, 11, 26, 9, 0)),
        (datetime(2026, 11, 28, 18, 0), TimeBand.AFTERNOON, datetime(2026, 11, 30, 12, 0)),
    ],
)
def test_callback_due_is_the_next_opening_of_the_band(
    after_local: datetime, band: TimeBand, expected_local: datetime
) -> None:
    due = callback_due(WINDOW, band, after_local.replace(tzinfo=TOKYO))
    assert due == expected_local.replace(tzinfo=TOKYO)
    assert WINDOW.is_open(due)


# ------------------------------------------------------------------ the opened context in memory


def test_the_context_is_opened_once_per_call_and_dropped_at_its_end(call: Call) -> None:
    person_reads: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "sealed_pii" in statement:  # the sealed record read
            person_reads.append(statement)

    sa_event.listen(call.database.engine, "before_cursor_execute", count)
    try:
        call.answer()
        assert call.attempt_id in call.sink.contexts  # opened on the answer, kept for the call
        opened = len(person_reads)
        assert opened >= 1
        assert _kinds(call.report(digits="1"))[-1] == "Gather"
        call.report(digits="0")
        assert len(person_reads) == opened  # the sealed record was not read again
    finally:
        sa_event.remove(call.database.engine, "before_cursor_execute", count)
    assert call.attempt_id in call.sink.contexts
    call.report(status=CallStatus.COMPLETED)
    assert call.attempt_id not in call.sink.contexts
    assert call.report(status=CallStatus.COMPLETED) == []  # a repeat after the end
    assert call.attempt_id not in call.sink.contexts


def test_a_call_wiped_mid_flow_forgets_its_context_and_hangs_up(call: Call) -> None:
    call.answer()
    assert call.attempt_id in call.sink.contexts
    with call.database.unit_of_work() as session:  # what the wipe does to a live attempt
        attempt = session.get(Attempt, call.attempt_id)
        assert attempt is not None
        attempt.person_id = None
        attempt.phone_id = None
    actions = call.report(digits="1")
    assert _kinds(actions) == ["Hangup"]
    assert not any(isinstance(a, act.Say) for a in actions)
    assert call.attempt_id not in call.sink.contexts
    assert call.sink.warnings["context_unavailable"] == 1


def test_an_expired_context_is_opened_again(call: Call) -> None:
    clock = _Monotonic()
    call.sink.contexts = ContextCache(ttl_seconds=60, clock=clock)
    call.answer()
    clock.now += 61
    assert call.attempt_id not in call.sink.contexts
    menu = call.report(digits="1")  # reopened from the sealed record
    assert _kinds(menu)[-1] == "Gather"
    assert call.attempt_id in call.sink.contexts


def test_operators_are_counted_afresh_on_every_step_of_a_cached_call(call: Call) -> None:
    call.answer()  # nobody is free when the context is opened
    set_free_operators(call.coordination, 1)
    call.report(digits="1")
    assert "Transfer" in _kinds(call.report(digits="1"))
    assert call.coordination.get_state(OPERATORS_FREE_KEY) == "0"


def test_later_reports_of_a_call_skip_the_lookup_but_unknown_calls_stay_unknown(
    call: Call,
) -> None:
    call.answer()
    with call.database.unit_of_work() as session:  # the key is now remembered by this process
        attempt = session.get(Attempt, call.attempt_id)
        assert attempt is not None
        attempt.idempotency_key = "renamed-after-the-first-report"
    assert _kinds(call.report(digits="1"))[-1] == "Gather"
    stranger = CallEvent("CAother", NOW, digits="1", attempt_key="nope")
    assert call.sink.on_call_event(stranger) == []
    assert call.sink.warnings["unknown_call"] == 1


class _Monotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------ group commit


def _second_call(call: Call) -> Call:
    return Call(
        call.sink,
        call.seeded,
        call.database,
        call.coordination,
        call.seeded.attempt_keys["b"],
        call.seeded.attempt_ids["b"],
        ref="CAbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
    )


def _event(call: Call, seconds: int, **fields: Any) -> CallEvent:
    return _with(
        CallEvent(call.ref, NOW + timedelta(seconds=seconds), attempt_key=call.key), **fields
    )


def test_a_batch_handles_two_calls_and_keeps_each_calls_order(call: Call) -> None:
    other = _second_call(call)
    answered = {"status": CallStatus.IN_PROGRESS, "answered_by": AnsweredBy.HUMAN}
    batch = [
        _event(call, 1, **answered),
        _event(other, 1, **answered),
        _event(call, 2, digits="1"),
        _event(other, 2, digits="2"),  # not the person
        _event(call, 3, digits="3"),  # already paid
        _event(call, 4, status=CallStatus.COMPLETED, duration_seconds=40),
        _event(other, 4, status=CallStatus.COMPLETED, duration_seconds=20),
        _event(call, 5, status=CallStatus.COMPLETED, duration_seconds=40),  # a repeat
    ]
    sealed_reads: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "sealed_pii" in statement:
            sealed_reads.append(statement)

    sa_event.listen(call.database.engine, "before_cursor_execute", count)
    try:
        results = call.sink._on_call_events(batch)
    finally:
        sa_event.remove(call.database.engine, "before_cursor_execute", count)
    assert len(sealed_reads) == 1  # both answered calls opened together
    kinds = [_kinds(r) if isinstance(r, list) else r for r in results]
    assert [k[-1] for k in kinds[:4]] == ["Gather"] * 4  # greetings, menu, "your number?"
    assert "Hangup" in kinds[4]
    assert kinds[5:] == [[], ["RecordOutcome"], []]  # "other" hung up mid-flow
    assert call.attempt().outcome_code == "paid_claimed"
    assert other.attempt().outcome_code == "wrong_party"
    assert call.attempt().duration_seconds == 40 and other.attempt().duration_seconds == 20
    assert _counted(call.database, "attempts.ivr") == 2  # each finished and counted once
    # the batch's counters are added up and written together: each call still counts alone
    assert _counted(call.database, "outcome.ivr.paid_claimed") == 1
    assert _counted(call.database, "outcome.ivr.wrong_party") == 1
    assert _counted(call.database, "talk_seconds.ivr") == 60
    with call.database.read_only() as session:
        dimensions = set(session.scalars(select(DailyAggregate.dimension)))
    assert any(dimension.startswith("kind:") for dimension in dimensions)
    for kind in dimensions - {"total"}:
        assert _counted(call.database, "attempts.ivr", kind) == 2
    assert call.state() is None and other.state() is None
    assert call.attempt_id not in call.sink.contexts


def test_a_report_that_fails_in_a_batch_fails_alone(
    database: Database, coordination: Coordination, keyring: KeyRing
) -> None:
    class FailsOnOneCall(CallSession):
        def _handle(self, session: Any, attempt: Attempt, *args: Any) -> Any:
            if attempt.idempotency_key.endswith("-2"):
                raise RuntimeError("this report cannot be saved")
            return super()._handle(session, attempt, *args)

    seeded = seed_campaign(database, keyring, ["a", "b"])
    settings = load_settings(environment="demo", database_url=database.url)
    sink = FailsOnOneCall(database, coordination, keyring, settings, clock=SimulatedClock(NOW))
    call = Call(
        sink, seeded, database, coordination, seeded.attempt_keys["a"], seeded.attempt_ids["a"]
    )
    other = _second_call(call)
    answered = {"status": CallStatus.IN_PROGRESS, "answered_by": AnsweredBy.HUMAN}
    results = sink._on_call_events(
        [
            _event(call, 1, **answered),
            _event(other, 1, **answered),
            _event(call, 2, status=CallStatus.COMPLETED),
        ]
    )
    assert isinstance(results[1], RuntimeError)
    assert isinstance(results[0], list) and _kinds(results[0])[-1] == "Gather"
    assert isinstance(results[2], list) and _kinds(results[2]) == ["RecordOutcome"]
    assert call.attempt().status is AttemptStatus.COMPLETED
    assert call.attempt().outcome_code == "hangup_before_confirm"
    assert other.attempt().status is AttemptStatus.CLAIMED  # nothing of it was saved
    assert _counted(database, "attempts.ivr") == 1


def test_reports_submitted_from_many_threads_are_all_answered(call: Call) -> None:
    other = _second_call(call)
    answered = {"status": CallStatus.IN_PROGRESS, "answered_by": AnsweredBy.HUMAN}
    greetings = [call.sink.submit_call_event(_event(c, 1, **answered)) for c in (call, other)]
    assert all(_kinds(g.result(timeout=30))[-1] == "Gather" for g in greetings)
    menus = [call.sink.submit_call_event(_event(c, 2, digits="1")) for c in (call, other)]
    assert all(_kinds(m.result(timeout=30))[-1] == "Gather" for m in menus)
    ends = [
        call.sink.submit_call_event(_event(c, 3, status=CallStatus.COMPLETED))
        for c in (call, other)
    ]
    assert [_kinds(e.result(timeout=30)) for e in ends] == [["RecordOutcome"]] * 2
    assert call.attempt().outcome_code == other.attempt().outcome_code == "rpc_confirmed"
    assert _counted(call.database, "attempts.ivr") == 2


class _StoreFailsOnce(LocalCoordination):
    """In-process coordination whose next state write fails (the store went away)."""

    fail_next_put = False

    def put_state(self, key: str, value: str, ttl_seconds: float) -> None:
        if self.fail_next_put:
            self.fail_next_put = False
            raise CoordinationUnavailable("the store went away")
        super().put_state(key, value, ttl_seconds)


def test_a_failure_after_the_commit_reaches_the_reports_and_nothing_is_redone(
    database: Database, keyring: KeyRing
) -> None:
    store = _StoreFailsOnce()
    call = _call(database, store, keyring)
    other = _second_call(call)
    answered = {"status": CallStatus.IN_PROGRESS, "answered_by": AnsweredBy.HUMAN}
    for each in (call, other):
        call.sink.submit_call_event(_event(each, 1, **answered)).result(timeout=30)
    store.fail_next_put = True
    with pytest.raises(CoordinationUnavailable):
        call.sink._on_call_events(
            [_event(call, 2, status=CallStatus.COMPLETED), _event(other, 2, digits="1")]
        )
    assert call.attempt().status is AttemptStatus.COMPLETED  # committed before the failure
    assert other.attempt().identity_confirmed_at is not None
    assert _counted(database, "attempts.ivr") == 1
    # not handled a second time: the state the failed write was to replace is still there
    assert json.loads(other.state() or "{}")["engine"]["identity_confirmed"] is False
