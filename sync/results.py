"""Results back to the arrears system (交渉経過): one line per target, or per attempt.

CP932 CSV by default; a results layout in ``config/layouts/NAME.toml`` (``kind = "results"``)
may rename the columns, change the encoding, delimiter and date formats. Every cell a
spreadsheet would evaluate (= + - @, tab, CR) is neutralized. The export is recorded
(``ResultsExport``: rows, SHA-256, who, when) and audited; a completed campaign moves to
exported, which the wipe waits for. Other statuses are recorded without a transition.
"""

from __future__ import annotations

import codecs
import csv
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kernel import audit
from kernel.calendar import TOKYO
from kernel.db import Database
from kernel.errors import ConfigurationError, Conflict, NotFound
from kernel.models import (
    Attempt,
    Campaign,
    CampaignStatus,
    HandOff,
    Person,
    ResultsExport,
    User,
    utcnow,
)
from kernel.pii import KeyRing, PiiCipher
from sync.layouts import layouts_dir
from sync.loader import CHUNK
from sync.readers import sha256_file
from sync.rejects import neutralize

NOTES_FIELD = "notes"  # the PiiCipher field Attempt.sealed_notes is sealed under
NOT_ATTEMPTED = "not_attempted"
RESULT_FIELDS: tuple[tuple[str, str], ...] = (
    ("atena_no", "宛名番号"),
    ("contact_at", "接触日時"),
    ("channel", "経路"),
    ("result_code", "結果コード"),
    ("promise_date", "約束日"),
    ("promise_amount", "約束金額"),
    ("handoff", "引継"),
    ("operator_id", "オペレータID"),
    ("notes", "メモ"),
)
ATTEMPT_FIELDS: tuple[tuple[str, str], ...] = (("attempt_no", "試行番号"),)


@dataclass(frozen=True)
class ResultsLayout:
    name: str = "standard"
    encoding: str = "cp932"
    delimiter: str = ","
    headers: Mapping[str, str] = field(default_factory=lambda: dict(RESULT_FIELDS + ATTEMPT_FIELDS))
    datetime_format: str = "%Y-%m-%d %H:%M"
    date_format: str = "%Y-%m-%d"
    handoff_values: tuple[str, str] = ("1", "0")


@dataclass(frozen=True)
class ResultsSummary:
    export_id: int
    campaign_id: int
    path: str
    rows: int
    file_sha256: str
    status_before: str
    status_after: str


def load_results_layout(name: str | None, directory: Path | None = None) -> ResultsLayout:
    if name is None or name == "standard":
        return ResultsLayout()
    path = Path(name) if name.endswith(".toml") else (directory or layouts_dir()) / f"{name}.toml"
    if not path.is_file():
        raise ConfigurationError(f"results layout {name!r} not found ({path})")
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    if data.get("kind") != "results":
        raise ConfigurationError(f'{path}: not a results layout (kind = "results")')
    known = dict(RESULT_FIELDS + ATTEMPT_FIELDS)
    columns = data.get("columns", {})
    unknown = sorted(set(columns) - set(known))
    if unknown:
        raise ConfigurationError(f"{path}: columns: unknown result fields {unknown}")
    try:
        encoding = codecs.lookup(str(data.get("encoding", "cp932"))).name
    except LookupError:
        raise ConfigurationError(f"{path}: unknown encoding {data.get('encoding')!r}") from None
    return ResultsLayout(
        name=str(data.get("name", path.stem)),
        encoding=encoding,
        delimiter="\t" if data.get("format") == "tsv" else ",",
        headers=known | {key: str(value) for key, value in columns.items()},
        datetime_format=str(data.get("datetime_format", "%Y-%m-%d %H:%M")),
        date_format=str(data.get("date_format", "%Y-%m-%d")),
        handoff_values=(str(data.get("handoff_yes", "1")), str(data.get("handoff_no", "0"))),
    )


def export_results(
    database: Database,
    keyring: KeyRing,
    campaign_id: int,
    out: Path,
    *,
    layout: ResultsLayout | None = None,
    per_attempt: bool = False,
    actor: str = "cli",
) -> ResultsSummary:
    """Write the results file and record the export, in one transaction."""
    chosen = layout or ResultsLayout()
    with database.unit_of_work() as session:
        campaign = session.scalars(
            select(Campaign).where(Campaign.id == campaign_id).with_for_update()
        ).first()
        if campaign is None:
            raise NotFound(f"campaign {campaign_id} does not exist")
        if campaign.status is CampaignStatus.WIPED or campaign.wrapped_data_key is None:
            raise Conflict(f"campaign {campaign_id} is wiped; its results can no longer be read")
        cipher = keyring.cipher(campaign.wrapped_data_key, campaign.id)
        rows = _write(
            out, _lines(session, campaign.id, cipher, chosen, per_attempt), chosen, per_attempt
        )
        return _record(session, campaign, out, rows, per_attempt, actor)


