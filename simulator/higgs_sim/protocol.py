"""Request validation: OpenAI-style chat completion and speech bodies to a generation spec.

Errors are :class:`ApiError` (status, message, type), rendered as OpenAI-style JSON by the server.
Token counts are estimates in the model's units: ~4 characters per text token plus a per-message
template overhead, and 25 tokens per second of reference audio (one token position per frame).
"""

from __future__ import annotations

import base64
import binascii
import math
import zlib
from dataclasses import dataclass
from typing import Any

from higgs_sim.audio import FRAMES_PER_SECOND, InvalidAudio, reference_seconds
from higgs_sim.voices import VoiceRegistry

CHARS_PER_SECOND_OF_SPEECH = 15.0  # ~180 words/min read aloud
MIN_FRAMES = 10  # even a one-word input gives 0.4 s of audio
CHARS_PER_TEXT_TOKEN = 4.0
TOKENS_PER_MESSAGE = 8  # chat template overhead
CHAT_AUDIO_FORMATS = ("wav", "mp3", "flac", "opus", "pcm16")
SPEECH_FORMATS = ("wav", "mp3", "flac", "opus", "aac", "pcm")
SUPPORTED_CHAT_FORMATS = ("wav", "pcm16")
SUPPORTED_SPEECH_FORMATS = ("wav", "pcm")


class ApiError(Exception):
    def __init__(
        self, status: int, message: str, err_type: str = "BadRequestError", param: str | None = None
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.err_type = err_type
        self.param = param

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.err_type,
                "param": self.param,
                "code": self.status,
            }
        }


def bad_request(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, "BadRequestError", param)


@dataclass(frozen=True)
class GenerationSpec:
    """What to generate: the text, the voice (preset name or a reference digest), and the sizes."""

    text: str
    voice_key: str
    prompt_tokens: int
    frames: int
    finish_reason: str  # "stop" (text fully spoken) or "length" (capped by max_tokens / max_model_len)
    seed: int | None
    audio_out: bool = True


@dataclass(frozen=True)
class Limits:
    served_model_names: tuple[str, ...]
    max_model_len: int
    audio_limit: int


def text_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TEXT_TOKEN)


def frames_for_text(text: str) -> int:
    return max(MIN_FRAMES, math.ceil(len(text) / CHARS_PER_SECOND_OF_SPEECH * FRAMES_PER_SECOND))


def _check_model(body: dict[str, Any], limits: Limits) -> None:
    model = body.get("model")
    if model is not None and model not in limits.served_model_names:
        raise bad_request(f"The model `{model}` does not exist.", "model")


def _optional_int(body: dict[str, Any], name: str, minimum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise bad_request(f"'{name}' must be an integer >= {minimum}, got {value!r}", name)
    return value


# Sampling parameters vLLM validates (pydantic) even though the simulator does not sample: a client that
# sends a wrong type must fail here as it would against the real server. name -> (min, max) inclusive.
SAMPLING_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "frequency_penalty": (-2.0, 2.0),
    "presence_penalty": (-2.0, 2.0),
}


def _check_sampling(body: dict[str, Any]) -> None:
    for name, (low, high) in SAMPLING_RANGES.items():
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise bad_request(f"'{name}' must be a number, got {value!r}", name)
        if not low <= value <= high:
            raise bad_request(f"'{name}' must be between {low} and {high}, got {value!r}", name)


def _plan_frames(text: str, prompt_tokens: int, max_tokens: int | None, limits: Limits) -> tuple[int, str]:
    """Frames to generate and the finish reason, with vLLM's context-length checks."""
    if prompt_tokens >= limits.max_model_len:
        raise bad_request(
            f"This model's maximum context length is {limits.max_model_len} tokens. However, your "
            f"prompt has {prompt_tokens} tokens. Please reduce the length of the messages.",
            "messages",
        )
    if max_tokens is not None and prompt_tokens + max_tokens > limits.max_model_len:
        raise bad_request(
            f"This model's maximum context length is {limits.max_model_len} tokens. However, you requested "
            f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, {max_tokens} in the "
            "completion). Please reduce the length of the messages or completion.",
            "max_tokens",
        )
    wanted = frames_for_text(text)
    cap = max_tokens if max_tokens is not None else limits.max_model_len - prompt_tokens
    return (wanted, "stop") if wanted <= cap else (cap, "length")


def _decode_reference(data: object, where: str) -> tuple[bytes, float]:
    if not isinstance(data, str) or not data:
        raise bad_request(f"{where}: reference audio must be a non-empty base64 string")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(f"{where}: reference audio is not valid base64") from None
    try:
        return raw, reference_seconds(raw)
    except InvalidAudio as exc:
        raise bad_request(f"{where}: reference audio is not a valid WAV: {exc}") from None


def _audio_url(part: dict[str, Any], where: str) -> tuple[bytes, float]:
    audio_url = part.get("audio_url")
    url = audio_url.get("url") if isinstance(audio_url, dict) else None
    if not isinstance(url, str) or not url:
        raise bad_request(f"{where}: audio_url needs a 'url' string")
    if url.startswith(("http://", "https://")):
        raise bad_request(
            f"{where}: cannot fetch remote audio {url!r}: this server has no network access; send the "
            "reference as a data:audio/wav;base64,... URL or as input_audio"
        )
    if not url.startswith("data:"):
        raise bad_request(
            f"{where}: unsupported audio URL scheme in {url[:40]!r}; use data:audio/wav;base64,..."
        )
    header, sep, payload = url.partition(",")
    if not sep or ";base64" not in header:
        raise bad_request(f"{where}: a data URL must be base64-encoded (data:audio/wav;base64,...)")
    return _decode_reference(payload, where)


