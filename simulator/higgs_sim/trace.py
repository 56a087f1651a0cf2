"""``--sim-trace-file``: one JSON line per finished request, with server-side wall-clock timestamps."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TextIO


@dataclass
class TraceRecord:
    request_id: str
    endpoint: str
    # When the request's first bytes reached the server's socket (the kernel's receive stamp, see
    # higgs_sim.arrival); t_handler where there is none.
    t_received: float
    t_handler: float | None = None  # time.time() when the handler started
    stream: bool = False
    # time.time() as the first audio bytes were handed to the transport; for a non-streamed body (audio
    # usable only whole) once the whole body was written
    t_first_audio: float | None = None
    t_done: float | None = None
    audio_seconds: float = 0.0
    frames: int = 0
    # [time.time(), frames sent so far] each time audio was handed to the transport (the fork's
    # simulator): audio delivered per time window, summed over requests, is the server's own count
    # that the load tests' per-level throughput is checked against (tests/loadtests)
    sent: list[tuple[float, int]] = field(default_factory=list)
    status: int = 200
    error: str | None = None
    fault: str | None = None  # the --sim-fault kind this request got (higgs_sim.content_faults)


class TraceWriter:
    def __init__(self, path: str) -> None:
        self._fh: TextIO = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - kept open for the run

    def write(self, record: TraceRecord) -> None:
        self._fh.write(json.dumps(asdict(record), separators=(",", ":")) + "\n")

    def close(self) -> None:
        self._fh.close()
