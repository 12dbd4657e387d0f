"""SMS templates are checked when loaded (R-7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dialer.sms import PER_PART, SINGLE_SEGMENT, is_opt_out, load_catalog, segments
from kernel.errors import ConfigurationError
from kernel.settings import MunicipalitySettings

CITY = MunicipalitySettings()
SHIPPED = Path(__file__).resolve().parents[2] / "config" / "sms_templates.toml"
GOOD = (
    "{municipality}{section}です。{callback_number}へお電話ください。"
    "行き違いの場合はご容赦ください。"
)


def _catalog(tmp_path: Path, body: str, *, header: str = "max_segments = 2") -> Path:
    path = tmp_path / "sms.toml"
    path.write_text(f'{header}\n[templates.t]\nbody = "{body}"\n', encoding="utf-8")
    return path


def test_shipped_templates_pass_every_check() -> None:
    catalog = load_catalog(SHIPPED, CITY)
    assert {"reminder", "contact_details"} <= set(catalog.templates)
    for template in catalog.templates.values():
        rendered = template.render(CITY)
        assert CITY.callback_number_display in rendered
        assert segments(rendered) <= catalog.max_segments


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("{municipality}です。行き違いの場合はご容赦ください。", "callback number"),
        ("{municipality}です。{callback_number}へ。", "行き違い"),
        (GOOD + "https://example.jp/pay", "URL"),
        (GOOD + "詳細は www.example.com", "URL"),
        (GOOD + "未納額は12,000円です。", "amount"),
        (GOOD + "あ" * 700, "670"),
    ],
)
def test_bad_templates_are_refused(tmp_path: Path, body: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        load_catalog(_catalog(tmp_path, body), CITY)


def test_urls_allowed_only_when_configured(tmp_path: Path) -> None:
    path = _catalog(
        tmp_path, GOOD + "https://city.example.jp", header="max_segments = 3\nallow_urls = true"
    )
    assert "t" in load_catalog(path, CITY).templates


def test_segment_limit(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="segments"):
        load_catalog(_catalog(tmp_path, GOOD + "あ" * 200), CITY)


def test_segment_counting_uses_ucs2_parts() -> None:
    assert segments("あ" * SINGLE_SEGMENT) == 1
    assert segments("あ" * (SINGLE_SEGMENT + 1)) == 2
    assert segments("あ" * (PER_PART * 2)) == 2
    assert segments("あ" * (PER_PART * 2 + 1)) == 3
    assert segments("😀" * 35) == 1  # a surrogate pair takes two UCS-2 units
    assert segments("😀" * 36) == 2


@pytest.mark.parametrize(
    "body", ["停止", "ていし", "STOP", " stop ", "ＳＴＯＰ", "停止。", "配信停止"]
)
def test_opt_out_words(body: str) -> None:
    assert is_opt_out(body)


@pytest.mark.parametrize("body", ["停止しないで", "払いました", "", "ありがとう"])
def test_other_replies_are_not_opt_outs(body: str) -> None:
    assert not is_opt_out(body)
