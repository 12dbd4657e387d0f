"""The rejects file: every rejected row, as it was, plus where and why, for staff to fix.

Written in a second pass over the source (the importer never holds raw lines), in the
source's encoding (SQL sources: UTF-8 with BOM), with the source's header and four columns
added at the end: line number, field, reason (Japanese) and stable code. Those columns are
unknown to every layout, so a corrected rejects file can be imported again as it is.

Cells that a spreadsheet would run as a formula (= + - @, tab, CR) are prefixed with ``'``;
the row parser removes that prefix again on re-import. Rows of persons under DV/stalker
support measures or on the exclusion list are written without their contents.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from sync.readers import RawRecord, Source
from sync.rows import FORMULA_PREFIXES, Rejection

REJECT_COLUMNS = ("取込エラー行", "取込エラー項目", "取込エラー理由", "取込エラーコード")
REDACTED_NOTE = "支援措置・除外対象のため内容を出力しません"
_DANGEROUS = (*FORMULA_PREFIXES, "\t", "\r")


def neutralize(cell: str) -> str:
    """Defuse CSV/formula injection: a cell a spreadsheet would evaluate gets a leading '."""
    return "'" + cell if cell.startswith(_DANGEROUS) else cell


def rejects_path_for(path: Path) -> Path:
    suffix = path.suffix.lower() if path.suffix.lower() in (".csv", ".tsv", ".txt") else ".csv"
    return path.with_name(f"{path.stem}.rejects{suffix}")


def _encoding(source: Source) -> str:
    return "utf-8-sig" if source.kind == "sql" else source.encoding


def _line_text(record: RawRecord) -> str:
    if record.line_end and record.line_end != record.line_no:
        return f"{record.line_no}-{record.line_end}"
    return str(record.line_no)


def reject_cells(
    record: RawRecord, reasons: Sequence[Rejection], width: int, redact: bool
) -> list[str]:
    cells = [""] * width if redact else [neutralize(cell) for cell in record.cells]
    cells = (cells + [""] * width)[: max(width, len(cells))]
    fields = "、".join(dict.fromkeys(r.field for r in reasons if r.field))
    if redact:
        messages = REDACTED_NOTE
    else:
        messages = " / ".join(r.message_ja for r in reasons)
    codes = "|".join(dict.fromkeys(r.code for r in reasons))
    return [*cells, _line_text(record), fields, neutralize(messages), codes]


def write_rejects(
    source: Source,
    rejections: Mapping[int, Sequence[Rejection]],
    path: Path,
    redact: Callable[[RawRecord], bool],
    records: Iterable[RawRecord] | None = None,
) -> int:
    """Write the rejected records; returns how many were written (all of them, always).
    ``records`` replaces a full pass over ``source`` (e.g. only the rejected lines)."""
    written = 0
    width = len(source.header)
    delimiter = "\t" if source.kind == "tsv" else ","
    temporary = path.with_name(path.name + ".part")
    try:
        with temporary.open("w", encoding=_encoding(source), errors="replace", newline="") as out:
            writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
            writer.writerow([*map(neutralize, source.header), *REJECT_COLUMNS])
            for record in source.records() if records is None else records:
                reasons = rejections.get(record.line_no)
                if reasons:
                    writer.writerow(reject_cells(record, reasons, width, redact(record)))
                    written += 1
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    temporary.replace(path)
    return written
