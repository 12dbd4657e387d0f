"""IVR actions rendered as TwiML (pure; no I/O)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.twiml.voice_response import VoiceResponse

import ivr_scripts.actions as act
from dialer.carriers.twiml import (
    FlowUrls,
    _document,
    _marked_document,
    _render,
    hang_up,
    render,
    voice_language,
)
from ivr_scripts.model import OutcomeCode, TimeBand

URLS = FlowUrls(
    gather="https://dunning.example.jp/twilio/voice?a=k1&ev=gather",
    no_input="https://dunning.example.jp/twilio/voice?a=k1&ev=no-input",
    dial="https://dunning.example.jp/twilio/voice?a=k1&ev=dial",
)
OPERATOR = "+81312345678"
GREETING = act.Say("ミドリシ ノウゼイカ です。ヤマダ タロウ さまでしょうか。", "ja")
QUESTION = act.Say("ご本人であれば 1 を、違う場合は 2 を押してください。", "ja")
CONFIRM = act.Gather(frozenset({"dtmf", "speech"}), 1, 6, ("はい", "いいえ"))


def _root(actions: list[act.Action]) -> ET.Element:
    return ET.fromstring(render(actions, URLS, OPERATOR))


def test_japanese_say_is_spoken_in_ja_jp() -> None:
    root = _root([GREETING, act.Hangup()])
    say = root.find("Say")
    assert say is not None
    assert say.get("language") == "ja-JP"
    assert say.text == GREETING.text
    assert [child.tag for child in root] == ["Say", "Hangup"]


def test_english_say_is_spoken_in_en_us() -> None:
    say = _root([act.Say("Please call the tax section.", "en"), act.Hangup()]).find("Say")
    assert say is not None and say.get("language") == "en-US"


def test_gather_carries_input_language_digits_timeout_hints_and_action() -> None:
    gather = _root([GREETING, QUESTION, CONFIRM]).find("Gather")
    assert gather is not None
    assert gather.get("input") == "dtmf speech"
    assert gather.get("language") == "ja-JP"
    assert gather.get("numDigits") == "1"
    assert gather.get("timeout") == "6"
    assert gather.get("hints") == "はい,いいえ"
    assert gather.get("action") == URLS.gather
    assert gather.get("method") == "POST"


def test_prompts_before_a_gather_are_nested_so_residents_can_key_in_early() -> None:
    root = _root([GREETING, QUESTION, CONFIRM])
    gather = root.find("Gather")
    assert gather is not None
    assert [say.text for say in gather.findall("Say")] == [GREETING.text, QUESTION.text]
    assert root.find("Say") is None


def test_a_silent_gather_is_followed_by_a_redirect_reporting_no_input() -> None:
    root = _root([QUESTION, CONFIRM])
    assert [child.tag for child in root] == ["Gather", "Redirect"]
    redirect = root.find("Redirect")
    assert redirect is not None and redirect.text == URLS.no_input


def test_dtmf_only_gather_has_no_speech_settings_and_no_digit_limit_when_open() -> None:
    gather = _root([act.Gather(frozenset({"dtmf"}), None, 5)]).find("Gather")
    assert gather is not None
    assert gather.get("input") == "dtmf"
    assert gather.get("numDigits") is None
    assert gather.get("hints") is None
    assert gather.get("speechTimeout") is None


def test_transfer_dials_the_operator_and_reports_the_result() -> None:
    root = _root([act.Say("担当者におつなぎします。", "ja"), act.Transfer()])
    dial = root.find("Dial")
    assert dial is not None
    assert dial.text == OPERATOR
    assert dial.get("action") == URLS.dial


def test_non_telephony_actions_are_left_to_the_call_session() -> None:
    actions: list[act.Action] = [
        act.Say("おかけ直しください。", "ja"),
        act.RecordOutcome(OutcomeCode.PAID_CLAIMED),
        act.RequestSms("reminder"),
        act.RequestCallback(TimeBand.MORNING),
        act.MarkWrongNumber(),
        act.AddDoNotCall(),
        act.Hangup(),
    ]
    assert [child.tag for child in _root(actions)] == ["Say", "Hangup"]


def test_nothing_to_say_hangs_up() -> None:
    assert [child.tag for child in _root([])] == ["Hangup"]
    assert [child.tag for child in _root([act.RecordOutcome(OutcomeCode.NO_INPUT)])] == ["Hangup"]
    assert [child.tag for child in ET.fromstring(hang_up())] == ["Hangup"]


def test_urls_are_xml_escaped() -> None:
    xml = render([CONFIRM], URLS, OPERATOR)
    assert "a=k1&amp;ev=gather" in xml
    assert "a=k1&ev=gather" not in xml


def test_voice_language() -> None:
    assert voice_language("ja") == "ja-JP"
    assert voice_language("en") == "en-US"
    assert voice_language("ja-JP") == "ja-JP"


def test_the_document_is_what_voice_response_serializes() -> None:
    expected = VoiceResponse()
    gather = expected.gather(
        action=URLS.gather,
        input="dtmf speech",
        language="ja-JP",
        method="POST",
        num_digits=1,
        speech_timeout="auto",
        timeout=6,
        hints="はい,いいえ",
    )
    gather.say(QUESTION.text, language="ja-JP")
    expected.redirect(URLS.no_input, method="POST")
    assert render([QUESTION, CONFIRM], URLS, OPERATOR) == expected.to_xml()


_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_ATTRIBUTE_VALUE = st.one_of(_TEXT, st.booleans(), st.integers(-5, 500))


@st.composite
def _voice_responses(draw: st.DrawFn) -> VoiceResponse:
    """Documents of every shape the renderer's verbs take, with any text and attribute value
    (markup characters, line breaks, tabs, booleans, numbers) and strings nested anywhere."""
    response = VoiceResponse()
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["say", "gather", "redirect", "dial", "hangup", "text"]))
        if kind == "say":
            response.say(draw(_TEXT), language=draw(_ATTRIBUTE_VALUE))
        elif kind == "gather":
            gather = response.gather(
                action=draw(_TEXT), timeout=draw(_ATTRIBUTE_VALUE), hints=draw(_TEXT)
            )
            for _ in range(draw(st.integers(0, 3))):
                if draw(st.booleans()):
                    gather.say(draw(_TEXT))
                else:
                    gather.append(draw(_TEXT))
        elif kind == "redirect":
            response.redirect(draw(_TEXT), method="POST")
        elif kind == "dial":
            response.dial(draw(_TEXT), action=draw(_TEXT), timeout=draw(_ATTRIBUTE_VALUE))
        elif kind == "hangup":
            response.hangup()
        else:
            response.append(draw(_TEXT))
    return response


@settings(max_examples=300, deadline=None)
@given(_voice_responses())
def test_the_direct_writer_equals_twilios_serialization(response: VoiceResponse) -> None:
    assert _document(response) == response.to_xml()


_URL = st.text(st.sampled_from("ab&=?\"'<>/% é\ue000"), max_size=10).map(
    lambda tail: "https://dunning.example.jp/twilio/voice?a=" + tail
)
_ACTIONS = st.lists(
    st.one_of(
        st.builds(
            act.Say,
            _TEXT | st.just("\ue000gather\ue000"),
            st.sampled_from(["ja", "en"]),
            st.booleans(),
        ),
        st.just(CONFIRM),
        st.just(act.Gather(frozenset({"dtmf"}), None, 5)),
        st.just(act.Transfer()),
        st.just(act.Hangup()),
        st.just(act.RecordOutcome(OutcomeCode.RPC_CONFIRMED)),
    ),
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(_ACTIONS, _URL, _URL, _URL)
def test_a_kept_document_gets_each_calls_own_urls(
    actions: list[act.Action], gather: str, no_input: str, dial: str
) -> None:
    urls = FlowUrls(gather, no_input, dial)
    verbs = [a for a in actions if not isinstance(a, act.RecordOutcome)]
    assert render(actions, urls, OPERATOR) == _render(verbs, urls, OPERATOR)
    assert render(actions, URLS, OPERATOR) == _render(verbs, URLS, OPERATOR)


def test_documents_with_personal_texts_are_kept_nowhere() -> None:
    personal = act.Say(GREETING.text, "ja", personal=True)
    _marked_document.cache_clear()
    render([personal, QUESTION, CONFIRM], URLS, OPERATOR)
    assert _marked_document.cache_info().currsize == 0
    render([QUESTION, CONFIRM], URLS, OPERATOR)
    other = FlowUrls(*(url.replace("k1", "k2") for url in (URLS.gather, URLS.no_input, URLS.dial)))
    assert "a=k2&amp;ev=gather" in render([QUESTION, CONFIRM], other, OPERATOR)
    info = _marked_document.cache_info()
    assert (info.currsize, info.hits) == (1, 1)
