"""Heartbeats buffered in memory and written in batches (one transaction per flush)."""

from __future__ import annotations

Beat = tuple[int, tuple[str, ...]]
"""When a node was heard, and the tasks it said it runs."""


class HeartbeatBuffer:
    """Node id -> its latest heartbeat not yet written."""

    def __init__(self) -> None:
        self._beats: dict[str, Beat] = {}

    def note(self, node_id: str, at: int, running: tuple[str, ...]) -> None:
        """A node was heard at `at` (epoch ms), running `running`."""
        self._beats[node_id] = (at, running)

    def last_seen(self, node_id: str) -> int:
        """When the node was last heard, as far as the buffer knows (0: not since the flush)."""
        return self._beats.get(node_id, (0, ()))[0]

    def take(self) -> dict[str, Beat]:
        """Everything buffered, leaving the buffer empty."""
        beats, self._beats = self._beats, {}
        return beats

    def put_back(self, beats: dict[str, Beat]) -> None:
        """Return beats whose write failed; newer ones noted meanwhile win."""
        for node_id, beat in beats.items():
            self._beats[node_id] = max(beat, self._beats.get(node_id, (0, ())))
