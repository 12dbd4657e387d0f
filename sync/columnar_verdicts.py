"""Every field's verdict per row of one block of the columnar first pass, and the accepted
rows built from them in :data:`~sync.columnar_schema.ROW_SCHEMA` (the row pipeline's
:func:`~sync.rows.parse_row` is the reference: the same values, issues and phone buckets).

Each field's distinct cells are decided once by :mod:`sync.column_rules` and
:mod:`sync.phone_columns`; :class:`Verdicts` spreads the outcomes back over the rows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc

from sync.cached_rows import CachedRowParser
from sync.column_rules import (
    Cells,
    Outcomes,
    date_cells,
    kana_readings,
    late_fees,
    names,
    optional_text,
    outcomes,
    person_ids,
    unpaid_amounts,
)
from sync.columnar_schema import ROW_SCHEMA
from sync.phone_columns import PhoneOutcomes, phone_outcomes
from sync.rows import CALLABLE_KINDS, years_before

STRING_RULES = ("gender", "postal_code", "language", "department", "kind", "period", "installment")
ISSUE_ORDER = (
    "name_kana", "birth_date", "gender", "postal_code", "address", "language", "fiscal_year",
    "late_fee", "notice_number", "demand_date", "installment", "account_transfer",
    "phone_verified_on", "suppressed", "dv_support",
)  # fmt: skip
CALLABLE = pa.array(sorted(kind.value for kind in CALLABLE_KINDS), pa.string())


@dataclass
class Field:
    """One field of a batch: per row, the index of its distinct cell; per distinct cell, the
    decoded text."""

    indices: pa.Array
    text: pa.Array


@dataclass
class Verdicts:
    """Every field's outcome per row of a batch."""

    fields: dict[str, Field]
    found: dict[str, Outcomes]
    phones: dict[str, PhoneOutcomes]
    stale_before: date
    rejected: pa.Array

    @classmethod
    def of(cls, fields: dict[str, Field], parser: CachedRowParser, clean: bool) -> Verdicts:
        def cells(key: str) -> Cells:
            return Cells(key, fields[key].text, parser, clean)

        found: dict[str, Outcomes] = {
            "atena_no": person_ids(cells("atena_no")),
            "name": names(cells("name")),
            "name_kana": kana_readings(cells("name_kana")),
            "address": optional_text(cells("address")),
            "notice_number": optional_text(cells("notice_number")),
            "unpaid": unpaid_amounts(cells("unpaid")),
            "fiscal_year": outcomes(cells("fiscal_year"), pa.int32()),
            "late_fee": late_fees(cells("late_fee")),
        }
        for key in ("birth_date", "due_date", "demand_date", "phone_verified_on"):
            found[key] = date_cells(cells(key))
        for key in STRING_RULES:
            found[key] = outcomes(cells(key), pa.string())
        for key in ("suppressed", "dv_support", "account_transfer"):
            found[key] = outcomes(cells(key), pa.bool_())
        phones = {key: phone_outcomes(cells(key)) for key in ("phone1", "phone2")}
        rejected = pa.repeat(pa.scalar(False), len(fields["atena_no"].indices))
        verdicts = [(key, o.rejected) for key, o in found.items()]
        verdicts += [(key, phone.rejected) for key, phone in phones.items()]
        for key, cells_rejected in verdicts:
            if pc.any(cells_rejected).as_py():
                bad = pc.indices_nonzero(cells_rejected).cast(pa.int32())
                rejected = pc.or_(rejected, pc.is_in(fields[key].indices, value_set=bad))
        stale_before = years_before(parser.context.as_of, parser.context.phone_max_age_years)
        return cls(fields, found, phones, stale_before, rejected)

    def rows(self, fast: pa.Array, first_line: int, issues: Counter[str]) -> pa.Table:
        """The accepted rows (``fast``) in ROW_SCHEMA; counts their issues into ``issues``."""
        taken = {key: self.fields[key].indices.filter(fast) for key in self.fields}

        def value(key: str) -> pa.Array:
            return self.found[key].values.take(taken[key])

        positions = pc.indices_nonzero(fast)
        columns: dict[str, pa.Array] = {
            "line_no": pc.add(positions.cast(pa.int64()), first_line),
            "atena_no": value("atena_no"),
            "name": value("name"),
            "name_kana": value("name_kana"),
            "birth_date": value("birth_date"),
            "gender": value("gender"),
            "postal_code": value("postal_code"),
            "address": value("address"),
            "language": pc.fill_null(value("language"), "ja"),
            "department": value("department"),
            "kind": value("kind"),
        }
        due = value("due_date")
        april_year = pc.subtract(pc.year(due), pc.less(pc.month(due), 4).cast(pa.int64()))
        columns["fiscal_year"] = pc.coalesce(value("fiscal_year"), april_year.cast(pa.int32()))
        columns |= {
            "period": value("period"),
            "notice_number": value("notice_number"),
            "due_date": due,
            "unpaid_yen": value("unpaid"),
            "late_fee_yen": value("late_fee"),
            "demand_date": value("demand_date"),
            "installment": value("installment"),
            "account_transfer": pc.fill_null(value("account_transfer"), False),
        }
        columns |= self._phones(taken, value("phone_verified_on"))
        columns["suppressed"] = value("suppressed")
        columns["dv_protected"] = value("dv_support")
        columns["issues"] = self._issues(taken, issues)
        return pa.table(columns, schema=ROW_SCHEMA)

    def _phones(self, taken: dict[str, pa.Array], verified: pa.Array) -> dict[str, pa.Array]:
        first, second = (
            {
                "key": self.phones[key].key.take(taken[key]),
                "e164": self.phones[key].e164.take(taken[key]),
                "kind": self.phones[key].kind.take(taken[key]),
            }
            for key in ("phone1", "phone2")
        )
        has_first = pc.is_valid(first["key"])
        nothing = pa.nulls(len(has_first), pa.string())
        slots = (
            {part: pc.if_else(has_first, first[part], second[part]) for part in first},
            {part: pc.if_else(has_first, second[part], nothing) for part in second},
        )
        columns: dict[str, pa.Array] = {}
        for name, slot in zip(("phone1", "phone2"), slots, strict=True):
            present = pc.is_valid(slot["key"])
            stale = pc.fill_null(
                pc.less(verified, pa.scalar(self.stale_before, pa.date32())), False
            )
            bucket = pc.if_else(
                pc.is_null(slot["e164"]),
                "invalid",
                pc.if_else(
                    pc.invert(pc.is_in(slot["kind"], value_set=CALLABLE)),
                    "other",
                    pc.if_else(stale, "stale", slot["kind"]),
                ),
            )
            columns[f"{name}_key"] = slot["key"]
            columns[f"{name}_bucket"] = pc.if_else(present, bucket, nothing)
            columns[f"{name}_e164"] = slot["e164"]
            columns[f"{name}_kind"] = slot["kind"]
            columns[f"{name}_verified_on"] = pc.if_else(
                present, verified, pa.nulls(len(present), pa.date32())
            )
        return columns

    def _issues(self, taken: dict[str, pa.Array], counter: Counter[str]) -> pa.Array:
        """Each row's issue codes in the reference's order, as a list column."""
        count = len(next(iter(taken.values())))
        lengths = pa.repeat(pa.scalar(0, pa.int32()), count)
        parts = []
        for order, key in enumerate(ISSUE_ORDER):
            issues = self.found[key].issues
            if issues.null_count == len(issues):
                continue  # no distinct cell of this field has an issue
            codes = issues.take(taken[key])
            valid = pc.is_valid(codes)
            where = pc.indices_nonzero(valid)
            if not len(where):
                continue
            counter.update(_counts(codes.take(where)))
            lengths = pc.add(lengths, valid.cast(pa.int32()))
            order_column = pa.repeat(pa.scalar(order, pa.int32()), len(where))
            parts.append(pa.table({"row": where, "order": order_column, "code": codes.take(where)}))
        offsets = pc.cumulative_sum(pa.concat_arrays([pa.array([0], pa.int32()), lengths]))
        if not parts:
            return pa.ListArray.from_arrays(offsets, pa.array([], pa.string()))
        found = pa.concat_tables(parts)
        found = found.take(pc.sort_indices(found, [("row", "ascending"), ("order", "ascending")]))
        return pa.ListArray.from_arrays(offsets, found.column("code").combine_chunks())


def _counts(codes: pa.Array) -> Counter[str]:
    counts = pc.value_counts(codes)
    return Counter(
        dict(
            zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True)
        )
    )
