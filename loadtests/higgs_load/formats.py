"""Body formats of `/v1/audio/speech` as Boson's server sends them (docs/server-contract.md).

- `pcm` (the default): raw int16 LE, 24 kHz mono, one stream (SP7).
- `wav`, `mp3`: the audio is encoded chunk by chunk and each chunk is a complete file with its own
  header, so the body is several files joined together; a reader that stops at the first header sees
  only the first chunk (SP7).
- An error after the stream started is appended to the body as JSON text, `{"error": {...}}`, and the
  status stays 200 (SP10): `ERROR_MARKER` finds it.

No Locust import; `soundfile` is imported only to decode MP3.
"""

from __future__ import annotations

import io
import json
import struct

import numpy as np

from higgs_load.audio import SAMPLE_WIDTH, AudioError, WavInfo, check_format

# `json.dumps({"error": ...})` as the server writes it (serving_engine.create_streaming_error_response).
ERROR_MARKER = b'{"error"'
ERROR_TEXT_LIMIT = 2000  # bytes of an appended error kept for the record's detail
_MAX_HEADER = 65536  # a WAV header (RIFF, fmt, LIST, ...) longer than this is not one the server writes


def error_message(text: bytes) -> str:
    """The message of an `{"error": {...}}` document (SSE event or appended JSON, which more audio may
    follow), else the raw text."""
    raw = text.decode("utf-8", "replace").strip()
    try:
        error = json.JSONDecoder().raw_decode(raw)[0]["error"]
    except (ValueError, KeyError, TypeError):
        return raw[:300]
    if isinstance(error, dict):
        parts = [str(error.get("message", "")), str(error.get("type") or ""), str(error.get("code") or "")]
        return " / ".join(p for p in parts if p)[:300]
    return str(error)[:300]


