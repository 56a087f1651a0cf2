"""Incremental Server-Sent Events parser for byte chunks that split events anywhere.

Only `data:` fields matter for OpenAI-style streams; comments (`:`), `event:`, `id:` and `retry:`
lines are skipped. Events end at a blank line (LF, CRLF or CR line endings).
"""

from __future__ import annotations


class SSEParser:
    """Feed raw bytes, get back the complete events' data payloads (multi-line data joined by LF)."""

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        buf = self._buf + chunk
        if b"\r" in buf:
            # A trailing CR may be the first half of a CRLF split across chunks: keep it pending.
            hold = buf.endswith(b"\r")
            if hold:
                buf = buf[:-1]
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if hold:
                buf += b"\r"
        lines = buf.split(b"\n")
        self._buf = lines.pop()  # the unfinished last line (empty when buf ended with LF)
        events: list[bytes] = []
        data = self._data
        for line in lines:
            if not line:
                if data:
                    events.append(b"\n".join(data))
                    data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)
            # other fields and comments are ignored on purpose
        self._data = data
        return events

    @property
    def pending(self) -> bool:
        """True when bytes of an unfinished event are buffered (a cut stream)."""
        return bool(self._buf.strip() or self._data)
