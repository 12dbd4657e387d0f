"""名寄せ on the columnar form of the first pass: exactly what :class:`sync.merge.Merger` does
with one :class:`~sync.rows.ParsedRow` after another, computed on whole columns. Pure.

The rows (:data:`sync.columnar_schema.ROW_SCHEMA`, file order) are numbered by person key
(:func:`sync.rows.person_key`) in order of first appearance, which is the order in which the
merger meets its persons. Then, as the merger does:

* a row whose item (債権種別 x 年度 x 期別) an earlier row of the person already has is a
  *duplicate*: rejected, its item, flags and phones left out; it still takes part in the
  conflict check and in filling the person's fields, since the merger looks at a row's person
  before its item;
* a person conflicts when a row's 氏名 (without spaces) differs from the first row's, or its
  生年月日 differs from the first one given; the first such row (file order) names the field;
* a person's optional fields are the first non-null values in file order;
* a person's phones are merged by key: listed at their first appearance, each keeping the
  entry with the most recent confirmation date (the earliest among equals).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from sync.columnar_schema import PHONE_KEYS
from sync.layouts import STANDARD_HEADERS
from sync.merge import CONFLICT, DUPLICATE_ITEM
from sync.rows import Rejection

Ints = npt.NDArray[np.int64]
Flags = npt.NDArray[np.bool_]
FILLED_FIELDS = ("name_kana", "birth_date", "gender", "postal_code", "address")
#: ``MergedRows.conflict`` codes: no conflict, then the field that conflicts.
NO_CONFLICT, NAME_CONFLICT, BIRTH_DATE_CONFLICT = 0, 1, 2
CONFLICT_FIELDS = {NAME_CONFLICT: "name", BIRTH_DATE_CONFLICT: "birth_date"}
DATE_MIN_DAYS = (date.min - date(1970, 1, 1)).days
DUPLICATE_MESSAGE = "同じ宛名番号・債権種別・年度・期別の行が既にあります"


@dataclass(frozen=True)
class MergedPhones:
    """Each person's merged phones, by person then position: where each entry comes from."""

    group: Ints  # the person (group number)
    row: Ints  # the row of the entry kept (index into the table)
    slot: Ints  # 0: the row's phone1 slot, 1: phone2


@dataclass(frozen=True)
class MergedRows:
    """The rows grouped into persons (groups ``0 .. groups - 1``, in order of appearance)."""

    table: pa.Table
    person_keys: list[str]  # per group
    group_of: Ints  # per row
    duplicate: Flags  # per row
    first_row: Ints  # per group: the row whose 宛名番号, 氏名 and 言語 the person keeps
    conflict: npt.NDArray[np.int8]  # per group: NO_CONFLICT or the conflicting field's code
    kept: Ints  # the non-duplicate rows, by group, in file order within a group
    kept_starts: Ints  # per group: where its rows start in ``kept`` (plus a final end)
    filled: dict[str, Ints]  # per group and fillable field: the row giving the value or -1
    phones: MergedPhones

    @property
    def groups(self) -> int:
        return len(self.first_row)

    def kept_counts(self) -> Ints:
        return np.diff(self.kept_starts)

    def column(self, name: str) -> pa.ChunkedArray:
        return self.table.column(name)


def _ints(values: Any) -> Ints:
    return np.asarray(values, dtype=np.int64)


def _codes(array: pa.Array | pa.ChunkedArray) -> tuple[Ints, pa.Array]:
    """Dense codes of the values, numbered in order of first appearance (-1 for null), and
    the distinct values."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    encoded = pc.dictionary_encode(array)
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    return _ints(codes), encoded.dictionary


def person_keys(atena_no: pa.Array) -> pa.Array:
    """:func:`sync.rows.person_key` of every 宛名番号: leading zeros off, ``0`` if none left."""
    stripped = pc.utf8_ltrim(atena_no, characters="0")
    return pc.if_else(pc.equal(stripped, ""), "0", stripped)


def _first_per_group(groups_sorted: Ints, count: int) -> Ints:
    """For values sorted by group: the position of each group's first value, or -1."""
    first = np.full(count, -1, dtype=np.int64)
    if len(groups_sorted):
        starts = np.flatnonzero(np.r_[True, groups_sorted[1:] != groups_sorted[:-1]])
        first[groups_sorted[starts]] = starts
    return first


def _first_where(mask: Flags, order: Ints, group_of: Ints, count: int) -> Ints:
    """Per group, the first row (in ``order``) where ``mask`` holds, or -1."""
    rows = order[mask[order]]
    position = _first_per_group(group_of[rows], count)
    first = np.full(count, -1, dtype=np.int64)
    found = position >= 0
    first[found] = rows[position[found]]
    return first


