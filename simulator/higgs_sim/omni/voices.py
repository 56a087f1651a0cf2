"""Uploaded voices (OE2, OE3, OS6): ``POST/GET /v1/audio/voices``, ``DELETE /v1/audio/voices/{name}``.

Higgs Audio v2 has no built-in voices: the list holds uploads only. An upload is a sound file
(``audio_sample``, at most 10 MB, an audio MIME type, decodable, 1-30 s) with ``consent`` and
``name`` and optionally ``ref_text``/``speaker_description``, or a ``speaker_embedding`` (Qwen3
only: stored, but a Higgs request naming it is refused). Checks, texts and order follow
``serving_speech.py`` ``upload_voice`` (1217-1364): the name, the size, the MIME type, then, holding
the upload lock, the old voice of that name is dropped (re-uploading replaces it; a failed
re-upload has still dropped it), the cap (``$SPEAKER_MAX_UPLOADED``, 1000), decoding and the
duration. Names are matched case-insensitively.

Voices are stored as the real server stores them: one safetensors file per voice in
``$SPEAKER_SAMPLES_DIR`` (default ``~/.cache/vllm-omni/speakers``), named
``<name>_<consent>_<created_at>.safetensors``, the samples as float32 tensor ``audio`` and the
metadata in the header; they are restored at start (OS6). The file format is written by hand
(numpy), as there is no torch here.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import math
import os
import re
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

log = logging.getLogger("higgs_sim.omni.voices")

MAX_FILE_SIZE = 10 * 1024 * 1024
REF_AUDIO_MIN_SECONDS = 1.0
REF_AUDIO_MAX_SECONDS = 30.0
DEFAULT_MAX_UPLOADED = 1000
ALLOWED_MIME_TYPES = (
    "audio/mpeg",
    "audio/wav",
    "audio/x-wav",
    "audio/ogg",
    "audio/aac",
    "audio/flac",
    "audio/webm",
    "audio/mp4",
)
_EXTENSION_MIME = (
    (".wav", "audio/wav"),
    (".mp3", "audio/mpeg"),
    (".mpeg", "audio/mpeg"),
    (".flac", "audio/flac"),
    (".ogg", "audio/ogg"),
    (".aac", "audio/aac"),
    (".webm", "audio/webm"),
    (".mp4", "audio/mp4"),
)
_INT_KEYS = ("created_at", "file_size", "sample_rate", "embedding_dim")


class VoiceError(ValueError):
    """An upload the server refuses (400, the message as the real server words it)."""


@dataclass
class UploadedVoice:
    name: str
    consent: str
    created_at: int
    mime_type: str
    file_size: int
    file_path: str
    embedding_source: str = "audio"  # "audio", or "direct" for a speaker_embedding upload
    embedding_dim: int | None = None
    sample_rate: int = 0
    ref_text: str | None = None
    speaker_description: str | None = None

    def listing(self) -> dict[str, Any]:
        """One ``uploaded_voices`` entry of ``GET /v1/audio/voices`` (api_server.py:1373-1424)."""
        entry: dict[str, Any] = {
            "name": self.name,
            "consent": self.consent,
            "created_at": self.created_at,
            "file_size": self.file_size,
            "mime_type": self.mime_type,
            "embedding_source": self.embedding_source,
            "embedding_dim": self.embedding_dim,
        }
        if self.ref_text:
            entry["ref_text"] = self.ref_text
        if self.speaker_description:
            entry["speaker_description"] = self.speaker_description
        return entry

    def metadata(self) -> dict[str, str]:
        fields = {
            "name": self.name,
            "voice_name_lower": self.name.lower(),
            "consent": self.consent,
            "created_at": self.created_at,
            "mime_type": self.mime_type,
            "file_size": self.file_size,
            "sample_rate": self.sample_rate if self.embedding_source == "audio" else None,
            "ref_text": self.ref_text,
            "speaker_description": self.speaker_description,
            "embedding_source": self.embedding_source,
            "embedding_dim": self.embedding_dim,
        }
        return {k: str(v) for k, v in fields.items() if v is not None}


def sanitize_filename(filename: str) -> str:
    """serving_speech.py _sanitize_filename: only [A-Za-z0-9_.-], at most 255 characters."""
    sanitized = re.sub(r"[^a-zA-Z0-9_.\-]", "_", os.path.basename(filename)) or "file"
    return sanitized[:255]


def validate_name(name: str) -> str:
    trimmed = (name or "").strip()
    if not trimmed or trimmed in (".", "..") or any(c in trimmed for c in "/\\\x00"):
        raise VoiceError(f"Invalid voice name {name!r}: must be non-empty, no path separators or NUL")
    return trimmed


def decoded_seconds(samples: np.ndarray, rate: int) -> float:
    return len(samples) / rate if rate > 0 else 0.0


def check_duration(seconds: float) -> None:
    """The 1-30 s bounds of a reference clip, in the real server's words (uploads and ref_audio)."""
    if seconds < REF_AUDIO_MIN_SECONDS:
        raise VoiceError(
            f"Reference audio too short ({seconds:.1f}s). "
            f"At least {REF_AUDIO_MIN_SECONDS:.0f}s of clear speech is required."
        )
    if seconds > REF_AUDIO_MAX_SECONDS:
        raise VoiceError(
            f"Reference audio too long ({seconds:.1f}s). "
            f"Maximum {REF_AUDIO_MAX_SECONDS:.0f}s supported — use a shorter clip."
        )


