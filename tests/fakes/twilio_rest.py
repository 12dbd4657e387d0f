"""A local stand-in for Twilio: its REST API for Calls and Messages, and its webhooks.

:class:`FakeTwilio` serves ``/2010-04-01/Accounts/{AccountSid}/Calls|Messages...`` on loopback
(``http.server`` in a thread). Each request is checked against Twilio's published OpenAPI
description (``shared/reference/twilio/twilio_api_v2010.json``): the path and method exist,
path parameters match their patterns (``^AC[0-9a-fA-F]{32}$``), every parameter name is
known for that operation, required ones are present, values fit their type, their enum, or
the values the description lists ("Can be: `Enable` or `DetectMessageEnd`"), and basic auth is
the account SID and token. Violations get Twilio-shaped JSON errors (code, message,
more_info, status) and are kept in :attr:`FakeTwilio.violations`. Faults (5xx, 429, slow
answers) can be queued for the next requests.

:class:`TwilioActor` plays Twilio towards our webhooks: signed form posts
(``X-Twilio-Signature``, Twilio's algorithm via ``RequestValidator``) to the URLs given at
call creation, following the TwiML the application answers with.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import threading
import time
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from twilio.request_validator import RequestValidator

API_VERSION = "2010-04-01"
ROOT = Path(__file__).resolve().parents[2]
SPEC_CANDIDATES = (
    ROOT.parent / "shared" / "reference" / "twilio" / "twilio_api_v2010.json",
    ROOT / "reference" / "twilio" / "twilio_api_v2010.json",
    Path("/work/shared/reference/twilio/twilio_api_v2010.json"),  # this workplace's shared dir
)
_DOCUMENTED = re.compile(r"Can be:?(.*?)(?:\.\s|\.$|$)", re.S)
_BACKTICKED = re.compile(r"`([^`]+)`")
Params = dict[str, list[str]]


def spec_path() -> Path:
    explicit = os.environ.get("DUNNING_TWILIO_OPENAPI")
    for candidate in ([Path(explicit)] if explicit else []) + list(SPEC_CANDIDATES):
        if candidate.exists():
            return candidate
    raise FileNotFoundError("twilio_api_v2010.json not found; set DUNNING_TWILIO_OPENAPI")


# --- the OpenAPI description --------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    operation_id: str
    method: str
    template: str
    pattern: re.Pattern[str]
    path_params: dict[str, dict[str, Any]]
    params: dict[str, dict[str, Any]]  # query (GET) or form body (POST)
    required: frozenset[str]


class Spec:
    """The operations of Twilio's API v2010, with their parameters resolved."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.operations = [
            self._operation(path, method, op)
            for path, item in document["paths"].items()
            for method, op in item.items()
            if method in ("get", "post", "delete")
        ]

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        ref = schema.get("$ref")
        if not ref:
            return schema
        node: Any = self.document
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        return dict(node)

    def _operation(self, path: str, method: str, op: dict[str, Any]) -> Operation:
        pieces = re.split(r"\{(\w+)\}", path)
        regex = "".join(
            f"(?P<{piece}>[^/]+)" if odd else re.escape(piece)
            for odd, piece in ((i % 2 == 1, p) for i, p in enumerate(pieces))
        )
        declared = op.get("parameters", [])
        path_params = {p["name"]: p["schema"] for p in declared if p["in"] == "path"}
        params = {p["name"]: p["schema"] for p in declared if p["in"] == "query"}
        required: set[str] = set()
        body = op.get("requestBody", {}).get("content", {})
        form = body.get("application/x-www-form-urlencoded", {}).get("schema")
        if form:
            params.update(form.get("properties", {}))
            required.update(form.get("required", []))
        return Operation(
            op.get("operationId", f"{method} {path}"),
            method.upper(),
            path,
            re.compile(f"^{regex}$"),
            path_params,
            params,
            frozenset(required),
        )

    def match(self, method: str, path: str) -> tuple[Operation | None, bool]:
        """(operation, path known): the operation for ``method`` on ``path``."""
        known = False
        for operation in self.operations:
            if operation.pattern.match(path):
                known = True
                if operation.method == method:
                    return operation, True
        return None, known

    def problem(self, name: str, schema: dict[str, Any], values: list[str]) -> str | None:
        """Why ``values`` do not fit parameter ``name`` (None when they do)."""
        schema = self.resolve(schema)
        if schema.get("type") != "array" and len(values) > 1:
            return f"parameter {name} given {len(values)} times"
        item = self.resolve(schema.get("items", {})) if schema.get("type") == "array" else schema
        allowed = item.get("enum") or _documented_values(schema)
        for value in values:
            trouble = _type_problem(item, value)
            if trouble:
                return f"parameter {name}: {trouble}"
            if allowed and value not in allowed:
                return f"parameter {name}: {value!r} is not one of {', '.join(allowed)}"
            pattern = item.get("pattern")
            if pattern and not re.match(pattern, value):
                return f"parameter {name} does not match {pattern}"
        return None


