"""Reading and parsing a large CSV/TSV export on several cores.

The file is cut at record boundaries into chunks of about :data:`CHUNK_BYTES`; worker
processes read and parse the chunks (``CsvSource.records_in`` and
:class:`~sync.cached_rows.CachedRowParser`) and send back what the importer's first pass
needs, chunk by chunk, in file order. The importer merges them exactly as it merges a
sequential read, so results are the same.

A boundary is the start of a line where the number of ``"`` bytes before it is even (in
CP932 and UTF-8 neither ``"`` nor a line feed occurs inside a multi-byte character). A
stray quote inside an unquoted field can fool that count; the reader then finds a chunk
that does not end cleanly on its boundary (a broken record at its end, or no header in
the first chunk) and the importer reads the file sequentially instead.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from multiprocessing import get_context
from pathlib import Path

from kernel.settings import SharingPolicy
from sync.cached_rows import CachedRowParser
from sync.layouts import Layout
from sync.readers import CsvSource, RawRecord, is_wide_encoding
from sync.rows import ParsedRow, Rejection, RowContext, policy_allows, rejected_person_key

CHUNK_BYTES = 4 << 20
#: Files smaller than this are read in one process (starting workers costs about a second).
PARALLEL_MIN_BYTES = 16 << 20
WORKERS = 2


@dataclass(frozen=True)
class ChunkTask:
    path: Path
    layout: Layout
    as_of: date
    phone_max_age_years: int
    sharing_policy: SharingPolicy
    start: int
    end: int | None
    lines_before: int


@dataclass
class ChunkResult:
    """One chunk's first pass: per record (line number, parsed row or rejections, the
    protected person key of a rejected row flagged 支援措置)."""

    rows_read: int = 0
    excluded_by_policy: int = 0
    blank_records: int = 0
    entries: list[tuple[int, ParsedRow | list[Rejection], str | None]] = field(default_factory=list)
    clean_end: bool = True
    end: int = 0


def worth_parallel(source: object) -> bool:
    if not isinstance(source, CsvSource) or is_wide_encoding(source.encoding):
        return False
    return source.total >= PARALLEL_MIN_BYTES and (os.cpu_count() or 1) >= 2


def record_boundaries(path: Path, chunk_bytes: int | None = None) -> list[tuple[int, int]]:
    """(byte offset, physical lines before it) of each chunk start, the first being (0, 0)."""
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    boundaries = [(0, 0)]
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        counted = quotes = lines = 0
        target = chunk_bytes
        while target < len(data):
            newline = data.find(b"\n", target)
            while newline != -1:
                piece = data[counted : newline + 1]
                quotes, lines = quotes + piece.count(b'"'), lines + piece.count(b"\n")
                counted = newline + 1
                if quotes % 2 == 0:
                    break
                newline = data.find(b"\n", counted)
            if newline == -1 or counted >= len(data):
                break
            boundaries.append((counted, lines))
            target = counted + chunk_bytes
    return boundaries


def tasks_for(
    path: Path, layout: Layout, as_of: date, phone_max_age_years: int, policy: SharingPolicy
) -> list[ChunkTask]:
    starts = record_boundaries(path)
    ends: list[int | None] = [offset for offset, _ in starts[1:]]
    ends.append(None)
    return [
        ChunkTask(path, layout, as_of, phone_max_age_years, policy, start, end, lines)
        for (start, lines), end in zip(starts, ends, strict=True)
    ]


_parsers: dict[tuple[str, date, int], CachedRowParser] = {}


def _parser(task: ChunkTask) -> CachedRowParser:
    """One parser (and its caches) per worker process and import."""
    key = (task.layout.name, task.as_of, task.phone_max_age_years)
    if key not in _parsers:
        _parsers.clear()
        context = RowContext(task.layout, task.as_of, task.phone_max_age_years)
        _parsers[key] = CachedRowParser(context)
    return _parsers[key]


def collect_chunk(task: ChunkTask) -> ChunkResult:
    """The first pass over one chunk (runs in a worker process)."""
    source = CsvSource(task.path, task.layout)
    parser = _parser(task)
    result = ChunkResult(end=task.end or source.total)
    last: RawRecord | None = None
    for record in source.records_in(task.start, task.end, task.lines_before):
        last = record
        result.rows_read += 1
        allowed = policy_allows(record, task.layout, task.sharing_policy)
        if record.problem is None and not allowed:
            result.excluded_by_policy += 1
            continue
        parsed = parser.parse(record)
        protected = rejected_person_key(record) if isinstance(parsed, list) else None
        result.entries.append((record.line_no, parsed, protected))
    result.blank_records = source.blank_records
    if task.end is not None:
        result.clean_end = source.position == task.end and (
            last is None or last.problem != "csv_syntax"
        )
    if task.start == 0 and last is None and task.end is not None:
        result.clean_end = False  # no header or record in the first chunk
    return result


def collect_chunks(tasks: list[ChunkTask], workers: int = WORKERS) -> Iterator[ChunkResult]:
    """Chunk results in file order, with at most ``workers + 1`` chunks in flight."""
    context = get_context("spawn")  # no fork of a process holding database connections
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending: list[Future[ChunkResult]] = []
        queued = iter(tasks)
        for task in queued:
            pending.append(pool.submit(collect_chunk, task))
            if len(pending) > workers:
                break
        while pending:
            result = pending.pop(0).result()
            following = next(queued, None)
            if following is not None:
                pending.append(pool.submit(collect_chunk, following))
            yield result
