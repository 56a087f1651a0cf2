"""``POST /v1/audio/speech`` bodies: the request schema (OR1, OR4) and the Higgs refusals (OR3, OR5).

Two layers, as in the real server. Parsing (``OpenAICreateSpeechRequest``, ``protocol/audio.py``)
happens before the handler: pydantic's lax types, the ``references`` alias, OR4's rich-input
refusal for a Higgs model id, then the streaming constraints; a failure is a schema error (OX2).
Undeclared fields are dropped. The handler then checks the model (404), and the Higgs adapter's
``validate()`` (``tts_adapters/higgs_audio_v2.py``) refuses, in this order (OR3): a voice that is
not an uploaded one, blank input, half a voice clone, the voice-cloning helper fields, instructions,
task_type, language, speed != 1, ``[SPEAKERn]`` tags, ``max_new_tokens`` < 1. The refusal texts
are the real server's. Finally the reference clip (inline ``ref_audio`` or an uploaded voice) is
resolved and must last 1-30 s.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import re
import urllib.parse
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import soundfile as sf

from higgs_sim.omni.errors import OmniError, SchemaError, SchemaIssue, value_error
from higgs_sim.omni.voices import VoiceError, VoiceStore, check_duration, decoded_seconds

RESPONSE_FORMATS = ("wav", "pcm", "flac", "mp3", "opus")
STREAM_FORMATS = ("sse", "audio")
TASK_TYPES = ("CustomVoice", "VoiceDesign", "Base")
# OR4: keys a Higgs request may not carry, caught before pydantic drops them (audio.py:249-291).
HIGGS_RESERVED_KEYS = ("messages", "reference_audio", "voice_prompt", "speaker_audio", "speakers")
MULTI_SPEAKER_TAG = re.compile(r"\[SPEAKER\d+\]", re.IGNORECASE)
MAX_NEW_TOKENS_MIN = 1
SEED_MAX = 2**63 - 1
MAX_EMBEDDING_DIM = 8192


class InternalServerError(Exception):
    """An exception the real server does not turn into a validation error (a plain-text 500)."""


# --- the request ---


Embedding = tuple[float, ...] | tuple[tuple[float, ...], ...]  # one vector, or several


@dataclass(frozen=True)
class SpeechRequest:
    """The parsed body (the declared fields the emulation uses), built once by :func:`parse_speech`;
    later steps (the streaming defaults, an uploaded voice) derive new ones with ``replace``."""

    input: str
    model: str | None = None
    voice: str | None = None
    instructions: str | None = None
    response_format: str = "wav"  # OR1: the default is wav
    speed: float | None = 1.0
    stream_format: str | None = None
    stream: bool = False
    task_type: str | None = None
    language: str | None = None
    ref_audio: str | tuple[str, ...] | None = None
    ref_text: str | None = None
    x_vector_only_mode: bool | None = None
    speaker_embedding: Embedding | None = None
    max_new_tokens: int | None = None
    seed: int | None = None
    word_timestamps: bool = False

    def is_raw_audio_stream(self) -> bool:
        return self.stream_format == "audio"

    def is_sse_stream(self) -> bool:
        return (self.stream or self.stream_format == "sse") and not self.is_raw_audio_stream()

    def is_streaming(self) -> bool:
        return self.is_raw_audio_stream() or self.is_sse_stream()


# --- pydantic's lax coercions, with its error types and messages ---


class _Invalid(Exception):
    def __init__(self, kind: str, msg: str, ctx: dict[str, Any] | None = None) -> None:
        super().__init__(msg)
        self.kind, self.msg, self.ctx = kind, msg, ctx


_TRUE = ("1", "on", "t", "true", "y", "yes")
_FALSE = ("0", "off", "f", "false", "n", "no")


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid("string_type", "Input should be a valid string")
    return value


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in (*_TRUE, *_FALSE):
        return value.strip().lower() in _TRUE
    if isinstance(value, str | int | float):
        raise _Invalid("bool_parsing", "Input should be a valid boolean, unable to interpret input")
    raise _Invalid("bool_type", "Input should be a valid boolean")


def _int(value: Any) -> int:
    if isinstance(value, bool | int):
        return int(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise _Invalid(
                "int_from_float", "Input should be a valid integer, got a number with a fractional part"
            )
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise _Invalid(
                "int_parsing", "Input should be a valid integer, unable to parse string as an integer"
            ) from None
    raise _Invalid("int_type", "Input should be a valid integer")


def _float(value: Any) -> float:
    if isinstance(value, bool | int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise _Invalid(
                "float_parsing", "Input should be a valid number, unable to parse string as a number"
            ) from None
    raise _Invalid("float_type", "Input should be a valid number")


def _number_text(limit: float) -> str:
    return str(int(limit)) if float(limit).is_integer() else str(limit)


def _bounded(value: float, ge: float | None, le: float | None) -> None:
    if ge is not None and value < ge:
        raise _Invalid(
            "greater_than_equal", f"Input should be greater than or equal to {_number_text(ge)}", {"ge": ge}
        )
    if le is not None and value > le:
        raise _Invalid(
            "less_than_equal", f"Input should be less than or equal to {_number_text(le)}", {"le": le}
        )


def _literal(options: tuple[str, ...]) -> Check:
    expected = ", ".join(f"'{o}'" for o in options[:-1]) + f" or '{options[-1]}'"

    def check(value: Any) -> str:
        if value not in options:
            raise _Invalid("literal_error", f"Input should be {expected}", {"expected": expected})
        return str(value)

    return check


def _dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid("dict_type", "Input should be a valid dictionary")
    return value


def _ref_audio(value: Any) -> str | tuple[str, ...]:
    """_normalize_ref_audio_value: its TypeErrors are not validation errors (pydantic v2 lets them out)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        if not all(isinstance(item, str) for item in value):
            raise InternalServerError("'ref_audio' list entries must be strings")
        if not value:
            raise _Invalid("value_error", "Value error, 'ref_audio' list cannot be empty")
        return tuple(value)
    raise InternalServerError("'ref_audio' must be a string or list of strings")