def read_wav_header(buf: bytes) -> WavInfo | None:
    """Parse the RIFF/WAVE header at the start of `buf`; None while it is still incomplete.

    Unlike `audio.parse_wav_header`, a declared data size of 0 means an empty file (the files of a
    joined body carry their true sizes); only 0xFFFFFFFF / 0x7FFFFFFF mean "until the end".
    """
    if not b"RIFF".startswith(buf[:4]) or (len(buf) >= 12 and buf[8:12] != b"WAVE"):
        raise AudioError("invalid_audio", f"not a RIFF/WAVE file (starts with {buf[:12]!r})")
    if len(buf) < 12:
        return None
    pos, fmt = 12, None
    while pos + 8 <= len(buf):
        chunk_id = buf[pos : pos + 4]
        (size,) = struct.unpack_from("<I", buf, pos + 4)
        body = pos + 8
        if chunk_id == b"fmt ":
            if size < 16:
                raise AudioError("invalid_audio", f"WAV fmt chunk too short ({size} bytes)")
            if body + 16 > len(buf):
                return None
            audio_format, channels, rate, _byte_rate, _align, bits = struct.unpack_from("<HHIIHH", buf, body)
            fmt = (audio_format, channels, rate, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise AudioError("invalid_audio", "WAV data chunk before fmt chunk")
            declared = None if size in (0xFFFFFFFF, 0x7FFFFFFF) else size
            return WavInfo(fmt[2], fmt[1], fmt[3], fmt[0], declared, body)
        pos = body + size + (size & 1)
    if len(buf) > _MAX_HEADER:
        raise AudioError("invalid_audio", f"no WAV data chunk in the first {_MAX_HEADER} bytes")
    return None


class JoinedWavParser:
    """Incremental reader of a body made of complete WAV files joined together.

    `feed()` returns the PCM bytes (whole int16 samples) the new bytes complete; `close()` checks the
    body ended between files. An `{"error": ...}` text where a file should start (SP10) ends the audio:
    everything from there is kept in `error_text`.
    """

    def __init__(self) -> None:
        self.files = 0  # WAV headers seen
        self.error_text: bytearray | None = None
        self._head = bytearray()  # bytes of a header not yet complete
        self._left: int | None = 0  # data bytes left in the current file (None: until the end)
        self._carry = b""  # half a sample split across reads

    @property
    def in_header(self) -> bool:
        return self._left == 0

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        view = memoryview(data)
        while view:
            if self.error_text is not None:
                self.error_text += view[: max(0, ERROR_TEXT_LIMIT - len(self.error_text))]
                break
            view = self._header(view) if self.in_header else self._data(view, out)
        return bytes(out)

    def _header(self, view: memoryview) -> memoryview:
        self._head += view
        if self._head[:1] == b"{":
            self.error_text = bytearray(self._head[:ERROR_TEXT_LIMIT])
            self._head.clear()
            return view[len(view) :]
        info = read_wav_header(bytes(self._head))
        if info is None:
            return view[len(view) :]
        check_format(info.sample_rate, info.channels, info.bits_per_sample, info.audio_format)
        self.files += 1
        rest = memoryview(bytes(self._head[info.data_offset :]))
        self._head.clear()
        self._left = info.declared_data_bytes  # 0: an empty file, the next header follows at once
        return rest

    def _data(self, view: memoryview, out: bytearray) -> memoryview:
        take = len(view) if self._left is None else min(self._left, len(view))
        piece = self._carry + bytes(view[:take])
        whole = len(piece) - len(piece) % SAMPLE_WIDTH
        out += piece[:whole]
        self._carry = piece[whole:]
        if self._left is not None:
            self._left -= take
        return view[take:]

    def close(self) -> None:
        """Raise AudioError unless the body ended at a file boundary (or in a file of unknown size)."""
        if self.error_text is not None:
            return
        if self._head:
            raise AudioError("truncated_stream", f"body ends inside a WAV header ({len(self._head)} bytes)")
        if self._left:
            raise AudioError("truncated_stream", f"WAV file {self.files} lacks {self._left} data bytes")
        if self._carry:
            raise AudioError("invalid_audio", "WAV data ends with half a sample")
        if self.files == 0:
            raise AudioError("invalid_audio", "empty body: no WAV file")


# MPEG audio Layer III frame geometry, by version bits (3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5).
_MP3_BITRATES = {
    3: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mp3_frame(blob: bytes, pos: int) -> tuple[int, bool] | None:
    """(frame length, carries a Xing/Info/VBRI tag) of the Layer III frame at `pos`, or None."""
    if pos + 4 > len(blob) or blob[pos] != 0xFF or blob[pos + 1] & 0xE0 != 0xE0:
        return None
    b1, b2, b3 = blob[pos + 1], blob[pos + 2], blob[pos + 3]
    version, layer = (b1 >> 3) & 3, (b1 >> 1) & 3
    bitrate_index, rate_index = b2 >> 4, (b2 >> 2) & 3
    if version == 1 or layer != 1 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    bitrate = _MP3_BITRATES[3 if version == 3 else 2][bitrate_index] * 1000
    rate = _MP3_RATES[version][rate_index]
    length = (144 if version == 3 else 72) * bitrate // rate + ((b2 >> 1) & 1)
    mono = (b3 >> 6) == 3
    side = (17 if mono else 32) if version == 3 else (9 if mono else 17)
    tag = blob[pos + 4 + side : pos + 8 + side]
    return length, tag in (b"Xing", b"Info") or blob[pos + 36 : pos + 40] == b"VBRI"


def _id3_length(blob: bytes, pos: int) -> int | None:
    if blob[pos : pos + 3] != b"ID3" or pos + 10 > len(blob):
        return None
    size = 0
    for byte in blob[pos + 6 : pos + 10]:
        size = (size << 7) | (byte & 0x7F)
    return 10 + size + (10 if blob[pos + 5] & 0x10 else 0)  # footer flag


def split_mp3(blob: bytes) -> tuple[list[tuple[int, int]], bytes | None]:
    """Split a body of joined MP3 files into (start, end) byte ranges, one per file.

    A file starts with an ID3v2 tag (ffmpeg, the real server) or with a Xing/Info frame (libsndfile,
    the simulator). An `{"error": ...}` text between frames ends the audio; it is returned second.
    """
    files: list[tuple[int, int]] = []
    start = pos = 0
    frames_in_file = 0
    while pos < len(blob):
        if blob[pos : pos + 1] == b"{":
            break
        id3 = _id3_length(blob, pos)
        frame = None if id3 is not None else _mp3_frame(blob, pos)
        if id3 is None and frame is None:
            if blob[pos : pos + 3] == b"TAG" and pos + 128 <= len(blob):  # ID3v1 trailer of a file
                pos += 128
                continue
            raise AudioError("invalid_audio", f"no MP3 frame at byte {pos} (found {blob[pos : pos + 8]!r})")
        new_file = id3 is not None or (frame is not None and frame[1])
        if new_file and frames_in_file:
            files.append((start, pos))
            start, frames_in_file = pos, 0
        if id3 is not None:
            pos += id3
            if pos > len(blob):
                raise AudioError("truncated_stream", "body ends inside an ID3 tag")
            continue
        assert frame is not None
        if pos + frame[0] > len(blob):
            raise AudioError("truncated_stream", f"MP3 frame at byte {pos} is cut off")
        frames_in_file += 1
        pos += frame[0]
    if frames_in_file:
        files.append((start, pos))
    error = blob[pos : pos + ERROR_TEXT_LIMIT] if pos < len(blob) else None
    return files, error


def decode_mp3(data: bytes) -> bytes:
    """Decode one complete MP3 file (soundfile / libsndfile) to int16 LE PCM, checking 24 kHz mono."""
    import soundfile

    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="int16", always_2d=True)
    except (soundfile.SoundFileError, RuntimeError) as exc:
        raise AudioError("invalid_audio", f"MP3 file does not decode: {exc}") from exc
    check_format(rate, samples.shape[1], 16)
    return np.ascontiguousarray(samples[:, 0], dtype="<i2").tobytes()
