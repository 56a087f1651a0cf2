"""Load-shape plans as pure functions of elapsed time (the Locust shape class only wraps these)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from higgs_load.metrics import CHARS_PER_SECOND

AUDIO_TOKENS_PER_SECOND = 25.0  # Higgs Audio v2's codec: 25 frames (audio tokens) per audio second


def expected_audio_s(text_chars: int, max_tokens: int | None = None) -> float:
    """Audio seconds a text of `text_chars` characters should yield: 15 characters per second, capped
    by `max_tokens` (25 audio tokens per second). At real time (RTF 1) a request lasts about as long."""
    seconds = text_chars / CHARS_PER_SECOND
    if max_tokens is not None:
        seconds = min(seconds, max_tokens / AUDIO_TOKENS_PER_SECOND)
    return seconds


SHAPES = ("constant", "step", "poisson", "sweep", "sessions", "capacity")


def doubling_levels(max_users: int, start: int = 1) -> list[int]:
    """1, 2, 4, ... up to max_users, always ending at max_users itself."""
    if max_users < 1 or start < 1:
        raise ValueError(f"step levels need max users >= 1 and start >= 1 (got {max_users}, {start})")
    levels = []
    n = start
    while n < max_users:
        levels.append(n)
        n *= 2
    levels.append(max_users)
    return levels


def parse_levels(spec: str) -> list[int]:
    """'1,2,4,8' -> [1, 2, 4, 8]; strictly increasing positive integers."""
    try:
        levels = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError as exc:
        raise ValueError(f"--levels must be comma-separated integers, got {spec!r}") from exc
    if not levels or any(x < 1 for x in levels) or sorted(set(levels)) != levels:
        raise ValueError(f"--levels must be increasing positive integers, got {spec!r}")
    return levels


@dataclass(frozen=True)
class StepPlan:
    """Hold each user level for `hold_s` seconds, in order; then stop."""

    levels: tuple[int, ...]
    hold_s: float

    def __post_init__(self) -> None:
        if self.hold_s <= 0:
            raise ValueError(f"step hold time must be > 0 s, got {self.hold_s}")

    def index_at(self, elapsed: float) -> int | None:
        idx = int(elapsed // self.hold_s)
        return idx if idx < len(self.levels) else None

    @property
    def duration_s(self) -> float:
        return self.hold_s * len(self.levels)


@dataclass(frozen=True)
class ConstantPlan:
    users: int
    run_time_s: float | None  # None: until stopped

    def index_at(self, elapsed: float) -> int | None:
        if self.run_time_s is not None and elapsed >= self.run_time_s:
            return None
        return 0

    @property
    def levels(self) -> tuple[int, ...]:
        return (self.users,)


class PoissonArrivals:
    """One user's share of an open-loop Poisson arrival process.

    The target rate R is split evenly over the N users of the pool (each user gets an independent
    Poisson stream of rate R/N; the superposition is Poisson with rate R). Arrival times are fixed
    in advance from the clock, never from when the previous response ended, so slow responses do not
    lower the offered load. If a user is still busy when its next arrival is due by more than
    `max_lateness_s`, that arrival is dropped and counted (like k6's dropped iterations): the pool
    was too small for the rate, which the report shows instead of silently closing the loop.
    """

    def __init__(self, rate_per_s: float, pool_users: int, start: float, rng: random.Random) -> None:
        if rate_per_s <= 0 or pool_users < 1:
            raise ValueError(
                f"Poisson arrivals need rate > 0 and users >= 1 (got {rate_per_s}, {pool_users})"
            )
        self.user_rate = rate_per_s / pool_users
        self.rng = rng
        self.next_at = start + rng.expovariate(self.user_rate)

    def take(self, now: float, max_lateness_s: float) -> tuple[float, int]:
        """Return (time of the next arrival to serve, arrivals dropped because they were too late)."""
        dropped = 0
        while now - self.next_at > max_lateness_s:
            dropped += 1
            self.next_at += self.rng.expovariate(self.user_rate)
        at = self.next_at
        self.next_at += self.rng.expovariate(self.user_rate)
        return at, dropped
