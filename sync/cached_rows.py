"""A fast row parser for bulk imports: the same results as :func:`sync.rows.parse_row`, with
every field parsed once per distinct cell text. Pure (the caches are its only state).

An export repeats most cells endlessly (所管課, 債権種別, 期別, dates, amounts, flags) and a
person's cells on each of their rows, so each field keeps a table from the raw cell text to
its outcome: the value and the issue it raises, or :data:`REJECTED`. A row whose fields are
all acceptable is assembled from the tables. A row that any field rejects, or that the reader
flagged, goes to the reference parser, so rejections (their order and wording included) are
exactly those of ``parse_row``. Tables of fields with many distinct values (宛名番号, 住所,
電話番号, 通知書番号) are bounded: they are emptied when full.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final

from kernel.models import PhoneKind
from sync import normalize
from sync.layouts import Layout
from sync.readers import RawRecord
from sync.rows import (
    CALLABLE_KINDS,
    CONTROL_CHARACTERS,
    DEFAULT_MAX_LENGTH,
    MAX_AMOUNT_YEN,
    MAX_LENGTHS,
    PERIOD_MAX_LENGTH,
    ItemFields,
    ParsedRow,
    PersonFields,
    PhoneEntry,
    Rejection,
    RowContext,
    coded_text,
    fiscal_year_of,
    parse_installment,
    parse_language,
    parse_name,
    parse_row,
    parse_unpaid,
    parse_yes_no,
    short_text,
    years_before,
)


class _Rejected:
    """The outcome of a cell that makes its row rejected (the reference parser says why)."""

    def __repr__(self) -> str:
        return "REJECTED"


REJECTED: Final = _Rejected()
TABLE_LIMIT = 65_536
BLOCK_LIMIT = 4096  # a person's rows are usually next to each other
NO_ISSUES: tuple[str, ...] = ()
#: A field's outcome: its value and the issue codes it adds.
Accepted = tuple[Any, tuple[str, ...]]
Outcome = Accepted | _Rejected


@dataclass
class _FieldRules:
    """How one field's cell becomes an outcome, mirroring ``rows._RowParser``."""

    layout: Layout

    def passes_cell_checks(self, key: str, raw: str) -> bool:
        if len(raw) > MAX_LENGTHS.get(key, DEFAULT_MAX_LENGTH):
            return False
        return not CONTROL_CHARACTERS.search(raw)

    def coded(self, key: str, raw: str) -> str | None:
        return coded_text(raw, key, self.layout)

    def date(self, value: str) -> date:
        if not self.layout.date_formats:
            return normalize.parse_date(value)
        text = normalize.normalize_text(value)
        for pattern in self.layout.date_formats:
            try:
                return datetime.strptime(text, pattern).date()
            except ValueError:
                continue
        return normalize.parse_date(value)

    def required(self, key: str, raw: str, parse: Callable[[str], Any]) -> Outcome:
        value = self.coded(key, raw)
        if value is None or not value.strip() or not self.passes_cell_checks(key, raw):
            return REJECTED
        try:
            return parse(value), NO_ISSUES
        except normalize.NormalizationError:
            return REJECTED

    def optional(self, key: str, raw: str, parse: Callable[[str], Any]) -> Outcome:
        value = self.coded(key, raw)
        if value is None or not self.passes_cell_checks(key, raw):
            return REJECTED
        if not value.strip():
            return None, NO_ISSUES
        try:
            return parse(value), NO_ISSUES
        except normalize.NormalizationError as error:
            return None, (f"{key}:{error.code}",)

    def short(self, key: str, raw: str, limit: int) -> Outcome:
        value = self.coded(key, raw)
        if value is None or not self.passes_cell_checks(key, raw):
            return REJECTED
        text = short_text(value)
        if text.isdecimal() and key == "period":
            text = str(int(text))
        return REJECTED if len(text) > limit else (text, NO_ISSUES)

    def flag(self, key: str, raw: str) -> Outcome:
        value = self.coded(key, raw)
        if value is None or not self.passes_cell_checks(key, raw):
            return REJECTED
        text = short_text(value).upper()
        if text in ("", "0"):
            return False, NO_ISSUES
        return True, (NO_ISSUES if text == "1" else (f"{key}:invalid_flag",))

    def late_fee(self, key: str, raw: str) -> Outcome:
        outcome = self.optional(key, raw, normalize.parse_amount)
        if isinstance(outcome, _Rejected):
            return outcome
        fee, issues = outcome
        fee = fee or 0
        if fee < 0 or fee > MAX_AMOUNT_YEN:
            return 0, (*issues, "late_fee:out_of_range")
        return fee, issues

    def phone(self, key: str, raw: str) -> Outcome:
        """(normalized text, Phone or None) for a phone cell; (None, None) when blank."""
        value = self.coded(key, raw)
        if value is None or not self.passes_cell_checks(key, raw):
            return REJECTED
        if not value.strip():
            return None, NO_ISSUES
        try:
            return (None, normalize.normalize_phone(value)), NO_ISSUES
        except normalize.NormalizationError:
            return (normalize.normalize_text(value), None), NO_ISSUES


