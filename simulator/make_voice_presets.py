"""Write the simulator's built-in voice presets: ``higgs_sim/voice_presets/`` (config.json + WAVs).

The names and their order are those of the real image's presets (boson-ai/higgs-audio-vllm,
``vllm/entrypoints/bosonai/voice_presets/config.json``; the first is the fallback voice). The audio
is the simulator's own synthetic signal (``higgs_sim.audio``), one second per voice, 24 kHz mono
int16, and the transcripts are our own sentences: nothing is copied from Boson's presets.

    .venv/bin/python simulator/make_voice_presets.py [--check]

``--check`` exits 1 when the files on disk differ from what this script writes (deterministic).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from higgs_sim.audio import SAMPLE_RATE, timbre_of, voice_loop, wav_bytes
from higgs_sim.voices import BUILTIN_PRESETS_DIR, BUILTIN_VOICES

SECONDS = 1.0
TRANSCRIPTS = {
    "belinda": "The kettle is on, so stay a while.",
    "broom_salesman": "Sturdy bristles, fair prices, every day.",
    "chadwick": "Good evening, and thank you for calling.",
    "en_man": "The train leaves at half past nine.",
    "en_woman": "Please take a seat near the window.",
    "mabel": "My garden grew tomatoes all summer.",
    "vex": "Nobody moves until the lights go out.",
    "zh_man_sichuan": "今天的天气很好，我们去公园走走。",
}


def preset_files() -> dict[str, bytes]:
    """File name -> bytes of the whole preset directory."""
    files: dict[str, bytes] = {}
    config: dict[str, dict[str, str]] = {}
    for name in BUILTIN_VOICES:
        loop = voice_loop(timbre_of(name, 0))
        pcm = loop[: int(SECONDS * SAMPLE_RATE)].tobytes()
        files[f"{name}.wav"] = wav_bytes(pcm)
        config[name] = {"transcript": TRANSCRIPTS[name], "audio_file": f"{name}.wav"}
    files["config.json"] = (json.dumps(config, indent=2, ensure_ascii=False) + "\n").encode()
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare with the files on disk")
    args = parser.parse_args(argv)
    out = Path(BUILTIN_PRESETS_DIR)
    files = preset_files()
    if args.check:
        stale = [n for n, data in files.items() if not (out / n).is_file() or (out / n).read_bytes() != data]
        if stale:
            print(f"stale voice presets in {out}: {', '.join(stale)}", file=sys.stderr)
            return 1
        return 0
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (out / name).write_bytes(data)
    print(f"wrote {len(files)} files, {sum(map(len, files.values()))} bytes, into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