def parse_chat(body: Any, limits: Limits, voices: VoiceRegistry) -> tuple[GenerationSpec, dict[str, Any]]:
    """Validate a chat completion body; returns the spec and the request options the response needs."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    _check_model(body, limits)
    _check_sampling(body)
    messages = body.get("messages")
    if messages is None:
        raise bad_request("'messages' is required", "messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty list", "messages")

    prompt_tokens = 0
    audio_inputs = 0
    reference_digest = ""
    last_user_text = ""
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict) or message.get("role") not in (
            "system",
            "user",
            "assistant",
            "tool",
        ):
            raise bad_request(
                f"{where}: each message needs a 'role' of system, user, assistant or tool", "messages"
            )
        content = message.get("content")
        texts: list[str] = []
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for j, part in enumerate(content):
                pwhere = f"{where}.content[{j}]"
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text" and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif kind == "input_audio":
                    audio = part.get("input_audio")
                    data = audio.get("data") if isinstance(audio, dict) else None
                    raw, seconds = _decode_reference(data, pwhere)
                elif kind == "audio_url":
                    raw, seconds = _audio_url(part, pwhere)
                else:
                    raise bad_request(f"{pwhere}: unsupported content part {kind!r}", "messages")
                if kind != "text":
                    audio_inputs += 1
                    prompt_tokens += math.ceil(seconds * FRAMES_PER_SECOND) + 2
                    reference_digest += f"{len(raw)}:{zlib.crc32(raw):08x};"
        elif content is not None:
            raise bad_request(f"{where}: 'content' must be a string or a list of parts", "messages")
        text = " ".join(t for t in texts if t)
        prompt_tokens += TOKENS_PER_MESSAGE + text_tokens(text)
        if message["role"] == "user":
            last_user_text = text
    if audio_inputs > limits.audio_limit:
        raise bad_request(
            f"At most {limits.audio_limit} audio(s) may be provided in one request "
            f"(got {audio_inputs}; see --limit-mm-per-prompt).",
            "messages",
        )
    if not last_user_text.strip():
        raise bad_request("nothing to speak: the last user message has no text", "messages")

    modalities = body.get("modalities") or ["text", "audio"]
    if not isinstance(modalities, list) or not set(modalities) <= {"text", "audio"}:
        raise bad_request("'modalities' must be a list of 'text' and/or 'audio'", "modalities")
    audio_opts = body.get("audio") or {}
    if not isinstance(audio_opts, dict):
        raise bad_request("'audio' must be an object with 'format' and 'voice'", "audio")
    fmt = audio_opts.get("format", "wav")
    if fmt not in CHAT_AUDIO_FORMATS:
        raise bad_request(
            f"audio.format must be one of {', '.join(CHAT_AUDIO_FORMATS)}, got {fmt!r}", "audio"
        )
    stream = bool(body.get("stream", False))
    if not stream and fmt not in SUPPORTED_CHAT_FORMATS:
        raise bad_request(
            f"audio.format {fmt!r} is not supported by the simulator; use wav or pcm16", "audio"
        )
    voice_name = audio_opts.get("voice")
    voice_key = _voice_key(voice_name, reference_digest, voices)

    max_tokens = _optional_int(body, "max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = _optional_int(body, "max_tokens", 1)
    seed = _optional_int(body, "seed", 0)
    frames, finish = _plan_frames(last_user_text, prompt_tokens, max_tokens, limits)
    spec = GenerationSpec(
        last_user_text, voice_key, prompt_tokens, frames, finish, seed, "audio" in modalities
    )
    stream_options = body.get("stream_options") or {}
    options = {
        "stream": stream,
        "format": fmt,
        "include_usage": bool(isinstance(stream_options, dict) and stream_options.get("include_usage")),
        "model": body.get("model") or limits.served_model_names[0],
    }
    return spec, options


def _voice_key(voice_name: object, reference_digest: str, voices: VoiceRegistry) -> str:
    if voice_name is not None:
        if not isinstance(voice_name, str) or voices.get(voice_name) is None:
            raise ApiError(
                404,
                f"voice {voice_name!r} not found; GET /v1/audio/voices lists them",
                "NotFoundError",
                "voice",
            )
        return voice_name
    if reference_digest:
        return "clone:" + reference_digest
    return voices.default


def parse_speech(body: Any, limits: Limits, voices: VoiceRegistry) -> tuple[GenerationSpec, dict[str, Any]]:
    """Validate a ``/v1/audio/speech`` body."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    _check_model(body, limits)
    _check_sampling(body)
    text = body.get("input")
    if text is None:
        raise bad_request("'input' is required", "input")
    if not isinstance(text, str) or not text.strip():
        raise bad_request("'input' must be a non-empty string", "input")
    fmt = body.get("response_format") or "wav"
    if fmt not in SPEECH_FORMATS:
        raise bad_request(
            f"response_format must be one of {', '.join(SPEECH_FORMATS)}, got {fmt!r}", "response_format"
        )
    if fmt not in SUPPORTED_SPEECH_FORMATS:
        raise bad_request(
            f"response_format {fmt!r} is not supported by the simulator; use wav or pcm", "response_format"
        )
    voice_key = _voice_key(body.get("voice"), "", voices)
    max_tokens = _optional_int(body, "max_tokens", 1)
    seed = _optional_int(body, "seed", 0)
    prompt_tokens = TOKENS_PER_MESSAGE + text_tokens(text)
    frames, finish = _plan_frames(text, prompt_tokens, max_tokens, limits)
    return GenerationSpec(text, voice_key, prompt_tokens, frames, finish, seed), {"format": fmt}
