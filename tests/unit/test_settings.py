"""Settings: file + environment + secrets, and clear errors that name the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kernel.errors import ConfigurationError
from kernel.settings import PLACEHOLDER_SECRET, load_settings

REAL_SECRET = "s" * 40


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("DUNNING_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dunning.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_config_file_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(environment="demo")
    assert settings.carrier == "simulator"
    assert settings.municipality.section == "納税課"
    assert settings.calling_window.policy().weekly_hours


def test_placeholder_secrets_are_refused_outside_demo() -> None:
    with pytest.raises(ConfigurationError, match="secret_key"):
        load_settings(environment="production")


def test_placeholder_secrets_are_accepted_in_demo() -> None:
    settings = load_settings(environment="demo")
    assert settings.secret_key.get_secret_value() == PLACEHOLDER_SECRET


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DUNNING_CONFIG", str(_write_config(tmp_path, 'carrier = "twilio"\n')))
    monkeypatch.setenv("DUNNING_ENVIRONMENT", "demo")
    assert load_settings().carrier == "twilio"
    monkeypatch.setenv("DUNNING_CARRIER", "asterisk")
    monkeypatch.setenv("DUNNING_DIALER__CALLS_PER_SECOND", "2.5")
    settings = load_settings()
    assert settings.carrier == "asterisk"
    assert settings.dialer.calls_per_second == 2.5


def test_secrets_from_a_secrets_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "dunning_secret_key").write_text(REAL_SECRET)
    (secrets / "dunning_data_key_secret").write_text("d" * 40)
    monkeypatch.setenv("DUNNING_SECRETS_DIR", str(secrets))
    settings = load_settings(environment="production")
    assert settings.secret_key.get_secret_value() == REAL_SECRET
    assert settings.data_key_secret.get_secret_value() == "d" * 40


@pytest.mark.parametrize(
    ("variable", "value", "key"),
    [
        ("DUNNING_CARRIER", "pigeon", "carrier"),
        ("DUNNING_DATABASE_URL", "mysql://x", "database_url"),
        ("DUNNING_REDIS_URL", "http://x", "redis_url"),
        ("DUNNING_DIALER__CALLS_PER_SECOND", "-1", "dialer.calls_per_second"),
        ("DUNNING_DIALER__MAX_CONCURRENT_CALLS", "many", "dialer.max_concurrent_calls"),
        ("DUNNING_PUBLIC_BASE_URL", "ftp://x", "public_base_url"),
    ],
)
def test_bad_environment_value_names_the_key(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, key: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings(environment="demo")
    assert f"setting {key}:" in str(caught.value)


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[calling_window.weekly]\nmon = ["25:00-26:00"]\n', "calling_window.weekly"),
        ('[calling_window.weekly]\nfunday = ["09:00-17:00"]\n', "calling_window.weekly"),
        ('[calling_window]\nclosure_dates = ["2026-02-30"]\n', "calling_window.closure_dates"),
        ("unknown_key = 1\n", "unknown_key"),
        ("[dialer]\nmax_attempts_per_day = 0\n", "dialer.max_attempts_per_day"),
    ],
)
def test_bad_file_value_names_the_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, toml: str, key: str
) -> None:
    monkeypatch.setenv("DUNNING_CONFIG", str(_write_config(tmp_path, toml)))
    with pytest.raises(ConfigurationError) as caught:
        load_settings(environment="demo")
    assert f"setting {key}" in str(caught.value)


def test_secret_values_never_appear_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUNNING_SECRET_KEY", "short-but-secret")
    with pytest.raises(ConfigurationError) as caught:
        load_settings(environment="production")
    assert "short-but-secret" not in str(caught.value)
