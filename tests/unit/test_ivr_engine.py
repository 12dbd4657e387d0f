"""The standard IVR flow, path by path: identity gate, disclosure levels, menu, hang-ups."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

import pytest

from ivr_scripts import (
    AddDoNotCall,
    CallAnswered,
    CallContext,
    Digits,
    FlowError,
    Gather,
    MarkWrongNumber,
    NoInput,
    OutcomeCode,
    ReceivableItem,
    RecordOutcome,
    RequestCallback,
    RequestSms,
    Say,
    SecondFactor,
    Speech,
    TimeBand,
    Transcript,
    Transfer,
    TransferResult,
    load_builtin_flow,
    run_script,
    start,
    step,
)
from ivr_scripts import actions as act
from ivr_scripts import events as ev
from kernel.models.enums import DisclosureLevel

FLOW = load_builtin_flow()
BASE = CallContext(
    municipality="架空市",
    municipality_kana="カクウシ",
    section="納税課",
    callback_number="03-1234-5678",
    name_kana="ヤマダ タロウ",
    disclosure=DisclosureLevel.NOTICE,
    items=(
        ReceivableItem(2024, "市民税", 12_345, date(2024, 8, 31)),
        ReceivableItem(2023, "軽自動車税", 6_789, date(2023, 5, 31)),
    ),
    birth_mmdd="0415",
    mobile=False,
    operator_available=False,
    payment_methods=("地方税統一QRコード(eL-QR)", "コンビニ", "スマートフォン決済アプリ"),
)
HUMAN = CallAnswered("human")
HANGUP = ev.Hangup()
AMOUNTS = ("12,345", "6,789", "19,134", "12345", "6789")
KINDS = ("市民税", "軽自動車税")
NOTICE_TEXT = "通知書をご確認のうえ"
MENU = "終了する場合は0を押してください"


def ctx(**changes: Any) -> CallContext:
    return replace(BASE, **changes)


def run(*events: ev.Event, context: CallContext = BASE) -> Transcript:
    transcript = run_script(FLOW, context, events)
    assert_well_formed(transcript)
    return transcript


def keys(*presses: str) -> list[ev.Event]:
    return [Digits(press) for press in presses]


def assert_well_formed(transcript: Transcript) -> None:
    """At most one RecordOutcome, exactly one once ended; nothing after it but one Hangup."""
    actions = transcript.actions
    outcomes = [i for i, a in enumerate(actions) if isinstance(a, RecordOutcome)]
    assert len(outcomes) == (1 if transcript.state.ended else 0)
    if outcomes:
        tail = actions[outcomes[0] + 1 :]
        assert tail in ([], [act.Hangup()])
        assert transcript.state.outcome == actions[outcomes[0]].code  # type: ignore[union-attr]
    assert not any(isinstance(a, act.Hangup) for a in actions[: outcomes[0] if outcomes else None])


def said(transcript: Transcript) -> str:
    return "\n".join(transcript.spoken)


def outcome_detail(transcript: Transcript) -> dict[str, str]:
    (record,) = transcript.outcomes
    return record.detail


# --- greeting and identity confirmation -------------------------------------------------


def test_greeting_names_municipality_section_name_callback_and_warns_about_fraud() -> None:
    transcript = run(HUMAN)
    text = said(transcript)
    for expected in ("架空市", "納税課", "自動音声", "ヤマダ タロウ様", "03-1234-5678", "暗証番号"):
        assert expected in text
    assert "1を" in text and "2を" in text and "「はい」" in text
    gather = transcript.actions[-1]
    assert isinstance(gather, Gather)
    assert gather.input == {"dtmf", "speech"} and gather.num_digits == 1
    assert "はい" in gather.hints and "いいえ" in gather.hints
    assert transcript.outcome is None


@pytest.mark.parametrize(
    "event",
    [Digits("1"), Speech("はい"), Speech("ええ、そうです"), Speech("ハイ。"), Speech("Yes")],
)
def test_confirmation_by_key_or_speech_reaches_the_message_and_menu(event: ev.Event) -> None:
    transcript = run(HUMAN, event)
    assert transcript.state.identity_confirmed
    assert NOTICE_TEXT in said(transcript) and MENU in said(transcript)
    assert transcript.state.disclosure_reached is DisclosureLevel.NOTICE


@pytest.mark.parametrize(
    "event", [Digits("2"), Speech("いいえ"), Speech("違います"), Speech("ちがいます"), Speech("No")]
)
def test_not_the_person_apologises_without_the_name_or_any_detail(event: ev.Event) -> None:
    transcript = run(HUMAN, event)
    reply = "\n".join(transcript.spoken[3:])
    assert "失礼いたしました" in reply and "03-1234-5678" in reply and "9を" in reply
    assert "ヤマダ" not in reply and NOTICE_TEXT not in reply
    transcript = run(HUMAN, event, NoInput())
    assert transcript.outcome is OutcomeCode.WRONG_PARTY
    assert outcome_detail(transcript)["identity"] == "denied"


def test_not_the_persons_number_marks_wrong_number() -> None:
    transcript = run(HUMAN, Digits("2"), Digits("9"))
    assert transcript.outcome is OutcomeCode.WRONG_NUMBER
    assert MarkWrongNumber() in transcript.actions
    assert run(HUMAN, Digits("2"), Digits("5")).outcome is OutcomeCode.WRONG_PARTY
    assert run(HUMAN, Digits("2"), Speech("間違い電話です")).outcome is OutcomeCode.WRONG_NUMBER


def test_silence_twice_repeats_once_then_ends_politely_with_nothing_disclosed() -> None:
    transcript = run(HUMAN, NoInput(), NoInput())
    assert transcript.outcome is OutcomeCode.NO_INPUT
    assert sum(isinstance(a, Gather) for a in transcript.actions) == 2
    assert "もう一度お願いいたします" in said(transcript)
    assert NOTICE_TEXT not in said(transcript)
    assert transcript.actions[-2:] == [transcript.outcomes[0], act.Hangup()]


@pytest.mark.parametrize("garbage", ["5", "*#12ab", "", "11", "１"])
def test_invalid_key_counts_as_a_retry(garbage: str) -> None:
    assert run(HUMAN, Digits(garbage), NoInput()).outcome is OutcomeCode.NO_INPUT
    assert run(HUMAN, Digits(garbage), Digits("1")).state.identity_confirmed


@pytest.mark.parametrize(
    "event", [Speech("はい、違います"), Speech("はい", confidence=0.1), Speech("もしもし")]
)
def test_ambiguous_unsure_or_unknown_speech_is_invalid(event: ev.Event) -> None:
    transcript = run(HUMAN, event)
    assert not transcript.state.identity_confirmed and transcript.state.retries == 1


@pytest.mark.parametrize("words", ["結構です", "いりません", "ケッコウデス"])
def test_refusal_by_speech_ends_with_refused(words: str) -> None:
    transcript = run(HUMAN, Speech(words))
    assert transcript.outcome is OutcomeCode.REFUSED
    assert NOTICE_TEXT not in said(transcript)


# --- disclosure levels and the second factor --------------------------------------------


def test_notice_level_speaks_no_kind_year_or_amount() -> None:
    text = said(run(HUMAN, Digits("1")))
    assert NOTICE_TEXT in text
    assert not any(word in text for word in (*KINDS, *AMOUNTS, "令和6年度"))


def test_summary_level_adds_year_and_kind_but_no_amount() -> None:
    text = said(run(HUMAN, Digits("1"), context=ctx(disclosure=DisclosureLevel.SUMMARY)))
    assert "令和6年度の市民税" in text and "令和5年度の軽自動車税" in text
    assert NOTICE_TEXT in text
    assert not any(amount in text for amount in AMOUNTS)


@pytest.mark.parametrize("answer", [Digits("0415"), Speech("4月15日"), Speech("０４１５")])
def test_detail_level_with_the_right_birth_day_gives_amounts_and_due_dates(
    answer: ev.Event,
) -> None:
    transcript = run(HUMAN, Digits("1"), answer, context=ctx(disclosure=DisclosureLevel.DETAIL))
    text = said(transcript)
    assert "12,345円" in text and "合計で19,134円" in text and "納期限令和6年8月31日" in text
    assert transcript.state.second_factor is SecondFactor.PASSED
    assert transcript.state.disclosure_reached is DisclosureLevel.DETAIL


def test_detail_level_asks_the_birth_day_before_anything_else() -> None:
    transcript = run(HUMAN, Digits("1"), context=ctx(disclosure=DisclosureLevel.DETAIL))
    assert "生年月日の月と日" in said(transcript)
    assert NOTICE_TEXT not in said(transcript)
    gather = transcript.actions[-1]
    assert isinstance(gather, Gather) and gather.num_digits == 4


def test_two_wrong_birth_days_fall_back_to_notice_and_record_it() -> None:
    detail = ctx(disclosure=DisclosureLevel.DETAIL)
    transcript = run(HUMAN, Digits("1"), Digits("0101"), Digits("1231"), context=detail)
    text = said(transcript)
    assert "確認できませんでした" in text and NOTICE_TEXT in text
    assert not any(word in text for word in (*KINDS, *AMOUNTS))
    assert transcript.state.second_factor is SecondFactor.FAILED
    assert transcript.state.second_factor_tries == 2
    final = run(HUMAN, Digits("1"), Digits("0101"), Digits("1231"), Digits("0"), context=detail)
    assert outcome_detail(final) | {"second_factor": "failed", "fallback": "notice"} == (
        outcome_detail(final)
    )


def test_one_wrong_birth_day_then_the_right_one_passes() -> None:
    detail = ctx(disclosure=DisclosureLevel.DETAIL)
    transcript = run(HUMAN, Digits("1"), Digits("0101"), Digits("0415"), context=detail)
    assert "12,345円" in said(transcript)


def test_silence_at_the_second_factor_falls_back_to_notice() -> None:
    detail = ctx(disclosure=DisclosureLevel.DETAIL)
    transcript = run(HUMAN, Digits("1"), NoInput(), Digits("*#12"), context=detail)
    assert transcript.state.second_factor is SecondFactor.NO_INPUT
    assert NOTICE_TEXT in said(transcript) and "12,345" not in said(transcript)


def test_detail_without_a_known_birth_day_gives_the_notice_only() -> None:
    transcript = run(
        HUMAN, Digits("1"), context=ctx(disclosure=DisclosureLevel.DETAIL, birth_mmdd=None)
    )
    assert transcript.state.second_factor is SecondFactor.UNAVAILABLE
    assert "生年月日" not in said(transcript) and NOTICE_TEXT in said(transcript)


# --- the menu ---------------------------------------------------------------------------


def test_operator_free_transfers_and_records_transferred_without_hanging_up() -> None:
    free = ctx(operator_available=True)
    transcript = run(HUMAN, Digits("1"), Digits("1"), context=free)
    assert transcript.actions[-1] == Transfer("operator")
    transcript = run(HUMAN, Digits("1"), Digits("1"), TransferResult(ok=True), context=free)
    assert transcript.outcome is OutcomeCode.TRANSFERRED
    assert act.Hangup() not in transcript.actions
    assert run(HUMAN, Digits("1"), Speech("オペレーターと話したい"), context=free).actions[-1] == (
        Transfer()
    )


@pytest.mark.parametrize(
    ("press", "band"),
    [("1", TimeBand.MORNING), ("2", TimeBand.AFTERNOON), ("3", TimeBand.EVENING)],
)
def test_operator_busy_takes_a_callback_in_the_chosen_band(press: str, band: TimeBand) -> None:
    transcript = run(HUMAN, Digits("1"), Digits("1"), Digits(press))
    assert "ただいま担当者が応対できません" in said(transcript)
    assert RequestCallback(band) in transcript.actions
    assert transcript.outcome is OutcomeCode.RPC_PROMISE_CALLBACK
    assert outcome_detail(transcript)["callback_band"] == band.value


def test_failed_transfer_offers_a_callback() -> None:
    free = ctx(operator_available=True)
    events = [HUMAN, *keys("1", "1"), TransferResult(ok=False), Speech("夕方でお願いします")]
    transcript = run(*events, context=free)
    assert "おつなぎできませんでした" in said(transcript)
    assert RequestCallback(TimeBand.EVENING) in transcript.actions
    assert transcript.outcome is OutcomeCode.RPC_PROMISE_CALLBACK
    assert outcome_detail(transcript)["transfer"] == "failed"


def test_callback_without_a_band_is_still_requested() -> None:
    transcript = run(HUMAN, *keys("1", "1"), NoInput(), NoInput())
    assert RequestCallback(TimeBand.ANY) in transcript.actions
    assert transcript.outcome is OutcomeCode.RPC_PROMISE_CALLBACK


def test_payment_methods_are_read_and_the_menu_returns() -> None:
    transcript = run(HUMAN, *keys("1", "2"))
    assert "地方税統一QRコード(eL-QR)、コンビニ、スマートフォン決済アプリ" in said(transcript)
    assert isinstance(transcript.actions[-1], Gather) and transcript.state.step == "menu"
    assert run(HUMAN, *keys("1", "2", "0")).outcome is OutcomeCode.RPC_CONFIRMED


@pytest.mark.parametrize("answer", [Digits("3"), Speech("もう払いました")])
def test_already_paid_is_recorded_with_the_crossed_payment_apology(answer: ev.Event) -> None:
    transcript = run(HUMAN, Digits("1"), answer)
    assert transcript.outcome is OutcomeCode.PAID_CLAIMED
    assert "行き違い" in transcript.spoken[-1]


def test_sms_is_offered_and_sent_once_to_mobiles_only() -> None:
    mobile = ctx(mobile=True)
    transcript = run(HUMAN, *keys("1", "4", "4", "0"), context=mobile)
    assert "ショートメッセージでお受け取り" in said(transcript)
    assert transcript.actions.count(RequestSms("contact_details")) == 1
    assert transcript.outcome is OutcomeCode.RPC_CONFIRMED
    assert outcome_detail(transcript)["sms_requested"] == "true"
    landline = run(HUMAN, *keys("1", "4"))
    assert "ショートメッセージ" not in said(landline)
    assert not any(isinstance(a, RequestSms) for a in landline.actions)
    assert landline.state.retries == 1


def test_do_not_call_is_registered() -> None:
    transcript = run(HUMAN, *keys("1", "5"))
    assert transcript.actions.count(AddDoNotCall()) == 1
    assert transcript.outcome is OutcomeCode.DO_NOT_CALL


def test_repeat_speaks_the_message_again_at_the_level_reached() -> None:
    assert said(run(HUMAN, *keys("1", "8"))).count(NOTICE_TEXT) == 2
    detail = ctx(disclosure=DisclosureLevel.DETAIL)
    assert said(run(HUMAN, *keys("1", "0415", "8"), context=detail)).count("12,345円") == 2
    failed = run(HUMAN, *keys("1", "0101", "0102", "8"), context=detail)
    assert "12,345" not in said(failed) and said(failed).count(NOTICE_TEXT) == 2


def test_end_key_silence_or_finish_words_at_the_menu_give_rpc_confirmed() -> None:
    for events in ([Digits("0")], [NoInput(), NoInput()], [Speech("結構です")]):
        transcript = run(HUMAN, Digits("1"), *events)
        assert transcript.outcome is OutcomeCode.RPC_CONFIRMED
        assert transcript.actions[-1] == act.Hangup()


# --- answering machines ------------------------------------------------------------------


def test_machine_gets_a_callback_message_without_the_name() -> None:
    transcript = run(CallAnswered("machine"))
    text = said(transcript)
    assert "03-1234-5678" in text and "納税課" in text and "ヤマダ" not in text
    assert transcript.outcome is OutcomeCode.MACHINE
    assert transcript.actions[-1] == act.Hangup()


def test_machine_policy_hangup_hangs_up_silently() -> None:
    transcript = run(CallAnswered("machine"), context=ctx(machine_policy="hangup"))
    assert transcript.actions == [transcript.outcomes[0], act.Hangup()]
    assert transcript.outcome is OutcomeCode.MACHINE


def test_unknown_answerer_is_greeted_like_a_person() -> None:
    assert "ヤマダ タロウ様" in said(run(CallAnswered("unknown")))


# --- hang-ups and events out of order ----------------------------------------------------

DETAIL = ctx(disclosure=DisclosureLevel.DETAIL)
HANGUP_POINTS = [
    ([], OutcomeCode.HANGUP_BEFORE_CONFIRM, BASE),
    ([HUMAN], OutcomeCode.HANGUP_BEFORE_CONFIRM, BASE),
    ([HUMAN, NoInput()], OutcomeCode.HANGUP_BEFORE_CONFIRM, BASE),
    ([HUMAN, Digits("2")], OutcomeCode.WRONG_PARTY, BASE),
    ([HUMAN, Digits("1")], OutcomeCode.RPC_CONFIRMED, BASE),
    ([HUMAN, *keys("1", "2")], OutcomeCode.RPC_CONFIRMED, BASE),
    ([HUMAN, *keys("1", "1")], OutcomeCode.RPC_CONFIRMED, BASE),
    ([HUMAN, *keys("1", "1")], OutcomeCode.RPC_CONFIRMED, ctx(operator_available=True)),
    ([HUMAN, *keys("1", "4")], OutcomeCode.RPC_CONFIRMED, ctx(mobile=True)),
    ([HUMAN, Digits("1")], OutcomeCode.REFUSED, DETAIL),
    ([HUMAN, *keys("1", "0101")], OutcomeCode.REFUSED, DETAIL),
    (
        [HUMAN, *keys("1", "0415")],
        OutcomeCode.RPC_CONFIRMED,
        ctx(disclosure=DisclosureLevel.DETAIL),
    ),
]


@pytest.mark.parametrize(("events", "expected", "context"), HANGUP_POINTS)
def test_hangup_at_every_waiting_point_ends_with_exactly_one_outcome(
    events: list[ev.Event], expected: OutcomeCode, context: CallContext
) -> None:
    before = run(*events, context=context)
    assert before.outcome is None
    transcript = run(*events, HANGUP, HANGUP, Digits("1"), context=context)
    assert transcript.outcome is expected
    assert transcript.turns[-3].actions[-1] == transcript.outcomes[0]
    assert transcript.turns[-2].actions == () and transcript.turns[-1].actions == ()
    assert outcome_detail(transcript)["ended_by"] == "resident"


def test_events_after_the_end_yield_nothing() -> None:
    state = run(HUMAN, *keys("1", "0")).state
    for event in (HUMAN, Digits("1"), Speech("はい"), NoInput(), HANGUP, TransferResult(True)):
        assert step(FLOW, BASE, state, event) == ([], state)


def test_events_out_of_place_are_ignored() -> None:
    state = start(FLOW, BASE)
    for event in (Digits("1"), Speech("はい"), NoInput(), TransferResult(True)):
        assert step(FLOW, BASE, state, event) == ([], state)
    greeted = run(HUMAN).state
    assert step(FLOW, BASE, greeted, HUMAN) == ([], greeted)
    assert step(FLOW, BASE, greeted, TransferResult(ok=True)) == ([], greeted)
    waiting = run(HUMAN, *keys("1", "1"), context=ctx(operator_available=True)).state
    assert step(FLOW, BASE, waiting, Digits("5")) == ([], waiting)


def test_says_are_in_the_calls_language_and_english_reads_the_name_in_romaji() -> None:
    english = ctx(language="en", municipality_en="Kaku City", section_en="Tax Division")
    transcript = run(HUMAN, Speech("yes"), context=english)
    says = [a for a in transcript.actions if isinstance(a, Say)]
    assert {say.language for say in says} == {"en"}
    assert "Are you Yamada Tarou?" in said(transcript) and "Kaku City" in said(transcript)
    assert {say.language for say in run(HUMAN).actions if isinstance(say, Say)} == {"ja"}


def test_transcript_renders_in_japanese() -> None:
    text = run(HUMAN, Digits("1"), Speech("はい"), Digits("0")).render()
    lines = text.splitlines()
    assert lines[0] == "(応答: 本人または家族)"
    assert lines[1].startswith("IVR: こちらは架空市納税課です")
    assert "住民: 1" in lines and "住民: 「はい」" in lines
    assert "IVR: [入力待ち: ダイヤル・音声, 1桁, 6秒]" in lines
    assert lines[-3:] == ["IVR: [結果記録: rpc_confirmed]", "IVR: [切断]", "結果: rpc_confirmed"]


def test_spoken_key_numbers_work_like_key_presses() -> None:
    assert run(HUMAN, Speech("1番")).state.identity_confirmed
    assert run(HUMAN, Digits("1"), Speech("5")).outcome is OutcomeCode.DO_NOT_CALL


def test_english_summary_and_detail_texts() -> None:
    english = ctx(language="en", disclosure=DisclosureLevel.DETAIL)
    text = said(run(HUMAN, Digits("1"), Digits("0415"), context=english))
    assert "市民税 for fiscal year 2024: 12,345 yen, due August 31, 2024" in text
    assert "The total is 19,134 yen." in text


def test_outcome_detail_carries_no_personal_data() -> None:
    detail = ctx(disclosure=DisclosureLevel.DETAIL, mobile=True)
    transcript = run(HUMAN, *keys("1", "0415", "4", "1", "2"), context=detail)
    values = " ".join(outcome_detail(transcript).values())
    assert not any(word in values for word in ("ヤマダ", "0415", *AMOUNTS, *KINDS))
    assert outcome_detail(transcript)["disclosure"] == "detail"


def test_a_context_changed_mid_call_cannot_leak_a_higher_level() -> None:
    summary = ctx(disclosure=DisclosureLevel.SUMMARY)
    state = run(HUMAN, Digits("1"), context=summary).state
    assert state.disclosure_reached is DisclosureLevel.SUMMARY
    with pytest.raises(FlowError, match=r"would reveal more than this call allows"):
        step(FLOW, ctx(disclosure=DisclosureLevel.NOTICE), state, Digits("8"))


@pytest.mark.parametrize("disclosure", list(DisclosureLevel))
def test_texts_with_a_residents_value_are_marked_personal(disclosure: DisclosureLevel) -> None:
    """What carries the name or the receivables is marked, so no cache keeps it (TwiML)."""
    answers = [HUMAN, Digits("1"), Digits("0415"), Digits("0")]
    transcript = run(*answers, context=ctx(disclosure=disclosure))
    says = [action for action in transcript.actions if isinstance(action, act.Say)]
    resident_values = ("ヤマダ タロウ", *KINDS, *AMOUNTS, "令和6年度")
    for say in says:
        assert say.personal is any(value in say.text for value in resident_values), say.text
    assert any(say.personal for say in says) and not all(say.personal for say in says)
