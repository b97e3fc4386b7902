"""The node's errors: one tree under `NodeError`, each caught where the node can act on it."""

from __future__ import annotations

from gridx.schemas.errors import ErrorBody


class NodeError(Exception):
    """Something the node cannot do; the message says what and how to fix it."""


class NotEnrolled(NodeError):
    """The node has no identity and no enrolment key to get one, or the coordinator refused
    its token."""


class WeakSandbox(NodeError):
    """The sandbox self-test found gaps and the owner did not allow a weak sandbox."""


class ExecutorUnavailable(NodeError):
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
        super().__init__(f"{status} {body.code}: {body.message}")


class IntegrityError(NodeError):
    """A downloaded file does not match its sha256."""
