"""Synthetic arrears exports (滞納システムの抽出CSV) for the demo, tests and benchmarks.

Everything is fictional: people are drawn from lists of common family and given names, and
live in 架空県架空市 with made-up town names and the never-assigned postal prefix 000.
Phone numbers are random and may happen to exist: use them with the simulated carrier only.

The output imitates a real export, warts included: CP932-only characters (髙, 﨑, ①, ㈱),
kana readings in full-width, half-width or hiragana (or missing), dates in every 和暦 and
Gregorian form, phone numbers of every type and notation, amounts with commas, 円 and
full-width digits. About 1-2% of the rows are deliberately bad; :func:`generate_labelled_rows`
says which and why (see :data:`BAD_KINDS`).

Reproducible: the same ``(persons, seed, as_of)`` gives the same rows, byte for byte.
"""

from __future__ import annotations

import csv
import random
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import accumulate
from pathlib import Path

__all__ = [
    "BAD_KINDS",
    "DATE_COLUMNS",
    "HEADERS",
    "ExportStats",
    "LabelledRow",
    "generate_labelled_rows",
    "generate_rows",
    "write_export",
]

HEADERS: tuple[str, ...] = (
    "宛名番号",
    "氏名",
    "氏名カナ",
    "生年月日",
    "性別",
    "郵便番号",
    "住所",
    "電話番号1",
    "電話番号2",
    "電話確認日",
    "所管課",
    "債権種別",
    "年度",
    "期別",
    "通知書番号",
    "納期限",
    "未納額",
    "延滞金",
    "督促日",
    "分納",
    "口座振替",
    "催告停止",
    "支援措置",
    "言語",
)
DATE_COLUMNS: tuple[str, ...] = ("生年月日", "電話確認日", "納期限", "督促日")

BAD_KINDS: tuple[str, ...] = (
    "missing_due_date",  # 納期限 blank
    "negative_amount",  # 未納額 negative (-500, △500, ▲500)
    "impossible_date",  # 納期限 like 平成31年5月1日 or 令和3年2月30日
    "formula_name",  # 氏名 starts with '=' (CSV formula injection); every row of the person
    "birth_date_conflict",  # 生年月日 differs from the person's other rows (the odd row)
)


@dataclass(frozen=True)
class LabelledRow:
    row: dict[str, str]
    bad: str | None  # one of BAD_KINDS, or None for a row that should import cleanly