PERSON_KEYS = (
    "atena_no", "name", "name_kana", "birth_date", "gender", "postal_code", "address",
    "language", "suppressed", "dv_support",
)  # fmt: skip
PHONE_KEYS = ("phone_verified_on", "phone1", "phone2")
ITEM_KEYS = (
    "due_date", "unpaid", "fiscal_year", "late_fee", "department", "kind", "period",
    "notice_number", "demand_date", "installment", "account_transfer",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _PersonBlock:
    person: PersonFields
    suppressed: bool
    dv_protected: bool
    issues: tuple[str, ...]  # of the person's optional fields
    flag_issues: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _PhoneBlock:
    phones: tuple[PhoneEntry, ...]
    issues: tuple[str, ...]


Block = _PersonBlock | _PhoneBlock | _Rejected


@dataclass
class CachedRowParser:
    """``parse_row`` for many rows of one import: call :meth:`parse` on each record.

    Fields are cached one by one; the person's fields (and flags) and the phone fields are
    also cached as blocks, keyed by their cells together, since a person's rows repeat them.
    """

    context: RowContext
    tables: dict[str, dict[str, Outcome]] = field(default_factory=dict)
    rules: dict[str, Callable[[str], Outcome]] = field(default_factory=dict)
    stale_before: date = date.min
    persons: dict[tuple[str, ...], Block] = field(default_factory=dict)
    phone_blocks: dict[tuple[str, ...], Block] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rules = _FieldRules(self.context.layout)
        self.stale_before = years_before(self.context.as_of, self.context.phone_max_age_years)
        self.rules = _field_parsers(rules)
        self.tables = {key: {} for key in self.rules}

    def outcome(self, key: str, raw: str) -> Outcome:
        """The field's outcome for this cell text, computed once per distinct text."""
        table = self.tables[key]
        found = table.get(raw)
        if found is None:
            found = self.rules[key](raw)
            if len(table) >= TABLE_LIMIT:
                table.clear()
            table[raw] = found
        return found

    def parse(self, record: RawRecord) -> ParsedRow | list[Rejection]:
        if record.problem is not None:
            return parse_row(record, self.context)
        values = record.values
        person = self._block(self.persons, PERSON_KEYS, values, self._person_block)
        phones = self._block(self.phone_blocks, PHONE_KEYS, values, self._phone_block)
        if isinstance(person, _PersonBlock) and isinstance(phones, _PhoneBlock):
            row = self._row(record.line_no, values, person, phones)
            if row is not None:
                return row
        return parse_row(record, self.context)

    def _block(
        self,
        cache: dict[tuple[str, ...], Block],
        keys: tuple[str, ...],
        values: dict[str, str],
        build: Callable[[dict[str, str]], Block],
    ) -> Block:
        get = values.get
        cells = tuple([get(key, "") for key in keys])
        found = cache.get(cells)
        if found is None:
            found = build(values)
            if len(cache) >= BLOCK_LIMIT:
                cache.clear()
            cache[cells] = found
        return found

    def _accepted(self, keys: tuple[str, ...], values: dict[str, str]) -> list[Accepted] | None:
        found = []
        tables, get = self.tables, values.get
        for key in keys:
            raw = get(key, "")
            result = tables[key].get(raw) or self.outcome(key, raw)
            if isinstance(result, _Rejected):
                return None
            found.append(result)
        return found

    def _person_block(self, values: dict[str, str]) -> Block:
        found = self._accepted(PERSON_KEYS, values)
        if found is None:
            return REJECTED
        atena, name, kana, birth, gender, postal, address, language, stop, dv = found
        person = PersonFields(
            atena_no=atena[0],
            name=name[0],
            name_kana=kana[0],
            birth_date=birth[0],
            gender=gender[0],
            postal_code=postal[0],
            address=address[0],
            language=language[0] or "ja",
        )
        issues = tuple(issue for _, codes in found[:8] for issue in codes)
        return _PersonBlock(person, stop[0], dv[0], issues, (*stop[1], *dv[1]))

    def _phone_block(self, values: dict[str, str]) -> Block:
        found = self._accepted(PHONE_KEYS, values)
        if found is None:
            return REJECTED
        (verified, issues), first, second = found
        phones = tuple(self._phone_entry(cell[0], verified) for cell in (first, second) if cell[0])
        return _PhoneBlock(phones, issues)

    def _row(
        self, line_no: int, values: dict[str, str], person: _PersonBlock, phones: _PhoneBlock
    ) -> ParsedRow | None:
        """The row, or None when an item field is rejected. Issues come in the reference
        parser's order: person, item, phone confirmation date, flags."""
        tables, outcome = self.tables, self.outcome
        get = values.get
        out: list[Accepted] = []
        for key in ITEM_KEYS:
            raw = get(key, "")
            result = tables[key].get(raw) or outcome(key, raw)
            if isinstance(result, _Rejected):
                return None
            out.append(result)
        due, unpaid, year, fee, department, kind, period, notice, demand, plan, transfer = out
        item = ItemFields(
            department=department[0],
            kind=kind[0],
            fiscal_year=year[0] or fiscal_year_of(due[0]),
            period=period[0],
            notice_number=notice[0],
            due_date=due[0],
            unpaid_yen=unpaid[0],
            late_fee_yen=fee[0],
            demand_date=demand[0],
            installment=plan[0],
            account_transfer=bool(transfer[0]),
        )
        issues = person.issues
        item_issues = (*year[1], *fee[1], *notice[1], *demand[1], *plan[1], *transfer[1])
        if item_issues or phones.issues or person.flag_issues:
            issues = (*issues, *item_issues, *phones.issues, *person.flag_issues)
        return ParsedRow(
            line_no=line_no,
            person=person.person,
            item=item,
            phones=phones.phones,
            suppressed=person.suppressed,
            dv_protected=person.dv_protected,
            issues=issues,
        )

    def _phone_entry(
        self, parsed: tuple[str | None, normalize.Phone | None], verified: date | None
    ) -> PhoneEntry:
        text, phone = parsed
        if phone is None:
            return PhoneEntry(text or "", None, None, "invalid", verified)
        kind = PhoneKind(phone.kind.value)
        if kind not in CALLABLE_KINDS:
            bucket = "other"
        elif verified is not None and verified < self.stale_before:
            bucket = "stale"
        else:
            bucket = kind.value
        return PhoneEntry(phone.e164, phone.e164, kind, bucket, verified)


def _field_parsers(rules: _FieldRules) -> dict[str, Callable[[str], Outcome]]:
    """Each field's rule, as ``rows._RowParser`` applies it."""
    date_rule = rules.date
    return {
        "atena_no": lambda raw: rules.required("atena_no", raw, normalize.normalize_person_id),
        "name": lambda raw: rules.required("name", raw, parse_name),
        "due_date": lambda raw: rules.required("due_date", raw, date_rule),
        "unpaid": lambda raw: rules.required("unpaid", raw, parse_unpaid),
        "name_kana": lambda raw: rules.optional("name_kana", raw, normalize.normalize_kana),
        "birth_date": lambda raw: rules.optional("birth_date", raw, date_rule),
        "gender": lambda raw: rules.optional("gender", raw, normalize.parse_gender),
        "postal_code": lambda raw: rules.optional(
            "postal_code", raw, normalize.normalize_postal_code
        ),
        "address": lambda raw: rules.optional("address", raw, normalize.normalize_text),
        "language": lambda raw: rules.optional("language", raw, parse_language),
        "fiscal_year": lambda raw: rules.optional("fiscal_year", raw, normalize.parse_fiscal_year),
        "late_fee": lambda raw: rules.late_fee("late_fee", raw),
        "department": lambda raw: rules.short("department", raw, DEFAULT_MAX_LENGTH),
        "kind": lambda raw: rules.short("kind", raw, DEFAULT_MAX_LENGTH),
        "period": lambda raw: rules.short("period", raw, PERIOD_MAX_LENGTH),
        "notice_number": lambda raw: rules.optional("notice_number", raw, normalize.normalize_text),
        "demand_date": lambda raw: rules.optional("demand_date", raw, date_rule),
        "installment": lambda raw: rules.optional("installment", raw, parse_installment),
        "account_transfer": lambda raw: rules.optional("account_transfer", raw, parse_yes_no),
        "phone_verified_on": lambda raw: rules.optional("phone_verified_on", raw, date_rule),
        "phone1": lambda raw: rules.phone("phone1", raw),
        "phone2": lambda raw: rules.phone("phone2", raw),
        "suppressed": lambda raw: rules.flag("suppressed", raw),
        "dv_support": lambda raw: rules.flag("dv_support", raw),
    }
