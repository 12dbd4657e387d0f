"""The columnar load: the accepted rows of a columnar first pass become the persons,
receivables and phones of a campaign, with exactly the results of the row pipeline
(:class:`sync.merge.Merger`, the importer's ``targets``, :func:`sync.loader.insert_targets`
and :func:`sync.loader.flag_households`), inside the caller's unit of work.

Persons are merged (:mod:`sync.columnar_merge`) and judged (:mod:`sync.columnar_judge`) on
whole columns, then inserted in chunks of :data:`CHUNK_PERSONS` persons: ids reserved in the
order the row pipeline gives them, each chunk's personal values sealed in bulk
(:func:`kernel.pii.seal_batches`) and its rows handed to the driver column by column
(:meth:`sync.bulk.BulkInsert.insert_columns`). On a large load the cryptography runs on a
worker process: the persons' digests while this process judges their phones, each chunk's
seals while this process inserts the previous chunk."""

from __future__ import annotations

import ctypes
import functools
import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from multiprocessing import get_context
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Table
from sqlalchemy.orm import Session

from kernel.models import Person, Phone, PhoneKind, PhoneStatus, Receivable
from kernel.pii import KeyRing, PiiCipher, digest_batch, seal_batches
from kernel.settings import SyncSettings
from sync import loader
from sync.bulk import BulkInsert, reserve_ids
from sync.columnar_judge import CHANNELS, JudgeContext, Judged, LoadSummary, Phones, judge
from sync.columnar_merge import (
    FILLED_FIELDS,
    Ints,
    MergedRows,
    Rows,
    merge_rejections,
    merge_rows,
    numbers,
    python_values,
    ranges,
    slot_column,
)
from sync.columnar_schema import ColumnarCollected, check_table
from sync.loader import PERSON_COLUMNS, PHONE_COLUMNS, RECEIVABLE_COLUMNS

log = logging.getLogger(__name__)
T = TypeVar("T")
Waiting = Callable[[], T]  # a result to wait for
#: Persons per chunk: two chunks' rows are held at a time (one inserted, the next sealed).
#: 10,000 rather than 20,000 holds ~50 MiB less at the peak of a 1M-row import, which
#: pays for the larger page cache below.
CHUNK_PERSONS = 10_000
#: Smaller loads do their cryptography in the importing process (a worker costs ~0.5 s).
WORKER_MIN_ROWS = 100_000
#: 64 MiB: on a 1M-row import the indexes inserted into in random order (persons' refs,
#: phones' numbers) outgrow 32 MiB, which made the inserts 5-15% slower (noisy 2-core VM);
#: 128 MiB gained a little more but took the peak RSS back to ~980 MiB.
SQLITE_CACHE_KIB = 64 << 10
RECORD_FIELDS = (
    "address", "atena_no", "birth_date", "gender", "language", "name", "name_kana",
    "postal_code",
)  # fmt: skip
KINDS = {kind.value: kind for kind in PhoneKind}
NEEDS_ESCAPING = r'[\x00-\x1f"\\]'  # what json.dumps(ensure_ascii=False) escapes in a string


def load_columnar(
    session: Session,
    collected: ColumnarCollected,
    *,
    keyring: KeyRing,
    settings: SyncSettings,
    as_of: date,
    campaign_id: int,
    batch_id: int,
    cipher: PiiCipher,
    exclusions: set[str],
    summary: LoadSummary,
) -> set[str]:
    """Merge, judge and insert the accepted rows; add the rows it rejects (duplicate items,
    conflicting persons, persons already in the campaign) to ``collected.rejections`` and
    return ``collected.dv_ids`` completed with the accepted rows flagged 支援措置."""
    check_table(collected.rows)
    worker = _Worker(settings.seal_in_worker and collected.rows.num_rows >= WORKER_MIN_ROWS)
    try:
        merged = merge_rows(collected.rows)
        give_back_memory()
        collected.rejections.update(merge_rejections(merged))
        collected.dv_ids.update(_protected(merged))
        context = JudgeContext(session, keyring, settings, as_of, campaign_id, exclusions)
        digests = functools.partial(worker.digests, keyring, "person")
        judged = judge(merged, context, collected.rejections, summary, digests)
        give_back_memory()
        writer = _Writer(session, merged, judged, campaign_id, batch_id, cipher, worker)
        with _sqlite_page_cache(session):
            summary.persons_loaded, summary.receivables_loaded = writer.insert_all()
    finally:
        worker.close()
    if judged.fresh_campaign:
        summary.shared_household_phones = writer.shared_household_phones
    else:
        summary.shared_household_phones = loader.flag_households(session, campaign_id)
    return collected.dv_ids


