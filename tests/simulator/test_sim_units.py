"""In-process units: the timing model, the audio synthesis, the engine's batching and KV accounting."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
import wave
from importlib import resources

import numpy as np
import pytest
import soundfile as sf

from higgs_sim.audio import (
    SAMPLES_PER_FRAME,
    encoded_file,
    pcm_frames,
    reference_seconds,
    speech_chunk,
    timbre_of,
    wav_bytes,
)
from higgs_sim.engine import Chunk, Engine, Job, chunk_plan, frames_for_tokens, tokens_for_frames
from higgs_sim.events import ChatEvents
from higgs_sim.metrics import SimMetrics
from higgs_sim.timing import (
    DEFAULT_SLOWDOWN,
    REFERENCE_BATCH,
    REFERENCE_H100_AUDIO_S_PER_S,
    REFERENCE_KV_LEN,
    StepTimeModel,
)


def table_rows() -> list[dict]:
    text = resources.files("higgs_sim").joinpath("data/h100_decode_roofline.json").read_text()
    return json.loads(text)["rows"]


def test_step_time_reproduces_every_table_row() -> None:
    model = StepTimeModel(1.0)
    for row in table_rows():
        assert model.raw_step_ms(row["batch"], row["kv_len"]) == pytest.approx(row["step_ms"])
        assert model.predicted_audio_seconds_per_second(row["batch"], row["kv_len"]) == pytest.approx(
            row["audio_s_per_s"], rel=0.01
        )


def test_step_time_interpolates_monotonically() -> None:
    model = StepTimeModel(1.0)
    # halfway between batch 64 and 128 at kv 512, and between kv 512 and 2048 at batch 32
    assert model.raw_step_ms(96, 512) == pytest.approx((4.538 + 5.869) / 2)
    assert model.raw_step_ms(32, 1280) == pytest.approx((3.79 + 5.65) / 2)
    steps = [model.raw_step_ms(b, kv) for b in (1, 2, 16, 100, 300, 600) for kv in (100, 600, 3000, 8192)]
    assert all(s > 0 for s in steps)
    for kv in (512, 1024, 4096):
        seq = [model.raw_step_ms(b, kv) for b in range(1, 700, 25)]
        assert seq == sorted(seq)
    assert model.raw_step_ms(8, 100) == model.raw_step_ms(8, 512)  # short contexts cost the weights' read


def test_default_slowdown_lands_on_reference_figure() -> None:
    calibrated = StepTimeModel(DEFAULT_SLOWDOWN)
    rate = calibrated.predicted_audio_seconds_per_second(REFERENCE_BATCH, REFERENCE_KV_LEN)
    assert rate == pytest.approx(REFERENCE_H100_AUDIO_S_PER_S, rel=0.03)
    assert calibrated.step_seconds(8, 512) == pytest.approx(StepTimeModel(1.0).step_seconds(8, 512) * 3.4)
    assert calibrated.prefill_seconds(1000) > calibrated.prefill_seconds(100) > 0


def test_wav_and_pcm_shapes() -> None:
    pcm = pcm_frames(timbre_of("belinda", 0), 1234, 0, 50)
    assert len(pcm) == 50 * SAMPLES_PER_FRAME * 2
    with wave.open(io.BytesIO(wav_bytes(pcm)), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 24000, 48000)
        assert w.readframes(48000) == pcm
    assert reference_seconds(wav_bytes(pcm)) == pytest.approx(2.0)


def test_audio_is_speech_like_and_deterministic() -> None:
    a = np.frombuffer(pcm_frames(3, 0, 0, 250), dtype="<i2").astype(np.float64)
    assert np.array_equal(a, np.frombuffer(pcm_frames(3, 0, 0, 250), dtype="<i2"))
    assert not np.array_equal(a, np.frombuffer(pcm_frames(4, 0, 0, 250), dtype="<i2"))
    frame_rms = np.sqrt((a.reshape(250, SAMPLES_PER_FRAME) ** 2).mean(axis=1))
    assert frame_rms.min() > 20  # never digitally silent
    assert (
        frame_rms.max() / np.median(frame_rms) < 20 and frame_rms.std() > 0.2 * frame_rms.mean()
    )  # syllables
    spectrum = np.abs(np.fft.rfft(a[:24000]))
    freqs = np.fft.rfftfreq(24000, 1 / 24000)
    assert spectrum[(freqs > 80) & (freqs < 4000)].sum() > 0.8 * spectrum.sum()  # energy in the speech band
    # chunks join seamlessly: frames 0..50 == 0..32 + 32..50
    assert pcm_frames(3, 99, 0, 50) == pcm_frames(3, 99, 0, 32) + pcm_frames(3, 99, 32, 50)
    assert pcm_frames(3, 0, 0, 10, silent=True) == bytes(10 * SAMPLES_PER_FRAME * 2)


def _engine(max_num_seqs: int, kv_budget: int, slowdown: float = 0.05) -> Engine:
    return Engine(StepTimeModel(slowdown), max_num_seqs, kv_budget, SimMetrics("m"))


def test_engine_caps_running_sequences_and_chunks() -> None:
    async def scenario() -> None:
        engine = _engine(max_num_seqs=2, kv_budget=100_000)
        engine.start()
        jobs = [Job(f"r{i}", prompt_tokens=20, tokens=90, frames=80, finish_reason="stop") for i in range(5)]
        for job in jobs:
            engine.submit(job)
        await asyncio.sleep(0)
        peak_waiting = 0
        sizes: dict[str, list[int]] = {j.request_id: [] for j in jobs}

        async def drain(job: Job) -> None:
            while True:
                chunk = await job.chunks.get()
                sizes[job.request_id].append(chunk.end - chunk.start)
                if chunk.final:
                    return

        waiters = asyncio.gather(*(drain(j) for j in jobs))
        while not waiters.done():
            assert len(engine.running) <= 2
            peak_waiting = max(peak_waiting, len(engine.waiting))
            await asyncio.sleep(0.001)
        await engine.stop()
        assert peak_waiting >= 2
        assert all(s == [17, 25, 38] for s in sizes.values())  # at steps 32, 68 and 90 (the last)
        assert engine.kv_reserved == 0 and engine.kv_used == 0
        assert engine.tokens_total == 5 * 90 and engine.frames_total == 5 * 80

    asyncio.run(scenario())


def test_engine_kv_budget_queues_and_abort_frees() -> None:
    async def scenario() -> None:
        engine = _engine(max_num_seqs=100, kv_budget=250)
        engine.start()
        jobs = [Job(f"r{i}", prompt_tokens=20, tokens=100, frames=90, finish_reason="stop") for i in range(3)]
        for job in jobs:
            engine.submit(job)
        await asyncio.sleep(0.01)
        assert len(engine.running) == 2 and len(engine.waiting) == 1  # 2 x 120 tokens fit in 250, not 3
        engine.abort(jobs[0])
        await asyncio.sleep(0.01)
        assert jobs[2] in engine.running
        with pytest.raises(ValueError, match="more than the whole cache"):
            engine.submit(Job("big", prompt_tokens=200, tokens=100, frames=90, finish_reason="stop"))
        await asyncio.wait_for(asyncio.gather(*(j.chunks.get() for j in jobs[1:])), 5)
        await engine.stop()

    asyncio.run(scenario())


def test_engine_is_never_faster_than_the_model() -> None:
    async def scenario() -> float:
        model = StepTimeModel(1.0)
        engine = Engine(model, 64, 10**6, SimMetrics("m"))
        engine.start()
        jobs = [
            Job(f"r{i}", prompt_tokens=100, tokens=60, frames=50, finish_reason="stop", chunked=False)
            for i in range(16)
        ]
        t0 = time.monotonic()
        for job in jobs:
            engine.submit(job)
        await asyncio.gather(*(j.chunks.get() for j in jobs))
        elapsed = time.monotonic() - t0
        await engine.stop()
        predicted = model.prefill_seconds(1600) + sum(model.step_seconds(16, 100 + i) for i in range(60))
        return elapsed / predicted

    ratio = asyncio.run(scenario())
    assert 0.99 <= ratio < 3.0


def test_chunk_plan_follows_the_real_decoder() -> None:
    """Steps 32 (17 frames), 68 and every 25 steps after (25 frames), the rest at the end."""

    def sizes(plan: list[Chunk]) -> list[tuple[int, int, bool]]:
        return [(c.token, c.frames, c.after_finish) for c in plan]

    frames = 147
    stopped = chunk_plan(tokens_for_frames(frames), frames, stopped=True)
    assert tokens_for_frames(frames) == 157
    assert sizes(stopped) == [(32, 17, False), (68, 25, False), (93, 25, False), (118, 25, False),
                              (143, 25, False), (157, 30, False)]  # fmt: skip
    assert [c.start for c in stopped[1:]] == [c.end for c in stopped[:-1]] and stopped[-1].end == frames
    # Cut by max_tokens at step 93: a chunk at that step, then the rest after the finish event.
    cut = chunk_plan(93, frames_for_tokens(93), stopped=False)
    assert frames_for_tokens(93) == 85
    assert sizes(cut) == [(32, 17, False), (68, 25, False), (93, 25, False), (93, 18, True)]
    # Short: everything at the end; a cut at <= 10 steps decodes nothing.
    assert sizes(chunk_plan(20, 10, stopped=True)) == [(20, 10, False)]
    assert frames_for_tokens(10) == 0 and frames_for_tokens(11) == 3
    assert sizes(chunk_plan(5, 0, stopped=False)) == [(5, 0, True)]
    # A stopped request whose eos row falls on step 32: its last step (33) carries everything.
    assert sizes(chunk_plan(33, 23, stopped=True)) == [(32, 17, False), (33, 6, False)]


def test_chat_events_are_vllms_json() -> None:
    events = ChatEvents("chatcmpl-x", 123, "m")
    head = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 123, "model": "m"}

    def parse(data: bytes) -> list[dict]:
        assert data.endswith(b"\n\n")
        return [json.loads(e.removeprefix(b"data: ")) for e in data.split(b"\n\n") if e]

    def choice(delta: dict, finish: str | None = None, **extra: object) -> dict:
        return {
            **head,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish, **extra}],
        }

    assert parse(events.role) == [choice({"role": "assistant", "content": ""})]
    assert parse(events.empty * 2) == [choice({"content": "", "audio": None})] * 2
    pcm = bytes(range(10))
    [audio] = parse(events.audio(pcm))
    sent = audio["choices"][0]["delta"]["audio"]
    assert audio == choice({"content": "", "audio": sent})
    assert sent["id"].startswith("audio-") and base64.b64decode(sent["data"]) == pcm
    assert (sent["expires_at"], sent["transcript"]) == (0, "")
    assert parse(events.finish("length", None)) == [
        choice({"content": "", "audio": None}, "length", stop_reason=None)
    ]
    [after] = parse(events.after_finish(pcm))
    assert after["choices"] == [{"index": 0, "delta": {"audio": after["choices"][0]["delta"]["audio"]},
                                 "finish_reason": None}]  # fmt: skip
    assert parse(events.usage(5, 7)) == [
        {**head, "choices": [], "usage": {"prompt_tokens": 5, "total_tokens": 12, "completion_tokens": 7}}
    ]
    [error] = parse(ChatEvents.error("boom"))
    assert error == {"error": {"object": "error", "message": "boom", "type": "BadRequestError", "param": None,
                               "code": 400}}  # fmt: skip


def test_encoded_files_as_the_real_server_writes_them() -> None:
    pcm = pcm_frames(timbre_of("belinda", 0), 0, 0, 17)
    wav = encoded_file(pcm, "wav")
    assert wav == wav_bytes(pcm) and len(wav) == 44 + len(pcm)
    buffer = io.BytesIO()
    sf.write(buffer, np.frombuffer(pcm, dtype="<i2"), 24000, format="wav")
    assert buffer.getvalue() == wav  # byte for byte what soundfile writes
    for fmt in ("mp3", "flac"):
        data, rate = sf.read(io.BytesIO(encoded_file(pcm, fmt)), dtype="int16")
        assert rate == 24000 and len(data) == 17 * SAMPLES_PER_FRAME
    for fmt in ("pcm16", "opus"):
        with pytest.raises(ValueError, match=f"Unknown format: '{fmt}'"):
            encoded_file(pcm, fmt)
    assert speech_chunk(pcm, "pcm") == pcm and speech_chunk(pcm, "wav") == wav


def test_omni_deploy_yaml_the_local_image_carries_is_os14s_values() -> None:
    """simulator/higgs_sim/omni/higgs_audio_v2.yaml stands in for the file inside vllm/vllm-omni
    (hack/localkube-images.yaml maps the image path to it): the same values as the built-in defaults."""
    from pathlib import Path

    import yaml

    from higgs_sim.omni import deploy

    path = Path(deploy.__file__).with_name("higgs_audio_v2.yaml")
    assert path == deploy.PACKAGED_DEPLOY
    data = yaml.safe_load(path.read_text())  # OS14's values, key by key
    assert data["async_chunk"] is False
    assert data["connectors"]["connector_of_shared_memory"]["extra"] == {
        "codec_streaming": True,
        "codec_chunk_frames": 25,
    }
    talker, code2wav = data["stages"]
    assert (talker["stage_id"], talker["max_num_seqs"], talker["gpu_memory_utilization"]) == (0, 4, 0.6)
    assert talker["max_model_len"] == 4096 and talker["devices"] == "0"
    assert talker["default_sampling_params"] == {
        "temperature": 1.0,
        "top_p": 0.95,
        "top_k": 50,
        "max_tokens": 1024,
        "seed": 42,
    }
    assert (code2wav["stage_id"], code2wav["max_num_seqs"], code2wav["gpu_memory_utilization"]) == (
        1,
        4,
        0.25,
    )
    assert code2wav["max_model_len"] == 65536 and code2wav["devices"] == "0"
    loaded, built_in = deploy.load_deploy(str(path)), deploy.load_deploy(None)
    assert (loaded.async_chunk, loaded.codec_chunk_frames, loaded.stages) == (
        built_in.async_chunk,
        built_in.codec_chunk_frames,
        built_in.stages,
    )
