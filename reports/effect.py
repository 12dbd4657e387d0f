"""Collection effect: paid rate of the contact group versus the random holdout, with a 95% CI.

Why Newcombe's hybrid score interval (his method 10, built from two Wilson intervals) rather
than the textbook normal (Wald) interval for a difference of proportions: paid rates are often
small (a few percent) and holdouts small (5-10% of a few thousand targets), exactly where the
Wald interval undercovers badly and can even extend below 0 or above 1; the Wilson-based
interval keeps close to its nominal 95% coverage there, stays inside [-1, 1], needs no
continuity correction and is still closed-form (Newcombe 1998, Statistics in Medicine 17).

The comparison is intention-to-treat: the contact group is every target that was *eligible*
for contact (not held out), whether or not the resident was reached, so the random assignment
still makes the two groups comparable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


def wilson(successes: int, n: int, z: float = Z95) -> Interval:
    """Wilson score interval of a proportion (``[0, 1]`` when there is no data)."""
    if n <= 0:
        return Interval(0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


def newcombe_difference(
    paid_a: int, n_a: int, paid_b: int, n_b: int, z: float = Z95
) -> Interval | None:
    """CI of ``p_a - p_b`` (Newcombe's hybrid score method); None without data in a group."""
    if n_a <= 0 or n_b <= 0:
        return None
    p_a, p_b = paid_a / n_a, paid_b / n_b
    a, b = wilson(paid_a, n_a, z), wilson(paid_b, n_b, z)
    difference = p_a - p_b
    low = difference - math.sqrt((p_a - a.low) ** 2 + (b.high - p_b) ** 2)
    high = difference + math.sqrt((a.high - p_a) ** 2 + (p_b - b.low) ** 2)
    return Interval(max(-1.0, low), min(1.0, high))


@dataclass(frozen=True)
class GroupFigures:
    persons: int = 0
    paid: int = 0
    paid_yen: int = 0

    @property
    def paid_rate(self) -> float | None:
        return self.paid / self.persons if self.persons else None


@dataclass(frozen=True)
class Effect:
    """Paid figures of both groups and the difference of their paid rates."""

    contact: GroupFigures
    holdout: GroupFigures

    @property
    def difference(self) -> float | None:
        a, b = self.contact.paid_rate, self.holdout.paid_rate
        return None if a is None or b is None else a - b

    @property
    def interval(self) -> Interval | None:
        c, h = self.contact, self.holdout
        return newcombe_difference(c.paid, c.persons, h.paid, h.persons)

    @property
    def measured(self) -> bool:
        return self.contact.persons > 0 and self.holdout.persons > 0
