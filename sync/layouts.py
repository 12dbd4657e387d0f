"""Import layouts: which column (or byte range) holds which field, in which encoding.

The standard layout (標準レイアウト) needs no configuration: a CSV/TSV with a header row whose
column names are the Japanese field names below, in any order. Other layouts are TOML files in
``config/layouts/`` that map their own column names (or fixed-width byte offsets, counted in
the file's encoding as COBOL-era systems write them) onto the same fields, and may add code
tables (e.g. 税目コード -> 債権種別) and extra date formats.

Fields are addressed internally by short English keys (``atena_no``); layout files may use
either those keys or the standard Japanese header names.
"""

from __future__ import annotations

import tomllib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from kernel.errors import ConfigurationError
from kernel.settings import PROJECT_ROOT

#: (key, standard header) in the order the standard layout documents them.
FIELDS: tuple[tuple[str, str], ...] = (
    ("atena_no", "宛名番号"),
    ("name", "氏名"),
    ("name_kana", "氏名カナ"),
    ("birth_date", "生年月日"),
    ("gender", "性別"),
    ("postal_code", "郵便番号"),
    ("address", "住所"),
    ("phone1", "電話番号1"),
    ("phone2", "電話番号2"),
    ("phone_verified_on", "電話確認日"),
    ("department", "所管課"),
    ("kind", "債権種別"),
    ("fiscal_year", "年度"),
    ("period", "期別"),
    ("notice_number", "通知書番号"),
    ("due_date", "納期限"),
    ("unpaid", "未納額"),
    ("late_fee", "延滞金"),
    ("demand_date", "督促日"),
    ("installment", "分納"),
    ("account_transfer", "口座振替"),
    ("suppressed", "催告停止"),
    ("dv_support", "支援措置"),
    ("language", "言語"),
)
FIELD_KEYS = frozenset(key for key, _ in FIELDS)
STANDARD_HEADERS: Mapping[str, str] = MappingProxyType(dict(FIELDS))
REQUIRED_FIELDS = ("atena_no", "name", "due_date", "unpaid")
#: Header spellings the standard layout also accepts.
STANDARD_ALIASES: Mapping[str, str] = MappingProxyType(
    {"電話番号": "phone1", "カナ氏名": "name_kana", "フリガナ": "name_kana"}
)
FORMATS = ("auto", "csv", "tsv", "fixed")


def header_key(text: str) -> str:
    """How a header cell is compared: NFKC (full-width digits), no spaces, no BOM."""
    return "".join(unicodedata.normalize("NFKC", text).replace("\ufeff", "").split())


@dataclass(frozen=True)
class FixedField:
    """One field of a fixed-width record: ``length`` bytes starting at byte ``offset`` (0-based)."""

    key: str
    offset: int
    length: int


@dataclass(frozen=True)
class Layout:
    name: str
    format: str = "auto"
    encoding: str | None = None
    columns: Mapping[str, str] = field(default_factory=dict)
    fixed_fields: tuple[FixedField, ...] = ()
    skip_records: int = 0
    record_length: int | None = None
    date_formats: tuple[str, ...] = ()
    code_tables: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    description: str = ""

    def key_for(self, header: str) -> str | None:
        """The field a (raw) header cell holds, or None for an unknown column."""
        return self.columns.get(header_key(header))

    def __reduce__(self) -> tuple[Any, ...]:
        """Picklable (worker processes read chunks): read-only mappings travel as dicts."""
        if self is STANDARD:
            return (_standard_layout, ())
        tables = {key: dict(table) for key, table in self.code_tables.items()}
        parts = (
            self.name, self.format, self.encoding, dict(self.columns), self.fixed_fields,
            self.skip_records, self.record_length, self.date_formats, tables, self.description,
        )  # fmt: skip
        return (_rebuilt_layout, parts)

    def label(self, key: str) -> str:
        """The name staff know a field by in this layout (for rejects and messages)."""
        if self is not STANDARD:
            for header, mapped in self.columns.items():
                if mapped == key:
                    return header
        return STANDARD_HEADERS.get(key, key)


def _standard_columns() -> dict[str, str]:
    columns = {header_key(label): key for key, label in FIELDS}
    columns.update({header_key(alias): key for alias, key in STANDARD_ALIASES.items()})
    return columns


STANDARD = Layout(
    name="standard", columns=MappingProxyType(_standard_columns()), description="標準レイアウト"
)
_BY_LABEL = {header_key(label): key for key, label in FIELDS}


def _standard_layout() -> Layout:
    return STANDARD


def _rebuilt_layout(
    name: str,
    fmt: str,
    encoding: str | None,
    columns: dict[str, str],
    fixed_fields: tuple[FixedField, ...],
    skip_records: int,
    record_length: int | None,
    date_formats: tuple[str, ...],
    code_tables: dict[str, dict[str, str]],
    description: str,
) -> Layout:
    tables = {key: MappingProxyType(table) for key, table in code_tables.items()}
    return Layout(
        name, fmt, encoding, MappingProxyType(columns), fixed_fields, skip_records,
        record_length, date_formats, MappingProxyType(tables), description,
    )  # fmt: skip


