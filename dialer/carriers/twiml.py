"""IVR actions rendered as TwiML, the document a Twilio call executes next.

Pure: actions and the URLs to report back to go in, XML comes out. Only the telephony actions
(:class:`Say`, :class:`Gather`, :class:`Transfer`, :class:`Hangup`) become verbs; the others
(outcome, SMS request, do-not-call ...) are the call session's business and are skipped.

A ``<Gather>`` posts what it heard to ``gather_url``; when it hears nothing Twilio carries on
with the next verb, so a ``<Redirect>`` to ``no_input_url`` follows every gather. The prompts
spoken just before a gather are nested in it, so a resident who knows the menu may key in at
once (barge-in).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

from twilio.twiml.voice_response import Gather as GatherVerb
from twilio.twiml.voice_response import VoiceResponse

import ivr_scripts.actions as act

VOICE_LANGUAGES = {"ja": "ja-JP", "en": "en-US"}
DEFAULT_LANGUAGE = "ja-JP"
DIAL_TIMEOUT_SECONDS = 30
XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'


@dataclass(frozen=True)
class FlowUrls:
    """Where Twilio reports back for one call (absolute public URLs, no personal data)."""

    gather: str
    no_input: str
    dial: str


def voice_language(language: str) -> str:
    """Twilio's voice language for an engine language (``ja`` -> ``ja-JP``)."""
    if "-" in language:
        return language
    return VOICE_LANGUAGES.get(language, DEFAULT_LANGUAGE)


def render(actions: Sequence[act.Action], urls: FlowUrls, operator_number: str) -> str:
    """The TwiML document for ``actions``; an empty action list hangs up."""
    response = VoiceResponse()
    pending: list[act.Say] = []
    for action in actions:
        if isinstance(action, act.Say):
            pending.append(action)
            continue
        if isinstance(action, act.Gather):
            _gather(response, action, pending, urls)
            pending = []
            continue
        _say_all(response, pending)
        pending = []
        if isinstance(action, act.Transfer):
            response.dial(
                operator_number, action=urls.dial, method="POST", timeout=DIAL_TIMEOUT_SECONDS
            )
        elif isinstance(action, act.Hangup):
            response.hangup()
    _say_all(response, pending)
    if not any(isinstance(a, act.Say | act.Gather | act.Transfer) for a in actions):
        response.hangup()
    return _document(response)


def hang_up() -> str:
    """A document that ends the call (unknown calls, calls already over)."""
    response = VoiceResponse()
    response.hangup()
    return _document(response)


def _document(response: VoiceResponse) -> str:
    """``response.to_xml()``, serialized straight to text (half the cost on every webhook)."""
    return XML_DECLARATION + ET.tostring(response.xml(), encoding="unicode")


def _say_all(target: VoiceResponse | GatherVerb, says: Sequence[act.Say]) -> None:
    for say in says:
        target.say(say.text, language=voice_language(say.language))


def _gather(
    response: VoiceResponse, gather: act.Gather, prompts: Sequence[act.Say], urls: FlowUrls
) -> None:
    language = voice_language(prompts[-1].language) if prompts else DEFAULT_LANGUAGE
    attributes: dict[str, object] = {
        "input": " ".join(sorted(gather.input)),
        "timeout": gather.timeout_s,
        "action": urls.gather,
        "method": "POST",
        "language": language,
    }
    if "speech" in gather.input:
        attributes["speech_timeout"] = "auto"
        if gather.hints:
            attributes["hints"] = ",".join(gather.hints)
    if gather.num_digits is not None:
        attributes["num_digits"] = gather.num_digits
    verb = response.gather(**attributes)
    _say_all(verb, prompts)
    response.redirect(urls.no_input, method="POST")
