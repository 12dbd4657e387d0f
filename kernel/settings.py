"""One validated settings class, read from ``config/dunning.toml`` and ``DUNNING_*`` variables.

Order of precedence (highest first): explicit keyword arguments, environment variables
(``DUNNING_DATABASE_URL``, nested with ``__`` as in ``DUNNING_DIALER__CALLS_PER_SECOND``),
secret files in ``DUNNING_SECRETS_DIR`` (one file per key, e.g. ``dunning_secret_key``),
the TOML file named by ``DUNNING_CONFIG`` (default ``config/dunning.toml``), then the defaults
below. Settings are read through :func:`get_settings`, never at import time.
"""

from __future__ import annotations

import os
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from kernel.calendar import CallingPolicy, parse_hours
from kernel.errors import ConfigurationError
from kernel.models.enums import DisclosureLevel, Role

PLACEHOLDER_SECRET = "change-me"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
WEEKDAY_KEYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SECRET_FIELDS = ("secret_key", "data_key_secret")


def config_path() -> Path:
    """The TOML file to read: ``$DUNNING_CONFIG`` or ``config/dunning.toml``."""
    explicit = os.environ.get("DUNNING_CONFIG")
    if explicit:
        return Path(explicit)
    local = Path("config/dunning.toml")
    return local if local.exists() else PROJECT_ROOT / "config" / "dunning.toml"


class MunicipalitySettings(BaseModel):
    name: str = "架空市"
    name_kana: str = "カクウシ"
    section: str = "納税課"
    section_kana: str = "ノウゼイカ"
    callback_number: str = "+81312345678"
    callback_number_display: str = "03-1234-5678"
    caller_id: str = "+81312345678"
    sms_sender_id: str = "KAKUSHI"