def _documented_values(schema: dict[str, Any]) -> list[str]:
    """Values the description lists ("Can be: `a` or `b`") where the spec has no enum."""
    found = _DOCUMENTED.search(schema.get("description", ""))
    return _BACKTICKED.findall(found.group(1)) if found else []


def _type_problem(schema: dict[str, Any], value: str) -> str | None:
    kind = schema.get("type")
    if kind == "integer" and not re.fullmatch(r"-?\d+", value):
        return f"{value!r} is not an integer"
    if kind == "number" and not re.fullmatch(r"-?\d+(\.\d+)?", value):
        return f"{value!r} is not a number"
    if kind == "boolean" and value.lower() not in ("true", "false"):
        return f"{value!r} is not a boolean"
    return None


@lru_cache(maxsize=1)
def load_spec() -> Spec:
    return Spec(json.loads(spec_path().read_text(encoding="utf-8")))


# --- state and faults ---------------------------------------------------------------------


@dataclass
class FakeCall:
    sid: str
    params: Params
    status: str = "queued"
    updates: list[Params] = field(default_factory=list)

    def first(self, name: str) -> str | None:
        values = self.params.get(name)
        return values[0] if values else None


@dataclass
class FakeMessage:
    sid: str
    params: Params
    status: str = "queued"


@dataclass(frozen=True)
class Fault:
    status: int | None = None  # answer with this HTTP status (500, 503, 429 ...)
    delay_seconds: float = 0.0  # wait this long before answering


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    params: Params
    status: int