def _embedding(value: Any) -> Embedding:
    if not isinstance(value, list | tuple):
        raise InternalServerError(
            "'speaker_embedding' must be a list of numbers or list of embedding vectors"
        )
    if len(value) > MAX_EMBEDDING_DIM:
        raise _Invalid("too_long", f"List should have at most {MAX_EMBEDDING_DIM} items after validation")
    try:
        if value and isinstance(value[0], list | tuple):
            nested = tuple(tuple(float(x) for x in item) for item in value)
            flat = [x for item in nested for x in item]
            out: Embedding = nested
        else:
            out = tuple(float(x) for x in value)
            flat = list(out)
    except (TypeError, ValueError) as exc:
        raise _Invalid("value_error", f"Value error, {exc}") from None
    if not all(math.isfinite(x) for x in flat):
        raise _Invalid(
            "value_error", "Value error, 'speaker_embedding' values must be finite (no NaN or Inf)"
        )
    return out


Check = Callable[[Any], Any]  # one field's lax validation: the coerced value, or _Invalid


def _optional(check: Check) -> Check:
    def run(value: Any) -> Any:
        return None if value is None else check(value)

    return run


def _ranged(check: Callable[[Any], float], ge: float | None = None, le: float | None = None) -> Check:
    def run(value: Any) -> float:
        out = check(value)
        _bounded(out, ge, le)
        return out

    return run


