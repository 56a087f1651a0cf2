"""Voice presets: ``<--voice-presets-dir>/config.json`` (name -> {transcript, audio_file}) plus WAVs.

Follows the real server (boson-ai/higgs-audio-vllm@892184b4, ``vllm/entrypoints/bosonai/
serving_audio.py`` load_voice_presets, lines 81-98): presets are read by a background loop, never at
start-up, so a missing or broken ``config.json`` does not stop the server. It logs
``Error loading voice presets: <reason>`` and keeps what it had (nothing, at start), and the voice
list stays empty until a read succeeds. The default directory is the image's own presets; ours
ship in ``higgs_sim/voice_presets/`` with the same eight names in the same order (the first is the
fallback for an unknown voice).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

from higgs_sim.audio import InvalidAudio, reference_seconds

log = logging.getLogger("higgs_sim.voices")

BUILTIN_PRESETS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "voice_presets")
# The image's built-in presets in config.json order (vllm/entrypoints/bosonai/voice_presets/).
BUILTIN_VOICES = (
    "belinda",
    "broom_salesman",
    "chadwick",
    "en_man",
    "en_woman",
    "mabel",
    "vex",
    "zh_man_sichuan",
)
DEFAULT_VOICE = BUILTIN_VOICES[0]


class PresetError(Exception):
    """``config.json`` cannot be read or is not a JSON object (logged, never fatal)."""


@dataclass(frozen=True)
class Voice:
    name: str
    transcript: str
    audio_file: str | None
    seconds: float
    # Why the reference WAV is unusable (missing, not a WAV), or None. The real server reads only
    # config.json when loading, so such a voice is still listed; a request that uses it fails.
    audio_error: str | None = None


def _voice(directory: str, name: str, entry: object) -> Voice:
    if not isinstance(entry, dict) or not isinstance(entry.get("audio_file"), str):
        return Voice(name, "", None, 0.0, "the entry needs an 'audio_file' string")
    transcript = entry.get("transcript", "")
    transcript = transcript if isinstance(transcript, str) else str(transcript)
    wav_path = os.path.join(directory, entry["audio_file"])
    try:
        with open(wav_path, "rb") as fh:
            return Voice(name, transcript, entry["audio_file"], reference_seconds(fh.read()))
    except OSError as exc:
        error = f"cannot read {wav_path}: {exc.strerror}"
    except InvalidAudio as exc:
        error = f"{wav_path}: {exc}"
    return Voice(name, transcript, entry["audio_file"], 0.0, error)


def load_presets(directory: str) -> dict[str, Voice]:
    """Read ``config.json`` in file order; raises :class:`PresetError` with the real server's reason."""
    config_path = os.path.join(directory, "config.json")
    try:
        with open(config_path, encoding="utf-8") as fh:
            config = json.load(fh)
    except (OSError, ValueError) as exc:  # str(exc) is what the real server logs
        raise PresetError(str(exc)) from None
    if not isinstance(config, dict):
        # The real loop calls .keys() on it: the same AttributeError text.
        raise PresetError(f"'{type(config).__name__}' object has no attribute 'keys'")
    return {str(name): _voice(directory, str(name), entry) for name, entry in config.items()}


class VoiceRegistry:
    """The voices the server knows, in config.json order; re-read with :meth:`refresh`.

    The real loop re-reads config.json without pause after a success and sleeps the refresh
    interval only after an error; the server here calls :meth:`refresh` once per interval in both
    cases, which gives the same list without spinning a core.
    """

    def __init__(self, directory: str | None) -> None:
        self.directory = directory or BUILTIN_PRESETS_DIR
        self.voices: dict[str, Voice] = {}
        self._problems: dict[str, str] = {}
        log.info("Loading voice presets from %s", os.path.join(self.directory, "config.json"))
        self.refresh()

    def refresh(self) -> bool:
        """Re-read the directory; on error log why and keep the previous voices. True on success."""
        try:
            fresh = load_presets(self.directory)
        except PresetError as exc:
            log.error("Error loading voice presets: %s", exc)
            return False
        added = [name for name in fresh if name not in self.voices]
        if added:
            log.info("New voice presets added: %s", ", ".join(added))
        problems = {v.name: v.audio_error for v in fresh.values() if v.audio_error}
        for name, error in problems.items():
            if self._problems.get(name) != error:
                log.warning("voice preset %r is listed but unusable: %s", name, error)
        self._problems = problems
        self.voices = fresh
        return True

    def names(self) -> list[str]:
        """Voice names in config.json order (what ``GET /v1/audio/voices`` lists)."""
        return list(self.voices)

    def get(self, name: str) -> Voice | None:
        return self.voices.get(name)

    def fallback(self) -> Voice | None:
        """The voice an unknown name falls back to: the first in config.json; None when empty (the
        real server then fails the request with HTTP 500)."""
        return next(iter(self.voices.values()), None)

    @property
    def default(self) -> str:
        """Name of :meth:`fallback`, or ``belinda`` when no voice is loaded (kept for old callers)."""
        first = self.fallback()
        return first.name if first else DEFAULT_VOICE
