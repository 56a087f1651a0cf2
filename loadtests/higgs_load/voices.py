"""The server's voice presets, read once at test start (no Locust import).

Speech needs a `voice` (SP2) and an unknown one is not an error: the server silently uses its first
preset (SP4, known fault K2). So the load test reads `GET /v1/audio/voices` (a bare JSON array of
names, E5) and refuses to start when `--voice` or a prompt's voice is not among them.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterable

VOICES_PATH = "/v1/audio/voices"


class VoiceError(ValueError):
    """The voices cannot be read, or a requested voice is not one of them (the message says which)."""


def fetch_voices(host: str, api_key: str = "", timeout: float = 30.0) -> list[str]:
    """GET <host>/v1/audio/voices -> the preset names, in the server's order."""
    url = host.rstrip("/") + VOICES_PATH
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as r:
            raw = r.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:200].decode("utf-8", "replace")
        raise VoiceError(
            f"cannot list the server's voices: GET {url} answered HTTP {exc.code}: {detail}"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise VoiceError(f"cannot list the server's voices: GET {url} failed: {exc}") from None
    return parse_voices(raw, url)


def parse_voices(raw: bytes, url: str = VOICES_PATH) -> list[str]:
    """The body of GET /v1/audio/voices: a JSON array of names (E5)."""
    try:
        names = json.loads(raw)
    except ValueError:
        names = None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise VoiceError(f"GET {url} did not return a JSON array of voice names: {raw[:120]!r}")
    return names


def check_voices(names: list[str], wanted: Iterable[tuple[str, str]], url: str = VOICES_PATH) -> None:
    """Raise VoiceError unless the list has voices and every (where, voice) in `wanted` is in it."""
    if not names:
        raise VoiceError(
            f"the server lists no voices (GET {url} returned []): speech requests need a preset; check "
            "the server's --voice-presets-dir and its log ('Error loading voice presets'), or leave the "
            "speech kinds out of --mix"
        )
    for where, voice in wanted:
        if voice not in names:
            raise VoiceError(f"{where} {voice!r} is not one of the server's voices: {', '.join(names)}")