# Declared fields of OpenAICreateSpeechRequest (audio.py:51-168): name -> (validator, default;
# ``...``: required).
FIELDS: dict[str, tuple[Check, object]] = {
    "input": (_str, ...),
    "model": (_optional(_str), None),
    "voice": (_optional(_str), None),
    "instructions": (_optional(_str), None),
    "response_format": (_literal(RESPONSE_FORMATS), "wav"),
    "speed": (_optional(_ranged(_float, 0.25, 4.0)), 1.0),
    "stream_format": (_optional(_literal(STREAM_FORMATS)), None),
    "stream": (_bool, False),
    "task_type": (_optional(_literal(TASK_TYPES)), None),
    "language": (_optional(_str), None),
    "ref_audio": (_optional(_ref_audio), None),
    "ref_text": (_optional(_str), None),
    "ref_audio_2": (_optional(_str), None),
    "ambient_sound": (_optional(_str), None),
    "duration_seconds": (_optional(_ranged(_float, 0.0)), None),
    "x_vector_only_mode": (_optional(_bool), None),
    "speaker_embedding": (_optional(_embedding), None),
    "max_new_tokens": (_optional(_int), None),
    "seed": (_optional(_ranged(_int, 0, SEED_MAX)), None),
    "initial_codec_chunk_frames": (_optional(_ranged(_int, 0)), None),
    "non_streaming_mode": (_optional(_bool), None),
    "extra_params": (_optional(_dict), None),
    "word_timestamps": (_bool, False),
}
KEPT = {f.name for f in SpeechRequest.__dataclass_fields__.values()}  # the ones the emulation uses


def is_higgs_model_id(model: object) -> bool:
    """OR4: ``higgsaudiov2`` in the model id, case, ``-`` and ``_`` ignored."""
    return isinstance(model, str) and "higgsaudiov2" in model.lower().replace("-", "").replace("_", "")


def _references_alias(data: dict[str, Any]) -> None:
    """The ``references: [{audio_path, text}]`` alias of ``ref_audio``/``ref_text`` (OR1)."""
    refs = data.get("references")
    if refs is None:
        return
    if not isinstance(refs, list) or not refs:
        raise ValueError("'references' must be a non-empty array of {audio_path, text} objects")
    if len(refs) > 1:
        raise ValueError(
            "'references' only supports a single reference; multi-shot voice clone is not supported"
        )
    first = refs[0]
    if not isinstance(first, dict):
        raise ValueError("'references[0]' must be an object with 'audio_path' and optional 'text'")
    audio_path = first.get("audio_path")
    if not isinstance(audio_path, str) or not audio_path:
        raise ValueError(
            "'references[0].audio_path' is required and must be a string (URL, data: URI, or file path)"
        )
    existing = data.get("ref_audio")
    if existing and existing != audio_path:
        raise ValueError("'references' and 'ref_audio' are mutually exclusive")
    data["ref_audio"] = audio_path
    text = first.get("text")
    if isinstance(text, str) and text.strip():
        if data.get("ref_text") and data["ref_text"] != text:
            raise ValueError("'references[0].text' and 'ref_text' conflict; supply only one")
        data["ref_text"] = text
    data.pop("references", None)


def parse_speech(body: Any) -> SpeechRequest:
    """The request schema: raises :class:`SchemaError` as FastAPI would report it (OX2)."""
    if not isinstance(body, dict):
        raise SchemaError(
            [
                {
                    "type": "model_attributes_type",
                    "loc": ("body",),
                    "msg": "Input should be a valid dictionary or object to extract fields from",
                    "input": body,
                }
            ]
        )
    data = dict(body)
    try:
        _references_alias(data)
        if is_higgs_model_id(data.get("model")):
            offending = sorted(k for k in HIGGS_RESERVED_KEYS if k in data)
            if offending:
                raise ValueError(
                    "higgs_audio_v2 v1 does not support these rich-input fields: "
                    f"{offending}. Supply plain text via the 'input' field instead."
                )
    except ValueError as exc:
        raise SchemaError([value_error(str(exc), body)]) from None
    if "voice" not in data and "speaker" in data:  # AliasChoices("voice", "speaker")
        data["voice"] = data["speaker"]
    values: dict[str, Any] = {}
    issues: list[SchemaIssue] = []
    for name, (check, default) in FIELDS.items():
        if name not in data:
            if default is ...:
                issues.append(
                    {"type": "missing", "loc": ("body", name), "msg": "Field required", "input": body}
                )
            else:
                values[name] = default
            continue
        try:
            values[name] = check(data[name])
        except _Invalid as exc:
            issue: dict[str, Any] = {
                "type": exc.kind,
                "loc": ("body", name),
                "msg": exc.msg,
                "input": data[name],
            }
            if exc.ctx:
                issue["ctx"] = exc.ctx
            issues.append(issue)
    if issues:
        raise SchemaError(issues)
    request = SpeechRequest(**{k: v for k, v in values.items() if k in KEPT})
    try:
        return _after_validators(request)
    except ValueError as exc:
        raise SchemaError([value_error(str(exc), body)]) from None


