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
    if not rec.ok:
        return
    # (row, value in ms, response_length): the measured figures of a successful request.
    rows: list[tuple[str, float | None, int]] = [
        ("TTFA", None if rec.ttfa_s is None else rec.ttfa_s * 1000, 0),
        ("RTF", None if rec.rtf is None else rec.rtf * 1000, 0),
        ("AUDIO", rec.audio_s * 1000, 0),
        ("UNDERRUN", rec.stall_s * 1000 if rec.underruns else None, rec.underruns),
    ]
    for row, value, length in rows:
        if value is not None:
            fire(
                request_type=row,
                name=rec.kind,
                response_time=value,
                response_length=length,
                exception=None,
                context={},
            )