def _duplicates(table: pa.Table, group_of: Ints) -> Flags:
    """Rows whose person already has their item (債権種別, 年度, 期別) on an earlier row."""
    key = group_of
    for name in ("kind", "fiscal_year", "period"):  # one code per distinct key so far
        codes, distinct = _codes(table.column(name))
        combined = key * len(distinct) + codes  # < rows * rows: no overflow
        key = _ints(np.unique(combined, return_inverse=True)[1]).reshape(-1)
    first = np.unique(key, return_index=True)[1]  # the first row of each (person, item)
    duplicate = np.ones(len(group_of), dtype=np.bool_)
    duplicate[first] = False
    return duplicate


def _name_codes(names: pa.Array) -> Ints:
    """Equal codes for names equal without spaces (``"".join(name.split())``)."""
    codes, distinct = _codes(names)
    compact = ["".join(name.split()) for name in distinct.to_pylist()]
    key_codes, _ = _codes(pa.array(compact, type=pa.string()))
    return key_codes[codes] if len(codes) else codes


def _conflicts(merged: _Grouping, table: pa.Table) -> npt.NDArray[np.int8]:
    group_of, order, count = merged.group_of, merged.order, merged.count
    first_group_row = merged.first_row[group_of]
    names = _name_codes(table.column("name").combine_chunks())
    name_differs = names != names[first_group_row]
    births = table.column("birth_date").combine_chunks()
    given = ~np.asarray(births.is_null().to_numpy(zero_copy_only=False), dtype=np.bool_)
    days = _ints(births.cast(pa.int32()).fill_null(0).to_numpy(zero_copy_only=False))
    first_birth = _first_where(given, order, group_of, count)
    known = first_birth[group_of]
    birth_differs = given & (known >= 0) & (days != days[np.maximum(known, 0)])
    first_bad = _first_where(name_differs | birth_differs, order, group_of, count)
    conflict = np.zeros(count, dtype=np.int8)
    bad = first_bad >= 0
    conflict[bad] = np.where(name_differs[first_bad[bad]], NAME_CONFLICT, BIRTH_DATE_CONFLICT)
    return conflict


@dataclass(frozen=True)
class _Grouping:
    group_of: Ints
    order: Ints  # rows by group, file order within
    first_row: Ints
    count: int


def _grouping(table: pa.Table) -> tuple[_Grouping, list[str]]:
    group_of, keys = _codes(person_keys(table.column("atena_no").combine_chunks()))
    count = len(keys)
    order = _ints(np.argsort(group_of, kind="stable"))
    first_row = order[_first_per_group(group_of[order], count)]
    return _Grouping(group_of, order, first_row, count), keys.to_pylist()


def slot_values(table: pa.Table, name: str) -> pa.Array:
    """A phone field of both slots: ``phone1_<name>`` then ``phone2_<name>`` (row ``r`` of
    slot ``s`` at ``s * rows + r``)."""
    return pa.concat_arrays(
        [table.column(f"{slot}_{name}").combine_chunks() for slot in PHONE_KEYS]
    )


def _days(column: pa.ChunkedArray) -> Ints:
    """Dates as day numbers, a missing date as ``date.min`` (as :func:`sync.merge._newer`)."""
    return _ints(column.cast(pa.int32()).fill_null(DATE_MIN_DAYS).to_numpy())


def _merged_phones(table: pa.Table, kept: Ints, group_of: Ints) -> MergedPhones:
    """Phone entries of the kept rows merged per person and key (see the module's notes)."""
    keys = slot_values(table, "key")
    key_codes, _ = _codes(keys)
    present = np.asarray(keys.is_valid().to_numpy(zero_copy_only=False), dtype=np.bool_)
    verified = np.concatenate([_days(table.column(f"{slot}_verified_on")) for slot in PHONE_KEYS])
    # the entries in the order the merger meets them: each kept row's slot 1, then its slot 2
    rows = len(group_of)
    entry_row = np.repeat(kept, 2)
    entry_slot = np.tile(np.array([0, 1], dtype=np.int64), len(kept))
    flat = entry_slot * rows + entry_row
    keep = present[flat]
    entry_row, entry_slot, flat = entry_row[keep], entry_slot[keep], flat[keep]
    owner = group_of[entry_row]
    # (person, key) pairs, numbered in order of first appearance: their order as listed
    pair, _ = _codes(pa.array(owner * (int(key_codes.max(initial=0)) + 1) + key_codes[flat]))
    sequence = np.arange(len(flat), dtype=np.int64)
    ranked = np.lexsort((sequence, -verified[flat], pair))  # newest first, then earliest
    chosen = ranked[_first_per_group(pair[ranked], int(pair.max(initial=-1)) + 1)]
    return MergedPhones(owner[chosen], entry_row[chosen], entry_slot[chosen])


