"""The collector's settings for ``dunning serve``."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from kernel.collector import THRESHOLDS, freeze_startup_objects


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_collector")
def test_startup_objects_are_frozen_and_young_ones_collected_less_often() -> None:
    startup = [[index] for index in range(1000)]  # tracked objects made at start-up
    freeze_startup_objects()
    assert gc.get_freeze_count() >= len(startup)
    assert gc.get_threshold() == THRESHOLDS
    assert THRESHOLDS[0] > 700  # CPython's default
