"""Kana helpers: folding for speech matching and Hepburn romaji for English prompts."""

from __future__ import annotations

import re
import unicodedata

_KATA_START, _KATA_END, _KANA_SHIFT = 0x30A1, 0x30F6, 0x60
_SMALL_Y = {"ャ": "a", "ュ": "u", "ョ": "o"}
_ROWS = {
    "": "アイウエオ",
    "k": "カキクケコ",
    "g": "ガギグゲゴ",
    "s": "サシスセソ",
    "z": "ザジズゼゾ",
    "t": "タチツテト",
    "d": "ダヂヅデド",
    "n": "ナニヌネノ",
    "h": "ハヒフヘホ",
    "b": "バビブベボ",
    "p": "パピプペポ",
    "m": "マミムメモ",
    "r": "ラリルレロ",
}
_ROMAJI: dict[str, str] = {
    kana: consonant + vowel
    for consonant, row in _ROWS.items()
    for kana, vowel in zip(row, "aiueo", strict=True)
}
_ROMAJI.update(
    {
        "シ": "shi", "ジ": "ji", "チ": "chi", "ヂ": "ji", "ツ": "tsu", "ヅ": "zu", "フ": "fu",
        "ヤ": "ya", "ユ": "yu", "ヨ": "yo", "ワ": "wa", "ヲ": "o", "ン": "n", "ヴ": "vu",
        "ァ": "a", "ィ": "i", "ゥ": "u", "ェ": "e", "ォ": "o",
    }
)  # fmt: skip
_VOWEL = re.compile(r"[aeiou]$")


def to_katakana(text: str) -> str:
    return "".join(chr(ord(ch) + _KANA_SHIFT) if 0x3041 <= ord(ch) <= 0x3096 else ch for ch in text)


def to_hiragana(text: str) -> str:
    return "".join(
        chr(ord(ch) - _KANA_SHIFT) if _KATA_START <= ord(ch) <= _KATA_END else ch for ch in text
    )


def normalize_speech(text: str) -> str:
    """NFKC, lower case, katakana folded to hiragana, punctuation and symbols made spaces."""
    folded = to_hiragana(unicodedata.normalize("NFKC", text).lower())
    kept = [ch if unicodedata.category(ch)[0] in "LMN" else " " for ch in folded]
    return " ".join("".join(kept).split())


def to_romaji(kana: str) -> str:
    """Hepburn romaji of a kana reading, words title-cased ("サトウ ハナコ" -> "Satou Hanako")."""
    words = unicodedata.normalize("NFKC", kana).replace("\u3000", " ").split()
    return " ".join(_word_romaji(to_katakana(word)).capitalize() for word in words)


def _word_romaji(word: str) -> str:
    out: list[str] = []
    double_next = False
    for ch in word:
        if ch in _SMALL_Y and out and out[-1].endswith("i"):
            stem = out.pop()[:-1]
            out.append(stem + ("" if stem in ("sh", "ch", "j") else "y") + _SMALL_Y[ch])
            continue
        if ch == "ッ":
            double_next = True
            continue
        if ch == "ー":
            vowel = _VOWEL.search(out[-1]) if out else None
            out.append(vowel.group(0) if vowel else "")
            continue
        roman = _ROMAJI.get(ch, ch)
        if double_next:
            roman = ("t" if roman.startswith("ch") else roman[:1]) + roman
            double_next = False
        out.append(roman)
    return "".join(out)
