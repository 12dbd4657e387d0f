"""Who of the merged persons is loaded, on which channel: the importer's ``targets`` on whole
columns, with exactly its results. The rules of :func:`sync.eligibility.exclusion_rule` apply
in their order, each person counted under the first that matches; phones count per bucket,
and a usable number on the do-not-call list stays, opted out (:class:`sync.loader.PhoneStatuses`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy.orm import Session

from kernel.models import Channel
from kernel.pii import KeyRing
from kernel.settings import SyncSettings
from sync import loader
from sync.columnar_merge import Ints, MergedRows, numbers, ranges, slot_column
from sync.eligibility import ExclusionRule
from sync.rows import CALLABLE_KINDS, Rejection, fiscal_year_of

Flags = npt.NDArray[np.bool_]
#: As the importer's ``_reject_group``.
ALREADY_IN_CAMPAIGN = "already_in_campaign"
ALREADY_MESSAGE = "この宛名番号は同じ催告に既に取り込まれています"
#: The exclusion rules in the order :func:`sync.eligibility.exclusion_rule` applies them.
RULES = (
    ExclusionRule.DV_PROTECTED,
    ExclusionRule.EXCLUSION_LIST,
    ExclusionRule.SUPPRESSED,
    ExclusionRule.INSTALLMENT_KEPT,
    ExclusionRule.DO_NOT_CALL,
    ExclusionRule.NOT_DUE,
    ExclusionRule.NOT_INITIAL_DELINQUENCY,
)
NO_RULE = len(RULES)
CHANNELS = (Channel.LETTER, Channel.OPERATOR, Channel.IVR)  # by code 0, 1, 2
EPOCH = date(1970, 1, 1)
#: Digests of person keys, computed while the caller waits for them (e.g. on a worker).
PersonDigests = Callable[[list[str]], Callable[[], list[str]]]


class LoadSummary(Protocol):
    """The fields of :class:`sync.importer.ImportSummary` the load fills."""

    rows_excluded: Counter[str]
    persons_excluded: Counter[str]
    phones: Counter[str]
    phones_do_not_call: int
    channels: Counter[str]
    persons_loaded: int
    receivables_loaded: int
    shared_household_phones: int


@dataclass(frozen=True)
class JudgeContext:
    """What the rules look up: the campaign's persons, the do-not-call list, the keys."""

    session: Session
    keyring: KeyRing
    settings: SyncSettings
    as_of: date
    campaign_id: int
    exclusions: set[str]


@dataclass(frozen=True)
class Phones:
    """Usable merged phones (entries of :class:`sync.columnar_merge.MergedPhones`), by person
    then position, with their digests and whether the do-not-call list blocks them."""

    group: Ints
    row: Ints
    slot: Ints
    digest: list[str]
    blocked: npt.NDArray[np.bool_]

    def of_groups(self, persons: Flags) -> Phones:
        keep = persons[self.group]
        return Phones(
            group=self.group[keep],
            row=self.row[keep],
            slot=self.slot[keep],
            digest=[d for d, k in zip(self.digest, keep.tolist(), strict=True) if k],
            blocked=self.blocked[keep],
        )


@dataclass(frozen=True)
class Judged:
    """The outcome: the persons to load and what their rows need."""

    targets: Ints  # the groups to insert, in order
    refs: list[str | None]  # per group: Person.ref_digest (None for conflicting persons)
    channel: npt.NDArray[np.int8]  # per group: a code of CHANNELS
    phones: Phones
    fresh_campaign: bool  # the campaign had no persons before this load


