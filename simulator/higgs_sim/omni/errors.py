"""Error answers: vLLM's OpenAI-wrapped ``ErrorResponse`` and its schema-error rendering.

OX1: handler errors are ``{"error": {"message", "type", "param": null, "code": <status>}}``;
``create_error_response`` defaults to type ``BadRequestError`` and 400 (the type string at vLLM
0.25 is UNCONFIRMED: vLLM's default is used). OX2: a body that fails the request schema goes
through vLLM's ``RequestValidationError`` handler: 400, type ``Bad Request`` (``HTTPStatus.phrase``),
message ``f"{exc} {exc.errors()}"`` (UNCONFIRMED at 0.25: the e2e tests accept 400 or 422), so
``--sim-schema-error-status 422`` answers FastAPI's own default instead (``{"detail": [...]}``).
"""

from __future__ import annotations

from typing import Any

from higgs_sim.protocol import ApiError

SchemaIssue = dict[str, Any] | str  # a pydantic error dict, or a plain string (validate_json_request)


class OmniError(ApiError):
    """A handler-level error (status, message, type as Boson's ``ApiError``), in the OpenAI wrapper."""

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.err_type, self.status)


class SchemaError(Exception):
    """The body does not fit the request schema (FastAPI's ``RequestValidationError``)."""

    def __init__(self, issues: list[SchemaIssue]) -> None:
        self.issues = issues
        super().__init__(render_issues(issues))


def error_body(message: str, err_type: str = "BadRequestError", code: int = 400) -> dict[str, Any]:
    return {"error": {"message": message, "type": err_type, "param": None, "code": code}}


def render_issues(issues: list[SchemaIssue]) -> str:
    """vLLM's validation handler: ``str(exc)`` (FastAPI's summary) plus ``str(exc.errors())``."""
    count = len(issues)
    summary = f"{count} validation error{'s' if count != 1 else ''}:\n" + "".join(f"  {i}\n" for i in issues)
    listing = str(issues)
    return f"{summary} {listing}" if issues and listing != summary else summary


def jsonable_issue(issue: SchemaIssue) -> Any:
    """FastAPI's jsonable_encoder of one error (tuples to lists, exceptions to strings)."""
    if isinstance(issue, str):
        return issue
    out: dict[str, Any] = {}
    for key, value in issue.items():
        if key == "loc":
            out[key] = list(value)
        elif key == "ctx" and isinstance(value, dict):
            out[key] = {k: str(v) if isinstance(v, Exception) else v for k, v in value.items()}
        else:
            out[key] = value
    return out


def schema_error_response(exc: SchemaError, status: int) -> tuple[int, dict[str, Any]]:
    """The status and body of a schema error: vLLM's 400 wrapper, or FastAPI's default 422."""
    if status == 422:
        return 422, {"detail": [jsonable_issue(i) for i in exc.issues]}
    return 400, error_body(str(exc), "Bad Request", 400)


def value_error(message: str, body: Any, loc: tuple[Any, ...] = ("body",)) -> dict[str, Any]:
    """A model validator's ``ValueError`` as pydantic reports it."""
    return {
        "type": "value_error",
        "loc": loc,
        "msg": f"Value error, {message}",
        "input": body,
        "ctx": {"error": ValueError(message)},
    }