def give_back_memory() -> None:
    """Return the memory a stage freed to the operating system: Arrow's pool keeps freed
    blocks, and glibc keeps freed heap below its top. Between the load's stages (and after
    each inserted chunk) this keeps a million-row import's peak RSS to what it holds."""
    pa.default_memory_pool().release_unused()
    if _malloc_trim is not None:
        _malloc_trim(0)


def _find_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, where the C library has one (not musl, macOS, Windows)."""
    try:
        function: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):
        return None
    return function


_malloc_trim = _find_malloc_trim()


@contextmanager
def _sqlite_page_cache(session: Session) -> Iterator[None]:
    """On SQLite, a page cache that holds the indexes the load inserts into in random order
    (digests): with the default 2 MiB, each insert reads and writes pages again. The
    connection's own setting is restored afterwards."""
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        yield
        return
    previous = int(connection.exec_driver_sql("PRAGMA cache_size").scalar_one())
    connection.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    try:
        yield
    finally:
        connection.exec_driver_sql(f"PRAGMA cache_size={previous}")


def _protected(merged: MergedRows) -> set[str]:
    flagged = np.asarray(merged.column("dv_protected").to_numpy(zero_copy_only=False))
    groups = np.unique(merged.group_of[flagged])
    return {merged.person_keys[group] for group in groups.tolist()}


@dataclass(frozen=True)
class _TargetPhones:
    """The targets' phones to insert (by person, then position) and their positions."""

    phones: Phones
    position: Ints  # 1, 2, ... within each person

    @classmethod
    def of(cls, judged: Judged, groups: int) -> _TargetPhones:
        targeted = np.zeros(groups, dtype=np.bool_)
        targeted[judged.targets] = True
        phones = judged.phones.of_groups(targeted)
        index = np.arange(len(phones.group), dtype=np.int64)
        starts = np.r_[True, phones.group[1:] != phones.group[:-1]] if len(index) else index > 0
        first = np.maximum.accumulate(np.where(starts, index, 0)) if len(index) else index
        return cls(phones, index - first + 1)


