"""The per-process record sink (Collector): the master (or a local runner) keeps every record and
appends each to the raw JSONL as it arrives; a worker batches its records for the master
(higgs_load.messages). Also the load levels the shape began and the run's exit code. Locust-free."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, TextIO

from higgs_load.metrics import Step
from higgs_load.records import RequestRecord


class Collector:
    """Per-process record sink. Workers batch records to the master; the master (or a local runner)
    keeps them all and appends each to the raw JSONL as it arrives."""

    def __init__(self) -> None:
        self.records: list[RequestRecord] = []
        self.outbox: list[dict[str, Any]] = []
        self.dropped_arrivals = 0
        self.outbox_dropped = 0
        self.raw_fh: TextIO | None = None
        self.steps: list[tuple[int, float]] = []  # (users, unix time the level began)
        self.t_levels_end: float | None = None  # unix time the shape's last level ended (None: running)
        self.t_start = 0.0
        self.exit_code: int | None = None
        self.final_batches = 0  # master: workers whose last records arrived
        self.worker_ids: list[str] = []  # master: the workers of this run

    def begin_levels(self) -> None:
        """A new shape run: forget the last run's levels (before the shape's first tick, which Locust
        runs before test_start: reset() keeps the levels, or the first one would be lost)."""
        self.steps, self.t_levels_end = [], None

    def end_levels(self) -> None:
        """The shape's plan is over (the last level ends now; the requests in flight are awaited)."""
        if self.t_levels_end is None:
            self.t_levels_end = time.time()

    def reset(self, raw_out: Path | None) -> None:
        """A new test: no records yet (test_start, before the first user spawns)."""
        self.close()
        self.records, self.outbox = [], []
        self.dropped_arrivals = self.outbox_dropped = self.final_batches = 0
        self.t_start = time.time()
        if raw_out is not None:
            raw_out.parent.mkdir(parents=True, exist_ok=True)
            self.raw_fh = raw_out.open("w", encoding="utf-8")

    def keep(self, rec: RequestRecord) -> None:
        self.records.append(rec)
        if self.raw_fh is not None:
            self.raw_fh.write(rec.to_json() + "\n")

    def close(self) -> None:
        if self.raw_fh is not None:
            self.raw_fh.close()
            self.raw_fh = None

    def note_level(self, users: int) -> None:
        if not self.steps or self.steps[-1][0] != users:
            self.steps.append((users, time.time()))

    def step_list(self, t_stop: float) -> list[Step]:
        """The levels and their windows; the last ends where the plan ended (not after the drain)."""
        out = []
        last_end = self.t_levels_end if self.t_levels_end is not None else t_stop
        for i, (users, begin) in enumerate(self.steps):
            end = self.steps[i + 1][1] if i + 1 < len(self.steps) else last_end
            out.append(Step(users, begin, end))
        return out
