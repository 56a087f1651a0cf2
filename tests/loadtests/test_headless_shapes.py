"""Headless Locust runs of the load shapes and the request mix, and the web UI: every kind of request
yields validated audio; a sweep finds its capacity and stops; Poisson arrivals keep their rate."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support.locust import BIN, LOCUSTFILE, locust_cmd, run_bounded
from tests.support.ports import free_port
from tests.support.simulator import kill_group, start_sim

pytestmark = pytest.mark.timeout(120)
RUN_TIMEOUT_S = 60
KINDS = ("stream", "chat", "speech_pcm", "speech_wav", "speech_mp3", "clone")


def _raw(report_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (report_dir / "raw.jsonl").read_text().splitlines() if x.strip()]


def _summary(report_dir: Path) -> dict:
    return json.loads((report_dir / "summary.json").read_text())


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    s = start_sim(tmp_path_factory.mktemp("sim"))
    yield s
    s.stop()


def test_every_request_kind_returns_valid_audio(sim, tmp_path):
    mix = ",".join(f"{k}=1" for k in KINDS)
    cmd = locust_cmd(sim.url, tmp_path, "--headless", "-u", "5", "-r", "5", "-t", "8s", "--mix", mix)
    cmd += ["--prompt-lengths", "short", "--no-plots", "--max-tokens", "200", "--seed", "7"]
    assert run_bounded(cmd, RUN_TIMEOUT_S, tmp_path / "locust.log") == 0, (
        tmp_path / "locust.log"
    ).read_text()[-3000:]
    raw = _raw(tmp_path)
    assert {r["kind"] for r in raw} == set(KINDS)
    bad = [r for r in raw if not r["ok"] or r["audio_s"] <= 0]
    assert not bad, bad[:3]
    streamed = {r["kind"] for r in raw if r["streamed"]}
    assert {"stream", "speech_pcm"} <= streamed and "chat" not in streamed  # chat returns one WAV
    # Speech named a voice the server lists (GET /v1/audio/voices); chat named none.
    voices = httpx.get(sim.url + "/v1/audio/voices", timeout=5).json()
    assert {r["voice"] for r in raw if r["kind"].startswith("speech")} <= set(voices)
    assert all(r["voice"] is None for r in raw if not r["kind"].startswith("speech"))
    # A wav body is several files joined: every request got its whole text, not the first chunk only.
    wav = [r for r in raw if r["kind"] == "speech_wav"]
    assert wav and all(r["audio_s"] > 2.0 for r in wav), wav[:2]  # short texts: 34+ characters, 2.2+ s


def test_a_voice_the_server_does_not_list_stops_the_run_naming_the_list(sim, tmp_path):
    voices = httpx.get(sim.url + "/v1/audio/voices", timeout=5).json()
    cmd = locust_cmd(sim.url, tmp_path, "--headless", "-u", "1", "-t", "5s", "--mix", "speech_pcm=1")
    cmd += ["--voice", "alloy", "--no-plots"]
    assert run_bounded(cmd, RUN_TIMEOUT_S, tmp_path / "locust.log") == 2
    log = (tmp_path / "locust.log").read_text()
    assert f"--voice 'alloy' is not one of the server's voices: {', '.join(voices)}" in log, log[-2000:]
    assert "Traceback" not in log and not (tmp_path / "raw.jsonl").exists()


def test_a_server_without_voices_stops_a_speech_run_but_not_a_chat_run(tmp_path):
    empty = tmp_path / "presets"
    empty.mkdir()  # no config.json: the server starts and lists no voices (S8)
    s = start_sim(tmp_path, "--voice-presets-dir", str(empty))
    try:
        cmd = locust_cmd(s.url, tmp_path, "--headless", "-u", "1", "-t", "2s", "--no-plots")
        assert run_bounded([*cmd, "--mix", "speech_wav=1"], RUN_TIMEOUT_S, tmp_path / "speech.log") == 2
        assert "the server lists no voices" in (tmp_path / "speech.log").read_text()
        cmd += ["--mix", "stream=1,speech_pcm=1", "--tags", "stream", "--prompt-lengths", "short"]
        assert run_bounded(cmd, RUN_TIMEOUT_S, tmp_path / "chat.log") == 0, (
            tmp_path / "chat.log"
        ).read_text()
    finally:
        s.stop()


def test_sweep_reports_capacity_and_stops_after_the_first_missed_level(tmp_path):
    # One sequence at a time: at 1 user TTFA is one prefill; at 4 users requests queue behind whole
    # streams, so TTFA p50 is seconds and the level misses a 1 s SLO.
    s = start_sim(tmp_path, "--max-num-seqs", "1")
    try:
        cmd = locust_cmd(s.url, tmp_path, "--headless", "--shape", "sweep", "--levels", "1,4,8")
        cmd += ["--step-hold", "5", "--mix", "stream=1", "--prompt-lengths", "short", "--slo-ttfa-ms", "1000"]
        cmd += ["--max-tokens", "40"]  # 1.6 s of audio at most: a 5 s hold describes a level
        t0 = time.monotonic()
        rc = run_bounded(cmd, RUN_TIMEOUT_S, tmp_path / "locust.log")
        elapsed = time.monotonic() - t0
    finally:
        s.stop()
    assert rc == 0, (tmp_path / "locust.log").read_text()[-3000:]
    summary = _summary(tmp_path)
    levels = [row["users"] for row in summary["steps"]]
    assert levels == [1, 4], levels  # the 8-user level never ran
    # two levels, then the requests in flight (queued behind one sequence) are awaited: not a third level
    assert elapsed < 5 * 3 + 5, f"the sweep ran {elapsed:.0f} s: it did not stop after the missed level"
    assert summary["capacity_users"] == 1
    assert "1 concurrent streams" in summary["capacity"]["sentence"]
    assert summary["steps"][1]["goodput_share"] < 0.95 <= summary["steps"][0]["goodput_share"]
    assert "Capacity" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "throughput_vs_concurrency.png").stat().st_size > 1000


def test_poisson_arrivals_keep_their_rate_regardless_of_latency(tmp_path):
    # A pool of 40 users on short prompts (well under a second each) would send hundreds of requests
    # in 8 s as a closed loop; open-loop arrivals at 3/s send ~24 whatever the response times.
    s = start_sim(tmp_path)
    try:
        cmd = locust_cmd(s.url, tmp_path, "--headless", "--shape", "poisson", "--arrival-rate", "3")
        cmd += ["-u", "40", "-r", "40", "-t", "8s", "--mix", "stream=1", "--prompt-lengths", "short"]
        cmd += ["--no-plots"]
        assert run_bounded(cmd, RUN_TIMEOUT_S, tmp_path / "locust.log") in (0, 1)
    finally:
        s.stop()
    summary = _summary(tmp_path)
    sent = summary["requests"] + summary.get("arrivals_dropped", 0)
    # Poisson(24): 99.9% of draws fall in [10, 41].
    assert 10 <= sent <= 41, summary
    starts = sorted(r["t_start"] for r in _raw(tmp_path))
    assert starts[-1] - starts[0] > 4  # spread over the run, not a burst


def _wait_for_summary(report_dir: Path, proc: subprocess.Popen) -> dict:
    deadline = time.monotonic() + 30
    while not (report_dir / "summary.json").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "no report after the run stopped"
        time.sleep(0.5)
    time.sleep(0.5)  # written in one go, but give the writer a moment to close it
    return _summary(report_dir)


def test_web_ui_serves_the_custom_options_and_runs_a_swarm(sim, tmp_path):
    port = free_port()
    cmd = [str(BIN / "locust"), "-f", str(LOCUSTFILE), "--host", sim.url, "--web-host", "127.0.0.1"]
    cmd += ["--web-port", str(port), "--report-dir", str(tmp_path), "--loglevel", "WARNING"]
    log = (tmp_path / "locust.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    ui = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                page = httpx.get(ui + "/", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, (
                    tmp_path / "locust.log"
                ).read_text()
                time.sleep(0.2)
        assert page.status_code == 200
        template = json.loads(page.text.split("window.templateArgs = ", 1)[1].split("</script>", 1)[0])
        options = template["extra_options"]  # our options, in the swarm form
        assert {"mix", "slo_ttfa_ms", "shape", "fail_on", "report_dir"} <= options.keys(), options.keys()
        assert options["api_key"]["is_secret"] and not options["mix"]["is_secret"]
        # A value typed in the form reaches the run (it arrives as a string: coerced and checked).
        form = {"user_count": 2, "spawn_rate": 2, "host": sim.url, "mix": "stream=1"}
        form |= {"prompt_lengths": "short", "slo_ttfa_ms": "750", "no_plots": "true"}
        assert httpx.post(ui + "/swarm", data=form, timeout=10).json()["success"]
        deadline = time.monotonic() + 30
        names: set[str] = set()
        while time.monotonic() < deadline and not {"TTFA", "AUDIO"} <= names:
            time.sleep(1)
            stats = httpx.get(ui + "/stats/requests", timeout=5).json()["stats"]
            names = {row["method"] for row in stats if row["num_requests"]}
        assert {"POST", "TTFA", "AUDIO"} <= names, names
        assert httpx.post(ui + "/stop", timeout=30).status_code == 200
        summary = _wait_for_summary(tmp_path, proc)
        assert summary["slo"]["ttfa_ms"] == 750.0 and summary["requests"] > 0
        # A bad value typed in the form stops that run with a message naming the option.
        (tmp_path / "summary.json").unlink()
        form["slo_ttfa_ms"] = "fast"
        httpx.post(ui + "/swarm", data=form, timeout=10)
        deadline = time.monotonic() + 20
        while "--slo-ttfa-ms must be a number" not in (tmp_path / "locust.log").read_text():
            assert time.monotonic() < deadline, (tmp_path / "locust.log").read_text()[-2000:]
            time.sleep(0.5)
        assert "Traceback" not in (tmp_path / "locust.log").read_text()
    finally:
        kill_group(proc)
        log.close()
