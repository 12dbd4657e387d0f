"""催告書: a PDF batch of dunning letters for targets without a phone (channel ``letter``) and,
on request, as a follow-up for active targets never reached in person.

A4 portrait, folded in three for a 長3 window envelope: the address block (〒, 住所, 氏名 様)
sits where the window is (``[letters]`` settings, millimetres from the top-left corner). The
text comes from a Jinja2 template in ``config/letters/``; amounts are handed to the template
only when it uses ``amounts`` or ``total_yen``. Each letter is recorded as a completed
``letter`` attempt and counted in the PII-free aggregates. The batch lands in
``<var_dir>/letters/campaign-<id>/`` (erased by the wipe) with a manifest (count, pages,
SHA-256) for the print run. Nothing personal is logged or audited: counts only.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, meta
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Flowable, Frame, Paragraph, Spacer
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from kernel import aggregates, audit
from kernel.db import Database
from kernel.errors import ConfigurationError, Conflict, NotFound
from kernel.models import (
    Attempt,
    AttemptStatus,
    Campaign,
    CampaignStatus,
    Channel,
    Person,
    Receivable,
    TargetStatus,
    utcnow,
)
from kernel.pii import KeyRing, PiiCipher
from kernel.settings import PROJECT_ROOT, LettersSettings, MunicipalitySettings, Settings
from reports.fonts import find_japanese_font
from reports.pdf import register_font

AMOUNT_VARIABLES = frozenset({"amounts", "total_yen"})
OUTCOME = "letter_printed"


@dataclass(frozen=True)
class LetterBatch:
    campaign_id: int
    letters: int
    pages: int
    pdf: Path | None
    manifest: Path | None
    sha256: str


def wareki(day: date) -> str:
    """A date in the 令和 era as letters print it (令和元年 for 2019)."""
    if day < date(2019, 5, 1):
        return f"平成{day.year - 1988}年{day.month}月{day.day}日"
    year = day.year - 2018
    return f"令和{'元' if year == 1 else year}年{day.month}月{day.day}日"


def letters_dir() -> Path:
    local = Path("config/letters")
    return local if local.is_dir() else PROJECT_ROOT / "config" / "letters"


def load_template(name: str, directory: Path | None = None) -> tuple[Template, bool]:
    """The template and whether it asks for amounts."""
    folder = directory or letters_dir()
    if not (folder / name).is_file():
        raise ConfigurationError(f"setting letters.template: {folder / name} not found")
    environment = Environment(
        loader=FileSystemLoader(str(folder)),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    source = (folder / name).read_text(encoding="utf-8")
    wants_amounts = bool(
        meta.find_undeclared_variables(environment.parse(source)) & AMOUNT_VARIABLES
    )
    return environment.get_template(name), wants_amounts


def select_recipients(session: Session, campaign_id: int, *, follow_up: bool) -> list[Person]:
    """Active targets on the letter channel (plus, for a follow-up, active targets whose
    attempts never reached them in person), never holdout, paid or stopped ones, and none
    already sent a letter."""
    lettered = exists().where(
        Attempt.person_id == Person.id,
        Attempt.channel == Channel.LETTER,
        Attempt.status == AttemptStatus.COMPLETED,
    )  # a letter the planner only scheduled has not been printed yet
    query = select(Person).where(
        Person.campaign_id == campaign_id, Person.status == TargetStatus.ACTIVE, ~lettered
    )
    persons = list(session.scalars(query.order_by(Person.id)))
    if not follow_up:
        return [p for p in persons if p.channel is Channel.LETTER]
    finished = session.execute(
        select(Attempt.person_id, Attempt.outcome_code).where(
            Attempt.campaign_id == campaign_id, Attempt.status == AttemptStatus.COMPLETED
        )
    ).all()
    tried = {person_id for person_id, _ in finished}
    reached = {person_id for person_id, code in finished if aggregates.is_right_party(code)}
    return [
        p for p in persons if p.channel is Channel.LETTER or (p.id in tried and p.id not in reached)
    ]


def _context(
    person: Person,
    cipher: PiiCipher,
    municipality: MunicipalitySettings,
    today: date,
    amounts: bool,
) -> dict[str, Any]:
    record = cipher.open_record(person.sealed_pii, "pii")
    items = sorted(person.receivables, key=lambda r: (r.fiscal_year, r.kind, r.period))
    context: dict[str, Any] = {
        "name": record.get("name") or "",
        "postal_code": record.get("postal_code") or "",
        "address": record.get("address") or "",
        "municipality": municipality.name,
        "section": municipality.section,
        "callback_number": municipality.callback_number_display,
        "issued_on": wareki(today),
        "items": [_item(r) for r in items],
    }
    if amounts:
        context["amounts"] = [
            _item(r) | {"unpaid_yen": r.unpaid_yen, "late_fee_yen": r.late_fee_yen} for r in items
        ]
        context["total_yen"] = sum(r.unpaid_yen + r.late_fee_yen for r in items)
    return context


def _item(receivable: Receivable) -> dict[str, Any]:
    return {
        "kind": receivable.kind,
        "fiscal_year": receivable.fiscal_year,
        "period": receivable.period,
        "due_date": wareki(receivable.due_date),
    }


@dataclass(frozen=True)
class _Styles:
    title: ParagraphStyle
    body: ParagraphStyle
    address: ParagraphStyle
    name: ParagraphStyle
    sender: ParagraphStyle


def _styles(font: str) -> _Styles:
    return _Styles(
        title=ParagraphStyle(
            "t", fontName=font, fontSize=15, leading=22, alignment=1, spaceAfter=8
        ),
        body=ParagraphStyle("b", fontName=font, fontSize=10.5, leading=17, wordWrap="CJK"),
        address=ParagraphStyle("a", fontName=font, fontSize=10.5, leading=15, wordWrap="CJK"),
        name=ParagraphStyle("n", fontName=font, fontSize=14, leading=20, wordWrap="CJK"),
        sender=ParagraphStyle("s", fontName=font, fontSize=9.5, leading=13, alignment=2),
    )


def _body(text: str, styles: _Styles) -> list[Flowable]:
    flowables: list[Flowable] = []
    for line in text.splitlines():
        if not line.strip():
            flowables.append(Spacer(1, 3 * mm))
        elif line.startswith("# "):
            flowables.append(Paragraph(escape(line[2:].strip()), styles.title))
        else:
            flowables.append(Paragraph(escape(line), styles.body))
    return flowables


def _draw_address(
    canvas: Canvas, context: dict[str, Any], box: LettersSettings, styles: _Styles
) -> None:
    _, height = A4
    frame = Frame(
        box.address_left_mm * mm,
        height - (box.address_top_mm + box.address_height_mm) * mm,
        box.address_width_mm * mm,
        box.address_height_mm * mm,
        leftPadding=2 * mm, topPadding=2 * mm, showBoundary=0,
    )  # fmt: skip
    lines = [
        Paragraph(escape(f"〒{context['postal_code']}"), styles.address),
        Paragraph(escape(context["address"]), styles.address),
        Spacer(1, 2 * mm),
        Paragraph(escape(f"{context['name']} 様"), styles.name),
    ]
    frame.addFromList(lines, canvas)


def _draw_sender(canvas: Canvas, context: dict[str, Any], styles: _Styles) -> None:
    width, height = A4
    frame = Frame(120 * mm, height - 60 * mm, width - 135 * mm, 45 * mm, showBoundary=0)
    text = [
        Paragraph(escape(context["issued_on"]), styles.sender),
        Paragraph(escape(f"{context['municipality']} {context['section']}"), styles.sender),
        Paragraph(escape(f"電話 {context['callback_number']}"), styles.sender),
    ]
    frame.addFromList(text, canvas)


def _draw_letter(
    canvas: Canvas, context: dict[str, Any], text: str, box: LettersSettings, styles: _Styles
) -> int:
    """One letter from a fresh page; returns the pages it took."""
    width, height = A4
    _draw_address(canvas, context, box, styles)
    _draw_sender(canvas, context, styles)
    flowables = _body(text, styles)
    pages = 0
    top = height - 105 * mm  # below the first fold: the window shows only the address
    while True:
        frame = Frame(20 * mm, 18 * mm, width - 40 * mm, top - 18 * mm, showBoundary=0)
        frame.addFromList(flowables, canvas)
        canvas.showPage()
        pages += 1
        if not flowables:
            return pages
        canvas.setFont(styles.body.fontName, 10)
        top = height - 20 * mm


@dataclass(frozen=True)
class LetterJob:
    keyring: KeyRing
    municipality: MunicipalitySettings
    letters: LettersSettings
    font: Path
    var_dir: Path

    @classmethod
    def from_settings(cls, settings: Settings, keyring: KeyRing) -> LetterJob:
        """The print job as settings describe it (the Japanese font is looked up now)."""
        return cls(
            keyring=keyring,
            municipality=settings.municipality,
            letters=settings.letters,
            font=find_japanese_font(settings.reports.font_path, settings.reports.font_name),
            var_dir=settings.var_dir,
        )


def _open_campaign(session: Session, campaign_id: int) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"campaign {campaign_id} does not exist")
    if campaign.status is CampaignStatus.WIPED or campaign.wrapped_data_key is None:
        raise Conflict(f"campaign {campaign_id} is wiped: no letters can be printed")
    return campaign


def _render(
    job: LetterJob, contexts: Iterator[dict[str, Any]], template: Template
) -> tuple[bytes, int, int]:
    buffer = io.BytesIO()
    font = register_font(job.font)
    styles = _styles(font)
    canvas = Canvas(buffer, pagesize=A4, pageCompression=1)
    canvas.setTitle("催告書")
    letters = pages = 0
    for context in contexts:
        pages += _draw_letter(canvas, context, template.render(**context), job.letters, styles)
        letters += 1
    canvas.save()
    return buffer.getvalue(), letters, pages


def _record_letters(
    session: Session, campaign_id: int, persons: list[Person], now: datetime
) -> None:
    stamp = now.strftime("%Y%m%dT%H%M%S")
    kinds: Counter[str] = Counter()
    planned = _planned_letters(session, campaign_id)
    for person in persons:
        attempt = planned.get(person.id)
        if attempt is None:
            attempt = Attempt(
                campaign_id=campaign_id, person_id=person.id, channel=Channel.LETTER,
                scheduled_at=now, idempotency_key=f"letter:{campaign_id}:{person.id}:{stamp}",
            )  # fmt: skip
            session.add(attempt)
        attempt.status, attempt.outcome_code = AttemptStatus.COMPLETED, OUTCOME
        attempt.started_at = attempt.ended_at = now
        session.flush()
        aggregates.record_attempt_result(session, attempt)
        kinds.update({r.kind for r in person.receivables})
    aggregates.record_letters_printed(
        session, campaign_id=campaign_id, at=now, kinds=kinds, letters=len(persons)
    )


def _planned_letters(session: Session, campaign_id: int) -> dict[int, Attempt]:
    """Letter attempts the planner scheduled and nobody printed yet, by person."""
    rows = session.scalars(
        select(Attempt).where(
            Attempt.campaign_id == campaign_id,
            Attempt.channel == Channel.LETTER,
            Attempt.status == AttemptStatus.SCHEDULED,
        )
    )
    return {a.person_id: a for a in rows if a.person_id is not None}


def _write_files(
    job: LetterJob, campaign_id: int, pdf: bytes, letters: int, pages: int, now: datetime
) -> tuple[Path, Path, str]:
    folder = job.var_dir / "letters" / f"campaign-{campaign_id}"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"letters-{now:%Y%m%dT%H%M%S}"
    pdf_path, manifest_path = folder / f"{stem}.pdf", folder / f"{stem}.manifest.json"
    sha = hashlib.sha256(pdf).hexdigest()
    pdf_path.write_bytes(pdf)
    manifest = {
        "campaign_id": campaign_id,
        "file": pdf_path.name,
        "letters": letters,
        "pages": pages,
        "sha256": sha,
        "template": job.letters.template,
        "paper": "A4 三つ折り (長3窓付封筒)",
        "created_at": now.isoformat(timespec="seconds"),
    }
    manifest_path.write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
    return pdf_path, manifest_path, sha


def print_letters(
    database: Database,
    job: LetterJob,
    campaign_id: int,
    *,
    follow_up: bool = False,
    actor: str = "cli",
    now: datetime | None = None,
) -> LetterBatch:
    """Render, record and file one print run of the campaign's letters (one transaction)."""
    when = now or utcnow()
    template, wants_amounts = load_template(job.letters.template)
    with database.unit_of_work() as session:
        campaign = _open_campaign(session, campaign_id)
        assert campaign.wrapped_data_key is not None
        cipher = job.keyring.cipher(campaign.wrapped_data_key, campaign.id)
        persons = select_recipients(session, campaign_id, follow_up=follow_up)
        if not persons:
            return LetterBatch(campaign_id, 0, 0, None, None, "")
        today = aggregates.local_day(when)
        contexts = (_context(p, cipher, job.municipality, today, wants_amounts) for p in persons)
        pdf, letters, pages = _render(job, contexts, template)
        _record_letters(session, campaign_id, persons, when)
        pdf_path, manifest, sha = _write_files(job, campaign_id, pdf, letters, pages, when)
        detail = {"letters": letters, "pages": pages, "follow_up": follow_up}
        audit.record(
            session, actor=actor, action="letters.printed", object_type="campaign",
            object_id=campaign_id, detail=detail | {"amounts": wants_amounts},
        )  # fmt: skip
    return LetterBatch(campaign_id, letters, pages, pdf_path, manifest, sha)
