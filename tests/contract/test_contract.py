"""Every carrier adapter plays every scenario to the same outcome, through the real CallSession.

Each harness module (``tests/contract/harness_<carrier>.py``) exposes
``open_harness() -> AbstractContextManager[CarrierHarness]``. The simulator's always runs; a
harness module that does not exist yet is reported as skipped, and one that fails to import
fails its tests rather than hiding. The sink is :class:`~dialer.call_session.CallSession` on a
migrated SQLite database seeded with one attempt per scenario.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest
from sqlalchemy import select

from dialer.call_records import session_key
from dialer.call_session import CallSession
from dialer.ports import CallRequest
from kernel.coordination import LocalCoordination
from kernel.db import Database
from kernel.models import Attempt, AttemptStatus, DailyAggregate
from kernel.pii import KeyRing
from kernel.settings import load_settings
from tests.contract.scenarios import SCENARIOS, ResidentScript
from tests.contract.seed import CALLER_ID, MASTER_SECRET, RESIDENT_E164, Seeded, seed_campaign

HARNESSES = ("simulator", "twilio", "asterisk")
# Known gaps, as (harness, scenario): strict, so a fix shows up as an unexpected pass.
KNOWN_GAPS: dict[tuple[str, str], str] = {}  # (carrier, scenario) -> why it is expected to fail


def _load(name: str) -> ModuleType | BaseException | None:
    module = f"tests.contract.harness_{name}"
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name == module:
            return None
        return error
    except Exception as error:  # reported by the tests of that harness, not hidden
        return error


def _harness_params() -> list[object]:
    params: list[object] = []
    for name in HARNESSES:
        loaded = _load(name)
        marks = []
        if loaded is None:
            marks.append(pytest.mark.skip(reason=f"harness_{name}.py is not written yet"))
        params.append(pytest.param((name, loaded), id=name, marks=marks))
    return params


@pytest.fixture(params=_harness_params())
def harness_module(request: pytest.FixtureRequest) -> ModuleType:
    name, loaded = request.param
    if isinstance(loaded, BaseException):
        pytest.fail(f"harness_{name}.py does not import: {loaded!r}")
    assert isinstance(loaded, ModuleType)
    return loaded


@pytest.fixture
def keyring() -> KeyRing:
    return KeyRing(MASTER_SECRET)


@pytest.fixture
def seeded(sqlite_database: Database, keyring: KeyRing) -> Seeded:
    return seed_campaign(sqlite_database, keyring, [script.name for script in SCENARIOS])


def _request(seeded: Seeded, script: ResidentScript) -> CallRequest:
    return CallRequest(
        attempt_id=seeded.attempt_ids[script.name],
        idempotency_key=seeded.attempt_keys[script.name],
        to_e164=RESIDENT_E164,
        from_e164=CALLER_ID,
        ring_timeout_seconds=30,
    )


@pytest.mark.parametrize("script", SCENARIOS, ids=lambda s: s.name)
def test_scenario_outcome_is_the_same_on_every_carrier(
    harness_module: ModuleType,
    script: ResidentScript,
    sqlite_database: Database,
    keyring: KeyRing,
    seeded: Seeded,
    request: pytest.FixtureRequest,
) -> None:
    gap = KNOWN_GAPS.get((harness_module.__name__.rsplit("_", 1)[-1], script.name))
    if gap is not None:
        request.applymarker(pytest.mark.xfail(strict=True, reason=gap))
    coordination = LocalCoordination()
    settings = load_settings(environment="demo", database_url=sqlite_database.url)
    sink = CallSession(sqlite_database, coordination, keyring, settings)
    with harness_module.open_harness() as harness:
        if script.needs_speech and not harness.carrier.capabilities().speech_input:
            pytest.skip(f"{harness.carrier.name} has no speech input")
        harness.play(_request(seeded, script), script, sink)
    attempt_id = seeded.attempt_ids[script.name]
    with sqlite_database.read_only() as session:
        attempt = session.get(Attempt, attempt_id)
        assert attempt is not None
        counted = session.scalar(
            select(DailyAggregate.value).where(
                DailyAggregate.campaign_id == seeded.campaign_id,
                DailyAggregate.metric == "attempts.ivr",
            )
        )
    expected = script.expected.value if script.expected else None
    assert attempt.outcome_code == expected
    if script.expected_carrier_result:
        assert attempt.carrier_result == script.expected_carrier_result
    assert attempt.status is AttemptStatus.COMPLETED
    assert counted == 1, "the finished attempt is counted exactly once"
    assert coordination.get_state(session_key(seeded.campaign_id, attempt_id)) is None
    assert sink.warnings["unknown_call"] == 0
