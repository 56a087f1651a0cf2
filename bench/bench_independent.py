"""An independent check of the load test: NVIDIA AIPerf against Locust, same simulator, same load.

For each (kind, concurrency) level a fresh simulator (same flags) is loaded first by our Locust load
test, then another fresh one by AIPerf 0.13.0 (its own virtualenv, with the plugin in
bench/aiperf_adapter/), both closed loops of N users for the same duration over the same prompt,
request bodies byte-for-byte the ones our load test sends. Printed per level: the ratios
ours/AIPerf of request throughput, request latency p50/p95 and, for the streamed chat kind,
time to first audio p50/p95 (AIPerf's TTFT once the adapter counts audio events as content).
Each tool computes its own figures: AIPerf its JSON export, ours from Locust's raw records with
AIPerf's definitions (throughput = successful requests / (last response - first request)).

AIPerf is installed on first use into ~/.cache/higgs-k8s/aiperf-venv (never the project's .venv):
`pip install aiperf==0.13.0` from PyPI, then the adapter (reinstalled each run, so it matches the repo).
AIPerf's chat endpoint needs a Hugging Face tokenizer; a local directory is refused (bench/README.md),
so a character-level one is written into a temporary Hub cache as `local/tok` with HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import venv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.support.locust import MODEL, locust_cmd, run_bounded
from tests.support.simulator import start_sim

REPO = Path(__file__).resolve().parents[1]
ADAPTER = REPO / "bench" / "aiperf_adapter"
AIPERF_VERSION = "0.13.0"
AIPERF_VENV = Path.home() / ".cache" / "higgs-k8s" / "aiperf-venv"

LEVELS: tuple[tuple[str, int], ...] = (("stream", 1), ("stream", 4), ("stream", 8), ("speech_pcm", 4))
DURATION_S = 20
SIM_FLAGS = ("--max-num-seqs", "64", "--sim-startup-seconds", "0")
# One prompt for both clients: with the 8 short prompts drawn at random, 20-40 requests per level made
# latency p50 depend on which prompts each client happened to draw (bench/README.md).
PROMPT = {"text": "The train to Berlin leaves from platform nine.", "length": "short"}
VOICE = "belinda"
AGREEMENT = 0.10  # |ours/AIPerf - 1| allowed for every ratio
ENDPOINT_TYPES = {"stream": "higgs_chat_audio", "speech_pcm": "higgs_speech"}
FIGURES = ("throughput", "latency_p50", "latency_p95", "ttfa_p50", "ttfa_p95")


@dataclass
class Figures:
    requests: int
    errors: int
    throughput: float  # successful requests/s
    latency_p50: float  # ms
    latency_p95: float
    ttfa_p50: float | None = None
    ttfa_p95: float | None = None


# --- AIPerf: install, tokenizer, run -------------------------------------------------------------


def aiperf_bin() -> Path:
    return AIPERF_VENV / "bin" / "aiperf"


def _installed_version() -> str | None:
    py = AIPERF_VENV / "bin" / "python"
    if not py.exists():
        return None
    out = subprocess.run(
        [str(py), "-c", "import importlib.metadata as m; print(m.version('aiperf'))"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() if out.returncode == 0 else None


def ensure_aiperf(tmp: Path) -> None:
    """AIPerf pinned in its own venv (created when missing), plus this repo's adapter."""
    pip = [str(AIPERF_VENV / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if _installed_version() != AIPERF_VERSION:
        print(f"    installing aiperf=={AIPERF_VERSION} into {AIPERF_VENV} (a few minutes) ...", flush=True)
        if not (AIPERF_VENV / "bin" / "python").exists():
            venv.create(AIPERF_VENV, with_pip=True)
        subprocess.run([*pip, f"aiperf=={AIPERF_VERSION}"], check=True)
    # Built from a copy so no build/ or egg-info lands in the repo.
    src = tmp / "aiperf_adapter"
    shutil.copytree(ADAPTER, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([*pip, "--no-deps", "--force-reinstall", str(src)], check=True)


def char_tokenizer(hf_home: Path) -> str:
    """A character-level tokenizer in the Hub cache layout under `hf_home`; returns its repo id.
    Token counts do not enter the comparison; AIPerf only needs some tokenizer to start."""
    repo = hf_home / "hub" / "models--local--tok"
    rev = "0" * 40
    snap = repo / "snapshots" / rev
    snap.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(rev)
    vocab = {"[UNK]": 0, **{chr(c): c - 31 for c in range(32, 127)}}
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": 0,
                "content": "[UNK]",
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
        ],
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Split",
            "pattern": {"String": ""},
            "behavior": "Isolated",
            "invert": False,
        },
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"},
    }
    (snap / "tokenizer.json").write_text(json.dumps(tok))
    (snap / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]"})
    )
    return "local/tok"


