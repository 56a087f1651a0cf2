"""Prompt corpus, request mix and request bodies for the Higgs Audio endpoints of two servers.

Boson's fork (docs/server-contract.md): speech always names a `voice` preset from
`GET /v1/audio/voices` (SP2, SP4); chat never puts a preset in `audio.voice`, which takes only the
eight OpenAI names (CH2): it sends no `audio.voice` at all, and a voice is chosen in chat by reference
audio in the messages (the `clone` kind, CH4); non-streamed chat asks `wav` (`pcm16` fails, CH5).

vLLM-Omni (docs/server-contract-omni.md): speech only (no chat, D9); no `voice` unless `--voice` names
an uploaded one (OR3, OR5: the model's own voice); no sampling fields (OR2): the prompt's or
`--max-tokens`' cap goes as `max_new_tokens`, `seed` passes, a temperature is not sent; `speech_sse`
is `stream: true` (base64 PCM events, OP2), `speech_pcm` the raw stream (`stream_format: "audio"`,
OP3), `speech_wav`/`speech_mp3` one file, not streamed (OP1).
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
DEFAULT_PROMPTS = DATA_DIR / "prompts.jsonl"
REFERENCE_WAV = DATA_DIR / "reference_voice.wav"
REFERENCE_TEXT = DATA_DIR / "reference_voice.txt"

KINDS = ("stream", "chat", "speech_pcm", "speech_wav", "speech_mp3", "speech_sse", "clone")
SPEECH_FORMATS = {"speech_pcm": "pcm", "speech_wav": "wav", "speech_mp3": "mp3", "speech_sse": "pcm"}
# Locust tags of each kind's task (`--tags speech` selects every speech kind).
KIND_TAGS = {
    "stream": ("stream",),
    "chat": ("chat",),
    "speech_pcm": ("speech", "speech_pcm"),
    "speech_wav": ("speech", "speech_wav"),
    "speech_mp3": ("speech", "speech_mp3"),
    "speech_sse": ("speech", "speech_sse"),
    "clone": ("clone",),
}
# Aliases accepted in --mix so users can write the endpoint they think of.
_KIND_ALIASES = {
    "speech": "speech_pcm",
    "pcm": "speech_pcm",
    "wav": "speech_wav",
    "mp3": "speech_mp3",
    "sse": "speech_sse",
}

# The two servers (--server-api): Boson's vLLM fork and vLLM-Omni, and the kinds each serves.
SERVER_APIS = ("boson", "omni")
API_NAMES = {"boson": "Boson's vLLM fork", "omni": "vLLM-Omni"}
API_KINDS = {
    "boson": ("stream", "chat", "speech_pcm", "speech_wav", "speech_mp3", "clone"),
    "omni": ("speech_sse", "speech_pcm", "speech_wav", "speech_mp3"),
}
# The mix when --mix is not given.
DEFAULT_MIXES = {
    "boson": "stream=4,chat=1,speech_pcm=1,speech_wav=1,clone=1",
    "omni": "speech_sse=2,speech_pcm=1,speech_wav=1",
}
_WHY_NOT = {
    "boson": "Boson's fork streams speech as raw bytes only (SP6, SP7; `speech_sse` is vLLM-Omni's)",
    "omni": "vLLM-Omni's Higgs server serves speech only, no chat completions "
    "(docs/server-contract-omni.md D9)",
}
# The only values chat's `audio.voice` accepts (CH2); this client sends none of them (the default).
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse")

CHAT_PATH = "/v1/chat/completions"
SPEECH_PATH = "/v1/audio/speech"
SYSTEM_PROMPT = "Generate audio following instruction."


@dataclass(frozen=True)
class Prompt:
    text: str
    length: str = "custom"  # short | medium | long | custom
    voice: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    seed: int | None = None


def load_prompts(path: Path, lengths: set[str] | None = None) -> list[Prompt]:
    """JSONL, one object per line with at least "text"; optional length/voice/max_tokens/temperature/seed."""
    if not path.is_file():
        raise ValueError(f"--prompts: file {path} does not exist")
    prompts = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                prompt = Prompt(**obj)
            except (ValueError, TypeError) as exc:
                raise ValueError(
                    f"--prompts {path}:{lineno}: expected a JSON object with 'text': {exc}"
                ) from exc
            if not isinstance(prompt.text, str) or not prompt.text.strip():
                raise ValueError(f"--prompts {path}:{lineno}: 'text' must be a non-empty string")
            if lengths is None or prompt.length in lengths:
                prompts.append(prompt)
    if not prompts:
        raise ValueError(
            f"--prompts {path}: no prompts" + (f" of length {sorted(lengths)}" if lengths else "")
        )
    return prompts


def parse_mix(spec: str) -> dict[str, int]:
    """'stream=3,chat=1,speech=1,clone=1' -> weights per request kind."""
    weights: dict[str, int] = {}
    for part in spec.split(","):
        if not part.strip():
            continue
        name, _, weight = part.partition("=")
        name = _KIND_ALIASES.get(name.strip(), name.strip())
        if name not in KINDS:
            raise ValueError(
                f"--mix: unknown request kind {name!r}; choose from {', '.join(KINDS)} (or speech, wav, mp3, sse)"
            )
        try:
            w = int(weight) if weight else 1
        except ValueError as exc:
            raise ValueError(f"--mix: weight of {name!r} must be an integer, got {weight!r}") from exc
        if w < 0:
            raise ValueError(f"--mix: weight of {name!r} must be >= 0")
        weights[name] = w
    if not any(weights.values()):
        raise ValueError(f"--mix {spec!r} selects no requests")
    return {k: v for k, v in weights.items() if v > 0}


def check_kinds_served(api: str, kinds: Iterable[str], detected: str = "") -> None:
    """ValueError naming the kinds that `api`'s server cannot serve, and those that work; `detected`
    says how --server-api auto found the server."""
    refused = [k for k in KINDS if k in set(kinds) and k not in API_KINDS[api]]
    if refused:
        how = f"detected: {detected}" if detected else f"--server-api {api}"
        raise ValueError(
            f"--mix kind{'s' if len(refused) > 1 else ''} {', '.join(refused)} cannot run against "
            f"{API_NAMES[api]} ({how}): {_WHY_NOT[api]}; the kinds that work are "
            f"{', '.join(API_KINDS[api])}"
        )


def runnable_kinds(
    kinds: Iterable[str], tags: Iterable[str] | None, exclude: Iterable[str] | None
) -> set[str]:
    """The kinds Locust's `--tags` / `--exclude-tags` leave to run."""
    wanted, unwanted = set(tags or ()), set(exclude or ())
    return {
        k for k in kinds if (not wanted or wanted & set(KIND_TAGS[k])) and not unwanted & set(KIND_TAGS[k])
    }


