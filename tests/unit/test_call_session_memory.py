"""The call session's per-process memory: the call index and the opened-context cache."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from dialer.call_events import CallPhase
from dialer.call_memory import CallIds, CallIndex, ContextCache, OpenedCall
from dialer.call_records import ParsedRecords, SessionRecord
from ivr_scripts import State
from tests.contract.scenarios import context


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def opened(name: str = "ヤマダ タロウ") -> OpenedCall:
    return OpenedCall("standard", replace(context(), name_kana=name))


def test_an_opened_context_lives_until_dropped() -> None:
    cache = ContextCache(ttl_seconds=60)
    cache.put(7, opened())
    assert cache.get(7) == opened()
    cache.drop(7)
    assert cache.get(7) is None and 7 not in cache
    cache.drop(7)  # dropping twice is harmless


def test_an_opened_context_expires_after_its_time_to_live() -> None:
    clock = FakeMonotonic()
    cache = ContextCache(ttl_seconds=60, clock=clock)
    cache.put(1, opened())
    clock.now += 30
    cache.put(2, opened("スズキ ハナコ"))
    clock.now += 30  # the first entry is 60 s old: gone, the second is not
    assert cache.get(1) is None
    assert cache.get(2) == opened("スズキ ハナコ")
    clock.now += 30
    assert len(cache) == 0


def test_putting_again_restarts_the_time_to_live() -> None:
    clock = FakeMonotonic()
    cache = ContextCache(ttl_seconds=60, clock=clock)
    cache.put(1, opened())
    cache.put(2, opened())
    clock.now += 50
    cache.put(1, opened())  # reopened: now the youngest
    clock.now += 20
    assert 2 not in cache and 1 in cache


def test_a_full_cache_forgets_the_oldest_entry() -> None:
    cache = ContextCache(ttl_seconds=60, size=2)
    for attempt_id in (1, 2, 3):
        cache.put(attempt_id, opened())
    assert 1 not in cache and 2 in cache and 3 in cache


def test_a_time_to_live_must_be_positive() -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        ContextCache(ttl_seconds=0)


def test_the_call_index_keeps_the_most_recently_used_names() -> None:
    index = CallIndex(size=2)
    index.put("key:a", CallIds(1, 9))
    index.put("key:b", CallIds(2, 9))
    assert index.get("key:a") == CallIds(1, 9)  # used: now the youngest
    index.put("ref:c", CallIds(3, 9))
    assert index.get("key:b") is None
    assert index.get("key:a") == CallIds(1, 9) and index.get("ref:c") == CallIds(3, 9)
    assert len(index) == 2


def test_the_caches_take_concurrent_writers() -> None:
    clock = FakeMonotonic()
    cache = ContextCache(ttl_seconds=60, size=500, clock=clock)
    index = CallIndex(size=500)

    def work(offset: int) -> None:
        for n in range(offset, offset + 1000):
            cache.put(n, opened())
            index.put(f"key:{n}", CallIds(n, 1))
            cache.get(n - 3)
            cache.drop(n - 7)

    threads = [threading.Thread(target=work, args=(k * 1000,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) <= 500 and len(index) == 500


def test_a_record_stored_by_this_process_is_taken_again_without_decoding() -> None:
    records = ParsedRecords(size=2)
    record = SessionRecord(CallPhase.IN_FLOW, State(identity_confirmed=True), ("t1",))
    text = record.to_json()
    records.stored("ivr:1:7", text, record)
    assert records.parse("ivr:1:7", text) is record  # the same object: nothing decoded


def test_a_record_another_process_stored_is_decoded() -> None:
    records = ParsedRecords()
    mine = SessionRecord(CallPhase.IN_FLOW, State(), ("t1",))
    records.stored("ivr:1:7", mine.to_json(), mine)
    theirs = SessionRecord(CallPhase.IN_FLOW, State(identity_confirmed=True), ("t1", "t2"))
    parsed = records.parse("ivr:1:7", theirs.to_json())
    assert parsed == theirs and parsed is not mine
    assert records.parse("ivr:1:8", theirs.to_json()) == theirs  # never stored here


def test_parsed_records_are_forgotten_and_bounded() -> None:
    records = ParsedRecords(size=2)
    for attempt in (1, 2, 3):
        record = SessionRecord(seen=(f"t{attempt}",))
        records.stored(f"ivr:1:{attempt}", record.to_json(), record)
    first = SessionRecord(seen=("t1",))
    assert records.parse("ivr:1:1", first.to_json()) is not first  # the oldest was dropped
    kept = SessionRecord(seen=("t3",))
    records.forget("ivr:1:3")
    assert records.parse("ivr:1:3", kept.to_json()) == kept  # decoded again after forget
