"""Streaming multipart/form-data: each file part goes straight to a temp file, with its own cap."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.multipart import MultipartParser, parse_options_header

from gridx.coordinator.errors import InvalidInput, TooLarge
from gridx.coordinator.storage.base import Storage


@dataclass
class FormPart:
    """A received part: in memory (`value`) for plain fields, on disk (`path`) for files."""

    name: str
    filename: str | None
    size: int = 0
    path: Path | None = None
    value: bytearray = field(default_factory=bytearray)


@dataclass
class _State:
    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    headers: dict[str, bytes] = field(default_factory=dict)
    current: FormPart | None = None
    fh: object = None


class MultipartReceiver:
    """Parses a multipart body from a byte stream.

    Args:
        storage: where file parts are spooled (its temp folder).
        limits: per-field byte caps; a field not named here is refused.
    """

    def __init__(self, storage: Storage, limits: dict[str, int]) -> None:
        self.storage = storage
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
        st = _State()
        error: list[Exception] = []

        def on_header_field(data: bytes, start: int, end: int) -> None:
            st.header_field += data[start:end]

        def on_header_value(data: bytes, start: int, end: int) -> None:
            st.header_value += data[start:end]

        def on_header_end() -> None:
            st.headers[bytes(st.header_field).decode("latin-1").lower()] = bytes(st.header_value)
            st.header_field.clear()
            st.header_value.clear()

        def on_headers_finished() -> None:
            _, disp = parse_options_header(st.headers.get("content-disposition", b""))
            name = disp.get(b"name", b"").decode("utf-8", "replace")
            filename = disp.get(b"filename")
            st.headers.clear()
            if name not in self.limits:
                error.append(InvalidInput(f"unexpected form field {name!r}", field=name))
                return
            if name in self.parts:
                error.append(InvalidInput(f"form field {name!r} given twice", field=name))
                return
            part = FormPart(
                name=name, filename=filename.decode("utf-8", "replace") if filename else None
            )
            if part.filename is not None:
                part.path = self.storage.temp_path()
                st.fh = part.path.open("wb")
            self.parts[name] = part
            st.current = part

        def on_part_data(data: bytes, start: int, end: int) -> None:
            part = st.current
            if part is None or error:
                return
            part.size += end - start
            if part.size > self.limits[part.name]:
                error.append(
                    TooLarge(f"{part.name!r} is over its limit of {self.limits[part.name]} bytes")
                )
                return
            if st.fh is not None:
                st.fh.write(data[start:end])  # type: ignore[attr-defined]
            else:
                part.value += data[start:end]

        def on_part_end() -> None:
            if st.fh is not None:
                st.fh.close()  # type: ignore[attr-defined]
                st.fh = None
            st.current = None

        parser = MultipartParser(
            boundary,
            {
                "on_header_field": on_header_field,
                "on_header_value": on_header_value,
                "on_header_end": on_header_end,
                "on_headers_finished": on_headers_finished,
                "on_part_data": on_part_data,
                "on_part_end": on_part_end,
            },
        )
        try:
            async for chunk in chunks:
                parser.write(chunk)
                if error:
                    raise error[0]
            parser.finalize()
            if error:
                raise error[0]
        except Exception as exc:
            if st.fh is not None:
                st.fh.close()  # type: ignore[attr-defined]
            self.cleanup()
            if isinstance(exc, InvalidInput | TooLarge):
                raise
            raise InvalidInput(f"malformed multipart body: {exc}") from exc
