"""One raw record -> a :class:`ParsedRow` or the reasons it is rejected. Pure.

A row is rejected when 宛名番号, 氏名, 納期限 or 未納額 is missing or invalid (未納額 also when
negative or above what the database holds), when the reader saw a structural problem (bad
bytes, broken quoting, wrong column count), when a value is absurdly long, or when a code
table has no entry for a code. Problems in other fields do not cost the person: the value is
dropped and counted as an *issue* (``field:code``); an unreadable 催告停止 or 支援措置 flag is
read as set, so doubt never leads to a call. Invalid phones are dropped and counted per phone.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TypeVar

from kernel.models import PhoneKind
from kernel.settings import SharingPolicy
from sync import normalize
from sync.layouts import Layout, header_key
from sync.readers import RawRecord

T = TypeVar("T")
MAX_AMOUNT_YEN = 1_000_000_000  # 10億円: more is a data error (and overflows the totals)
FORMULA_PREFIXES = ("=", "+", "-", "@", "＝", "＋", "－", "＠")
MAX_LENGTHS: Mapping[str, int] = {"name": 100, "name_kana": 100, "address": 300}
DEFAULT_MAX_LENGTH = 64
PERIOD_MAX_LENGTH = 16
CALLABLE_KINDS = frozenset(
    {PhoneKind.MOBILE, PhoneKind.FIXED_LINE, PhoneKind.VOIP, PhoneKind.TOLL_FREE}
)
INSTALLMENT_VALUES = {"履行中": "履行中", "不履行": "不履行"}
TRUE_MARKS = frozenset({"1", "有", "あり", "有り", "○", "Y", "YES", "TRUE"})
FALSE_MARKS = frozenset({"", "0", "無", "なし", "無し", "N", "NO", "FALSE"})
LANGUAGES = {
    "日本語": "ja", "英語": "en", "中国語": "zh", "韓国語": "ko", "ベトナム語": "vi",
    "ポルトガル語": "pt", "スペイン語": "es", "タガログ語": "tl", "ネパール語": "ne",
}  # fmt: skip
_LANGUAGE_TAG = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]{2,4})?")  # fits the 8-character column
CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
PROBLEM_MESSAGES: Mapping[str, str] = {
    "encoding_error": "文字コードとして読めないバイトが含まれています",
    "encoding_mismatch": "この行は別の文字コード(UTF-8)で書かれています",
    "csv_syntax": '引用符(")の対応が崩れています(ファイルの途中切れの可能性)',
    "column_count": "列数が見出し行と一致しません",
    "record_too_short": "レコード長が不足しています(ファイルの途中切れの可能性)",
}


@dataclass(frozen=True, slots=True)
class Rejection:
    line_no: int
    field: str
    code: str
    message_ja: str


@dataclass(frozen=True, slots=True)
class PhoneEntry:
    """One phone cell: ``bucket`` is its kind, or other / invalid / stale when dropped."""

    key: str
    e164: str | None
    kind: PhoneKind | None
    bucket: str
    verified_on: date | None

    @property
    def usable(self) -> bool:
        return self.e164 is not None and self.kind in CALLABLE_KINDS and self.bucket != "stale"


@dataclass(frozen=True, slots=True)
class PersonFields:
    atena_no: str
    name: str
    name_kana: str | None
    birth_date: date | None
    gender: str | None
    postal_code: str | None
    address: str | None
    language: str


@dataclass(frozen=True, slots=True)
class ItemFields:
    department: str
    kind: str
    fiscal_year: int
    period: str
    notice_number: str | None
    due_date: date
    unpaid_yen: int
    late_fee_yen: int
    demand_date: date | None
    installment: str | None
    account_transfer: bool

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.kind, self.fiscal_year, self.period)


@dataclass(frozen=True, slots=True)
class ParsedRow:
    line_no: int
    person: PersonFields
    item: ItemFields
    phones: tuple[PhoneEntry, ...]
    suppressed: bool
    dv_protected: bool
    issues: tuple[str, ...] = ()


@dataclass(frozen=True)
class RowContext:
    layout: Layout
    as_of: date
    phone_max_age_years: int = 5


@functools.lru_cache(maxsize=4096)
def short_text(value: str) -> str:
    """normalize_text for short, highly repetitive values (codes, flags, 所管課, 期別)."""
    return normalize.normalize_text(value)


def person_key(atena_no: str) -> str:
    """The 宛名番号 as matched and digested: without zero padding (``0000012345`` and
    ``12345`` are one person), so a differently padded exclusion list still matches."""
    return atena_no.lstrip("0") or "0"


def fiscal_year_of(day: date) -> int:
    """年度 (April to March) a day belongs to, as the Gregorian year of its April."""
    return day.year if day.month >= 4 else day.year - 1


def years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def unescape(value: str) -> str:
    """Undo the rejects file's CSV-injection guard (a leading ' before = + - @)."""
    if len(value) > 1 and value[0] == "'" and value[1:].startswith(FORMULA_PREFIXES):
        return value[1:]
    return value


def coded_value(record: RawRecord, key: str, layout: Layout) -> str | None:
    """The raw text of a field after its code table (None when the code is unknown)."""
    return coded_text(record.values.get(key, ""), key, layout)


def coded_text(cell: str, key: str, layout: Layout) -> str | None:
    """:func:`coded_value` of one cell's text."""
    raw = unescape(cell)
    table = layout.code_tables.get(key)
    if table is None or not raw.strip():
        return raw
    return table.get(header_key(raw))


