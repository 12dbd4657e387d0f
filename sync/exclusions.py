"""The 除外者リスト (R-6): the arrears system's latest list of persons never to contact.

Loading a list replaces the active one in one transaction. Only keyed digests of the
宛名番号 (purpose ``person``, the digest ``Person.ref_digest`` holds) and a short reason are
stored. The list's as-of time comes from ``--as-of`` or a header comment such as
``# 基準日時: 2026-11-24T06:00+09:00``; the dialer refuses to contact anyone when the active
list is older than ``exclusion_max_age_hours``. A list is a safety control, so it is loaded
whole or not at all: one unreadable 宛名番号 refuses the file, naming the line.
"""

from __future__ import annotations

import csv
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from kernel import audit
from kernel.calendar import TOKYO
from kernel.db import Database
from kernel.errors import InvalidInput
from kernel.models import ExclusionEntry, ExclusionList, utcnow
from kernel.pii import KeyRing
from sync import normalize
from sync.layouts import header_key
from sync.loader import chunked, person_digest
from sync.readers import detect_encoding, sha256_file

ID_HEADERS = frozenset({"宛名番号"})
REASON_HEADERS = frozenset({"理由", "除外理由"})
DEFAULT_REASON = "除外"
_AS_OF_COMMENT = re.compile(r"(?:基準日時|基準日|as[_ ]?of|作成日時)\s*[:=]\s*(\S+)", re.IGNORECASE)
FUTURE_TOLERANCE = timedelta(minutes=5)


@dataclass(frozen=True)
class ExclusionSummary:
    list_id: int
    entries: int
    duplicates: int
    as_of: datetime
    file_sha256: str
    replaced: int


def parse_as_of(text: str) -> datetime:
    """An ISO date or date-time; without a zone it is Japan time; a date means 00:00."""
    value = normalize.normalize_text(text).replace(" ", "T")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"as-of「{text}」を日時として解釈できません(例: 2026-11-24T06:00+09:00)"
        ) from None
    if len(value) == 10:
        parsed = datetime.combine(parsed.date(), time(0, 0))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=TOKYO)


@dataclass
class _Entries:
    digests: dict[str, str]
    duplicates: int
    comment_as_of: datetime | None


def _lines(path: Path) -> Iterator[str]:
    encoding = detect_encoding(path, None)
    try:
        with path.open(encoding=encoding, errors="strict", newline="") as handle:
            yield from handle
    except UnicodeDecodeError as error:
        raise InvalidInput(f"{path.name}: 文字コード({encoding})として読めません") from error


def read_list(path: Path, keyring: KeyRing) -> _Entries:
    """Digests and reasons of the list, refusing the whole file on the first bad line."""
    lines = _lines(path)
    header_line, comment_as_of = _preamble(lines)
    if not header_line:
        raise InvalidInput(f"{path.name}: 見出し行(宛名番号)がありません")
    reader = csv.reader(itertools.chain([header_line], lines))
    header = [header_key(cell) for cell in next(reader)]
    id_column = next((i for i, h in enumerate(header) if h in ID_HEADERS), None)
    if id_column is None:
        raise InvalidInput(f"{path.name}: 必須の列「宛名番号」がありません")
    reason_column = next((i for i, h in enumerate(header) if h in REASON_HEADERS), None)
    digests: dict[str, str] = {}
    duplicates = 0
    to_digest = person_digest(keyring)
    for cells in reader:
        if not any(cell.strip() for cell in cells):
            continue
        atena = _atena(cells, id_column, path, reader.line_num)
        reason = (
            cells[reason_column] if reason_column is not None and reason_column < len(cells) else ""
        )
        digest = to_digest(atena)
        duplicates += digest in digests
        digests.setdefault(digest, (normalize.normalize_text(reason) or DEFAULT_REASON)[:32])
    return _Entries(digests, duplicates, comment_as_of)


def _preamble(lines: Iterator[str]) -> tuple[str, datetime | None]:
    """The header line, and the as-of time from ``#`` comment lines before it."""
    as_of: datetime | None = None
    for line in lines:
        if line.lstrip().startswith("#"):
            found = _AS_OF_COMMENT.search(normalize.normalize_text(line))
            as_of = parse_as_of(found.group(1)) if found else as_of
        elif line.strip():
            return line, as_of
    return "", as_of


def _atena(cells: list[str], column: int, path: Path, line_no: int) -> str:
    try:
        return normalize.normalize_person_id(cells[column] if column < len(cells) else "")
    except normalize.NormalizationError as error:
        raise InvalidInput(f"{path.name} {line_no}行目: 宛名番号: {error.message_ja}") from error


def load_exclusions(
    database: Database,
    keyring: KeyRing,
    path: Path,
    *,
    as_of: datetime | None = None,
    actor: str = "cli",
) -> ExclusionSummary:
    """Replace the active exclusion list with the one in ``path`` (one transaction)."""
    if not path.is_file() or path.stat().st_size == 0:
        raise InvalidInput(f"{path}: 除外者リストが空か、存在しません")
    entries = read_list(path, keyring)
    effective = as_of or entries.comment_as_of
    if effective is None:
        raise InvalidInput(
            f"{path.name}: 基準日時がありません(--as-of か ヘッダ行の「# 基準日時: ...」)"
        )
    if effective.tzinfo is None:
        effective = effective.replace(tzinfo=TOKYO)
    if effective > utcnow() + FUTURE_TOLERANCE:
        raise InvalidInput(f"{path.name}: 基準日時 {effective.isoformat()} が未来です")
    sha = sha256_file(path)
    with database.unit_of_work() as session:
        return _replace(session, entries, effective, sha, actor)


def _replace(
    session: Session, entries: _Entries, as_of: datetime, sha: str, actor: str
) -> ExclusionSummary:
    replaced = session.execute(
        update(ExclusionList).where(ExclusionList.active.is_(True)).values(active=False)
    )
    listing = ExclusionList(
        as_of=as_of, entry_count=len(entries.digests), file_sha256=sha, active=True
    )
    session.add(listing)
    session.flush()
    rows = [
        {"list_id": listing.id, "ref_digest": digest, "reason": reason}
        for digest, reason in entries.digests.items()
    ]
    for chunk in chunked(rows):
        session.execute(insert(ExclusionEntry), chunk)
    count = int(getattr(replaced, "rowcount", 0) or 0)
    audit.record(
        session,
        actor=actor,
        action="sync.exclusions_replaced",
        object_type="exclusion_list",
        object_id=listing.id,
        detail={"entries": len(rows), "duplicates": entries.duplicates, "replaced": count},
    )
    return ExclusionSummary(listing.id, len(rows), entries.duplicates, as_of, sha, count)
