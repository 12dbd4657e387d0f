"""Flow files are validated when loaded; every error names the file and the line."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest

from ivr_scripts import FlowError, load_builtin_flow, load_flow
from ivr_scripts.flow import Sensitivity
from ivr_scripts.kana import normalize_speech, to_romaji
from ivr_scripts.render import _VALUES, VARIABLES, era_date, era_year

GOOD = """\
flow: tiny
start: hello
machine: bye
keywords:
  yes: [はい, yes]
steps:
  hello:
    prompt:
      - ja: "{name}様でいらっしゃいますか。"
        en: "Are you {name}?"
    gather: {num_digits: 1}
    choices:
      - {keys: "1", words: yes, goto: secret, effects: [confirm_identity]}
    retry: {then: bye}
  secret:
    discloses: notice
    say:
      - ja: 通知書をご確認ください。
        en: Please check the notice.
    end: rpc_confirmed
  bye:
    end: no_input
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "flow.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def expect_error(tmp_path: Path, text: str, needle: str, problem: str) -> FlowError:
    path = write(tmp_path, text)
    with pytest.raises(FlowError) as caught:
        load_flow(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line_of(text, needle)}: "), message
    assert re.search(problem, message), message
    return caught.value


def test_a_good_flow_loads(tmp_path: Path) -> None:
    flow = load_flow(write(tmp_path, GOOD))
    assert (
        flow.name == "tiny"
        and flow.start == "hello"
        and set(flow.steps)
        == {
            "hello",
            "secret",
            "bye",
        }
    )
    assert flow.steps["secret"].sensitivity is Sensitivity.CONFIRMED
    assert flow.steps["hello"].choices[0].words == ("はい", "yes")


def test_the_builtin_standard_flow_loads() -> None:
    flow = load_builtin_flow()
    assert flow.name == "standard" and len(flow.steps) > 20
    assert flow.source.endswith("standard.yaml")


BROKEN = [
    (
        "syntax",
        GOOD.replace("gather: {num_digits: 1}", "gather: {num_digits: 1"),
        "choices:",
        r"invalid YAML",
    ),
    (
        "unknown step",
        GOOD.replace("goto: secret,", "goto: nowhere,"),
        "goto: nowhere",
        r"unknown step 'nowhere' referenced from step 'hello'",
    ),
    (
        "unknown retry target",
        GOOD.replace("{then: bye}", "{then: byebye}"),
        "then: byebye",
        r"unknown step 'byebye'",
    ),
    (
        "unknown start",
        GOOD.replace("start: hello", "start: hi"),
        "start: hi",
        r"unknown step 'hi' \(start\)",
    ),
    (
        "unknown action",
        GOOD.replace("[confirm_identity]", "[confirm_identity, launch]"),
        "launch",
        r"unknown action type 'launch'",
    ),
    (
        "missing en",
        GOOD.replace('        en: "Are you {name}?"\n', ""),
        '- ja: "{name}',
        r"missing text: hello.prompt has no 'en'",
    ),
    (
        "empty text",
        GOOD.replace("en: Please check the notice.", "en: ''"),
        "en: ''",
        r"missing text",
    ),
    (
        "unreachable",
        GOOD + "  orphan:\n    end: refused\n",
        "orphan:",
        r"unreachable step 'orphan'",
    ),
    (
        "detail before confirmation",
        GOOD.replace(", effects: [confirm_identity]", ""),
        "  secret:",
        r"step 'secret' reveals a detail .* without passing identity confirmation",
    ),
    (
        "sensitive words before confirmation",
        GOOD.replace("通知書をご確認ください。", "滞納があります。")
        .replace("    discloses: notice\n", "")
        .replace(", effects: [confirm_identity]", ""),
        "  secret:",
        r"without passing identity confirmation",
    ),
    (
        "summary without a disclosure branch",
        GOOD.replace("通知書をご確認ください。", '"{items_summary}です。"'),
        "  secret:",
        r"reachable at disclosure level notice",
    ),
    (
        "unknown variable",
        GOOD.replace("通知書をご確認ください。", '"{amount}円"'),
        "{amount}円",
        r"unknown variable \{amount\}",
    ),
    (
        "format spec",
        GOOD.replace("通知書をご確認ください。", '"{name!r}"'),
        "{name!r}",
        r"only plain \{variable\} fields",
    ),
    (
        "unknown key",
        GOOD.replace("    end: rpc_confirmed", "    ende: rpc_confirmed"),
        "ende:",
        r"unknown key 'ende' in step 'secret'",
    ),
    (
        "duplicate key",
        GOOD.replace("    end: no_input", "    end: no_input\n    end: refused"),
        "end: refused",
        r"duplicate key 'end'",
    ),
    (
        "two continuations",
        GOOD.replace("    end: no_input", "    end: no_input\n    goto: hello"),
        "  bye:",
        r"needs exactly one of",
    ),
    (
        "no continuation",
        GOOD.replace("    end: no_input", "    say: []"),
        "  bye:",
        r"needs exactly one of",
    ),
    (
        "unknown outcome",
        GOOD.replace("end: rpc_confirmed", "end: paid"),
        "end: paid",
        r"unknown outcome 'paid'",
    ),
    (
        "unknown keyword list",
        GOOD.replace("words: yes,", "words: maybe,"),
        "words: maybe",
        r"unknown keyword list 'maybe'",
    ),
    ("bad key", GOOD.replace('keys: "1"', 'keys: "x"'), 'keys: "x"', r"DTMF"),
    (
        "gather without retry",
        GOOD.replace("    retry: {then: bye}\n", ""),
        "  hello:",
        r"needs a retry",
    ),
    (
        "unknown band",
        GOOD.replace("[confirm_identity]", "[{request_callback: noon}]"),
        "noon",
        r"request_callback must be one of afternoon, any, evening, morning",
    ),
    (
        "argument not taken",
        GOOD.replace("[confirm_identity]", "[{confirm_identity: x}]"),
        "confirm_identity: x",
        r"takes no argument",
    ),
    (
        "unknown variable in en",
        GOOD.replace("en: Please check the notice.", 'en: "{amount}"'),
        'en: "{amount}"',
        r"secret.say.en: unknown variable \{amount\}",
    ),
    ("missing steps", GOOD.replace("steps:", "stepz:"), "stepz:", r"unknown key 'stepz'"),
    (
        "branch and end",
        GOOD.replace("    discloses: notice\n", "    discloses: notice\n    branch: []\n"),
        "  secret:",
        r"needs exactly one of",
    ),
]


