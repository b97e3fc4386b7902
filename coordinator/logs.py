"""Log records that carry ids: `log.info("...", extra=ids(job=..., task=..., node=...))`.

`text` appends them as `key=value`; `json` writes one object per line for log shippers
(`gridx coordinator start --log-format json`, or `GRIDX_LOG_FORMAT=json`).
"""

from __future__ import annotations

import datetime as dt
import logging

import msgspec

from gridx.schemas.redaction import Redact

FIELDS = ("job", "round", "task", "node", "replica")
_json = msgspec.json.Encoder()


def ids(**values: object) -> dict[str, object]:
    """The `extra` of a log call: the ids it is about (None values left out)."""
    return {k: v for k, v in values.items() if v is not None}


def _ids_of(record: logging.LogRecord) -> dict[str, object]:
    return {f: getattr(record, f) for f in FIELDS if hasattr(record, f)}


class TextFormatter(logging.Formatter):
    """`time level logger: message key=value ...`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The classic line, with the record's ids appended."""
        line = super().format(record)
        extra = " ".join(f"{k}={v}" for k, v in _ids_of(record).items())
        return f"{line} {extra}" if extra else line


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, msg, the ids, and exc if any."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        out: dict[str, object] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            **_ids_of(record),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return _json.encode(out).decode()


class QuietAgents(logging.Filter):
    """The access log without nodes' routine calls (`/agent/...` heartbeats and polls that
    succeeded: hundreds a minute from a small fleet); their errors stay, and at DEBUG all."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep the record unless it is a node's routine call that went well."""
        args = record.args if isinstance(record.args, tuple) else ()
        if len(args) < 5 or logging.getLogger().isEnabledFor(logging.DEBUG):
            return True
        path, status = str(args[2]), args[4]
        return not path.startswith("/agent/") or not isinstance(status, int) or status >= 400


def configure(level: str, fmt: str) -> None:
    """Send every log record to stderr in the chosen format (`text` or `json`)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(Redact())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    access = logging.getLogger("uvicorn.access")
    access.filters[:] = [f for f in access.filters if not isinstance(f, QuietAgents)]
    access.addFilter(QuietAgents())
