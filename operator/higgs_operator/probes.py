"""HTTP calls to the server pods by pod IP: /metrics for the autoscaler, /v1/models for readiness."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from .metrics import MetricsParseError, PodSample, parse_pod_metrics

TIMEOUT_S = 2.0


@dataclass(frozen=True)
class ScrapeResult:
    samples: list[PodSample]
    failures: list[str]  # "pod: why", for the status message


async def _scrape_one(client: httpx.AsyncClient, pod: str, url: str) -> PodSample | str:
    try:
        resp = await client.get(url)
        resp.raise_for_status()
        return parse_pod_metrics(resp.text)
    except (httpx.HTTPError, MetricsParseError) as err:
        return f"{pod}: {type(err).__name__}: {err}"[:200]


async def scrape(targets: dict[str, str], headers: dict[str, str] | None = None) -> ScrapeResult:
    """Scrape ``{pod name: base URL}`` concurrently; a failure is recorded, never raised."""
    async with httpx.AsyncClient(timeout=TIMEOUT_S, headers=headers or {}, trust_env=False) as client:
        results = await asyncio.gather(*(_scrape_one(client, p, f"{u}/metrics") for p, u in targets.items()))
    return ScrapeResult(
        samples=[r for r in results if isinstance(r, PodSample)],
        failures=[r for r in results if isinstance(r, str)],
    )


async def model_served(base_url: str, model: str, headers: dict[str, str] | None = None) -> tuple[bool, str]:
    """Whether GET /v1/models lists ``model``; the message says what was seen."""
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_S, headers=headers or {}, trust_env=False) as client:
            resp = await client.get(f"{base_url}/v1/models")
            resp.raise_for_status()
            ids = [m.get("id") for m in resp.json().get("data", [])]
    except (httpx.HTTPError, ValueError, AttributeError) as err:
        return False, f"/v1/models failed: {type(err).__name__}: {err}"[:200]
    if model in ids:
        return True, f"/v1/models lists {model}"
    return False, f"/v1/models lists {ids}, not {model}"
