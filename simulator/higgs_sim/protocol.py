"""Request validation: chat completion and speech bodies to a generation spec, in the real server's order.

The real server validates a body with pydantic first (a bad field: 400, ER1), then its handler checks
the model (404, ER2), builds the prompt (400 for unreadable reference audio), builds the sampling
parameters (400 for values ``SamplingParams`` refuses) and checks the context length (400).
Validation messages are the simulator's own words and name the field (contract row X4). Unknown
fields are accepted and logged, as ``OpenAIBaseModel`` does.

Token counts are estimates in the model's units: ~4 characters per text token plus a per-message
template overhead, and 25 tokens per second of reference audio.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import zlib
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from higgs_sim.audio import FRAMES_PER_SECOND, InvalidAudio, reference_seconds
from higgs_sim.engine import frames_for_tokens, tokens_for_frames
from higgs_sim.voices import Voice, VoiceRegistry

log = logging.getLogger("higgs_sim.protocol")

CHARS_PER_SECOND_OF_SPEECH = 15.0  # ~180 words/min read aloud
MIN_FRAMES = 10  # even a one-word input gives 0.4 s of audio
CHARS_PER_TEXT_TOKEN = 4.0
TOKENS_PER_MESSAGE = 8  # chat template overhead
# protocol.py lines 179-184: ChatCompletionAudioParam.
ChatAudioFormat = Literal["wav", "mp3", "flac", "opus", "pcm16"]
CHAT_AUDIO_FORMATS: tuple[ChatAudioFormat, ...] = ("wav", "mp3", "flac", "opus", "pcm16")
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse")
# protocol.py lines 1743-1786: AudioSpeechRequest.
SpeechFormat = Literal["wav", "mp3", "pcm"]
SPEECH_FORMATS: tuple[SpeechFormat, ...] = ("wav", "mp3", "pcm")
TTS_SYSTEM_PROMPT = "Convert text to speech with the same voice."  # serving_audio.py line 44
# Without reference audio the model picks its own voice; the simulator gives that one timbre.
MODEL_DEFAULT_VOICE = "model-default"
ROLES = ("system", "user", "assistant", "tool", "developer")

CHAT_FIELDS: dict[str, str] = {
    "model": "str",
    "max_tokens": "int",
    "max_completion_tokens": "int",
    "n": "int",
    "seed": "int",
    "stream": "bool",
    "temperature": "float",
    "top_p": "float",
    "top_k": "int",
    "presence_penalty": "float",
    "frequency_penalty": "float",
    "repetition_penalty": "float",
    "request_id": "str",
}
SPEECH_FIELDS: dict[str, str] = {
    "speed": "float",
    "temperature": "float",
    "top_p": "float",
    "top_k": "int",
    "max_tokens": "int",
    "audio_chunk_size": "int",
    "audio_chunk_overlap_size": "int",
}
KNOWN_CHAT_FIELDS = {*CHAT_FIELDS, "messages", "stream_options", "modalities", "audio", "stop", "logprobs"}
KNOWN_SPEECH_FIELDS = {*SPEECH_FIELDS, "model", "input", "voice", "response_format", "stop"}


class ApiError(Exception):
    """An error the real server answers with a top-level ``ErrorResponse`` (ER1, ER2)."""

    def __init__(self, status: int, message: str, err_type: str = "BadRequestError") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.err_type = err_type

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.err_type, self.status)


class DetailError(Exception):
    """A FastAPI ``HTTPException``: ``{"detail": ...}`` (415 here; 404/405 come from routing)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class InternalError(Exception):
    """An unexpected exception in the real server: a plain-text 500 ``Internal Server Error``."""


def error_body(message: str, err_type: str = "BadRequestError", code: int = 400) -> dict[str, Any]:
    """vLLM's ErrorResponse (protocol.py lines 78-83); ``param`` is never set by the handlers."""
    return {"object": "error", "message": message, "type": err_type, "param": None, "code": code}


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


@dataclass(frozen=True)
class GenerationSpec:
    """What to generate: the text, the voice (preset name or a reference digest), and the sizes."""

    text: str
    voice_key: str
    prompt_tokens: int
    tokens: int  # decode steps
    frames: int  # audio frames they decode to
    finish_reason: str  # "stop" (text fully spoken) or "length" (capped by max_tokens / max_model_len)
    seed: int | None


@dataclass(frozen=True)
class Sampling:
    """The sampling parameters of one body, defaults filled in (what ``SamplingParams`` checks)."""

    temperature: float
    top_p: float
    top_k: int
    max_tokens: int | None = None


