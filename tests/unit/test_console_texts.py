"""Every text key the console's templates use exists in Japanese and English."""

from __future__ import annotations

import re
from pathlib import Path

from agent_console.i18n import MESSAGES, translator
from dialer.live import OPERATOR_STATES
from dialer.operator_work import HANDOFF_REASONS, PAYMENT_METHODS, RESULT_CODES

TEMPLATES = Path(__file__).resolve().parents[2] / "agent_console" / "templates"
LITERAL_KEY = re.compile(r'(?<![\w.])t\("([a-z0-9_.]+)"\)')
PREFIXED_KEY = re.compile(r'(?<![\w.])t\("([a-z0-9_.]+\.)" ~ ')
# Values the templates append to a prefix: the fixed vocabularies they come from.
SUFFIXES = {
    "role.": ["operator", "staff", "supervisor", "admin"],
    "band.": ["morning", "afternoon", "evening"],
    "handoff.": ["open", "taken", "closed"],
    "opstate.": [*OPERATOR_STATES, "offline"],
    "channel.": ["ivr", "operator", "sms"],
    "q.": ["callbacks_due", "operator_waiting", "handoffs_open"],
    "sup.": ["ready", "start", "pause", "resume"],
    "tl.": ["attempt", "inbound", "callback", "handoff"],
    "today.": ["attempts", "rpc_confirmed", "promise", "paid_claimed", "consultation",
               "handoffs", "no_answer"],
    "op.refused.": ["outside_window", "exclusion_list_missing", "exclusion_list_stale"],
}  # fmt: skip


def _used_keys() -> set[str]:
    keys: set[str] = set()
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text(encoding="utf-8")
        keys.update(LITERAL_KEY.findall(text))
        for prefix in PREFIXED_KEY.findall(text):
            keys.update(prefix + suffix for suffix in SUFFIXES[prefix])
    return keys


def test_every_template_key_has_both_languages() -> None:
    missing = sorted(key for key in _used_keys() if key not in MESSAGES)
    assert missing == []
    for key in _used_keys():
        japanese, english = MESSAGES[key]
        assert japanese.strip() and english.strip(), key


def test_japanese_is_the_default_and_unknown_keys_show_themselves() -> None:
    assert translator("ja")("op.next") == "次の対象者へ"
    assert translator("en")("op.next") == "Next target"
    assert translator("ja")("no.such.key") == "no.such.key"


def test_fixed_lists_carry_both_languages() -> None:
    for vocabulary in (RESULT_CODES, PAYMENT_METHODS, HANDOFF_REASONS):
        for code, (japanese, english) in vocabulary.items():
            assert japanese and english, code
