"""Twilio behind :class:`dialer.ports.Carrier`: calls, SMS and live-call updates over REST.

The twilio package talks to ``https://api.twilio.com``; :class:`ApiBaseHttpClient` (the
package's documented extension point, a custom ``http_client``) sends those requests to
``settings.twilio.api_base_url`` instead, so tests and on-premise relays need no patching.

Every URL handed to Twilio carries only the attempt's idempotency key (``?a=...``), never a
name or number. Errors become ``accepted=False`` handles whose messages hold the HTTP status
and Twilio's error code only: Twilio's own messages may echo the dialled number.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from requests.exceptions import RequestException, Timeout
from twilio.base.exceptions import (
    TwilioException,
    TwilioRestException,
    TwilioServiceException,
)
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from dialer.ports import CallHandle, CallRequest, CallStatus, Capabilities, SmsHandle, SmsRequest
from kernel.errors import ConfigurationError, DunningError
from kernel.settings import Settings

log = logging.getLogger(__name__)

CARRIER_NAME = "twilio"
TWILIO_API = "https://api.twilio.com"
VOICE_PATH = "/twilio/voice"
STATUS_PATH = "/twilio/status"
AMD_PATH = "/twilio/amd"
SMS_STATUS_PATH = "/twilio/sms-status"
INBOUND_SMS_PATH = "/twilio/sms-inbound"
STATUS_EVENTS = ["initiated", "ringing", "answered", "completed"]
IN_FLIGHT = (CallStatus.QUEUED, CallStatus.RINGING, CallStatus.IN_PROGRESS)
MAX_CALLS_PER_SECOND = 1.0  # Twilio's default outbound CPS per account


class TwilioUnavailable(DunningError):
    """Twilio could not be asked (network, timeout, server error); nothing personal inside."""

    http_status = 503


class ApiBaseHttpClient(TwilioHttpClient):  # type: ignore[misc]
    """Twilio's HTTP client with the API host replaced by a configured base URL."""

    def __init__(self, api_base_url: str, timeout: float) -> None:
        super().__init__(timeout=timeout, logger=logging.getLogger(f"{__name__}.http"))
        self.api_base_url = api_base_url.rstrip("/")

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        if url.startswith(TWILIO_API):
            url = self.api_base_url + url[len(TWILIO_API) :]
        return super().request(method, url, *args, **kwargs)


def webhook_url(public_base_url: str, path: str, attempt_key: str | None, **extra: str) -> str:
    """An absolute callback URL; the query holds the attempt key and flow markers only."""
    query = {"a": attempt_key, **extra} if attempt_key else dict(extra)
    suffix = f"?{urlencode(query)}" if query else ""
    return f"{public_base_url.rstrip('/')}{path}{suffix}"


def build_client(settings: Settings) -> Client:
    """A twilio Client for the configured account, pointed at ``api_base_url``."""
    twilio = settings.twilio
    token = twilio.auth_token.get_secret_value()
    if not twilio.account_sid or not token:
        raise ConfigurationError(
            "setting twilio.account_sid and twilio.auth_token are required for the Twilio "
            "carrier (set DUNNING_TWILIO__ACCOUNT_SID / DUNNING_TWILIO__AUTH_TOKEN)"
        )
    http = ApiBaseHttpClient(twilio.api_base_url, twilio.request_timeout_seconds)
    return Client(twilio.account_sid, token, http_client=http, environment={})


