"""The gate's own form parsing, query reading and signatures give exactly what the library
functions they replace give."""

from __future__ import annotations

from urllib.parse import parse_qsl, quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.requests import Request
from twilio.request_validator import HMAC_SHA1, HMAC_SHA256, RequestValidator

from dialer.carriers.twilio_gate import query_values
from dialer.carriers.twilio_signing import FormFields, Signer, form_fields
from dialer.carriers.webhook_asgi import WebhookRequest

TOKEN = "0123456789abcdef0123456789abcdef"
URL = "https://dunning.example.jp/twilio/voice?a=k-1&ev=gather"
# Bytes a form body may hold: the separators, escapes and broken UTF-8 included.
BODY_BYTES = st.binary(max_size=120) | st.lists(
    st.sampled_from([b"&", b"=", b"+", b"%", b"%2B", b"%E3%81%AF", b"%ZZ", b"a", b"\xe3", b"1"]),
    max_size=30,
).map(b"".join)
FORM = st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=20), max_size=8)


@given(BODY_BYTES)
def test_form_fields_read_a_body_as_parse_qsl_does(body: bytes) -> None:
    expected = dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
    assert form_fields(body) == expected


def test_form_fields_of_a_twilio_voice_request() -> None:
    body = b"CallSid=CA1&From=%2B81312345678&SpeechResult=%E3%81%AF%E3%81%84&Digits="
    assert form_fields(body) == {
        "CallSid": "CA1",
        "From": "+81312345678",
        "SpeechResult": "はい",
        "Digits": "",
    }


@given(FORM, st.sampled_from([HMAC_SHA1, HMAC_SHA256, "hmac_sha256"]))
def test_signatures_equal_the_twilio_validators(form: dict[str, str], algorithm: str) -> None:
    expected = RequestValidator(TOKEN).compute_signature(URL, FormFields(form), algorithm)
    assert Signer(TOKEN).signature(URL, FormFields(form), algorithm) == expected


def test_an_unknown_algorithm_is_refused_as_the_validator_refuses_it() -> None:
    with pytest.raises(ValueError):
        RequestValidator(TOKEN).compute_signature(URL, {}, "HMAC_MD5")
    with pytest.raises(ValueError):
        Signer(TOKEN).signature(URL, {}, "HMAC_MD5")


@given(st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4))
def test_query_values_equal_starlettes_query_params(values: dict[str, str]) -> None:
    query = "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in values.items())
    scope = {"type": "http", "query_string": query.encode("latin-1", "replace"), "headers": []}
    assert query_values(WebhookRequest(scope, _no_body)) == dict(Request(scope).query_params)


async def _no_body() -> dict[str, object]:
    return {"type": "http.request", "body": b""}
