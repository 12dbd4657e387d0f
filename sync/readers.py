"""Streaming readers (CSV/TSV, fixed-width, SQL) yielding one :class:`RawRecord` at a time.

A record carries its line number (SQL: row ordinal), its cells as in the source (for the
rejects file) and the raw text of each known field. Problems a reader sees itself (bad bytes,
broken quoting, wrong column count, short record) travel with the record as ``problem``: the
row is rejected and counted, the import goes on. Sources can be iterated again (the rejects
file is a second pass) and expose ``position``/``total`` for a progress bar.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import operator
import re
import sqlite3
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import BinaryIO, Protocol

from sqlalchemy import Engine, TextClause, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from kernel.errors import InvalidInput
from sync.layouts import FIELD_KEYS, REQUIRED_FIELDS, STANDARD_HEADERS, Layout

SAMPLE_BYTES = 1 << 20
_IDENTIFIER = re.compile(r"[^\W\d]\w{0,62}")
CP932 = "cp932"
_UNLIKELY = re.compile("[\x80-\x9f\ue000-\uf8ff]")
_OTHER_ENCODING = {CP932: "utf-8", "utf-8": CP932, "utf-8-sig": CP932}
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


@dataclass(frozen=True, slots=True)
class RawRecord:
    line_no: int
    cells: tuple[str, ...]
    values: dict[str, str]
    problem: str | None = None
    detail: str = ""
    line_end: int = 0


class Source(Protocol):
    kind: str
    name: str
    encoding: str
    header: tuple[str, ...]
    unknown_columns: tuple[str, ...]
    blank_records: int
    position: int
    total: int

    def records(self) -> Iterator[RawRecord]: ...


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(SAMPLE_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def detect_encoding(path: Path, declared: str | None) -> str:
    """A byte-order mark wins; then the layout's encoding; then UTF-8 if the first MiB is valid
    UTF-8 with some non-ASCII text, UTF-16 if it looks like it; CP932 otherwise."""
    with path.open("rb") as handle:
        sample = handle.read(SAMPLE_BYTES)
    for bom, name in _BOMS:
        if sample.startswith(bom):
            return name
    if declared:
        return declared
    if sample.count(b"\x00") > len(sample) // 4:
        odd_nuls = sample[1::2].count(b"\x00")
        return "utf-16-le" if odd_nuls > len(sample) // 4 else "utf-16-be"
    return "utf-8" if _mostly_utf8(sample, complete=len(sample) < SAMPLE_BYTES) else CP932


def _mostly_utf8(sample: bytes, *, complete: bool) -> bool:
    """UTF-8 when most lines with non-ASCII bytes are valid UTF-8 (a mixed file keeps the
    encoding of its majority, and its foreign lines are rejected one by one)."""
    lines = sample.splitlines()
    if not complete and len(lines) > 1:
        lines = lines[:-1]  # the sample may end inside a character
    valid = [_decodes(line, "utf-8") for line in lines if not line.isascii()]
    return sum(valid) > len(valid) - sum(valid)


def is_wide_encoding(encoding: str) -> bool:
    return codecs.lookup(encoding).name.startswith("utf-16")


def decode_line(raw: bytes, encoding: str) -> tuple[str, str | None]:
    """Decode one physical line; the problem code when bytes do not fit the encoding.

    A line that reads cleanly as the other usual encoding (UTF-8 in a CP932 file, or CP932
    in a UTF-8 file) was written in it: ``encoding_mismatch``. A CP932 line that is valid
    UTF-8 with non-ASCII text would decode to mojibake, so it is flagged too, not loaded.
    """
    other = _OTHER_ENCODING.get(encoding)
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        problem = "encoding_mismatch" if other and _decodes(raw, other) else "encoding_error"
        return raw.decode(encoding, errors="replace"), problem
    if encoding == CP932 and not raw.isascii() and _decodes(raw, "utf-8"):
        return text, "encoding_mismatch"
    return text, None


def _decodes(raw: bytes, encoding: str) -> bool:
    """Whether the bytes read as text in ``encoding`` (no C1 controls, no private use area)."""
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        return False
    return not _UNLIKELY.search(text)


@dataclass
class _LineFeed:
    """Decoded physical lines of a byte stream, remembering which ones had bad bytes."""

    handle: BinaryIO
    encoding: str
    bad: dict[int, str] = field(default_factory=dict)
    position: int = 0
    end: int | None = None  # stop after the line that reaches this byte offset

    def __iter__(self) -> Iterator[str]:
        if is_wide_encoding(self.encoding):
            yield from self._wide_lines()
            return
        encoding = self.encoding
        cp932 = encoding == CP932
        for number, raw in enumerate(self.handle, start=1):
            self.position += len(raw)
            try:  # decode_line, inlined for the clean lines that make up nearly every file
                text = raw.decode(encoding)
            except UnicodeDecodeError:
                text, problem = decode_line(raw, encoding)
                self.bad[number] = problem or "encoding_error"
                yield text
                continue
            if cp932 and not raw.isascii() and _decodes(raw, "utf-8"):
                self.bad[number] = "encoding_mismatch"
            yield text
            if self.end is not None and self.position >= self.end:
                return

    def _wide_lines(self) -> Iterator[str]:
        text = io.TextIOWrapper(self.handle, encoding=self.encoding, errors="replace", newline="")
        for number, line in enumerate(text, start=1):
            self.position += 2 * len(line)
            if "\ufffd" in line:
                self.bad[number] = "encoding_error"
            yield line

    def problem_between(self, first: int, last: int) -> str | None:
        if not self.bad:
            return None
        found = (self.bad[n] for n in range(first, last + 1) if n in self.bad)
        return next(found, None)


def map_header(
    cells: list[str], layout: Layout, where: str, *, english_keys: bool = False
) -> tuple[dict[int, str], list[str]]:
    """Column positions of known fields and the unknown columns; refuses missing required or
    duplicated headers with a message naming them. SQL columns may also use the English keys."""
    positions: dict[int, str] = {}
    unknown: list[str] = []
    seen: dict[str, str] = {}
    for index, cell in enumerate(cells):
        key = layout.key_for(cell)
        if key is None and english_keys and cell.strip().lower() in FIELD_KEYS:
            key = cell.strip().lower()
        if key is None:
            unknown.append(cell.strip() or f"(列{index + 1})")
        elif key in seen:
            raise InvalidInput(
                f"{where}: 列「{cell.strip()}」が重複しています (「{seen[key]}」と同じ項目)"
            )
        else:
            seen[key] = cell.strip()
            positions[index] = key
    missing = [layout.label(key) for key in REQUIRED_FIELDS if key not in seen]
    if missing:
        raise InvalidInput(f"{where}: 必須の列がありません: {'、'.join(missing)}")
    return positions, unknown


class CsvSource:
    """A CSV or TSV file with a header row."""

    kind = "csv"

    def __init__(self, path: Path, layout: Layout) -> None:
        self.path, self.layout, self.name = path, layout, path.name
        self.total = path.stat().st_size
        if self.total == 0:
            raise InvalidInput(f"{path.name}: ファイルが空です (0バイト、見出し行がありません)")
        self.encoding = detect_encoding(path, layout.encoding)
        self.position = 0
        self.blank_records = 0
        self.delimiter = self._delimiter()
        self.kind = "tsv" if self.delimiter == "\t" else "csv"
        cells = self._header_cells()
        self.positions, unknown = map_header(cells, layout, path.name)
        self.header = tuple(cells)
        self.unknown_columns = tuple(unknown)
        self._keys = tuple(self.positions.values())
        self._pick = operator.itemgetter(*self.positions) if len(self.positions) > 1 else None

    def _delimiter(self) -> str:
        if self.layout.format in ("csv", "tsv"):
            return "\t" if self.layout.format == "tsv" else ","
        with self.path.open("rb") as handle:
            first = next(iter(_LineFeed(handle, self.encoding)), "")
        return "\t" if first.count("\t") > first.count(",") else ","

    def _header_cells(self) -> list[str]:
        with self.path.open("rb") as handle:
            feed = _LineFeed(handle, self.encoding)
            reader = csv.reader(feed, delimiter=self.delimiter, strict=True)
            try:
                for cells in reader:
                    if any(cell.strip() for cell in cells):
                        if feed.problem_between(1, reader.line_num):
                            raise InvalidInput(
                                f"{self.name}: 見出し行が文字コード {self.encoding} で読めません"
                            )
                        return [cell.replace("\ufeff", "") for cell in cells]
            except csv.Error as error:
                raise InvalidInput(f"{self.name}: 見出し行を読めません ({error})") from error
        raise InvalidInput(f"{self.name}: 見出し行がありません (空白行のみ)")

    def records(self) -> Iterator[RawRecord]:
        return self.records_in(0, None, 0)

    def records_in(self, start: int, end: int | None, lines_before: int) -> Iterator[RawRecord]:
        """The records from byte ``start`` (a record boundary, see ``sync.parallel``) up to
        byte ``end``; line numbers count the ``lines_before`` physical lines before ``start``.
        The header row is skipped when reading from the beginning of the file."""
        self.blank_records = 0
        if start and is_wide_encoding(self.encoding):
            raise ValueError("UTF-16 files are read from the beginning only")
        with self.path.open("rb") as handle:
            handle.seek(start)
            feed = _LineFeed(handle, self.encoding, position=start, end=end)
            reader = csv.reader(feed, delimiter=self.delimiter, strict=True)
            header_done = start > 0
            while True:
                first = reader.line_num + 1
                try:
                    cells = next(reader)
                except StopIteration:
                    return
                except csv.Error as error:
                    self.position = feed.position
                    line_end = lines_before + reader.line_num
                    yield RawRecord(
                        lines_before + first, (), {}, "csv_syntax", str(error), line_end
                    )
                    continue
                self.position = feed.position
                if not "".join(cells).strip():  # every cell blank
                    self.blank_records += header_done
                    continue
                if not header_done:
                    header_done = True
                    continue
                yield self._record(first, reader.line_num, cells, feed, lines_before)

    def records_on_lines(self, lines: Collection[int]) -> Iterator[RawRecord]:
        """The records on the given physical lines, in file order, for a file whose every
        record is one physical line (the columnar first pass makes sure of that): only those
        lines are decoded and parsed, so writing a few rejects skips the rest of the file."""
        wanted = set(lines)
        last = max(wanted, default=0)
        with self.path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if number in wanted:
                    feed = _LineFeed(io.BytesIO(raw), self.encoding)
                    reader = csv.reader(feed, delimiter=self.delimiter, strict=True)
                    cells = next(reader, [])
                    yield self._record(1, 1, cells, feed, number - 1)
                if number >= last:
                    return

    def _record(
        self, start: int, end: int, cells: list[str], feed: _LineFeed, lines_before: int
    ) -> RawRecord:
        if self._pick is not None and len(cells) == len(self.header):
            values = dict(zip(self._keys, self._pick(cells), strict=True))
        else:
            values = {key: cells[i] for i, key in self.positions.items() if i < len(cells)}
        problem = feed.problem_between(start, end)
        detail = ""
        if problem is None and len(cells) != len(self.header):
            problem, detail = "column_count", f"{len(cells)}列 (見出しは{len(self.header)}列)"
        return RawRecord(
            lines_before + start, tuple(cells), values, problem, detail, lines_before + end
        )


class FixedWidthSource:
    """Fixed-width records; offsets and lengths are in bytes of the file's encoding."""

    kind = "fixed"

    def __init__(self, path: Path, layout: Layout) -> None:
        self.path, self.layout, self.name = path, layout, path.name
        self.total = path.stat().st_size
        if self.total == 0:
            raise InvalidInput(f"{path.name}: ファイルが空です (0バイト)")
        self.encoding = detect_encoding(path, layout.encoding or CP932)
        if is_wide_encoding(self.encoding):
            raise InvalidInput(f"{path.name}: 固定長ファイルはUTF-16に対応していません")
        self.position = 0
        self.blank_records = 0
        self.header = tuple(layout.label(f.key) for f in layout.fixed_fields)
        self.unknown_columns: tuple[str, ...] = ()
        self.width = max(f.offset + f.length for f in layout.fixed_fields)

    def _raw_records(self, handle: BinaryIO) -> Iterator[bytes]:
        size = self.layout.record_length
        return iter(handle) if size is None else iter(lambda: handle.read(size), b"")

    def records(self) -> Iterator[RawRecord]:
        self.blank_records = 0
        with self.path.open("rb") as handle:
            for number, raw in enumerate(self._raw_records(handle), start=1):
                self.position += len(raw)
                body = raw.rstrip(b"\r\n")
                if number <= self.layout.skip_records:
                    continue
                if not body.strip():
                    self.blank_records += 1
                    continue
                yield self._record(number, body)

    def _record(self, number: int, body: bytes) -> RawRecord:
        values: dict[str, str] = {}
        problem: str | None = None
        detail = ""
        for fixed in self.layout.fixed_fields:
            chunk = body[fixed.offset : fixed.offset + fixed.length]
            try:
                values[fixed.key] = chunk.decode(self.encoding).strip(" \u3000")
            except UnicodeDecodeError:
                values[fixed.key] = chunk.decode(self.encoding, errors="replace").strip()
                problem = problem or "encoding_error"
                detail = detail or STANDARD_HEADERS.get(fixed.key, fixed.key)
        if problem is None and len(body) < self.width:
            problem, detail = "record_too_short", f"{len(body)}バイト (必要{self.width}バイト)"
        cells = tuple(values[f.key] for f in self.layout.fixed_fields)
        return RawRecord(number, cells, values, problem, detail, number)