class TwilioCarrier:
    """Places calls and SMS through Twilio's REST API (the ``Carrier`` port)."""

    name = CARRIER_NAME

    def __init__(self, settings: Settings, client: Client | None = None) -> None:
        self.settings = settings
        self.client = client or build_client(settings)

    def capabilities(self) -> Capabilities:
        return Capabilities(
            voice=True,
            sms=True,
            click_to_call=True,
            answering_machine_detection=True,
            speech_input=True,
            max_calls_per_second=MAX_CALLS_PER_SECOND,
        )

    def place_call(self, request: CallRequest) -> CallHandle:
        try:
            call = self.client.calls.create(**self._call_parameters(request))
        except Exception as error:
            code, message = describe_error(error)
            log.warning("twilio call for attempt %s refused: %s", request.attempt_id, message)
            return CallHandle(False, CARRIER_NAME, error_code=code, error_message=message)
        return CallHandle(True, CARRIER_NAME, carrier_ref=str(call.sid))

    def _call_parameters(self, request: CallRequest) -> dict[str, Any]:
        base = self.settings.public_base_url
        key = request.idempotency_key
        twilio = self.settings.twilio
        parameters: dict[str, Any] = {
            "to": request.to_e164,
            "from_": request.from_e164,
            "url": webhook_url(base, VOICE_PATH, key),
            "method": "POST",
            "status_callback": webhook_url(base, STATUS_PATH, key),
            "status_callback_event": STATUS_EVENTS,
            "status_callback_method": "POST",
            "timeout": request.ring_timeout_seconds,
        }
        if request.detect_machine:
            parameters["machine_detection"] = twilio.machine_detection
            parameters["machine_detection_timeout"] = twilio.machine_detection_timeout_seconds
            if twilio.async_amd:
                parameters["async_amd"] = "true"
                parameters["async_amd_status_callback"] = webhook_url(base, AMD_PATH, key)
                parameters["async_amd_status_callback_method"] = "POST"
        return parameters

    def hang_up(self, carrier_ref: str) -> None:
        """End a live call; a call Twilio already ended is not an error."""
        self._update(carrier_ref, status="completed")

    def play_now(self, carrier_ref: str, twiml: str) -> None:
        """Replace what a live call is doing with ``twiml`` (e.g. the answering-machine text)."""
        self._update(carrier_ref, twiml=twiml)

    def _update(self, carrier_ref: str, **changes: str) -> None:
        try:
            self.client.calls(carrier_ref).update(**changes)
        except Exception as error:
            code, message = describe_error(error)
            log.warning("twilio update of call %s failed: %s (%s)", carrier_ref, message, code)

    def send_sms(self, request: SmsRequest) -> SmsHandle:
        base = self.settings.public_base_url
        try:
            message = self.client.messages.create(
                to=request.to_e164,
                from_=request.sender_id,
                body=request.body,
                status_callback=webhook_url(base, SMS_STATUS_PATH, request.idempotency_key),
            )
        except Exception as error:
            code, text = describe_error(error)
            log.warning("twilio SMS for attempt %s refused: %s", request.attempt_id, text)
            return SmsHandle(False, CARRIER_NAME, error_code=code, error_message=text)
        return SmsHandle(True, CARRIER_NAME, carrier_ref=str(message.sid))

    def active_calls(self) -> list[str]:
        """SIDs of calls Twilio still has queued, ringing or in progress."""
        sids: list[str] = []
        for status in IN_FLIGHT:
            sids.extend(self._sids_with(status))
        return sids

    def _sids_with(self, status: CallStatus) -> list[str]:
        try:
            calls = self.client.calls.list(status=status.value)
        except Exception as error:
            code, message = describe_error(error)
            raise TwilioUnavailable(f"{message} ({code})") from error
        return [str(call.sid) for call in calls]


def describe_error(error: Exception) -> tuple[str, str]:
    """(error code, message) for a failed Twilio request, free of personal data.

    Unexpected exceptions (programming errors) are re-raised, not disguised as carrier errors.
    """
    if isinstance(error, TwilioRestException | TwilioServiceException):
        return _rest_error(int(error.status), error.code)
    if isinstance(error, Timeout):
        return "timeout", "Twilio did not answer in time"
    if isinstance(error, RequestException):
        return "network", f"Twilio could not be reached ({type(error).__name__})"
    if isinstance(error, TwilioException):
        return "twilio-client", "the twilio library refused the request"
    raise error


def _rest_error(status: int, code: int | None) -> tuple[str, str]:
    label = str(code) if code else f"http-{status}"
    if status == 429:
        return label, "Twilio rate limit reached (HTTP 429)"
    if status >= 500:
        return label, f"Twilio server error (HTTP {status})"
    return label, f"Twilio refused the request (HTTP {status}, error {label})"
