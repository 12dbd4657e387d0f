"""Pure normalizers for the fields of an arrears export (DOMAIN.md section 3).

Every function takes the raw cell text and returns a canonical value, or raises
:class:`NormalizationError` with a stable snake_case ``code`` and a Japanese message that
names the field and quotes the offending value. Nothing here does I/O.

Decisions worth knowing:

* 明治 dates are accepted from 明治6年1月1日 (1873-01-01) on. Japan adopted the Gregorian
  calendar that day; earlier 明治 dates are lunisolar calendar dates, and reading them as
  Gregorian month/day would silently give a wrong date, so they are rejected
  (``era_out_of_range``). The other eras use their exact first and last days.
* Gregorian years must lie in 1868..2999 (``invalid_date`` otherwise).
* An 8-digit value starting with ``0`` and an era digit (``05020514``) is read as a
  2-digit era code; any other 8-digit value is ``YYYYMMDD``.
* A fiscal year written in an era is accepted when the fiscal year (April to March)
  overlaps the era: 平成31年度 and 令和元年度 are both 2019; 平成32年度 is rejected.
* Phone numbers must be Japanese (+81); foreign numbers are ``invalid_phone``.
* Names are not NFKC-folded: NFKC rewrites CJK compatibility ideographs (e.g. U+FA19 神 to
  U+795E 神) that appear in CP932 exports; only half-width katakana are widened.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Literal, TypeVar

import phonenumbers
from phonenumbers import PhoneNumberType

from kernel.errors import InvalidInput

__all__ = [
    "ERROR_CODES",
    "NormalizationError",
    "Phone",
    "PhoneKind",
    "normalize_kana",
    "normalize_name",
    "normalize_person_id",
    "normalize_phone",
    "normalize_postal_code",
    "normalize_text",
    "parse_amount",
    "parse_date",
    "parse_fiscal_year",
    "parse_gender",
    "parse_unpaid_amount",
]

ERROR_CODES = frozenset(
    {
        "invalid_date",
        "era_out_of_range",
        "impossible_date",
        "invalid_fiscal_year",
        "invalid_amount",
        "negative_amount",
        "invalid_phone",
        "not_a_phone",
        "invalid_person_id",
        "invalid_kana",
        "invalid_name",
        "invalid_postal_code",
        "invalid_gender",
    }
)


class NormalizationError(InvalidInput, ValueError):
    """A field value that cannot be normalized; ``code`` is stable, ``message_ja`` is for people."""

    def __init__(self, code: str, message_ja: str) -> None:
        super().__init__(f"{code}: {message_ja}")
        self.code = code
        self.message_ja = message_ja


# The cached cores return either a value or the (code, message) of the error, so that a
# cache hit re-raises a fresh exception instead of a shared, traceback-laden instance.
_Failure = tuple[str, str]
_T = TypeVar("_T")
_CACHE_SIZE = 65_536


def _unwrap(result: _T | _Failure) -> _T:
    if isinstance(result, tuple):
        raise NormalizationError(*result)
    return result


def _capture(function: Callable[[str], _T], value: str) -> _T | _Failure:
    try:
        return function(value)
    except NormalizationError as error:
        return (error.code, error.message_ja)


def _quote(value: str) -> str:
    shown = value if len(value) <= 40 else value[:40] + "…"
    return f"「{shown}」"


# --------------------------------------------------------------------------- text

_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))
# Dash-like characters other than the katakana prolonged sound mark (NFKC keeps all of
# these except U+FF0D, U+FE63 and U+2011, which it turns into '-' or U+2010).
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2043\u2212\ufe58\ufe63\uff0d"
_ASCII_ALNUM = "0-9A-Za-z"
_DASH_NEAR_ASCII = re.compile(rf"(?<=[{_ASCII_ALNUM}])[{_DASHES}]|[{_DASHES}](?=[{_ASCII_ALNUM}])")
_PROLONGED_BETWEEN_ASCII = re.compile(rf"(?<=[{_ASCII_ALNUM}])\u30fc(?=[{_ASCII_ALNUM}])")


def normalize_text(value: str) -> str:
    """NFKC, trim, one space per whitespace run, dashes next to digits/ASCII become '-'.

    The katakana prolonged sound mark ー (and half-width ｰ) becomes '-' only between two
    ASCII letters or digits (``090ー1234``); inside kana words (``コーヒー``) it is kept.
    """
    if value.isascii() and value.isalnum():
        return value  # nothing to fold, trim or rewrite (codes, numbers: the common case)
    text = unicodedata.normalize("NFKC", value.translate(_INVISIBLE))
    text = " ".join(text.split())
    text = _PROLONGED_BETWEEN_ASCII.sub("-", text)
    return _DASH_NEAR_ASCII.sub("-", text)


def _compact(value: str) -> str:
    """normalize_text without any whitespace, letters upper-cased (for codes and numbers)."""
    return normalize_text(value).replace(" ", "").upper()


# --------------------------------------------------------------------------- eras


@dataclass(frozen=True)
class _Era:
    name: str
    letter: str
    digit: str
    offset: int  # Gregorian year of the era's year 1, minus one
    first: date
    last: date | None


_ERAS = (
    _Era("明治", "M", "1", 1867, date(1873, 1, 1), date(1912, 7, 29)),
    _Era("大正", "T", "2", 1911, date(1912, 7, 30), date(1926, 12, 24)),
    _Era("昭和", "S", "3", 1925, date(1926, 12, 25), date(1989, 1, 7)),
    _Era("平成", "H", "4", 1988, date(1989, 1, 8), date(2019, 4, 30)),
    _Era("令和", "R", "5", 2018, date(2019, 5, 1), None),
)
_ERA_BY_TOKEN = {
    token: era for era in _ERAS for token in (era.name, era.name[0], era.letter, era.digit)
}
_ERA_TOKEN = "明治|大正|昭和|平成|令和|[明大昭平令MTSHR]"
_YEAR_RANGE = range(1868, 3000)


def _era_year(era: _Era, text: str, field: str, raw: str) -> int:
    year = 1 if text == "元" else int(text)
    if year < 1:
        raise NormalizationError(
            "era_out_of_range", f"{field}{_quote(raw)}の{era.name}{year}年は存在しません"
        )
    return era.offset + year


# --------------------------------------------------------------------------- dates

_TIME_SUFFIX = re.compile(r"(?:\s+|T)[0-9]{1,2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?$")
_SEP_Y = "(?:年|[./-])"
_SEP_M = "(?:月|[./-])"
_D = "([0-9]{1,2})"
_ERA_DATE = re.compile(rf"({_ERA_TOKEN})(元|[0-9]{{1,2}}){_SEP_Y}{_D}{_SEP_M}{_D}日?")
_ERA_COMPACT = re.compile(r"([MTSHR])([0-9]{2})([0-9]{2})([0-9]{2})")
_ERA_CODE = re.compile(r"0?([1-5])([0-9]{2})([0-9]{2})([0-9]{2})")
_GREGORIAN = re.compile(rf"([0-9]{{4}}){_SEP_Y}{_D}{_SEP_M}{_D}日?")
_GREGORIAN_COMPACT = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})")


def _clean_date(value: str) -> str:
    text = normalize_text(value)
    return _TIME_SUFFIX.sub("", text).replace(" ", "").upper()


def _make_date(year: int, month: int, day: int, raw: str) -> date:
    try:
        return date(year, month, day)
    except ValueError:
        raise NormalizationError(
            "impossible_date", f"日付{_quote(raw)}は存在しない日付です({month}月{day}日)"
        ) from None


def _check_in_era(era: _Era, result: date, raw: str) -> date:
    if result < era.first or (era.last is not None and result > era.last):
        end = "" if era.last is None else era.last.isoformat()
        raise NormalizationError(
            "era_out_of_range",
            f"日付{_quote(raw)}は{era.name}として扱える期間({era.first.isoformat()}〜{end})外です",
        )
    return result


def _era_date(groups: tuple[str, ...], raw: str) -> date:
    token, year, month, day = groups
    era = _ERA_BY_TOKEN[token]
    gregorian_year = _era_year(era, year, "日付", raw)
    return _check_in_era(era, _make_date(gregorian_year, int(month), int(day), raw), raw)


def _gregorian_date(groups: tuple[str, ...], raw: str) -> date:
    year, month, day = groups
    if int(year) not in _YEAR_RANGE:
        raise NormalizationError(
            "invalid_date", f"日付{_quote(raw)}の年{year}は対応範囲(1868〜2999年)外です"
        )
    return _make_date(int(year), int(month), int(day), raw)


def _parse_date_uncached(value: str) -> date:
    text = _clean_date(value)
    for pattern in (_ERA_DATE, _ERA_COMPACT, _ERA_CODE):
        if match := pattern.fullmatch(text):
            return _era_date(match.groups(), value)
    for pattern in (_GREGORIAN, _GREGORIAN_COMPACT):
        if match := pattern.fullmatch(text):
            return _gregorian_date(match.groups(), value)
    raise NormalizationError("invalid_date", f"日付{_quote(value)}を日付として解釈できません")


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _parse_date_cached(value: str) -> date | _Failure:
    return _capture(_parse_date_uncached, value)


def parse_date(value: str) -> date:
    """Read a date in any export form: ISO, ``2020/5/14``, ``20200514``, 和暦 (令和2年5月14日,
    令和元年, R2.5.14, R02.05.14, H22/01/22), numeric era codes (``5020514``), full-width."""
    return _unwrap(_parse_date_cached(value))


# --------------------------------------------------------------------------- fiscal years

_FISCAL_ERA = re.compile(rf"({_ERA_TOKEN})(元|[0-9]{{1,2}})(?:年度|年)?")
_FISCAL_GREGORIAN = re.compile(r"([0-9]{4})(?:年度|年)?")


def _fiscal_in_era(era: _Era, year: int, raw: str) -> int:
    starts, ends = date(year, 4, 1), date(year + 1, 3, 31)
    if ends < era.first or (era.last is not None and starts > era.last):
        raise NormalizationError(
            "era_out_of_range", f"年度{_quote(raw)}は{era.name}の期間に含まれません"
        )
    return year


def _parse_fiscal_year_uncached(value: str) -> int:
    text = _compact(value)
    if match := _FISCAL_ERA.fullmatch(text):
        era = _ERA_BY_TOKEN[match.group(1)]
        return _fiscal_in_era(era, _era_year(era, match.group(2), "年度", value), value)
    if (match := _FISCAL_GREGORIAN.fullmatch(text)) and int(match.group(1)) in _YEAR_RANGE:
        return int(match.group(1))
    raise NormalizationError("invalid_fiscal_year", f"年度{_quote(value)}を解釈できません")


@functools.lru_cache(maxsize=1024)
def _parse_fiscal_year_cached(value: str) -> int | _Failure:
    return _capture(_parse_fiscal_year_uncached, value)


def parse_fiscal_year(value: str) -> int:
    """The Gregorian year of the April a fiscal year (年度) starts in: ``R7`` -> 2025."""
    return _unwrap(_parse_fiscal_year_cached(value))


# --------------------------------------------------------------------------- kana

_SPACING_SOUND_MARKS = {0x309B: 0x3099, 0x309C: 0x309A}  # ゛゜ -> combining, so NFKC composes
_HIRAGANA_TO_KATAKANA = {code: code + 0x60 for code in range(0x3041, 0x3097)} | {
    0x309D: 0x30FD,
    0x309E: 0x30FE,
}
_KATAKANA = "\u30a1-\u30fa\u30fc"
_DASH_AFTER_KANA = re.compile(rf"(?<=[{_KATAKANA}])[-{_DASHES}]")
_KANA_WORD = re.compile("[\u30a1-\u30fe\u31f0-\u31ff]+")


def normalize_kana(value: str) -> str:
    """Full-width katakana reading, words separated by one U+3000 space.

    Hiragana and half-width katakana (``ｶﾞ``, ``ﾊﾟ``) are converted; a dash right after a
    kana is read as the prolonged sound mark ー.
    """
    text = value.translate(_INVISIBLE).translate(_SPACING_SOUND_MARKS)
    text = unicodedata.normalize("NFKC", text).translate(_HIRAGANA_TO_KATAKANA)
    words = _DASH_AFTER_KANA.sub("ー", text).split()
    if not words:
        raise NormalizationError("invalid_kana", "氏名カナが空です")
    if stray := "".join(_KANA_WORD.sub("", word) for word in words):
        raise NormalizationError(
            "invalid_kana",
            f"氏名カナ{_quote(value)}にカナ以外の文字{_quote(stray)}が含まれています",
        )
    return "\u3000".join(words)


# --------------------------------------------------------------------------- names

_HALF_WIDTH_KATAKANA = re.compile("[\uff61-\uff9f]+")


def _widen_katakana(text: str) -> str:
    return _HALF_WIDTH_KATAKANA.sub(lambda m: unicodedata.normalize("NFKC", m.group()), text)


def normalize_name(value: str) -> str:
    """Trimmed kanji name, words separated by one U+3000 space; characters are not folded."""
    words = _widen_katakana(value.translate(_INVISIBLE)).split()
    if not words:
        raise NormalizationError("invalid_name", "氏名が空です")
    if any(unicodedata.category(char) == "Cc" for word in words for char in word):
        raise NormalizationError("invalid_name", f"氏名{_quote(value)}に制御文字が含まれています")
    return "\u3000".join(words)


# --------------------------------------------------------------------------- phones


class PhoneKind(StrEnum):
    MOBILE = "MOBILE"
    FIXED_LINE = "FIXED_LINE"
    VOIP = "VOIP"
    TOLL_FREE = "TOLL_FREE"
    OTHER = "OTHER"


@dataclass(frozen=True)
class Phone:
    e164: str
    kind: PhoneKind


_PHONE_KINDS = {
    PhoneNumberType.MOBILE: PhoneKind.MOBILE,
    PhoneNumberType.FIXED_LINE: PhoneKind.FIXED_LINE,
    PhoneNumberType.VOIP: PhoneKind.VOIP,
    PhoneNumberType.TOLL_FREE: PhoneKind.TOLL_FREE,
    PhoneNumberType.UAN: PhoneKind.OTHER,
}
_NOT_SUBSCRIBER_TYPES = {
    PhoneNumberType.PREMIUM_RATE,
    PhoneNumberType.PAGER,
    PhoneNumberType.SHARED_COST,
    PhoneNumberType.PERSONAL_NUMBER,
    PhoneNumberType.VOICEMAIL,
}
_PHONE_SEPARATORS = dict.fromkeys(map(ord, f"-{_DASHES}\u30fc()[]. ・"))
_PHONE_CHARS = re.compile(r"\+?[0-9]{1,17}")
_SERVICE_NUMBER = re.compile(r"1[0-9]{2,3}")  # 110, 119, 117, 171, 188 ...


_NOT_A_PHONE = "は個人の連絡先に使えない番号(特番・情報料等)です"
_NOT_PARSEABLE = "を電話番号として解釈できません"
_NOT_JAPANESE = "は日本の電話番号ではありません"
_NOT_VALID = "は有効な電話番号ではありません(桁数や局番を確認してください)"
#: 0 + a national number of 9 or 10 digits that does not start with 0 (how nearly every
#: Japanese number is written). JP's metadata in phonenumbers decides the type and validity
#: of such a number from its leading digits and its length alone (each pattern is a prefix
#: of at most three constrained digits followed by free digits), so the verdict is computed
#: by phonenumbers once per (first four digits, length) and reused; the test suite checks
#: the shortcut against phonenumbers on random numbers of every prefix.
_NATIONAL_DIALLING = re.compile(r"0[1-9][0-9]{8,9}")
_VERDICT_PREFIX = 4
_Verdict = PhoneKind | _Failure
_verdicts: dict[tuple[str, int], _Verdict] = {}


def _phone_error(raw: str, verdict: _Failure) -> NormalizationError:
    code, reason = verdict
    return NormalizationError(code, f"電話番号{_quote(raw)}{reason}")


def _phonenumbers_verdict(digits: str) -> tuple[_Verdict, str]:
    """The kind (or the error code and reason) and E.164 of a number, by phonenumbers."""
    if _SERVICE_NUMBER.fullmatch(digits):
        return ("not_a_phone", _NOT_A_PHONE), ""
    try:
        number = phonenumbers.parse(digits, "JP")
    except phonenumbers.NumberParseException:
        return ("invalid_phone", _NOT_PARSEABLE), ""
    if number.country_code != 81:
        return ("invalid_phone", _NOT_JAPANESE), ""
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    national = str(number.national_number)
    if national.startswith("180") and phonenumbers.is_possible_number(number):
        return ("not_a_phone", _NOT_A_PHONE), e164  # 0180 テレドーム: phonenumbers says invalid
    number_type = phonenumbers.number_type(number)
    if number_type in _NOT_SUBSCRIBER_TYPES:
        return ("not_a_phone", _NOT_A_PHONE), e164
    if not phonenumbers.is_valid_number(number):
        return ("invalid_phone", _NOT_VALID), e164
    return _PHONE_KINDS.get(number_type, PhoneKind.OTHER), e164


def _national_verdict(digits: str) -> tuple[_Verdict, str]:
    national = digits[1:]
    key = (national[:_VERDICT_PREFIX], len(national))
    verdict = _verdicts.get(key)
    if verdict is None:
        verdict = _verdicts[key] = _phonenumbers_verdict(digits)[0]
    return verdict, "+81" + national


def _normalize_phone_uncached(value: str) -> Phone:
    digits = normalize_text(value).translate(_PHONE_SEPARATORS)
    if not digits:
        raise NormalizationError("invalid_phone", "電話番号が空です")
    if not _PHONE_CHARS.fullmatch(digits):
        raise _phone_error(
            value, ("invalid_phone", "に数字と区切り以外の文字が含まれているか桁数が不正です")
        )
    if _NATIONAL_DIALLING.fullmatch(digits):
        verdict, e164 = _national_verdict(digits)
    else:
        verdict, e164 = _phonenumbers_verdict(digits)
    if isinstance(verdict, tuple):
        raise _phone_error(value, verdict)
    return Phone(e164=e164, kind=verdict)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _normalize_phone_cached(value: str) -> Phone | _Failure:
    return _capture(_normalize_phone_uncached, value)


def normalize_phone(value: str) -> Phone:
    """E.164 and kind of a Japanese phone number (region JP); cached for bulk imports."""
    return _unwrap(_normalize_phone_cached(value))


# --------------------------------------------------------------------------- amounts

_AMOUNT_LIMIT = 10**12
_MINUS_SIGNS = "-△▲"
_GROUPED = re.compile(r"[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+")


def _take_sign(text: str) -> tuple[bool, str]:
    if text and text[0] in _MINUS_SIGNS:
        return True, text[1:]
    return False, text.removeprefix("+")


def _strip_currency(text: str) -> str:
    return text.removeprefix("¥").removeprefix("\\").removesuffix("円")


def _amount_digits(text: str, raw: str) -> int:
    if "." in text:
        raise NormalizationError("invalid_amount", f"金額{_quote(raw)}に小数は使えません")
    if not _GROUPED.fullmatch(text) or len(text) > 17:
        raise NormalizationError("invalid_amount", f"金額{_quote(raw)}を金額として解釈できません")
    amount = int(text.replace(",", ""))
    if amount > _AMOUNT_LIMIT:
        raise NormalizationError("invalid_amount", f"金額{_quote(raw)}が上限(1兆円)を超えています")
    return amount


def parse_amount(value: str) -> int:
    """Yen amount: ``12,345``, ``１２，３４５円``, ``¥12,345``; ``-500``/``△500``/``▲500`` are
    negative. Decimals and amounts over 10**12 are ``invalid_amount``."""
    negative, text = _take_sign(_compact(value))
    text = _strip_currency(text)
    if not negative:
        negative, text = _take_sign(text)
    amount = _amount_digits(text, value)
    return -amount if negative else amount


def parse_unpaid_amount(value: str) -> int:
    """parse_amount, rejecting negative amounts with ``negative_amount``."""
    amount = parse_amount(value)
    if amount < 0:
        raise NormalizationError("negative_amount", f"未納額{_quote(value)}が負の金額です")
    return amount


# --------------------------------------------------------------------------- ids, codes

_PERSON_ID = re.compile(r"[0-9]{1,20}")
_POSTAL_CODE = re.compile(r"〒?([0-9]{3})-?([0-9]{4})")


def normalize_person_id(value: str) -> str:
    """宛名番号: 1 to 20 digits after NFKC, leading zeros kept."""
    text = _compact(value)
    if not _PERSON_ID.fullmatch(text):
        raise NormalizationError(
            "invalid_person_id", f"宛名番号{_quote(value)}は1〜20桁の数字ではありません"
        )
    return text


def normalize_postal_code(value: str) -> str:
    """``〒1234567``, ``１２３－４５６７`` ... -> ``123-4567``."""
    if match := _POSTAL_CODE.fullmatch(_compact(value)):
        return f"{match.group(1)}-{match.group(2)}"
    raise NormalizationError(
        "invalid_postal_code", f"郵便番号{_quote(value)}は7桁の郵便番号ではありません"
    )


_GENDERS: dict[str, Literal["male", "female"] | None] = {
    "": None,
    "0": None,  # ISO/IEC 5218: not known
    "9": None,  # ISO/IEC 5218: not applicable
    "1": "male",
    "男": "male",
    "男性": "male",
    "M": "male",
    "MALE": "male",
    "2": "female",
    "女": "female",
    "女性": "female",
    "F": "female",
    "FEMALE": "female",
}


def parse_gender(value: str) -> Literal["male", "female"] | None:
    """1/男/M -> male, 2/女/F -> female, blank (or ISO 5218 0/9) -> None."""
    key = _compact(value)
    if key not in _GENDERS:
        raise NormalizationError("invalid_gender", f"性別{_quote(value)}を解釈できません")
    return _GENDERS[key]
