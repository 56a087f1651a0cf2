"""Report numbers, Markdown, plots, gates, plans and payload options."""

import json
import random

import pytest

from higgs_load.metrics import SLO, Step
from higgs_load.payloads import (
    DEFAULT_PROMPTS,
    Prompt,
    Settings,
    load_prompts,
    parse_mix,
    request_for,
    runnable_kinds,
)
from higgs_load.plans import PoissonArrivals, StepPlan, doubling_levels, parse_levels
from higgs_load.records import read_jsonl, write_jsonl
from higgs_load.report import PLOTS, build_summary, write_report
from higgs_load.thresholds import EXIT_THRESHOLD_MISSED, evaluate, parse_gates
from tests.support.records import make_records

SR = 24_000


def test_summary_from_records_round_trips_through_jsonl(tmp_path):
    records = make_records()
    path = tmp_path / "raw.jsonl"
    write_jsonl(path, records)
    again = list(read_jsonl(path))
    slo = SLO(ttfa_ms=300)
    assert build_summary(again, slo) == build_summary(records, slo)


def test_report_files_and_markdown(tmp_path):
    records = make_records()
    steps = [Step(1, 1000.0, 1010.0), Step(2, 1010.0, 1021.0)]
    summary = build_summary(records, SLO(ttfa_ms=300, rtf=1.0), steps, min_good_share=0.1)
    summary["gates"] = ["error_rate <= 0.01: 0.1 MISSED"]
    write_report(tmp_path, summary, records, raw_out=tmp_path / "raw.jsonl")
    for name in ("summary.json", "summary.md", "raw.jsonl", *PLOTS):
        assert (tmp_path / name).stat().st_size > 0, name
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data["requests"] == 40 and data["failures"] == 4
    assert data["errors"] == {"http_500": 4}
    assert data["ttfa_clock"] == {"kernel": 32, "process": 4}
    md = (tmp_path / "summary.md").read_text()
    assert "TTFA of 4 requests was stamped by the load generator's clock" in md
    assert "| error rate | 10.00 %" in md
    assert "Capacity:" in md and "MISSED" in md
    assert "| audio implausibly long for its text (K1) | 0 of 40 |" in md
    from PIL import Image

    for plot in PLOTS:
        with Image.open(tmp_path / plot) as img:
            assert img.size[0] > 300 and img.size[1] > 200


def test_gates():
    gates = parse_gates("ttfa_p99_ms<=800, error_rate<0.05,goodput_share>=0.9")
    ok, lines = evaluate(gates, {"ttfa_p99_ms": 700.0, "error_rate": 0.1, "goodput_share": 0.95})
    assert not ok and "error_rate < 0.05: 0.1 MISSED" in lines
    ok, lines = evaluate(parse_gates("ttfa_p99_ms<=800"), {"ttfa_p99_ms": None})
    assert not ok and "not measured" in lines[0]
    assert EXIT_THRESHOLD_MISSED == 3
    with pytest.raises(ValueError, match="unknown metric 'ttfa'"):
        parse_gates("ttfa<=3")
    with pytest.raises(ValueError, match="cannot parse"):
        parse_gates("error_rate is low")


def test_plans():
    assert doubling_levels(10) == [1, 2, 4, 8, 10]
    assert doubling_levels(1) == [1]
    assert parse_levels("1,3,9") == [1, 3, 9]
    with pytest.raises(ValueError, match="increasing"):
        parse_levels("4,2")
    plan = StepPlan((1, 2, 4), 10.0)
    assert [plan.index_at(t) for t in (0, 9.9, 10, 29.9, 30)] == [0, 0, 1, 2, None]


def test_poisson_rate_and_drops():
    rng = random.Random(3)
    arrivals = [PoissonArrivals(20.0, 4, 0.0, rng) for _ in range(4)]
    times = []
    for a in arrivals:
        while a.next_at < 500:
            at, dropped = a.take(at_now := a.next_at, 1.0)
            assert dropped == 0 and at == at_now
            times.append(at)
    assert len(times) / 500 == pytest.approx(20.0, rel=0.05)
    # a user busy for 10 s at rate 5/s per user drops the arrivals older than 1 s
    a = PoissonArrivals(5.0, 1, 0.0, random.Random(1))
    at, dropped = a.take(10.0, 1.0)
    assert at >= 9.0 and dropped > 30


