"""The edge where errors become HTTP answers: every non-2xx is ``{"error": {code, message}}``,
or, on the OpenAI-compatible paths, OpenAI's own ``{"error": {message, type, param, code}}``
(what its SDKs parse)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Match

from gateway.auth import CREDENTIAL_CHECKS
from shared.errors import (
    Conflict,
    Forbidden,
    InvalidFields,
    InvalidInput,
    InvalidOffset,
    OffsetExpired,
    PayloadTooLarge,
    RateLimited,
    RedisUnavailable,
    RequestError,
    ShuttingDown,
    StreamGone,
    StreamNotFound,
    Unauthorized,
)

log = logging.getLogger("tokenrelay.gateway")

STATUS: dict[type[RequestError], int] = {
    InvalidInput: 400,
    Unauthorized: 401,
    Forbidden: 403,
    StreamNotFound: 404,
    Conflict: 409,
    OffsetExpired: 410,
    StreamGone: 410,
    PayloadTooLarge: 413,
    InvalidFields: 422,
    RateLimited: 429,
    RedisUnavailable: 503,
    ShuttingDown: 503,
}

_HTTP_CODES = {
    400: "invalid_json",  # FastAPI's own 400: a body it cannot even decode (not UTF-8)
    404: "not_found",
    405: "method_not_allowed",
    413: PayloadTooLarge.code,
}

# Query parameters and headers FastAPI checks (their length) before a handler runs. A bad one
# is malformed input (400) or a bad credential (401), not an invalid body field (422).
_PARAMETER_ERRORS: dict[str, tuple[int, str]] = {
    "after": (400, InvalidOffset.code),
    "last-event-id": (400, InvalidOffset.code),
    "token": (401, Unauthorized.code),
}


OPENAI_PATHS = ("/v1/chat/", "/v1/responses")
"""Where errors take OpenAI's shape: the paths of the OpenAI-compatible APIs."""


def openai_error_type(status: int) -> str:
    """OpenAI's ``error.type`` for an HTTP status."""
    if status >= 500:
        return "server_error"
    return {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}.get(
        status, "invalid_request_error"
    )


def error_response(
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    *,
    path: str = "",
    **extra: Any,
) -> JSONResponse:
    """The error answer; in OpenAI's shape where ``path`` is an OpenAI-compatible one."""
    if path.startswith(OPENAI_PATHS):
        details = extra.get("details") or [{}]
        error = {
            "message": message,
            "type": openai_error_type(status),
            "param": details[0].get("field") or None,
            "code": code,
        }
        return JSONResponse({"error": error}, status_code=status, headers=headers)
    body = {"error": {"code": code, "message": message, **extra}}
    return JSONResponse(body, status_code=status, headers=headers)


def status_of(error: RequestError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def request_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestError)
    headers = dict(error.headers)
    retry_after = getattr(error, "retry_after_s", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if isinstance(error, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    return error_response(
        status_of(error), error.code, error.message, headers, path=request.url.path
    )


def _credentials_refused(request: Request) -> RequestError | None:
    """The refusal of the route's credential checks (``gateway.auth.credential_check``), if
    they refuse: FastAPI decodes a JSON body before it runs any dependency, so a body that
    is not JSON reaches this answer before the route looked at the credentials."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    for dependency in getattr(dependant, "dependencies", ()):
        if dependency.call in CREDENTIAL_CHECKS:
            try:
                dependency.call(request)
            except RequestError as refused:
                return refused
    return None


def validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = error.errors()
    path = request.url.path
    if any(problem.get("type") == "json_invalid" for problem in problems):
        refused = _credentials_refused(request)
        if refused is not None:
            return request_error(request, refused)
        return error_response(400, "invalid_json", "the request body is not valid JSON", path=path)
    details = [
        {
            "field": ".".join(str(part) for part in problem.get("loc", ())[1:]),
            "message": problem.get("msg", ""),
        }
        for problem in problems
    ]
    summary = "; ".join(f"{d['field'] or 'body'}: {d['message']}" for d in details)
    content_type = request.headers.get("content-type", "")
    if request.method == "POST" and not content_type.startswith("application/json"):
        summary = f"send the body as JSON with 'Content-Type: application/json' ({summary})"
    if not any((problem.get("loc") or ("body",))[0] == "body" for problem in problems):
        status, code = _PARAMETER_ERRORS.get(details[0]["field"], (400, InvalidInput.code))
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return error_response(status, code, summary, headers, path=path, details=details)
    return error_response(422, InvalidFields.code, summary, path=path, details=details)


def http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    code = _HTTP_CODES.get(error.status_code, "http_error")
    headers = dict(error.headers or {})
    if error.status_code == 405:  # every method of the path, not only the first route's
        headers["Allow"] = ", ".join(sorted(_methods_at(request)))
    return error_response(
        error.status_code, code, str(error.detail), headers, path=request.url.path
    )


def _methods_at(request: Request) -> set[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return methods


def redis_down(request: Request, error: Exception) -> JSONResponse:
    log.warning("Redis unavailable while serving %s: %s", request.url.path, error)
    return request_error(request, RedisUnavailable())


def unexpected(request: Request, error: Exception) -> JSONResponse:
    log.exception("unexpected error serving %s", request.url.path, exc_info=error)
    return error_response(500, "internal", "internal error", path=request.url.path)


_HANDLERS: tuple[tuple[type[Exception], Callable[[Request, Exception], JSONResponse]], ...] = (
    (RequestError, request_error),
    (RequestValidationError, validation_error),
    (HTTPException, http_error),
    (RedisConnectionError, redis_down),
    (RedisTimeoutError, redis_down),
)


def handled(request: Request, error: Exception) -> JSONResponse | None:
    """The answer to ``error`` where it is an expected one; None for a bug (a 500)."""
    for kind, handler in _HANDLERS:
        if isinstance(error, kind):
            return handler(request, error)
    return None


def install(app: FastAPI) -> None:
    for kind, handler in _HANDLERS:
        app.add_exception_handler(kind, handler)
    app.add_exception_handler(Exception, unexpected)