class CallingWindowSettings(BaseModel):
    weekly: dict[str, list[str]] = Field(
        default_factory=lambda: {day: ["09:00-20:00"] for day in WEEKDAY_KEYS[:6]}
    )
    closure_dates: list[date] = Field(default_factory=list)
    year_end_closure: bool = True
    observe_national_holidays: bool = True

    @field_validator("weekly")
    @classmethod
    def _valid_weekly(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for day, spans in value.items():
            if day.lower() not in WEEKDAY_KEYS:
                raise ValueError(f"unknown weekday {day!r}; use one of {', '.join(WEEKDAY_KEYS)}")
            for span in spans:
                parse_hours(span)
        return value

    def policy(self) -> CallingPolicy:
        return CallingPolicy.from_config(
            self.weekly,
            closure_dates=self.closure_dates,
            year_end_closure=self.year_end_closure,
            observe_national_holidays=self.observe_national_holidays,
        )


class SharingPolicy(BaseModel):
    """R-9: which 所管課 / 債権種別 may be merged per person and loaded.

    An empty ``departments`` or ``kinds`` list allows every value; ``excluded_kinds`` (e.g.
    information under special secrecy) is never loaded, even when listed in ``kinds``.
    """

    departments: list[str] = Field(default_factory=list)
    kinds: list[str] = Field(default_factory=list)
    excluded_kinds: list[str] = Field(default_factory=list)


class SyncSettings(BaseModel):
    phone_max_age_years: int = Field(default=5, ge=0, le=100)
    carryover_limit_yen: int = Field(default=100_000, ge=0)
    exclusion_max_age_hours: float = Field(default=24.0, gt=0)
    cron: str = "0 2 * * *"
    sources: list[str] = Field(default_factory=list)
    sharing_policy: SharingPolicy = Field(default_factory=SharingPolicy)
    # CSV/TSV files go through the columnar pipeline when it can read them exactly (it
    # declines otherwise); False forces the row pipeline, the reference it is tested against.
    columnar_import: bool = True
    # The columnar load seals on a second process while the first inserts: about 7% faster
    # on two cores, but that process holds 100-300 MiB more at the peak of a 1M-row import.
    seal_in_worker: bool = False


class DialerSettings(BaseModel):
    max_concurrent_calls: int = Field(default=30, ge=1, le=10_000)
    calls_per_second: float = Field(default=5.0, gt=0, le=1_000)
    max_attempts_per_day: int = Field(default=2, ge=1, le=10)
    max_attempts_per_week: int = Field(default=7, ge=1, le=50)
    busy_retry_minutes: int = Field(default=15, ge=1)
    no_answer_retry_hours: int = Field(default=4, ge=1)
    ring_timeout_seconds: int = Field(default=30, ge=5, le=120)
    tick_seconds: float = Field(default=1.0, gt=0)
    claim_batch: int = Field(default=50, ge=1, le=5_000)
    check_chunk: int = Field(default=20, ge=1, le=500)
    carrier_error_backoff_seconds: int = Field(default=60, ge=1)
    max_dispatch_errors: int = Field(default=5, ge=1, le=50)
    stale_claim_seconds: int = Field(default=300, ge=10)
    max_call_minutes: int = Field(default=30, ge=1, le=240)
    household_lock_retry_minutes: int = Field(default=10, ge=1)
    sms_template: str = "reminder"


class TwilioSettings(BaseModel):
    account_sid: str = ""
    auth_token: SecretStr = SecretStr("")
    from_number: str = ""
    api_base_url: str = "https://api.twilio.com"
    request_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    machine_detection: Literal["DetectMessageEnd", "Enable"] = "DetectMessageEnd"
    async_amd: bool = True
    machine_detection_timeout_seconds: int = Field(default=30, ge=3, le=59)
    operator_number: str = ""  # transfers dial this; empty: municipality.callback_number
    max_webhook_body_bytes: int = Field(default=16_384, ge=1_024, le=1_048_576)


class AsteriskSettings(BaseModel):
    ami_host: str = "127.0.0.1"
    ami_port: int = Field(default=5038, ge=1, le=65535)
    ami_username: str = ""
    ami_secret: SecretStr = SecretStr("")
    agi_host: str = "127.0.0.1"
    agi_port: int = Field(default=4573, ge=1, le=65535)
    outbound_context: str = "dunning-outbound"
    outbound_exten: str = "s"
    # Where Originate dials: {national} (090...) or {e164} (+8190...) is the resident's number.
    channel_template: str = "PJSIP/{national}@trunk"
    # Dial string the IVR transfers to when the resident asks for an operator.
    operator_dial: str = "PJSIP/operators"
    ami_read_timeout_seconds: float = Field(default=30.0, gt=0)
    ami_keepalive_seconds: float = Field(default=10.0, gt=0)
    reconnect_initial_seconds: float = Field(default=0.5, gt=0)
    reconnect_max_seconds: float = Field(default=30.0, gt=0)
    # TTS argv (no shell): {out} (the .wav to write), {voice}, {text} substituted; without
    # {text} the text goes to stdin (kept out of the process list).
    tts_command: list[str] = Field(
        default_factory=lambda: ["espeak-ng", "-v", "{voice}", "-w", "{out}", "--stdin"]
    )
    tts_voice: str = "ja"
    tts_timeout_seconds: float = Field(default=30.0, gt=0)
    # A stock Asterisk sound (no personal data) played before hanging up when TTS fails.
    fallback_prompt: str = "vm-goodbye"


class SimulatorSettings(BaseModel):
    """The built-in simulated carrier: a seeded resident model on an accelerated clock."""

    seed: int = 20261124
    speedup: float = Field(default=600.0, gt=0)
    sms_delivered_share: float = Field(default=0.95, ge=0, le=1)


class IvrSettings(BaseModel):
    """Defaults for automated calls (R-4, R-12); a campaign may set a stricter disclosure."""

    disclosure_default: DisclosureLevel = DisclosureLevel.NOTICE
    payment_methods: list[str] = Field(
        default_factory=lambda: [
            "地方税統一QRコード（eL-QR）",
            "コンビニエンスストア",
            "スマートフォン決済アプリ",
            "口座振替",
        ]
    )
    machine_policy: Literal["message", "hangup"] = "message"
    session_ttl_seconds: int = Field(default=3600, ge=60, le=86_400)
    #: How long the call session's writer, under heavy load (a batch of 8 reports or more),
    #: waits for more reports before it handles a batch (as PostgreSQL's commit_delay):
    #: fewer, larger commits, at most this much added to a webhook's answer.
    group_commit_linger_ms: float = Field(default=2.0, ge=0, le=50)


class ConsoleSettings(BaseModel):
    language: Literal["ja", "en"] = "ja"
    idle_timeout_minutes: int = Field(default=15, ge=1, le=480)
    lockout_threshold: int = Field(default=5, ge=1, le=100)
    lockout_minutes: int = Field(default=15, ge=1)
    totp_required_roles: list[Role] = Field(default_factory=list)
    notes_max_chars: int = Field(default=500, ge=50, le=5000)
    live_refresh_seconds: float = Field(default=2.0, gt=0, le=60)
    operator_retry_limit: int = Field(default=4, ge=1, le=20)

    @property
    def lockout_timedelta(self) -> timedelta:
        return timedelta(minutes=self.lockout_minutes)

    @property
    def totp_roles(self) -> frozenset[Role]:
        return frozenset(self.totp_required_roles)


class ReportsSettings(BaseModel):
    """日報・月報: where files go, the Japanese font, and when the daily report is produced."""

    out_subdir: str = "reports"
    daily_time: str = "07:00"
    daily_formats: list[Literal["csv", "xlsx", "pdf", "json"]] = ["xlsx", "pdf", "json"]
    csv_encoding: Literal["cp932", "utf-8"] = "cp932"
    font_path: Path | None = None
    font_name: str = "IPAexGothic"


class LettersSettings(BaseModel):
    """催告書: template in config/letters/, font and the 長3 window-envelope address block (mm)."""

    template: str = "saikoku.txt.j2"
    address_left_mm: float = Field(default=22.0, ge=0, le=150)
    address_top_mm: float = Field(default=18.0, ge=0, le=250)
    address_width_mm: float = Field(default=90.0, gt=0, le=180)
    address_height_mm: float = Field(default=45.0, gt=0, le=120)


class WipeSettings(BaseModel):
    """R-11: exported campaigns are wiped automatically once the grace period has passed."""

    auto_wipe_after_export: bool = True
    grace_days: int = Field(default=7, ge=0, le=365)
    cron: str = "30 3 * * *"  # Asia/Tokyo; when the scheduler looks for campaigns due
    # PostgreSQL: rewrite the affected tables (VACUUM FULL, exclusive locks) instead of VACUUM,
    # so not even ciphertext under the destroyed key stays in their pages.
    postgres_vacuum_full: bool = False


class Settings(BaseSettings):
    """Every setting the platform reads. Unknown keys are refused so typos do not go unseen."""

    model_config = SettingsConfigDict(
        env_prefix="DUNNING_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    environment: Literal["demo", "production"] = "production"
    database_url: str = "sqlite:///var/dunning.db"
    redis_url: str | None = None
    carrier: Literal["simulator", "twilio", "asterisk"] = "simulator"
    secret_key: SecretStr = SecretStr(PLACEHOLDER_SECRET)
    data_key_secret: SecretStr = SecretStr(PLACEHOLDER_SECRET)
    public_base_url: str = "http://127.0.0.1:8000"
    var_dir: Path = Path("var")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    municipality: MunicipalitySettings = Field(default_factory=MunicipalitySettings)
    calling_window: CallingWindowSettings = Field(default_factory=CallingWindowSettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    dialer: DialerSettings = Field(default_factory=DialerSettings)
    twilio: TwilioSettings = Field(default_factory=TwilioSettings)
    asterisk: AsteriskSettings = Field(default_factory=AsteriskSettings)
    simulator: SimulatorSettings = Field(default_factory=SimulatorSettings)
    ivr: IvrSettings = Field(default_factory=IvrSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    reports: ReportsSettings = Field(default_factory=ReportsSettings)
    letters: LettersSettings = Field(default_factory=LettersSettings)
    wipe: WipeSettings = Field(default_factory=WipeSettings)

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError("only sqlite:// and postgresql:// URLs are supported")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("public_base_url")
    @classmethod
    def _http_base(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _real_secrets_outside_demo(self) -> Settings:
        if self.environment == "demo":
            return self
        for name in SECRET_FIELDS:
            secret = getattr(self, name).get_secret_value()
            if secret == PLACEHOLDER_SECRET or len(secret) < 32:
                raise ValueError(
                    f"{name}: a real secret of at least 32 characters is required outside "
                    f"demo mode (set DUNNING_{name.upper()} or a file dunning_{name} in "
                    "DUNNING_SECRETS_DIR)"
                )
        return self

    @property
    def is_demo(self) -> bool:
        return self.environment == "demo"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_path())
        return (init_settings, env_settings, file_secret_settings, toml)


def describe_validation_error(error: ValidationError) -> str:
    """One line per problem, each naming the setting key (dotted) and the bad value."""
    lines = []
    for problem in error.errors():
        key = ".".join(str(part) for part in problem["loc"]) or "(settings)"
        value = problem.get("input")
        shown = (
            ""
            if isinstance(value, dict | SecretStr) or key in SECRET_FIELDS
            else f" (got {value!r})"
        )
        lines.append(f"setting {key}: {problem['msg']}{shown}")
    return "\n".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning validation problems into a ConfigurationError naming each key."""
    secrets_dir = os.environ.get("DUNNING_SECRETS_DIR")
    try:
        if secrets_dir:
            return Settings(_secrets_dir=secrets_dir, **overrides)
        return Settings(**overrides)
    except ValidationError as error:
        raise ConfigurationError(
            f"invalid configuration ({config_path()}):\n{describe_validation_error(error)}"
        ) from error


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded once on first use."""
    return load_settings()
