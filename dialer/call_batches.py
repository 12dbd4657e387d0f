"""Group commit: the call reports that queue up are handled a batch at a time.

Under load, webhooks arrive faster than one unit of work per report can commit, and on SQLite
concurrent writers only queue in its busy handler (which sleeps). :class:`GroupCommitter`
keeps one thread that takes every report queued so far (up to ``max_batch``), hands them to
``handle_batch`` in arrival order - the call session handles them in one unit of work, so the
session, the connection and the commit are paid once per batch - and resolves each report's
own future with its result or its exception (or calls its reply). A lone report is handled at
once. Under load - the previous batch held ``load_batch`` reports or more - the writer, once
it has a report, waits up to ``linger_seconds`` (the call session: the setting
``ivr.group_commit_linger_ms``) for more before it handles them (up to ``max_batch``): fewer,
larger commits for a few milliseconds added to an answer. Not under moderate load: in
``bench/ivr_webhook.py`` lingering after batches of two or more doubled the paced p99, and a
timed wait for a lone report doubled the CPU it cost on this machine.

The thread starts with the first report and ends after ``idle_seconds`` without one.

:class:`LoopBatcher` is the same group commit on an asyncio event loop, for a sink whose
batch is CPU work only: the reports of a pass of the loop (and the next) are handled together
there, and what the sink declines (it would have to wait) goes to the writer thread's queue.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

MAX_BATCH = 32
#: A batch this large means load: the next batch may linger for company.
LOAD_BATCH = 8
IDLE_SECONDS = 5.0


@dataclass(frozen=True)
class _Queued(Generic[Item, Result]):
    item: Item
    reply: Callable[[Result | BaseException], None]


class GroupCommitter(Generic[Item, Result]):
    """Queues items for one writer thread; ``handle_batch`` returns one result (or the
    exception that item raised) per item, in order."""

    def __init__(
        self,
        handle_batch: Callable[[Sequence[Item]], Sequence[Result | BaseException]],
        *,
        max_batch: int = MAX_BATCH,
        idle_seconds: float = IDLE_SECONDS,
        linger_seconds: float = 0.0,
        load_batch: int = LOAD_BATCH,
        name: str = "group-commit",
    ) -> None:
        self._handle_batch = handle_batch
        self._max_batch = max_batch
        self._idle_seconds = idle_seconds
        self._linger_seconds = linger_seconds
        self._load_batch = load_batch
        self._under_load = False  # the previous batch held load_batch reports or more
        self._name = name
        self._queue: queue.SimpleQueue[_Queued[Item, Result]] = queue.SimpleQueue()
        self._mutex = threading.Lock()
        self._running = False
        self._outstanding = 0  # queued or being handled, not answered yet
        self.batches = 0  # how many batches were handled (observability, tests)

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing being handled: every item submitted so far is answered."""
        return self._outstanding == 0

    def submit(self, item: Item) -> Future[Result]:
        """Queues ``item``; its future gets the result or the exception."""
        future: Future[Result] = Future()
        self.submit_to(item, functools.partial(_settle, future))
        return future

    def submit_to(self, item: Item, reply: Callable[[Result | BaseException], None]) -> None:
        """Queues ``item``; ``reply`` is called with its result or exception on the writer
        thread (an event loop's caller hands it back with ``call_soon_threadsafe``)."""
        with self._mutex:
            self._outstanding += 1
        self._queue.put(_Queued(item, reply))
        with self._mutex:
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name=self._name, daemon=True).start()

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._handle(batch)

    def _next_batch(self) -> list[_Queued[Item, Result]] | None:
        try:
            first = self._queue.get(timeout=self._idle_seconds)
        except queue.Empty:
            with self._mutex:  # a report queued just now still finds a running writer
                if self._queue.empty():
                    self._running = False
                    return None
            first = self._queue.get()
        batch = [first]
        linger = self._linger_seconds if self._under_load else 0.0
        until = time.monotonic() + linger
        while len(batch) < self._max_batch:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except queue.Empty:
                pass
            left = until - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=left))
            except queue.Empty:
                break
        self._under_load = len(batch) >= self._load_batch
        return batch

    def _handle(self, batch: list[_Queued[Item, Result]]) -> None:
        try:
            results = self._results([queued.item for queued in batch])
        finally:
            self.batches += 1
            with self._mutex:  # handled: what comes next need not wait behind it
                self._outstanding -= len(batch)
        for queued, result in zip(batch, results, strict=True):
            _answer(queued, result)

    def _results(self, items: list[Item]) -> Sequence[Result | BaseException]:
        """One result per item; a batch that failed as a whole fails every item of it."""
        try:
            results = self._handle_batch(items)
            if len(results) != len(items):
                raise RuntimeError(f"{len(results)} results for a batch of {len(items)}")
        except BaseException as error:  # every waiting report must be answered
            return [error] * len(items)
        return results


