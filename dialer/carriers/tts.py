"""Text-to-speech prompts for the Asterisk carrier: audio files made by a configured command.

The command is an argv list (never a shell string) in which ``{text}``, ``{out}`` and
``{voice}`` are substituted, e.g. ``["espeak-ng", "-v", "{voice}", "-w", "{out}", "--stdin"]``.
A template without ``{text}`` gets the text on stdin (UTF-8), which keeps names out of the
process list (``ps`` shows every argv); with ``{text}`` it travels as one argument, so quotes,
spaces or ``;`` in it are only ever spoken.

Prompts are cached by SHA-256 of (voice, text) under ``<var>/tts/campaign-<id>/``: a prompt
that says a resident's name is campaign data, and the wipe (``dialer/wipe.py``) deletes that
folder with the rest of the campaign. A failing command raises :class:`TtsError`, which names
the command and its exit status but never the text.

Asterisk's ``wav`` format is 8 kHz, 16-bit mono; engines write other rates (espeak-ng 22.05
kHz), so every prompt is converted (box-filter decimation, channels averaged) before use.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import wave
from array import array
from collections.abc import Sequence
from pathlib import Path

from kernel.errors import DunningError

PLACEHOLDER = re.compile(r"\{(text|out|voice)\}")
SUFFIX = ".wav"
TELEPHONE_RATE = 8000


class TtsError(DunningError):
    """The TTS command could not make a prompt (the message never contains the text)."""


def prompt_key(text: str, voice: str) -> str:
    """The cache key of a prompt: SHA-256 over the voice and the text."""
    return hashlib.sha256(f"{voice}\x00{text}".encode()).hexdigest()


def command_argv(template: Sequence[str], text: str, out: Path, voice: str) -> list[str]:
    """The argv to run: placeholders replaced in one pass (a text never expands further)."""
    values = {"text": text, "out": str(out), "voice": voice}
    return [PLACEHOLDER.sub(lambda m: values[m.group(1)], part) for part in template]


class PromptStore:
    """Makes and caches prompt files per campaign; ``prompt_for`` returns the audio path."""

    def __init__(
        self,
        var_dir: Path,
        command: Sequence[str],
        voice: str = "ja",
        timeout_seconds: float = 30.0,
    ) -> None:
        if not command:
            raise TtsError("no TTS command configured (asterisk.tts_command)")
        self.root = var_dir / "tts"
        self.command = tuple(command)
        self.voice = voice
        self.timeout_seconds = timeout_seconds

    def campaign_dir(self, campaign_id: int) -> Path:
        return self.root / f"campaign-{campaign_id}"

    def prompt_for(self, campaign_id: int, text: str) -> Path:
        """The audio file that speaks ``text`` (made now unless cached)."""
        folder = self.campaign_dir(campaign_id)
        target = folder / f"{prompt_key(text, self.voice)}{SUFFIX}"
        if target.is_file() and target.stat().st_size > 0:
            return target
        folder.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.stem}.{os.getpid()}.part{SUFFIX}")
        telephone = partial.with_name(partial.name + SUFFIX)
        try:
            self._run(text, partial)
            if not partial.is_file() or partial.stat().st_size == 0:
                raise TtsError(f"TTS command {self.command[0]!r} wrote no audio file")
            to_telephone_wav(partial, telephone)
            telephone.replace(target)
        finally:
            partial.unlink(missing_ok=True)
            telephone.unlink(missing_ok=True)
        return target

    def _run(self, text: str, out: Path) -> None:
        argv = command_argv(self.command, text, out, self.voice)
        name = self.command[0]
        via_stdin = not any("{text}" in part for part in self.command)
        try:
            done = subprocess.run(  # noqa: S603 - argv list, no shell
                argv,
                input=text.encode() if via_stdin else b"",
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=self.timeout_seconds,
                check=False,
            )
        except FileNotFoundError:
            raise TtsError(f"TTS command {name!r} not found") from None
        except subprocess.TimeoutExpired:
            raise TtsError(
                f"TTS command {name!r} timed out after {self.timeout_seconds:g} s"
            ) from None
        except OSError as error:
            raise TtsError(f"TTS command {name!r} could not run ({error.strerror})") from None
        if done.returncode != 0:
            raise TtsError(f"TTS command {name!r} failed with exit status {done.returncode}")


def to_telephone_wav(source: Path, target: Path) -> None:
    """Rewrite a 16-bit PCM WAV as 8 kHz mono (what Asterisk's ``wav`` format plays)."""
    try:
        with wave.open(str(source), "rb") as reader:
            channels, width, rate = (
                reader.getnchannels(),
                reader.getsampwidth(),
                reader.getframerate(),
            )
            frames = reader.readframes(reader.getnframes())
    except (wave.Error, EOFError) as error:
        raise TtsError(f"TTS output is not a WAV file ({error})") from None
    if width != 2:
        raise TtsError(f"TTS output has {8 * width}-bit samples; 16-bit PCM is needed")
    samples = array("h", frames)
    mono = [sum(samples[i : i + channels]) // channels for i in range(0, len(samples), channels)]
    with wave.open(str(target), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(TELEPHONE_RATE)
        writer.writeframes(array("h", _decimate(mono, rate)).tobytes())


def _decimate(samples: list[int], rate: int) -> list[int]:
    """Resample to 8 kHz: each output sample averages the input samples its span covers."""
    if rate == TELEPHONE_RATE or not samples:
        return samples
    step = rate / TELEPHONE_RATE
    count = int(len(samples) / step)
    out = []
    for index in range(count):
        start = int(index * step)
        window = samples[start : max(start + 1, int((index + 1) * step))]
        out.append(sum(window) // len(window))
    return out
