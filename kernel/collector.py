"""The garbage collector's settings for a long-running server process (``dunning serve``)."""

from __future__ import annotations

import gc

#: Collect the youngest generation after this many allocations (CPython's default: 700), the
#: next ones after this many collections of the one below (defaults: 10 and 10).
THRESHOLDS = (50_000, 20, 10)


def freeze_startup_objects() -> None:
    """Call once, when start-up is done.

    Moves everything allocated so far (modules, the app, the services: about a million
    objects) out of the garbage collector's reach: a full collection would otherwise walk
    them all, pausing every request for tens of milliseconds (the IVR webhooks' p99 went from
    15-60 ms to 7-10 ms in ``bench/ivr_webhook.py``).

    Then collects young objects less often (:data:`THRESHOLDS`). Nearly everything a request
    allocates is freed by reference counting; the collector's walks found almost nothing, yet
    at the default thresholds they took about a tenth of a voice webhook's CPU, because the
    webhooks' batch keeps its reports alive across a pass of the event loop, long enough to be
    walked and promoted to older generations, then walked there again. In the same bench,
    the flow's CPU per request fell from 0.20 to 0.17-0.18 ms, the trivial endpoint's from
    0.083 to 0.079 ms."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
