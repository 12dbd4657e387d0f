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

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass

from twilio.twiml import TwiML
from twilio.twiml.voice_response import Gather as GatherVerb
from twilio.twiml.voice_response import VoiceResponse

import ivr_scripts.actions as act

VOICE_LANGUAGES = {"ja": "ja-JP", "en": "en-US"}
DEFAULT_LANGUAGE = "ja-JP"
DIAL_TIMEOUT_SECONDS = 30
XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'
DOCUMENTS_KEPT = 256  # distinct documents without personal texts: a flow has a few dozen


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
    """The TwiML document for ``actions``; an empty action list hangs up.

    A document that says nothing personal is the same for every call but for its URLs: it is
    rendered once (with marks for the URLs, kept for the latest :data:`DOCUMENTS_KEPT`
    distinct ones) and each call's URLs go in its copy. A document with a personal text
    (:attr:`~ivr_scripts.actions.Say.personal`: the name, the receivables) is rendered anew
    and kept nowhere."""
    verbs = tuple(action for action in actions if isinstance(action, _VERBS))
    if any(isinstance(verb, act.Say) and verb.personal for verb in verbs) or _marked(verbs, urls):
        return _render(verbs, urls, operator_number)
    document = _marked_document(verbs, operator_number)
    # each URL escaped as _render writes it (tests compare the two ways for any URL)
    filled = zip(_MARKED_URLS, (urls.gather, urls.no_input, urls.dial), _URL_ESCAPES, strict=True)
    for mark, url, escape in filled:
        if mark in document:
            document = document.replace(mark, escape(url))
    return document


def _render(verbs: Sequence[act.Action], urls: FlowUrls, operator_number: str) -> str:
    response = VoiceResponse()
    pending: list[act.Say] = []
    for action in verbs:
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
    if not any(isinstance(a, act.Say | act.Gather | act.Transfer) for a in verbs):
        response.hangup()
    return _document(response)


_VERBS = (act.Say, act.Gather, act.Transfer, act.Hangup)  # the rest are not telephony
_MARK = "\ue000"  # a private-use character: in no URL (they are quoted), in no flow text
_MARKED_URLS = (f"{_MARK}gather{_MARK}", f"{_MARK}no-input{_MARK}", f"{_MARK}dial{_MARK}")


def _marked(verbs: tuple[act.Action, ...], urls: FlowUrls) -> bool:
    """Whether a text or a URL holds the mark itself (none of ours does; then no copy)."""
    texts = [verb.text for verb in verbs if isinstance(verb, act.Say)]
    return any(_MARK in text for text in (*texts, urls.gather, urls.no_input, urls.dial))


@functools.lru_cache(maxsize=DOCUMENTS_KEPT)
def _marked_document(verbs: tuple[act.Action, ...], operator_number: str) -> str:
    return _render(verbs, FlowUrls(*_MARKED_URLS), operator_number)


def hang_up() -> str:
    """A document that ends the call (unknown calls, calls already over)."""
    response = VoiceResponse()
    response.hangup()
    return _document(response)


def _document(response: VoiceResponse) -> str:
    """``response.to_xml()``, written straight from the verbs (a third of a voice webhook's
    own cost went to building the ElementTree and serializing it). Equal to ``to_xml()``
    character for character: tests compare the two."""
    parts = [XML_DECLARATION]
    _write(response, parts)
    return "".join(parts)


def _escape_text(text: str) -> str:
    """ElementTree's escaping of text (checks first: most texts need nothing replaced)."""
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    return text


_ATTRIBUTE_ENTITIES = (('"', "&quot;"), ("\r", "&#13;"), ("\n", "&#10;"), ("\t", "&#09;"))


def _escape_attribute(text: str) -> str:
    """ElementTree's escaping of an attribute value."""
    text = _escape_text(text)
    for character, entity in _ATTRIBUTE_ENTITIES:
        if character in text:
            text = text.replace(character, entity)
    return text


# how _render writes each URL: gather and dial as attributes, no-input as a <Redirect> text
_URL_ESCAPES = (_escape_attribute, _escape_text, _escape_attribute)


def _write(verb: TwiML, parts: list[str]) -> None:
    """One verb as ``TwiML.xml()`` builds it and ElementTree writes it: attributes sorted by
    name (booleans in lower case); the value, or a string nested before any verb, as the text;
    a string nested after a verb as that verb's tail (the last string wins, as there)."""
    parts.append(f"<{verb.name}")
    for name in sorted(verb.attrs):
        value = verb.attrs[name]
        text = str(value).lower() if isinstance(value, bool) else str(value)
        parts.append(f' {name}="{_escape_attribute(text)}"')
    own_text = _text(verb.value)
    children: list[tuple[TwiML, str]] = []
    for child in verb.verbs:
        if not isinstance(child, str):
            children.append((child, ""))
        elif children:
            children[-1] = (children[-1][0], child)
        else:
            own_text = child
    if not own_text and not children:
        parts.append(" />")
        return
    parts.append(">" + _escape_text(own_text))
    for child, tail in children:
        _write(child, parts)
        parts.append(_escape_text(tail))
    parts.append(f"</{verb.name}>")


def _text(value: object) -> str:
    if not value:
        return ""
    return json.dumps(value) if isinstance(value, dict) else str(value)


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
