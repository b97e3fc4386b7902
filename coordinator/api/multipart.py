"""Streaming multipart/form-data: each file part goes straight to a temp file, with its own cap."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from python_multipart.multipart import MultipartParser, parse_options_header

from gridx.coordinator.errors import InvalidInput, TooLarge
from gridx.schemas.sizes import human

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks


@dataclass
class FormPart:
    """A received part: in memory (`value`) for plain fields, on disk (`path`) for files."""

    name: str
    filename: str | None
    size: int = 0
    path: Path | None = None
    value: bytearray = field(default_factory=bytearray)


class _Parse:
    """One body being parsed: the parser's callbacks, and the part being written."""

    def __init__(self, receiver: MultipartReceiver) -> None:
        self.receiver = receiver
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.headers: dict[str, bytes] = {}
        self.current: FormPart | None = None
        self.fh: BinaryIO | None = None
        self.error: Exception | None = None

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def fail(self, exc: Exception) -> None:
        if self.error is None:
            self.error = exc

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[bytes(self.header_field).decode("latin-1").lower()] = bytes(self.header_value)
        self.header_field.clear()
        self.header_value.clear()

    def on_headers_finished(self) -> None:
        _, disp = parse_options_header(self.headers.get("content-disposition", b""))
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        filename = disp.get(b"filename")
        self.headers.clear()
        parts = self.receiver.parts
        if name not in self.receiver.limits:
            self.fail(InvalidInput(f"unexpected form field {name!r}", field=name))
            return
        if name in parts:
            self.fail(InvalidInput(f"form field {name!r} given twice", field=name))
            return
        part = FormPart(
            name=name, filename=filename.decode("utf-8", "replace") if filename else None
        )
        if part.filename is not None:
            part.path = self.receiver.temp_path()
            self.fh = part.path.open("wb")
        parts[name] = part
        self.current = part

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.current
        if part is None or self.error is not None:
            return
        part.size += end - start
        limit, setting, way_out = self.receiver.limits[part.name]
        if part.size > limit:
            self.fail(
                TooLarge(
                    f"{part.name!r} is over its limit of {human(limit)} ({limit} bytes: the "
                    f"coordinator's GRIDX_{setting.upper()}){way_out}",
                    field=part.name,
                )
            )
            return
        if self.fh is not None:
            self.fh.write(data[start:end])
        else:
            part.value += data[start:end]

    def on_part_end(self) -> None:
        self.close()
        self.current = None

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


class MultipartReceiver:
    """Parses a multipart body from a byte stream.

    Args:
        temp_path: a fresh file name to spool a file part to (the store's temp folder).
        limits: per field, its byte cap, the setting that sets it and what else to do ("; keep
            the data on its nodes..."); a field not named here is refused.
    """

    def __init__(
        self, temp_path: Callable[[], Path], limits: dict[str, tuple[int, str, str]]
    ) -> None:
        self.temp_path = temp_path
        self.limits = limits
        self.parts: dict[str, FormPart] = {}

    def cleanup(self) -> None:
        """Delete every spooled file (call when the submission is not kept)."""
        for part in self.parts.values():
            if part.path is not None:
                part.path.unlink(missing_ok=True)

    async def receive(self, content_type: str | None, chunks: AsyncIterator[bytes]) -> None:
        """Consume the body.

        Raises:
            InvalidInput: not multipart, an unknown or repeated field.
            TooLarge: a field over its cap.
        """
        ctype, params = parse_options_header(content_type or "")
        boundary = params.get(b"boundary")
        if ctype != b"multipart/form-data" or not boundary:
            raise InvalidInput("send the job as multipart/form-data")
        parse = _Parse(self)
        parser = MultipartParser(boundary, parse.callbacks())
        try:
            async for chunk in chunks:
                parser.write(chunk)
                if parse.error is not None:
                    raise parse.error
            parser.finalize()
            if parse.error is not None:
                raise parse.error
        except Exception as exc:
            parse.close()
            self.cleanup()
            if isinstance(exc, InvalidInput | TooLarge):
                raise
            raise InvalidInput(f"malformed multipart body: {exc}") from exc
