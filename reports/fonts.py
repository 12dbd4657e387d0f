"""The Japanese TrueType font for PDF and charts: a configured path, else ``fc-match``.

Debian ships IPAexGothic in ``fonts-ipaexfont`` (``fonts-ipaexfont-gothic``); the font file is
never vendored here. ReportLab embeds TrueType outlines only (not CFF ``.otf``), so the font
found must be a ``.ttf``/``.ttc`` file.
"""

from __future__ import annotations

import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

from kernel.errors import ConfigurationError

TRUETYPE_SUFFIXES = (".ttf", ".ttc")
INSTALL_HINT = "apt-get install fonts-ipaexfont (or set reports.font_path to a Japanese .ttf)"


def _fc_match(family: str) -> Path | None:
    binary = shutil.which("fc-match")
    if binary is None:
        return None
    completed = subprocess.run(
        [binary, "-f", "%{file}\n%{family}", f"{family}:lang=ja"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    file, _, families = completed.stdout.partition("\n")
    if completed.returncode != 0 or family.lower() not in families.lower():
        return None  # fontconfig fell back to another family: it would print tofu
    return Path(file.strip())


def _usable(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in TRUETYPE_SUFFIXES


@lru_cache(maxsize=8)
def find_japanese_font(configured: Path | None = None, family: str = "IPAexGothic") -> Path:
    """The font file to embed, or a ConfigurationError saying how to install one."""
    if configured is not None:
        if not _usable(configured):
            raise ConfigurationError(
                f"setting reports.font_path: {configured} is not a TrueType font file"
            )
        return configured
    found = _fc_match(family)
    if found is None or not _usable(found):
        raise ConfigurationError(f"no Japanese TrueType font {family!r} found: {INSTALL_HINT}")
    return found
