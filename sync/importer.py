"""One import, from a file or a SQL source to a draft campaign: read, validate, merge, filter,
load, account. One transaction per source; the same content twice loads nothing new.

Accounting (nothing is silently dropped):

* ``rows_read = rows_loaded + rows_rejected``. A rejected row is in the rejects file.
* ``rows_loaded`` are the rows accepted; of those, ``rows_excluded`` counts (by rule) the rows
  withheld from the database by the sharing policy or because their person was excluded, so
  ``receivables_loaded = rows_loaded - sum(rows_excluded)``.
* ``persons_loaded + sum(persons_excluded)`` is the number of distinct consistent persons.
* Every phone cell of those persons is counted once per person in exactly one ``phones``
  bucket: its kind, ``other`` (not a subscriber line), ``invalid`` or ``stale``.
"""

from __future__ import annotations

import gc
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kernel.calendar import TOKYO
from kernel.db import Database
from kernel.errors import InvalidInput
from kernel.models import Channel, ImportBatch, PhoneStatus
from kernel.pii import KeyRing
from kernel.settings import SyncSettings
from sync import columnar_load, columnar_read, loader, normalize, parallel
from sync.cached_rows import CachedRowParser
from sync.columnar_schema import ColumnarCollected
from sync.eligibility import Candidate, EligibilityPolicy, exclusion_rule
from sync.layouts import Layout, load_layout
from sync.merge import Merger, PersonGroup
from sync.readers import CsvSource, FixedWidthSource, RawRecord, Source, SqlSource, sha256_file
from sync.rejects import rejects_path_for, write_rejects
from sync.rows import (
    ParsedRow,
    Rejection,
    RowContext,
    person_key,
    policy_allows,
    rejected_person_key,
)

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]
PHONE_BUCKETS = ("MOBILE", "FIXED_LINE", "VOIP", "TOLL_FREE", "other", "invalid", "stale")
CHANNELS = (Channel.IVR.value, Channel.OPERATOR.value, Channel.LETTER.value)
ALREADY_IN_CAMPAIGN = "already_in_campaign"


@dataclass
class ImportSummary:
    source: str
    layout: str
    encoding: str
    file_sha256: str = ""
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    rejected_by_reason: Counter[str] = field(default_factory=Counter)
    rows_excluded: Counter[str] = field(default_factory=Counter)
    persons_loaded: int = 0
    receivables_loaded: int = 0
    persons_excluded: Counter[str] = field(default_factory=Counter)
    phones: Counter[str] = field(default_factory=lambda: Counter(dict.fromkeys(PHONE_BUCKETS, 0)))
    phones_do_not_call: int = 0
    shared_household_phones: int = 0
    channels: Counter[str] = field(default_factory=lambda: Counter(dict.fromkeys(CHANNELS, 0)))
    field_issues: Counter[str] = field(default_factory=Counter)
    unknown_columns: list[str] = field(default_factory=list)
    blank_records: int = 0
    campaign_id: int | None = None
    import_id: int | None = None
    already_imported: bool = False
    rejects_file: str | None = None
    as_of: str = ""
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        for key, value in data.items():
            if isinstance(value, Counter):
                data[key] = dict(sorted(value.items()))
        return data


@dataclass
class _Collected:
    """What the first pass keeps: merged persons, rejections by line, protected 宛名番号."""

    merger: Merger = field(default_factory=Merger)
    rejections: dict[int, list[Rejection]] = field(default_factory=dict)
    dv_ids: set[str] = field(default_factory=set)
    groups: list[PersonGroup] = field(default_factory=list)


def today_tokyo() -> date:
    return datetime.now(TOKYO).date()


def open_file_source(path: Path, layout: Layout) -> Source:
    if not path.is_file():
        raise InvalidInput(f"{path}: ファイルがありません")
    if layout.format == "fixed":
        return FixedWidthSource(path, layout)
    return CsvSource(path, layout)


def import_file(
    database: Database,
    keyring: KeyRing,
    sync_settings: SyncSettings,
    path: Path,
    *,
    layout: str | Layout | None = None,
    as_of: date | None = None,
    campaign_id: int | None = None,
    campaign_name: str | None = None,
    actor: str = "cli",
    progress: Progress | None = None,
    rejects_path: Path | None = None,
) -> ImportSummary:
    """Import one CSV/TSV/fixed-width file into a draft campaign (new unless ``campaign_id``)."""
    chosen = layout if isinstance(layout, Layout) else load_layout(layout)
    source = open_file_source(Path(path), chosen)
    sha = sha256_file(Path(path))
    summary = ImportSummary(source.name, chosen.name, source.encoding, sha)
    previous = _previous_import(database, sha)
    if previous is not None:
        return _already(summary, previous)
    job = _Job(database, keyring, sync_settings, source, chosen, actor, progress)
    job.as_of, job.campaign_id = as_of or today_tokyo(), campaign_id
    job.campaign_name = campaign_name or f"催告 {job.as_of:%Y-%m} {source.name}"
    return job.run(summary, rejects_path or rejects_path_for(Path(path)))


