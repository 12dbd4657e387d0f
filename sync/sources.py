"""The configured arrears sources (``sync.sources``), imported one after another: what the
nightly job and ``dunning sync run`` do.

A source entry is ``csv:PATH``, ``tsv:PATH``, ``fixed:PATH;layout=NAME`` or
``sql:URL#VIEW_OR_QUERY``, each optionally ending in ``;layout=NAME``. Every source goes into
its own draft campaign, in its own transaction; one failing source (a missing file, a bad
layout, an unreachable database) is reported and the others still run. Logs name a source
without its SQL password and carry counts only, never personal data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from kernel.calendar import TOKYO
from kernel.db import Database
from kernel.errors import ConfigurationError, DunningError
from kernel.pii import KeyRing
from kernel.settings import SyncSettings
from sync.importer import ImportSummary, import_file, import_sql

log = logging.getLogger(__name__)
KINDS = ("csv", "tsv", "fixed", "sql")


def parse_source(entry: str) -> tuple[str, str, str | None]:
    """``csv:PATH``, ``tsv:PATH``, ``fixed:PATH;layout=NAME``, ``sql:URL#VIEW_OR_QUERY``;
    any of them may end with ``;layout=NAME``. Returns (kind, target, layout)."""
    kind, _, rest = entry.partition(":")
    layout: str | None = None
    if ";layout=" in rest:
        rest, _, layout = rest.rpartition(";layout=")
    if kind not in KINDS or not rest:
        raise ConfigurationError(f"setting sync.sources: cannot read source {entry!r}")
    if kind == "fixed" and not layout:
        raise ConfigurationError(f"setting sync.sources: {entry!r} needs ;layout=NAME")
    if kind == "sql" and "#" not in rest:
        raise ConfigurationError(f"setting sync.sources: {entry!r} needs URL#view")
    return kind, rest, layout


def shown(entry: str) -> str:
    """A source entry fit for logs: SQL URLs without their password or query."""
    kind, _, rest = entry.partition(":")
    if kind != "sql":
        return entry
    try:
        return "sql:" + make_url(rest.partition("#")[0]).render_as_string(hide_password=True)
    except ArgumentError:
        return "sql:(invalid URL)"


@dataclass(frozen=True)
class SourceOutcome:
    """One configured source: its import summary, or the error that stopped it."""

    source: str  # as shown in logs
    summary: ImportSummary | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.summary is None:
            return {"source": self.source, "error": self.error}
        return self.summary.to_dict()


def import_source(
    database: Database,
    keyring: KeyRing,
    sync_settings: SyncSettings,
    entry: str,
    *,
    actor: str,
    as_of: date | None = None,
    rejects_dir: Path = Path("var/rejects"),
) -> ImportSummary:
    """Import one source entry into a new draft campaign. A file's rejects go beside it;
    a SQL source's rejects go to ``rejects_dir``."""
    kind, target, layout = parse_source(entry)
    if kind != "sql":
        return import_file(
            database, keyring, sync_settings, Path(target), layout=layout, as_of=as_of, actor=actor
        )
    url, _, view = target.partition("#")
    stamp = datetime.now(TOKYO).strftime("%Y%m%d%H%M%S")
    rejects = rejects_dir / f"sql-{stamp}.csv"
    rejects.parent.mkdir(parents=True, exist_ok=True)
    return import_sql(
        database, keyring, sync_settings, url, view,
        rejects_path=rejects, layout=layout, as_of=as_of, actor=actor,
    )  # fmt: skip


def run_configured_sources(
    database: Database,
    keyring: KeyRing,
    sync_settings: SyncSettings,
    actor: str,
    as_of: date | None = None,
    *,
    rejects_dir: Path = Path("var/rejects"),
) -> list[SourceOutcome]:
    """Import every configured source, in order; refuses an empty ``sync.sources``."""
    if not sync_settings.sources:
        raise ConfigurationError("setting sync.sources is empty: nothing to import")
    outcomes = []
    for entry in sync_settings.sources:
        name = shown(entry)
        try:
            summary = import_source(
                database, keyring, sync_settings, entry,
                actor=actor, as_of=as_of, rejects_dir=rejects_dir,
            )  # fmt: skip
        except DunningError as error:
            log.error("sync source %s failed: %s", name, type(error).__name__)
            outcomes.append(SourceOutcome(name, error=str(error)))
            continue
        _log_summary(name, summary)
        outcomes.append(SourceOutcome(name, summary=summary))
    return outcomes


def _log_summary(name: str, summary: ImportSummary) -> None:
    if summary.already_imported:
        log.info("sync source %s: already imported as import #%s", name, summary.import_id)
        return
    log.info(
        "sync source %s: import #%s campaign #%s, %d rows read, %d loaded, %d rejected, "
        "%d persons, %.1f s",
        name, summary.import_id, summary.campaign_id, summary.rows_read, summary.rows_loaded,
        summary.rows_rejected, summary.persons_loaded, summary.duration_s,
    )  # fmt: skip