def resolve_field(name: str, where: str) -> str:
    """A field key from a layout file: the English key or the standard Japanese header."""
    if name in FIELD_KEYS:
        return name
    key = _BY_LABEL.get(header_key(name))
    if key is None:
        known = "、".join(label for _, label in FIELDS)
        raise ConfigurationError(f"{where}: unknown field {name!r} (known: {known})")
    return key


def layouts_dir() -> Path:
    local = Path("config/layouts")
    return local if local.is_dir() else PROJECT_ROOT / "config" / "layouts"


def load_layout(name: str | None, directory: Path | None = None) -> Layout:
    """``None``/``"standard"``: the standard layout; a name: ``config/layouts/NAME.toml``;
    a path to a ``.toml`` file: that file."""
    if name is None or name == "standard":
        return STANDARD
    candidate = Path(name)
    path = (
        candidate if candidate.suffix == ".toml" else (directory or layouts_dir()) / f"{name}.toml"
    )
    if not path.is_file():
        raise ConfigurationError(f"layout {name!r} not found ({path})")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigurationError(f"layout file {path}: {error}") from error
    return layout_from_dict(data, default_name=path.stem, where=str(path))


def layout_from_dict(data: Mapping[str, Any], *, default_name: str, where: str) -> Layout:
    """Build and validate a layout from parsed TOML; errors name the file and the key."""
    fmt = _choice(data.get("format", "auto"), FORMATS, f"{where}: format")
    fixed = _fixed_fields(data.get("fields", []), where) if fmt == "fixed" else ()
    columns = _columns(data.get("columns", {}), where)
    if fmt == "fixed" and not fixed:
        raise ConfigurationError(f"{where}: a fixed-width layout needs [[fields]]")
    mapped = {f.key for f in fixed} if fmt == "fixed" else set(columns.values())
    missing = [STANDARD_HEADERS[key] for key in REQUIRED_FIELDS if key not in mapped]
    if missing:
        raise ConfigurationError(f"{where}: required fields not mapped: {', '.join(missing)}")
    return Layout(
        name=str(data.get("name", default_name)),
        format=fmt,
        encoding=_encoding(data.get("encoding"), where),
        columns=MappingProxyType(columns),
        fixed_fields=fixed,
        skip_records=_int(data.get("skip_records", 0), f"{where}: skip_records", minimum=0),
        record_length=_optional_int(data.get("record_length"), f"{where}: record_length"),
        date_formats=tuple(str(item) for item in data.get("date_formats", [])),
        code_tables=_code_tables(data.get("code_tables", {}), where),
        description=str(data.get("description", "")),
    )


def _choice(value: Any, allowed: tuple[str, ...], where: str) -> str:
    if value not in allowed:
        raise ConfigurationError(f"{where}: {value!r} is not one of {', '.join(allowed)}")
    return str(value)


def _encoding(value: Any, where: str) -> str | None:
    if value is None:
        return None
    import codecs

    try:
        return codecs.lookup(str(value)).name
    except LookupError:
        raise ConfigurationError(f"{where}: unknown encoding {value!r}") from None


def _int(value: Any, where: str, *, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigurationError(f"{where}: expected an integer >= {minimum}, got {value!r}")
    return value


def _optional_int(value: Any, where: str) -> int | None:
    return None if value is None else _int(value, where, minimum=1)


def _columns(raw: Any, where: str) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{where}: [columns] must be a table of header = field")
    columns: dict[str, str] = {}
    for header, target in raw.items():
        key = resolve_field(str(target), f"{where}: columns.{header}")
        if key in columns.values():
            raise ConfigurationError(f"{where}: columns: field {target!r} is mapped twice")
        columns[header_key(str(header))] = key
    return columns


def _fixed_fields(raw: Any, where: str) -> tuple[FixedField, ...]:
    if not isinstance(raw, list):
        raise ConfigurationError(f"{where}: fields must be an array of tables ([[fields]])")
    fields: list[FixedField] = []
    for index, entry in enumerate(raw, start=1):
        here = f"{where}: fields[{index}]"
        if not isinstance(entry, dict) or "name" not in entry:
            raise ConfigurationError(f"{here}: needs name, offset and length")
        key = resolve_field(str(entry["name"]), here)
        if any(f.key == key for f in fields):
            raise ConfigurationError(f"{here}: field {entry['name']!r} is defined twice")
        offset = _int(entry.get("offset"), f"{here}.offset", minimum=0)
        fields.append(
            FixedField(key, offset, _int(entry.get("length"), f"{here}.length", minimum=1))
        )
    return tuple(fields)


def _code_tables(raw: Any, where: str) -> Mapping[str, Mapping[str, str]]:
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{where}: [code_tables] must be a table")
    tables: dict[str, Mapping[str, str]] = {}
    for name, table in raw.items():
        key = resolve_field(str(name), f"{where}: code_tables.{name}")
        if not isinstance(table, dict):
            raise ConfigurationError(f"{where}: code_tables.{name} must be a table of code = value")
        tables[key] = MappingProxyType({header_key(str(c)): str(v) for c, v in table.items()})
    return MappingProxyType(tables)
