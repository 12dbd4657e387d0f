"""The import's first pass over a CSV/TSV file, a column at a time (CSV file ->
:class:`~sync.columnar_schema.ColumnarCollected`).

The row pipeline (:class:`~sync.readers.CsvSource`, :func:`~sync.rows.policy_allows`,
:class:`~sync.cached_rows.CachedRowParser`) is the reference: :func:`collect_columnar` returns
exactly what it collects, or None when it cannot be exact cheaply, and the importer then reads
the file row by row.

How: the file is read in blocks of whole lines (two blocks at a time on threads: Arrow's
kernels release the GIL). pyarrow parses a block into dictionary-encoded binary columns, one
row per physical line: an RE2 pass over the block first makes sure that holds (no quoted line
breaks, no blank lines, no carriage return inside a line, only well-formed quoting). Each
field's *distinct* cells are decoded (CP932 by Python's codec, UTF-8 checked) and decided by
:mod:`sync.column_rules` and :mod:`sync.phone_columns` (kernels for the common shapes, the
reference rule for the rest), then spread back over the rows (:mod:`sync.columnar_verdicts`).
A row that any field rejects, or whose line the row reader flags (UTF-8 text in a CP932
file), or that is blank, is handed whole to the reference (``parse_row``, which the cached
parser falls back to for such rows), so rejections are exactly the reference's. Bytes CP932
cannot decode, UTF-16, a header not on the first line and the cases above make it decline.
"""

from __future__ import annotations

import codecs
import csv
import logging
import re
from array import array
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from kernel.settings import SharingPolicy
from sync import readers
from sync.cached_rows import CachedRowParser
from sync.column_rules import CONTROL, Decline
from sync.columnar_schema import ROW_SCHEMA, ColumnarCollected, table_from_parsed
from sync.columnar_verdicts import Field, Verdicts
from sync.layouts import FIELD_KEYS, Layout
from sync.readers import CsvSource, RawRecord
from sync.rows import (
    ParsedRow,
    RowContext,
    parse_row,
    policy_allows,
    rejected_person_key,
)

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]
BLOCK_BYTES = 8 << 20
THREADS = 2
ENCODINGS = ("cp932", "utf-8", "utf-8-sig")
FIELD_LIMIT = 131_072  # csv.field_size_limit(): a longer cell is a csv_syntax problem
#: A UTF-8 multi-byte character as Python's decoder accepts it (RE2 reads binary as Latin-1).
_MULTIBYTE = (
    r"[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]"
    r"|[\xe1-\xec\xee\xef][\x80-\xbf]{2}|\xed[\x80-\x9f][\x80-\xbf]"
    r"|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}|\xf4[\x80-\x8f][\x80-\xbf]{2}"
)
_VALID = rf"(?:[\x00-\x09\x0b-\x7f]|{_MULTIBYTE})*"
#: Some line of a block is entirely valid UTF-8 with a non-ASCII character in it.
UTF8_LINE = rf"(?m)^{_VALID}(?:{_MULTIBYTE}){_VALID}$"


def collect_columnar(
    source: CsvSource,
    layout: Layout,
    as_of: date,
    phone_max_age_years: int,
    sharing_policy: SharingPolicy,
    progress: Progress | None = None,
) -> ColumnarCollected | None:
    """The first pass of ``source`` before merging, as the row pipeline collects it, or None
    when this file has to be read row by row."""
    if not isinstance(source, CsvSource):
        return None
    context = RowContext(layout, as_of, phone_max_age_years)
    reader = _Reader(source, context, sharing_policy, progress)
    try:
        return reader.collect()
    except Decline as error:
        log.info("sync: columnar first pass declined %s: %s", source.name, error)
    except (pa.ArrowException, UnicodeDecodeError, csv.Error) as error:
        # the kind only: these messages can quote the file's content
        log.info("sync: columnar first pass declined %s (%s)", source.name, type(error).__name__)
    return None


@dataclass
class _Block:
    """One block of whole lines: its bytes and the file line number of its first line."""

    data: bytes
    first_line: int
    end: int


@dataclass
class _Part:
    """What one block adds: its counts, rejections and accepted rows (``extra``: rows the
    reference accepted after a kernel doubted them)."""

    collected: ColumnarCollected
    extra: list[ParsedRow] = field(default_factory=list)