def policy_allows(record: RawRecord, layout: Layout, policy: SharingPolicy) -> bool:
    """R-9: may this row's 所管課 / 債権種別 be merged and loaded? Unknown codes are refused."""
    if not (policy.departments or policy.kinds or policy.excluded_kinds):
        return True
    department = coded_value(record, "department", layout)
    kind = coded_value(record, "kind", layout)
    if department is None or kind is None:
        return False
    department, kind = short_text(department), short_text(kind)
    if kind in {short_text(k) for k in policy.excluded_kinds}:
        return False
    if policy.departments and department not in {short_text(d) for d in policy.departments}:
        return False
    return not policy.kinds or kind in {short_text(k) for k in policy.kinds}


def rejected_person_key(record: RawRecord) -> str | None:
    """The person key of a rejected record flagged 支援措置, if its 宛名番号 can be read: such
    a person must leave no trace even when another of their rows was accepted."""
    if normalize.normalize_text(record.values.get("dv_support", "")) in ("", "0"):
        return None
    try:
        return person_key(normalize.normalize_person_id(record.values.get("atena_no", "")))
    except normalize.NormalizationError:
        return None


def parse_row(record: RawRecord, context: RowContext) -> ParsedRow | list[Rejection]:
    """Validate and normalize one record; every problem that rejects it is listed."""
    if record.problem is not None:
        message = PROBLEM_MESSAGES.get(record.problem, record.problem)
        detail = f" ({record.detail})" if record.detail else ""
        return [Rejection(record.line_no, "", record.problem, message + detail)]
    parser = _RowParser(record, context)
    return parser.parse()


