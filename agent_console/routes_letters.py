"""催告書の印刷待ち: how many targets wait for a letter, past print runs, and a print button.

Counts and manifests are shown to staff and supervisors; printing and downloading a batch
(names and addresses) is for supervisors only, and every download is audited with the
campaign id (the file name carries no personal data; the audit detail carries counts only).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from agent_console.context import ConsoleContext, console_context
from agent_console.rendering import render
from agent_console.routes_reports import report_font
from agent_console.security import ConsoleUser, require_roles
from dialer.campaigns import STATUS_LABELS_JA
from kernel import audit
from kernel.errors import InvalidInput, NotFound
from kernel.models import Campaign, CampaignStatus, Role
from reports.letters import LetterJob, print_letters, select_recipients

router = APIRouter(prefix="/supervisor/letters")
Ctx = Annotated[ConsoleContext, Depends(console_context)]
Viewer = Annotated[ConsoleUser, Depends(require_roles(Role.SUPERVISOR, Role.STAFF))]
Supervisor = Annotated[ConsoleUser, Depends(require_roles(Role.SUPERVISOR))]
BATCH_NAME = re.compile(r"^letters-\d{8}T\d{6}\.pdf$")


@dataclass(frozen=True)
class PrintRun:
    file: str
    letters: int
    pages: int
    created_at: str
    sha256: str
    available: bool


@dataclass(frozen=True)
class LetterQueue:
    campaign_id: int
    name: str
    status: CampaignStatus
    waiting: int
    follow_up: int
    runs: list[PrintRun]

    @property
    def status_ja(self) -> str:
        return STATUS_LABELS_JA[self.status]


def campaign_folder(ctx: ConsoleContext, campaign_id: int) -> Path:
    return ctx.settings.var_dir / "letters" / f"campaign-{campaign_id}"


def _read_manifest(path: Path) -> PrintRun | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        file = str(data["file"])
        return PrintRun(
            file=file,
            letters=int(data["letters"]),
            pages=int(data["pages"]),
            created_at=str(data["created_at"]),
            sha256=str(data["sha256"]),
            available=BATCH_NAME.match(file) is not None and (path.parent / file).is_file(),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a damaged manifest is not a print run we can offer


def print_runs(ctx: ConsoleContext, campaign_id: int) -> list[PrintRun]:
    """Past print runs of the campaign, newest first (from the manifests beside each PDF)."""
    folder = campaign_folder(ctx, campaign_id)
    manifests = sorted(folder.glob("*.manifest.json"), reverse=True) if folder.is_dir() else []
    return [run for run in map(_read_manifest, manifests) if run is not None]


def _queues(ctx: ConsoleContext) -> list[LetterQueue]:
    queues = []
    with ctx.database.read_only() as session:
        for campaign in session.scalars(select(Campaign).order_by(Campaign.id)):
            live = campaign.status is not CampaignStatus.WIPED
            waiting = len(select_recipients(session, campaign.id, follow_up=False)) if live else 0
            follow = len(select_recipients(session, campaign.id, follow_up=True)) if live else 0
            runs = print_runs(ctx, campaign.id)
            queues.append(
                LetterQueue(campaign.id, campaign.name, campaign.status, waiting, follow, runs)
            )
    return queues


@router.get("")
async def letters_page(request: Request, ctx: Ctx, user: Viewer) -> Response:
    queues = await run_in_threadpool(_queues, ctx)
    printed = request.query_params.get("printed", "")
    values = {
        "queues": queues,
        "can_print": user.role is Role.SUPERVISOR,
        "printed": printed if BATCH_NAME.match(printed) else "",
        "printed_campaign": request.query_params.get("campaign", ""),
        "nothing": request.query_params.get("nothing") == "1",
    }
    return render(request, "letters.html", values)


def _print(ctx: ConsoleContext, user: ConsoleUser, campaign_id: int, follow_up: bool) -> str:
    settings = ctx.settings
    job = LetterJob(
        keyring=ctx.keyring,
        municipality=settings.municipality,
        letters=settings.letters,
        font=report_font(ctx),
        var_dir=settings.var_dir,
    )
    batch = print_letters(
        ctx.database, job, campaign_id, follow_up=follow_up, actor=user.actor, now=ctx.now()
    )
    return batch.pdf.name if batch.pdf is not None else ""


@router.post("/{campaign_id}/print")
async def print_batch(request: Request, ctx: Ctx, user: Supervisor, campaign_id: int) -> Response:
    form = await request.form()  # the CSRF token was checked by require_roles
    follow_up = form.get("follow_up") == "1"
    name = await run_in_threadpool(_print, ctx, user, campaign_id, follow_up)
    where = f"printed={name}" if name else "nothing=1"
    return RedirectResponse(f"/supervisor/letters?campaign={campaign_id}&{where}", status_code=303)


def _batch_bytes(ctx: ConsoleContext, user: ConsoleUser, campaign_id: int, file: str) -> bytes:
    if not BATCH_NAME.match(file):
        raise InvalidInput("ファイル名が正しくありません")
    run = next((r for r in print_runs(ctx, campaign_id) if r.file == file and r.available), None)
    if run is None:
        raise NotFound("指定の印刷用PDFはありません (消去済みの可能性があります)")
    data = (campaign_folder(ctx, campaign_id) / file).read_bytes()
    with ctx.database.unit_of_work() as session:
        audit.record(
            session,
            actor=user.actor,
            action="letters.downloaded",
            object_type="campaign",
            object_id=campaign_id,
            detail={"letters": run.letters, "pages": run.pages},
        )
    return data


@router.get("/{campaign_id}/download")
async def download_batch(
    request: Request, ctx: Ctx, user: Supervisor, campaign_id: int
) -> Response:
    """The batch named by ``?file=`` (or the newest one) as a PDF attachment."""
    file = request.query_params.get("file")
    if file is None:
        runs = await run_in_threadpool(print_runs, ctx, campaign_id)
        file = next((r.file for r in runs if r.available), "")
        if not file:
            raise NotFound("この催告の印刷用PDFはまだありません")
    data = await run_in_threadpool(_batch_bytes, ctx, user, campaign_id, file)
    disposition = f'attachment; filename="campaign-{campaign_id}-{file}"'
    return Response(
        data, media_type="application/pdf", headers={"Content-Disposition": disposition}
    )
