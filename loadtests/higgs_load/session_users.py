"""--shape sessions, the Locust side: each of the `-u` users is a dispatcher that draws its share of the
session arrivals (higgs_load.sessions) and starts a greenlet per session, without waiting for the
server (open loop). A session has its own connection (a HiggsUser of its own, never started by
Locust: its client and measure()), makes its turns with think time between, and hands in one record
per turn. Sessions in flight are bounded by --max-sessions; an arrival over the cap is refused,
counted (`sessions_capped`) and logged."""

from __future__ import annotations

# Locust must be imported before anything that imports ssl/urllib3 (gevent monkey-patching).
from locust.user.users import LOCUST_STATE_STOPPING  # isort: skip

import logging
import time
import uuid
from typing import TYPE_CHECKING

import gevent
import gevent.pool

from higgs_load.messages import count_dropped, hand_in
from higgs_load.payloads import weighted_choice
from higgs_load.request_events import fire_request_events
from higgs_load.sessions import Session, arrival_times

if TYPE_CHECKING:
    from higgs_load.users import HiggsUser

log = logging.getLogger("higgs_load")
CAP_WARN_EVERY_S = 5.0


def run_dispatcher(user: HiggsUser) -> None:
    """Dispatch sessions until the user is stopped (a kill ends every session in flight: their
    unfinished turns leave no record; a graceful stop lets them finish)."""
    cfg = user.cfg
    if cfg is None or cfg.sessions is None:
        return
    rate, cap = cfg.sessions.share(cfg.pool_users)
    pool = gevent.pool.Pool(cap)
    capped, warned_at = 0, float("-inf")
    try:
        for at in arrival_times(rate, time.time(), user.rng):
            delay = at - time.time()
            if delay > 0:
                gevent.sleep(delay)
            if user._state == LOCUST_STATE_STOPPING:
                break
            session = cfg.sessions.draw(user.rng)
            if pool.full():
                capped += 1
                count_dropped(user.environment, 1)
                if time.monotonic() - warned_at >= CAP_WARN_EVERY_S:
                    warned_at = time.monotonic()
                    log.warning(
                        "sessions: --max-sessions full (%d in flight here): %d arrivals refused so far "
                        "(sessions_capped in the report)",
                        cap,
                        capped,
                    )
                continue
            pool.spawn(run_session, user, session, len(pool) + 1)
        pool.join()
    finally:
        pool.kill(block=True, timeout=5.0)


def run_session(dispatcher: HiggsUser, session: Session, in_flight: int) -> None:
    """One session: its turns on a connection of its own, think time between them."""
    from higgs_load.users import HiggsUser  # the users module imports this one

    cfg = dispatcher.cfg
    if cfg is None:
        return
    env = dispatcher.environment
    caller = HiggsUser(env)
    caller.weights, caller.rng = dispatcher.weights, dispatcher.rng
    sid = uuid.uuid4().hex[:16]
    try:
        for turn in range(1, session.turns + 1):
            if turn > 1 and session.think_s[turn - 2] > 0:
                gevent.sleep(session.think_s[turn - 2])
            kind = weighted_choice(caller.weights, caller.rng)
            rec = caller.measure(kind, caller.rng.choice(cfg.prompts))
            rec.session_id, rec.session_turn, rec.session_turns = sid, turn, session.turns
            rec.users = in_flight  # sessions in flight on this dispatcher when it arrived
            fire_request_events(env, rec)
            hand_in(env, rec)
    finally:
        caller.client.client.clientpool.close()
