"""Pure parts of the FastAGI server: reply parsing, action rendering, argument quoting."""

from __future__ import annotations

import pytest

import ivr_scripts.actions as act
from dialer.carriers.fastagi import (
    AgiProtocolError,
    AgiReply,
    ChannelHungUp,
    DialOperator,
    EndCall,
    PlayPrompt,
    ReadDigits,
    parse_reply,
    quote,
    render,
)
from ivr_scripts.model import OutcomeCode


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("200 result=1 (value with spaces)", AgiReply(200, "1", "value with spaces")),
        ("200 result=0", AgiReply(200, "0")),
        ("200 result= (timeout)", AgiReply(200, "", "timeout")),
        ("200 result=12 (timeout)", AgiReply(200, "12", "timeout")),
        ("200 result=0 endpos=48000", AgiReply(200, "0", None, 48000)),
        ("200 result=49 (dtmf) endpos=1200", AgiReply(200, "49", "dtmf", 1200)),
    ],
)
def test_parse_success_replies(line: str, expected: AgiReply) -> None:
    assert parse_reply(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        "510 Invalid or unknown command",
        "520 End of proper usage.",
        "",
        "HELLO",
        "2000 result=1",
        "200 no result",
    ],
)
def test_errors_and_garbage_are_protocol_errors(line: str) -> None:
    with pytest.raises(AgiProtocolError):
        parse_reply(line)


def test_511_means_the_channel_is_dead() -> None:
    with pytest.raises(ChannelHungUp):
        parse_reply("511 Command Not Permitted on a dead channel or intercept routine")


def test_protocol_error_messages_do_not_echo_long_lines() -> None:
    with pytest.raises(AgiProtocolError) as caught:
        parse_reply("ヤマダ タロウ 090-1234-5678")
    assert "ヤマダ" not in str(caught.value)


def test_render_takes_the_say_before_a_gather_as_its_prompt() -> None:
    gather = act.Gather(frozenset({"dtmf"}), 1, 6)
    steps = render([act.Say("a", "ja"), act.Say("b", "ja"), gather])
    assert steps == [PlayPrompt("a"), ReadDigits("b", 6000, 1)]


def test_render_gather_without_say_and_the_other_actions() -> None:
    actions: list[act.Action] = [
        act.Gather(frozenset({"dtmf"}), None, 5),
        act.RecordOutcome(OutcomeCode.MACHINE),
        act.Transfer(),
        act.AddDoNotCall(),
        act.Say("bye", "ja"),
        act.Hangup(),
    ]
    assert render(actions) == [
        ReadDigits(None, 5000, None),
        DialOperator(),
        PlayPrompt("bye"),
        EndCall(),
    ]


def test_quote() -> None:
    assert quote("/var/tts/campaign-1/ab12") == "/var/tts/campaign-1/ab12"
    assert quote("/my dir/x") == '"/my dir/x"'
    assert quote('a"b') == '"a\\"b"'
    assert quote("") == '""'
