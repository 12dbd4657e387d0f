"""The gate every Twilio webhook passes first: body size, signature, replays.

:class:`WebhookGate` reads the body within ``twilio.max_webhook_body_bytes`` (413 beyond it)
and checks ``X-Twilio-Signature`` against ``public_base_url`` + path + query, the URL Twilio
was given, so it holds behind a proxy (403 when it fails; nothing reaches the sink). A retry
that carries the ``I-Twilio-Idempotency-Token`` of an answered request gets that answer again.
"""

from __future__ import annotations

import hmac
import logging
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import parse_qsl

from twilio.request_validator import RequestValidator, get_signature_algorithm

from dialer.carriers.twilio_signing import FormFields, Signer, form_fields
from dialer.carriers.webhook_asgi import Answer, WebhookRequest
from kernel.errors import ConfigurationError
from kernel.settings import Settings

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "x-twilio-signature"
SIGNATURE_SETTINGS_HEADER = "x-twilio-webhooks-signature-settings"
IDEMPOTENCY_HEADER = "i-twilio-idempotency-token"
REPLAY_CACHE_SIZE = 10_000


def query_values(request: WebhookRequest) -> dict[str, str]:
    """The query's values as ``request.query_params`` reads them (the last of a repeated
    name), without building Starlette's multi-dict."""
    return dict(parse_qsl(request.query, True))


@dataclass
class Verified:
    form: dict[str, str]
    replay_token: str | None


class WebhookGate:
    """Reads a webhook body within a size limit and checks Twilio's signature on it."""

    def __init__(self, settings: Settings) -> None:
        self.public_base_url = settings.public_base_url.rstrip("/")
        self.max_bytes = settings.twilio.max_webhook_body_bytes
        token = settings.twilio.auth_token.get_secret_value()
        if not token:  # an empty key would let anyone sign
            raise ConfigurationError("setting twilio.auth_token is required for the webhooks")
        self.validator = RequestValidator(token)
        self.signer = Signer(token)
        self.answers: OrderedDict[str, Answer] = OrderedDict()

    def public_url(self, request: WebhookRequest, path: str) -> str:
        query = request.query
        return f"{self.public_base_url}{path}" + (f"?{query}" if query else "")

    async def admit(self, request: WebhookRequest, path: str) -> Verified | Answer:
        body = await request.body(self.max_bytes)
        if body is None:
            return Answer.text(413, "request body too large")
        form = form_fields(body)
        if not self._signed(request, path, form):
            log.warning("twilio webhook %s refused: missing or invalid signature", path)
            return Answer.text(403, "invalid signature")
        return Verified(form, request.headers.get(IDEMPOTENCY_HEADER))

    def _signed(self, request: WebhookRequest, path: str, form: FormFields) -> bool:
        """Twilio's signature check; the URL as configured is tried first (one HMAC)."""
        signature = request.headers.get(SIGNATURE_HEADER)
        if not signature:
            return False
        algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
        url = self.public_url(request, path)
        try:
            expected = self.signer.signature(url, form, algorithm)
        except ValueError:  # an algorithm this library does not know
            return False
        if hmac.compare_digest(expected.encode(), signature.encode()):
            return True
        return bool(self.validator.validate(url, form, signature, algorithm))

    def replayed(self, token: str | None) -> Answer | None:
        return self.answers.get(token) if token else None

    def remember(self, token: str | None, response: Answer) -> Answer:
        if token:
            self.answers[token] = response
            while len(self.answers) > REPLAY_CACHE_SIZE:
                self.answers.popitem(last=False)
        return response