class SqlSource:
    """A table/view name (``schema.name`` allowed) or ``SELECT``/``WITH`` query of a read-only
    SQLAlchemy URL, streamed. ``sha256`` digests every row read: the same data twice is
    recognised as already imported."""

    kind = "sql"
    encoding = "utf-8"
    total = 0

    def __init__(self, url: str, target: str, layout: Layout) -> None:
        self.url, self.target, self.layout = url, target, layout
        self.name = "sql:query" if _is_query(target) else f"sql:{target}"
        self.position = 0
        self.blank_records = 0
        self.sha256 = ""
        self.header: tuple[str, ...] = ()
        self.unknown_columns: tuple[str, ...] = ()

    def records(self) -> Iterator[RawRecord]:
        engine = _read_only_engine(self.url)
        digest = hashlib.sha256()
        try:
            with engine.connect() as connection:
                result = connection.execution_options(
                    stream_results=True, yield_per=1000, **_read_only_options(engine)
                ).execute(_select(engine, self.target))
                columns = [str(name) for name in result.keys()]
                positions, unknown = map_header(columns, self.layout, self.name, english_keys=True)
                self.header, self.unknown_columns = tuple(columns), tuple(unknown)
                for number, row in enumerate(result, start=1):
                    cells = tuple(_cell_text(value) for value in row)
                    digest.update(("\x1f".join(cells) + "\x1e").encode())
                    self.position = number
                    values = {key: cells[i] for i, key in positions.items()}
                    yield RawRecord(number, cells, values, None, "", number)
        except SQLAlchemyError as error:
            raise InvalidInput(f"{self.name}: SQLの読み込みに失敗しました ({error})") from error
        finally:
            engine.dispose()
        self.sha256 = digest.hexdigest()


def _is_query(target: str) -> bool:
    words = target.split(None, 1)
    return bool(words) and words[0].upper() in ("SELECT", "WITH")


def _cell_text(value: object) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return "" if value is None else str(value)


def _read_only_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(str(parsed.database)).resolve()
        if not path.is_file():
            raise InvalidInput(f"SQLソースのファイルがありません: {path.name}")
        uri = f"file:{path}?mode=ro"
        return create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True))
    return create_engine(url)


def _read_only_options(engine: Engine) -> dict[str, bool]:
    return {"postgresql_readonly": True} if engine.dialect.name == "postgresql" else {}


def _select(engine: Engine, target: str) -> TextClause:
    if _is_query(target):
        return text(target)
    parts = target.strip().split(".")
    if not all(_IDENTIFIER.fullmatch(part) for part in parts):
        raise InvalidInput(f"SQLソースの表・ビュー名が不正です: {target!r}")
    quote = engine.dialect.identifier_preparer.quote
    return text(f"SELECT * FROM {'.'.join(quote(part) for part in parts)}")
