"""Heartbeats buffered in memory and written in batches (one transaction per flush)."""

from __future__ import annotations

from gridx.schemas.agent import OUTPUT_TAIL

Phase = tuple[str, str, str] | tuple[()]
"""(task id, step, detail) of what a node said it does with its task; () when it said nothing."""
Beat = tuple[int, tuple[str, ...], Phase]
"""When a node was heard, the tasks it said it runs, and what it does with them."""


class HeartbeatBuffer:
    """Node id -> its latest heartbeat not yet written."""

    def __init__(self) -> None:
        self._beats: dict[str, Beat] = {}
        self._output: dict[tuple[str, str], str] = {}

    def add_output(self, node_id: str, task_id: str, text: str) -> None:
        """What a running task printed since its node's last heartbeat (appended in order)."""
        key = (node_id, task_id)
        self._output[key] = (self._output.get(key, "") + text)[-OUTPUT_TAIL:]

    def take_output(self) -> dict[tuple[str, str], str]:
        """(node, task) -> output not yet written, leaving none."""
        output, self._output = self._output, {}
        return output

    def put_back_output(self, output: dict[tuple[str, str], str]) -> None:
        """Return output whose write failed, before what arrived meanwhile."""
        for key, text in output.items():
            self._output[key] = (text + self._output.get(key, ""))[-OUTPUT_TAIL:]

    def note(self, node_id: str, at: int, running: tuple[str, ...], phase: Phase = ()) -> None:
        """A node was heard at `at` (epoch ms), running `running`, doing `phase`."""
        self._beats[node_id] = (at, running, phase)

    def last_seen(self, node_id: str) -> int:
        """When the node was last heard, as far as the buffer knows (0: not since the flush)."""
        return self._beats.get(node_id, (0, (), ()))[0]

    def take(self) -> dict[str, Beat]:
        """Everything buffered, leaving the buffer empty."""
        beats, self._beats = self._beats, {}
        return beats

    def put_back(self, beats: dict[str, Beat]) -> None:
        """Return beats whose write failed; newer ones noted meanwhile win."""
        for node_id, beat in beats.items():
            mine = self._beats.get(node_id)
            if mine is None or mine[0] < beat[0]:
                self._beats[node_id] = beat