@dataclass
class _RowParser:
    record: RawRecord
    context: RowContext
    rejections: list[Rejection] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)

    def parse(self) -> ParsedRow | list[Rejection]:
        self._check_cells()
        atena_no = self.required("atena_no", normalize.normalize_person_id)
        name = self.required("name", parse_name)
        due_date = self.required("due_date", self._date)
        unpaid = self.required("unpaid", parse_unpaid)
        if atena_no is None or name is None or due_date is None or unpaid is None:
            return self.rejections
        person = self._person(atena_no, name)
        item = self._item(due_date, unpaid)
        phones = self._phones()
        if self.rejections:
            return self.rejections
        return ParsedRow(
            line_no=self.record.line_no,
            person=person,
            item=item,
            phones=phones,
            suppressed=self.flag("suppressed"),
            dv_protected=self.flag("dv_support"),
            issues=tuple(self.issues),
        )

    # ------------------------------------------------------------- field access

    def text(self, key: str) -> str | None:
        """The field's text after its code table; None (and a rejection) for unknown codes."""
        value = coded_value(self.record, key, self.context.layout)
        if value is None:
            self.reject(key, "unknown_code", f"コード「{self.raw(key)}」がコード表にありません")
        return value

    def short_text(self, key: str, limit: int) -> str:
        """A normalized code-like text (所管課, 債権種別, 期別) that must fit its column."""
        value = short_text(self.text(key) or "")
        if value.isdecimal() and key == "period":
            value = str(int(value))
        if len(value) > limit:
            self.reject(key, "too_long", f"{len(value)}文字あります(上限{limit}文字)")
        return value[:limit]

    def raw(self, key: str) -> str:
        return self.record.values.get(key, "")

    def reject(self, key: str, code: str, message: str) -> None:
        label = self.context.layout.label(key)
        self.rejections.append(Rejection(self.record.line_no, label, code, message))

    def required(self, key: str, parse: Callable[[str], T]) -> T | None:
        value = self.text(key)
        if value is None:
            return None
        if not value.strip():
            label = self.context.layout.label(key)
            self.reject(key, f"missing_{key}", f"必須項目「{label}」が空です")
            return None
        try:
            return parse(value)
        except normalize.NormalizationError as error:
            self.reject(key, error.code, error.message_ja)
            return None

    def optional(self, key: str, parse: Callable[[str], T]) -> T | None:
        value = self.text(key) or ""
        if not value.strip():
            return None
        try:
            return parse(value)
        except normalize.NormalizationError as error:
            self.issues.append(f"{key}:{error.code}")
            return None

    def flag(self, key: str) -> bool:
        value = short_text(self.text(key) or "").upper()
        if value in ("", "0"):
            return False
        if value != "1":
            self.issues.append(f"{key}:invalid_flag")
        return True

    def _check_cells(self) -> None:
        """Absurdly long values and control characters (NUL breaks PostgreSQL text) reject."""
        for key, value in self.record.values.items():
            limit = MAX_LENGTHS.get(key, DEFAULT_MAX_LENGTH)
            if len(value) > limit:
                self.reject(key, "too_long", f"{len(value)}文字あります(上限{limit}文字)")
            elif CONTROL_CHARACTERS.search(value):
                self.reject(key, "control_character", "制御文字が含まれています")

    def _date(self, value: str) -> date:
        text = normalize.normalize_text(value)
        for pattern in self.context.layout.date_formats:
            try:
                return datetime.strptime(text, pattern).date()
            except ValueError:
                continue
        return normalize.parse_date(value)

    # ------------------------------------------------------------- person, item, phones

    def _person(self, atena_no: str, name: str) -> PersonFields:
        return PersonFields(
            atena_no=atena_no,
            name=name,
            name_kana=self.optional("name_kana", normalize.normalize_kana),
            birth_date=self.optional("birth_date", self._date),
            gender=self.optional("gender", normalize.parse_gender),
            postal_code=self.optional("postal_code", normalize.normalize_postal_code),
            address=self.optional("address", normalize.normalize_text),
            language=self.optional("language", parse_language) or "ja",
        )

    def _item(self, due_date: date, unpaid: int) -> ItemFields:
        fiscal_year = self.optional("fiscal_year", normalize.parse_fiscal_year)
        late_fee = self.optional("late_fee", normalize.parse_amount) or 0
        if late_fee < 0 or late_fee > MAX_AMOUNT_YEN:
            self.issues.append("late_fee:out_of_range")
            late_fee = 0
        return ItemFields(
            department=self.short_text("department", DEFAULT_MAX_LENGTH),
            kind=self.short_text("kind", DEFAULT_MAX_LENGTH),
            fiscal_year=fiscal_year or fiscal_year_of(due_date),
            period=self.short_text("period", PERIOD_MAX_LENGTH),
            notice_number=self.optional("notice_number", normalize.normalize_text),
            due_date=due_date,
            unpaid_yen=unpaid,
            late_fee_yen=late_fee,
            demand_date=self.optional("demand_date", self._date),
            installment=self.optional("installment", parse_installment),
            account_transfer=bool(self.optional("account_transfer", parse_yes_no)),
        )

    def _phones(self) -> tuple[PhoneEntry, ...]:
        verified = self.optional("phone_verified_on", self._date)
        entries: list[PhoneEntry] = []
        for key in ("phone1", "phone2"):
            value = self.text(key) or ""
            if value.strip():
                entries.append(self._phone(value, verified))
        return tuple(entries)

    def _phone(self, value: str, verified: date | None) -> PhoneEntry:
        try:
            phone = normalize.normalize_phone(value)
        except normalize.NormalizationError:
            return PhoneEntry(normalize.normalize_text(value), None, None, "invalid", verified)
        kind = PhoneKind(phone.kind.value)
        limit = years_before(self.context.as_of, self.context.phone_max_age_years)
        if kind not in CALLABLE_KINDS:
            bucket = "other"
        elif verified is not None and verified < limit:
            bucket = "stale"
        else:
            bucket = kind.value
        return PhoneEntry(phone.e164, phone.e164, kind, bucket, verified)


def parse_name(value: str) -> str:
    name = normalize.normalize_name(value)
    if name.startswith(FORMULA_PREFIXES):
        raise normalize.NormalizationError(
            "formula_like_name",
            "氏名が = + - @ で始まっています(数式の可能性があるため取り込みません)",
        )
    return name


def parse_unpaid(value: str) -> int:
    amount = normalize.parse_unpaid_amount(value)
    if amount > MAX_AMOUNT_YEN:
        raise normalize.NormalizationError(
            "amount_too_large", f"未納額{amount:,}円が上限({MAX_AMOUNT_YEN:,}円)を超えています"
        )
    return amount


def parse_installment(value: str) -> str:
    text = short_text(value)
    if text not in INSTALLMENT_VALUES:
        raise normalize.NormalizationError("invalid_installment", f"分納「{text}」を解釈できません")
    return INSTALLMENT_VALUES[text]


def parse_yes_no(value: str) -> bool:
    text = short_text(value).upper()
    if text in TRUE_MARKS:
        return True
    if text in FALSE_MARKS:
        return False
    raise normalize.NormalizationError("invalid_flag", f"「{text}」は有/無として解釈できません")


def parse_language(value: str) -> str:
    text = short_text(value)
    if text in LANGUAGES:
        return LANGUAGES[text]
    tag = text.lower().replace("_", "-")
    if not _LANGUAGE_TAG.fullmatch(tag):
        raise normalize.NormalizationError("invalid_language", f"言語「{text}」を解釈できません")
    return tag
