"""One raw record per request, and its JSONL file (the source of truth for every report figure)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Failure classes, in the order a request is checked.
ERROR_CLASSES = (
    "http_<status>",
    "timeout",
    "connection_error",
    "truncated_stream",
    "stream_error",
    "invalid_audio",
    "silent_audio",
    "implausible_length",
    # higgs_load.correctness: the content checks, then (at report time) the length band
    "silence_gap",
    "clipped_audio",
    "audio_too_long",
    "audio_too_short",
)


@dataclass
class RequestRecord:
    kind: str  # stream | chat | speech_pcm | speech_wav | speech_mp3 | clone
    t_start: float  # unix time the request was sent
    streamed: bool = False  # audio arrived incrementally (a listener could play it as it came)
    ok: bool = False
    error: str | None = None  # one of ERROR_CLASSES (http_<n> with the status) or None
    error_detail: str = ""
    status: int | None = None
    duration_s: float | None = None  # wall time, request sent to last byte
    ttfa_s: float | None = None  # request sent to the first byte of audio
    t_first_audio: float | None = None  # unix time of the first audio byte
    # whose clock stamped the first audio: "kernel" (the socket's receive timestamp) or "process"
    ttfa_clock: str | None = None
    audio_s: float = 0.0  # PCM samples received / 24000
    # (seconds since t_start, samples) per arrival of audio bytes: the underrun simulation input
    chunks: list[tuple[float, int]] = field(default_factory=list)
    underruns: int = 0
    stall_s: float = 0.0
    # the smallest pre-buffer (s of audio) with which this stream would not have stalled (playback.py)
    min_prebuffer_s: float | None = None
    bytes_received: int = 0
    request_id: str | None = None  # X-Request-Id (ours, or the server's echo), to join server-side traces
    prompt_class: str | None = None
    text_chars: int | None = None  # characters of the text spoken (the implausible_length rule's input)
    voice: str | None = None  # the speech voice preset sent (None: chat, which sends no preset)
    worker: str = "local"
    users: int | None = None  # users running on this process when sent (informational)
    # --shape sessions (higgs_load.sessions): the session, this turn (1-based) and its planned turns
    session_id: str | None = None
    session_turn: int | None = None
    session_turns: int | None = None

    @property
    def rtf(self) -> float | None:
        if self.duration_s is None or self.audio_s <= 0:
            return None
        return self.duration_s / self.audio_s

    @property
    def t_end(self) -> float:
        return self.t_start + (self.duration_s or 0.0)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict) -> RequestRecord:
        known = cls.__dataclass_fields__
        unknown = set(data) - set(known)
        if unknown:
            raise ValueError(f"raw record has unknown fields {sorted(unknown)}")
        chunks = [(float(t), int(n)) for t, n in data.get("chunks") or []]
        return cls(**{**data, "chunks": chunks})


def write_jsonl(path: Path, records: Iterable[RequestRecord]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(rec.to_json() + "\n")
            count += 1
    return count


def read_jsonl(path: Path) -> Iterator[RequestRecord]:
    """Read raw records; a malformed line is an error naming the file and line."""
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield RequestRecord.from_dict(json.loads(line))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{path}:{lineno}: not a raw load-test record: {exc}") from exc