def test_mix_prompts_and_bodies(tmp_path):
    assert parse_mix("stream=3,speech=1,wav=2") == {"stream": 3, "speech_pcm": 1, "speech_wav": 2}
    with pytest.raises(ValueError, match="unknown request kind 'tts'"):
        parse_mix("tts=1")
    with pytest.raises(ValueError, match="selects no requests"):
        parse_mix("stream=0")
    prompts = load_prompts(DEFAULT_PROMPTS)
    assert {p.length for p in prompts} == {"short", "medium", "long"}
    assert all(p.length == "short" for p in load_prompts(DEFAULT_PROMPTS, {"short"}))
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"text": "ok"}\n{"txt": "oops"}\n')
    with pytest.raises(ValueError, match=r"p\.jsonl:2"):
        load_prompts(bad)
    settings = Settings("m", "belinda", 512, 0.7, 42, voices=("belinda", "en_man"))
    path, body = request_for("stream", Prompt("hi", voice="en_man"), settings, None)
    # Chat never names a preset in audio.voice (only OpenAI's eight names are valid there, CH2).
    assert path == "/v1/chat/completions" and body["stream"] and body["audio"] == {"format": "pcm16"}
    assert body["stop"] == ["<|eot_id|>", "<|end_of_text|>", "<|audio_eos|>"]
    assert (body["max_tokens"], body["temperature"], body["seed"]) == (512, 0.7, 42)
    _, body = request_for("chat", Prompt("hi"), settings, None)
    assert body["audio"] == {"format": "wav"} and not body["stream"]  # never pcm16 (CH5)
    path, body = request_for("clone", Prompt("hi"), settings, ("ref text", "UklGRg=="))
    assert body["messages"][2]["content"][0]["input_audio"]["data"] == "UklGRg=="
    assert "voice" not in body["audio"]
    path, body = request_for("speech_wav", Prompt("hi"), settings, None)
    assert path == "/v1/audio/speech" and body["response_format"] == "wav" and body["input"] == "hi"
    assert body["voice"] == "belinda"  # --voice
    _, body = request_for("speech_pcm", Prompt("hi", voice="en_man"), settings, None)
    assert (body["voice"], body["response_format"]) == ("en_man", "pcm")  # the prompt's own voice wins
    _, body = request_for("speech_mp3", Prompt("hi"), settings, None)
    assert body["response_format"] == "mp3"


def test_speech_voice_is_drawn_from_the_server_list_when_none_is_given():
    settings = Settings("m", None, None, None, None, voices=("a", "b", "c"))
    rng = random.Random(5)
    drawn = {request_for("speech_pcm", Prompt("hi"), settings, None, rng)[1]["voice"] for _ in range(60)}
    assert drawn == {"a", "b", "c"}
    with pytest.raises(ValueError, match="voice list was not read"):
        request_for("speech_pcm", Prompt("hi"), Settings("m", None, None, None, None), None)


def test_tags_select_kinds():
    kinds = ("stream", "speech_pcm", "speech_wav", "clone")
    assert runnable_kinds(kinds, None, None) == set(kinds)
    assert runnable_kinds(kinds, ["speech"], None) == {"speech_pcm", "speech_wav"}
    assert runnable_kinds(kinds, None, ["speech"]) == {"stream", "clone"}
    assert runnable_kinds(kinds, ["stream", "speech_wav"], []) == {"stream", "speech_wav"}


def test_implausible_length_is_a_failure_reported_on_its_own():
    records = make_records()
    for r in records[1:4]:
        r.ok, r.error, r.error_detail = False, "implausible_length", "40.0 s of audio for 34 characters"
    summary = build_summary(records, SLO())
    assert summary["implausible_length"] == 3
    assert summary["errors"] == {"http_500": 4, "implausible_length": 3}
    assert summary["failures"] == 7 and summary["good_requests"] == 33
    ok, lines = evaluate(parse_gates("implausible_length<=0"), summary)
    assert not ok and "implausible_length <= 0: 3 MISSED" in lines
