"""TTS prompt files: argv substitution without a shell, caching, campaign folders, errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dialer.carriers.tts import PromptStore, TtsError, command_argv, prompt_key
from dialer.wipe import campaign_file_dirs

# Writes argv[2] (the text) into argv[1] and counts its runs in argv[3].
RECORDER = (
    "import sys\n"
    "open(sys.argv[1], 'w', encoding='utf-8').write(sys.argv[2])\n"
    "open(sys.argv[3], 'a').write('x')\n"
)


def recorder(tmp_path: Path) -> list[str]:
    return [sys.executable, "-c", RECORDER, "{out}", "{text}", str(tmp_path / "runs")]


def runs(tmp_path: Path) -> int:
    counter = tmp_path / "runs"
    return len(counter.read_text()) if counter.exists() else 0


def test_argv_substitution_is_one_pass_and_keeps_the_text_whole() -> None:
    argv = command_argv(
        ["tts", "-v", "{voice}", "--out={out}", "{text}"], "{out} ; rm", Path("/o.wav"), "ja"
    )
    assert argv == ["tts", "-v", "ja", "--out=/o.wav", "{out} ; rm"]


def test_prompt_is_made_once_and_cached_per_campaign(tmp_path: Path) -> None:
    store = PromptStore(tmp_path, recorder(tmp_path))
    text = "ヤマダ タロウ様でいらっしゃいますか。'; echo $HOME"
    first = store.prompt_for(3, text)
    assert first == tmp_path / "tts" / "campaign-3" / f"{prompt_key(text, 'ja')}.wav"
    assert first.read_text(encoding="utf-8") == text  # passed verbatim, no shell
    assert store.prompt_for(3, text) == first
    assert runs(tmp_path) == 1
    store.prompt_for(4, text)
    assert runs(tmp_path) == 2
    assert not list((tmp_path / "tts" / "campaign-3").glob(".*part*"))


def test_the_voice_is_part_of_the_cache_key() -> None:
    assert prompt_key("はい", "ja") != prompt_key("はい", "en")


def test_prompt_folders_are_the_ones_the_wipe_erases(tmp_path: Path) -> None:
    store = PromptStore(tmp_path, recorder(tmp_path))
    assert store.campaign_dir(9) in campaign_file_dirs(tmp_path, 9)


def test_failing_command_names_command_and_status_not_text(tmp_path: Path) -> None:
    store = PromptStore(tmp_path, [sys.executable, "-c", "raise SystemExit(7)", "{text}"])
    with pytest.raises(TtsError) as caught:
        store.prompt_for(1, "ヤマダ タロウ")
    message = str(caught.value)
    assert "exit status 7" in message and sys.executable in message
    assert "ヤマダ" not in message
    assert caught.value.__cause__ is None and caught.value.__context__ is None


def test_missing_command(tmp_path: Path) -> None:
    store = PromptStore(tmp_path, ["no-such-tts-engine-here", "{text}"])
    with pytest.raises(TtsError, match="no-such-tts-engine-here.*not found"):
        store.prompt_for(1, "こんにちは")


def test_command_that_writes_nothing(tmp_path: Path) -> None:
    store = PromptStore(tmp_path, [sys.executable, "-c", "pass", "{out}", "{text}"])
    with pytest.raises(TtsError, match="wrote no audio"):
        store.prompt_for(1, "こんにちは")


def test_slow_command_times_out(tmp_path: Path) -> None:
    slow = [sys.executable, "-c", "import time; time.sleep(5)", "{text}"]
    store = PromptStore(tmp_path, slow, timeout_seconds=0.2)
    with pytest.raises(TtsError, match="timed out") as caught:
        store.prompt_for(1, "こんにちは")
    assert caught.value.__suppress_context__  # the argv (with the text) is not chained


def test_an_empty_command_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TtsError, match="tts_command"):
        PromptStore(tmp_path, [])
