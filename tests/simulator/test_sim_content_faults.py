"""`--sim-fault` (higgs_sim.content_faults): which requests get which fault, and what each does to the
generation and its audio; pure, no server (the load test's detection of each: tests/loadtests)."""

from __future__ import annotations

import numpy as np
import pytest

from higgs_sim.config import parse_args
from higgs_sim.content_faults import FaultPicker, faulted_pcm, faulted_spec, truncate_at
from higgs_sim.protocol import GenerationSpec

SPEC = GenerationSpec("x" * 60, "v", 10, 110, 100, "stop", None)


def test_every_nth_request_gets_the_kinds_in_turn():
    picker = FaultPicker(("runaway", "clip"), every=2)
    assert [picker.next() for _ in range(6)] == [None, "runaway", None, "clip", None, "runaway"]
    assert FaultPicker(()).next() is None


def test_lengths_and_cut_point():
    assert faulted_spec(SPEC, "runaway").frames == 250
    assert faulted_spec(SPEC, "short").frames == 25
    assert faulted_spec(SPEC, "silence").frames == 150
    assert faulted_spec(SPEC, None) is SPEC
    assert truncate_at("truncate", 100) == 50 and truncate_at("clip", 100) is None


@pytest.mark.parametrize("fault", ["silence", "clip"])
def test_the_stretch_is_written_over_the_audio(fault):
    def pcm(start: int, end: int) -> bytes:
        return (np.full((end - start) * 4, 9000, dtype="<i2")).tobytes()

    src = faulted_pcm(pcm, fault, 150, 4)
    audio = np.concatenate([np.frombuffer(src(a, a + 7), dtype="<i2") for a in range(0, 147, 7)])
    changed = np.flatnonzero(audio != 9000)
    expected = {"silence": 0, "clip": 32767}[fault]
    assert changed.size and set(audio[changed].tolist()) == {expected}
    assert changed.size == (50 if fault == "silence" else 10) * 4


def test_flag_parsing():
    cfg = parse_args(["--sim-fault", "runaway,truncate", "--sim-fault-every", "3"])
    assert cfg.faults.content_faults == ("runaway", "truncate") and cfg.faults.content_fault_every == 3
    with pytest.raises(SystemExit):
        parse_args(["--sim-fault", "bogus"])
