"""When the owner lends the machine: paused or not (`gridx-node pause|resume`, a file in the
state folder, so it works while the node runs and across restarts), within its hours
(`--hours 22-07`), only while the machine is otherwise idle (`--when-idle`); and the owner's own
tally of what the machine gave (`credits.json`), kept on the machine whatever the coordinator
says."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

PAUSED = "paused"
CREDITS = "credits.json"
_HOURS = re.compile(r"^(\d{1,2})-(\d{1,2})$")


def parse_hours(spec: str) -> tuple[int, int] | None:
    """`22-07` as (22, 7): from 22:00 to 07:00 (the span may wrap past midnight); "" as None.

    Raises:
        ValueError: not HH-HH with hours 0..24 and two different ends.
    """
    if not spec:
        return None
    m = _HOURS.match(spec.strip())
    if not m or not all(0 <= int(h) <= 24 for h in m.groups()) or m.group(1) == m.group(2):
        raise ValueError(f"hours {spec!r}: use START-END in whole hours, e.g. 22-07 or 9-17")
    return int(m.group(1)) % 24, int(m.group(2)) % 24


def within(hours: tuple[int, int], hour: int) -> bool:
    """Whether `hour` (0..23) lies in [start, end), wrapping past midnight."""
    start, end = hours
    return start <= hour < end if start < end else hour >= start or hour < end


@dataclass(frozen=True)
class Schedule:
    """The owner's terms."""

    hours: tuple[int, int] | None = None
    when_idle: bool = False
    idle_load: float = 0.5
    """`--when-idle`: the 1-minute load average per core above which the machine is busy."""

    def why_not(self, state_dir: Path, now: dt.datetime, load: float, cpus: int) -> str | None:
        """Why the node takes no task now (None: it may). `load` excludes the node's own task,
        which has ended when this is asked."""
        if (state_dir / PAUSED).exists():
            return "paused by its owner (gridx-node resume)"
        if self.hours is not None and not within(self.hours, now.hour):
            return f"outside its hours ({self.hours[0]:02d}:00-{self.hours[1]:02d}:00)"
        if self.when_idle and load > self.idle_load * max(cpus, 1):
            return f"the machine is busy (load {load:.2f} on {cpus} cores)"
        return None


def pause(state_dir: Path) -> None:
    """Take no new task until `resume` (a running task finishes)."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    (state_dir / PAUSED).write_text(dt.datetime.now().isoformat(timespec="seconds") + "\n")


def resume(state_dir: Path) -> bool:
    """Take tasks again; False when the node was not paused."""
    try:
        (state_dir / PAUSED).unlink()
    except FileNotFoundError:
        return False
    return True


def credits(state_dir: Path) -> dict[str, float]:
    """What this machine gave: tasks completed and seconds of compute."""
    with contextlib.suppress(FileNotFoundError, ValueError):
        raw = json.loads((state_dir / CREDITS).read_text())
        return {"tasks": int(raw.get("tasks", 0)), "seconds": float(raw.get("seconds", 0.0))}
    return {"tasks": 0, "seconds": 0.0}


def credit(state_dir: Path, seconds: float) -> dict[str, float]:
    """Count one completed task of `seconds` (written atomically); the new tally."""
    tally = credits(state_dir)
    tally = {"tasks": tally["tasks"] + 1, "seconds": round(tally["seconds"] + seconds, 3)}
    fd, tmp = tempfile.mkstemp(dir=state_dir, prefix=".credits-")
    with os.fdopen(fd, "w") as fh:
        json.dump(tally, fh)
    os.replace(tmp, state_dir / CREDITS)
    return tally
