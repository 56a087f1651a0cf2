"""docs/server-contract-omni.md, row by row: the vLLM-Omni emulation (``python -m higgs_sim.omni``).

Every test starts the emulation as a real process with the example's command line
(``serve <model> --omni --deploy-config <yaml> --host --port --gpu-memory-utilization --trust-remote-code``)
plus ``--sim-*`` flags, and drives it over HTTP with httpx. Each names the rows it checks with
``@pytest.mark.contract(...)``.
"""

from __future__ import annotations

import base64
import io
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import soundfile as sf
from prometheus_client.parser import text_string_to_metric_families

from tests.support.contract import make_wav
from tests.support.omni import (
    FAST,
    FRAME_BYTES,
    HUB_MODEL,
    RATE,
    capped_frames,
    error_of,
    sse,
    text_frames,
    wav_data,
    write_deploy,
    write_model,
)
from tests.support.simulator import Fleet, OmniSim, launch_omni, omni_env, run_omni_cli

TEXT = "The quick brown fox jumps over the lazy dog near the river bank."  # 64 chars: 107 frames
UNKNOWN_VOICE = (
    "Unknown voice '{}'. Higgs-Audio V2 has no built-in speakers. Upload a voice first via "
    "POST /v1/audio/voices, or use ref_audio + ref_text."
)
REF_WITHOUT_TEXT = (
    "higgs_audio_v2 voice clone requires both 'ref_audio' and 'ref_text'; received ref_audio without ref_text"
)
TEXT_WITHOUT_REF = (
    "higgs_audio_v2 voice clone requires both 'ref_audio' and 'ref_text'; received ref_text without ref_audio"
)
EMPTY_INPUT = "higgs_audio_v2: input text cannot be empty"

Start = Callable[..., OmniSim]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("omni")


@pytest.fixture(scope="module")
def deploy(workdir: Path) -> Path:
    return write_deploy(workdir / "higgs_audio_v2.yaml")


@pytest.fixture(scope="module")
def model(workdir: Path) -> Path:
    return write_model(workdir)


