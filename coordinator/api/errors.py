"""One place where errors become HTTP: a status and a JSON body with a stable code."""

from __future__ import annotations

import logging
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example

from gridx.coordinator.errors import GridXError
from gridx.schemas.errors import ErrorBody, FieldError, field_of

log = logging.getLogger("gridx.coordinator.api")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    422: "invalid",
    429: "rate_limited",
}

_EXAMPLE_CODES = {**_CODES, 500: "internal_error", 507: "storage_full"}

ERROR_RESPONSES = {
    status: ResponseSpec(
        ErrorBody,
        description=description,
        generate_examples=False,
        examples=[
            Example(
                summary=description,
                value={"code": _EXAMPLE_CODES.get(status, ""), "message": description},
            )
        ],
    )
    for status, description in (
        (400, "malformed request (e.g. not JSON)"),
        (401, "missing or unknown key or token"),
        (403, "not allowed, or a bad / expired signed link"),
        (404, "no such thing, or not yours"),
        (405, "method not allowed"),
        (409, "conflict: a stale lease, or a finished job"),
        (413, "body or file over its limit"),
        (416, "the range asked for starts past the end of the file"),
        (422, "invalid input; `errors` names every invalid field"),
        (429, "rate limited; retry after a minute"),
        (500, "internal error"),
        (507, "the coordinator's disk is full; nothing was kept, retry later"),
    )
}


def document_errors(handlers: list[Any]) -> None:
    """Declare the error body in the OpenAPI schema of every route (controllers included)."""
    for handler in handlers:
        found = (
            [v for v in vars(handler).values() if isinstance(v, HTTPRouteHandler)]
            if isinstance(handler, type)
            else [handler]
            if isinstance(handler, HTTPRouteHandler)
            else []
        )
        for route in found:
            route.responses = {**ERROR_RESPONSES, **(route.responses or {})}


def gridx_error(_: Request, exc: GridXError) -> Response[ErrorBody]:
    """A domain error: its own status, code and message."""
    body = ErrorBody(
        code=exc.code,
        message=exc.message,
        field=exc.field,
        errors=[FieldError(field=f, message=m) for f, m in exc.errors],
    )
    return Response(body, status_code=exc.status_code)


def http_error(request: Request, exc: HTTPException) -> Response[Any]:
    """Litestar's own errors (bad JSON, failed validation, unknown route) in the same shape."""
    status = exc.status_code
    if status == 405 and request.method == "HEAD" and request.url.path == "/":
        # browsers and monitors ask HEAD of the dashboard's root, which the static files router
        # answers only below it: say it is there, as its GET would
        return Response(b"", media_type=MediaType.HTML, status_code=200)
    message = exc.detail or "error"
    field: str | None = None
    if isinstance(exc, ValidationException):
        details = exc.extra if isinstance(exc.extra, list) else []
        texts = [str(d.get("message", "")) for d in details if isinstance(d, dict)]
        keys = [str(d.get("key", "")) for d in details if isinstance(d, dict) and d.get("key")]
        joined = " ".join(texts)
        field = field_of(joined)
        if field is None and keys and keys[0] != "data":
            field = keys[0]
        if texts and not message.endswith(texts[0]):
            message = f"{message}: {texts[0]}"
        # A body that decodes but breaks a rule is 422; unparsable JSON stays 400.
        located = "at `$" in joined or field is not None
        if located or "Expected" in message or "Object missing required field" in message:
            status = 422
    code = _CODES.get(status, "error")
    errors = [FieldError(field=field, message=message)] if field is not None else []
    body = ErrorBody(code=code, message=message, field=field, errors=errors)
    return Response(body, status_code=status)


def too_deep(_: Request, exc: RecursionError) -> Response[ErrorBody]:
    """A body nested past the decoder's depth limit (thousands of `[`): malformed, not a bug."""
    body = ErrorBody(code="bad_request", message="the JSON body is nested too deeply")
    return Response(body, status_code=400)


def unexpected_error(_: Request, exc: Exception) -> Response[ErrorBody]:
    """A bug: logged with its traceback, answered as 500 without internals."""
    log.exception("unhandled error", exc_info=exc)
    body = ErrorBody(code="internal_error", message="internal error; see the coordinator's log")
    return Response(body, status_code=500)
