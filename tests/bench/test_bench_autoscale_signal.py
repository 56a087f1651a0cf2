"""The autoscaling-signal benchmark's SLO-miss clock (bench/bench_autoscale_signal.py): a request misses
the TTFA SLO the moment it has waited the SLO without audio, whether its audio came later or not at all."""

from bench.bench_autoscale_signal import SLO_TTFA_S, Request, _first_miss


def test_first_miss_is_the_start_plus_the_slo_of_the_first_late_request():
    requests = [
        Request(start=1.0, ttfa=1.1, end=7.0),  # on time
        Request(start=10.0, ttfa=SLO_TTFA_S + 1, end=16.0),  # late: missed at 10 + SLO
        Request(start=9.0, ttfa=None, end=None),  # still waiting at 30 s: missed at 9 + SLO
    ]
    assert _first_miss(requests, now=30.0) == 9.0 + SLO_TTFA_S


def test_no_miss_when_every_request_started_its_audio_in_time_or_is_still_young():
    requests = [Request(start=1.0, ttfa=SLO_TTFA_S, end=7.0), Request(start=29.0, ttfa=None)]
    assert _first_miss(requests, now=30.0) is None
