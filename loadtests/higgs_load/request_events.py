"""Locust's stats rows for one record: the request events fired for it.

Rows: POST <kind> (whole request, failures by class), TTFA <kind> (ms), RTF <kind> (RTF x 1000,
so 1000 = real time), AUDIO <kind> (audio ms), UNDERRUN <kind> (stall ms; streams that had one).
"""

from __future__ import annotations

# Locust must be imported before anything that imports ssl/urllib3 (gevent monkey-patching).
from locust.env import Environment  # isort: skip

from higgs_load.records import RequestRecord


class AudioRequestFailure(Exception):
    """Shown in Locust's failures table; the message is the failure class only, so rows group by class."""


def fire_request_events(environment: Environment, rec: RequestRecord) -> None:
    """Fire the Locust request events (stats rows) of one record."""
    fire = environment.events.request.fire
    ms = (rec.duration_s or 0.0) * 1000
    exc = None if rec.ok else AudioRequestFailure(rec.error)
    fire(
        request_type="POST",
        name=rec.kind,
        response_time=ms,
        response_length=rec.bytes_received,
        exception=exc,
        context={},
    )
    if rec.ok:
        if rec.ttfa_s is not None:
            fire(
                request_type="TTFA",
                name=rec.kind,
                response_time=rec.ttfa_s * 1000,
                response_length=0,
                exception=None,
                context={},
            )
        if rec.rtf is not None:
            fire(
                request_type="RTF",
                name=rec.kind,
                response_time=rec.rtf * 1000,
                response_length=0,
                exception=None,
                context={},
            )
        fire(
            request_type="AUDIO",
            name=rec.kind,
            response_time=rec.audio_s * 1000,
            response_length=0,
            exception=None,
            context={},
        )
        if rec.underruns:
            fire(
                request_type="UNDERRUN",
                name=rec.kind,
                response_time=rec.stall_s * 1000,
                response_length=rec.underruns,
                exception=None,
                context={},
            )