class TwilioError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def payload(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _rfc2822(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


# --- the server ---------------------------------------------------------------------------


class FakeTwilio:
    """Twilio's REST API for one account on 127.0.0.1; use as a context manager."""

    def __init__(self, account_sid: str | None = None, auth_token: str | None = None) -> None:
        self.account_sid = account_sid or _sid("AC")
        self.auth_token = auth_token or secrets.token_hex(16)
        self.spec = load_spec()
        self.calls: dict[str, FakeCall] = {}
        self.messages: dict[str, FakeMessage] = {}
        self.requests: list[Recorded] = []
        self.violations: list[TwilioError] = []
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "the fake is not running"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeTwilio:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # faults ---------------------------------------------------------------------------
    def fail_next(self, status: int, count: int = 1) -> None:
        with self._lock:
            self._faults.extend(Fault(status=status) for _ in range(count))

    def delay_next(self, seconds: float, count: int = 1) -> None:
        with self._lock:
            self._faults.extend(Fault(delay_seconds=seconds) for _ in range(count))

    def _next_fault(self) -> Fault | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    # requests -------------------------------------------------------------------------
    def handle(
        self, method: str, target: str, body: bytes, authorization: str | None
    ) -> tuple[int, dict[str, Any]]:
        split = urlsplit(target)
        params = parse_qs(split.query if method != "POST" else body.decode(), True)
        try:
            status, payload = self._answer(method, split.path, params, authorization)
        except TwilioError as error:
            status, payload = error.status, error.payload()
        with self._lock:
            self.requests.append(Recorded(method, split.path, params, status))
        return status, payload

    def _answer(
        self, method: str, path: str, params: Params, authorization: str | None
    ) -> tuple[int, dict[str, Any]]:
        fault = self._next_fault()
        if fault is not None:
            time.sleep(fault.delay_seconds)
            if fault.status == 429:
                raise TwilioError(429, 20429, "Too Many Requests")
            if fault.status is not None:
                raise TwilioError(fault.status, 20500, "Internal Server Error")
        operation, path_known = self.spec.match(method, path)
        if operation is None:
            if path_known:
                raise TwilioError(405, 20004, f"Method {method} not allowed")
            raise TwilioError(404, 20404, "The requested resource was not found")
        found = operation.pattern.match(path)
        assert found is not None
        path_values = found.groupdict()
        self._check_path(operation, path_values)
        self._check_auth(path_values.get("AccountSid"), authorization)
        self._check_params(operation, params)
        return self._dispatch(operation.operation_id, path_values, params)

    def _violation(self, message: str) -> TwilioError:
        error = TwilioError(400, 20001, message)
        with self._lock:
            self.violations.append(error)
        return error

    def _check_path(self, operation: Operation, values: Mapping[str, str]) -> None:
        for name, schema in operation.path_params.items():
            problem = self.spec.problem(name, schema, [values[name]])
            if problem:
                raise self._violation(problem)

    def _check_auth(self, account: str | None, authorization: str | None) -> None:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if authorization != f"Basic {expected}" or account != self.account_sid:
            raise TwilioError(401, 20003, "Authenticate")

    def _check_params(self, operation: Operation, params: Params) -> None:
        for name, values in params.items():
            if name not in operation.params:
                raise self._violation(f"unknown parameter {name} for {operation.operation_id}")
            problem = self.spec.problem(name, operation.params[name], values)
            if problem:
                raise self._violation(problem)
        missing = sorted(operation.required - params.keys())
        if missing:
            raise self._violation(f"missing required parameter {', '.join(missing)}")

    def _dispatch(
        self, operation_id: str, path: Mapping[str, str], params: Params
    ) -> tuple[int, dict[str, Any]]:
        handlers = {
            "CreateCall": self._create_call,
            "FetchCall": self._fetch_call,
            "UpdateCall": self._update_call,
            "ListCall": self._list_calls,
            "CreateMessage": self._create_message,
            "FetchMessage": self._fetch_message,
            "UpdateMessage": self._update_message,
            "ListMessage": self._list_messages,
        }
        handler = handlers.get(operation_id)
        if handler is None:
            raise TwilioError(404, 20404, f"{operation_id} is not simulated by the fake")
        return handler(path, params)

    # calls ----------------------------------------------------------------------------
    def _create_call(self, path: Mapping[str, str], params: Params) -> tuple[int, dict[str, Any]]:
        if not (params.get("Url") or params.get("Twiml") or params.get("ApplicationSid")):
            raise TwilioError(400, 21205, "Url, Twiml or ApplicationSid is required")
        if not re.fullmatch(r"\+[1-9]\d{6,14}", params["To"][0]):
            raise TwilioError(400, 21211, "Invalid 'To' Phone Number")
        call = FakeCall(_sid("CA"), params)
        with self._lock:
            self.calls[call.sid] = call
        return 201, self._call_json(call)

    def _call(self, sid: str) -> FakeCall:
        call = self.calls.get(sid)
        if call is None:
            raise TwilioError(404, 20404, "The requested resource was not found")
        return call

    def _fetch_call(self, path: Mapping[str, str], params: Params) -> tuple[int, dict[str, Any]]:
        return 200, self._call_json(self._call(path["Sid"]))

    def _update_call(self, path: Mapping[str, str], params: Params) -> tuple[int, dict[str, Any]]:
        call = self._call(path["Sid"])
        if "Twiml" in params and "Url" in params:
            raise TwilioError(400, 21220, "Twiml and Url are mutually exclusive")
        with self._lock:
            call.updates.append(params)
            if "Status" in params:
                call.status = params["Status"][0]
        return 200, self._call_json(call)

    def _list_calls(self, path: Mapping[str, str], params: Params) -> tuple[int, dict[str, Any]]:
        wanted = params.get("Status", [None])[0]
        calls = [c for c in self.calls.values() if wanted is None or c.status == wanted]
        return 200, self._page("calls", path, [self._call_json(c) for c in calls])

    def _call_json(self, call: FakeCall) -> dict[str, Any]:
        now = _rfc2822(datetime.now(UTC))
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{call.sid}.json"
        return {
            "sid": call.sid,
            "account_sid": self.account_sid,
            "to": call.first("To"),
            "from": call.first("From"),
            "status": call.status,
            "direction": "outbound-api",
            "api_version": API_VERSION,
            "date_created": now,
            "date_updated": now,
            "start_time": None,
            "end_time": None,
            "duration": None,
            "answered_by": None,
            "parent_call_sid": None,
            "price": None,
            "price_unit": "USD",
            "uri": uri,
            "subresource_uris": {},
        }

    # messages -------------------------------------------------------------------------
    def _create_message(
        self, path: Mapping[str, str], params: Params
    ) -> tuple[int, dict[str, Any]]:
        if not (params.get("From") or params.get("MessagingServiceSid")):
            raise TwilioError(400, 21603, "A 'From' phone number is required")
        if not (params.get("Body") or params.get("MediaUrl") or params.get("ContentSid")):
            raise TwilioError(400, 21602, "Message body is required")
        message = FakeMessage(_sid("SM"), params)
        with self._lock:
            self.messages[message.sid] = message
        return 201, self._message_json(message)

    def _fetch_message(self, path: Mapping[str, str], params: Params) -> tuple[int, dict[str, Any]]:
        message = self.messages.get(path["Sid"])
        if message is None:
            raise TwilioError(404, 20404, "The requested resource was not found")
        return 200, self._message_json(message)

    def _update_message(
        self, path: Mapping[str, str], params: Params
    ) -> tuple[int, dict[str, Any]]:
        message = self.messages.get(path["Sid"])
        if message is None:
            raise TwilioError(404, 20404, "The requested resource was not found")
        with self._lock:
            if "Body" in params:  # an empty Body redacts the text
                message.params["Body"] = params["Body"]
            if "Status" in params:
                message.status = params["Status"][0]
        return 200, self._message_json(message)

    def _list_messages(self, path: Mapping[str, str], params: Params) -> tuple[int, dict[str, Any]]:
        rows = [self._message_json(m) for m in self.messages.values()]
        return 200, self._page("messages", path, rows)

    def _message_json(self, message: FakeMessage) -> dict[str, Any]:
        now = _rfc2822(datetime.now(UTC))
        return {
            "sid": message.sid,
            "account_sid": self.account_sid,
            "to": message.params["To"][0],
            "from": message.params.get("From", [None])[0],
            "body": message.params.get("Body", [""])[0],
            "status": message.status,
            "direction": "outbound-api",
            "num_segments": "1",
            "num_media": "0",
            "api_version": API_VERSION,
            "date_created": now,
            "date_updated": now,
            "date_sent": None,
            "error_code": None,
            "error_message": None,
            "uri": f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{message.sid}.json",
            "subresource_uris": {},
        }

    def _page(
        self, key: str, path: Mapping[str, str], rows: list[dict[str, Any]]
    ) -> dict[str, Any]:
        kind = key.capitalize()
        uri = f"/{API_VERSION}/Accounts/{path['AccountSid']}/{kind}.json?PageSize=50&Page=0"
        return {
            key: rows,
            "start": 0,
            "end": max(len(rows) - 1, 0),
            "page": 0,
            "page_size": 50,
            "uri": uri,
            "first_page_uri": uri,
            "next_page_uri": None,
            "previous_page_uri": None,
        }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fake: FakeTwilio = self.server.fake  # type: ignore[attr-defined]
        status, payload = fake.handle(method, self.path, body, self.headers.get("Authorization"))
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Quiet: request lines would carry phone numbers in list queries."""


# --- Twilio towards our webhooks ----------------------------------------------------------


@dataclass(frozen=True)
class TwimlDocument:
    """What the application told Twilio to do next, as far as the actor needs to know."""

    xml: str

    @property
    def root(self) -> ET.Element:
        return ET.fromstring(self.xml)

    def _attr(self, tag: str, name: str) -> str | None:
        element = self.root.find(tag)
        return None if element is None else element.get(name)

    @property
    def gather_url(self) -> str | None:
        return self._attr("Gather", "action")

    @property
    def redirect_url(self) -> str | None:
        element = self.root.find("Redirect")
        return None if element is None else (element.text or "").strip()

    @property
    def dial_url(self) -> str | None:
        return self._attr("Dial", "action")

    @property
    def hangs_up(self) -> bool:
        return self.root.find("Hangup") is not None

    @property
    def said(self) -> list[str]:
        return [say.text or "" for say in self.root.iter("Say")]


class TwilioActor:
    """Posts what Twilio would post for a call of ``fake``, signed, to the application.

    ``app`` is an httpx client whose base URL reaches the application (a FastAPI TestClient
    or a client for a live server); URLs in the call are public ones, signed as given and
    sent to the same path and query on ``app`` (as behind a proxy).
    """

    def __init__(self, fake: FakeTwilio, app: httpx.Client) -> None:
        self.fake = fake
        self.app = app
        self.validator = RequestValidator(fake.auth_token)
        self.documents: dict[str, TwimlDocument] = {}

    def post(self, url: str, params: Mapping[str, str], token: str | None = None) -> httpx.Response:
        split = urlsplit(url)
        headers = {"X-Twilio-Signature": self.validator.compute_signature(url, dict(params))}
        headers["I-Twilio-Idempotency-Token"] = token or secrets.token_hex(16)
        target = split.path + (f"?{split.query}" if split.query else "")
        return self.app.post(target, data=dict(params), headers=headers)

    def call_params(self, call: FakeCall, status: str, **extra: str) -> dict[str, str]:
        return {
            "CallSid": call.sid,
            "AccountSid": self.fake.account_sid,
            "From": call.first("From") or "",
            "To": call.first("To") or "",
            "Called": call.first("To") or "",
            "Caller": call.first("From") or "",
            "CallStatus": status,
            "Direction": "outbound-api",
            "ApiVersion": API_VERSION,
            **extra,
        }

    def status(self, sid: str, status: str, **extra: str) -> httpx.Response | None:
        """A status callback, sent only when the call subscribed to its event."""
        call = self.fake.calls[sid]
        event = {"in-progress": "answered", "initiated": "initiated", "ringing": "ringing"}
        subscribed = call.params.get("StatusCallbackEvent", ["completed"])
        url = call.first("StatusCallback")
        call.status = status
        if url is None or event.get(status, "completed") not in subscribed:
            return None
        return self.post(url, self.call_params(call, status, **extra))

    def answer(self, sid: str, **extra: str) -> TwimlDocument:
        """The call is answered: Twilio requests the voice URL."""
        call = self.fake.calls[sid]
        url = call.first("Url")
        assert url is not None, "the call was created without a voice URL"
        return self._follow(sid, url, **extra)

    def amd(self, sid: str, answered_by: str) -> httpx.Response:
        call = self.fake.calls[sid]
        url = call.first("AsyncAmdStatusCallback")
        assert url is not None, "the call asked for no async AMD callback"
        params = self.call_params(call, "in-progress", AnsweredBy=answered_by)
        params["MachineDetectionDuration"] = "2400"
        return self.post(url, params)

    def current(self, sid: str) -> TwimlDocument:
        """The document in force: the last update through REST, else the last answer."""
        call = self.fake.calls[sid]
        for update in reversed(call.updates):
            if "Twiml" in update:
                self.documents[sid] = TwimlDocument(update["Twiml"][0])
                call.updates.remove(update)
                break
        return self.documents[sid]

    def gather(self, sid: str, **heard: str) -> TwimlDocument:
        """Input reached the gather: post Digits / SpeechResult + Confidence to its action."""
        url = self.current(sid).gather_url
        assert url is not None, "the current document has no <Gather>"
        return self._follow(sid, url, **heard)

    def time_out(self, sid: str) -> TwimlDocument:
        """The gather heard nothing: Twilio goes on to the next verb, the <Redirect>."""
        url = self.current(sid).redirect_url
        assert url, "the current document has no <Redirect> after its <Gather>"
        return self._follow(sid, url)

    def dial_ended(self, sid: str, dial_status: str) -> TwimlDocument:
        url = self.current(sid).dial_url
        assert url is not None, "the current document has no <Dial action>"
        return self._follow(sid, url, DialCallStatus=dial_status)

    def _follow(self, sid: str, url: str, **extra: str) -> TwimlDocument:
        call = self.fake.calls[sid]
        answer = self.post(url, self.call_params(call, "in-progress", **extra))
        answer.raise_for_status()
        document = TwimlDocument(answer.text)
        self.documents[sid] = document
        return document

    def sms_status(self, sid: str, status: str, error_code: str | None = None) -> httpx.Response:
        message = self.fake.messages[sid]
        url = message.params["StatusCallback"][0]
        params = {
            "MessageSid": sid,
            "SmsSid": sid,
            "AccountSid": self.fake.account_sid,
            "MessageStatus": status,
            "SmsStatus": status,
            "To": message.params["To"][0],
            "From": message.params.get("From", [""])[0],
            "ApiVersion": API_VERSION,
        }
        if error_code:
            params["ErrorCode"] = error_code
        return self.post(url, params)