def prompt_files(tmp: Path) -> tuple[Path, Path]:
    """The prompt as our load test's --prompts file and as an AIPerf single_turn file."""
    ours, theirs = tmp / "prompts-locust.jsonl", tmp / "prompts-aiperf.jsonl"
    ours.write_text(json.dumps(PROMPT) + "\n")
    theirs.write_text(json.dumps({"text": PROMPT["text"]}) + "\n")
    return ours, theirs


def aiperf_figures(export: dict, streamed: bool) -> Figures:
    lat = export["request_latency"]
    ttft = export.get("time_to_first_token") or {}
    errors = int((export.get("error_request_count") or {}).get("avg") or 0)
    return Figures(
        requests=int(export["request_count"]["avg"]),
        errors=errors,
        throughput=float(export["request_throughput"]["avg"]),
        latency_p50=float(lat["p50"]),
        latency_p95=float(lat["p95"]),
        ttfa_p50=float(ttft["p50"]) if streamed and "p50" in ttft else None,
        ttfa_p95=float(ttft["p95"]) if streamed and "p95" in ttft else None,
    )


def run_aiperf(tmp: Path, kind: str, users: int, prompts: Path, hf_home: Path, tokenizer: str) -> Figures:
    sim = start_sim(tmp, *SIM_FLAGS)
    out = tmp / f"aiperf-{kind}-{users}"
    cmd = [
        str(aiperf_bin()),
        "profile",
        "--model",
        MODEL,
        "--url",
        sim.url,
        "--endpoint-type",
        ENDPOINT_TYPES[kind],
        "--custom-dataset-type",
        "single_turn",
        "--input-file",
        str(prompts),
        "--dataset-sampling-strategy",
        "sequential",
        "--concurrency",
        str(users),
        "--benchmark-duration",
        str(DURATION_S),
        "--artifact-dir",
        str(out),
        "--ui-type",
        "none",
        "--no-server-metrics",
        "--no-gpu-telemetry",
        "--max-workers",
        "1",
    ]
    if kind == "stream":
        cmd += ["--streaming", "--tokenizer", tokenizer]
    else:
        # higgs_http: stock AIPerf 0.13.0 cannot pass a binary body between its processes (README).
        cmd += ["--extra-inputs", f"voice:{VOICE}", "--transport-type", "higgs_http"]
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    log = tmp / f"aiperf-{kind}-{users}.log"
    try:
        with log.open("w") as fh:
            rc = subprocess.run(
                cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=DURATION_S + 180
            ).returncode
    finally:
        sim.stop()
    export = out / "profile_export_aiperf.json"
    if rc != 0 or not export.exists():
        raise RuntimeError(f"aiperf exited {rc}:\n{log.read_text()[-3000:]}")
    return aiperf_figures(json.loads(export.read_text()), kind == "stream")


# --- ours: Locust ---------------------------------------------------------------------------------


def _pct(values: list[float], p: float) -> float:
    return float(np.percentile(values, p)) if values else float("nan")


def locust_figures(raw: list[dict], streamed: bool) -> Figures:
    """AIPerf's definitions applied to Locust's raw records."""
    ok = [r for r in raw if r["ok"] and r.get("duration_s") is not None]
    span = max(r["t_start"] + r["duration_s"] for r in ok) - min(r["t_start"] for r in ok) if ok else 0.0
    ttfa = [1000 * r["ttfa_s"] for r in ok if r.get("ttfa_s") is not None]
    lat = [1000 * r["duration_s"] for r in ok]
    return Figures(
        requests=len(raw),
        errors=len(raw) - len(ok),
        throughput=len(ok) / span if span > 0 else float("nan"),
        latency_p50=_pct(lat, 50),
        latency_p95=_pct(lat, 95),
        ttfa_p50=_pct(ttfa, 50) if streamed else None,
        ttfa_p95=_pct(ttfa, 95) if streamed else None,
    )