@pytest.fixture(scope="module")
def start(workdir: Path, deploy: Path, model: Path) -> Iterator[Start]:
    """Start emulations with the example's flags (run_server.sh) plus ``extra``; stopped at the end."""
    fleet = Fleet()

    def run(
        *extra: str,
        model_arg: str | None = None,
        deploy_path: Path | None = None,
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> OmniSim:
        args = [
            "--deploy-config",
            str(deploy_path or deploy),
            "--gpu-memory-utilization",
            "0.4",
            "--trust-remote-code",
            "--omni",
            *extra,
        ]
        return fleet.add(launch_omni(model_arg or str(model), args, workdir, env), wait)

    yield run
    fleet.stop()


@pytest.fixture(scope="module")
def omni(start: Start) -> OmniSim:
    return start(*FAST)


# --- start-up: command line ---


@pytest.mark.contract("OS1", "OS2", "OS3", "OE4")
def test_the_example_command_line_serves(omni: OmniSim) -> None:
    resp = httpx.get(f"{omni.url}/health")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    assert resp.json() == {"status": "healthy"}
    assert "SIMULATOR" in omni.log()


@pytest.mark.contract("OS2")
def test_without_omni_the_command_is_not_vllm_omni(workdir: Path, deploy: Path, model: Path) -> None:
    done = run_omni_cli(["serve", str(model), "--deploy-config", str(deploy)], omni_env(workdir))
    assert done.returncode == 2
    assert "--omni is required" in done.stderr and "vllm serve" in done.stderr


@pytest.mark.parametrize(
    "flags",
    [
        ["--audio-tokenizer-type", "bosonai/higgs-audio-v2-tokenizer"],
        ["--voice-presets-dir", "/presets"],
        ["--limit-mm-per-prompt", "audio=50"],
        ["--deploy-conf", "x.yaml"],  # no abbreviations
        ["--port", "eighty"],
    ],
)
@pytest.mark.contract("OS3")
def test_boson_fork_flags_and_bad_values_exit_2(
    workdir: Path, deploy: Path, model: Path, flags: list[str]
) -> None:
    args = ["serve", str(model), "--omni", "--deploy-config", str(deploy), *flags]
    done = run_omni_cli(args, omni_env(workdir))
    assert done.returncode == 2, done.stderr
    assert "error:" in done.stderr


@pytest.mark.contract("OS3")
def test_parallel_flags_are_refused_under_omni(workdir: Path, deploy: Path, model: Path) -> None:
    args = ["serve", str(model), "--omni", "--deploy-config", str(deploy), "--data-parallel-size", "2"]
    done = run_omni_cli(args, omni_env(workdir))
    assert done.returncode == 1
    assert "not supported under --omni: --data-parallel-size" in done.stderr


# --- start-up: what it loads ---


@pytest.mark.contract("OS8", "OS10")
def test_boson_layout_has_no_pipeline(workdir: Path, deploy: Path) -> None:
    boson = write_model(workdir, "boson")
    done = run_omni_cli(["serve", str(boson), "--omni", "--deploy-config", str(deploy)], omni_env(workdir))
    assert done.returncode == 1
    assert "no vLLM-Omni pipeline matches" in done.stderr
    assert "transformers-native" in done.stderr


@pytest.mark.contract("OS8")
def test_the_architecture_alone_selects_the_pipeline(start: Start, workdir: Path) -> None:
    sim = start(*FAST, model_arg=str(write_model(workdir, "architecture")))
    assert sim.speech(input=TEXT).status_code == 200


@pytest.mark.contract("OS8", "OS11")
def test_a_hub_id_not_cached_starts_without_fetching(start: Start, workdir: Path) -> None:
    sim = start(*FAST, model_arg=HUB_MODEL)
    assert "nothing is fetched" in sim.log()
    assert "bosonai/higgs-audio-v2-tokenizer" in sim.log()  # the default codec (stage 1)
    done = run_omni_cli(["serve", HUB_MODEL, "--omni"], omni_env(workdir, HF_HUB_OFFLINE="1"))
    assert done.returncode == 1 and "HF_HUB_OFFLINE" in done.stderr


@pytest.mark.contract("OS11")
def test_a_codec_directory_without_weights_fails_at_start(workdir: Path, deploy: Path) -> None:
    broken = write_model(workdir / "no-weights", codec_weights=False)
    done = run_omni_cli(["serve", str(broken), "--omni", "--deploy-config", str(deploy)], omni_env(workdir))
    assert done.returncode == 1 and "model.pth" in done.stderr


@pytest.mark.contract("OS7")
def test_the_socket_is_bound_before_the_engine_is_ready(start: Start) -> None:
    sim = start(*FAST, "--sim-startup-seconds", "1.5", wait=False)
    deadline = time.monotonic() + 10
    while True:  # the port accepts connections early...
        try:
            with httpx.Client(timeout=httpx.Timeout(10.0, connect=0.2)) as client:
                t0 = time.monotonic()
                resp = client.get(f"{sim.url}/health")
                break
        except httpx.ConnectError:
            assert time.monotonic() < deadline, sim.log()
            time.sleep(0.02)
    waited = time.monotonic() - t0
    assert resp.status_code == 200 and resp.json() == {"status": "healthy"}
    assert waited > 0.5, waited  # ...and the request waited for the engine instead of failing


@pytest.mark.contract("OS6", "OE2", "OE3")
def test_uploaded_voices_persist_in_speaker_samples_dir(start: Start, workdir: Path) -> None:
    speakers = workdir / "persist"
    env = omni_env(workdir, SPEAKER_SAMPLES_DIR=str(speakers))
    first = start(*FAST, env=env)
    files = {"audio_sample": ("me.wav", make_wav(2.0), "audio/wav")}
    data = {"name": "Keeper", "consent": "c-1", "ref_text": "Hello there."}
    resp = httpx.post(f"{first.url}/v1/audio/voices", files=files, data=data)
    assert resp.status_code == 200, resp.text
    created = resp.json()["voice"]["created_at"]
    first.stop()
    assert [p.name for p in speakers.iterdir()] == [f"Keeper_c-1_{created}.safetensors"]
    second = start(*FAST, env=env)
    listing = httpx.get(f"{second.url}/v1/audio/voices").json()
    assert listing["voices"] == ["keeper"]
    assert listing["uploaded_voices"][0]["name"] == "Keeper"
    assert second.speech(input=TEXT, voice="keeper").status_code == 200


@pytest.mark.contract("OS6", "OE3", "OR1")
def test_upload_cap_and_local_reference_files(start: Start, workdir: Path) -> None:
    clips = workdir / "clips"
    clips.mkdir(exist_ok=True)
    (clips / "ref.wav").write_bytes(make_wav(2.0))
    env = omni_env(workdir, SPEAKER_SAMPLES_DIR=str(workdir / "capped"), SPEAKER_MAX_UPLOADED="1")
    sim = start(*FAST, "--allowed-local-media-path", str(clips), env=env)
    files = {"audio_sample": ("a.wav", make_wav(2.0), "audio/wav")}
    assert (
        httpx.post(f"{sim.url}/v1/audio/voices", files=files, data={"name": "a", "consent": "c"}).status_code
        == 200
    )
    resp = httpx.post(f"{sim.url}/v1/audio/voices", files=files, data={"name": "b", "consent": "c"})
    assert error_of(resp, 400)["message"].startswith("Uploaded voice limit reached (1).")
    local = sim.speech(input=TEXT, ref_audio=f"file://{clips / 'ref.wav'}", ref_text="Hi.")
    assert local.status_code == 200, local.text
    outside = error_of(sim.speech(input=TEXT, ref_audio=f"file://{workdir / 'x.wav'}", ref_text="Hi."), 400)
    assert "must be a subpath of `--allowed-local-media-path`" in outside["message"]


# --- the deploy YAML ---


@pytest.mark.contract("OS14", "OR2", "OS3", "XO2")
def test_stage0_max_tokens_caps_and_max_new_tokens_replaces_it(start: Start, workdir: Path) -> None:
    capped = start(*FAST, deploy_path=write_deploy(workdir / "cap60.yaml", max_tokens=60))
    long_text = TEXT * 3  # 320 frames wanted
    for body, cap in (({}, 60), ({"max_new_tokens": 30}, 30), ({"max_new_tokens": 400}, 400)):
        resp = capped.speech(input=long_text, response_format="pcm", **body)
        assert resp.status_code == 200, resp.text
        assert len(resp.content) == capped_frames(long_text, cap) * FRAME_BYTES, body
    overridden = start(*FAST, "--stage-overrides", '{"0": {"default_sampling_params": {"max_tokens": 40}}}')
    resp = overridden.speech(input=long_text, response_format="pcm")
    assert len(resp.content) == capped_frames(long_text, 40) * FRAME_BYTES


@pytest.mark.contract("OS4", "OS14")
def test_without_deploy_config_the_packaged_defaults_apply(workdir: Path, model: Path) -> None:
    sim = launch_omni(str(model), ["--omni", *FAST], workdir)
    try:
        sim.wait_healthy()
        very_long = "A sentence that goes on and on. " * 22  # 704 chars: 1174 frames wanted
        resp = sim.speech(input=very_long, response_format="pcm", timeout=60)
        assert resp.status_code == 200
        assert len(resp.content) == capped_frames(very_long, 1024) * FRAME_BYTES  # 1016 frames (~40 s)
    finally:
        sim.stop()


@pytest.mark.contract("OR2", "XO1")
def test_the_default_seed_makes_requests_repeatable(omni: OmniSim) -> None:
    first = omni.speech(input=TEXT, response_format="pcm").content
    assert omni.speech(input=TEXT, response_format="pcm").content == first  # seed 42 every time
    other = omni.speech(input=TEXT, response_format="pcm", seed=7).content
    assert len(other) == len(first) and other != first


# --- speech: request ---


@pytest.mark.contract("OE1", "OP1", "OR1", "OR5")
def test_the_default_is_one_wav_file_in_the_models_own_voice(omni: OmniSim) -> None:
    resp = omni.speech(input=TEXT)  # no model, no voice, no format
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "audio/wav"
    rate, pcm = wav_data(resp.content)  # one file, its sizes filled in
    assert rate == RATE
    assert len(pcm) == text_frames(TEXT) * FRAME_BYTES


@pytest.mark.parametrize(
    ("fmt", "content_type", "container"),
    [
        ("pcm", "audio/pcm", None),
        ("flac", "audio/flac", "FLAC"),
        ("mp3", "audio/mpeg", "MP3"),
        ("opus", "audio/ogg", "OGG"),
    ],
)
@pytest.mark.contract("OP1")
def test_each_format_is_one_file_with_its_content_type(
    omni: OmniSim, fmt: str, content_type: str, container: str | None
) -> None:
    resp = omni.speech(input=TEXT, response_format=fmt, model=omni.model)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == content_type
    samples = text_frames(TEXT) * 960
    if container is None:
        assert len(resp.content) == samples * 2  # raw int16 LE
        return
    with sf.SoundFile(io.BytesIO(resp.content)) as f:
        assert (f.format, f.channels) == (container, 1)
        assert f.samplerate in (RATE, 48000)  # Opus files report 48 kHz
        if fmt == "flac":
            assert f.frames == samples


@pytest.mark.contract("OR1")
def test_fields_aliases_and_model_check(omni: OmniSim) -> None:
    resp = omni.speech(input=TEXT, speaker="narrator")  # alias of voice
    assert error_of(resp, 400)["message"] == UNKNOWN_VOICE.format("narrator")
    missing = error_of(omni.speech(input=TEXT, model="tts-1"), 404)
    assert missing["type"] == "NotFoundError" and missing["message"] == "The model `tts-1` does not exist."
    assert (
        omni.speech(input=TEXT, temperature=0.2, top_k=5, stop=["x"], whatever=1).status_code == 200
    )  # dropped
    clone: dict[str, Any] = {
        "references": [
            {"audio_path": "data:audio/wav;base64," + base64.b64encode(make_wav(2)).decode(), "text": "Hi."}
        ]
    }
    assert omni.speech(input=TEXT, **clone).status_code == 200
    two: dict[str, Any] = {"references": [{"audio_path": "data:x"}, {"audio_path": "data:y"}]}
    assert "only supports a single reference" in error_of(omni.speech(input=TEXT, **two), 400)["message"]


REFUSALS: list[tuple[dict[str, Any], str]] = [
    ({"voice": "alloy"}, UNKNOWN_VOICE.format("alloy")),
    ({"input": "   "}, EMPTY_INPUT),
    ({"ref_audio": "data:audio/wav;base64,AAAA"}, REF_WITHOUT_TEXT),
    ({"ref_text": "transcript"}, TEXT_WITHOUT_REF),
    (
        {"x_vector_only_mode": True},
        "higgs_audio_v2 v1 does not support 'x_vector_only_mode' (voice-cloning helper field)",
    ),
    (
        {"speaker_embedding": [0.1, 0.2]},
        "higgs_audio_v2 v1 does not support 'speaker_embedding' (voice-cloning helper field)",
    ),
    ({"instructions": "whisper"}, "higgs_audio_v2 v1 does not support 'instructions'"),
    ({"task_type": "Base"}, "higgs_audio_v2 v1 does not support 'task_type'"),
    ({"language": "English"}, "higgs_audio_v2 v1 does not accept 'language' overrides"),
    ({"speed": 1.5}, "higgs_audio_v2 v1 does not support 'speed' adjustments"),
    (
        {"input": "[SPEAKER0] Hello."},
        "higgs_audio_v2 v1 does not support multi-speaker [SPEAKERn] tags; remove the tag from the input",
    ),
    ({"max_new_tokens": 0}, "max_new_tokens must be at least 1"),
]


@pytest.mark.parametrize(("fields", "message"), REFUSALS, ids=[next(iter(f)) for f, _ in REFUSALS])
@pytest.mark.contract("OR3", "OX1")
def test_higgs_refusals_verbatim(omni: OmniSim, fields: dict[str, Any], message: str) -> None:
    body = {"input": TEXT, **fields}
    error = error_of(omni.speech(**body), 400)
    assert error["type"] == "BadRequestError"
    assert error["message"].startswith(message), error["message"]


@pytest.mark.contract("OR3")
def test_refusals_come_in_the_adapters_order(omni: OmniSim) -> None:
    order: list[tuple[dict[str, Any], str]] = [
        ({"voice": "nobody", "input": " "}, UNKNOWN_VOICE.format("nobody")),
        ({"input": " ", "ref_text": "t", "instructions": "x"}, EMPTY_INPUT),
        ({"ref_text": "t", "x_vector_only_mode": False}, TEXT_WITHOUT_REF),
        (
            {"speaker_embedding": [1.0], "instructions": "x"},
            "higgs_audio_v2 v1 does not support 'speaker_embedding'",
        ),
        ({"instructions": "x", "task_type": "Base"}, "higgs_audio_v2 v1 does not support 'instructions'"),
        ({"task_type": "Base", "language": "en"}, "higgs_audio_v2 v1 does not support 'task_type'"),
        ({"language": "en", "speed": 2.0}, "higgs_audio_v2 v1 does not accept 'language'"),
        ({"speed": 2.0, "input": "[speaker1] hi"}, "higgs_audio_v2 v1 does not support 'speed'"),
        ({"input": "[speaker1] hi", "max_new_tokens": 0}, "higgs_audio_v2 v1 does not support multi-speaker"),
    ]
    for fields, message in order:
        error = error_of(omni.speech(**{"input": TEXT, **fields}), 400)
        assert error["message"].startswith(message), (fields, error["message"])


@pytest.mark.contract("OR4", "OX2")
def test_parse_time_refusals(omni: OmniSim) -> None:
    rich: dict[str, Any] = {"input": TEXT, "messages": [{"role": "user", "content": "hi"}], "speakers": ["a"]}
    error = error_of(omni.speech(model=omni.model, **rich), 400)
    assert error["type"] == "Bad Request"
    assert (
        "higgs_audio_v2 v1 does not support these rich-input fields: ['messages', 'speakers']. "
        "Supply plain text via the 'input' field instead."
    ) in error["message"]
    assert omni.speech(**rich).status_code == 200  # without a Higgs model id the fields are dropped
    streaming = error_of(omni.speech(input=TEXT, stream=True, response_format="mp3"), 400)
    assert "requires response_format='pcm' or 'wav'. Got response_format='mp3'." in streaming["message"]
    speed = error_of(omni.speech(input=TEXT, stream_format="audio", speed=2.0), 400)
    assert "Speed adjustment is not supported when streaming" in speed["message"]


@pytest.mark.contract("OX2", "OE1", "XO5")
def test_schema_errors_are_400_in_the_openai_wrapper(omni: OmniSim) -> None:
    assert "Field required" in error_of(omni.speech(voice="x"), 400)["message"]  # no input
    bad = error_of(omni.speech(input=TEXT, response_format="aac"), 400)
    assert "Input should be 'wav', 'pcm', 'flac', 'mp3' or 'opus'" in bad["message"]
    assert "greater than or equal to 0.25" in error_of(omni.speech(input=TEXT, speed=0.1), 400)["message"]
    form = httpx.post(f"{omni.url}/v1/audio/speech", data={"input": TEXT})
    assert "Unsupported Media Type: Only 'application/json' is allowed" in error_of(form, 400)["message"]
    raw = httpx.post(
        f"{omni.url}/v1/audio/speech", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert "JSON decode error" in error_of(raw, 400)["message"]


# --- speech: responses ---


@pytest.mark.contract("OP2", "OP4")
def test_sse_wav_header_delta_then_all_audio_then_done(omni: OmniSim) -> None:
    resp = omni.speech(input=TEXT, stream=True)  # default format: wav
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert '"type":"speech.audio.delta"' in resp.text and "[DONE]" not in resp.text  # compact JSON
    events = sse(resp.text)
    names = [name for name, _ in events]
    assert names == ["speech.audio.delta", "speech.audio.delta", "speech.audio.done"]  # one audio chunk
    header = base64.b64decode(events[0][1]["audio"])
    assert len(header) == 44 and header[:4] == b"RIFF" and header[36:40] == b"data"
    assert struct.unpack("<I", header[4:8])[0] == 0xFFFFFFFF == struct.unpack("<I", header[40:44])[0]
    assert struct.unpack("<HHI", header[20:28]) == (1, 1, RATE)
    delta = events[1][1]
    assert set(delta) == {"type", "audio", "response_format"} and delta["response_format"] == "wav"
    assert len(base64.b64decode(delta["audio"])) == text_frames(TEXT) * FRAME_BYTES
    done = events[2][1]
    usage = done["usage"]
    assert done["type"] == "speech.audio.done"
    assert set(usage) == {"input_tokens", "output_tokens", "total_tokens", "input_token_details"}
    assert usage["output_tokens"] == text_frames(TEXT) + 10
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["input_token_details"] == {"text_tokens": usage["input_tokens"], "audio_tokens": 0}


@pytest.mark.contract("OP2")
def test_sse_pcm_deltas_are_base64_pcm(omni: OmniSim) -> None:
    resp = omni.speech(input=TEXT, stream_format="sse", response_format="pcm")
    events = sse(resp.text)
    deltas = [data for name, data in events if name == "speech.audio.delta"]
    assert all(d["response_format"] == "pcm" for d in deltas)
    pcm = b"".join(base64.b64decode(d["audio"]) for d in deltas)
    assert pcm == omni.speech(input=TEXT, response_format="pcm").content  # the same audio, not streamed


@pytest.mark.parametrize(("fmt", "content_type"), [("pcm", "audio/pcm"), ("wav", "audio/wav")])
@pytest.mark.contract("OP3")
def test_raw_audio_stream(omni: OmniSim, fmt: str, content_type: str) -> None:
    resp = omni.speech(input=TEXT, stream=True, stream_format="audio", response_format=fmt)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == content_type
    body = resp.content
    if fmt == "wav":
        assert body[:4] == b"RIFF" and struct.unpack("<I", body[40:44])[0] == 0xFFFFFFFF
        body = body[44:]
    assert len(body) == text_frames(TEXT) * FRAME_BYTES


@pytest.mark.contract("OP4", "OS14")
def test_all_audio_arrives_at_the_end_of_generation(start: Start, workdir: Path) -> None:
    slow = start("--sim-profile", "raw", "--sim-slowdown", "2")  # ~6.5 ms per talker step
    text = TEXT * 2  # 214 frames: 224 steps, ~1.5 s
    with httpx.stream(
        "POST",
        f"{slow.url}/v1/audio/speech",
        json={"input": text, "stream": True, "stream_format": "audio", "response_format": "pcm"},
        timeout=30,
    ) as resp:
        t0 = time.monotonic()  # the headers are here
        arrivals = [(time.monotonic() - t0, len(chunk)) for chunk in resp.iter_raw() if chunk]
    total = arrivals[-1][0]
    assert total > 1.0, arrivals  # the whole generation happened after the headers
    assert arrivals[0][0] > 0.9 * total, arrivals  # first audio only at the end
    assert sum(n for _, n in arrivals) == text_frames(text) * FRAME_BYTES
    events = sse(slow.speech(input=text, stream=True, response_format="pcm").text)
    assert [name for name, _ in events] == ["speech.audio.delta", "speech.audio.done"]


@pytest.mark.contract("OS3", "OP4", "XO4")
def test_no_async_chunk_overrides_the_yaml(start: Start, workdir: Path) -> None:
    chunked = write_deploy(workdir / "async.yaml", async_chunk=True)
    sim = start(*FAST, "--no-async-chunk", deploy_path=chunked)
    events = sse(sim.speech(input=TEXT * 2, stream=True, response_format="pcm").text)
    assert [name for name, _ in events] == ["speech.audio.delta", "speech.audio.done"]


# --- voices ---


def upload(sim: OmniSim, name: str, seconds: float = 2.0, **fields: Any) -> httpx.Response:
    files = {"audio_sample": ("clip.wav", make_wav(seconds), "audio/wav")}
    return httpx.post(
        f"{sim.url}/v1/audio/voices", files=files, data={"name": name, "consent": "ok-1", **fields}
    )


@pytest.mark.contract("OE2", "OE3", "OR3", "OR5")
def test_voices_upload_list_use_replace_delete(omni: OmniSim) -> None:
    resp = upload(omni, "Anna", ref_text="  Hello from Anna.  ", speaker_description="warm")
    assert resp.status_code == 200, resp.text
    voice = resp.json()["voice"]
    assert resp.json()["success"] is True
    assert voice == {
        "name": "Anna",
        "consent": "ok-1",
        "created_at": voice["created_at"],
        "mime_type": "audio/wav",
        "file_size": len(make_wav(2.0)),
        "ref_text": "Hello from Anna.",
        "speaker_description": "warm",
    }
    listing = httpx.get(f"{omni.url}/v1/audio/voices").json()
    assert listing["voices"] == ["anna"]
    assert listing["uploaded_voices"] == [
        {
            "name": "Anna",
            "consent": "ok-1",
            "created_at": voice["created_at"],
            "file_size": len(make_wav(2.0)),
            "mime_type": "audio/wav",
            "embedding_source": "audio",
            "embedding_dim": None,
            "ref_text": "Hello from Anna.",
            "speaker_description": "warm",
        }
    ]
    cloned = omni.speech(input=TEXT, voice="ANNA", response_format="pcm")
    assert cloned.status_code == 200
    assert cloned.content != omni.speech(input=TEXT, response_format="pcm").content  # another timbre
    again = upload(omni, "anna")  # the same name replaces it, now without ref_text
    assert again.status_code == 200 and again.json()["voice"]["created_at"] > voice["created_at"]
    assert len(httpx.get(f"{omni.url}/v1/audio/voices").json()["uploaded_voices"]) == 1
    assert error_of(omni.speech(input=TEXT, voice="anna"), 400)["message"] == REF_WITHOUT_TEXT
    assert omni.speech(input=TEXT, voice="anna", ref_text="Hello.").status_code == 200
    deleted = httpx.delete(f"{omni.url}/v1/audio/voices/anna")
    assert deleted.json() == {"success": True, "message": "Voice 'anna' deleted successfully"}
    gone = error_of(httpx.delete(f"{omni.url}/v1/audio/voices/anna"), 404)
    assert gone == {"message": "Voice 'anna' not found", "type": "NotFoundError", "param": None, "code": 404}
    assert httpx.get(f"{omni.url}/v1/audio/voices").json() == {"voices": [], "uploaded_voices": []}


@pytest.mark.contract("OE3", "OX1")
def test_voice_upload_refusals(omni: OmniSim) -> None:
    short = error_of(upload(omni, "s", seconds=0.5), 400)
    assert short["message"] == "Reference audio too short (0.5s). At least 1s of clear speech is required."
    long = error_of(upload(omni, "l", seconds=31), 400)
    assert long["message"] == "Reference audio too long (31.0s). Maximum 30s supported — use a shorter clip."
    big = {"audio_sample": ("big.wav", b"\0" * (10 * 1024 * 1024 + 1), "audio/wav")}
    resp = httpx.post(f"{omni.url}/v1/audio/voices", files=big, data={"name": "b", "consent": "c"})
    assert (
        error_of(resp, 400)["message"]
        == f"File size exceeds maximum limit of 10MB. Got {10 * 1024 * 1024 + 1} bytes."
    )
    text = {"audio_sample": ("a.txt", b"hello", "text/plain")}
    resp = httpx.post(f"{omni.url}/v1/audio/voices", files=text, data={"name": "t", "consent": "c"})
    assert error_of(resp, 400)["message"].startswith("Unsupported MIME type: text/plain. Allowed: ")
    junk = {"audio_sample": ("a.wav", b"not audio at all", "audio/wav")}
    resp = httpx.post(f"{omni.url}/v1/audio/voices", files=junk, data={"name": "j", "consent": "c"})
    assert error_of(resp, 400)["message"].startswith("Could not decode audio file: ")
    bad_name = error_of(upload(omni, "../etc"), 400)
    assert bad_name["message"] == "Invalid voice name '../etc': must be non-empty, no path separators or NUL"
    no_consent = {"audio_sample": ("a.wav", make_wav(2.0), "audio/wav")}
    resp = httpx.post(f"{omni.url}/v1/audio/voices", files=no_consent, data={"name": "n"})
    assert "Field required" in error_of(resp, 400)["message"]
    resp = httpx.post(f"{omni.url}/v1/audio/voices", data={"name": "n", "consent": "c"})
    assert error_of(resp, 400)["message"] == "Either 'audio_sample' or 'speaker_embedding' must be provided"
    assert httpx.get(f"{omni.url}/v1/audio/voices").json()["voices"] == []


@pytest.mark.contract("OR5", "OR3")
def test_inline_voice_clone(omni: OmniSim) -> None:
    def ref(seconds: float) -> str:
        return "data:audio/wav;base64," + base64.b64encode(make_wav(seconds)).decode()

    resp = omni.speech(input=TEXT, ref_audio=ref(3.0), ref_text="A reference.", response_format="pcm")
    assert resp.status_code == 200 and len(resp.content) == text_frames(TEXT) * FRAME_BYTES
    assert resp.content != omni.speech(input=TEXT, response_format="pcm").content
    short = error_of(omni.speech(input=TEXT, ref_audio=ref(0.4), ref_text="Hi."), 400)
    assert short["message"] == "Reference audio too short (0.4s). At least 1s of clear speech is required."


# --- errors, endpoints, metrics ---


@pytest.mark.contract("OX3", "OX4", "OX2", "XO9")
def test_generation_failures(start: Start) -> None:
    failing = start(*FAST, "--sim-error-rate", "1", "--sim-schema-error-status", "422")
    error = error_of(failing.speech(input=TEXT), 400)
    assert error["message"].startswith("Speech generation failed: ")
    resp = failing.speech(input=TEXT, stream=True, response_format="pcm")
    assert resp.status_code == 200
    name, data = sse(resp.text)[-1]
    assert name == "speech.audio.error" and data["type"] == "speech.audio.error"
    assert set(data["error"]) == {"message", "type", "param", "code"}
    assert data["error"]["type"] == "server_error" and data["error"]["code"] == 500
    with pytest.raises(httpx.RemoteProtocolError):  # the raw stream ends early
        failing.speech(input=TEXT, stream=True, stream_format="audio", response_format="pcm")
    schema = failing.speech(voice="x")  # FastAPI's own default, if vLLM's handler were absent
    assert schema.status_code == 422 and schema.json()["detail"][0]["type"] == "missing"


@pytest.mark.contract("OE5", "OE6", "XO6")
def test_models_version_and_api_key(start: Start) -> None:
    keyed = start(*FAST, "--api-key", "sekret", "--served-model-name", "higgs-v2", "tts")
    assert httpx.get(f"{keyed.url}/v1/models").status_code == 401
    assert httpx.get(f"{keyed.url}/v1/models").json() == {"error": "Unauthorized"}
    auth = {"Authorization": "Bearer sekret"}
    models = httpx.get(f"{keyed.url}/v1/models", headers=auth).json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["higgs-v2", "tts"]
    assert models["data"][0]["root"] == keyed.model
    for path in ("/health", "/metrics", "/version"):
        assert httpx.get(f"{keyed.url}{path}").status_code == 200, path
    assert httpx.get(f"{keyed.url}/version").json()["simulator"] is True
    resp = httpx.post(
        f"{keyed.url}/v1/audio/speech", json={"input": TEXT, "model": "tts"}, headers=auth, timeout=30
    )
    assert resp.status_code == 200


def metric_samples(sim: OmniSim) -> list[tuple[str, dict[str, str], float]]:
    text = httpx.get(f"{sim.url}/metrics").text
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]


@pytest.mark.contract("OM1", "OM2")
def test_metrics_families_and_stage_labels(omni: OmniSim) -> None:
    assert omni.speech(input=TEXT).status_code == 200
    samples = metric_samples(omni)
    names = {name for name, _, _ in samples}
    for family in (
        "vllm_omni:num_requests_running",
        "vllm_omni:num_requests_waiting",
        "vllm_omni:requests_success_total",
        "vllm_omni:e2e_request_latency_s_count",
        "vllm_omni:prompt_tokens_total",
        "vllm_omni:generation_tokens_total",
        "vllm_omni:audio_duration_s_count",
        "vllm_omni:audio_frames_total",
    ):
        assert family in names, family
    success = [
        v
        for n, lab, v in samples
        if n == "vllm_omni:requests_success_total" and lab["finished_reason"] == "stop"
    ]
    assert success and success[0] >= 1
    audio = [lab for n, lab, _ in samples if n == "vllm_omni:audio_frames_total"]
    assert audio and audio[0]["stage"] == "1" and audio[0]["replica"] == "0"
    for family in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"):
        series = [lab for n, lab, _ in samples if n == family]
        assert sorted(lab["stage"] for lab in series) == ["0", "1"], family
        assert all(lab["replica"] == "0" and "engine" not in lab for lab in series)
    generated = {lab["stage"]: v for n, lab, v in samples if n == "vllm:generation_tokens_total"}
    assert generated["0"] >= text_frames(TEXT) + 10 and generated["1"] >= 1


@pytest.mark.contract("OM3", "OS2")
def test_disable_log_stats_leaves_the_families_empty(workdir: Path, deploy: Path, model: Path) -> None:
    args = ["--model", str(model), "--omni", "--deploy-config", str(deploy), "--disable-log-stats", *FAST]
    sim = launch_omni(None, args, workdir)  # `serve --model DIR --omni ...`: the model as a flag
    try:
        sim.wait_healthy()
        assert sim.speech(input=TEXT).status_code == 200
        names = {name for name, _, _ in metric_samples(sim)}
        assert not any(n.startswith("vllm:") for n in names)
        assert not any(n.startswith("vllm_omni:") for n in names)
    finally:
        sim.stop()


@pytest.mark.contract("XO7")
def test_a_remote_reference_is_refused_for_want_of_network(omni: OmniSim) -> None:
    r = omni.speech(input=TEXT, ref_audio="https://example.com/voice.wav", ref_text="A reference.")
    assert r.status_code == 400
    assert "no network" in r.json()["error"]["message"]


@pytest.mark.contract("XO8")
def test_routes_outside_the_emulation_are_404(omni: OmniSim) -> None:
    for path in ("/v1/audio/speech/batch", "/v1/chat/completions"):
        assert httpx.post(omni.url + path, json={}, timeout=10).status_code == 404


@pytest.mark.contract("XO12")
def test_without_a_model_it_exits_1(workdir: Path, deploy: Path) -> None:
    done = run_omni_cli(["serve", "--omni", "--deploy-config", str(deploy)], omni_env(workdir))
    assert done.returncode == 1 and done.stderr.strip()