@dataclass(frozen=True)
class ExportStats:
    rows_written: int
    persons: int
    bad_rows: Mapping[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- reference data

_FAMILY = (
    ("佐藤", "サトウ"), ("鈴木", "スズキ"), ("高橋", "タカハシ"), ("髙橋", "タカハシ"),
    ("田中", "タナカ"), ("伊藤", "イトウ"), ("渡辺", "ワタナベ"), ("渡邉", "ワタナベ"),
    ("山本", "ヤマモト"), ("中村", "ナカムラ"), ("小林", "コバヤシ"), ("加藤", "カトウ"),
    ("吉田", "ヨシダ"), ("山田", "ヤマダ"), ("佐々木", "ササキ"), ("山口", "ヤマグチ"),
    ("松本", "マツモト"), ("井上", "イノウエ"), ("木村", "キムラ"), ("林", "ハヤシ"),
    ("斎藤", "サイトウ"), ("清水", "シミズ"), ("山崎", "ヤマザキ"), ("山﨑", "ヤマザキ"),
    ("宮崎", "ミヤザキ"), ("宮﨑", "ミヤザキ"), ("森", "モリ"), ("池田", "イケダ"),
    ("橋本", "ハシモト"), ("阿部", "アベ"), ("石川", "イシカワ"), ("山下", "ヤマシタ"),
    ("中島", "ナカジマ"), ("小川", "オガワ"), ("前田", "マエダ"), ("岡田", "オカダ"),
    ("長谷川", "ハセガワ"), ("藤田", "フジタ"), ("後藤", "ゴトウ"), ("近藤", "コンドウ"),
    ("村上", "ムラカミ"), ("遠藤", "エンドウ"), ("青木", "アオキ"), ("坂本", "サカモト"),
    ("髙木", "タカギ"), ("太田", "オオタ"), ("小野", "オノ"), ("工藤", "クドウ"),
    ("原田", "ハラダ"), ("河野", "コウノ"), ("東", "アズマ"), ("神田", "カンダ"),
)  # fmt: skip
_GIVEN_MALE = (
    ("太郎", "タロウ"), ("一郎", "イチロウ"), ("健太", "ケンタ"), ("翔太", "ショウタ"),
    ("大輔", "ダイスケ"), ("拓也", "タクヤ"), ("直樹", "ナオキ"), ("誠", "マコト"),
    ("浩二", "コウジ"), ("蓮", "レン"), ("悠真", "ユウマ"), ("陽翔", "ハルト"),
    ("大翔", "ヒロト"), ("健一", "ケンイチ"), ("和夫", "カズオ"), ("正男", "マサオ"),
    ("茂", "シゲル"), ("博", "ヒロシ"), ("隆", "タカシ"), ("勇気", "ユウキ"),
    ("俊介", "シュンスケ"), ("雄一", "ユウイチ"), ("﨑人", "サキト"), ("修", "オサム"),
)  # fmt: skip
_GIVEN_FEMALE = (
    ("花子", "ハナコ"), ("陽子", "ヨウコ"), ("恵子", "ケイコ"), ("幸子", "サチコ"),
    ("美咲", "ミサキ"), ("愛", "アイ"), ("結衣", "ユイ"), ("陽菜", "ヒナ"),
    ("さくら", "サクラ"), ("直美", "ナオミ"), ("由美子", "ユミコ"), ("裕子", "ユウコ"),
    ("真由美", "マユミ"), ("明美", "アケミ"), ("優子", "ユウコ"), ("千尋", "チヒロ"),
    ("葵", "アオイ"), ("美穂", "ミホ"), ("久美子", "クミコ"), ("和子", "カズコ"),
)  # fmt: skip
# (氏名, カナ, 言語, 性別) of foreign residents.
_FOREIGN = (
    ("NGUYEN VAN AN", "グエン　バン　アン", "vi", "1"),
    ("TRAN THI LAN", "チャン　ティ　ラン", "vi", "2"),
    ("SILVA JOAO", "シルバ　ジョアン", "pt", "1"),
    ("SANTOS MARIA", "サントス　マリア", "pt", "2"),
    ("王　偉", "ワン　ウェイ", "zh", "1"),
    ("李　娜", "リ　ナ", "zh", "2"),
    ("金　民俊", "キム　ミンジュン", "ko", "1"),
    ("朴　智恩", "パク　チウン", "ko", "2"),
    ("SMITH JOHN", "スミス　ジョン", "en", "1"),
    ("BROWN EMILY", "ブラウン　エミリー", "en", "2"),
)
_TOWNS = (
    "夢見町", "星見台", "霞ヶ丘", "朝凪町", "月影町", "虹ヶ浜",
    "若葉台", "白樺町", "風待町", "鈴鳴町", "花咲台", "雲雀野",
)  # fmt: skip
_BUILDINGS = (
    "メゾン架空", "ハイツ星見", "グランドール霞ヶ丘", "コーポ朝凪①", "㈱架空商事社宅",
    "架空荘", "サンハイツ②", "パレス月影③号棟", "ロイヤル虹ヶ浜",
)  # fmt: skip
_FORMULA_NAMES = ("=1+1", '=HYPERLINK("http://example.invalid","{name}")', "={name}")
_IMPOSSIBLE_DATES = (
    "平成31年5月1日",
    "H31.5.31",
    "令和元年4月30日",
    "4310531",
    "令和3年2月30日",
    "R5.2.29",
    "昭和64年1月20日",
)

_FULL_WIDTH = str.maketrans("0123456789-,", "０１２３４５６７８９－，")
_HALF_WIDTH_KANA = {
    unicodedata.normalize("NFKC", chr(code)): chr(code) for code in range(0xFF66, 0xFF9E)
} | {"\u3099": "\uff9e", "\u309a": "\uff9f", "\u3000": " "}


def _half_width(katakana: str) -> str:
    decomposed = unicodedata.normalize("NFD", katakana)
    return "".join(_HALF_WIDTH_KANA.get(char, char) for char in decomposed)


def _hiragana(katakana: str) -> str:
    return "".join(chr(ord(c) - 0x60) if "ァ" <= c <= "ヶ" else c for c in katakana)


# --------------------------------------------------------------------------- receivable kinds

_END = 0  # day 0 in a schedule: the last day of the month


@dataclass(frozen=True)
class _Kind:
    name: str
    section: str
    code: int
    weight: int
    schedule: tuple[tuple[int, int], ...]  # (month, day) of each 期's due date
    amount: tuple[int, int, int]  # randrange(low, high, step)
    late_fee: bool


_MONTHLY = tuple((month, _END) for month in (4, 5, 6, 7, 8, 9, 10, 11, 12, 1, 2, 3))
_EIGHT = tuple((month, _END) for month in (7, 8, 9, 10, 11, 12, 1, 2))
_KINDS = (
    _Kind("市県民税", "納税課", 1, 30, ((6, _END), (8, _END), (10, _END), (1, _END)),
          (5_000, 150_000, 100), True),
    _Kind("固定資産税", "納税課", 2, 15, ((4, _END), (7, _END), (12, 25), (2, _END)),
          (8_000, 250_000, 100), True),
    _Kind("軽自動車税", "納税課", 3, 8, ((5, _END),), (2_000, 10_900, 100), True),
    _Kind("国民健康保険税", "国保年金課", 4, 20, _EIGHT, (3_000, 60_000, 100), True),
    _Kind("後期高齢者医療保険料", "国保年金課", 5, 5, _EIGHT, (2_000, 20_000, 100), False),
    _Kind("介護保険料", "介護保険課", 6, 6, _EIGHT, (2_000, 15_000, 100), False),
    _Kind("保育料", "こども課", 7, 6, _MONTHLY, (5_000, 50_000, 10), False),
    _Kind("学校給食費", "学校教育課", 8, 4, _MONTHLY, (4_000, 6_000, 10), False),
    _Kind("市営住宅使用料", "住宅課", 9, 3, _MONTHLY, (15_000, 60_000, 100), False),
    _Kind("下水道使用料", "上下水道課", 10, 3, _MONTHLY[1::2], (2_000, 12_000, 1), False),
)  # fmt: skip
_KIND_WEIGHTS = list(accumulate(kind.weight for kind in _KINDS))


def _last_day(year: int, month: int) -> int:
    following = date(year + (month == 12), month % 12 + 1, 1)
    return (following - timedelta(days=1)).day


def _due_date(kind: _Kind, fiscal_year: int, period: int) -> date:
    month, day = kind.schedule[period - 1]
    year = fiscal_year if month >= 4 else fiscal_year + 1
    due = date(year, month, day or _last_day(year, month))
    while due.weekday() >= 5:  # a due date on a weekend moves to the next Monday
        due += timedelta(days=1)
    return due


def _fiscal_year_of(day: date) -> int:
    return day.year if day.month >= 4 else day.year - 1


# --------------------------------------------------------------------------- text forms

_ERAS = (  # name, letter, numeric code, offset, first day
    ("令和", "R", 5, 2018, date(2019, 5, 1)),
    ("平成", "H", 4, 1988, date(1989, 1, 8)),
    ("昭和", "S", 3, 1925, date(1926, 12, 25)),
    ("大正", "T", 2, 1911, date(1912, 7, 30)),
    ("明治", "M", 1, 1867, date(1873, 1, 1)),
)


def _era(day: date) -> tuple[str, str, int, int]:
    for name, letter, code, offset, first in _ERAS:
        if day >= first:
            return name, letter, code, day.year - offset
    raise ValueError(f"no era for {day}")


def _kanji_date(day: date) -> str:
    name, _, _, year = _era(day)
    return f"{name}{'元' if year == 1 else year}年{day.month}月{day.day}日"


def _letter_date(day: date) -> str:
    _, letter, _, year = _era(day)
    return f"{letter}{year}.{day.month}.{day.day}"


def _letter_padded(day: date) -> str:
    _, letter, _, year = _era(day)
    return f"{letter}{year:02d}.{day.month:02d}.{day.day:02d}"


def _letter_slashes(day: date) -> str:
    _, letter, _, year = _era(day)
    return f"{letter}{year:02d}/{day.month:02d}/{day.day:02d}"


def _era_code(day: date) -> str:
    _, _, code, year = _era(day)
    return f"{code}{year:02d}{day.month:02d}{day.day:02d}"


_DATE_FORMS: tuple[tuple[int, Callable[[date], str]], ...] = (
    (20, date.isoformat),
    (12, lambda d: f"{d.year}/{d.month}/{d.day}"),
    (8, lambda d: d.strftime("%Y%m%d")),
    (14, _kanji_date),
    (10, _letter_date),
    (10, _letter_padded),
    (5, _letter_slashes),
    (8, _era_code),
    (3, lambda d: _kanji_date(d).translate(_FULL_WIDTH)),
    (3, lambda d: f"{d.year}/{d.month:02d}/{d.day:02d}".translate(_FULL_WIDTH)),
    (2, lambda d: _letter_date(d).lower().replace(".", "/")),
    (2, lambda d: f"{d.year}年{d.month}月{d.day}日"),
)
_DATE_WEIGHTS = list(accumulate(weight for weight, _ in _DATE_FORMS))

_AMOUNT_FORMS: tuple[tuple[int, Callable[[int], str]], ...] = (
    (50, str),
    (25, lambda n: f"{n:,}"),
    (10, lambda n: f"{n:,}円"),
    (7, lambda n: f"{n:,}".translate(_FULL_WIDTH)),
    (4, lambda n: f"￥{n:,}"),  # full-width yen: U+00A5 ¥ does not exist in CP932
    (1, lambda n: f"\\{n:,}"),  # CP932 0x5C, shown as ¥ by Japanese fonts
    (3, lambda n: f"{n}円".translate(_FULL_WIDTH)),
)
_AMOUNT_WEIGHTS = list(accumulate(weight for weight, _ in _AMOUNT_FORMS))

# (area code, digits of the local exchange); Sapporo's 011 is left out because many of its
# exchanges are unassigned.
_AREA_CODES = (
    ("03", 4), ("06", 4), ("045", 3), ("052", 3), ("092", 3),
    ("022", 3), ("0263", 2), ("0476", 2), ("0994", 2), ("0466", 2),
)  # fmt: skip
# Only characters that survive a CP932 round trip: U+2212 − would come back as U+FF0D －.
_PHONE_HYPHENS = ("-", "-", "-", "-", "－", "‐", "ー", "ｰ", " ")


# --------------------------------------------------------------------------- people


@dataclass(frozen=True)
class _Identity:
    name: str
    kana: str  # canonical full-width katakana
    language: str
    family: tuple[str, str]  # (family name, its kana); blank for foreign residents
    gender: str


@dataclass
class _Person:
    seq: int
    person_id: str
    name: str
    kana: str
    family: tuple[str, str]
    birth: date
    gender: str
    postal: str
    address: str
    phones: list[str]
    checked: str
    language: str
    installment: str
    transfer: str
    stopped: str
    protected: str


class _Generator:
    """Draws people and receivables from one random.Random, in a fixed order."""

    def __init__(self, seed: int, as_of: date) -> None:
        self.rng = random.Random(seed)
        self.as_of = as_of
        self.fiscal_year = _fiscal_year_of(as_of)
        self.previous: _Person | None = None

    # ----------------------------------------------------------------- formatting

    def date_text(self, day: date) -> str:
        form = self.rng.choices(_DATE_FORMS, cum_weights=_DATE_WEIGHTS)[0][1]
        return form(day)

    def amount_text(self, amount: int) -> str:
        form = self.rng.choices(_AMOUNT_FORMS, cum_weights=_AMOUNT_WEIGHTS)[0][1]
        return form(amount)

    def fiscal_year_text(self, year: int) -> str:
        name, letter, _, era_year = _era(date(year, 4, 1) if year != 2019 else date(2019, 5, 1))
        choice = self.rng.random()
        if choice < 0.3:
            return f"{name}{'元' if era_year == 1 else era_year}年度"
        if choice < 0.5:
            return f"{letter}{era_year}"
        if choice < 0.65:
            return f"{letter}{era_year:02d}"
        if choice < 0.85:
            return str(year)
        return f"{year}年度" if choice < 0.95 else f"{name}{era_year}"

    def phone_text(self, groups: Sequence[str]) -> str:
        roll = self.rng.random()
        if roll < 0.2:
            return "".join(groups)
        if roll < 0.3:
            return "－".join(groups).translate(_FULL_WIDTH)
        if roll < 0.35 and len(groups) == 3:
            return f"{groups[0]}({groups[1]}){groups[2]}"
        return self.rng.choice(_PHONE_HYPHENS).join(groups)

    # ----------------------------------------------------------------- phones

    def digits(self, count: int) -> str:
        return str(self.rng.randint(2, 9)) + "".join(
            str(self.rng.randint(0, 9)) for _ in range(count - 1)
        )

    def mobile(self) -> list[str]:
        return [
            self.rng.choice(("090", "090", "080", "080", "070")),
            self.digits(4),
            self.digits(4),
        ]

    def fixed(self) -> list[str]:
        area, length = self.rng.choice(_AREA_CODES)
        return [area, self.digits(length), self.digits(4)]

    def phone(self) -> str:
        roll = self.rng.random()
        if roll < 0.55:
            groups = self.mobile()
        elif roll < 0.83:
            groups = self.fixed()
        elif roll < 0.88:
            groups = ["050", self.digits(4), self.digits(4)]
        elif roll < 0.91:
            toll_free = self.rng.choice((("0120", 3), ("0800", 4)))
            groups = [toll_free[0], self.digits(3), self.digits(toll_free[1])]
        elif roll < 0.92:
            groups = ["0570", self.digits(3), self.digits(3)]
        elif roll < 0.95:
            groups = ["0180", self.digits(2), self.digits(4)]
        else:
            groups = self.mobile()[:2] + [self.digits(3)]  # one digit short
        return self.phone_text(groups)

    def phones(self) -> list[str]:
        first = self.phone() if self.rng.random() < 0.82 else ""
        second = self.phone() if self.rng.random() < 0.3 else ""
        return [first, second] if first else [second, ""]

    def checked(self, phones: list[str]) -> str:
        if not phones[0] or self.rng.random() < 0.04:
            return ""
        if self.rng.random() < 0.12:
            age = self.rng.randint(5 * 366 + 30, 10 * 365)  # stale: over five years old
        else:
            age = self.rng.randint(0, 5 * 365 - 30)
        return self.date_text(self.as_of - timedelta(days=age))

    # ----------------------------------------------------------------- people

    def kana_text(self, kana: str) -> str:
        roll = self.rng.random()
        if roll < 0.02:
            return ""
        if roll < 0.12:
            return _half_width(kana)
        if roll < 0.18:
            return _hiragana(kana)
        return kana if roll < 0.95 else kana.replace("\u3000", " ")

    def name_text(self, family: str, given: str) -> str:
        roll = self.rng.random()
        separator = "\u3000" if roll < 0.85 else (" " if roll < 0.97 else "")
        return f"{family}{separator}{given}"

    def address(self) -> tuple[str, str]:
        rng = self.rng
        town = rng.randrange(len(_TOWNS))
        block = (rng.randint(1, 5), rng.randint(1, 30), rng.randint(1, 20))
        postal = f"000-{town + 1:02d}{block[0]:02d}"
        if rng.random() < 0.5:
            street = "{}丁目{}番{}号".format(*block)
        else:
            street = rng.choice(("-", "－", "ー", "‐")).join(map(str, block))
        address = f"架空県架空市{_TOWNS[town]}{street}"
        if rng.random() < 0.3:
            address += f"\u3000{rng.choice(_BUILDINGS)}{rng.randint(1, 5)}0{rng.randint(1, 9)}号室"
        if rng.random() < 0.1:
            address = address.translate(_FULL_WIDTH)
        return self.postal_text(postal), address

    def postal_text(self, postal: str) -> str:
        roll = self.rng.random()
        if roll < 0.6:
            return postal
        if roll < 0.8:
            return postal.replace("-", "")
        return "〒" + postal if roll < 0.9 else postal.translate(_FULL_WIDTH)

    def birth(self) -> date:
        age_days = int(self.rng.triangular(18, 100, 45) * 365.25)
        return self.as_of - timedelta(days=age_days)

    def identity(self) -> _Identity:
        rng = self.rng
        if rng.random() < 0.03:
            name, kana, language, gender = rng.choice(_FOREIGN)
            return _Identity(name, kana, language if rng.random() < 0.8 else "", ("", ""), gender)
        family = rng.choice(_FAMILY)
        return self.family_member(family, "ja" if rng.random() < 0.05 else "")

    def family_member(self, family: tuple[str, str], language: str) -> _Identity:
        gender = self.rng.choice(("1", "2"))
        given = self.rng.choice(_GIVEN_MALE if gender == "1" else _GIVEN_FEMALE)
        name = self.name_text(family[0], given[0])
        return _Identity(name, f"{family[1]}\u3000{given[1]}", language, family, gender)

    def gender_text(self, gender: str) -> str:
        roll = self.rng.random()
        if roll < 0.85:
            return gender
        return ("男" if gender == "1" else "女") if roll < 0.95 else ""

    def person_id(self, seq: int) -> str:
        text = f"{seq * 10 + self.rng.randrange(10):010d}"
        return text.translate(_FULL_WIDTH) if self.rng.random() < 0.01 else text

    def flags(self) -> tuple[str, str, str, str]:
        rng = self.rng
        roll = rng.random()
        installment = "履行中" if roll < 0.04 else ("不履行" if roll < 0.055 else "")
        transfer = "有" if rng.random() < 0.12 else "無"
        stopped = "1" if rng.random() < 0.01 else ""
        protected = "1" if rng.random() < 0.005 else ""
        return installment, transfer, stopped, protected

    def person(self, seq: int) -> _Person:
        previous = self.previous
        if previous and previous.family[0] and previous.phones[0] and self.rng.random() < 0.03:
            who = self.family_member(previous.family, previous.language)
            postal, address = previous.postal, previous.address
            phones = [previous.phones[0], ""]  # a household sharing the home phone
        else:
            who = self.identity()
            postal, address = self.address()
            phones = self.phones()
        installment, transfer, stopped, protected = self.flags()
        person = _Person(
            seq=seq,
            person_id=self.person_id(seq),
            name=who.name,
            kana=self.kana_text(who.kana),
            family=who.family,
            birth=self.birth(),
            gender=self.gender_text(who.gender),
            postal=postal,
            address=address,
            phones=phones,
            checked=self.checked(phones),
            language=who.language,
            installment=installment,
            transfer=transfer,
            stopped=stopped,
            protected=protected,
        )
        self.previous = person
        return person

    # ----------------------------------------------------------------- receivables

    def due_choice(self, kind: _Kind) -> tuple[int, int]:
        """(fiscal year, 期) of one receivable: mostly current and past due."""
        rng = self.rng
        roll = rng.random()
        periods = range(1, len(kind.schedule) + 1)
        if roll < 0.7:
            past = [p for p in periods if _due_date(kind, self.fiscal_year, p) < self.as_of]
            if past:
                return self.fiscal_year, rng.choice(past)
        elif roll < 0.8:
            future = [p for p in periods if _due_date(kind, self.fiscal_year, p) > self.as_of]
            if future:
                return self.fiscal_year, rng.choice(future)
            return self.fiscal_year + 1, rng.choice(periods)
        return self.fiscal_year - rng.randint(1, 4), rng.choice(periods)

    def late_fee(self, kind: _Kind, amount: int, due: date) -> int:
        days = (self.as_of - due).days
        if not kind.late_fee or days <= 30 or amount < 2_000:
            return 0
        fee = amount * 87 * days // (1000 * 365) // 100 * 100  # 8.7% a year, truncated
        return fee if fee >= 1_000 else 0

    def demand_text(self, due: date) -> str:
        demand = due + timedelta(days=self.rng.randint(15, 20))
        return self.date_text(demand) if demand <= self.as_of else ""

    def period_text(self, period: int) -> str:
        roll = self.rng.random()
        if roll < 0.85:
            return str(period)
        return f"{period:02d}" if roll < 0.95 else str(period).translate(_FULL_WIDTH)

    def receivable(
        self, person: _Person, kind: _Kind, fiscal_year: int, period: int
    ) -> dict[str, str]:
        due = _due_date(kind, fiscal_year, period)
        amount = self.rng.randrange(*kind.amount)
        return {
            "所管課": kind.section,
            "債権種別": kind.name,
            "年度": self.fiscal_year_text(fiscal_year),
            "期別": self.period_text(period),
            "通知書番号": f"{fiscal_year}{kind.code:02d}{person.seq:08d}",
            "納期限": self.date_text(due),
            "未納額": self.amount_text(amount),
            "延滞金": self.amount_text(self.late_fee(kind, amount, due)),
            "督促日": self.demand_text(due) if due < self.as_of else "",
        }

    def receivables(self, person: _Person) -> list[dict[str, str]]:
        count = self.rng.choices((1, 2, 3, 4), cum_weights=(50, 78, 92, 100))[0]
        seen: set[tuple[int, int, int]] = set()
        items = []
        for _ in range(count):
            kind = self.rng.choices(_KINDS, cum_weights=_KIND_WEIGHTS)[0]
            fiscal_year, period = self.due_choice(kind)
            if (kind.code, fiscal_year, period) not in seen:
                seen.add((kind.code, fiscal_year, period))
                items.append(self.receivable(person, kind, fiscal_year, period))
        return items

    # ----------------------------------------------------------------- rows

    def person_columns(self, person: _Person) -> dict[str, str]:
        return {
            "宛名番号": person.person_id,
            "氏名": person.name,
            "氏名カナ": person.kana,
            "生年月日": self.date_text(person.birth),
            "性別": person.gender,
            "郵便番号": person.postal,
            "住所": person.address,
            "電話番号1": person.phones[0],
            "電話番号2": person.phones[1],
            "電話確認日": person.checked,
            "分納": person.installment,
            "口座振替": person.transfer,
            "催告停止": person.stopped,
            "支援措置": person.protected,
            "言語": person.language,
        }

    def spoil_row(self, row: dict[str, str]) -> str | None:
        roll = self.rng.random()
        if roll >= 0.012:
            return None
        if roll < 0.004:
            row["納期限"] = ""
            return "missing_due_date"
        if roll < 0.008:
            amount = self.rng.randrange(100, 50_000, 100)
            row["未納額"] = self.rng.choice(("-", "△", "▲")) + self.amount_text(amount)
            return "negative_amount"
        row["納期限"] = self.rng.choice(_IMPOSSIBLE_DATES)
        return "impossible_date"

    def formula_name(self, person: _Person) -> bool:
        if self.rng.random() >= 0.003:
            return False
        person.name = self.rng.choice(_FORMULA_NAMES).format(name=person.name)
        return True

    def rows(self, person: _Person) -> Iterator[LabelledRow]:
        formula = self.formula_name(person)
        items = self.receivables(person)
        conflict = not formula and len(items) > 1 and self.rng.random() < 0.01
        for index, item in enumerate(items):
            row = self.person_columns(person) | item
            if formula:
                yield LabelledRow(row, "formula_name")
            elif conflict and index == len(items) - 1:
                shift = timedelta(days=self.rng.choice((1, 31, 365, 3652)))
                row["生年月日"] = self.date_text(person.birth - shift)
                yield LabelledRow(row, "birth_date_conflict")
            else:
                yield LabelledRow(row, self.spoil_row(row))


# --------------------------------------------------------------------------- public API


def generate_labelled_rows(persons: int, seed: int, as_of: date) -> Iterator[LabelledRow]:
    """Rows of an export for ``persons`` people, each labelled with its deliberate defect."""
    generator = _Generator(seed, as_of)
    for seq in range(1, persons + 1):
        yield from generator.rows(generator.person(seq))


def generate_rows(persons: int, seed: int, as_of: date) -> Iterator[dict[str, str]]:
    """Rows of an export (Japanese headers as in :data:`HEADERS`) for ``persons`` people."""
    for labelled in generate_labelled_rows(persons, seed, as_of):
        yield labelled.row


def write_export(
    path: Path,
    persons: int,
    seed: int,
    as_of: date,
    encoding: str = "cp932",
    *,
    max_rows: int | None = None,
) -> ExportStats:
    """Stream an export to ``path``: header row, CRLF line ends, csv-module quoting.

    ``max_rows`` stops after that many receivable rows (the last person may lose some of
    theirs); ``persons`` then counts the people started. Nothing is held in memory."""
    rows = 0
    started = 0
    bad: Counter[str] = Counter()
    with path.open("w", encoding=encoding, newline="", buffering=1 << 20) as stream:
        writer = csv.writer(stream, lineterminator="\r\n")
        writer.writerow(HEADERS)
        generator = _Generator(seed, as_of)
        for seq in range(1, persons + 1):
            if max_rows is not None and rows >= max_rows:
                break
            started = seq
            for labelled in generator.rows(generator.person(seq)):
                if max_rows is not None and rows >= max_rows:
                    break
                writer.writerow([labelled.row[header] for header in HEADERS])
                rows += 1
                if labelled.bad is not None:
                    bad[labelled.bad] += 1
    return ExportStats(rows_written=rows, persons=started, bad_rows=dict(sorted(bad.items())))