@pytest.mark.parametrize(("name", "text", "needle", "problem"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_flows_name_file_line_and_problem(
    tmp_path: Path, name: str, text: str, needle: str, problem: str
) -> None:
    error = expect_error(tmp_path, text, needle, problem)
    assert error.line == line_of(text, needle) and error.problem


BRANCHY = """\
flow: branchy
start: hello
machine: machine
steps:
  hello:
    prompt:
      - {ja: "{name}様ですか", en: "Are you {name}?"}
    gather: {}
    choices:
      - {keys: "1", goto: level, effects: [confirm_identity]}
      - {keys: "2", goto: sorry, effects: [deny_identity]}
    retry: {then: sorry}
  level:
    branch:
      - {when: {disclosure: detail}, goto: factor}
      - {when: {disclosure: summary}, goto: summary}
      - {goto: sorry}
  factor:
    prompt:
      - {ja: 生年月日を入力してください, en: Enter your birth day}
    gather: {}
    verify: {passed: detail, failed: sorry}
    retry: {then: sorry}
  summary:
    say:
      - {ja: "{items_summary}", en: "{items_summary}"}
    end: rpc_confirmed
  detail:
    say:
      - {ja: "{items_detail}", en: "{items_detail}"}
    end: rpc_confirmed
  sorry:
    say:
      - {ja: 失礼しました, en: Sorry}
    end: wrong_party
  machine:
    say:
      - {ja: お電話ください, en: Please call us}
    end: machine
"""


def test_a_flow_with_levels_and_a_second_factor_loads(tmp_path: Path) -> None:
    flow = load_flow(write(tmp_path, BRANCHY))
    assert flow.steps["detail"].sensitivity is Sensitivity.DETAIL
    assert flow.steps["factor"].gather is not None and flow.steps["factor"].gather.num_digits == 4


GATE_ERRORS = [
    (
        "detail without second factor",
        BRANCHY.replace("goto: factor}", "goto: detail}"),
        "  detail:",
        r"without passing the second factor",
    ),
    (
        "detail at summary level",
        BRANCHY.replace("goto: summary}", "goto: detail}"),
        "  detail:",
        r"below disclosure level detail",
    ),
    (
        "name to a machine",
        BRANCHY.replace("ja: お電話ください", 'ja: "{name}様、お電話ください"'),
        "  machine:",
        r"answering machine",
    ),
    (
        "name after denial",
        BRANCHY.replace("ja: 失礼しました", 'ja: "{name}様ではないのですね"'),
        "  sorry:",
        r"repeats the name",
    ),
    (
        "verify without passed",
        BRANCHY.replace("{passed: detail, failed: sorry}", "{failed: sorry}"),
        "verify:",
        r"verify needs 'passed'",
    ),
    (
        "loop",
        BRANCHY.replace("      - {goto: sorry}", "      - {goto: level}"),
        "- {goto: level}",
        r"loop without waiting",
    ),
    (
        "unknown condition",
        BRANCHY.replace("{when: {disclosure: summary}", "{when: {mood: summary}"),
        "mood",
        r"unknown condition 'mood'",
    ),
    (
        "bad condition value",
        BRANCHY.replace("{disclosure: summary}", "{disclosure: all}"),
        "disclosure: all",
        r"when.disclosure must be one of",
    ),
    (
        "last arm with when",
        BRANCHY.replace("      - {goto: sorry}\n", ""),
        "{disclosure: summary}",
        r"the last branch arm must have no when",
    ),
]


@pytest.mark.parametrize(
    ("name", "text", "needle", "problem"), GATE_ERRORS, ids=[g[0] for g in GATE_ERRORS]
)
def test_identity_gate_and_graph_errors(
    tmp_path: Path, name: str, text: str, needle: str, problem: str
) -> None:
    expect_error(tmp_path, text, needle, problem)


def test_unreadable_empty_and_unknown_builtin_flows(tmp_path: Path) -> None:
    with pytest.raises(FlowError, match=r"missing\.yaml:1: cannot read"):
        load_flow(tmp_path / "missing.yaml")
    expect_error(tmp_path, "# nothing\n", "# nothing", r"empty")
    expect_error(tmp_path, "- a\n- b\n", "- a", r"the flow must be a mapping")
    with pytest.raises(FlowError, match=r"lower-case"):
        load_builtin_flow("../etc/passwd")
    with pytest.raises(FlowError, match=r"cannot read"):
        load_builtin_flow("nonexistent")


def test_yaml_booleans_stay_words(tmp_path: Path) -> None:
    text = GOOD.replace("yes: [はい, yes]", "yes: [はい, yes, no, on]")
    assert load_flow(write(tmp_path, text)).steps["hello"].choices[0].hints == (
        "はい",
        "yes",
        "no",
        "on",
    )


# --- text helpers ------------------------------------------------------------------------


def test_every_variable_has_a_renderer() -> None:
    assert set(VARIABLES) == set(_VALUES)


@pytest.mark.parametrize(
    ("spoken", "normal"),
    [
        ("ハイ。", "はい"),
        ("ＹＥＳ!", "yes"),
        ("ｹｯｺｳﾃﾞｽ", "けっこうです"),
        ("はい、そうです", "はい そうです"),
    ],
)
def test_speech_is_normalized(spoken: str, normal: str) -> None:
    assert normalize_speech(spoken) == normal


@pytest.mark.parametrize(
    ("kana", "romaji"),
    [
        ("ヤマダ タロウ", "Yamada Tarou"),
        ("さとう　しょうこ", "Satou Shouko"),
        ("キッカワ チヒロ", "Kikkawa Chihiro"),
        ("ホッチ ジュン", "Hotchi Jun"),
        ("ｶｸｳｼ", "Kakuushi"),
        ("リョーコ", "Ryooko"),
    ],
)
def test_kana_reads_as_romaji(kana: str, romaji: str) -> None:
    assert to_romaji(kana) == romaji


def test_japanese_eras() -> None:

    assert (
        era_year(2019) == "令和元年"
        and era_year(2024) == "令和6年"
        and era_year(2018) == "平成30年"
    )
    assert era_date(date(2019, 4, 30)) == "平成31年4月30日"
    assert era_date(date(2019, 5, 1)) == "令和元年5月1日"
