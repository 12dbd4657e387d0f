"""Supervisors: the live dashboard (server-sent events) and campaign controls."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from agent_console.context import ConsoleContext, console_context
from agent_console.rendering import render
from agent_console.security import ConsoleUser, require_roles
from dialer import campaigns, live
from kernel.coordination import JSONValue, Subscription
from kernel.errors import Conflict, InvalidInput
from kernel.models import CampaignStatus, Role

router = APIRouter(prefix="/supervisor")
Ctx = Annotated[ConsoleContext, Depends(console_context)]
Supervisor = Annotated[ConsoleUser, Depends(require_roles(Role.SUPERVISOR))]
CONTROLS = {
    "ready": CampaignStatus.READY,
    "start": CampaignStatus.RUNNING,
    "pause": CampaignStatus.PAUSED,
    "resume": CampaignStatus.RUNNING,
}
ACTIONS_BY_STATUS = {
    CampaignStatus.DRAFT.value: ("ready",),
    CampaignStatus.READY.value: ("start",),
    CampaignStatus.RUNNING.value: ("pause",),
    CampaignStatus.PAUSED.value: ("resume",),
}
DRAIN_LIMIT = 100


def _snapshot(ctx: ConsoleContext) -> dict[str, JSONValue]:
    with ctx.database.read_only() as session:
        return live.snapshot(session, ctx.coordination, ctx.now())


@router.get("")
async def dashboard(request: Request, ctx: Ctx, user: Supervisor) -> Response:
    figures = await run_in_threadpool(_snapshot, ctx)
    return render(request, "supervisor.html", {"live": figures, "actions": ACTIONS_BY_STATUS})


@router.get("/live.json")
async def live_json(ctx: Ctx, user: Supervisor) -> Response:
    return JSONResponse(await run_in_threadpool(_snapshot, ctx))


def _wait_for_change(subscription: Subscription, seconds: float) -> None:
    """Block until something was published or ``seconds`` passed; coalesce bursts."""
    if subscription.get(seconds) is None:
        return
    for _ in range(DRAIN_LIMIT):
        if subscription.get(0.05) is None:
            return


async def _events(request: Request, ctx: ConsoleContext, once: bool) -> AsyncIterator[str]:
    subscription = ctx.coordination.subscribe(live.LIVE_CHANNEL)
    interval = ctx.settings.console.live_refresh_seconds
    try:
        while True:
            figures = await run_in_threadpool(_snapshot, ctx)
            yield f"event: snapshot\ndata: {json.dumps(figures, ensure_ascii=False)}\n\n"
            if once:
                return
            await run_in_threadpool(_wait_for_change, subscription, interval)
            if await request.is_disconnected():
                return
    finally:
        subscription.close()


@router.get("/live")
async def live_stream(request: Request, ctx: Ctx, user: Supervisor) -> Response:
    """Server-sent events: a snapshot now, then one whenever figures change (or periodically).
    ``?once=1`` sends a single snapshot and ends (for scripts and tests)."""
    once = request.query_params.get("once") == "1"
    return StreamingResponse(
        _events(request, ctx, once),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.post("/campaigns/{campaign_id}/{action}")
async def control(ctx: Ctx, user: Supervisor, campaign_id: int, action: str) -> Response:
    target = CONTROLS.get(action)
    if target is None:
        raise InvalidInput(f"unknown campaign action {action!r} (start, pause or resume)")

    def apply() -> None:
        with ctx.database.unit_of_work() as session:
            campaign = campaigns.get_campaign(session, campaign_id)
            if action == "resume" and campaign.status is not CampaignStatus.PAUSED:
                raise Conflict("only a paused campaign can be resumed")
            if action == "start" and campaign.status is CampaignStatus.PAUSED:
                raise Conflict("a paused campaign is resumed, not started")
            if target is CampaignStatus.READY:
                campaigns.prepare(session, campaign_id, ctx.calling_window, ctx.now(), user.actor)
            else:
                campaigns.move(session, campaign_id, target, user.actor)

    await run_in_threadpool(apply)
    live.notify(ctx.coordination, "campaign")
    return RedirectResponse("/supervisor", status_code=303)