# --- safetensors, by hand: 8-byte little-endian header length, JSON header, raw tensor bytes ---


def write_safetensors(path: Path, tensor_name: str, array: np.ndarray, metadata: dict[str, str]) -> None:
    data = np.ascontiguousarray(array, dtype="<f4").tobytes()
    header = {
        "__metadata__": metadata,
        tensor_name: {"dtype": "F32", "shape": list(array.shape), "data_offsets": [0, len(data)]},
    }
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def read_safetensors_metadata(path: Path) -> dict[str, str]:
    with open(path, "rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(size))
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict):
        raise ValueError("the __metadata__ entry is not an object")
    return {str(k): str(v) for k, v in metadata.items()}


def read_safetensors_tensor(path: Path, tensor_name: str) -> np.ndarray:
    blob = path.read_bytes()
    (size,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + size])
    entry = header[tensor_name]
    start, end = entry["data_offsets"]
    data = blob[8 + size + start : 8 + size + end]
    return np.frombuffer(data, dtype="<f4").reshape(entry["shape"])


class VoiceStore:
    """The uploaded voices of one server, persisted in a directory."""

    def __init__(self, directory: Path, max_uploaded: int = DEFAULT_MAX_UPLOADED) -> None:
        self.directory = directory
        self.max_uploaded = max_uploaded
        self.voices: dict[str, UploadedVoice] = {}  # lower-case name -> voice, upload order
        self._last_ts = 0
        self._data_urls: dict[str, str] = {}

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> VoiceStore:
        """OS6: $SPEAKER_SAMPLES_DIR (created at start) and $SPEAKER_MAX_UPLOADED."""
        default = os.path.join(os.path.expanduser("~"), ".cache", "vllm-omni", "speakers")
        directory = Path(env.get("SPEAKER_SAMPLES_DIR") or default).expanduser()
        directory.mkdir(parents=True, exist_ok=True)  # OSError: the start fails, as the real server's
        raw_cap = env.get("SPEAKER_MAX_UPLOADED", "")
        try:
            cap = int(raw_cap) if raw_cap else DEFAULT_MAX_UPLOADED
        except ValueError:
            log.warning("Invalid SPEAKER_MAX_UPLOADED=%r; using default %d", raw_cap, DEFAULT_MAX_UPLOADED)
            cap = DEFAULT_MAX_UPLOADED
        store = cls(directory, cap)
        store.restore()
        log.info("Speaker storage: dir=%s, max_speakers=%d, restored=%d", directory, cap, len(store.voices))
        return store

    def restore(self) -> None:
        for path in sorted(self.directory.glob("*.safetensors")):
            try:
                meta: dict[str, Any] = dict(read_safetensors_metadata(path))
            except (OSError, ValueError, struct.error) as exc:
                log.warning("Could not read voice file %s: %s", path, exc)
                continue
            key = meta.get("voice_name_lower") or meta.get("name", "").lower()
            if not key:
                log.warning("Voice file %s has no voice name in metadata; skipping", path)
                continue
            for name in _INT_KEYS:
                if name in meta:
                    with contextlib.suppress(ValueError):
                        meta[name] = int(meta[name])
            voice = UploadedVoice(
                name=meta.get("name", key),
                consent=meta.get("consent", ""),
                created_at=int(meta.get("created_at", 0)),
                mime_type=meta.get("mime_type", ""),
                file_size=int(meta.get("file_size", path.stat().st_size)),
                file_path=str(path),
                embedding_source=meta.get("embedding_source", "audio"),
                embedding_dim=meta.get("embedding_dim"),
                sample_rate=int(meta.get("sample_rate", 0)),
                ref_text=meta.get("ref_text"),
                speaker_description=meta.get("speaker_description"),
            )
            self.voices[key] = voice
            self._last_ts = max(self._last_ts, voice.created_at)

    # --- queries ---

    def get(self, name: str) -> UploadedVoice | None:
        return self.voices.get(name.lower())

    def listing(self) -> dict[str, Any]:
        return {
            "voices": sorted(self.voices),
            "uploaded_voices": [voice.listing() for voice in self.voices.values()],
        }

    def reference(self, voice: UploadedVoice) -> tuple[np.ndarray, int]:
        """The stored samples and their rate (an uploaded voice used as ``ref_audio``)."""
        return read_safetensors_tensor(Path(voice.file_path), "audio"), voice.sample_rate

    def data_url(self, voice: UploadedVoice) -> str | None:
        """The voice as the WAV data URL the real server substitutes for ``ref_audio``."""
        key = voice.name.lower()
        if key not in self._data_urls:
            try:
                samples, rate = self.reference(voice)
                buffer = io.BytesIO()
                sf.write(buffer, samples, rate, format="WAV")
            except (OSError, ValueError, KeyError, RuntimeError) as exc:
                log.error("Could not encode voice %s as WAV: %s", voice.name, exc)
                return None
            self._data_urls[key] = "data:audio/wav;base64," + base64.b64encode(buffer.getvalue()).decode()
        return self._data_urls[key]

    # --- changes ---

    def _timestamp(self) -> int:
        self._last_ts = max(int(time.time()), self._last_ts + 1)
        return self._last_ts

    def _evict(self, key: str, name: str) -> None:
        old = self.voices.pop(key, None)
        self._data_urls.pop(key, None)
        if old is not None:
            Path(old.file_path).unlink(missing_ok=True)
            log.info("Speaker '%s' re-uploaded; previous cache and file overwritten", name)

    def _check_cap(self) -> None:
        if len(self.voices) >= self.max_uploaded:
            raise VoiceError(
                f"Uploaded voice limit reached ({self.max_uploaded}). Delete an existing voice before "
                "registering a new one, or raise the cap via SPEAKER_MAX_UPLOADED."
            )

    def _path(self, name: str, consent: str, timestamp: int) -> Path:
        return (
            self.directory / f"{sanitize_filename(name)}_{sanitize_filename(consent)}_{timestamp}.safetensors"
        )

    def upload_audio(
        self,
        filename: str,
        content_type: str | None,
        content: bytes,
        consent: str,
        name: str,
        ref_text: str | None = None,
        speaker_description: str | None = None,
    ) -> dict[str, Any]:
        name = validate_name(name)
        ref_text = (ref_text.strip() or None) if ref_text is not None else None
        speaker_description = (
            (speaker_description.strip() or None) if speaker_description is not None else None
        )
        if len(content) > MAX_FILE_SIZE:
            raise VoiceError(f"File size exceeds maximum limit of 10MB. Got {len(content)} bytes.")
        mime_type = content_type
        if mime_type == "application/octet-stream":
            lower = filename.lower()
            mime_type = next((m for ext, m in _EXTENSION_MIME if lower.endswith(ext)), "audio/wav")
        if mime_type not in ALLOWED_MIME_TYPES:
            allowed = "{" + ", ".join(repr(m) for m in ALLOWED_MIME_TYPES) + "}"
            raise VoiceError(f"Unsupported MIME type: {mime_type}. Allowed: {allowed}")
        key = name.lower()
        self._evict(key, name)
        self._check_cap()
        timestamp = self._timestamp()
        try:
            samples, rate = sf.read(io.BytesIO(content), dtype="float32")
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
            raise VoiceError(f"Could not decode audio file: {exc}") from None
        check_duration(decoded_seconds(samples, int(rate)))
        voice = UploadedVoice(
            name=name,
            consent=consent,
            created_at=timestamp,
            mime_type=mime_type,
            file_size=len(content),
            file_path=str(self._path(name, consent, timestamp)),
            sample_rate=int(rate),
            ref_text=ref_text,
            speaker_description=speaker_description,
        )
        write_safetensors(Path(voice.file_path), "audio", samples, voice.metadata())
        self.voices[key] = voice
        log.info("Uploaded new voice '%s' with consent ID '%s'", name, consent)
        result: dict[str, Any] = {
            "name": name,
            "consent": consent,
            "created_at": timestamp,
            "mime_type": mime_type,
            "file_size": len(content),
        }
        if ref_text:
            result["ref_text"] = ref_text
        if speaker_description:
            result["speaker_description"] = speaker_description
        return result

    def upload_embedding(self, embedding_json: str, consent: str, name: str) -> dict[str, Any]:
        """A ``speaker_embedding`` upload (serving_speech.py upload_voice_embedding): stored as is."""
        name = validate_name(name)
        try:
            embedding = json.loads(embedding_json)
        except (json.JSONDecodeError, TypeError) as exc:
            raise VoiceError(f"'speaker_embedding' must be valid JSON: {exc}") from None
        if not isinstance(embedding, list) or not embedding:
            raise VoiceError("'speaker_embedding' must be a non-empty list of numbers")
        if len(embedding) > 4096:
            raise VoiceError("'speaker_embedding' exceeds maximum length (4096 elements)")
        if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in embedding):
            raise VoiceError("'speaker_embedding' must contain only numeric values")
        if not all(math.isfinite(x) for x in embedding):
            raise VoiceError("'speaker_embedding' values must be finite (no NaN or Inf)")
        key = name.lower()
        self._evict(key, name)
        self._check_cap()
        timestamp = self._timestamp()
        path = self._path(name, consent, timestamp)
        voice = UploadedVoice(
            name=name,
            consent=consent,
            created_at=timestamp,
            mime_type="application/x-safetensors",
            file_size=0,
            file_path=str(path),
            embedding_source="direct",
            embedding_dim=len(embedding),
        )
        write_safetensors(path, "speaker_embedding", np.asarray(embedding, dtype="<f4"), voice.metadata())
        voice.file_size = path.stat().st_size
        self.voices[key] = voice
        log.info("Uploaded voice '%s' from speaker embedding (%d-dim)", name, len(embedding))
        return {
            "name": name,
            "consent": consent,
            "created_at": timestamp,
            "embedding_source": "direct",
            "embedding_dim": len(embedding),
        }

    def delete(self, name: str) -> bool:
        key = name.lower()
        voice = self.voices.pop(key, None)
        self._data_urls.pop(key, None)
        if voice is None:
            log.warning("Voice '%s' not found", name)
            return False
        Path(voice.file_path).unlink(missing_ok=True)
        log.info("Deleted voice '%s'", name)
        return True
