"""The top-level README's request examples work against the simulator in its contract mode."""

from __future__ import annotations

import re
import subprocess
import sys
import wave
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def _call_it_section() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("### Call it")
    return text[start : text.index("\n## ", start)]


def test_python_example_writes_a_wav(simulator_no_key: str, tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", _call_it_section(), flags=re.S)
    assert len(blocks) == 1, "one Python example in 'Call it'"
    code = blocks[0].replace("http://localhost:8000/v1", f"{simulator_no_key}/v1")
    assert simulator_no_key in code, "the example's base_url changed: update this test"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with wave.open(str(tmp_path / "hello.wav")) as w:
        assert w.getframerate() == 24000 and w.getnchannels() == 1 and w.getnframes() > 24000 * 0.3


def test_curl_example_body_is_accepted_and_returns_raw_pcm(simulator_no_key: str) -> None:
    """The shell example's request (the `sox`/`ffmpeg` step needs no server): its JSON body as sent."""
    section = _call_it_section()
    body = re.search(r"-d '(\{.*?\})'", section)
    assert body, "no curl -d body in 'Call it'"
    voices = httpx.get(f"{simulator_no_key}/v1/audio/voices", timeout=10).json()
    r = httpx.post(
        f"{simulator_no_key}/v1/audio/speech",
        content=body.group(1),
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert r.status_code == 200 and len(r.content) > 24000 and len(r.content) % 2 == 0
    assert r.content[:4] != b"RIFF", "pcm is raw samples, no header"
    assert '"voice": "belinda"' in body.group(1) and "belinda" in voices