def run_locust(tmp: Path, kind: str, users: int, prompts: Path) -> Figures:
    sim = start_sim(tmp, *SIM_FLAGS)
    out = tmp / f"locust-{kind}-{users}"
    try:
        cmd = locust_cmd(
            sim.url, out, "--headless", "-u", str(users), "-r", str(users), "-t", f"{DURATION_S}s"
        )
        # --stop-timeout: requests in flight at the end complete, as AIPerf's grace period lets them.
        cmd += ["--mix", f"{kind}=1", "--prompts", str(prompts), "--voice", VOICE]
        cmd += ["--no-plots", "--stop-timeout", "30"]
        rc = run_bounded(cmd, DURATION_S + 90, tmp / f"locust-{kind}-{users}.log")
    finally:
        sim.stop()
    if rc not in (0, 1):
        raise RuntimeError(f"locust exited {rc}:\n{(tmp / f'locust-{kind}-{users}.log').read_text()[-3000:]}")
    raw = [json.loads(x) for x in (out / "raw.jsonl").read_text().splitlines() if x.strip()]
    return locust_figures(raw, kind == "stream")


# --- comparison -----------------------------------------------------------------------------------


def ratios(ours: Figures, theirs: Figures) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name in FIGURES:
        a, b = getattr(ours, name), getattr(theirs, name)
        out[name] = a / b if a is not None and b else None
    return out


def off(r: dict[str, float | None]) -> list[str]:
    return [k for k, v in r.items() if v is not None and not abs(v - 1) <= AGREEMENT]


def _f(v: float | None, fmt: str = "8.3f") -> str:
    return format(v, fmt) if v is not None else f"{'n/a':>{fmt.split('.')[0]}}"


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-independent-") as d:
        tmp = Path(d)
        ensure_aiperf(tmp)
        hf_home = tmp / "hf"
        tokenizer = char_tokenizer(hf_home)
        ours_prompts, prompts = prompt_files(tmp)
        print(
            f"Locust (ours) vs AIPerf {AIPERF_VERSION} + bench/aiperf_adapter: closed loop of N users, "
            f"{DURATION_S} s per level, one prompt ({PROMPT['text']!r}), simulator {' '.join(SIM_FLAGS)} "
            "(a fresh one per client and level)"
        )
        header = f"    {'kind':10} {'N':>3} {'who':7} {'req':>5} {'err':>4} {'req/s':>8} "
        header += f"{'lat p50':>8} {'lat p95':>8} {'TTFA p50':>8} {'TTFA p95':>8}"
        rows: list[tuple[str, int, dict[str, float | None]]] = []
        print(header)
        for kind, users in LEVELS:
            ours = run_locust(tmp, kind, users, ours_prompts)
            theirs = run_aiperf(tmp, kind, users, prompts, hf_home, tokenizer)
            for who, f in (("Locust", ours), ("AIPerf", theirs)):
                print(
                    f"    {kind:10} {users:3d} {who:7} {f.requests:5d} {f.errors:4d} {f.throughput:8.2f} "
                    f"{f.latency_p50:8.1f} {f.latency_p95:8.1f} {_f(f.ttfa_p50, '8.1f')} {_f(f.ttfa_p95, '8.1f')}",
                    flush=True,
                )
            r = ratios(ours, theirs)
            rows.append((kind, users, r))
            print(
                f"    {kind:10} {users:3d} {'ratio':7} {'':5} {'':4} " + " ".join(_f(r[k]) for k in FIGURES),
                flush=True,
            )
        misses = [(k, n, off(r)) for k, n, r in rows if off(r)]
        if misses:
            detail = "; ".join(f"{k} N={n}: {', '.join(m)}" for k, n, m in misses)
            print(f"    verdict: DISAGREE beyond {100 * AGREEMENT:.0f}% on {detail}")
        else:
            print(f"    verdict: agree: every ratio ours/AIPerf within {100 * AGREEMENT:.0f}% at every level")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