@dataclass
class _Reader:
    source: CsvSource
    context: RowContext
    policy: SharingPolicy
    progress: Progress | None
    parser: CachedRowParser = field(init=False)
    collected: ColumnarCollected = field(init=False)
    tables: list[pa.Table] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.parser = CachedRowParser(self.context)
        self.collected = ColumnarCollected(rows=ROW_SCHEMA.empty_table())
        self.collected.blank_records = 0

    # ------------------------------------------------------------------ blocks

    def collect(self) -> ColumnarCollected:
        if self.source.encoding not in ENCODINGS:
            raise Decline(f"encoding {self.source.encoding}")
        # Arrow kernels release the GIL: a second thread keeps the other core busy
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            pending: deque[tuple[_Block, Future[_Part]]] = deque()
            for block in self._blocks():
                pending.append((block, pool.submit(self._block, block)))
                if len(pending) > THREADS:
                    self._merge(*pending.popleft())
            while pending:
                self._merge(*pending.popleft())
        # one chunk per block: no copy of the whole table
        self.collected.rows = pa.concat_tables([ROW_SCHEMA.empty_table(), *self.tables])
        return self.collected

    def _merge(self, block: _Block, future: Future[_Part]) -> None:
        part = future.result()
        collected, found = self.collected, part.collected
        rows = found.rows
        if part.extra:  # rows the reference accepted after a kernel doubted them: in line order
            rows = pa.concat_tables([rows, table_from_parsed(part.extra)])
            rows = rows.take(pc.sort_indices(rows, [("line_no", "ascending")]))
        self.tables.append(rows)
        collected.rejections.update(found.rejections)
        collected.dv_ids.update(found.dv_ids)
        collected.rows_read += found.rows_read
        collected.excluded_by_policy += found.excluded_by_policy
        collected.blank_records += found.blank_records
        collected.field_issues.update(found.field_issues)
        if self.progress:
            self.progress(block.end, self.source.total)

    def _blocks(self) -> Iterator[_Block]:
        path: Path = self.source.path
        with path.open("rb") as handle:
            header = handle.readline()
            self._check_header(header)
            line, position = 2, len(header)
            while True:
                data = handle.read(BLOCK_BYTES)
                if not data:
                    return
                if not data.endswith(b"\n"):
                    data += handle.readline()
                position += len(data)
                yield _Block(data, line, position)
                line += data.count(b"\n")

    def _check_header(self, line: bytes) -> None:
        encoding = self.source.encoding
        text = line.decode(encoding)
        cells = next(csv.reader([text], delimiter=self.source.delimiter, strict=True), [])
        if [cell.replace("\ufeff", "") for cell in cells] != list(self.source.header):
            raise Decline("the header is not the first line")

    def _check_bytes(self, block: pa.Array) -> bool:
        """Decline what pyarrow would read otherwise than ``csv.reader`` over the file's
        lines: a carriage return inside a line, a blank line, irregular quoting. An RE2 pass:
        every line is cells (plain, or quoted with doubled quotes) between delimiters, at
        least one delimiter (a one-column header is declined), an optional CR. True when
        the block also has no control character (the usual case, then one pass is enough)."""
        if len(self.source.header) < 2:
            raise Decline("a single column")
        for excluded in (f"\\r\\n{CONTROL[1:-1]}", "\\r\\n"):
            if pc.match_substring_regex(block, self._lines_pattern(excluded))[0].as_py():
                return excluded != "\\r\\n"
        raise Decline("a carriage return inside a line, a blank line or odd quoting")

    def _lines_pattern(self, excluded: str) -> str:
        sep = re.escape(self.source.delimiter)
        cell = f'(?:[^"{sep}{excluded}]*|"(?:[^"{excluded}]|"")*")'
        line = f"{cell}(?:{sep}{cell})+\\r?"
        return f"^(?:{line}\\n)*(?:{line})?$"

    def _problem_lines(self, data: bytes, block: pa.Array) -> set[int]:
        """Row indices of the lines the row reader flags as written in UTF-8 (CP932 files)."""
        if self.source.encoding != readers.CP932:
            return set()
        if not pc.match_substring_regex(block, UTF8_LINE)[0].as_py():
            return set()
        found = set()
        for index, raw in enumerate(data.split(b"\n")):
            if readers.decode_line(raw + b"\n", readers.CP932)[1] is not None:
                found.add(index)
        return found

    def _read(self, block: _Block, width: int) -> pa.Table:
        names = [f"c{index}" for index in range(width)]
        options = pacsv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.dictionary(pa.int32(), pa.binary())),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
        return pacsv.read_csv(
            pa.py_buffer(block.data),
            read_options=pacsv.ReadOptions(column_names=names, use_threads=False),
            parse_options=pacsv.ParseOptions(
                delimiter=self.source.delimiter, newlines_in_values=False
            ),
            convert_options=options,
        )

    # ------------------------------------------------------------------ one block

    def _block(self, block: _Block) -> _Part:
        """One block's first pass (runs on a worker thread; shares only the caches)."""
        if self.source.encoding == "utf-8-sig" and (
            block.data.startswith(codecs.BOM_UTF8) or b"\n" + codecs.BOM_UTF8 in block.data
        ):
            raise Decline("a byte-order mark on a data line (the row reader drops it)")
        offsets = pa.py_buffer(array("i", [0, len(block.data)]).tobytes())
        whole = pa.BinaryArray.from_buffers(
            pa.binary(), 1, [None, offsets, pa.py_buffer(block.data)]
        )  # the block as one binary value, without a copy
        clean = self._check_bytes(whole) and b"'" not in block.data
        problems = self._problem_lines(block.data, whole)
        del whole
        table = self._read(block, len(self.source.header))
        lines = block.data.count(b"\n") + (not block.data.endswith(b"\n"))
        if table.num_rows != lines:
            raise Decline("not one record per line")
        columns = [column.combine_chunks() for column in table.columns]  # one dictionary each
        del table
        for column in columns:
            if (pc.max(pc.binary_length(column.dictionary)).as_py() or 0) > FIELD_LIMIT:
                raise Decline("a cell longer than csv.field_size_limit()")
        fields = self._fields(columns)
        verdicts = Verdicts.of(fields, self.parser, clean)
        slow = verdicts.rejected
        if problems:
            mask = pa.array([index in problems for index in range(lines)])
            slow = pc.or_(slow, mask)
        allowed = self._allowed(fields)
        fast = pc.and_not(allowed, slow)
        excluded = pc.sum(pc.and_not(pc.invert(allowed), slow)).as_py() or 0
        part = _Part(ColumnarCollected(rows=ROW_SCHEMA.empty_table()))
        part.collected.rows_read = (pc.sum(fast).as_py() or 0) + excluded
        part.collected.excluded_by_policy = excluded
        part.collected.rows = verdicts.rows(fast, block.first_line, part.collected.field_issues)
        self._slow_rows(part, columns, fields, slow, problems, block.first_line)
        del columns, fields, verdicts
        pa.default_memory_pool().release_unused()  # mimalloc: this thread's freed pages
        return part

    def _fields(self, columns: list[pa.DictionaryArray]) -> dict[str, Field]:
        fields: dict[str, Field] = {}
        for index, key in self.source.positions.items():
            text = decode(columns[index].dictionary, self.source.encoding)
            fields[key] = Field(columns[index].indices, text)
        blank = Field(pa.repeat(pa.scalar(0, pa.int32()), len(columns[0])), pa.array([""]))
        for key in FIELD_KEYS - set(fields):
            fields[key] = blank
        return fields

    def _allowed(self, fields: dict[str, Field]) -> pa.Array:
        count = len(fields["atena_no"].indices)
        policy = self.policy
        if not (policy.departments or policy.kinds or policy.excluded_kinds):
            return pa.repeat(pa.scalar(True), count)
        department, kind = fields["department"], fields["kind"]
        pair = pc.binary_join_element_wise(
            department.indices.cast(pa.string()), kind.indices.cast(pa.string()), ":"
        )
        encoded = pc.dictionary_encode(pair)
        verdicts = []
        for text in encoded.dictionary.to_pylist():
            first, second = (int(part) for part in text.split(":"))
            values = {
                "department": department.text[first].as_py(),
                "kind": kind.text[second].as_py(),
            }
            record = RawRecord(0, (), values)
            verdicts.append(policy_allows(record, self.context.layout, policy))
        return pa.array(verdicts, pa.bool_()).take(encoded.indices)

    def _slow_rows(
        self,
        part: _Part,
        columns: list[pa.DictionaryArray],
        fields: dict[str, Field],
        slow: pa.Array,
        problems: set[int],
        first_line: int,
    ) -> None:
        """Rows the reference reads itself: rejected ones, flagged lines, blank records."""
        rows = pc.indices_nonzero(slow)
        if not len(rows):
            return
        present = list(self.source.positions.values())
        texts = {
            key: fields[key].text.take(fields[key].indices.take(rows)).to_pylist()
            for key in present
        }
        collected, layout = part.collected, self.context.layout
        for position, row in enumerate(rows.to_pylist()):
            values = {key: texts[key][position] for key in present}
            if not "".join(values.values()).strip() and self._blank(columns, row):
                collected.blank_records += 1
                continue
            collected.rows_read += 1
            problem = "encoding_mismatch" if row in problems else None
            record = RawRecord(first_line + row, (), values, problem)
            if problem is None and not policy_allows(record, layout, self.policy):
                collected.excluded_by_policy += 1
                continue
            parsed = parse_row(record, self.context)  # what the cached parser falls back to
            if isinstance(parsed, list):
                collected.rejections[record.line_no] = parsed
                protected = rejected_person_key(record)
                if protected is not None:
                    collected.dv_ids.add(protected)
            else:
                collected.field_issues.update(parsed.issues)
                part.extra.append(parsed)

    def _blank(self, columns: list[pa.DictionaryArray], row: int) -> bool:
        """Every cell of the row (unknown columns included) is blank."""
        cells = [column[row].as_py() for column in columns]
        text = "".join(cell.decode(self.source.encoding) for cell in cells)
        return not text.strip()


def decode(values: pa.Array, encoding: str) -> pa.Array:
    """Binary cells -> text. UTF-8 is checked; CP932 is decoded by Python's codec, in one
    call for all the non-ASCII cells (joined by line feeds, which no cell contains)."""
    text = values.view(pa.string())
    if encoding != readers.CP932:
        return values.cast(pa.string())  # validates UTF-8 (a BOM only precedes the header)
    ascii_cells = pc.string_is_ascii(text)
    others = values.filter(pc.invert(ascii_cells))
    if not len(others):
        return text
    offsets = pa.array([0, len(others)], pa.int32())
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, others), b"\n")[0].as_py()
    decoded = pa.array(joined.decode(readers.CP932).split("\n"), pa.string())
    return pc.replace_with_mask(text, pc.invert(ascii_cells), decoded)
