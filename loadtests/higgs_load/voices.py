"""The server's voice list, read once at test start (no Locust import), and which server it is.

`GET /v1/audio/voices` differs between the two servers, so its body also tells them apart:

- Boson's fork: a bare JSON array of preset names (E5). Speech needs a `voice` (SP2) and an unknown
  one is not an error: the server silently uses its first preset (SP4, known fault K2). So the load
  test refuses to start when `--voice` or a prompt's voice is not in the list.
- vLLM-Omni: an object `{"voices": [names], "uploaded_voices": [{...}]}` (OE2). Higgs has no built-in
  voices: the list holds uploads only, and speech without a `voice` speaks in the model's own voice
  (OR5). A `--voice` must be one of `voices` (an unknown one is a 400, OR3).

When the voice list cannot tell (an error status, another body), `GET /health` can: Boson's answers
200 with an empty body (E1), vLLM-Omni's `{"status": "healthy"}` (OE4).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass

VOICES_PATH = "/v1/audio/voices"
HEALTH_PATH = "/health"


class VoiceError(ValueError):
    """The voices cannot be read, or a requested voice is not one of them (the message says which)."""


@dataclass(frozen=True)
class VoiceList:
    api: str  # "boson" (a bare array) or "omni" (an object with voices / uploaded_voices)
    names: list[str]


def _get(url: str, api_key: str, timeout: float) -> bytes:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as r:
        return r.read()


def fetch_voice_list(host: str, api_key: str = "", timeout: float = 30.0) -> VoiceList:
    """GET <host>/v1/audio/voices -> the server's API and voice names."""
    url = host.rstrip("/") + VOICES_PATH
    try:
        raw = _get(url, api_key, timeout)
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:200].decode("utf-8", "replace")
        raise VoiceError(
            f"cannot list the server's voices: GET {url} answered HTTP {exc.code}: {detail}"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise VoiceError(f"cannot list the server's voices: GET {url} failed: {exc}") from None
    return parse_voice_list(raw, url)


def fetch_voices(host: str, api_key: str = "", timeout: float = 30.0) -> list[str]:
    """GET <host>/v1/audio/voices -> the voice names, in the server's order."""
    return fetch_voice_list(host, api_key, timeout).names


def parse_voice_list(raw: bytes, url: str = VOICES_PATH) -> VoiceList:
    """A bare JSON array of names (Boson's fork, E5) or an object with `voices` and/or
    `uploaded_voices` (vLLM-Omni, OE2)."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, list) and all(isinstance(n, str) for n in body):
        return VoiceList("boson", body)
    if isinstance(body, dict) and ("voices" in body or "uploaded_voices" in body):
        names = body.get("voices")
        uploaded = body.get("uploaded_voices")
        if names is None and isinstance(uploaded, list) and all(isinstance(v, dict) for v in uploaded):
            names = [v.get("name") for v in uploaded]
        if isinstance(names, list) and all(isinstance(n, str) for n in names):
            return VoiceList("omni", names)
    raise VoiceError(
        f"GET {url} did not return a JSON array of voice names (Boson's fork) nor an object with "
        f"`voices` (vLLM-Omni): {raw[:120]!r}"
    )


def parse_voices(raw: bytes, url: str = VOICES_PATH) -> list[str]:
    """The voice names of a GET /v1/audio/voices body of either server."""
    return parse_voice_list(raw, url).names


def api_from_health(raw: bytes) -> str | None:
    """The server's API from its `GET /health` body: empty (Boson's fork, E1), a JSON object with
    `status` (vLLM-Omni, OE4), else None."""
    if not raw.strip():
        return "boson"
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return "omni" if isinstance(body, dict) and "status" in body else None


def detect_api(host: str, api_key: str = "", timeout: float = 30.0) -> tuple[str, VoiceList | None, str]:
    """(api, the voice list if it was read, how it was decided) for --server-api auto.

    GET /v1/audio/voices first (its shape names the server); when it gives no answer (an error status,
    an unknown body, no connection), GET /health's body. VoiceError when neither tells."""
    base = host.rstrip("/")
    try:
        listing = fetch_voice_list(base, api_key, timeout)
        shape = "a JSON array" if listing.api == "boson" else "an object with `voices`"
        return listing.api, listing, f"GET {VOICES_PATH} returned {shape}"
    except VoiceError as exc:
        voices_problem = str(exc)
    try:
        api = api_from_health(_get(base + HEALTH_PATH, api_key, timeout))
    except (urllib.error.URLError, OSError) as exc:  # HTTPError included
        api, voices_problem = None, f"{voices_problem}; GET {base}{HEALTH_PATH} failed: {exc}"
    if api is None:
        raise VoiceError(
            f"cannot tell which server {base} is ({voices_problem}); name it with --server-api boson|omni"
        )
    body = "an empty body" if api == "boson" else "a JSON status"
    return api, None, f"GET {HEALTH_PATH} returned {body}"


def check_voices(names: list[str], wanted: Iterable[tuple[str, str]], url: str = VOICES_PATH) -> None:
    """Boson's fork: raise VoiceError unless the list has voices and every (where, voice) in `wanted`
    is in it."""
    if not names:
        raise VoiceError(
            f"the server lists no voices (GET {url} returned []): speech requests need a preset; check "
            "the server's --voice-presets-dir and its log ('Error loading voice presets'), or leave the "
            "speech kinds out of --mix"
        )
    for where, voice in wanted:
        if voice not in names:
            raise VoiceError(f"{where} {voice!r} is not one of the server's voices: {', '.join(names)}")


def check_uploaded_voice(names: list[str], voice: str, url: str = VOICES_PATH) -> None:
    """vLLM-Omni: `--voice` must be an uploaded voice (`voices` of GET /v1/audio/voices); Higgs has no
    built-in ones (OR3)."""
    if voice not in names:
        listed = ", ".join(names) if names else "none"
        raise VoiceError(
            f"--voice {voice!r} is not an uploaded voice of the server (GET {url} lists: {listed}); "
            "vLLM-Omni's Higgs Audio has no built-in voices: upload it first (POST /v1/audio/voices), "
            "or leave --voice out to use the model's own voice"
        )