def merge_rows(table: pa.Table) -> MergedRows:
    """Group the accepted rows into persons as :class:`~sync.merge.Merger` does (rows not in
    file order are put in it first)."""
    lines = numbers(table.column("line_no"))
    if len(lines) > 1 and not bool(np.all(lines[1:] > lines[:-1])):
        table = table.take(pa.array(np.argsort(lines, kind="stable")))
    grouping, keys = _grouping(table)
    group_of, order, count = grouping.group_of, grouping.order, grouping.count
    duplicate = _duplicates(table, group_of)
    kept = order[~duplicate[order]]
    kept_starts = np.r_[_first_per_group(group_of[kept], count), len(kept)].astype(np.int64)
    filled = {
        name: _first_where(
            ~np.asarray(table.column(name).is_null().to_numpy(zero_copy_only=False)),
            order,
            group_of,
            count,
        )
        for name in FILLED_FIELDS
    }
    return MergedRows(
        table=table,
        person_keys=keys,
        group_of=group_of,
        duplicate=duplicate,
        first_row=grouping.first_row,
        conflict=_conflicts(grouping, table),
        kept=kept,
        kept_starts=kept_starts,
        filled=filled,
        phones=_merged_phones(table, kept, group_of),
    )


def merge_rejections(merged: MergedRows) -> dict[int, list[Rejection]]:
    """The duplicate items, and every kept row of a conflicting person, by line."""
    lines = merged.column("line_no").to_numpy(zero_copy_only=False)
    rejections: dict[int, list[Rejection]] = {}
    label = STANDARD_HEADERS["period"]
    for row in np.flatnonzero(merged.duplicate).tolist():
        line_no = int(lines[row])
        rejections[line_no] = [Rejection(line_no, label, DUPLICATE_ITEM, DUPLICATE_MESSAGE)]
    starts = merged.kept_starts
    for group in np.flatnonzero(merged.conflict).tolist():
        field = STANDARD_HEADERS[CONFLICT_FIELDS[int(merged.conflict[group])]]
        message = f"同じ宛名番号で{field}が異なる行があります(全行を除外)"
        for row in merged.kept[starts[group] : starts[group + 1]].tolist():
            line_no = int(lines[row])
            rejections[line_no] = [Rejection(line_no, field, CONFLICT, message)]
    return rejections


# ------------------------------------------------------------------ columns


class Rows:
    """Rows to take from columns of the merged table (negative: null), by chunk.

    Arrow's ``take`` on a column of many chunks (one per block of the first pass) costs
    about as much as the whole column on every call, which the load pays for each of its
    chunks of persons; here each chunk of the column gives only its own rows."""

    def __init__(self, rows: Ints) -> None:
        self.rows = rows
        self.order = np.argsort(rows, kind="stable")
        self.ordered = rows[self.order]
        inverse = np.empty_like(self.order)
        inverse[self.order] = np.arange(len(rows), dtype=inverse.dtype)
        self.inverse = pa.array(inverse)

    def take(self, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        """``values.take(rows)`` as one array."""
        if isinstance(values, pa.ChunkedArray) and values.num_chunks == 1:
            values = values.chunk(0)
        if isinstance(values, pa.Array):
            return values.take(pa.array(self.rows, mask=self.rows < 0, type=pa.int64()))
        bounds = np.cumsum([0, *(len(chunk) for chunk in values.chunks)])
        edges = np.searchsorted(self.ordered, bounds)  # the negative rows come first
        parts = [pa.nulls(int(edges[0]), values.type)]
        for index, chunk in enumerate(values.chunks):
            local = self.ordered[edges[index] : edges[index + 1]] - bounds[index]
            if len(local):
                parts.append(chunk.take(pa.array(local)))
        return pa.concat_arrays(parts).take(self.inverse)


def slot_column(merged: MergedRows, name: str, rows: Ints | Rows, slots: Ints) -> pa.Array:
    """A phone field of the entries (row, slot): ``phone1_<name>`` or ``phone2_<name>``."""
    taken = rows if isinstance(rows, Rows) else Rows(rows)
    first = taken.take(merged.column(f"{PHONE_KEYS[0]}_{name}"))
    second = taken.take(merged.column(f"{PHONE_KEYS[1]}_{name}"))
    return pc.if_else(pa.array(slots == 1, type=pa.bool_()), second, first)


def python_values(values: pa.Array | pa.ChunkedArray) -> list[Any]:
    """``values.to_pylist()``, faster: numbers through numpy, other values (strings, dates:
    few distinct ones in an export) converted once per distinct value."""
    if values.null_count == 0 and (
        pa.types.is_integer(values.type) or pa.types.is_boolean(values.type)
    ):
        return list(numbers(values).tolist())
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    encoded = pc.dictionary_encode(values)
    distinct = np.array([*encoded.dictionary.to_pylist(), None], dtype=object)
    codes = encoded.indices.fill_null(len(distinct) - 1).to_numpy(zero_copy_only=False)
    return list(distinct[codes].tolist())


def numbers(array: pa.Array | pa.ChunkedArray) -> npt.NDArray[Any]:
    """A column as a numpy array (numbers, flags; a copy when it has nulls or chunks)."""
    return np.asarray(array.to_numpy(zero_copy_only=False))


def ranges(starts: Ints, ends: Ints) -> Ints:
    """The concatenation of ``range(start, end)`` for each pair."""
    lengths = ends - starts
    offsets = starts - np.r_[0, np.cumsum(lengths)[:-1]]
    return np.repeat(offsets, lengths) + np.arange(int(lengths.sum()), dtype=np.int64)
