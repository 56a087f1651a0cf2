"""Request records for the report tests: a fixed, seeded run with some failures and both TTFA clocks."""

from __future__ import annotations

import random

from higgs_load.records import RequestRecord

SR = 24_000


def make_records(n=40, seed=1):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ok = i % 10 != 0
        r = RequestRecord(
            kind="stream",
            t_start=1000.0 + i * 0.5,
            ok=ok,
            streamed=True,
            error=None if ok else "http_500",
            duration_s=rng.uniform(1, 3),
        )
        if ok:
            r.ttfa_s = rng.uniform(0.05, 0.4)
            r.ttfa_clock = "process" if i % 10 == 1 else "kernel"
            r.audio_s = rng.uniform(2, 5)
            r.chunks = [[r.ttfa_s, int(r.audio_s * SR)]]
        out.append(r)
    return out