def _after_validators(request: SpeechRequest) -> SpeechRequest:
    """validate_embedding_constraints, validate_streaming_constraints (OR4's streaming part): the
    request as the model validators leave it (a streamed one's unset speed becomes 1.0)."""
    if request.speaker_embedding is not None and isinstance(request.ref_audio, str):
        raise ValueError("'speaker_embedding' and 'ref_audio' are mutually exclusive")
    if request.is_streaming():
        if request.response_format not in ("pcm", "wav"):
            raise ValueError(
                "Streaming (stream=true, stream_format='audio', or stream_format='sse') "
                "requires response_format='pcm' or 'wav'. "
                f"Got response_format='{request.response_format}'."
            )
        if request.speed is None:
            return replace(request, speed=1.0)
        if request.speed != 1.0:
            raise ValueError("Speed adjustment is not supported when streaming. Set speed=1.0 or omit it.")
    return request


# --- the Higgs adapter's refusals (OR3) ---


def apply_uploaded_voice(request: SpeechRequest, voices: VoiceStore) -> SpeechRequest | str:
    """serving_speech.py _apply_uploaded_speaker: the voice becomes ref_audio (+ its stored ref_text).
    Returns the request to generate, or the refusal."""
    if request.voice is None or request.ref_audio is not None:
        return request
    voice = voices.get(request.voice)
    if voice is None:
        return (
            f"Unknown voice '{request.voice}'. Higgs-Audio V2 has no built-in speakers. Upload a voice "
            "first via POST /v1/audio/voices, or use ref_audio + ref_text."
        )
    if voice.embedding_source == "direct":
        return (
            f"Uploaded voice '{request.voice}' uses a speaker embedding (Qwen3-only). "
            "Re-upload with an audio file for this model."
        )
    data_url = voices.data_url(voice)
    if not data_url:
        return f"Audio file for uploaded voice '{request.voice}' is missing"
    ref_text = request.ref_text
    if (not ref_text or not ref_text.strip()) and voice.ref_text:
        ref_text = voice.ref_text
    return replace(request, ref_audio=data_url, ref_text=ref_text)


def higgs_validate(request: SpeechRequest, voices: VoiceStore) -> SpeechRequest:
    """HiggsAudioV2Adapter.validate: the request to generate (an uploaded voice resolved to its
    ref_audio/ref_text), or :class:`OmniError` 400 with the first refusal (OR3)."""
    resolved = apply_uploaded_voice(request, voices)
    if isinstance(resolved, str):
        raise OmniError(400, resolved)
    refusal = higgs_refusal(resolved)
    if refusal:
        raise OmniError(400, refusal)
    return resolved


