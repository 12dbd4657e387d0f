"""The first pass on worker processes gives the same import as the sequential one."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from kernel import migrate
from kernel.db import Database
from kernel.pii import KeyRing
from kernel.settings import SyncSettings
from sync import parallel
from sync.importer import import_file
from sync.synthetic import HEADERS, write_export

KEYRING = KeyRing("test-secret-sync-parallel-0123456789abcdef")
AS_OF = date(2026, 11, 24)
VOLATILE = ("source", "campaign_id", "import_id", "duration_s", "rejects_file")


def _import(tmp_path: Path, path: Path, name: str) -> tuple[dict[str, Any], bytes]:
    database = Database(f"sqlite:///{tmp_path / name}.sqlite3")
    migrate.upgrade(database)
    rejects = tmp_path / f"{name}.rejects.csv"
    summary = import_file(
        database, KEYRING, SyncSettings(), path, as_of=AS_OF, rejects_path=rejects
    )
    database.dispose()
    data = {k: v for k, v in summary.to_dict().items() if k not in VOLATILE}
    return data, rejects.read_bytes() if rejects.exists() else b""


def _both(
    tmp_path: Path, path: Path, monkeypatch: pytest.MonkeyPatch, chunks: list[bool]
) -> tuple[tuple[dict[str, Any], bytes], tuple[dict[str, Any], bytes]]:
    """The sequential import, then the parallel one (``chunks`` gets each chunk's clean end)."""
    sequential = _import(tmp_path, path, "sequential")
    monkeypatch.setattr(parallel, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(parallel, "CHUNK_BYTES", 64 << 10)
    collect_chunks = parallel.collect_chunks

    def watched(tasks: list[parallel.ChunkTask]) -> Iterator[parallel.ChunkResult]:
        for result in collect_chunks(tasks):
            chunks.append(result.clean_end)
            yield result

    monkeypatch.setattr(parallel, "collect_chunks", watched)
    in_parallel = _import(tmp_path, _copy(path, tmp_path / "copy.csv"), "parallel")
    return sequential, in_parallel


def _copy(path: Path, target: Path) -> Path:
    target.write_bytes(path.read_bytes() + b"\r\n")  # another SHA-256: not "already imported"
    return target


def test_parallel_first_pass_matches_the_sequential_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "export.csv"
    write_export(path, 2500, seed=3, as_of=AS_OF)
    assert len(parallel.record_boundaries(path, 64 << 10)) > 4
    chunks: list[bool] = []
    (summary, rejects), (summary_p, rejects_p) = _both(tmp_path, path, monkeypatch, chunks)
    assert len(chunks) > 4 and all(chunks)  # read on workers, every chunk ended cleanly
    assert summary["rows_read"] > 4000 and summary["rows_rejected"] > 0
    summary_p["blank_records"] -= 1  # the blank line the copy ends with
    summary_p["file_sha256"] = summary["file_sha256"]
    assert summary_p == summary
    assert rejects_p == rejects


def test_boundaries_fall_between_records_with_quoted_line_breaks(tmp_path: Path) -> None:
    path = tmp_path / "quoted.csv"
    with path.open("w", encoding="cp932", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\r\n")
        writer.writerow(HEADERS)
        for n in range(2000):
            writer.writerow([str(n), "山田\n太郎" if n % 3 else "山田　太郎", *[""] * 22])
    data = path.read_bytes()
    for offset, lines_before in parallel.record_boundaries(path, 4096)[1:]:
        assert data[:offset].count(b'"') % 2 == 0
        assert data[:offset].count(b"\n") == lines_before
        assert data[offset - 1 : offset] == b"\n"


def test_a_stray_quote_falls_back_to_the_sequential_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "stray.csv"
    with path.open("w", encoding="cp932", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\r\n", quoting=csv.QUOTE_NONE, escapechar="\\")
        writer.writerow(HEADERS)
    with path.open("a", encoding="cp932", newline="") as stream:
        stream.write('1,山田"太郎,,,,,,,,,,市県民税,,1,,令和8年6月30日,100,,,,,,,\r\n')
        for n in range(2, 3000):
            name = '"山田\r\n太郎"' if n % 7 == 0 else "山田　太郎"
            stream.write(f"{n},{name},,,,,,,,,,市県民税,,1,,令和8年6月30日,100,,,,,,,\r\n")
    chunks: list[bool] = []
    (summary, rejects), (summary_p, rejects_p) = _both(tmp_path, path, monkeypatch, chunks)
    assert chunks and not all(chunks)  # the stray quote was noticed: read sequentially
    summary_p["blank_records"] -= 1
    summary_p["file_sha256"] = summary["file_sha256"]
    assert summary_p == summary and rejects_p == rejects
    assert summary["rows_read"] == 2999


def test_workers_that_cannot_start_fall_back_to_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from concurrent.futures.process import BrokenProcessPool

    path = tmp_path / "export.csv"
    write_export(path, 300, seed=4, as_of=AS_OF)
    expected, expected_rejects = _import(tmp_path, path, "sequential")

    def broken(tasks: list[parallel.ChunkTask]) -> Iterator[parallel.ChunkResult]:
        raise BrokenProcessPool("a worker could not start")
        yield  # pragma: no cover

    monkeypatch.setattr(parallel, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(parallel, "collect_chunks", broken)
    summary, rejects = _import(tmp_path, _copy(path, tmp_path / "copy.csv"), "fallback")
    summary["blank_records"] -= 1
    summary["file_sha256"] = expected["file_sha256"]
    assert summary == expected and rejects == expected_rejects