def _json_texts(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Each value as ``json.dumps(value, ensure_ascii=False, default=str)`` writes it."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_date(values.type):
        values = values.cast(pa.string())
    quoted = pc.binary_join_element_wise('"', values, '"', "")
    escape = pc.match_substring_regex(values, NEEDS_ESCAPING).fill_null(False)
    if pc.any(escape).as_py():
        escaped = [json.dumps(v, ensure_ascii=False) for v in values.filter(escape).to_pylist()]
        quoted = pc.replace_with_mask(quoted, escape, pa.array(escaped, type=pa.string()))
    return quoted.fill_null("null")


def record_texts(merged: MergedRows, groups: Ints) -> list[bytes]:
    """The persons' records as :meth:`kernel.pii.PiiCipher.seal_record` writes them (JSON,
    keys sorted), UTF-8: 宛名番号, 氏名 and 言語 of the first row, the others filled."""
    first = Rows(merged.first_row[groups])
    parts: list[Any] = []
    for name in RECORD_FIELDS:
        rows = Rows(merged.filled[name][groups]) if name in FILLED_FIELDS else first
        taken = rows.take(merged.column(name))
        parts += [f', "{name}": ' if parts else f'{{"{name}": ', _json_texts(taken)]
    text = pc.binary_join_element_wise(*parts, "}", "")
    return list(text.cast(pa.binary()).to_pylist())


@dataclass
class _Batch:
    """One chunk of targets as columns of rows, their personal values still to seal."""

    persons: list[Sequence[Any]]
    receivables: list[Sequence[Any]]
    phones: list[Sequence[Any]]
    with_notice: list[int]  # the receivables that have a notice number
    plaintexts: list[tuple[str, Sequence[bytes]]]  # pii, notice_number, phone

    def sealed(self, values: list[list[bytes]]) -> _Batch:
        records, notices, numbers = values
        self.persons[PERSON_COLUMNS.index("sealed_pii")] = records
        column: list[bytes | None] = [None] * len(self.receivables[0])
        for index, value in zip(self.with_notice, notices, strict=True):
            column[index] = value
        self.receivables[RECEIVABLE_COLUMNS.index("sealed_notice_number")] = column
        self.phones[PHONE_COLUMNS.index("sealed_number")] = numbers
        return self


class _Worker:
    """A worker process for the load's cryptography: it digests or seals while this process
    merges or inserts. Without it (a small load, a single core, or workers that cannot
    start) the same functions run here."""

    def __init__(self, wanted: bool) -> None:
        self.pool: ProcessPoolExecutor | None = None
        if wanted and (os.cpu_count() or 1) >= 2:
            # spawn: no fork of a process holding database connections (as sync.parallel)
            self.pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))
            self._run(int)  # start it now, while the rows are merged

    def digests(self, keyring: KeyRing, purpose: str, values: list[str]) -> Waiting[list[str]]:
        return self._run(digest_batch, keyring, purpose, values)

    def seal(self, cipher: PiiCipher, batch: _Batch) -> Waiting[_Batch]:
        wait = self._run(seal_batches, cipher.data_key, cipher.campaign_id, batch.plaintexts)
        return lambda: batch.sealed(wait())

    def _run(self, function: Callable[..., T], *args: Any) -> Waiting[T]:
        if self.pool is not None:
            try:
                future = self.pool.submit(function, *args)
            except (BrokenProcessPool, OSError, RuntimeError):  # the worker could not start
                self._give_up()
            else:
                return lambda: self._result(future, function, args)
        result = function(*args)
        return lambda: result

    def _result(self, future: Future[T], function: Callable[..., T], args: tuple[Any, ...]) -> T:
        try:
            return future.result()
        except BrokenProcessPool:
            self._give_up()
            return function(*args)

    def _give_up(self) -> None:
        log.warning("sync: no worker process for the load's cryptography; working in one")
        self.close()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
            self.pool = None