def higgs_refusal(request: SpeechRequest) -> str | None:
    """The adapter's refusals after the uploaded voice is applied: the first one, or None."""
    if not request.input or not request.input.strip():
        return "higgs_audio_v2: input text cannot be empty"
    if request.ref_audio is not None and not request.ref_text:
        return (
            "higgs_audio_v2 voice clone requires both 'ref_audio' and "
            "'ref_text'; received ref_audio without ref_text"
        )
    if request.ref_text and request.ref_audio is None:
        return (
            "higgs_audio_v2 voice clone requires both 'ref_audio' and "
            "'ref_text'; received ref_text without ref_audio"
        )
    if request.x_vector_only_mode is not None:
        return "higgs_audio_v2 v1 does not support 'x_vector_only_mode' (voice-cloning helper field)"
    if request.speaker_embedding is not None:
        return "higgs_audio_v2 v1 does not support 'speaker_embedding' (voice-cloning helper field)"
    if request.voice and request.ref_audio is None:  # unreachable after apply_uploaded_voice, as upstream
        return (
            "higgs_audio_v2 v1 does not support 'voice'/'speaker' selection for built-in voices; "
            "upload a voice first via POST /v1/audio/voices, or use ref_audio + ref_text. "
            f"Got voice={request.voice!r}"
        )
    if request.instructions:
        return "higgs_audio_v2 v1 does not support 'instructions' (voice style/emotion control); supply plain text instead"
    if request.task_type is not None:
        return "higgs_audio_v2 v1 does not support 'task_type'; the model is single-mode plain text -> speech"
    if request.language is not None:
        return "higgs_audio_v2 v1 does not accept 'language' overrides; the model infers language from the input text"
    if request.speed is not None and request.speed != 1.0:
        return "higgs_audio_v2 v1 does not support 'speed' adjustments; the audio is rendered at native rate (24 kHz)"
    if MULTI_SPEAKER_TAG.search(request.input):
        return (
            "higgs_audio_v2 v1 does not support multi-speaker [SPEAKERn] tags; remove the tag from the input"
        )
    if request.max_new_tokens is not None and request.max_new_tokens < MAX_NEW_TOKENS_MIN:
        return f"max_new_tokens must be at least {MAX_NEW_TOKENS_MIN}"
    return None


# --- the reference clip (OR5): vLLM's MediaConnector, without network ---


@dataclass(frozen=True)
class Reference:
    digest: str  # identifies the clip: the cloned timbre
    seconds: float


class ReferenceClipError(Exception):
    """The clip cannot be used. ``generation_failed``: the real server words it
    ``Speech generation failed: ...`` (an exception that is not a ValueError)."""

    def __init__(self, message: str, generation_failed: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.generation_failed = generation_failed


def _fetch(url: str, allowed_local_path: str | None) -> bytes:
    scheme = urllib.parse.urlparse(url).scheme
    if scheme in ("http", "https"):
        raise ReferenceClipError(
            f"[simulator] no network access: cannot fetch {url[:80]!r}; send the clip as a "
            "data:audio/wav;base64,... URL or upload it via POST /v1/audio/voices",
            generation_failed=True,
        )
    if scheme == "data":
        header, sep, payload = url[5:].partition(",")
        if not sep or ";base64" not in header:
            raise ReferenceClipError("Only base64 data URLs are supported for now.", generation_failed=True)
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ReferenceClipError(str(exc)) from None  # binascii.Error is a ValueError: a plain 400
    if scheme == "file":
        if not allowed_local_path:
            raise ReferenceClipError(
                "Cannot load local files without `--allowed-local-media-path`.", generation_failed=True
            )
        path = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).resolve()
        allowed = Path(allowed_local_path).resolve()
        if allowed not in path.parents:
            raise ReferenceClipError(
                f"The file path {path} must be a subpath of `--allowed-local-media-path` {allowed}."
            )
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ReferenceClipError(str(exc), generation_failed=True) from None
    raise ReferenceClipError("The URL must be either a HTTP, data or file URL.")


def resolve_reference(ref_audio: str | tuple[str, ...], allowed_local_path: str | None) -> Reference:
    """Decode the clip and check its 1-30 s bounds (``_resolve_ref_audio``)."""
    if not isinstance(ref_audio, str):
        # The Higgs path hashes the value as a string: a list fails inside generation.
        raise ReferenceClipError("'list' object has no attribute 'encode'", generation_failed=True)
    raw = _fetch(ref_audio, allowed_local_path)
    try:
        samples, rate = sf.read(io.BytesIO(raw), dtype="float32")
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise ReferenceClipError(str(exc), generation_failed=True) from None
    seconds = decoded_seconds(samples, int(rate))
    try:
        check_duration(seconds)
    except VoiceError as exc:
        raise ReferenceClipError(str(exc)) from None
    return Reference(f"{len(raw)}:{zlib.crc32(raw):08x}", seconds)
