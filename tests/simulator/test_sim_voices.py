"""Voice presets (higgs_sim.voices): the built-in directory, config.json order, errors never fatal."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from higgs_sim.voices import BUILTIN_PRESETS_DIR, BUILTIN_VOICES, VoiceRegistry
from tests.support.simulator import make_wav

REPO = Path(__file__).resolve().parents[2]
# The real image's presets, in its config.json order (the first is the fallback voice).
REAL_ORDER = ["belinda", "broom_salesman", "chadwick", "en_man", "en_woman", "mabel", "vex", "zh_man_sichuan"]


def test_builtin_presets_ship_the_real_names_in_order() -> None:
    builtin = Path(BUILTIN_PRESETS_DIR)
    config = json.loads((builtin / "config.json").read_text())
    assert list(config) == REAL_ORDER == list(BUILTIN_VOICES)
    total = (builtin / "config.json").stat().st_size
    for name, entry in config.items():
        assert set(entry) == {"transcript", "audio_file"} and entry["transcript"]
        with wave.open(str(builtin / entry["audio_file"]), "rb") as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2), name
            assert 1.0 <= w.getnframes() / 24000 <= 2.0
        total += (builtin / entry["audio_file"]).stat().st_size
    assert total < 400_000
    registry = VoiceRegistry(None)  # no directory: the built-in one, as the real default
    assert registry.names() == REAL_ORDER and registry.fallback().name == "belinda"  # type: ignore[union-attr]
    assert all(v.audio_error is None and v.seconds == 1.0 for v in registry.voices.values())


def test_builtin_presets_are_what_the_script_writes() -> None:
    script = REPO / "simulator" / "make_voice_presets.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr


def test_package_data_ships_the_presets() -> None:
    """pyproject's package-data: the voice_presets folder is a namespace package with *.json and *.wav."""
    import tomllib

    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["*"]
    assert {"*.json", "*.wav"} <= set(patterns)
    assert Path(BUILTIN_PRESETS_DIR).parent.name == "higgs_sim"


def write_presets(root: Path, config: object) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(config))
    return root


def test_config_order_get_and_fallback(tmp_path: Path) -> None:
    for name in ("zed", "amy"):
        (tmp_path / f"{name}.wav").write_bytes(make_wav(0.5))
    config = {
        "zed": {"transcript": "Z.", "audio_file": "zed.wav"},
        "amy": {"transcript": "A.", "audio_file": "amy.wav"},
    }
    registry = VoiceRegistry(str(write_presets(tmp_path, config)))
    assert registry.names() == ["zed", "amy"] and registry.fallback().name == "zed"  # type: ignore[union-attr]
    assert registry.get("amy").transcript == "A." and registry.get("amy").seconds == 0.5  # type: ignore[union-attr]
    assert registry.get("belinda") is None and registry.default == "zed"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "[Errno 2] No such file or directory: '{path}'"),
        ("{", "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        ("[1]", "'list' object has no attribute 'keys'"),
    ],
)
def test_missing_or_broken_config_leaves_the_list_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str | None, reason: str
) -> None:
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    with caplog.at_level(logging.ERROR, logger="higgs_sim.voices"):
        registry = VoiceRegistry(str(tmp_path))
    assert registry.names() == [] and registry.fallback() is None
    assert f"Error loading voice presets: {reason.format(path=path)}" in caplog.text
    # A later refresh (the server calls it every --voice-presets-refresh-interval) picks it up.
    (tmp_path / "a.wav").write_bytes(make_wav(0.2))
    write_presets(tmp_path, {"a": {"transcript": "", "audio_file": "a.wav"}})
    assert registry.refresh() and registry.names() == ["a"]


def test_refresh_error_keeps_the_previous_voices(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "a.wav").write_bytes(make_wav(0.2))
    registry = VoiceRegistry(str(write_presets(tmp_path, {"a": {"transcript": "", "audio_file": "a.wav"}})))
    (tmp_path / "config.json").write_text("not json")
    with caplog.at_level(logging.ERROR, logger="higgs_sim.voices"):
        assert not registry.refresh()
    assert registry.names() == ["a"] and "Error loading voice presets: Expecting value" in caplog.text


def test_unusable_wav_is_listed_with_its_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The real server reads only config.json when loading: a voice with a bad WAV is still listed."""
    (tmp_path / "bad.wav").write_bytes(b"not a wav")
    config = {
        "gone": {"transcript": "", "audio_file": "gone.wav"},
        "bad": {"audio_file": "bad.wav"},
        "odd": 3,
    }
    with caplog.at_level(logging.WARNING, logger="higgs_sim.voices"):
        registry = VoiceRegistry(str(write_presets(tmp_path, config)))
    assert registry.names() == ["gone", "bad", "odd"]
    assert "cannot read" in registry.get("gone").audio_error  # type: ignore[union-attr,operator]
    assert "not a WAV file" in registry.get("bad").audio_error  # type: ignore[union-attr,operator]
    assert registry.get("odd").audio_error == "the entry needs an 'audio_file' string"  # type: ignore[union-attr]
    assert caplog.text.count("is listed but unusable") == 3
    caplog.clear()
    registry.refresh()
    assert "unusable" not in caplog.text, "the same problems are not logged again at each refresh"
