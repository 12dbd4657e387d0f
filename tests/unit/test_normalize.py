"""Normalizers for export fields: concrete cases per form and per error code, and properties."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync.normalize import (
    ERROR_CODES,
    NormalizationError,
    Phone,
    PhoneKind,
    normalize_kana,
    normalize_name,
    normalize_person_id,
    normalize_phone,
    normalize_postal_code,
    normalize_text,
    parse_amount,
    parse_date,
    parse_fiscal_year,
    parse_gender,
    parse_unpaid_amount,
)

FULL_WIDTH = str.maketrans("0123456789-,./", "０１２３４５６７８９－，．／")


def _code(call: Callable[[], object]) -> str:
    with pytest.raises(NormalizationError) as info:
        call()
    assert info.value.code in ERROR_CODES
    assert info.value.message_ja
    return info.value.code


# ------------------------------------------------------------------ error type


def test_error_carries_code_and_japanese_message_quoting_the_value() -> None:
    with pytest.raises(NormalizationError) as info:
        parse_date("令和2年2月30日")
    assert info.value.code == "impossible_date"
    assert "「令和2年2月30日」" in info.value.message_ja
    assert isinstance(info.value, ValueError)


def test_long_values_are_shortened_in_messages() -> None:
    with pytest.raises(NormalizationError) as info:
        parse_date("x" * 500)
    assert len(info.value.message_ja) < 100


# ------------------------------------------------------------------ text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  山田　　太郎  ", "山田 太郎"),
        ("ＡＢＣ１２３", "ABC123"),
        ("1丁目2−3", "1丁目2-3"),
        ("１－２－３", "1-2-3"),
        ("1‐2‑3–4—5―6", "1-2-3-4-5-6"),
        ("090ー1234ー5678", "090-1234-5678"),
        ("090ｰ1234ｰ5678", "090-1234-5678"),
        ("コーヒー", "コーヒー"),
        ("ｺｰﾋｰ", "コーヒー"),
        ("ビル−ディング", "ビル−ディング"),
        ("東京—大阪", "東京—大阪"),
        ("A−B", "A-B"),
        ("\ufeff宛名番号", "宛名番号"),
        ("a\tb\nc", "a b c"),
        ("", ""),
    ],
)
def test_normalize_text(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


@given(st.text())
def test_normalize_text_is_idempotent(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once


# ------------------------------------------------------------------ dates


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2020-05-14", date(2020, 5, 14)),
        ("2020/5/14", date(2020, 5, 14)),
        ("2020/05/14", date(2020, 5, 14)),
        ("2020.5.14", date(2020, 5, 14)),
        ("20200514", date(2020, 5, 14)),
        ("2020年5月14日", date(2020, 5, 14)),
        ("令和2年5月14日", date(2020, 5, 14)),
        ("令和元年5月1日", date(2019, 5, 1)),
        ("R2.5.14", date(2020, 5, 14)),
        ("R02.05.14", date(2020, 5, 14)),
        ("r2/5/14", date(2020, 5, 14)),
        ("R元.5.1", date(2019, 5, 1)),
        ("R020514", date(2020, 5, 14)),
        ("H22/01/22", date(2010, 1, 22)),
        ("平成22年1月22日", date(2010, 1, 22)),
        ("平22.1.22", date(2010, 1, 22)),
        ("平成31年4月30日", date(2019, 4, 30)),
        ("平成元年1月8日", date(1989, 1, 8)),
        ("昭和64年1月7日", date(1989, 1, 7)),
        ("S40.1.1", date(1965, 1, 1)),
        ("s40-1-1", date(1965, 1, 1)),
        ("T15.12.24", date(1926, 12, 24)),
        ("大正元年7月30日", date(1912, 7, 30)),
        ("M45.7.29", date(1912, 7, 29)),
        ("明治6年1月1日", date(1873, 1, 1)),
        ("5020514", date(2020, 5, 14)),
        ("4220122", date(2010, 1, 22)),
        ("3640107", date(1989, 1, 7)),
        ("05020514", date(2020, 5, 14)),
        ("２０２０－０５－１４", date(2020, 5, 14)),
        ("令和２年５月１４日", date(2020, 5, 14)),
        ("Ｒ２．５．１４", date(2020, 5, 14)),
        ("５０２０５１４", date(2020, 5, 14)),
        (" 令和 2年 5月 14日 ", date(2020, 5, 14)),
        ("2020/05/14 0:00:00", date(2020, 5, 14)),
        ("2020-05-14T00:00", date(2020, 5, 14)),
        ("2020−05−14", date(2020, 5, 14)),
        ("㋿2.5.14", date(2020, 5, 14)),
        ("㍻22.1.22", date(2010, 1, 22)),
    ],
)
def test_parse_date_forms(raw: str, expected: date) -> None:
    assert parse_date(raw) == expected


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("平成31年5月1日", "era_out_of_range"),
        ("H31.5.1", "era_out_of_range"),
        ("4310501", "era_out_of_range"),
        ("令和元年4月30日", "era_out_of_range"),
        ("昭和64年1月8日", "era_out_of_range"),
        ("平成元年1月7日", "era_out_of_range"),
        ("大正15年12月25日", "era_out_of_range"),
        ("明治45年7月30日", "era_out_of_range"),
        ("明治5年12月31日", "era_out_of_range"),
        ("R0.5.1", "era_out_of_range"),
        ("令和0年5月1日", "era_out_of_range"),
        ("令和2年2月30日", "impossible_date"),
        ("2020-02-30", "impossible_date"),
        ("2021/2/29", "impossible_date"),
        ("2020-13-01", "impossible_date"),
        ("R2.0.10", "impossible_date"),
        ("", "invalid_date"),
        ("   ", "invalid_date"),
        ("昨日", "invalid_date"),
        ("2020-05", "invalid_date"),
        ("X2.5.14", "invalid_date"),
        ("6020514", "invalid_date"),
        ("202005140", "invalid_date"),
        ("1850-01-01", "invalid_date"),
        ("0999-01-01", "invalid_date"),
        ("令和100年1月1日", "invalid_date"),
    ],
)
def test_parse_date_errors(raw: str, code: str) -> None:
    assert _code(lambda: parse_date(raw)) == code


def test_leap_day_in_era_form() -> None:
    assert parse_date("R2.2.29") == date(2020, 2, 29)
    assert _code(lambda: parse_date("R3.2.29")) == "impossible_date"


def test_parse_date_raises_a_fresh_error_on_every_cached_call() -> None:
    errors = []
    for _ in range(2):
        with pytest.raises(NormalizationError) as info:
            parse_date("平成31年5月1日")
        errors.append(info.value)
    assert errors[0] is not errors[1]
    assert errors[0].code == errors[1].code == "era_out_of_range"


# Eras as the tests understand them (independent of the implementation's table).
ERAS = [
    ("明治", "M", 1, 1867, date(1873, 1, 1), date(1912, 7, 29)),
    ("大正", "T", 2, 1911, date(1912, 7, 30), date(1926, 12, 24)),
    ("昭和", "S", 3, 1925, date(1926, 12, 25), date(1989, 1, 7)),
    ("平成", "H", 4, 1988, date(1989, 1, 8), date(2019, 4, 30)),
    ("令和", "R", 5, 2018, date(2019, 5, 1), date(2099, 12, 31)),
]


def _era_of(day: date) -> tuple[str, str, int, int]:
    for name, letter, digit, offset, first, last in ERAS:
        if first <= day <= last:
            return name, letter, digit, day.year - offset
    raise AssertionError(day)


def _kanji(d: date) -> str:
    name, _, _, year = _era_of(d)
    return f"{name}{'元' if year == 1 else year}年{d.month}月{d.day}日"


def _letter_dots(d: date) -> str:
    _, letter, _, year = _era_of(d)
    return f"{letter}{year}.{d.month}.{d.day}"


def _letter_padded(d: date) -> str:
    _, letter, _, year = _era_of(d)
    return f"{letter}{year:02d}.{d.month:02d}.{d.day:02d}"


def _letter_lower_slashes(d: date) -> str:
    _, letter, _, year = _era_of(d)
    return f"{letter.lower()}{year}/{d.month}/{d.day}"


def _era_code(d: date) -> str:
    _, _, digit, year = _era_of(d)
    return f"{digit}{year:02d}{d.month:02d}{d.day:02d}"


def _era_code_two_digits(d: date) -> str:
    return "0" + _era_code(d)


DATE_FORMATS: list[Callable[[date], str]] = [
    date.isoformat,
    lambda d: f"{d.year}/{d.month}/{d.day}",
    lambda d: d.strftime("%Y%m%d"),
    lambda d: f"{d.year}年{d.month}月{d.day}日",
    _kanji,
    _letter_dots,
    _letter_padded,
    _letter_lower_slashes,
    _era_code,
    _era_code_two_digits,
]


@given(
    st.dates(min_value=date(1873, 1, 1), max_value=date(2099, 12, 31)),
    st.sampled_from(DATE_FORMATS),
    st.booleans(),
    st.booleans(),
)
def test_parse_date_round_trips_every_era_and_form(
    day: date, form: Callable[[date], str], full_width: bool, padded: bool
) -> None:
    text = form(day)
    if full_width:
        text = text.translate(FULL_WIDTH)
    if padded:
        text = f" \u3000{text} "
    assert parse_date(text) == day


@given(st.text(max_size=30))
def test_parse_date_raises_only_normalization_errors(text: str) -> None:
    try:
        parse_date(text)
    except NormalizationError as error:
        assert error.code in {"invalid_date", "era_out_of_range", "impossible_date"}


# ------------------------------------------------------------------ fiscal years


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("令和7", 2025),
        ("令和7年度", 2025),
        ("R7", 2025),
        ("R07", 2025),
        ("r7", 2025),
        ("2025", 2025),
        ("2025年度", 2025),
        ("H30", 2018),
        ("平成30年度", 2018),
        ("令和元年度", 2019),
        ("R元", 2019),
        ("平成31年度", 2019),
        ("昭和63年度", 1988),
        ("平成元年度", 1989),
        ("令和７年度", 2025),
        (" 令和 7 年度 ", 2025),
    ],
)
def test_parse_fiscal_year(raw: str, expected: int) -> None:
    assert parse_fiscal_year(raw) == expected


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("平成32年度", "era_out_of_range"),
        ("昭和64年度", "era_out_of_range"),
        ("R0", "era_out_of_range"),
        ("", "invalid_fiscal_year"),
        ("令和", "invalid_fiscal_year"),
        ("25", "invalid_fiscal_year"),
        ("1500", "invalid_fiscal_year"),
        ("2025年4月", "invalid_fiscal_year"),
    ],
)
def test_parse_fiscal_year_errors(raw: str, code: str) -> None:
    assert _code(lambda: parse_fiscal_year(raw)) == code


# ------------------------------------------------------------------ kana

HIRAGANA = "".join(chr(code) for code in range(0x3041, 0x3097))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ヤマダ　タロウ", "ヤマダ\u3000タロウ"),
        ("やまだ たろう", "ヤマダ\u3000タロウ"),
        ("ﾔﾏﾀﾞ ﾀﾛｳ", "ヤマダ\u3000タロウ"),
        ("ｶﾞﾊﾟﾋﾟｳﾞ", "ガパピヴ"),
        ("ｺｰﾋｰ", "コーヒー"),
        ("コ-ヒ-", "コーヒー"),
        ("  ヤマダ   　タロウ  ", "ヤマダ\u3000タロウ"),
        ("か゛ぱ", "ガパ"),
        ("ゔぁいおりん", "ヴァイオリン"),
        ("スミス・ジョン", "スミス・ジョン"),
        ("ｽﾐｽ･ｼﾞｮﾝ", "スミス・ジョン"),
        ("グエン バン アン", "グエン\u3000バン\u3000アン"),
        ("ヤマダタロウ", "ヤマダタロウ"),
    ],
)
def test_normalize_kana(raw: str, expected: str) -> None:
    assert normalize_kana(raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", "山田 タロウ", "Yamada", "ヤマダ1", "ア゛", "-ヤマダ"])
def test_normalize_kana_rejects(raw: str) -> None:
    assert _code(lambda: normalize_kana(raw)) == "invalid_kana"


@given(st.text(alphabet=HIRAGANA, min_size=1))
def test_hiragana_becomes_the_equivalent_katakana(text: str) -> None:
    assert normalize_kana(text) == "".join(chr(ord(char) + 0x60) for char in text)


# ------------------------------------------------------------------ names


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("山田　太郎", "山田\u3000太郎"),
        (" 山田  太郎 ", "山田\u3000太郎"),
        ("髙橋　花子", "髙橋\u3000花子"),
        ("山﨑 一郎", "山﨑\u3000一郎"),
        ("\ufa19田 太郎", "\ufa19田\u3000太郎"),
        ("ｸﾞｴﾝ ｱﾝ", "グエン\u3000アン"),
        ("NGUYEN VAN AN", "NGUYEN\u3000VAN\u3000AN"),
    ],
)
def test_normalize_name_keeps_characters(raw: str, expected: str) -> None:
    assert normalize_name(raw) == expected


@pytest.mark.parametrize("raw", ["", " \u3000 ", "山田\x00太郎"])
def test_normalize_name_rejects(raw: str) -> None:
    assert _code(lambda: normalize_name(raw)) == "invalid_name"


# ------------------------------------------------------------------ phones


@pytest.mark.parametrize(
    ("raw", "e164", "kind"),
    [
        ("090-1234-5678", "+819012345678", PhoneKind.MOBILE),
        ("08012345678", "+818012345678", PhoneKind.MOBILE),
        ("070 1234 5678", "+817012345678", PhoneKind.MOBILE),
        ("060-1234-5678", "+816012345678", PhoneKind.MOBILE),
        ("０９０－１２３４－５６７８", "+819012345678", PhoneKind.MOBILE),
        ("090ー1234ー5678", "+819012345678", PhoneKind.MOBILE),
        ("090ｰ1234ｰ5678", "+819012345678", PhoneKind.MOBILE),
        ("090−1234−5678", "+819012345678", PhoneKind.MOBILE),
        ("090‐1234‐5678", "+819012345678", PhoneKind.MOBILE),
        ("090–1234–5678", "+819012345678", PhoneKind.MOBILE),
        ("+81 90-1234-5678", "+819012345678", PhoneKind.MOBILE),
        ("+81(0)90-1234-5678", "+819012345678", PhoneKind.MOBILE),
        ("+819012345678", "+819012345678", PhoneKind.MOBILE),
        ("03-1234-5678", "+81312345678", PhoneKind.FIXED_LINE),
        ("03(1234)5678", "+81312345678", PhoneKind.FIXED_LINE),
        ("（０３）１２３４－５６７８", "+81312345678", PhoneKind.FIXED_LINE),
        ("06-6123-4567", "+81661234567", PhoneKind.FIXED_LINE),
        ("045-123-4567", "+81451234567", PhoneKind.FIXED_LINE),
        ("0263-12-3456", "+81263123456", PhoneKind.FIXED_LINE),
        ("04992-1-2345", "+81499212345", PhoneKind.FIXED_LINE),
        ("050-1234-5678", "+815012345678", PhoneKind.VOIP),
        ("0120-123-456", "+81120123456", PhoneKind.TOLL_FREE),
        ("0800-123-4567", "+818001234567", PhoneKind.TOLL_FREE),
        ("0570-123-456", "+81570123456", PhoneKind.OTHER),
    ],
)
def test_normalize_phone(raw: str, e164: str, kind: PhoneKind) -> None:
    assert normalize_phone(raw) == Phone(e164=e164, kind=kind)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("0180-123-456", "not_a_phone"),
        ("0180-99-1234", "not_a_phone"),
        ("0990-123-456", "not_a_phone"),
        ("020-1234-5678", "not_a_phone"),
        ("110", "not_a_phone"),
        ("119", "not_a_phone"),
        ("090-1234-567", "invalid_phone"),
        ("03-123-456", "invalid_phone"),
        ("090-0000-0000", "invalid_phone"),
        ("0120-1234-5678", "invalid_phone"),
        ("", "invalid_phone"),
        ("なし", "invalid_phone"),
        ("090-1234-5678 内線12", "invalid_phone"),
        ("+1 202 555 0143", "invalid_phone"),
        ("+", "invalid_phone"),
        ("1" * 40, "invalid_phone"),
    ],
)
def test_normalize_phone_errors(raw: str, code: str) -> None:
    assert _code(lambda: normalize_phone(raw)) == code


def test_phone_kind_values() -> None:
    assert [kind.value for kind in PhoneKind] == [
        "MOBILE",
        "FIXED_LINE",
        "VOIP",
        "TOLL_FREE",
        "OTHER",
    ]


def test_invalid_phone_raises_on_cache_hits_too() -> None:
    for _ in range(3):
        assert _code(lambda: normalize_phone("0180-123-456")) == "not_a_phone"


PHONEISH = "0123456789０１２３４５６７８９-－ー−()（）+＋ 　.内線"


@given(st.one_of(st.text(), st.text(alphabet=PHONEISH, max_size=20)))
def test_normalize_phone_raises_nothing_but_normalization_errors(text: str) -> None:
    try:
        phone = normalize_phone(text)
    except NormalizationError as error:
        assert error.code in {"invalid_phone", "not_a_phone"}
    else:
        assert phone.e164.startswith("+81")


# ------------------------------------------------------------------ amounts


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("12,345", 12345),
        ("１２，３４５円", 12345),
        ("¥12,345", 12345),
        ("￥12,345", 12345),
        ("\\12,345", 12345),
        ("12345円", 12345),
        (" 0 ", 0),
        ("0", 0),
        ("-500", -500),
        ("−500", -500),
        ("－５００", -500),
        ("△500", -500),
        ("▲500", -500),
        ("▲1,200円", -1200),
        ("¥-500", -500),
        ("-¥500", -500),
        ("1,000,000,000,000", 10**12),
        ("007", 7),
    ],
)
def test_parse_amount(raw: str, expected: int) -> None:
    assert parse_amount(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "円",
        "12.5",
        "12.0",
        "12,34",
        "1,2345",
        "1000000000001",
        "9" * 400,
        "12a",
        "--5",
        "約500",
    ],
)
def test_parse_amount_rejects(raw: str) -> None:
    assert _code(lambda: parse_amount(raw)) == "invalid_amount"


def test_unpaid_amount_accepts_zero_and_positives() -> None:
    assert parse_unpaid_amount("12,345円") == 12345
    assert parse_unpaid_amount("0") == 0


@pytest.mark.parametrize(
    ("raw", "code"),
    [("-500", "negative_amount"), ("△500", "negative_amount"), ("▲500", "negative_amount")]
    + [("12.5", "invalid_amount"), ("", "invalid_amount")],
)
def test_unpaid_amount_errors(raw: str, code: str) -> None:
    assert _code(lambda: parse_unpaid_amount(raw)) == code


def _grouped(amount: int) -> str:
    return f"{amount:,}"


AMOUNT_FORMS: list[Callable[[int], str]] = [
    str,
    _grouped,
    lambda n: f"{n:,}円",
    lambda n: f"¥{n:,}",
    lambda n: f"{n}円".translate(FULL_WIDTH),
    lambda n: f"{n:,}".translate(FULL_WIDTH) + "円",
]


@given(st.integers(min_value=-(10**12), max_value=10**12), st.sampled_from(AMOUNT_FORMS))
def test_parse_amount_round_trips(amount: int, form: Callable[[int], str]) -> None:
    text = form(abs(amount))
    if amount < 0:
        text = "▲" + text
    assert parse_amount(text) == amount


# ------------------------------------------------------------------ ids, postal codes, gender


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("0012345", "0012345"), ("００１２３", "00123"), (" 42 ", "42"), ("1" * 20, "1" * 20)],
)
def test_normalize_person_id(raw: str, expected: str) -> None:
    assert normalize_person_id(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "1" * 21, "12-34", "A123", "１２３４５６７８９０１２３４５６７８９０１", "٣"]
)
def test_normalize_person_id_rejects(raw: str) -> None:
    assert _code(lambda: normalize_person_id(raw)) == "invalid_person_id"


@pytest.mark.parametrize(
    "raw",
    ["123-4567", "1234567", "〒123-4567", "〒 １２３－４５６７", "１２３ー４５６７", "〶1234567"],
)
def test_normalize_postal_code(raw: str) -> None:
    assert normalize_postal_code(raw) == "123-4567"


@pytest.mark.parametrize("raw", ["", "123-456", "12-34567", "〒", "abc-defg", "123-45678"])
def test_normalize_postal_code_rejects(raw: str) -> None:
    assert _code(lambda: normalize_postal_code(raw)) == "invalid_postal_code"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", "male"),
        ("男", "male"),
        ("男性", "male"),
        ("M", "male"),
        ("m", "male"),
        ("１", "male"),
        ("2", "female"),
        ("女", "female"),
        ("F", "female"),
        ("", None),
        ("  ", None),
        ("0", None),
        ("9", None),
    ],
)
def test_parse_gender(raw: str, expected: str | None) -> None:
    assert parse_gender(raw) == expected


@pytest.mark.parametrize("raw", ["3", "X", "不明"])
def test_parse_gender_rejects(raw: str) -> None:
    assert _code(lambda: parse_gender(raw)) == "invalid_gender"
