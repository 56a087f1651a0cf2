"""HiggsUser: one listener. Sends a request of a kind drawn from --mix, measures it, hands the record
in (higgs_load.messages) and fires its stats rows (higgs_load.request_events)."""

from __future__ import annotations

# Locust must be imported before anything that imports ssl/urllib3 (gevent monkey-patching).
from locust import FastHttpUser, tag, task  # isort: skip

import json
import logging
import random
import time
import uuid
from typing import Any

import gevent
from geventhttpclient.url import URL
from locust.env import Environment
from locust.exception import StopUser

from higgs_load.audio import AudioError
from higgs_load.body_reader import BodyReader
from higgs_load.measure import Measurement, measurement_for
from higgs_load.messages import count_dropped, hand_in
from higgs_load.metrics import plausible_audio_limit_s
from higgs_load.payloads import KIND_TAGS, Prompt, request_for, weighted_choice
from higgs_load.plans import PoissonArrivals
from higgs_load.records import RequestRecord
from higgs_load.request_events import fire_request_events
from higgs_load.run_config import DEFAULT_HOST, RunConfig
from higgs_load.run_state import config_of, state_of
from higgs_load.session_users import run_dispatcher

log = logging.getLogger("higgs_load")


def _drop_connection(resp: Any) -> None:
    """Close a connection whose body was not read to the end (never return it to the pool)."""
    pool, sock = getattr(resp, "_pool", None), getattr(resp, "_sock", None)
    resp._pool = resp._sock = None
    if sock is not None and pool is not None:
        pool.release_socket(sock)


def _header(resp: Any, name: str) -> str | None:
    """A response header's value; a repeated header's values joined as HTTP folds them."""
    value = resp.get(name)
    return ", ".join(value) if isinstance(value, list) else value


