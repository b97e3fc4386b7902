"""What a running task prints, as it prints it: stdout and stderr in the order they arrive,
the last `cap` characters kept. The heartbeat sends on what is new (`unsent`); the result
keeps the tail (`tail`)."""

from __future__ import annotations

from gridx.schemas.agent import OUTPUT_CHUNK, OUTPUT_TAIL


class LiveOutput:
    """A bounded, ordered buffer of one task's output."""

    def __init__(self, cap: int = OUTPUT_TAIL) -> None:
        self.cap = cap
        self._buf = bytearray()
        self._start = 0
        """Offset in the whole output of `_buf[0]`."""
        self._sent = 0
        """Offset up to which the heartbeat has sent it."""

    def write(self, chunk: bytes) -> None:
        """Add what a stream just gave."""
        self._buf += chunk
        if len(self._buf) > 2 * self.cap:
            drop = len(self._buf) - self.cap
            del self._buf[:drop]
            self._start += drop

    def unsent(self, limit: int = OUTPUT_CHUNK) -> str:
        """What arrived since the last call, at most `limit` characters (output that scrolled
        past the buffer meanwhile is skipped); marks it sent."""
        begin = max(self._sent, self._start)
        piece = bytes(self._buf[begin - self._start : begin - self._start + limit])
        self._sent = begin + len(piece)
        return piece.decode("utf-8", "replace")[:limit]

    def tail(self) -> str:
        """The last `cap` characters of the whole output."""
        return bytes(self._buf[-self.cap :]).decode("utf-8", "replace")[-self.cap :]
