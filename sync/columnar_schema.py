"""The columnar form of the import's first pass: accepted rows as one Arrow table.

The row pipeline (:mod:`sync.cached_rows`, :mod:`sync.merge`, :mod:`sync.loader`) carries one
:class:`~sync.rows.ParsedRow` object per accepted row. The columnar pipeline carries the same
facts as Arrow columns (:data:`ROW_SCHEMA`), which is what makes a million-row import fit in
memory and lets whole columns be normalized and grouped at once. :func:`table_from_parsed` and
:func:`parsed_from_table` convert between the two forms without loss, so each half of either
pipeline can be checked against the other.

Columns (one row per accepted source row, in file order):

* ``line_no``: the physical line the record starts on (as in rejects files);
* the person's fields (:class:`~sync.rows.PersonFields`) and the item's
  (:class:`~sync.rows.ItemFields`), ``None`` where the row form has ``None``;
* the row's phone entries (``ParsedRow.phones``, one per non-blank phone cell, in cell order)
  in slots ``phone1`` and ``phone2``: ``*_key`` is ``None`` for an empty slot, else the
  :class:`~sync.rows.PhoneEntry` key (E.164, or the normalized text of an invalid number),
  with ``*_e164``, ``*_kind`` (a :class:`~kernel.models.PhoneKind` value), ``*_bucket`` and
  ``*_verified_on``. A row whose only phone is in cell 2 has it in slot ``phone1``;
* ``suppressed``, ``dv_protected`` and ``issues`` (the row's ``field:code`` issues).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from kernel.models import PhoneKind
from sync.rows import ItemFields, ParsedRow, PersonFields, PhoneEntry, Rejection

PHONE_KEYS = ("phone1", "phone2")
PERSON_FIELDS = (
    "atena_no", "name", "name_kana", "birth_date", "gender", "postal_code", "address", "language",
)  # fmt: skip
ITEM_FIELDS = (
    "department", "kind", "fiscal_year", "period", "notice_number", "due_date", "unpaid_yen",
    "late_fee_yen", "demand_date", "installment", "account_transfer",
)  # fmt: skip
_TYPES: dict[str, pa.DataType] = {
    "line_no": pa.int64(),
    "atena_no": pa.string(),
    "name": pa.string(),
    "name_kana": pa.string(),
    "birth_date": pa.date32(),
    "gender": pa.string(),
    "postal_code": pa.string(),
    "address": pa.string(),
    "language": pa.string(),
    "department": pa.string(),
    "kind": pa.string(),
    "fiscal_year": pa.int32(),
    "period": pa.string(),
    "notice_number": pa.string(),
    "due_date": pa.date32(),
    "unpaid_yen": pa.int64(),
    "late_fee_yen": pa.int64(),
    "demand_date": pa.date32(),
    "installment": pa.string(),
    "account_transfer": pa.bool_(),
}
for _key in PHONE_KEYS:
    _TYPES[f"{_key}_key"] = pa.string()
    _TYPES[f"{_key}_bucket"] = pa.string()
    _TYPES[f"{_key}_e164"] = pa.string()
    _TYPES[f"{_key}_kind"] = pa.string()
    _TYPES[f"{_key}_verified_on"] = pa.date32()
_TYPES["suppressed"] = pa.bool_()
_TYPES["dv_protected"] = pa.bool_()
_TYPES["issues"] = pa.list_(pa.string())
ROW_SCHEMA = pa.schema(list(_TYPES.items()))
NOT_NULL = frozenset(
    {
        "line_no", "atena_no", "name", "language", "department", "kind", "fiscal_year", "period",
        "due_date", "unpaid_yen", "late_fee_yen", "account_transfer", "suppressed",
        "dv_protected", "issues",
    }
)  # fmt: skip


@dataclass
class ColumnarCollected:
    """What the columnar first pass hands to the load: the accepted rows as a table (schema
    :data:`ROW_SCHEMA`, file order), the rejected rows by line, and the counters.

    ``dv_ids`` holds the person keys (:func:`sync.rows.person_key`) of *rejected* rows flagged
    支援措置 (:func:`sync.rows.rejected_person_key`); the accepted rows carry their own flag.
    ``rows_read`` counts every record including those withheld by the sharing policy
    (``excluded_by_policy``), which appear neither in ``rows`` nor in ``rejections``.
    """

    rows: pa.Table
    rejections: dict[int, list[Rejection]] = field(default_factory=dict)
    dv_ids: set[str] = field(default_factory=set)
    rows_read: int = 0
    excluded_by_policy: int = 0
    blank_records: int = 0
    field_issues: Counter[str] = field(default_factory=Counter)


def empty_table() -> pa.Table:
    return ROW_SCHEMA.empty_table()


def _row_values(row: ParsedRow) -> dict[str, Any]:
    values: dict[str, Any] = {"line_no": row.line_no}
    for name in PERSON_FIELDS:
        values[name] = getattr(row.person, name)
    for name in ITEM_FIELDS:
        values[name] = getattr(row.item, name)
    entries = (*row.phones, None, None)
    for key, entry in zip(PHONE_KEYS, entries, strict=False):
        values[f"{key}_key"] = entry.key if entry else None
        values[f"{key}_bucket"] = entry.bucket if entry else None
        values[f"{key}_e164"] = entry.e164 if entry else None
        values[f"{key}_kind"] = entry.kind.value if entry and entry.kind else None
        values[f"{key}_verified_on"] = entry.verified_on if entry else None
    values["suppressed"] = row.suppressed
    values["dv_protected"] = row.dv_protected
    values["issues"] = list(row.issues)
    return values


def table_from_parsed(rows: Iterable[ParsedRow]) -> pa.Table:
    """The row form -> the columnar form (schema :data:`ROW_SCHEMA`)."""
    columns: dict[str, list[Any]] = {name: [] for name in ROW_SCHEMA.names}
    for row in rows:
        for name, value in _row_values(row).items():
            columns[name].append(value)
    return pa.table(columns, schema=ROW_SCHEMA)


def _phone(record: dict[str, Any], key: str) -> PhoneEntry | None:
    slot_key = record[f"{key}_key"]
    if slot_key is None:
        return None
    kind = record[f"{key}_kind"]
    return PhoneEntry(
        key=slot_key,
        e164=record[f"{key}_e164"],
        kind=PhoneKind(kind) if kind is not None else None,
        bucket=record[f"{key}_bucket"],
        verified_on=record[f"{key}_verified_on"],
    )


def _parsed(record: dict[str, Any]) -> ParsedRow:
    phones = tuple(p for p in (_phone(record, key) for key in PHONE_KEYS) if p is not None)
    return ParsedRow(
        line_no=record["line_no"],
        person=PersonFields(**{name: record[name] for name in PERSON_FIELDS}),
        item=ItemFields(**{name: record[name] for name in ITEM_FIELDS}),
        phones=phones,
        suppressed=record["suppressed"],
        dv_protected=record["dv_protected"],
        issues=tuple(record["issues"]),
    )


def parsed_from_table(table: pa.Table) -> Iterator[ParsedRow]:
    """The columnar form -> the row form, in table order."""
    for batch in table.to_batches(max_chunksize=65_536):
        for record in batch.to_pylist():
            yield _parsed(record)


def check_table(table: pa.Table) -> None:
    """Raise ``ValueError`` when ``table`` does not have :data:`ROW_SCHEMA` or has a null
    where the row form cannot hold one."""
    if not table.schema.equals(ROW_SCHEMA):
        raise ValueError(f"columnar rows: schema differs from ROW_SCHEMA: {table.schema}")
    for name in NOT_NULL:
        if table.column(name).null_count:
            raise ValueError(f"columnar rows: nulls in {name}")