def import_sql(
    database: Database,
    keyring: KeyRing,
    sync_settings: SyncSettings,
    url: str,
    target: str,
    *,
    rejects_path: Path,
    layout: str | Layout | None = None,
    as_of: date | None = None,
    campaign_id: int | None = None,
    campaign_name: str | None = None,
    actor: str = "cli",
    progress: Progress | None = None,
) -> ImportSummary:
    """Import a table, view or query of a read-only SQL source (streamed)."""
    chosen = layout if isinstance(layout, Layout) else load_layout(layout)
    source = SqlSource(url, target, chosen)
    job = _Job(database, keyring, sync_settings, source, chosen, actor, progress)
    job.as_of, job.campaign_id = as_of or today_tokyo(), campaign_id
    job.campaign_name = campaign_name or f"催告 {job.as_of:%Y-%m} {source.name}"
    return job.run(ImportSummary(source.name, chosen.name, source.encoding), rejects_path)


def _previous_import(database: Database, sha: str) -> ImportBatch | None:
    with database.read_only() as session:
        return session.scalars(select(ImportBatch).where(ImportBatch.file_sha256 == sha)).first()


def _already(summary: ImportSummary, previous: ImportBatch) -> ImportSummary:
    summary.already_imported = True
    summary.import_id, summary.campaign_id = previous.id, previous.campaign_id
    return summary