# ChatCompletionRequest's defaults (protocol.py); AudioSpeechRequest's (protocol.py lines 1743-1786).
CHAT_SAMPLING = Sampling(temperature=1.0, top_p=1.0, top_k=-1)
SPEECH_SAMPLING = Sampling(temperature=1.0, top_p=0.95, top_k=50)


@dataclass(frozen=True)
class ChatOptions:
    """What a chat completion's response needs from its body (parsed once, by :func:`parse_chat`)."""

    model: str
    stream: bool
    include_usage: bool
    audio_format: ChatAudioFormat
    request_id: str | None  # the body's own request_id (the X-Request-Id header wins)


@dataclass(frozen=True)
class SpeechOptions:
    """What a ``/v1/audio/speech`` response needs from its body (parsed once, by :func:`parse_speech`)."""

    model: str
    response_format: SpeechFormat


@dataclass(frozen=True)
class Limits:
    served_model_names: tuple[str, ...]
    max_model_len: int
    audio_limit: int


def text_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TEXT_TOKEN)


def frames_for_text(text: str) -> int:
    return max(MIN_FRAMES, math.ceil(len(text) / CHARS_PER_SECOND_OF_SPEECH * FRAMES_PER_SECOND))


# --- field validation (pydantic's part) ---


def _is(value: object, kind: str) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    raise AssertionError(kind)


_KIND_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}


def _check_types(body: dict[str, Any], fields: dict[str, str]) -> None:
    for name, kind in fields.items():
        value = body.get(name)
        if value is not None and not _is(value, kind):
            raise bad_request(f"'{name}' must be {_KIND_WORDS[kind]}, got {value!r}")


def _require(body: dict[str, Any], name: str, kind: str) -> Any:
    if name not in body or body[name] is None:
        raise bad_request(f"'{name}' is required")
    value = body[name]
    if not _is(value, kind):
        raise bad_request(f"'{name}' must be {_KIND_WORDS[kind]}, got {value!r}")
    return value


_Choice = TypeVar("_Choice", bound=str)


def _choice(value: object, name: str, allowed: tuple[_Choice, ...]) -> _Choice:
    """``value`` if it is one of ``allowed`` (typed as that choice), else a 400 naming the field."""
    for option in allowed:
        if value == option:
            return option
    raise bad_request(f"'{name}' must be one of {', '.join(allowed)}, got {value!r}")


def _check_stop(body: dict[str, Any], allow_str: bool) -> None:
    stop = body.get("stop")
    if stop is None or (allow_str and isinstance(stop, str)):
        return
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise bad_request(f"'stop' must be a list of strings, got {stop!r}")


def _warn_unknown(body: dict[str, Any], known: set[str]) -> None:
    extra = sorted(set(body) - known)
    if extra:  # OpenAIBaseModel accepts them and logs (protocol.py lines 45-76)
        log.warning("The following fields were present in the request but ignored: %s", set(extra))


# --- the handler's part ---


def check_model(model: str | None, limits: Limits) -> None:
    """serving_engine.py lines 124-142: 404 for a name that is not served (none given: the first)."""
    if model and model not in limits.served_model_names:
        raise ApiError(404, f"The model `{model}` does not exist.", "NotFoundError")


def _sampling(body: dict[str, Any], defaults: Sampling, max_tokens: int | None) -> Sampling:
    """The body's sampling fields (already type-checked) over ``defaults``."""
    return Sampling(
        temperature=_or(body.get("temperature"), defaults.temperature),
        top_p=_or(body.get("top_p"), defaults.top_p),
        top_k=_or(body.get("top_k"), defaults.top_k),
        max_tokens=max_tokens,
    )


def check_sampling(sampling: Sampling) -> None:
    """What vLLM 0.8's ``SamplingParams._verify_args`` refuses, in its words (-> 400)."""
    if sampling.temperature < 0.0:
        raise bad_request(f"temperature must be non-negative, got {float(sampling.temperature)}.")
    if not 0.0 < sampling.top_p <= 1.0:
        raise bad_request(f"top_p must be in (0, 1], got {float(sampling.top_p)}.")
    if sampling.top_k < -1 or sampling.top_k == 0:
        raise bad_request(f"top_k must be -1 (disable), or at least 1, got {sampling.top_k}.")
    if sampling.max_tokens is not None and sampling.max_tokens < 1:
        raise bad_request(f"max_tokens must be at least 1, got {sampling.max_tokens}.")


def _check_penalties(body: dict[str, Any]) -> None:
    for name in ("presence_penalty", "frequency_penalty"):
        value = body.get(name)
        if value is not None and not -2.0 <= value <= 2.0:
            raise bad_request(f"{name} must be in [-2, 2], got {float(value)}.")
    value = body.get("repetition_penalty")
    if value is not None and value <= 0.0:
        raise bad_request(f"repetition_penalty must be greater than zero, got {value}.")


