"""What a FastAPI/Starlette app answers by itself, reproduced on aiohttp for both emulated servers.

Boson's server (``vllm/entrypoints/bosonai/api_server.py``) and vLLM-Omni's
(``vllm_omni/entrypoints/openai/api_server.py``) are FastAPI apps, so the framework's answers are the
same for both: Starlette's ``JSONResponse`` (compact UTF-8, ``Content-Type: application/json`` with no
charset), its plain-text 500 for an unexpected exception (Boson ER3), FastAPI's ``{"detail": ...}``
for unknown routes and methods (Boson E6), and vLLM's API-key middleware on ``/v1`` (Boson E7,
Omni OE6).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from higgs_sim.arrival import take_arrival


def json_response(body: Any, status: int = 200) -> web.Response:
    """Starlette's JSONResponse: compact UTF-8, ``Content-Type: application/json`` (no charset)."""
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return web.Response(body=data, status=status, headers={"Content-Type": "application/json"})


def internal_server_error() -> web.Response:
    """What an unexpected exception gets from Starlette: a plain-text 500."""
    return web.Response(status=500, text="Internal Server Error", content_type="text/plain")


def routing_errors_middleware(log: logging.Logger) -> Middleware:
    """FastAPI's answers for routing errors and Starlette's plain 500 (the exception goes to ``log``).

    Whatever the outcome, the arrival stamped on the connection while this request was handled is
    dropped: it is not the next request's start (higgs_sim.arrival)."""

    @web.middleware
    async def routing_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return json_response({"detail": "Not Found"}, 404)
        except web.HTTPMethodNotAllowed as exc:
            resp = json_response({"detail": "Method Not Allowed"}, 405)
            resp.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
            return resp
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return json_response({"detail": exc.reason}, exc.status)  # e.g. 413 over the size limit
        except Exception:
            log.exception("Exception in ASGI application (%s %s)", request.method, request.path)
            return internal_server_error()
        finally:
            take_arrival(request.transport)

    return routing_errors


def api_key_middleware(key: str | None) -> Middleware:
    """vLLM's ``--api-key``: with a key, everything under ``/v1`` but OPTIONS needs
    ``Authorization: Bearer <key>`` (else 401 ``{"error": "Unauthorized"}``); the rest stays open."""

    @web.middleware
    async def api_key(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (
            key
            and request.method != "OPTIONS"
            and request.path.startswith("/v1")
            and request.headers.get("Authorization") != f"Bearer {key}"
        ):
            return json_response({"error": "Unauthorized"}, 401)
        return await handler(request)

    return api_key