@dataclass(frozen=True)
class Settings:
    model: str
    voice: str | None  # --voice: the speech preset of every speech request (a prompt's own wins)
    max_tokens: int | None
    temperature: float | None
    seed: int | None
    voices: tuple[str, ...] = ()  # the server's presets (GET /v1/audio/voices at test start)
    api: str = "boson"  # the server's API: boson | omni (--server-api, detected at test start)


def _pick(prompt_value, default):
    return prompt_value if prompt_value is not None else default


def chat_body(
    prompt: Prompt, settings: Settings, *, stream: bool, reference: tuple[str, str] | None = None
) -> dict:
    """Chat completion asking for audio; `reference` = (transcript, base64 WAV) for voice cloning."""
    messages: list[dict] = [{"role": "system", "content": SYSTEM_PROMPT}]
    if reference is not None:
        transcript, wav_b64 = reference
        messages.append({"role": "user", "content": transcript})
        messages.append(
            {
                "role": "assistant",
                "content": [{"type": "input_audio", "input_audio": {"data": wav_b64, "format": "wav"}}],
            }
        )
    messages.append({"role": "user", "content": prompt.text})
    # Streamed audio is base64 PCM whatever the format (CH6); whole files are wav (pcm16 fails, CH5).
    # No audio.voice: it takes only OpenAI's names and does not change the voice (CH2).
    audio: dict = {"format": "pcm16" if stream else "wav"}
    body: dict = {
        "model": settings.model,
        "messages": messages,
        "modalities": ["text", "audio"],
        "audio": audio,
        "stream": stream,
        "stop": ["<|eot_id|>", "<|end_of_text|>", "<|audio_eos|>"],
    }
    _add_sampling(body, prompt, settings)
    return body