def _any_per_group(merged: MergedRows, flags: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Per person: does any of its kept rows have the flag?"""
    return np.logical_or.reduceat(flags[merged.kept], merged.kept_starts[:-1])


def _reject_in_campaign(
    merged: MergedRows, groups: Ints, rejections: dict[int, list[Rejection]]
) -> None:
    """As the importer's ``_reject_group``: every kept row of persons already loaded."""
    lines = numbers(merged.column("line_no"))
    starts = merged.kept_starts
    for row in merged.kept[ranges(starts[groups], starts[groups + 1])].tolist():
        line_no = int(lines[row])
        rejections[line_no] = [Rejection(line_no, "宛名番号", ALREADY_IN_CAMPAIGN, ALREADY_MESSAGE)]


def judge(
    merged: MergedRows,
    context: JudgeContext,
    rejections: dict[int, list[Rejection]],
    summary: LoadSummary,
    person_digests: PersonDigests,
) -> Judged:
    """The importer's ``targets`` on whole columns: which persons are judged (consistent and
    not yet in the campaign), their phones, the rule excluding each, the channel of the rest."""
    judged = merged.conflict == 0
    candidates = np.flatnonzero(judged)
    keys = [merged.person_keys[group] for group in candidates.tolist()]
    person_refs = person_digests(keys)
    candidate_phones = _usable_phones(merged, judged, context)  # meanwhile
    refs: list[str | None] = [None] * merged.groups
    for group, ref in zip(candidates.tolist(), person_refs(), strict=True):
        refs[group] = ref
    existing = loader.campaign_refs(context.session, context.campaign_id)
    if existing:
        loaded = np.array([ref in existing for ref in refs], dtype=np.bool_)
        _reject_in_campaign(merged, np.flatnonzero(loaded), rejections)
        judged &= ~loaded
    _count_buckets(merged, judged, summary)
    phones = candidate_phones.of_groups(judged)
    usable = np.bincount(phones.group, minlength=merged.groups)
    blocked = np.bincount(phones.group[phones.blocked], minlength=merged.groups)
    summary.phones_do_not_call += int(blocked[judged].sum())
    rule = _rules(merged, refs, context, usable, blocked)
    kept_counts = merged.kept_counts()
    for code, exclusion in enumerate(RULES):
        hit = judged & (rule == code)
        if hit.any():
            summary.persons_excluded[exclusion.value] += int(hit.sum())
            summary.rows_excluded[exclusion.value] += int(kept_counts[hit].sum())
    targets = np.flatnonzero(judged & (rule == NO_RULE))
    has_kana = merged.filled["name_kana"] >= 0
    channel = np.where(usable - blocked > 0, np.where(has_kana, 2, 1), 0).astype(np.int8)
    for code, count in enumerate(np.bincount(channel[targets], minlength=3).tolist()):
        summary.channels[CHANNELS[code].value] += count
    return Judged(targets, refs, channel, phones, fresh_campaign=not existing)


def _count_buckets(merged: MergedRows, judged: Flags, summary: LoadSummary) -> None:
    """Every merged phone of the judged persons, in its bucket."""
    mine = judged[merged.phones.group]
    buckets = slot_column(merged, "bucket", merged.phones.row[mine], merged.phones.slot[mine])
    for item in pc.value_counts(buckets).to_pylist():
        summary.phones[str(item["values"])] += int(item["counts"])


def _usable_phones(merged: MergedRows, persons: Flags, context: JudgeContext) -> Phones:
    """The usable merged phones of ``persons`` with their digests and whether the
    do-not-call list blocks them (as :class:`sync.loader.PhoneStatuses`)."""
    mine = persons[merged.phones.group]
    group, row, slot = merged.phones.group[mine], merged.phones.row[mine], merged.phones.slot[mine]
    e164 = slot_column(merged, "e164", row, slot)
    callable_kind = pc.is_in(
        slot_column(merged, "kind", row, slot),
        value_set=pa.array(sorted(kind.value for kind in CALLABLE_KINDS)),
    )
    usable_mask = pc.and_(
        pc.and_(e164.is_valid(), callable_kind.fill_null(False)),
        pc.not_equal(slot_column(merged, "bucket", row, slot), "stale"),
    )
    usable = np.asarray(numbers(usable_mask), dtype=np.bool_)
    encoded = pc.dictionary_encode(e164.filter(usable_mask))
    digest = context.keyring.digester("phone")
    distinct = [digest(number) for number in encoded.dictionary.to_pylist()]
    do_not_call = loader.do_not_call_digests(context.session)
    listed = np.array([value in do_not_call for value in distinct], dtype=np.bool_)
    codes = np.asarray(numbers(encoded.indices), dtype=np.int64)
    return Phones(
        group=group[usable],
        row=row[usable],
        slot=slot[usable],
        digest=[distinct[code] for code in codes.tolist()],
        blocked=listed[codes] if len(listed) else np.zeros(len(codes), dtype=np.bool_),
    )


def _rules(
    merged: MergedRows,
    refs: Sequence[str | None],
    context: JudgeContext,
    usable: Ints,
    blocked: Ints,
) -> npt.NDArray[np.int64]:
    """Per person, the code (index into :data:`RULES`) of the first rule excluding them, or
    :data:`NO_RULE`; :func:`sync.eligibility.exclusion_rule` on whole columns."""
    flag = {
        name: _any_per_group(merged, np.asarray(numbers(merged.column(name)), dtype=np.bool_))
        for name in ("dv_protected", "suppressed")
    }
    kept_installment = pc.equal(merged.column("installment"), "履行中").fill_null(False)
    listed = np.array([ref is not None and ref in context.exclusions for ref in refs])
    not_due, not_initial = _delinquency(merged, context)
    conditions = [
        flag["dv_protected"],
        listed.astype(np.bool_),
        flag["suppressed"],
        _any_per_group(merged, np.asarray(numbers(kept_installment), dtype=np.bool_)),
        (usable > 0) & (blocked >= usable),
        not_due,
        not_initial,
    ]
    return np.select(conditions, list(range(len(RULES))), default=NO_RULE)


def _delinquency(
    merged: MergedRows, context: JudgeContext
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """:func:`sync.eligibility.delinquency_rule` per person: (not due, not initial)."""
    starts = merged.kept_starts[:-1]
    unpaid = np.asarray(numbers(merged.column("unpaid_yen")), dtype=np.int64)[merged.kept]
    due = numbers(merged.column("due_date").cast(pa.int32())).astype(np.int64)[merged.kept]
    years = numbers(merged.column("fiscal_year")).astype(np.int64)[merged.kept]
    owing = unpaid > 0
    as_of = (context.as_of - EPOCH).days
    overdue = np.logical_or.reduceat(owing & (due < as_of), starts)
    earlier = owing & (years < fiscal_year_of(context.as_of))
    carried = np.add.reduceat(np.where(earlier, unpaid, 0), starts)
    limit = context.settings.carryover_limit_yen
    return ~overdue, (carried > 0) & (carried >= limit)