def _record(
    session: Session, campaign: Campaign, out: Path, rows: int, per_attempt: bool, actor: str
) -> ResultsSummary:
    sha = sha256_file(out)
    export = ResultsExport(
        campaign_id=campaign.id, row_count=rows, file_sha256=sha, exported_by=actor[:64]
    )
    session.add(export)
    session.flush()
    before = campaign.status
    audit.record(
        session,
        actor=actor,
        action="results.exported",
        object_type="campaign",
        object_id=campaign.id,
        detail={"export_id": export.id, "rows": rows, "per_attempt": per_attempt},
    )
    if before is CampaignStatus.COMPLETED:
        campaign.status, campaign.exported_at = CampaignStatus.EXPORTED, utcnow()
        audit.record(
            session,
            actor=actor,
            action="campaign.exported",
            object_type="campaign",
            object_id=campaign.id,
            detail={"from": before.value, "to": CampaignStatus.EXPORTED.value},
        )
    return ResultsSummary(
        export.id, campaign.id, str(out), rows, sha, before.value, campaign.status.value
    )


def _write(
    out: Path, lines: Iterator[dict[str, str]], layout: ResultsLayout, per_attempt: bool
) -> int:
    keys = [key for key, _ in RESULT_FIELDS] + (["attempt_no"] if per_attempt else [])
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(out.name + ".part")
    count = 0
    try:
        with temporary.open("w", encoding=layout.encoding, errors="replace", newline="") as stream:
            writer = csv.writer(stream, delimiter=layout.delimiter, lineterminator="\r\n")
            writer.writerow([neutralize(layout.headers[key]) for key in keys])
            for line in lines:
                writer.writerow([neutralize(line.get(key, "")) for key in keys])
                count += 1
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    temporary.replace(out)
    return count


def _lines(
    session: Session, campaign_id: int, cipher: PiiCipher, layout: ResultsLayout, per_attempt: bool
) -> Iterator[dict[str, str]]:
    users = dict(session.execute(select(User.id, User.username)).tuples().all())
    handoffs = set(
        session.scalars(select(HandOff.person_id).where(HandOff.campaign_id == campaign_id))
    )
    formatter = _Formatter(layout, cipher, users)
    last_id = 0
    while True:
        persons = session.execute(
            select(Person.id, Person.sealed_pii, Person.channel)
            .where(Person.campaign_id == campaign_id, Person.id > last_id)
            .order_by(Person.id)
            .limit(CHUNK)
        ).all()
        if not persons:
            return
        last_id = persons[-1].id
        attempts = _attempts_by_person(session, [p.id for p in persons])
        for person in persons:
            atena = str(cipher.open_record(person.sealed_pii, "pii").get("atena_no", ""))
            base = {"atena_no": atena, "channel": person.channel.value}
            base["handoff"] = layout.handoff_values[0 if person.id in handoffs else 1]
            history = attempts.get(person.id, [])
            if per_attempt and history:
                yield from (base | formatter.attempt(a, [a]) for a in history)
            else:
                yield base | formatter.summary(history)


def _attempts_by_person(session: Session, person_ids: Sequence[int]) -> dict[int, list[Attempt]]:
    grouped: dict[int, list[Attempt]] = {}
    query = (
        select(Attempt)
        .where(Attempt.person_id.in_(person_ids))
        .order_by(Attempt.person_id, Attempt.sequence_no, Attempt.id)
    )
    for attempt in session.scalars(query):
        if attempt.person_id is not None:
            grouped.setdefault(attempt.person_id, []).append(attempt)
    for history in grouped.values():
        history.sort(key=lambda a: (a.started_at or a.scheduled_at, a.id))
    return grouped


@dataclass(frozen=True)
class _Formatter:
    layout: ResultsLayout
    cipher: PiiCipher
    users: Mapping[int, str]

    def summary(self, history: Sequence[Attempt]) -> dict[str, str]:
        """The latest attempt with an outcome speaks for the target; promise, operator and
        notes come from the latest attempt that has them."""
        if not history:
            return {"result_code": NOT_ATTEMPTED}
        decided = [a for a in history if a.outcome_code]
        return self.attempt(decided[-1] if decided else history[-1], history)

    def attempt(self, chosen: Attempt, history: Sequence[Attempt]) -> dict[str, str]:
        promise = next((a for a in reversed(history) if a.promise_date), None)
        operator = next((a for a in reversed(history) if a.operator_id), None)
        noted = next((a for a in reversed(history) if a.sealed_notes), None)
        contact = chosen.answered_at or chosen.started_at
        return {
            "contact_at": self._time(contact),
            "channel": chosen.channel.value,
            "result_code": chosen.outcome_code or chosen.status.value,
            "promise_date": self._date(promise.promise_date if promise else None),
            "promise_amount": _text(promise.promise_amount_yen if promise else None),
            "operator_id": self.users.get(operator.operator_id, "")
            if operator and operator.operator_id
            else "",
            "notes": self._notes(noted.sealed_notes if noted else None),
            "attempt_no": str(chosen.sequence_no),
        }

    def _time(self, value: datetime | None) -> str:
        return value.astimezone(TOKYO).strftime(self.layout.datetime_format) if value else ""

    def _date(self, value: date | None) -> str:
        return value.strftime(self.layout.date_format) if value else ""

    def _notes(self, sealed: bytes | None) -> str:
        if not sealed:
            return ""
        text = self.cipher.open_text(sealed, NOTES_FIELD)
        return " ".join(text.replace("\r", "\n").split("\n")).strip()


def _text(value: Any) -> str:
    return "" if value is None else str(value)
