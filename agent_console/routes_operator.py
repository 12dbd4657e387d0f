"""Operators: the work queue, the call screen with the structured form, inbound look-ups."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from agent_console.context import ConsoleContext, console_context
from agent_console.rendering import render
from agent_console.security import ConsoleUser, require_roles
from dialer import live
from dialer.operator_log import FollowUpPolicy, InboundMatch, find_callers, save_call, start_inbound
from dialer.operator_screen import CallScreen, confirm_identity, open_call_screen
from dialer.operator_work import (
    HANDOFF_REASONS,
    PAYMENT_METHODS,
    RESULT_CODES,
    CallForm,
    ClaimGate,
    ClaimRefused,
    claim_next,
    current_claim,
    held_attempt,
    release,
)
from dialer.ports import CallRequest
from kernel import audit
from kernel.calendar import TOKYO
from kernel.errors import Conflict, Forbidden, InvalidInput
from kernel.models import Role

router = APIRouter(prefix="/operator")
Ctx = Annotated[ConsoleContext, Depends(console_context)]
LOOKUPS_PER_HOUR = 60  # inbound look-ups per operator: enough for calls, too few to browse
Operator = Annotated[ConsoleUser, Depends(require_roles(Role.OPERATOR))]


def _click_to_call(ctx: ConsoleContext) -> bool:
    return ctx.carrier is not None and ctx.carrier.capabilities().click_to_call


@router.get("")
async def queue_page(request: Request, ctx: Ctx, user: Operator) -> Response:
    def load() -> tuple[int | None, dict[str, int]]:
        with ctx.database.read_only() as session:
            held = current_claim(session, user.user_id)
            figures = live.queue_counts(session, ctx.now())
        return (held.attempt_id if held else None), figures

    held_id, queues = await run_in_threadpool(load)
    return render(request, "operator_home.html", {"held_id": held_id, "queues": queues})


@router.post("/next")
async def next_target(ctx: Ctx, user: Operator) -> Response:
    gate = ClaimGate(ctx.calling_window, timedelta(hours=ctx.settings.sync.exclusion_max_age_hours))

    def claim() -> int | None:
        with ctx.database.unit_of_work() as session:
            taken = claim_next(session, user.user_id, gate, ctx.now())
        return taken.attempt_id if taken else None

    try:
        attempt_id = await run_in_threadpool(claim)
    except ClaimRefused as refused:
        return RedirectResponse(f"/operator?refused={refused.reason}", status_code=303)
    if attempt_id is None:
        return RedirectResponse("/operator?empty=1", status_code=303)
    live.set_operator_state(ctx.coordination, user.user_id, "on_call", ctx.now())
    return RedirectResponse(f"/operator/calls/{attempt_id}", status_code=303)


async def _render_call_screen(
    request: Request,
    ctx: ConsoleContext,
    user: ConsoleUser,
    attempt_id: int,
    *,
    error: str = "",
    entered: dict[str, str] | None = None,
) -> Response:
    def load() -> CallScreen:
        with ctx.database.unit_of_work() as session:
            return open_call_screen(session, ctx.keyring, attempt_id, user.user_id)

    screen = await run_in_threadpool(load)
    values = {
        "screen": screen,
        "results": RESULT_CODES,
        "methods": PAYMENT_METHODS,
        "reasons": HANDOFF_REASONS,
        "notes_max": ctx.settings.console.notes_max_chars,
        "click_to_call": _click_to_call(ctx),
        "error": error,
        "entered": entered or {},
    }
    return render(request, "call_screen.html", values, status_code=422 if error else 200)


@router.get("/calls/{attempt_id}")
async def call_screen(request: Request, ctx: Ctx, user: Operator, attempt_id: int) -> Response:
    return await _render_call_screen(request, ctx, user, attempt_id)


@router.post("/calls/{attempt_id}/identity")
async def identity(
    ctx: Ctx, user: Operator, attempt_id: int, confirmed: Annotated[str, Form()] = ""
) -> Response:
    if confirmed != "yes":
        raise InvalidInput("本人確認: 氏名・住所・生年月日の3点を確認してからチェックしてください")

    def confirm() -> None:
        with ctx.database.unit_of_work() as session:
            confirm_identity(session, attempt_id, user.user_id)

    await run_in_threadpool(confirm)
    return RedirectResponse(f"/operator/calls/{attempt_id}#form", status_code=303)


@router.post("/calls/{attempt_id}/dial")
async def dial(
    ctx: Ctx, user: Operator, attempt_id: int, phone_id: Annotated[int, Form()]
) -> Response:
    carrier = ctx.carrier
    if carrier is None or not carrier.capabilities().click_to_call:
        raise Conflict("この回線では発信ボタンを使えません。番号を手で発信してください")

    def place() -> None:
        with ctx.database.unit_of_work() as session:
            screen = open_call_screen(session, ctx.keyring, attempt_id, user.user_id)
            phone = next((p for p in screen.phones if p.phone_id == phone_id and p.usable), None)
            if phone is None:
                raise InvalidInput("電話番号: この番号には発信できません")
            attempt = held_attempt(session, attempt_id, user.user_id)
            handle = carrier.place_call(
                CallRequest(
                    attempt_id=attempt.id,
                    idempotency_key=f"{attempt.idempotency_key}:{phone_id}"[:64],
                    to_e164=phone.e164,
                    from_e164=ctx.settings.municipality.caller_id,
                    ring_timeout_seconds=ctx.settings.dialer.ring_timeout_seconds,
                    detect_machine=False,
                )
            )
            if not handle.accepted:
                raise Conflict(f"発信できませんでした ({handle.error_code or 'carrier'})")
            attempt.carrier, attempt.carrier_ref, attempt.phone_id = (
                handle.carrier,
                handle.carrier_ref,
                phone_id,
            )
            audit.record(
                session,
                actor=user.actor,
                action="call.dialed",
                object_type="attempt",
                object_id=attempt.id,
            )

    await run_in_threadpool(place)
    return RedirectResponse(f"/operator/calls/{attempt_id}", status_code=303)


def _optional_date(text: str, field: str) -> date | None:
    if not text.strip():
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError as error:
        raise InvalidInput(f"{field}: 日付の形式が正しくありません") from error


def _optional_local_datetime(text: str) -> datetime | None:
    if not text.strip():
        return None
    try:
        return datetime.fromisoformat(text.strip()).replace(tzinfo=TOKYO)
    except ValueError as error:
        raise InvalidInput("折り返し日時: 日時の形式が正しくありません") from error


def _optional_amount(text: str) -> int | None:
    cleaned = text.strip().replace(",", "").removesuffix("円")
    if not cleaned:
        return None
    if not cleaned.isdigit():
        raise InvalidInput("約束金額: 数字で入力してください")
    return int(cleaned)


@router.post("/calls/{attempt_id}/save")
async def save(
    request: Request,
    ctx: Ctx,
    user: Operator,
    attempt_id: int,
    result_code: Annotated[str, Form(max_length=32)],
    promise_date: Annotated[str, Form(max_length=20)] = "",
    promise_amount: Annotated[str, Form(max_length=20)] = "",
    payment_method: Annotated[str, Form(max_length=32)] = "",
    slip_reissue: Annotated[str, Form(max_length=8)] = "",
    transfer_recommended: Annotated[str, Form(max_length=8)] = "",
    callback_at: Annotated[str, Form(max_length=20)] = "",
    handoff_reason: Annotated[str, Form(max_length=32)] = "",
    notes: Annotated[str, Form(max_length=5000)] = "",
) -> Response:
    entered = {
        "result_code": result_code,
        "promise_date": promise_date,
        "promise_amount": promise_amount,
        "payment_method": payment_method,
        "slip_reissue": slip_reissue,
        "transfer_recommended": transfer_recommended,
        "callback_at": callback_at,
        "handoff_reason": handoff_reason,
        "notes": notes,
    }
    try:
        await _store_call(ctx, user, attempt_id, entered)
    except InvalidInput as problem:  # the form comes back with what was typed, and why
        return await _render_call_screen(
            request, ctx, user, attempt_id, error=str(problem), entered=entered
        )
    live.set_operator_state(ctx.coordination, user.user_id, "idle", ctx.now())
    return RedirectResponse("/operator?saved=1", status_code=303)


async def _store_call(
    ctx: ConsoleContext, user: ConsoleUser, attempt_id: int, entered: dict[str, str]
) -> None:
    form = CallForm(
        result_code=entered["result_code"],
        promise_date=_optional_date(entered["promise_date"], "約束日"),
        promise_amount_yen=_optional_amount(entered["promise_amount"]),
        payment_method=entered["payment_method"],
        slip_reissue=entered["slip_reissue"] == "yes",
        transfer_recommended=entered["transfer_recommended"] == "yes",
        callback_at=_optional_local_datetime(entered["callback_at"]),
        handoff_reason=entered["handoff_reason"],
        notes=entered["notes"].replace("\r\n", "\n"),
    )
    console = ctx.settings.console
    policy = FollowUpPolicy(ctx.calling_window, console.operator_retry_limit)

    def store() -> None:
        with ctx.database.unit_of_work() as session:
            save_call(
                session,
                ctx.keyring,
                attempt_id,
                user.user_id,
                form,
                policy,
                console.notes_max_chars,
                ctx.now(),
            )

    await run_in_threadpool(store)


@router.post("/calls/{attempt_id}/release")
async def release_target(ctx: Ctx, user: Operator, attempt_id: int) -> Response:
    def give_back() -> None:
        with ctx.database.unit_of_work() as session:
            release(session, attempt_id, user.user_id)

    await run_in_threadpool(give_back)
    live.set_operator_state(ctx.coordination, user.user_id, "idle", ctx.now())
    return RedirectResponse("/operator", status_code=303)


@router.get("/inbound")
async def inbound_page(request: Request, user: Operator) -> Response:
    return render(request, "inbound.html", {"matches": None})


@router.post("/inbound")
async def inbound_lookup(
    request: Request,
    ctx: Ctx,
    user: Operator,
    phone: Annotated[str, Form(max_length=32)] = "",
    atena_no: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    if not ctx.coordination.try_acquire_rate(
        f"inbound-lookup:{user.user_id}", LOOKUPS_PER_HOUR, 3600.0
    ):
        raise Forbidden("検索回数の上限に達しました。管理者に連絡してください (R-10)")

    def look_up() -> list[InboundMatch]:
        with ctx.database.unit_of_work() as session:
            return find_callers(
                session, ctx.keyring, user.user_id, phone=phone.strip(), atena_no=atena_no.strip()
            )

    matches = await run_in_threadpool(look_up)
    return render(request, "inbound.html", {"matches": matches})


@router.post("/inbound/{person_id}/start")
async def inbound_start(ctx: Ctx, user: Operator, person_id: int) -> Response:
    def start() -> int:
        with ctx.database.unit_of_work() as session:
            return start_inbound(session, person_id, user.user_id, ctx.now())

    attempt_id = await run_in_threadpool(start)
    live.set_operator_state(ctx.coordination, user.user_id, "on_call", ctx.now())
    return RedirectResponse(f"/operator/calls/{attempt_id}", status_code=303)
