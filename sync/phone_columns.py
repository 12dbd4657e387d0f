"""Phone cells of one batch, decided a column at a time.

The reference is the phone rule of :class:`~sync.cached_rows.CachedRowParser` (which calls
:func:`sync.normalize.normalize_phone`). Nearly every number is dialled nationally: after
``normalize_text`` and the removal of separators it is ``0`` followed by 9 or 10 digits, and
``normalize_phone`` decides such a number by phonenumbers' verdict for its first four
national digits and its length (``normalize._national_verdict``). Here that verdict is asked
once per distinct (leading digits, length) of the batch, through ``normalize_phone`` itself,
and spread over the column with Arrow kernels; every other shape (``+81``, service numbers,
letters, odd separators) goes to the reference one distinct cell at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from sync import normalize
from sync.cached_rows import REJECTED
from sync.column_rules import DASHES, Cells, normalize_texts

#: ``normalize._PHONE_SEPARATORS`` as an RE2 class (the ASCII space included).
SEPARATORS = f"[\\-{DASHES}\\x{{30fc}}()\\[\\]. \\x{{30fb}}]"
NATIONAL = "^0[1-9][0-9]{8,9}$"
LEADING = 4  # national digits that, with the length, decide the verdict (as in normalize)


@dataclass
class PhoneOutcomes:
    """Per distinct phone cell: the entry's key (E.164, or the normalized text of a number
    that is not usable; null for a blank cell), its E.164 and kind (null unless valid), and
    whether the cell makes the row rejected."""

    key: pa.Array
    e164: pa.Array
    kind: pa.Array
    rejected: pa.Array


def _verdicts(keys: list[str], samples: list[str]) -> dict[str, str | None]:
    """The kind (None for an unusable number) per (leading digits, length) key, asked of
    ``normalize_phone`` with one number of the batch that has that key."""
    found: dict[str, str | None] = {}
    for key, digits in zip(keys, samples, strict=True):
        try:
            found[key] = normalize.normalize_phone(digits).kind.value
        except normalize.NormalizationError:
            found[key] = None
    return found


def _national(cells: Cells) -> tuple[pa.Array, pa.Array, pa.Array, pa.Array]:
    """(decided, key, e164, kind) for the cells dialled nationally."""
    decided, text = normalize_texts(cells.text)
    digits = pc.replace_substring_regex(text, SEPARATORS, "")
    decided = pc.and_(pc.and_(decided, cells.plain()), pc.match_substring_regex(digits, NATIONAL))
    national = pc.utf8_slice_codeunits(digits, 1)
    verdict_key = pc.binary_join_element_wise(
        pc.utf8_slice_codeunits(national, 0, LEADING),
        pc.utf8_length(national).cast(pa.string()),
        "/",
    )
    verdict_key = pc.if_else(decided, verdict_key, None)
    encoded = pc.dictionary_encode(verdict_key)
    first = pc.index_in(encoded.dictionary, value_set=verdict_key)
    verdicts = _verdicts(encoded.dictionary.to_pylist(), digits.take(first).to_pylist())
    kinds = pa.array([verdicts[key] for key in encoded.dictionary.to_pylist()], pa.string())
    kind = kinds.take(encoded.indices)
    e164 = pc.if_else(pc.is_valid(kind), pc.binary_join_element_wise("+81", national, ""), None)
    key = pc.if_else(pc.is_valid(kind), e164, text)
    return decided, key, e164, kind


def phone_outcomes(cells: Cells) -> PhoneOutcomes:
    count = len(cells.text)
    decided, key, e164, kind = _national(cells)
    decided = pc.fill_null(decided, False)
    pending = pc.indices_nonzero(pc.invert(decided))
    rejected = [False] * count
    if not len(pending):
        return PhoneOutcomes(key, e164, kind, pa.array(rejected, pa.bool_()))
    keys: list[str | None] = []
    numbers: list[str | None] = []
    kinds: list[str | None] = []
    positions = pending.to_pylist()
    for position, text in zip(positions, cells.text.take(pending).to_pylist(), strict=True):
        outcome = cells.parser.outcome(cells.key, text)
        parsed = None if outcome is REJECTED else outcome[0]  # type: ignore[index]
        rejected[position] = outcome is REJECTED
        normalized, phone = parsed if parsed is not None else (None, None)
        keys.append(phone.e164 if phone else normalized)
        numbers.append(phone.e164 if phone else None)
        kinds.append(phone.kind.value if phone else None)
    mask = pc.invert(decided)
    return PhoneOutcomes(
        pc.replace_with_mask(key, mask, pa.array(keys, pa.string())),
        pc.replace_with_mask(e164, mask, pa.array(numbers, pa.string())),
        pc.replace_with_mask(kind, mask, pa.array(kinds, pa.string())),
        pa.array(rejected, pa.bool_()),
    )