def _plan(text: str, prompt_tokens: int, max_tokens: int | None, limits: Limits) -> tuple[int, int, str]:
    """Tokens to generate, the frames they decode to and the finish reason, after vLLM's
    context-length checks (serving_engine.py ``_validate_input``)."""
    if max_tokens is None and prompt_tokens >= limits.max_model_len:
        raise bad_request(
            f"This model's maximum context length is {limits.max_model_len} tokens. However, you requested "
            f"{prompt_tokens} tokens in the messages, Please reduce the length of the messages."
        )
    if max_tokens is not None and prompt_tokens + max_tokens > limits.max_model_len:
        raise bad_request(
            f"This model's maximum context length is {limits.max_model_len} tokens. However, you requested "
            f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, {max_tokens} in the "
            "completion). Please reduce the length of the messages or completion."
        )
    frames = frames_for_text(text)
    tokens = tokens_for_frames(frames)
    cap = max_tokens if max_tokens is not None else limits.max_model_len - prompt_tokens
    if tokens <= cap:
        return tokens, frames, "stop"
    return cap, min(frames, frames_for_tokens(cap)), "length"


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


@dataclass
class _Prompt:
    tokens: int = 0
    audio_inputs: int = 0
    reference_digest: str = ""
    last_user_text: str = ""


def _check_messages(messages: object) -> list[Any]:
    if not isinstance(messages, list):
        raise bad_request(f"'messages' must be a list of messages, got {messages!r}")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise bad_request(f"messages[{i}]: each message needs a 'role' of {', '.join(ROLES)}")
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise bad_request(f"messages[{i}]: 'content' must be a string or a list of parts")
    return messages


def _read_messages(messages: list[dict[str, Any]]) -> _Prompt:
    """Prompt size, reference audio and the text to speak (chat_utils' part: errors are 400)."""
    prompt = _Prompt()
    for i, message in enumerate(messages):
        content = message.get("content")
        texts: list[str] = []
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for j, part in enumerate(content):
                texts.extend(_read_part(part, f"messages[{i}].content[{j}]", prompt))
        text = " ".join(t for t in texts if t)
        prompt.tokens += TOKENS_PER_MESSAGE + text_tokens(text)
        if message["role"] == "user":
            prompt.last_user_text = text
    return prompt


def _read_part(part: object, where: str, prompt: _Prompt) -> list[str]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text" and isinstance(part, dict) and isinstance(part.get("text"), str):
        return [part["text"]]
    if kind == "input_audio" and isinstance(part, dict):
        audio = part.get("input_audio")
        raw, seconds = _decode_reference(audio.get("data") if isinstance(audio, dict) else None, where)
    elif kind == "audio_url" and isinstance(part, dict):
        raw, seconds = _audio_url(part, where)
    else:
        raise bad_request(f"{where}: unsupported content part {kind!r}")
    prompt.audio_inputs += 1
    prompt.tokens += math.ceil(seconds * FRAMES_PER_SECOND) + 2
    prompt.reference_digest += f"{len(raw)}:{zlib.crc32(raw):08x};"
    return []


def _chat_audio_format(body: dict[str, Any]) -> ChatAudioFormat:
    audio = body.get("audio")
    if audio is None:
        return "wav"
    if not isinstance(audio, dict):
        raise bad_request(f"'audio' must be an object with 'format' and 'voice', got {audio!r}")
    fmt = _choice(audio.get("format", "wav"), "audio.format", CHAT_AUDIO_FORMATS)
    # The voice must be an OpenAI name and chooses nothing (CH2): the voice comes from the messages.
    _choice(audio.get("voice", "alloy"), "audio.voice", OPENAI_VOICES)
    for name in ("audio_chunk_size", "audio_chunk_overlap_size", "chunk_size", "chunk_overlap_size"):
        value = audio.get(name)
        if value is not None and not _is(value, "int"):
            raise bad_request(f"'audio.{name}' must be an integer, got {value!r}")
    return fmt


def _modalities(body: dict[str, Any]) -> list[str]:
    modalities = body.get("modalities")
    if modalities is None:
        return ["text", "audio"]
    if not isinstance(modalities, list):
        raise bad_request(f"'modalities' must be a list of 'text' and/or 'audio', got {modalities!r}")
    for value in modalities:
        _choice(value, "modalities[]", ("text", "audio"))
    return modalities


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise bad_request(f"'stream_options' must be an object, got {options!r}")
    value = options.get("include_usage", True)  # StreamOptions.include_usage defaults to True
    if value is not None and not _is(value, "bool"):
        raise bad_request(f"'stream_options.include_usage' must be true or false, got {value!r}")
    return bool(value)


