"""名寄せ: the rows of one 宛名番号 become one person with several receivables. Pure.

Rows of one 宛名番号 whose 氏名 (compared without spaces) or 生年月日 (when both rows carry
one) disagree cannot be the same person: every row of that 宛名番号 is rejected as a conflict,
so staff correct the source instead of the platform guessing. A second row for the same item
(債権種別 x 年度 x 期別) is rejected as a duplicate. Optional person fields missing from the
first row are taken from later rows; a phone listed on several rows keeps its most recent
confirmation date.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date

from sync.layouts import STANDARD_HEADERS
from sync.rows import ItemFields, ParsedRow, PersonFields, PhoneEntry, Rejection, person_key

CONFLICT = "person_conflict"
DUPLICATE_ITEM = "duplicate_item"


@dataclass(slots=True)
class PersonGroup:
    """One person's rows; lists rather than dicts, as a person has only a few items and
    phones and an import may hold half a million persons in memory."""

    person: PersonFields
    lines: list[int] = field(default_factory=list)
    items: list[ItemFields] = field(default_factory=list)
    phones: list[PhoneEntry] = field(default_factory=list)
    suppressed: bool = False
    dv_protected: bool = False
    conflict: str | None = None

    @property
    def installment_kept(self) -> bool:
        return any(item.installment == "履行中" for item in self.items)

    @property
    def unpaid_total_yen(self) -> int:
        return sum(item.unpaid_yen for item in self.items)

    def usable_phones(self) -> list[PhoneEntry]:
        return [phone for phone in self.phones if phone.usable]

    def add_phone(self, phone: PhoneEntry) -> None:
        """A phone listed on several rows keeps its most recent confirmation date."""
        for index, known in enumerate(self.phones):
            if known.key == phone.key:
                self.phones[index] = _newer(known, phone)
                return
        self.phones.append(phone)


def _name_key(name: str) -> str:
    return "".join(name.split())


def _conflict(known: PersonFields, new: PersonFields) -> str | None:
    if _name_key(known.name) != _name_key(new.name):
        return "name"
    if known.birth_date and new.birth_date and known.birth_date != new.birth_date:
        return "birth_date"
    return None


def _fill(known: PersonFields, new: PersonFields) -> PersonFields:
    missing = {
        name: getattr(new, name)
        for name in ("name_kana", "birth_date", "gender", "postal_code", "address")
        if getattr(known, name) is None and getattr(new, name) is not None
    }
    return replace(known, **missing) if missing else known


def _newer(old: PhoneEntry, new: PhoneEntry) -> PhoneEntry:
    floor = date.min
    return new if (new.verified_on or floor) > (old.verified_on or floor) else old


@dataclass
class Merger:
    """Feed parsed rows in file order; :meth:`finish` yields persons and the rejections."""

    groups: dict[str, PersonGroup] = field(default_factory=dict)

    def add(self, row: ParsedRow) -> Rejection | None:
        """Add a row; a duplicate item is rejected at once (returned)."""
        key = person_key(row.person.atena_no)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = PersonGroup(row.person)
        elif group.conflict is None:
            group.conflict = _conflict(group.person, row.person)
            group.person = _fill(group.person, row.person)
        item_key = row.item.key
        if any(item.key == item_key for item in group.items):
            return Rejection(
                row.line_no,
                STANDARD_HEADERS["period"],
                DUPLICATE_ITEM,
                "同じ宛名番号・債権種別・年度・期別の行が既にあります",
            )
        group.lines.append(row.line_no)
        group.items.append(row.item)
        group.suppressed |= row.suppressed
        group.dv_protected |= row.dv_protected
        for phone in row.phones:
            group.add_phone(phone)
        return None

    def finish(self) -> Iterator[PersonGroup | Rejection]:
        """Each consistent person, and one conflict rejection per row of the others."""
        for group in self.groups.values():
            if group.conflict is None:
                yield group
                continue
            label = STANDARD_HEADERS[group.conflict]
            message = f"同じ宛名番号で{label}が異なる行があります(全行を除外)"
            for line_no in group.lines:
                yield Rejection(line_no, label, CONFLICT, message)