class HiggsUser(FastHttpUser):
    """One listener: sends a request of a kind drawn from --mix, measures it, repeats (no think time).

    In the poisson shape each user waits for its share of the arrival schedule instead."""

    concurrency = 1  # one connection per user: a user has one request in flight
    host = DEFAULT_HOST

    def __init__(self, environment: Environment) -> None:
        try:
            cfg: RunConfig | None = config_of(environment)
        except ValueError:
            cfg = None  # bad options from the web UI's form: logged at test_start; on_start stops us
        timeout = cfg.request_timeout if cfg else 120.0
        self.network_timeout = timeout
        self.connection_timeout = min(timeout, 30.0)
        super().__init__(environment)
        self.cfg = cfg
        self.rng = random.Random()
        self.arrivals: PoissonArrivals | None = None
        self.headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
        if cfg and cfg.api_key:
            self.headers["Authorization"] = f"Bearer {cfg.api_key}"
        self.weights: dict[str, int] = {}

    def on_start(self) -> None:
        # A user with nothing to do stops in its first task (StopUser raised here would be logged with a
        # traceback by Locust; raised in a task it is a quiet stop).
        self.weights = {}
        if self.cfg is None:
            return
        # Tags (--tags/--exclude-tags) decide which kinds may run; --mix gives their weights.
        allowed = {getattr(t, "__name__", "") for t in type(self).tasks}
        self.weights = {k: w for k, w in self.cfg.mix.items() if k in allowed}
        if not self.weights:
            log.error("--mix %s and the selected tags leave no request kind to run", self.cfg.mix)
            return
        if self.cfg.shape == "poisson":
            self.arrivals = PoissonArrivals(self.cfg.arrival_rate, self.cfg.pool_users, time.time(), self.rng)

    # One task per kind so `--tags stream` (or --exclude-tags) selects kinds. Each task draws the kind
    # from --mix among the kinds left, so Locust's equal task weights do not matter.
    @tag(*KIND_TAGS["stream"])
    @task
    def stream(self) -> None:
        self._go()

    @tag(*KIND_TAGS["chat"])
    @task
    def chat(self) -> None:
        self._go()

    @tag(*KIND_TAGS["speech_pcm"])
    @task
    def speech_pcm(self) -> None:
        self._go()

    @tag(*KIND_TAGS["speech_wav"])
    @task
    def speech_wav(self) -> None:
        self._go()

    @tag(*KIND_TAGS["speech_mp3"])
    @task
    def speech_mp3(self) -> None:
        self._go()

    @tag(*KIND_TAGS["speech_sse"])
    @task
    def speech_sse(self) -> None:
        self._go()

    @tag(*KIND_TAGS["clone"])
    @task
    def clone(self) -> None:
        self._go()

    def _go(self) -> None:
        cfg = self.cfg
        if cfg is None or not self.weights:
            raise StopUser()
        if cfg.sessions is not None:
            run_dispatcher(self)  # --shape sessions: this user dispatches sessions until stopped
            return
        kind = weighted_choice(self.weights, self.rng)
        if self.arrivals is not None:
            at, dropped = self.arrivals.take(time.time(), cfg.max_lateness)
            if dropped:
                count_dropped(self.environment, dropped)
            delay = at - time.time()
            if delay > 0:
                gevent.sleep(delay)
        prompt = self.rng.choice(cfg.prompts)
        rec = self.measure(kind, prompt)
        fire_request_events(self.environment, rec)
        hand_in(self.environment, rec)

    def measure(self, kind: str, prompt: Prompt) -> RequestRecord:
        """Send one request and measure it (a stop midway raises GreenletExit: no record)."""
        cfg = self.cfg
        if cfg is None:
            raise StopUser()  # no config: on_start left no kind to run
        path, body = request_for(kind, prompt, cfg.settings, cfg.reference, self.rng)
        payload = json.dumps(body).encode()
        url = URL(self.host + path)
        client = self.client.client.clientpool.get_client(url)
        worker = state_of(self.environment).worker_id
        rec = RequestRecord(kind=kind, t_start=0.0, prompt_class=prompt.length, worker=worker)
        rec.users = self.environment.runner.user_count if self.environment.runner else None
        rec.text_chars, rec.voice = len(prompt.text), body.get("voice")
        max_audio_s = plausible_audio_limit_s(len(prompt.text), cfg.max_audio_factor)
        # Our own X-Request-Id names the request on the server (its logs, `chatcmpl-<id>`; E8), so the
        # record joins the server's traces whether or not it echoes the header.
        own_id = uuid.uuid4().hex
        headers = {**self.headers, "X-Request-Id": own_id}
        resp = None
        # The request is built before the clock starts: TTFA counts sending it, not preparing it.
        wall0 = time.time()
        t0 = time.perf_counter()
        rec.t_start = wall0
        m: Measurement = measurement_for(kind, rec, t0, max_audio_s, cfg.settings.api)
        m.prebuffer_s = cfg.prebuffer_s
        try:
            resp = client.request("POST", url.request_uri, body=payload, headers=headers)
            rec.status = resp.status_code
            rec.request_id = _header(resp, "x-request-id") or own_id
            reader = BodyReader(resp)
            if resp.status_code >= 400:
                detail = reader.read_all()[:300].decode("utf-8", "replace")
                m.fail(f"http_{resp.status_code}", detail, time.perf_counter())
            else:
                while data := reader.read():
                    m.feed(data, reader.arrived)
                    if rec.ttfa_clock is None and rec.ttfa_s is not None:
                        rec.ttfa_clock = reader.clock
                m.finish(reader.arrived)
        except AudioError as exc:
            m.fail(exc.error_class, exc.detail, time.perf_counter())
        except (TimeoutError, gevent.Timeout) as exc:
            m.fail("timeout", f"no bytes for {cfg.request_timeout:g} s ({exc!r})", time.perf_counter())
        except (OSError, Exception) as exc:  # connection refused/reset, HTTP parse errors
            if rec.status is None:
                m.fail("connection_error", repr(exc), time.perf_counter())
            else:
                m.fail("truncated_stream", repr(exc), time.perf_counter())
        except gevent.GreenletExit:
            # The test is stopping this user: an interrupted request is not a result. Re-raise, or
            # the user would swallow Locust's kill, keep looping, and the run would never end.
            if resp is not None:
                _drop_connection(resp)
            raise
        finally:
            if resp is not None and not rec.ok:
                _drop_connection(resp)
        if rec.t_first_audio is None and rec.ttfa_s is not None:
            rec.t_first_audio = wall0 + rec.ttfa_s
        return rec
