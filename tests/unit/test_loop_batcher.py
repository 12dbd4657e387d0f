"""Group commit on the event loop: what one pass of the loop gathers, handled together there;
what the handler declines, handed to the writer thread's queue."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence

import pytest

from dialer.call_batches import GroupCommitter, LoopBatcher
from tests.unit.test_call_session_group_commit import FailsFirstBatch


class Inline:
    """A ``handle_now`` that records its batches and declines while ``busy``."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.busy = False

    def __call__(self, items: Sequence[str]) -> list[str | BaseException] | None:
        if self.busy:
            return None
        self.batches.append(list(items))
        return [ValueError(item) if item.startswith("bad") else item.upper() for item in items]


class Writer:
    """The writer thread's queue: answers from a thread of its own, as the real one does."""

    def __init__(self) -> None:
        self.handled: list[list[str]] = []
        self.committer: GroupCommitter[str, str] = GroupCommitter(self._batch)

    def _batch(self, items: Sequence[str]) -> list[str | BaseException]:
        self.handled.append(list(items))
        return [f"thread:{item}" for item in items]

    def hand_over(self, item: str, reply: Callable[[str | BaseException], None]) -> None:
        self.committer.submit_to(item, reply)


async def _submit_together(batcher: LoopBatcher[str, str], items: list[str]) -> list[object]:
    return await asyncio.gather(*(batcher.submit(i) for i in items), return_exceptions=True)


def test_what_one_pass_gathers_is_handled_together_in_order() -> None:
    inline, writer = Inline(), Writer()
    batcher = LoopBatcher(inline, writer.hand_over)
    answers = asyncio.run(_submit_together(batcher, ["a", "b", "c"]))
    assert answers == ["A", "B", "C"]
    assert inline.batches == [["a", "b", "c"]] and writer.handled == []


def test_later_passes_make_later_batches() -> None:
    inline, writer = Inline(), Writer()
    batcher = LoopBatcher(inline, writer.hand_over)

    async def two_passes() -> list[str]:
        first = await batcher.submit("a")
        second = await batcher.submit("b")
        return [first, second]

    assert asyncio.run(two_passes()) == ["A", "B"]
    assert inline.batches == [["a"], ["b"]]


def test_a_large_pass_is_cut_into_batches_of_max_batch() -> None:
    inline, writer = Inline(), Writer()
    batcher = LoopBatcher(inline, writer.hand_over, max_batch=2)
    answers = asyncio.run(_submit_together(batcher, ["a", "b", "c", "d", "e"]))
    assert answers == ["A", "B", "C", "D", "E"]
    assert inline.batches == [["a", "b"], ["c", "d"], ["e"]]


def test_each_item_gets_its_own_exception() -> None:
    batcher = LoopBatcher(Inline(), Writer().hand_over)
    good, bad = asyncio.run(_submit_together(batcher, ["good", "bad one"]))
    assert good == "GOOD"
    assert isinstance(bad, ValueError) and str(bad) == "bad one"


def test_a_declined_batch_goes_to_the_writer_thread_and_is_answered_from_there() -> None:
    inline, writer = Inline(), Writer()
    inline.busy = True
    batcher = LoopBatcher(inline, writer.hand_over)
    answers = asyncio.run(_submit_together(batcher, ["a", "b"]))
    assert answers == ["thread:a", "thread:b"]
    assert inline.batches == []
    assert [item for batch in writer.handled for item in batch] == ["a", "b"]


def test_a_failing_batch_fails_every_item_of_it_and_the_next_pass_goes_on() -> None:
    batcher = LoopBatcher(FailsFirstBatch(), Writer().hand_over)

    async def scenario() -> tuple[list[object], str]:
        failed = await _submit_together(batcher, ["x", "y"])
        return failed, await batcher.submit("z")

    failed, later = asyncio.run(scenario())
    assert all(isinstance(f, RuntimeError) for f in failed) and later == "z"


def test_a_handler_must_answer_every_item() -> None:
    batcher: LoopBatcher[str, str] = LoopBatcher(lambda items: [], Writer().hand_over)
    with pytest.raises(RuntimeError, match="0 results for a batch of 1"):
        asyncio.run(batcher.submit("x"))


def test_each_event_loop_batches_its_own_items() -> None:
    inline = Inline()
    batcher = LoopBatcher(inline, Writer().hand_over)
    assert asyncio.run(_submit_together(batcher, ["a"])) == ["A"]
    assert asyncio.run(_submit_together(batcher, ["b", "c"])) == ["B", "C"]
    assert inline.batches == [["a"], ["b", "c"]]


def test_the_writer_is_idle_only_when_everything_submitted_is_answered() -> None:
    gate = threading.Event()
    entered = threading.Event()

    def slow(items: Sequence[str]) -> list[str | BaseException]:
        entered.set()
        gate.wait(5)
        return list(items)

    committer: GroupCommitter[str, str] = GroupCommitter(slow)
    assert committer.idle
    first = committer.submit("a")
    assert entered.wait(5)
    queued = committer.submit("b")
    assert not committer.idle  # one being handled, one queued
    gate.set()
    assert first.result(timeout=5) == "a" and queued.result(timeout=5) == "b"
    assert committer.idle


def test_items_of_the_next_pass_join_the_batch() -> None:
    inline = Inline()
    batcher = LoopBatcher(inline, Writer().hand_over)

    async def late(item: str) -> str:
        await asyncio.sleep(0)  # submitted one pass later
        return await batcher.submit(item)

    async def scenario() -> list[str]:
        return list(await asyncio.gather(batcher.submit("a"), late("b")))

    assert asyncio.run(scenario()) == ["A", "B"]
    assert inline.batches == [["a", "b"]]