@dataclass
class _Job:
    database: Database
    keyring: KeyRing
    settings: SyncSettings
    source: Source
    layout: Layout
    actor: str
    progress: Progress | None
    as_of: date = date.min
    campaign_id: int | None = None
    campaign_name: str = ""
    started: float = 0.0
    rejects_path: Path = Path("rejects.csv")

    def run(self, summary: ImportSummary, rejects_path: Path) -> ImportSummary:
        with _without_cycle_collection(), _arrow_on_the_system_allocator():
            return self._run(summary, rejects_path)

    def _run(self, summary: ImportSummary, rejects_path: Path) -> ImportSummary:
        self.started = started = time.monotonic()
        summary.as_of = self.as_of.isoformat()
        collected = self.collect(summary)
        if isinstance(self.source, SqlSource):
            summary.file_sha256 = self.source.sha256
            previous = _previous_import(self.database, summary.file_sha256)
            if previous is not None:
                return _already(summary, previous)
        self.rejects_path = rejects_path
        try:
            with self.database.unit_of_work() as session:
                redact = self.load(session, summary, collected)
                self.write_rejects(collected, rejects_path, redact)
        except IntegrityError:
            previous = _previous_import(self.database, summary.file_sha256)
            if previous is None:
                raise
            return _already(summary, previous)  # a concurrent import of the same content won
        summary.duration_s = round(time.monotonic() - started, 3)
        return summary

    def write_rejects(
        self,
        collected: _Collected | ColumnarCollected,
        path: Path,
        redact: Callable[[RawRecord], bool],
    ) -> None:
        """Inside the transaction: if the rejects cannot be written, nothing is loaded."""
        records = None
        if isinstance(collected, ColumnarCollected) and isinstance(self.source, CsvSource):
            records = self.source.records_on_lines(collected.rejections)  # one line each
        try:
            if collected.rejections:
                write_rejects(self.source, collected.rejections, path, redact, records)
            else:
                path.unlink(missing_ok=True)  # a stale file from an earlier import of this name
        except OSError as error:
            raise InvalidInput(
                f"差戻しファイル {path} を書けません ({error.strerror}); 取込は取り消しました"
            ) from error

    # ------------------------------------------------------------------ first pass

    def collect(self, summary: ImportSummary) -> _Collected | ColumnarCollected:
        columnar = self.collect_columnar(summary)
        if columnar is not None:
            return columnar
        collected = None
        if parallel.worth_parallel(self.source):
            collected = self.collect_in_parallel(summary)
        if collected is None:
            collected = self.collect_sequentially(summary)
        for result in collected.merger.finish():
            if isinstance(result, Rejection):
                collected.rejections[result.line_no] = [result]
            else:
                collected.groups.append(result)
        summary.unknown_columns = list(self.source.unknown_columns)
        return collected

    def collect_columnar(self, summary: ImportSummary) -> ColumnarCollected | None:
        """The first pass as columns (:mod:`sync.columnar_read`), or None (nothing counted)
        when it is off or declines the file, which the row pipeline then reads."""
        if not (self.settings.columnar_import and isinstance(self.source, CsvSource)):
            return None
        collected = columnar_read.collect_columnar(
            self.source,
            self.layout,
            self.as_of,
            self.settings.phone_max_age_years,
            self.settings.sharing_policy,
            self.progress,
        )
        if collected is None:
            return None
        columnar_load.give_back_memory()  # the first pass's blocks and caches
        summary.rows_read, summary.blank_records = collected.rows_read, collected.blank_records
        if collected.excluded_by_policy:
            summary.rows_excluded["sharing_policy"] += collected.excluded_by_policy
        summary.field_issues.update(collected.field_issues)
        summary.unknown_columns = list(self.source.unknown_columns)
        return collected

    def collect_sequentially(self, summary: ImportSummary) -> _Collected:
        context = RowContext(self.layout, self.as_of, self.settings.phone_max_age_years)
        parser = CachedRowParser(context)
        collected = _Collected()
        for record in self.source.records():
            summary.rows_read += 1
            if self.progress and summary.rows_read % 512 == 0:
                self.progress(self.source.position, self.source.total)
            allowed = policy_allows(record, self.layout, self.settings.sharing_policy)
            if record.problem is None and not allowed:
                summary.rows_excluded["sharing_policy"] += 1
                continue
            result = parser.parse(record)
            protected = rejected_person_key(record) if isinstance(result, list) else None
            self.take(record.line_no, result, protected, collected, summary)
        if self.progress:
            self.progress(self.source.position, self.source.total)
        summary.blank_records = self.source.blank_records
        return collected

    def collect_in_parallel(self, summary: ImportSummary) -> _Collected | None:
        """The first pass on worker processes, or None (nothing counted) when the file
        cannot be cut at record boundaries; see :mod:`sync.parallel`."""
        assert isinstance(self.source, CsvSource)
        tasks = parallel.tasks_for(
            self.source.path,
            self.layout,
            self.as_of,
            self.settings.phone_max_age_years,
            self.settings.sharing_policy,
        )
        scratch = ImportSummary(summary.source, summary.layout, summary.encoding)
        collected = _Collected()
        try:
            for chunk in parallel.collect_chunks(tasks):
                if not chunk.clean_end:
                    return None
                scratch.rows_read += chunk.rows_read
                scratch.rows_excluded["sharing_policy"] += chunk.excluded_by_policy
                scratch.blank_records += chunk.blank_records
                for line_no, result, protected in chunk.entries:
                    self.take(line_no, result, protected, collected, scratch)
                if self.progress:
                    self.progress(chunk.end, self.source.total)
        except BrokenProcessPool:
            # e.g. a calling script without an ``if __name__ == "__main__":`` guard, which
            # worker processes cannot start from: read in this process instead.
            log.warning(
                "sync: worker processes unavailable, reading %s in one process", summary.source
            )
            return None
        summary.rows_read, summary.blank_records = scratch.rows_read, scratch.blank_records
        summary.rows_excluded.update(+scratch.rows_excluded)
        summary.field_issues.update(scratch.field_issues)
        return collected

    def take(
        self,
        line_no: int,
        result: ParsedRow | list[Rejection],
        protected: str | None,
        collected: _Collected,
        summary: ImportSummary,
    ) -> None:
        """One row of the first pass: rejected (remembering a protected person), or merged."""
        if isinstance(result, list):
            collected.rejections[line_no] = result
            if protected is not None:
                collected.dv_ids.add(protected)
            return
        summary.field_issues.update(result.issues)
        if result.dv_protected:
            collected.dv_ids.add(person_key(result.person.atena_no))
        duplicate = collected.merger.add(result)
        if duplicate is not None:
            collected.rejections[line_no] = [duplicate]

    # ------------------------------------------------------------------ transaction

    def load(
        self, session: Session, summary: ImportSummary, collected: _Collected | ColumnarCollected
    ) -> Callable[[RawRecord], bool]:
        campaign, cipher = loader.open_campaign(
            session,
            self.keyring,
            campaign_id=self.campaign_id,
            name=self.campaign_name,
            as_of=self.as_of,
            actor=self.actor,
        )
        batch = loader.start_batch(
            session,
            campaign_id=campaign.id,
            kind=self.source.kind,
            layout=self.layout.name,
            sha256=summary.file_sha256,
            actor=self.actor,
        )
        exclusions = loader.active_exclusions(session)
        if isinstance(collected, ColumnarCollected):
            dv_ids = columnar_load.load_columnar(
                session,
                collected,
                keyring=self.keyring,
                settings=self.settings,
                as_of=self.as_of,
                campaign_id=campaign.id,
                batch_id=batch.id,
                cipher=cipher,
                exclusions=exclusions,
                summary=summary,
            )
        else:
            targets = self.targets(session, campaign.id, collected, summary, exclusions)
            counts = loader.insert_targets(
                session, targets, campaign_id=campaign.id, batch_id=batch.id, cipher=cipher
            )
            summary.persons_loaded, summary.receivables_loaded = counts.persons, counts.receivables
            summary.shared_household_phones = counts.shared_household_phones
            dv_ids = collected.dv_ids
        summary.campaign_id, summary.import_id = campaign.id, batch.id
        summary.rows_rejected = len(collected.rejections)
        summary.rows_loaded = summary.rows_read - summary.rows_rejected
        summary.rejected_by_reason = Counter(r[0].code for r in collected.rejections.values())
        summary.rejects_file = str(self.rejects_path) if collected.rejections else None
        summary.duration_s = round(time.monotonic() - self.started, 3)
        loader.finish_batch(session, batch, summary.to_dict(), self.actor)
        return _redactor(dv_ids, exclusions, loader.person_digest(self.keyring))

    def targets(
        self,
        session: Session,
        campaign_id: int,
        collected: _Collected,
        summary: ImportSummary,
        exclusions: set[str],
    ) -> Iterator[loader.Target]:
        """Evaluate every merged person; count the excluded, yield the targets to insert
        (lazily: the counts are complete once the targets are consumed)."""
        policy = EligibilityPolicy(self.as_of, self.settings.carryover_limit_yen)
        existing = loader.campaign_refs(session, campaign_id)
        phones_of = loader.PhoneStatuses(
            loader.do_not_call_digests(session), loader.phone_digest(self.keyring)
        )
        person_digest = loader.person_digest(self.keyring)
        for group in collected.groups:
            ref = person_digest(group.person.atena_no)
            if ref in existing:
                _reject_group(group, collected)
                continue
            summary.phones.update(phone.bucket for phone in group.phones)
            phones = phones_of(group)
            blocked = sum(phone.status is PhoneStatus.OPTED_OUT for phone in phones)
            summary.phones_do_not_call += blocked
            rule = exclusion_rule(_candidate(group, ref in exclusions, phones, blocked), policy)
            if rule is not None:
                summary.persons_excluded[rule.value] += 1
                summary.rows_excluded[rule.value] += len(group.items)
                continue
            target = loader.make_target(group, ref, phones)
            summary.channels[target.channel.value] += 1
            yield target


