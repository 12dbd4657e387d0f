"""The two per-webhook computations of the Twilio gate, without their general-purpose costs.

* :func:`form_fields`: the form body as ``urllib.parse.parse_qsl(text, keep_blank_values=True)``
  reads it, unquoting only the fields that hold ``+`` or ``%`` (most of Twilio's do not).
* :class:`Signer`: Twilio's webhook signature (the URL, then each parameter's name and value in
  name order, HMAC under the auth token, base64), from an HMAC keyed once per algorithm and
  copied per request; ``twilio.request_validator.RequestValidator.compute_signature``
  builds the key pads on every call.

Both give exactly what the library functions give (property tests compare them); the gate
keeps ``RequestValidator.validate`` for the URL variants Twilio may have signed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import unquote

from twilio.request_validator import HMAC_SHA1, HMAC_SHA256

_DIGESTS = {HMAC_SHA1: hashlib.sha1, HMAC_SHA256: hashlib.sha256}


class FormFields(dict[str, str]):
    """Form fields, the last value of a repeated name kept (as ``dict(parse_qsl(...))``);
    ``getall`` spares Twilio's validator two exceptions per field."""

    def getall(self, name: str) -> list[str]:
        return [self[name]]


def form_fields(body: bytes) -> FormFields:
    """``FormFields(parse_qsl(body.decode("utf-8", errors="replace"), True))``."""
    return FormFields(_pairs(body.decode("utf-8", errors="replace").split("&")))


def _pairs(parts: Iterable[str]) -> Iterable[tuple[str, str]]:
    for part in parts:
        if not part:
            continue
        name, _, value = part.partition("=")
        yield _unquoted(name), _unquoted(value)


def _unquoted(text: str) -> str:
    if "+" in text:
        text = text.replace("+", " ")
    if "%" in text:
        text = unquote(text, errors="replace")
    return text


class Signer:
    """Twilio's webhook signatures under one auth token."""

    def __init__(self, token: str) -> None:
        key = token.encode("utf-8")
        self._keyed = {name: hmac.new(key, digestmod=d) for name, d in _DIGESTS.items()}

    def signature(self, url: str, form: dict[str, str], algorithm: str = HMAC_SHA1) -> str:
        """The signature of ``url`` with ``form``; ValueError for an unknown algorithm."""
        keyed = self._keyed.get(algorithm.upper())
        if keyed is None:
            raise ValueError(f"unsupported webhook signature algorithm {algorithm!r}")
        mac = keyed.copy()
        signed = url + "".join(name + form[name] for name in sorted(form))
        mac.update(signed.encode("utf-8"))
        return base64.b64encode(mac.digest()).decode("ascii")
