"""Secrets that travel in URLs (signed links' `sig`, a task's `lease`, tokens and keys): the one
place that names them, and the log filter that keeps them out of every log line, for the
coordinator (uvicorn's access log prints whole URLs) and the node (client errors quote them)."""

from __future__ import annotations

import logging
import re

SECRET_PARAMS = ("sig", "lease", "token", "key", "api_key", "access_token")
_PATTERN = re.compile(r"([?&](?:" + "|".join(SECRET_PARAMS) + r")=)[^&\s\"']*")


def redact(text: str) -> str:
    """`text` with the values of secret query parameters replaced by `***`."""
    return _PATTERN.sub(r"\1***", text)


class Redact(logging.Filter):
    """Scrubs secret query parameters from a record's message and arguments (never drops it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; exceptions are rendered and scrubbed too."""
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
