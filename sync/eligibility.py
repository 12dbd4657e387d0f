"""Who is a target of this campaign, and on which channel. Pure.

Initial delinquency (初期滞納), evaluated at the as-of date with fiscal years running April to
March: at least one unpaid item is past its due date, and either every unpaid item belongs
to the current fiscal year or the unpaid total of earlier years is below the carry-over
limit. Before that, the protective rules apply in a fixed order, and each excluded person is
counted under the first rule that matched.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from kernel.models import Channel, PhoneKind
from sync.rows import ItemFields, fiscal_year_of


class ExclusionRule(StrEnum):
    DV_PROTECTED = "dv_protected"
    EXCLUSION_LIST = "exclusion_list"
    SUPPRESSED = "suppressed"
    INSTALLMENT_KEPT = "installment_kept"
    DO_NOT_CALL = "do_not_call"
    NOT_DUE = "not_due"
    NOT_INITIAL_DELINQUENCY = "not_initial_delinquency"


#: Persons excluded under these rules leave no personal data at all in the database.
NO_TRACE_RULES = frozenset({ExclusionRule.DV_PROTECTED, ExclusionRule.EXCLUSION_LIST})


@dataclass(frozen=True)
class Candidate:
    """What the rules need to know about one merged person."""

    items: Sequence[ItemFields]
    suppressed: bool = False
    installment_kept: bool = False
    dv_protected: bool = False
    on_exclusion_list: bool = False
    phones: int = 0
    phones_do_not_call: int = 0


@dataclass(frozen=True)
class EligibilityPolicy:
    as_of: date
    carryover_limit_yen: int = 100_000


def exclusion_rule(candidate: Candidate, policy: EligibilityPolicy) -> ExclusionRule | None:
    """The first rule that excludes this person, or None for a target."""
    if candidate.dv_protected:
        return ExclusionRule.DV_PROTECTED
    if candidate.on_exclusion_list:
        return ExclusionRule.EXCLUSION_LIST
    if candidate.suppressed:
        return ExclusionRule.SUPPRESSED
    if candidate.installment_kept:
        return ExclusionRule.INSTALLMENT_KEPT
    if candidate.phones and candidate.phones_do_not_call >= candidate.phones:
        return ExclusionRule.DO_NOT_CALL
    return delinquency_rule(candidate.items, policy)


def delinquency_rule(
    items: Iterable[ItemFields], policy: EligibilityPolicy
) -> ExclusionRule | None:
    """not_due, not_initial_delinquency, or None when the items make an initial delinquency."""
    unpaid = [item for item in items if item.unpaid_yen > 0]
    if not any(item.due_date < policy.as_of for item in unpaid):
        return ExclusionRule.NOT_DUE
    current = fiscal_year_of(policy.as_of)
    carried_over = sum(item.unpaid_yen for item in unpaid if item.fiscal_year < current)
    if carried_over and carried_over >= policy.carryover_limit_yen:
        return ExclusionRule.NOT_INITIAL_DELINQUENCY
    return None


def choose_channel(usable_phones: Sequence[PhoneKind], has_kana: bool) -> Channel:
    """IVR with a usable phone and a kana reading (text-to-speech needs it); an operator when
    the reading is missing; a letter without a usable phone. A MOBILE number additionally
    allows the dialer an SMS follow-up (decided by the dialer's plan, not here)."""
    if not usable_phones:
        return Channel.LETTER
    return Channel.IVR if has_kana else Channel.OPERATOR