def parse_chat(body: Any, limits: Limits) -> tuple[GenerationSpec, ChatOptions]:
    """Validate a chat completion body; returns the spec and the options the response needs."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    if body.get("messages") is None:
        raise bad_request("'messages' is required")
    messages = _check_messages(body["messages"])
    if body.get("stream_options") and not body.get("stream"):
        # ChatCompletionRequest.validate_stream_options (protocol.py lines 587-594)
        raise bad_request("Stream options can only be defined when `stream=True`.")
    _check_types(body, CHAT_FIELDS)
    _check_stop(body, allow_str=True)
    fmt = _chat_audio_format(body)
    _modalities(body)  # CH3: validated, then ignored
    include_usage = _include_usage(body)
    _warn_unknown(body, KNOWN_CHAT_FIELDS)

    check_model(body.get("model"), limits)
    if not messages:
        raise bad_request("'messages' must be a non-empty list")
    prompt = _read_messages(messages)
    if prompt.audio_inputs > limits.audio_limit:
        raise bad_request(
            f"At most {limits.audio_limit} audio(s) may be provided in one request "
            f"(got {prompt.audio_inputs}; see --limit-mm-per-prompt)."
        )
    if not prompt.last_user_text.strip():
        raise bad_request("nothing to speak: the last user message has no text")

    sampling = _sampling(body, CHAT_SAMPLING, body.get("max_completion_tokens") or body.get("max_tokens"))
    check_sampling(sampling)
    _check_penalties(body)
    tokens, frames, finish = _plan(prompt.last_user_text, prompt.tokens, sampling.max_tokens, limits)
    voice_key = "clone:" + prompt.reference_digest if prompt.reference_digest else MODEL_DEFAULT_VOICE
    spec = GenerationSpec(
        prompt.last_user_text, voice_key, prompt.tokens, tokens, frames, finish, body.get("seed")
    )
    options = ChatOptions(
        model=body.get("model") or limits.served_model_names[0],
        stream=bool(body.get("stream")),
        include_usage=include_usage,
        audio_format=fmt,
        request_id=body.get("request_id"),
    )
    return spec, options


_T = TypeVar("_T")


def _or(value: _T | None, default: _T) -> _T:
    return default if value is None else value


def speech_voice(name: str, voices: VoiceRegistry) -> Voice:
    """serving_audio.py lines 285-296: an unknown name falls back to the first preset (a warning,
    K2); with no presets, or an unreadable preset file, the request fails with a plain 500."""
    voice = voices.get(name)
    if voice is None:
        fallback = voices.fallback()
        if fallback is None:
            raise InternalError(f"no voice presets are loaded, so voice {name!r} has no fallback")
        log.warning("Unsupported voice: %s, using default voice: %s", name, fallback.name)
        voice = fallback
    if voice.audio_error:
        raise InternalError(f"voice preset {voice.name!r}: {voice.audio_error}")
    return voice


def parse_speech(body: Any, limits: Limits, voices: VoiceRegistry) -> tuple[GenerationSpec, SpeechOptions]:
    """Validate a ``/v1/audio/speech`` body; returns the spec and the options the response needs."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    model: str = _require(body, "model", "str")
    text: str = _require(body, "input", "str")
    voice_name: str = _require(body, "voice", "str")
    fmt = _choice(_or(body.get("response_format"), "pcm"), "response_format", SPEECH_FORMATS)
    _check_types(body, SPEECH_FIELDS)
    _check_stop(body, allow_str=False)
    _warn_unknown(body, KNOWN_SPEECH_FIELDS)

    check_model(model, limits)
    sampling = _sampling(body, SPEECH_SAMPLING, body.get("max_tokens"))
    check_sampling(sampling)
    if not text.strip():
        raise bad_request("'input' must be a non-empty string")
    voice = speech_voice(voice_name, voices)
    # SP11: system prompt, the preset's transcript (user) and WAV (assistant), then the text.
    prompt_tokens = (
        3 * TOKENS_PER_MESSAGE
        + text_tokens(TTS_SYSTEM_PROMPT)
        + text_tokens(voice.transcript)
        + math.ceil(voice.seconds * FRAMES_PER_SECOND)
        + 2
        + TOKENS_PER_MESSAGE
        + text_tokens(text)
    )
    tokens, frames, finish = _plan(text, prompt_tokens, sampling.max_tokens, limits)
    seed = body.get("seed") if _is(body.get("seed"), "int") else None
    spec = GenerationSpec(text, voice.name, prompt_tokens, tokens, frames, finish, seed)
    return spec, SpeechOptions(model=model, response_format=fmt)