def speech_voice(prompt: Prompt, settings: Settings, rng: random.Random) -> str | None:
    """Boson: the prompt's voice, else --voice, else one of the server's presets drawn at random.
    vLLM-Omni: --voice (an uploaded voice), else None: the model's own voice (OR5)."""
    if settings.api == "omni":
        return settings.voice
    voice = _pick(prompt.voice, settings.voice)
    if voice:
        return voice
    if not settings.voices:
        raise ValueError("no voice for a speech request: the server's voice list was not read")
    return rng.choice(settings.voices)


def speech_body(prompt: Prompt, settings: Settings, response_format: str, voice: str) -> dict:
    """`voice` is required (SP2); an unknown one silently becomes the first preset (SP4)."""
    body: dict = {
        "model": settings.model,
        "input": prompt.text,
        "voice": voice,
        "response_format": response_format,
    }
    _add_sampling(body, prompt, settings)
    return body


def omni_speech_body(prompt: Prompt, settings: Settings, kind: str, voice: str | None = None) -> dict:
    """A vLLM-Omni speech request (OR1-OR5) for a speech kind: `speech_sse` streams base64 PCM events
    (OP2), `speech_pcm` raw PCM (`stream_format: "audio"`, OP3), `speech_wav`/`speech_mp3` one file
    (OP1). No `voice` unless given (an uploaded one; else the model's own voice), no sampling fields:
    a max_tokens cap goes as `max_new_tokens` (OR2), `seed` passes, a temperature is dropped."""
    if kind not in API_KINDS["omni"]:
        raise ValueError(f"{kind!r} is not a speech kind of vLLM-Omni")
    body: dict = {"model": settings.model, "input": prompt.text}
    if voice:
        body["voice"] = voice
    body["response_format"] = SPEECH_FORMATS[kind]
    if kind == "speech_sse":
        body["stream"] = True
    elif kind == "speech_pcm":
        body["stream"] = True
        body["stream_format"] = "audio"
    for key, value in (
        ("max_new_tokens", _pick(prompt.max_tokens, settings.max_tokens)),
        ("seed", _pick(prompt.seed, settings.seed)),
    ):
        if value is not None:
            body[key] = value
    return body


def _add_sampling(body: dict, prompt: Prompt, settings: Settings) -> None:
    for key, value in (
        ("max_tokens", _pick(prompt.max_tokens, settings.max_tokens)),
        ("temperature", _pick(prompt.temperature, settings.temperature)),
        ("seed", _pick(prompt.seed, settings.seed)),
    ):
        if value is not None:
            body[key] = value


def load_reference(wav: Path = REFERENCE_WAV, text: Path = REFERENCE_TEXT) -> tuple[str, str]:
    """(transcript, base64 WAV) of the bundled voice-cloning reference."""
    if not wav.is_file():
        raise ValueError(
            f"voice-cloning reference {wav} is missing: run loadtests/data/make_reference_wav.py"
        )
    return text.read_text(encoding="utf-8").strip(), base64.b64encode(wav.read_bytes()).decode("ascii")


def request_for(
    kind: str,
    prompt: Prompt,
    settings: Settings,
    reference: tuple[str, str] | None,
    rng: random.Random | None = None,
) -> tuple[str, dict]:
    """(path, JSON body) for one request of the given kind, in the shape of `settings.api`'s server."""
    if settings.api == "omni":
        check_kinds_served("omni", [kind])
        voice = speech_voice(prompt, settings, rng or random.Random())
        return SPEECH_PATH, omni_speech_body(prompt, settings, kind, voice)
    check_kinds_served("boson", [kind])
    if kind == "stream":
        return CHAT_PATH, chat_body(prompt, settings, stream=True)
    if kind == "chat":
        return CHAT_PATH, chat_body(prompt, settings, stream=False)
    if kind == "clone":
        return CHAT_PATH, chat_body(prompt, settings, stream=True, reference=reference)
    if kind in SPEECH_FORMATS:
        voice = speech_voice(prompt, settings, rng or random.Random())
        assert voice is not None
        return SPEECH_PATH, speech_body(prompt, settings, SPEECH_FORMATS[kind], voice)
    raise ValueError(f"unknown request kind {kind!r}")


def weighted_choice(weights: dict[str, int], rng: random.Random) -> str:
    kinds = list(weights)
    return rng.choices(kinds, weights=[weights[k] for k in kinds])[0]
