"""Voice presets: ``--voice-presets-dir`` (config.json + WAVs, re-read periodically) or a built-in list."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

from higgs_sim.audio import InvalidAudio, reference_seconds

log = logging.getLogger("higgs_sim.voices")

BUILTIN_VOICES = ("belinda", "en_woman", "en_man", "chadwick", "mabel", "vex", "broom_salesman")
DEFAULT_VOICE = "belinda"


class PresetError(Exception):
    """The presets directory cannot be read (bad config.json, missing or invalid WAV)."""


@dataclass(frozen=True)
class Voice:
    name: str
    transcript: str
    audio_file: str | None
    seconds: float


def load_presets(directory: str) -> dict[str, Voice]:
    """Read ``config.json`` (name -> {transcript, audio_file}) and check each WAV decodes."""
    config_path = os.path.join(directory, "config.json")
    try:
        with open(config_path, encoding="utf-8") as fh:
            config = json.load(fh)
    except FileNotFoundError:
        raise PresetError(f"{config_path} not found") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise PresetError(f"{config_path}: {exc}") from None
    if not isinstance(config, dict):
        raise PresetError(
            f"{config_path}: expected a JSON object mapping voice name to {{transcript, audio_file}}"
        )
    voices: dict[str, Voice] = {}
    for name, entry in config.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("audio_file"), str):
            raise PresetError(f"{config_path}: voice {name!r} needs an 'audio_file' string")
        transcript = entry.get("transcript", "")
        if not isinstance(transcript, str):
            raise PresetError(f"{config_path}: voice {name!r}: 'transcript' must be a string")
        wav_path = os.path.join(directory, entry["audio_file"])
        try:
            with open(wav_path, "rb") as fh:
                seconds = reference_seconds(fh.read())
        except OSError as exc:
            raise PresetError(f"voice {name!r}: cannot read {wav_path}: {exc.strerror}") from None
        except InvalidAudio as exc:
            raise PresetError(f"voice {name!r}: {wav_path}: {exc}") from None
        voices[name] = Voice(name, transcript, entry["audio_file"], seconds)
    return voices


class VoiceRegistry:
    """The voices the server knows; refreshed from the presets directory when one is set."""

    def __init__(self, directory: str | None) -> None:
        self.directory = directory
        self.voices: dict[str, Voice] = (
            load_presets(directory) if directory else {n: Voice(n, "", None, 0.0) for n in BUILTIN_VOICES}
        )

    def refresh(self) -> None:
        """Re-read the directory; on error keep the previous voices and log why."""
        if not self.directory:
            return
        try:
            fresh = load_presets(self.directory)
        except PresetError as exc:
            log.error("voice presets not refreshed, keeping %d voices: %s", len(self.voices), exc)
            return
        if fresh.keys() != self.voices.keys():
            log.info("voice presets refreshed: %s", ", ".join(sorted(fresh)))
        self.voices = fresh

    def get(self, name: str) -> Voice | None:
        return self.voices.get(name)

    @property
    def default(self) -> str:
        if DEFAULT_VOICE in self.voices or not self.voices:
            return DEFAULT_VOICE
        return sorted(self.voices)[0]
