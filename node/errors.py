"""The node's errors: one tree under `NodeError`, each caught where the node can act on it."""

from __future__ import annotations

from gridx.schemas.errors import ErrorBody


class NodeError(Exception):
    """Something the node cannot do; the message says what and how to fix it."""

    exit_code = 1
    """What `gridx-node` exits with when this stops it."""


class OwnerMistake(NodeError):
    """The node's owner set something up wrong (a key, an email, a URL, a sandbox or executor
    that is not there); `gridx-node` says what in one line and exits 3."""

    exit_code = 3


class NotEnrolled(OwnerMistake):
    """The node has no identity and no usable enrolment key to get one (missing, unknown, or
    another owner's), or the coordinator refused its token."""


class Banned(OwnerMistake):
    """The coordinator's admin banned this node: it is refused everywhere."""


class StateDirInUse(OwnerMistake):
    """Another node runs with the same state folder."""


class Unreachable(OwnerMistake):
    """No coordinator answers at the configured URL."""


class WeakSandbox(OwnerMistake):
    """The sandbox self-test found gaps and the owner did not allow a weak sandbox."""


class ExecutorUnavailable(OwnerMistake):
    """The executor asked for cannot run here (no Docker engine, no executor image)."""


class RequirementsError(NodeError):
    """requirements.txt could not be installed; `code` is the task's reason code and `tail`
    holds pip's last output."""

    def __init__(self, message: str, tail: str = "", code: str = "requirements_failed") -> None:
        super().__init__(message)
        self.tail = tail
        self.code = code


class CoordinatorError(NodeError):
    """The coordinator answered with an error body."""

    def __init__(self, status: int, body: ErrorBody) -> None:
        self.status = status
        self.code = body.code
        self.message = body.message
        super().__init__(f"{status} {body.code}: {body.message}")


class TransportError(NodeError):
    """A request to the coordinator or a store did not complete: refused, reset, cut short or
    timed out (the HTTP library's errors, mapped as httpx maps httpcore's: callers catch this
    one). `retriable`: the same request may go through on a later try."""

    def __init__(self, what: str, cause: BaseException, retriable: bool) -> None:
        super().__init__(f"{what}: {cause or type(cause).__name__}")
        self.retriable = retriable


class IntegrityError(NodeError):
    """A downloaded file does not match its sha256."""


class DatasetError(OwnerMistake):
    """A declared dataset cannot be read or used as declared (missing, unreadable, its columns
    changed under a job)."""