def _answer(queued: _Queued[Item, Result], result: Result | BaseException) -> None:
    """One reply; one that fails (its event loop closed, say) must not stop the writer."""
    try:
        queued.reply(result)
    except Exception:
        log.exception("group commit: a reply failed")


def _settle(future: Future[Result], result: Result | BaseException) -> None:
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


HandleNow = Callable[[Sequence[Item]], Sequence[Result | BaseException] | None]
HandOver = Callable[[Item, Callable[[Result | BaseException], None]], None]


class LoopBatcher(Generic[Item, Result]):
    """Group commit on an asyncio event loop: the items submitted during one pass of the loop
    and the next are handled together at the end of that next pass, on the loop, by
    ``handle_now`` (in batches of up to ``max_batch``, in arrival order) when it can handle
    them without waiting; when it declines (``None``: something would have to wait), each
    item goes to ``hand_over`` - the writer thread's queue (:meth:`GroupCommitter.submit_to`)
    - and is answered from there.

    For a sink whose batch is CPU work only (the call session on SQLite with in-process
    coordination): handing such a batch to a thread only makes the two threads take turns
    at the GIL. In ``bench/ivr_webhook.py`` a webhook of the flow cost 0.23 ms of the server's
    CPU with its batches on the writer thread and 0.20 ms with them on the loop.
    """

    def __init__(
        self,
        handle_now: HandleNow[Item, Result],
        hand_over: HandOver[Item, Result],
        *,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._handle_now = handle_now
        self._hand_over = hand_over
        self._max_batch = max_batch
        # per event loop (a test client may run its own): what waits for the next pass
        self._pending: dict[asyncio.AbstractEventLoop, list[_Waiting[Item, Result]]] = {}

    async def submit(self, item: Item) -> Result:
        """``item``'s result, handled with the other items of this pass of the loop and the
        next (waiting one more pass costs nothing when the loop is idle, and under load it
        gathers the requests read meanwhile: larger batches, fewer commits)."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Result] = loop.create_future()
        waiting = self._pending.get(loop)
        if waiting is None:
            waiting = self._pending[loop] = []
            loop.call_soon(loop.call_soon, self._flush, loop)
        waiting.append(_Waiting(item, answer))
        return await answer

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        waiting = self._pending.pop(loop, [])
        for start in range(0, len(waiting), self._max_batch):
            self._handle(loop, waiting[start : start + self._max_batch])

    def _handle(self, loop: asyncio.AbstractEventLoop, batch: list[_Waiting[Item, Result]]) -> None:
        try:
            results = self._handle_now([waiting.item for waiting in batch])
        except Exception as error:  # every waiting item must be answered
            for waiting in batch:
                settle(waiting.answer, error)
            return
        if results is None:
            for waiting in batch:
                self._hand_over(waiting.item, _reply_on(loop, waiting.answer))
            return
        if len(results) != len(batch):
            mismatch = RuntimeError(f"{len(results)} results for a batch of {len(batch)}")
            results = [mismatch] * len(batch)
        for waiting, result in zip(batch, results, strict=True):
            settle(waiting.answer, result)


def _reply_on(
    loop: asyncio.AbstractEventLoop, answer: asyncio.Future[Result]
) -> Callable[[Result | BaseException], None]:
    """A reply for another thread that settles ``answer`` on its own loop."""

    def reply(result: Result | BaseException) -> None:
        loop.call_soon_threadsafe(settle, answer, result)

    return reply


@dataclass
class _Waiting(Generic[Item, Result]):
    item: Item
    answer: asyncio.Future[Result]


def settle(answer: asyncio.Future[Result], result: Result | BaseException) -> None:
    """Resolves an asyncio future with a result or an exception, unless it is done already
    (the request that awaited it went away)."""
    if answer.done():
        return
    if isinstance(result, BaseException):
        answer.set_exception(result)
    else:
        answer.set_result(result)
