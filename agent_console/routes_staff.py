"""City staff: the hand-off queue, a target's timeline, and the audited results export."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from agent_console.context import ConsoleContext, console_context
from agent_console.rendering import render
from agent_console.security import ConsoleUser, require_roles
from dialer import live, staff_work
from dialer.operator_work import HANDOFF_REASONS, RESULT_CODES
from kernel.models import HandOffStatus, Role
from sync.results import export_results

router = APIRouter()
Ctx = Annotated[ConsoleContext, Depends(console_context)]
Staff = Annotated[ConsoleUser, Depends(require_roles(Role.STAFF))]
StaffOrSupervisor = Annotated[ConsoleUser, Depends(require_roles(Role.STAFF, Role.SUPERVISOR))]
OPEN_STATUSES = (HandOffStatus.OPEN, HandOffStatus.TAKEN)


@router.get("/staff")
async def handoff_queue(request: Request, ctx: Ctx, user: Staff) -> Response:
    show_closed = request.query_params.get("closed") == "1"
    statuses = (*OPEN_STATUSES, HandOffStatus.CLOSED) if show_closed else OPEN_STATUSES

    def load() -> list[staff_work.HandOffRow]:
        with ctx.database.read_only() as session:
            return staff_work.list_handoffs(session, statuses)

    rows = await run_in_threadpool(load)
    values = {"rows": rows, "reasons": HANDOFF_REASONS, "show_closed": show_closed}
    return render(request, "staff_home.html", values)


@router.get("/staff/handoffs/{handoff_id}")
async def handoff_page(request: Request, ctx: Ctx, user: Staff, handoff_id: int) -> Response:
    def load() -> staff_work.HandOffDetail:
        with ctx.database.unit_of_work() as session:
            return staff_work.handoff_detail(session, ctx.keyring, handoff_id, user.user_id)

    detail = await run_in_threadpool(load)
    values = {"detail": detail, "reasons": HANDOFF_REASONS, "results": RESULT_CODES}
    return render(request, "handoff.html", values)


@router.post("/staff/handoffs/{handoff_id}/take")
async def take(ctx: Ctx, user: Staff, handoff_id: int) -> Response:
    await run_in_threadpool(_in_uow, ctx, staff_work.take, handoff_id, user.user_id)
    live.notify(ctx.coordination, "handoff")
    return RedirectResponse(f"/staff/handoffs/{handoff_id}", status_code=303)


@router.post("/staff/handoffs/{handoff_id}/note")
async def note(
    ctx: Ctx, user: Staff, handoff_id: int, text: Annotated[str, Form(max_length=4000)]
) -> Response:
    def store() -> None:
        with ctx.database.unit_of_work() as session:
            staff_work.add_note(session, ctx.keyring, handoff_id, user.user_id, text)

    await run_in_threadpool(store)
    return RedirectResponse(f"/staff/handoffs/{handoff_id}", status_code=303)


@router.post("/staff/handoffs/{handoff_id}/close")
async def close(ctx: Ctx, user: Staff, handoff_id: int) -> Response:
    await run_in_threadpool(_in_uow, ctx, staff_work.close, handoff_id, user.user_id)
    live.notify(ctx.coordination, "handoff")
    return RedirectResponse("/staff", status_code=303)


def _in_uow(
    ctx: ConsoleContext, action: staff_work.HandOffAction, handoff_id: int, user_id: int
) -> None:
    with ctx.database.unit_of_work() as session:
        action(session, handoff_id, user_id)


@router.get("/targets/{person_id}/timeline")
async def timeline_page(
    request: Request, ctx: Ctx, user: StaffOrSupervisor, person_id: int
) -> Response:
    def load() -> list[staff_work.TimelineEntry]:
        with ctx.database.unit_of_work() as session:
            return staff_work.timeline(session, ctx.keyring, person_id, user.user_id)

    entries = await run_in_threadpool(load)
    values = {
        "entries": entries,
        "person_id": person_id,
        "results": RESULT_CODES,
        "reasons": HANDOFF_REASONS,
    }
    return render(request, "timeline.html", values)


@router.get("/exports")
async def exports_page(request: Request, ctx: Ctx, user: StaffOrSupervisor) -> Response:
    def load() -> list[live.CampaignProgress]:
        with ctx.database.read_only() as session:
            return live.campaign_progress(session)

    campaigns = await run_in_threadpool(load)
    return render(request, "exports.html", {"campaigns": campaigns})


@router.post("/exports/{campaign_id}")
async def export(ctx: Ctx, user: StaffOrSupervisor, campaign_id: int) -> Response:
    """The results file (交渉経過) as a download; written to a private temporary directory
    and removed at once, so no copy of personal data stays on the server's disk."""

    def write() -> bytes:
        with tempfile.TemporaryDirectory(prefix="dunning-export-") as directory:
            out = Path(directory) / "results.csv"
            export_results(ctx.database, ctx.keyring, campaign_id, out, actor=user.actor)
            return out.read_bytes()

    content = await run_in_threadpool(write)
    name = f"results-campaign-{campaign_id}.csv"
    return Response(
        content,
        media_type="text/csv; charset=cp932",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
