"""A byte-level scanner for personal data, reusable by any test.

Build *needles* from what a campaign held (names, readings, phone numbers, birth dates,
addresses, and the sealed ciphertexts themselves), each in every spelling the platform or a
resident could produce and encoded as UTF-8, UTF-16 (both byte orders) and CP932; then scan
files, folders, SQLite databases with their ``-wal``/``-shm``, or any (where, bytes) pairs.

Needles shorter than :data:`MIN_BYTES` are dropped: a four-byte CP932 name would match random
ciphertext by chance. Findings name the place, the needle's kind and encoding and the offset,
never the value, so a failing test does not print personal data in CI logs.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import phonenumbers

ENCODINGS = ("utf-8", "utf-16-le", "utf-16-be", "cp932")
MIN_BYTES = 6
_ERAS = (  # name, letter, numeric code, first day (year 1 of the era = first.year)
    ("令和", "R", 5, date(2019, 5, 1)),
    ("平成", "H", 4, date(1989, 1, 8)),
    ("昭和", "S", 3, date(1926, 12, 25)),
    ("大正", "T", 2, date(1912, 7, 30)),
    ("明治", "M", 1, date(1868, 1, 25)),
)


@dataclass(frozen=True)
class Needle:
    kind: str  # e.g. "name", "phone", "sealed"
    encoding: str  # "bytes" for raw byte strings
    data: bytes


@dataclass(frozen=True)
class Finding:
    where: str
    kind: str
    encoding: str
    offset: int

    def __str__(self) -> str:
        return f"{self.where} @ {self.offset}: {self.kind} ({self.encoding})"


class PersonalDataFound(AssertionError):
    """Raised by :func:`assert_clean`: personal data is still there."""


# --------------------------------------------------------------------------- spellings


def _spaces(text: str) -> set[str]:
    """The text with its separators as full-width space, ASCII space, or none."""
    parts = text.replace("\u3000", " ").split()
    return {" ".join(parts), "\u3000".join(parts), "".join(parts)}


def _half_width_katakana(text: str) -> str:
    table = {unicodedata.normalize("NFKC", chr(c)): chr(c) for c in range(0xFF66, 0xFF9E)}
    table |= {"\u3099": "\uff9e", "\u309a": "\uff9f"}
    return "".join(table.get(c, c) for c in unicodedata.normalize("NFD", text))


def _hiragana(text: str) -> str:
    return "".join(chr(ord(c) - 0x60) if "ァ" <= c <= "ヶ" else c for c in text)


def name_spellings(name: str) -> set[str]:
    forms = {name, unicodedata.normalize("NFKC", name)}
    return {spaced for form in forms for spaced in _spaces(form)}


def kana_spellings(kana: str) -> set[str]:
    katakana = unicodedata.normalize("NFKC", kana)
    forms = {kana, katakana, _hiragana(katakana), _half_width_katakana(katakana)}
    return {spaced for form in forms for spaced in _spaces(form)}


def phone_spellings(number: str) -> set[str]:
    """E.164 and national forms: +819012345678, 819012345678, 09012345678, 090-1234-5678."""
    parsed = phonenumbers.parse(number, "JP")
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    digits = "".join(c for c in national if c.isdigit())
    return {e164, e164[1:], national, digits, national.replace("-", " ")}


def _era(day: date) -> tuple[str, str, int, int]:
    for name, letter, code, first in _ERAS:
        if day >= first:
            return name, letter, code, day.year - first.year + 1
    raise ValueError(f"no era for {day}")


def date_spellings(day: date) -> set[str]:
    """Gregorian and 和暦 forms of a date (ISO, slashes, compact, 年月日, R2.5.14, codes)."""
    name, letter, code, year = _era(day)
    y, m, d = day.year, day.month, day.day
    era_year = "元" if year == 1 else str(year)
    return {
        day.isoformat(),
        f"{y}/{m:02d}/{d:02d}",
        f"{y}/{m}/{d}",
        f"{y}{m:02d}{d:02d}",
        f"{y}年{m}月{d}日",
        f"{name}{era_year}年{m}月{d}日",
        f"{letter}{year}.{m}.{d}",
        f"{letter}{year:02d}.{m:02d}.{d:02d}",
        f"{letter}{year:02d}/{m:02d}/{d:02d}",
        f"{code}{year:02d}{m:02d}{d:02d}",
    }


# --------------------------------------------------------------------------- needles


def text_needles(kind: str, spellings: Iterable[str]) -> list[Needle]:
    needles = []
    for spelling in spellings:
        for encoding in ENCODINGS:
            try:
                data = spelling.encode(encoding)
            except UnicodeEncodeError:
                continue  # e.g. a character CP932 cannot write: it cannot be there in CP932
            if len(data) >= MIN_BYTES:
                needles.append(Needle(kind, encoding, data))
    return needles


def blob_needles(kind: str, blobs: Iterable[bytes], length: int = 24) -> list[Needle]:
    """Byte strings as they are (e.g. sealed values), cut to their first ``length`` bytes."""
    return [Needle(kind, "bytes", blob[:length]) for blob in blobs if len(blob) >= MIN_BYTES]


@dataclass
class NeedleSet:
    """The needles of one campaign; :meth:`add_person` takes a decrypted person record."""

    needles: list[Needle]

    @classmethod
    def empty(cls) -> NeedleSet:
        return cls([])

    def add(self, needles: Iterable[Needle]) -> None:
        self.needles.extend(needles)

    def add_person(self, record: dict[str, object], phones: Sequence[str] = ()) -> None:
        if record.get("name"):
            self.add(text_needles("name", name_spellings(str(record["name"]))))
        if record.get("name_kana"):
            self.add(text_needles("kana", kana_spellings(str(record["name_kana"]))))
        if record.get("birth_date"):
            self.add(text_needles("birth_date", date_spellings(_date(record["birth_date"]))))
        if record.get("address"):
            self.add(text_needles("address", _spaces(str(record["address"]))))
        for number in phones:
            self.add(text_needles("phone", phone_spellings(number)))

    def unique(self) -> list[Needle]:
        """One needle per byte string (the first kind that produced it names it)."""
        first: dict[bytes, Needle] = {}
        for needle in self.needles:
            first.setdefault(needle.data, needle)
        return list(first.values())


def _date(value: object) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


# --------------------------------------------------------------------------- scanning


def scan_bytes(where: str, data: bytes, needles: Iterable[Needle]) -> list[Finding]:
    findings = []
    for needle in needles:
        offset = data.find(needle.data)
        if offset >= 0:
            findings.append(Finding(where, needle.kind, needle.encoding, offset))
    return findings


def scan_file(path: Path, needles: Sequence[Needle]) -> list[Finding]:
    return scan_bytes(str(path), path.read_bytes(), needles)


def files_under(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
    elif root.is_dir():
        yield from (path for path in sorted(root.rglob("*")) if path.is_file())


def scan_tree(root: Path, needles: Sequence[Needle]) -> list[Finding]:
    return [finding for path in files_under(root) for finding in scan_file(path, needles)]


def sqlite_files(database_path: Path) -> list[Path]:
    """The database file and, when present, its ``-wal`` and ``-shm`` companions."""
    candidates = [database_path] + [
        database_path.with_name(database_path.name + suffix) for suffix in ("-wal", "-shm")
    ]
    return [path for path in candidates if path.exists()]


def scan_sqlite(database_path: Path, needles: Sequence[Needle]) -> list[Finding]:
    return [f for path in sqlite_files(database_path) for f in scan_file(path, needles)]


def scan_items(
    where: str, items: Iterable[tuple[str, str | bytes]], needles: Sequence[Needle]
) -> list[Finding]:
    """Scan (key, value) pairs, e.g. every key and value of a Redis database."""
    findings = []
    for key, value in items:
        for part in (key, value):
            data = part if isinstance(part, bytes) else part.encode("utf-8")
            findings.extend(scan_bytes(where, data, needles))
    return findings


def assert_clean(findings: Sequence[Finding], *, context: str = "") -> None:
    if findings:
        shown = "\n".join(f"  {finding}" for finding in findings[:20])
        more = f"\n  ... and {len(findings) - 20} more" if len(findings) > 20 else ""
        raise PersonalDataFound(
            f"personal data found{f' ({context})' if context else ''}: "
            f"{len(findings)} hits\n{shown}{more}"
        )