@contextmanager
def _without_cycle_collection() -> Iterator[None]:
    """An import allocates millions of small objects without reference cycles; the cyclic
    garbage collector would scan them again and again. Off during the import, then back."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def _arrow_on_the_system_allocator() -> Iterator[None]:
    """The columnar pipeline's Arrow buffers come from the C library's allocator during the
    import: it returns large freed blocks to the system at once, where Arrow's default pool
    keeps them (about 100 MiB less peak RSS on a million rows, at no measurable cost)."""
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


def _candidate(
    group: PersonGroup, listed: bool, phones: tuple[loader.TargetPhone, ...], blocked: int
) -> Candidate:
    return Candidate(
        items=group.items,
        suppressed=group.suppressed,
        installment_kept=group.installment_kept,
        dv_protected=group.dv_protected,
        on_exclusion_list=listed,
        phones=len(phones),
        phones_do_not_call=blocked,
    )


def _reject_group(group: PersonGroup, collected: _Collected) -> None:
    message = "この宛名番号は同じ催告に既に取り込まれています"
    for line_no in group.lines:
        collected.rejections[line_no] = [
            Rejection(line_no, "宛名番号", ALREADY_IN_CAMPAIGN, message)
        ]


def _raw_dv_flag(record: RawRecord) -> bool:
    return normalize.normalize_text(record.values.get("dv_support", "")) not in ("", "0")


def _raw_atena(record: RawRecord) -> str | None:
    try:
        return normalize.normalize_person_id(record.values.get("atena_no", ""))
    except normalize.NormalizationError:
        return None


def _redactor(
    dv_ids: set[str], exclusions: set[str], digest: Callable[[str], str]
) -> Callable[[RawRecord], bool]:
    def redact(record: RawRecord) -> bool:
        if _raw_dv_flag(record):
            return True
        atena = _raw_atena(record)
        if atena is None:
            return False
        return person_key(atena) in dv_ids or digest(atena) in exclusions

    return redact
