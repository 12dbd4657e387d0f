"""SMS templates (R-7): fixed approved texts, checked when loaded, rendered per municipality.

Checks: every template names the callback number and carries the 行き違い sentence; no URL
unless explicitly allowed (real municipal SMS carry none: phishing); no digits that could be
an amount; at most ``max_segments`` UCS-2 segments (70 characters in one segment, 67 per part
of a concatenated message) and never more than 670 characters.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from kernel.errors import ConfigurationError
from kernel.settings import MunicipalitySettings

SINGLE_SEGMENT = 70
PER_PART = 67
HARD_MAX_CHARS = 670
URL_PATTERN = re.compile(r"(https?://|www\.|\b[a-z0-9-]+\.(jp|com|net|org)\b)", re.IGNORECASE)
CROSSED_PAYMENT = "行き違い"
STOP_WORDS = frozenset({"停止", "ていし", "テイシ", "stop", "配信停止", "unsubscribe"})


def segments(text: str) -> int:
    """UCS-2 segments needed for ``text`` (Japanese SMS are always UCS-2)."""
    length = len(text.encode("utf-16-le")) // 2
    if length <= SINGLE_SEGMENT:
        return 1
    return -(-length // PER_PART)


@dataclass(frozen=True)
class SmsTemplate:
    name: str
    body: str

    def render(self, municipality: MunicipalitySettings) -> str:
        return self.body.format(
            municipality=municipality.name,
            section=municipality.section,
            callback_number=municipality.callback_number_display,
        )


@dataclass(frozen=True)
class SmsCatalog:
    templates: dict[str, SmsTemplate]
    max_segments: int

    def get(self, name: str) -> SmsTemplate:
        try:
            return self.templates[name]
        except KeyError as error:
            raise ConfigurationError(f"SMS template {name!r} is not configured") from error


def check_template(
    name: str, rendered: str, *, max_segments: int, allow_urls: bool, callback_display: str
) -> list[str]:
    """Problems with one rendered template; empty when it may be sent."""
    problems = []
    if callback_display not in rendered:
        problems.append("does not give the section's callback number")
    if CROSSED_PAYMENT not in rendered:
        problems.append("lacks the 行き違い (crossed-with-payment) sentence")
    if not allow_urls and URL_PATTERN.search(rendered):
        problems.append("contains a URL (set allow_urls = true only if the city approved it)")
    if re.search(r"\d[\d,]*\s*円", rendered):
        problems.append("mentions an amount (amounts are never put in an SMS)")
    if len(rendered) > HARD_MAX_CHARS:
        problems.append(f"is {len(rendered)} characters; {HARD_MAX_CHARS} is the maximum")
    elif segments(rendered) > max_segments:
        problems.append(f"needs {segments(rendered)} segments; at most {max_segments} allowed")
    return [f"SMS template {name!r} {problem}" for problem in problems]


def load_catalog(path: Path, municipality: MunicipalitySettings) -> SmsCatalog:
    """Read and check the templates; a problem stops start-up naming template and rule."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigurationError(f"{path}: {error}") from error
    max_segments = int(data.get("max_segments", 1))
    allow_urls = bool(data.get("allow_urls", False))
    templates = {
        name: SmsTemplate(name, str(entry["body"]))
        for name, entry in dict(data.get("templates", {})).items()
    }
    problems = [
        problem
        for template in templates.values()
        for problem in check_template(
            template.name,
            template.render(municipality),
            max_segments=max_segments,
            allow_urls=allow_urls,
            callback_display=municipality.callback_number_display,
        )
    ]
    if problems:
        raise ConfigurationError(f"{path}:\n" + "\n".join(problems))
    return SmsCatalog(templates, max_segments)


def is_opt_out(body: str) -> bool:
    """An inbound SMS asking to stop (停止 / ていし / STOP ...)."""
    normalized = unicodedata.normalize("NFKC", body).strip().lower()
    normalized = re.sub(r"[\s。.!！]", "", normalized)
    return normalized in STOP_WORDS
