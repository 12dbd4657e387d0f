"""The operator and staff services behind the console, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from agent_console.accounts import add_user
from dialer import staff_work
from dialer.operator_log import FollowUpPolicy, find_callers, save_call, start_inbound
from dialer.operator_screen import confirm_identity, open_call_screen
from dialer.operator_work import (
    HANDOFF_NOTES_FIELD,
    NOTES_FIELD,
    CallForm,
    ClaimGate,
    ClaimRefused,
    cipher_for,
    claim_next,
)
from kernel.calendar import TOKYO, CallingPolicy, CallingWindow
from kernel.db import Database
from kernel.errors import Conflict, Forbidden, InvalidInput
from kernel.models import (
    Attempt,
    AttemptStatus,
    AuditEvent,
    CallbackRequest,
    CallbackStatus,
    Campaign,
    DailyAggregate,
    ExclusionEntry,
    ExclusionList,
    HandOff,
    Person,
    Role,
)
from sync import results
from tests.e2e.world import ACCOUNTS, KEYRING, OPEN_NOW, PASSWORD, World, build_world

WINDOW = CallingWindow(CallingPolicy.default())
GATE = ClaimGate(WINDOW, timedelta(hours=24))
POLICY = FollowUpPolicy(WINDOW, retry_limit=4)


@pytest.fixture
def world(database: Database, tmp_path: Path) -> World:
    return build_world(database, tmp_path, persons=20)


def _operator(world: World) -> int:
    return world.user_ids[ACCOUNTS[Role.OPERATOR]]


def test_notes_are_sealed_under_the_field_the_results_export_reads() -> None:
    assert NOTES_FIELD == results.NOTES_FIELD


def test_concurrent_claims_never_hand_one_target_to_two_operators(
    database: Database, tmp_path: Path
) -> None:
    world = build_world(database, tmp_path, persons=40)
    operators = []
    with database.unit_of_work() as session:
        for number in range(8):
            user = add_user(session, f"op.race{number}", "競合", Role.OPERATOR, PASSWORD, "t")
            operators.append(user.id)
    claimed: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(operators))

    def work(user_id: int) -> None:
        try:
            start.wait()
            while True:
                with database.unit_of_work() as session:
                    claim = claim_next(session, user_id, GATE, OPEN_NOW)
                    if claim is None:
                        return
                    claimed.append((claim.attempt_id, user_id))
                    session.execute(
                        update(Attempt)
                        .where(Attempt.id == claim.attempt_id)
                        .values(status=AttemptStatus.COMPLETED)
                    )
        except BaseException as error:  # reported below, with the thread's context lost
            errors.append(error)

    threads = [threading.Thread(target=work, args=(user_id,)) for user_id in operators]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    counts = Counter(attempt_id for attempt_id, _ in claimed)
    assert counts and max(counts.values()) == 1
    assert sorted(counts) == sorted(world.attempt_ids)
    with database.read_only() as session:
        owners = dict(
            session.execute(select(Attempt.id, Attempt.operator_id).where(Attempt.id.in_(counts)))
            .tuples()
            .all()
        )
    assert owners == dict(claimed)


def test_an_operator_holds_one_target_until_it_is_logged(world: World, database: Database) -> None:
    with database.unit_of_work() as session:
        first = claim_next(session, _operator(world), GATE, OPEN_NOW)
        again = claim_next(session, _operator(world), GATE, OPEN_NOW)
    assert first is not None and again is not None
    assert again.attempt_id == first.attempt_id


def test_due_callbacks_come_before_the_queue_and_future_ones_wait(
    world: World, database: Database
) -> None:
    with database.unit_of_work() as session:
        persons = session.scalars(select(Person.id).order_by(Person.id.desc()).limit(2)).all()
        common = {"campaign_id": world.campaign_id, "time_band": "morning"}
        session.add(
            CallbackRequest(person_id=persons[0], due_at=OPEN_NOW + timedelta(hours=2), **common)
        )
        due = CallbackRequest(
            person_id=persons[1], due_at=OPEN_NOW - timedelta(minutes=1), **common
        )
        session.add(due)
        session.flush()
        claim = claim_next(session, _operator(world), GATE, OPEN_NOW)
        assert claim is not None and claim.callback_id == due.id
        attempt = session.get(Attempt, claim.attempt_id)
        assert attempt is not None and attempt.person_id == persons[1]
        assert session.get(CallbackRequest, due.id).status is CallbackStatus.CLAIMED  # type: ignore[union-attr]


def test_claims_stop_outside_the_window_and_without_a_fresh_exclusion_list(
    world: World, database: Database
) -> None:
    night = OPEN_NOW.replace(hour=13)  # 22:00 in Tokyo
    with database.unit_of_work() as session:
        with pytest.raises(ClaimRefused) as refused:
            claim_next(session, _operator(world), GATE, night)
        assert refused.value.reason == "outside_window"
        with pytest.raises(ClaimRefused) as refused:
            claim_next(session, _operator(world), GATE, OPEN_NOW + timedelta(hours=25, minutes=1))
        assert refused.value.reason in {"exclusion_list_stale", "outside_window"}
        session.execute(update(ExclusionList).values(active=False))
        with pytest.raises(ClaimRefused) as refused:
            claim_next(session, _operator(world), GATE, OPEN_NOW)
        assert refused.value.reason == "exclusion_list_missing"


def test_targets_on_the_exclusion_list_are_never_handed_out(
    world: World, database: Database
) -> None:
    with database.unit_of_work() as session:
        listed = session.scalars(select(ExclusionList)).one()
        refs = session.scalars(
            select(Person.ref_digest).where(Person.id.in_(select(Attempt.person_id)))
        ).all()
        session.add_all(
            ExclusionEntry(list_id=listed.id, ref_digest=ref, reason="dv") for ref in refs
        )
        session.flush()
        assert claim_next(session, _operator(world), GATE, OPEN_NOW) is None


def _claimed_and_confirmed(world: World, database: Database) -> int:
    with database.unit_of_work() as session:
        claim = claim_next(session, _operator(world), GATE, OPEN_NOW)
        assert claim is not None
        confirm_identity(session, claim.attempt_id, _operator(world))
    return claim.attempt_id


def test_receivables_are_shown_only_after_identity_is_confirmed(
    world: World, database: Database
) -> None:
    with database.unit_of_work() as session:
        claim = claim_next(session, _operator(world), GATE, OPEN_NOW)
        assert claim is not None
        before = open_call_screen(session, KEYRING, claim.attempt_id, _operator(world))
        assert before.receivables == [] and not before.identity_confirmed
        assert before.name and before.phones
        confirm_identity(session, claim.attempt_id, _operator(world))
        after = open_call_screen(session, KEYRING, claim.attempt_id, _operator(world))
        assert after.receivables and after.identity_confirmed
        views = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "person.viewed")
        ).all()
        assert [event.detail["page"] for event in views] == ["call_screen", "call_screen"]
        assert {event.actor for event in views} == {f"user:{_operator(world)}"}


def test_another_operator_cannot_open_a_claimed_target(world: World, database: Database) -> None:
    attempt_id = _claimed_and_confirmed(world, database)
    with database.unit_of_work() as session:
        other = add_user(session, "op.other", "他", Role.OPERATOR, PASSWORD, "t")
        with pytest.raises(Forbidden):
            open_call_screen(session, KEYRING, attempt_id, other.id)


def test_saving_a_promise_with_hand_off_and_callback(world: World, database: Database) -> None:
    attempt_id = _claimed_and_confirmed(world, database)
    callback_at = OPEN_NOW.astimezone(TOKYO).replace(hour=15) + timedelta(days=1)
    form = CallForm(
        result_code="promise",
        promise_date=date(2026, 12, 10),
        promise_amount_yen=12000,
        payment_method="el_qr",
        slip_reissue=True,
        callback_at=callback_at,
        handoff_reason="installment",
        notes="分納の相談あり",
    )
    with database.unit_of_work() as session:
        saved = save_call(
            session, KEYRING, attempt_id, _operator(world), form, POLICY, 500, OPEN_NOW
        )
    with database.read_only() as session:
        attempt = session.get(Attempt, attempt_id)
        assert attempt is not None and attempt.status is AttemptStatus.COMPLETED
        assert (attempt.outcome_code, attempt.promise_amount_yen) == ("promise", 12000)
        assert attempt.slip_reissue and attempt.payment_method == "el_qr"
        campaign = session.get(Campaign, world.campaign_id)
        assert campaign is not None
        cipher = cipher_for(KEYRING, campaign)
        assert (
            attempt.sealed_notes
            and cipher.open_text(attempt.sealed_notes, NOTES_FIELD) == "分納の相談あり"
        )
        handoff = session.get(HandOff, saved.handoff_id)
        assert handoff is not None and handoff.reason == "installment" and handoff.sealed_notes
        assert cipher.open_text(handoff.sealed_notes, HANDOFF_NOTES_FIELD) == "分納の相談あり"
        callback = session.get(CallbackRequest, saved.callback_id)
        assert callback is not None and callback.time_band == "afternoon"
        counters = dict(
            session.execute(select(DailyAggregate.metric, DailyAggregate.value)).tuples().all()
        )
        assert counters["attempts.operator"] == 1
        assert counters["outcome.operator.promise"] == 1
        assert saved.retry_attempt_id is None


def test_a_logged_call_cannot_be_logged_twice(world: World, database: Database) -> None:
    attempt_id = _claimed_and_confirmed(world, database)
    form = CallForm(result_code="paid_claimed")
    with database.unit_of_work() as session:
        save_call(session, KEYRING, attempt_id, _operator(world), form, POLICY, 500, OPEN_NOW)
    with database.unit_of_work() as session, pytest.raises(Conflict):
        save_call(session, KEYRING, attempt_id, _operator(world), form, POLICY, 500, OPEN_NOW)


@pytest.mark.parametrize(
    "form",
    [
        CallForm(result_code="promise"),  # no promise date
        CallForm(result_code="no_such_code"),
        CallForm(result_code="rpc_other", notes="あ" * 501),
        CallForm(result_code="consultation"),  # no hand-off reason
        CallForm(result_code="callback", callback_at=OPEN_NOW - timedelta(hours=1)),
    ],
)
def test_incomplete_forms_are_refused_and_nothing_is_saved(
    world: World, database: Database, form: CallForm
) -> None:
    attempt_id = _claimed_and_confirmed(world, database)
    with database.unit_of_work() as session, pytest.raises(InvalidInput):
        save_call(session, KEYRING, attempt_id, _operator(world), form, POLICY, 500, OPEN_NOW)
    with database.read_only() as session:
        attempt = session.get(Attempt, attempt_id)
        assert attempt is not None and attempt.status is AttemptStatus.CLAIMED
        assert session.scalar(select(func.count()).select_from(DailyAggregate)) == 0


def test_no_answer_queues_another_operator_call_later(world: World, database: Database) -> None:
    attempt_id = _claimed_and_confirmed(world, database)
    with database.unit_of_work() as session:
        saved = save_call(
            session,
            KEYRING,
            attempt_id,
            _operator(world),
            CallForm("no_answer"),
            POLICY,
            500,
            OPEN_NOW,
        )
    with database.read_only() as session:
        retry = session.get(Attempt, saved.retry_attempt_id)
        assert retry is not None and retry.status is AttemptStatus.SCHEDULED
        assert retry.scheduled_at >= OPEN_NOW + timedelta(hours=4)


def test_inbound_lookup_by_number_and_by_atena_no(world: World, database: Database) -> None:
    with database.unit_of_work() as session:
        attempt = session.scalars(select(Attempt).order_by(Attempt.id).limit(1)).one()
        screen_person = session.get(Person, attempt.person_id)
        assert screen_person is not None
        campaign = session.get(Campaign, world.campaign_id)
        assert campaign is not None
        cipher = cipher_for(KEYRING, campaign)
        record = cipher.open_record(screen_person.sealed_pii, "pii")
        number = cipher.open_text(screen_person.phones[0].sealed_number, "phone")
        national = "0" + number.removeprefix("+81")
        by_phone = find_callers(session, KEYRING, _operator(world), phone=national)
        by_atena = find_callers(
            session, KEYRING, _operator(world), atena_no=str(record["atena_no"])
        )
        assert screen_person.id in {match.person_id for match in by_phone}
        assert [match.person_id for match in by_atena] == [screen_person.id]
        attempt_id = start_inbound(session, screen_person.id, _operator(world), OPEN_NOW)
        inbound = session.get(Attempt, attempt_id)
        assert inbound is not None and inbound.inbound and inbound.status is AttemptStatus.CLAIMED
        lookups = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "inbound.lookup")
        ).all()
        assert len(lookups) == 2
        shown = session.scalars(
            select(AuditEvent.object_id).where(
                AuditEvent.action == "person.viewed", AuditEvent.actor == f"user:{_operator(world)}"
            )
        ).all()
        assert str(screen_person.id) in shown


def test_staff_take_note_and_close_a_hand_off_with_its_timeline(
    world: World, database: Database
) -> None:
    attempt_id = _claimed_and_confirmed(world, database)
    form = CallForm(result_code="consultation", handoff_reason="hardship", notes="失業中とのこと")
    staff = world.user_ids[ACCOUNTS[Role.STAFF]]
    with database.unit_of_work() as session:
        saved = save_call(
            session, KEYRING, attempt_id, _operator(world), form, POLICY, 500, OPEN_NOW
        )
    assert saved.handoff_id is not None
    with database.unit_of_work() as session:
        assert [
            row.id for row in staff_work.list_handoffs(session, (staff_work.HandOffStatus.OPEN,))
        ] == [saved.handoff_id]
        staff_work.take(session, saved.handoff_id, staff)
        with pytest.raises(Conflict):
            staff_work.take(session, saved.handoff_id, staff)
        staff_work.add_note(session, KEYRING, saved.handoff_id, staff, "来庁予約 12/3")
        detail = staff_work.handoff_detail(session, KEYRING, saved.handoff_id, staff)
        assert detail.operator_notes == "失業中とのこと"
        assert "来庁予約 12/3" in detail.staff_notes
        assert [entry.outcome for entry in detail.timeline if entry.kind == "attempt"] == [
            "consultation"
        ]
        staff_work.close(session, saved.handoff_id, staff)
        handoff = session.get(HandOff, saved.handoff_id)
        assert handoff is not None and handoff.status is staff_work.HandOffStatus.CLOSED
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.object_type == "handoff")
        ).all()
        assert actions == ["handoff.taken", "handoff.noted", "handoff.closed"]
