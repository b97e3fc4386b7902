"""Domain errors. A subclass's docstring is its default message; one handler maps them to HTTP."""

from __future__ import annotations


class GridXError(Exception):
    """Something went wrong in Grid-X."""

    status_code = 500
    code = "internal_error"

    def __init__(
        self,
        message: str | None = None,
        *,
        field: str | None = None,
        errors: list[tuple[str, str]] | None = None,
    ) -> None:
        self.message = message or (self.__doc__ or "").strip()
        self.field = field
        self.errors = errors or ([(field, self.message)] if field else [])
        super().__init__(self.message)


class BadRequest(GridXError):
    """The request is malformed."""

    status_code = 400
    code = "bad_request"


class Unauthorized(GridXError):
    """Missing or invalid credentials: pass `Authorization: Bearer <key>`."""

    status_code = 401
    code = "unauthorized"


class Forbidden(GridXError):
    """You are not allowed to do this."""

    status_code = 403
    code = "forbidden"


class NodeBanned(Forbidden):
    """The node was banned by an admin: every route refuses it."""

    code = "node_banned"


class UserDisabled(Forbidden):
    """The API key's user was disabled by an admin."""

    code = "user_disabled"


class NotFound(GridXError):
    """No such thing, or it is not yours."""

    status_code = 404
    code = "not_found"


class Conflict(GridXError):
    """The resource is not in a state that allows this."""

    status_code = 409
    code = "conflict"


class StaleLease(Conflict):
    """This node does not hold that task's lease (it expired, was reissued, or was never yours)."""

    code = "stale_lease"


class InvalidInput(GridXError):
    """The request is invalid."""

    status_code = 422
    code = "invalid"


class InvalidConfig(InvalidInput):
    """The job configuration is invalid."""

    code = "invalid_config"


class InvalidWeights(InvalidInput):
    """The uploaded weights were refused."""

    code = "invalid_weights"


class TooLarge(GridXError):
    """The upload is larger than allowed."""

    status_code = 413
    code = "too_large"


class QuotaExceeded(GridXError):
    """The job would take its owner past the storage quota: nothing was kept."""

    status_code = 413
    code = "quota_exceeded"


class StorageFull(GridXError):
    """The coordinator's disk is full: nothing was kept; the caller may retry later."""

    status_code = 507
    code = "storage_full"


class RateLimited(GridXError):
    """Too many requests; retry later."""

    status_code = 429
    code = "rate_limited"
