"""TTS prompt files: argv substitution without a shell, caching, campaign folders, errors."""

from __future__ import annotations

import shutil
import sys
import wave
from array import array
from pathlib import Path

import pytest

from dialer.carriers.tts import PromptStore, TtsError, command_argv, prompt_key
from dialer.wipe import campaign_file_dirs

# A stand-in engine: a 22.05 kHz stereo WAV to argv[1]; the text (argv[2]) to argv[3].text,
# one 'x' per run to argv[3].
WRITE_WAV = (
    "import sys, wave\n"
    "w = wave.open(sys.argv[1], 'wb')\n"
    "w.setnchannels(2); w.setsampwidth(2); w.setframerate(22050)\n"
    "w.writeframes(b'\\x10\\x00\\x30\\x00' * 22050); w.close()\n"
)
RECORDER = (
    WRITE_WAV + "open(sys.argv[3] + '.text', 'w', encoding='utf-8').write(sys.argv[2])\n"
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
    assert (tmp_path / "runs.text").read_text(encoding="utf-8") == text  # verbatim, no shell
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


def test_without_a_text_placeholder_the_text_goes_to_stdin(tmp_path: Path) -> None:
    reads_stdin = WRITE_WAV + (
        "data = sys.stdin.buffer.read().decode('utf-8')\n"
        "open(sys.argv[1] + '.seen', 'w', encoding='utf-8').write(data)\n"
        "open(sys.argv[2], 'w').write(sys.argv[1] + '.seen')\n"
    )
    note = tmp_path / "note"
    store = PromptStore(tmp_path, [sys.executable, "-c", reads_stdin, "{out}", str(note)])
    store.prompt_for(1, "ヤマダ タロウ様")
    assert Path(note.read_text()).read_text(encoding="utf-8") == "ヤマダ タロウ様"


def test_prompts_become_8khz_mono_16bit(tmp_path: Path) -> None:
    path = PromptStore(tmp_path, recorder(tmp_path)).prompt_for(1, "はい")
    with wave.open(str(path), "rb") as reader:
        shape = (reader.getnchannels(), reader.getsampwidth(), reader.getframerate())
        frames = reader.getnframes()
        samples = array("h", reader.readframes(frames))
    assert shape == (1, 2, 8000)
    assert abs(frames - 8000) <= 1  # one second of audio stays one second
    assert set(samples) == {(0x10 + 0x30) // 2}  # channels averaged


def test_output_that_is_not_wav_is_an_error(tmp_path: Path) -> None:
    junk = [sys.executable, "-c", "import sys; open(sys.argv[1], 'w').write('mp3?')", "{out}"]
    with pytest.raises(TtsError, match="not a WAV"):
        PromptStore(tmp_path, junk).prompt_for(1, "はい")


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_espeak_ng_default_command_makes_a_prompt(tmp_path: Path) -> None:
    command = ["espeak-ng", "-v", "{voice}", "-w", "{out}", "--stdin"]
    path = PromptStore(tmp_path, command).prompt_for(1, "ヤマダ タロウ様でいらっしゃいますか。")
    with wave.open(str(path), "rb") as reader:
        assert (reader.getframerate(), reader.getnchannels()) == (8000, 1)
        assert reader.getnframes() > 8000