@dataclass
class _Writer:
    """Inserts the targets chunk by chunk: persons (reserved ids), receivables, phones; the
    next chunk is sealed while one is inserted."""

    session: Session
    merged: MergedRows
    judged: Judged
    campaign_id: int
    batch_id: int
    cipher: PiiCipher
    worker: _Worker
    shared_household_phones: int = 0

    def insert_all(self) -> tuple[int, int]:
        connection = self.session.connection()
        tables = (Person.__table__, Receivable.__table__, Phone.__table__)
        person_table, receivable_table, phone_table = (t for t in tables if isinstance(t, Table))
        members_only = {"enum_checks_in_python": True}  # channels, kinds, statuses: members
        writers = (
            BulkInsert(connection, person_table, PERSON_COLUMNS, **members_only),
            BulkInsert(connection, receivable_table, RECEIVABLE_COLUMNS, **members_only),
            BulkInsert(connection, phone_table, PHONE_COLUMNS, **members_only),
        )
        targets = self.judged.targets
        self.ids = np.zeros(self.merged.groups, dtype=np.int64)
        self.ids[targets] = reserve_ids(connection, person_table, len(targets))
        self.phones = _TargetPhones.of(self.judged, self.merged.groups)
        self.unpaid = np.add.reduceat(
            numbers(self.merged.column("unpaid_yen")).astype(np.int64)[self.merged.kept],
            self.merged.kept_starts[:-1],
        )
        self.shared = self._sharednumbers()
        chunks = [targets[i : i + CHUNK_PERSONS] for i in range(0, len(targets), CHUNK_PERSONS)]
        persons = receivables = 0
        waiting: list[Waiting[_Batch]] = []
        for chunk in [*chunks, None]:
            if chunk is not None:  # sealed on the worker while the previous one is inserted
                waiting.append(self.worker.seal(self.cipher, self._batch(chunk)))
            if len(waiting) > 1 or (chunk is None and waiting):
                batch = waiting.pop(0)()
                persons += writers[0].insert_columns(batch.persons)
                receivables += writers[1].insert_columns(batch.receivables)
                writers[2].insert_columns(batch.phones)
                give_back_memory()
        return persons, receivables

    def _sharednumbers(self) -> set[str]:
        """In a campaign that had no persons, :func:`sync.loader.flag_households` would flag
        the numbers of more than one target (one target lists a number once): flagged
        here, on insert. Otherwise the flags are set after the load."""
        if not self.judged.fresh_campaign:
            return set()
        listed = Counter(self.phones.phones.digest)
        shared = {digest for digest, count in listed.items() if count > 1}
        self.shared_household_phones = sum(listed[digest] for digest in shared)
        return shared

    def _batch(self, chunk: Ints) -> _Batch:
        persons, records = self._persons(chunk)
        receivables, with_notice, notices = self._receivables(chunk)
        phones, numbers = self._phones(chunk)
        plaintexts: list[tuple[str, Sequence[bytes]]] = [
            ("pii", records),
            ("notice_number", notices),
            ("phone", numbers),
        ]
        return _Batch(persons, receivables, phones, with_notice, plaintexts)

    def _persons(self, chunk: Ints) -> tuple[list[Sequence[Any]], list[bytes]]:
        merged, count = self.merged, len(chunk)
        first = Rows(merged.first_row[chunk])
        columns: list[Sequence[Any]] = [
            self.ids[chunk].tolist(),
            [self.campaign_id] * count,
            [self.batch_id] * count,
            [self.judged.refs[group] for group in chunk.tolist()],
            [],  # sealed_pii
            (merged.filled["name_kana"][chunk] >= 0).tolist(),
            python_values(first.take(merged.column("language"))),
            [CHANNELS[code] for code in self.judged.channel[chunk].tolist()],
            np.minimum(self.unpaid[chunk], loader.INT32_MAX).tolist(),
        ]
        return columns, record_texts(merged, chunk)

    def _receivables(self, chunk: Ints) -> tuple[list[Sequence[Any]], list[int], list[bytes]]:
        merged = self.merged
        starts = merged.kept_starts
        rows = merged.kept[ranges(starts[chunk], starts[chunk + 1])]
        taken = Rows(rows)
        notices = taken.take(merged.column("notice_number")).cast(pa.binary()).to_pylist()
        with_notice = [index for index, notice in enumerate(notices) if notice]

        def values(name: str) -> list[Any]:
            return python_values(taken.take(merged.column(name)))

        columns: list[Sequence[Any]] = [
            self.ids[merged.group_of[rows]].tolist(),
            [self.campaign_id] * len(rows),
            values("department"),
            values("kind"),
            values("fiscal_year"),
            values("period"),
            [],  # sealed_notice_number
            values("due_date"),
            values("unpaid_yen"),
            values("late_fee_yen"),
            values("demand_date"),
            values("installment"),
            values("account_transfer"),
        ]
        return columns, with_notice, [notices[index] for index in with_notice]

    def _phones(self, chunk: Ints) -> tuple[list[Sequence[Any]], list[bytes]]:
        phones, positions = self.phones.phones, self.phones.position
        start = int(np.searchsorted(phones.group, chunk[0], "left"))
        end = int(np.searchsorted(phones.group, chunk[-1], "right"))
        group, slot = phones.group[start:end], phones.slot[start:end]
        row = Rows(phones.row[start:end])
        digests = phones.digest[start:end]
        e164 = slot_column(self.merged, "e164", row, slot).cast(pa.binary()).to_pylist()
        kinds = python_values(slot_column(self.merged, "kind", row, slot))
        statuses = [
            PhoneStatus.OPTED_OUT if blocked else PhoneStatus.USABLE
            for blocked in phones.blocked[start:end].tolist()
        ]
        columns: list[Sequence[Any]] = [
            self.ids[group].tolist(),
            [self.campaign_id] * (end - start),
            positions[start:end].tolist(),
            [],  # sealed_number
            digests,
            [KINDS[kind] for kind in kinds],
            python_values(slot_column(self.merged, "verified_on", row, slot)),
            statuses,
            [digest in self.shared for digest in digests],
        ]
        return columns, e164
