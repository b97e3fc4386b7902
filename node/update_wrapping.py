"""What the node adds to a training task's output before it leaves: client-side clipping and
compressed updates, done by `task_wrapper` inside the task's sandbox; and top-k's error
feedback, which the node carries from one task of a job to its next on this machine."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from gridx.node import task_wrapper
from gridx.node.outputs import UnsafeOutput, open_output
from gridx.schemas.agent import TaskAssignment

WRAPPER = "gridx_wrapper.py"
"""Runs the job's script, then clips or encodes the model it wrote; in the sandbox."""
RESIDUAL = "gridx_residual.pt"
"""Top-k's residual in the task's folder: what earlier updates of the job did not send."""
KEPT_JOBS = 8
"""Residuals of this many jobs are kept (the most recently used); older ones are deleted."""


def wrap(task: TaskAssignment, workdir: Path, script: str, env: dict[str, str], kept: Path) -> str:
    """Set the task up to clip or compress its update: the script to run instead of `script`
    (`script` itself when the task asks for neither). `kept`: where the node keeps the job's
    top-k residual between its tasks."""
    if task.client_clip is None and task.compress is None:
        return script
    (workdir / WRAPPER).write_text(Path(task_wrapper.__file__).read_text())
    env["GRIDX_SCRIPT"] = script
    if task.client_clip is not None:
        env["GRIDX_CLIP_NORM"] = repr(task.client_clip)
    if task.compress is not None:
        env["GRIDX_COMPRESS"] = task.compress
    if task.compress is not None and task.compress.startswith("topk"):
        if kept.is_file():
            shutil.copyfile(kept, workdir / RESIDUAL)
        env["GRIDX_RESIDUAL"] = str(workdir / RESIDUAL)
    return WRAPPER


def keep_residual(task: TaskAssignment, workdir: Path, kept: Path, cap: int) -> None:
    """After a task that succeeded: keep what its top-k update left out for the job's next task
    here (read as the task's untrusted output: a plain file of at most `cap` bytes, else
    dropped)."""
    if task.compress is None or not task.compress.startswith("topk"):
        return
    try:
        fd = open_output(workdir, RESIDUAL, cap)
    except UnsafeOutput:
        fd = None
    if fd is None:
        kept.unlink(missing_ok=True)
        return
    kept.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(fd, "rb") as src, open(f"{kept}.tmp", "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.replace(f"{kept}.tmp", kept)
    _prune(kept.parent)


def _prune(folder: Path) -> None:
    """Delete the residuals of all but the `KEPT_JOBS` jobs that used theirs last."""
    found = sorted(folder.glob("*.pt"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in found[KEPT_JOBS:]:
        old.unlink(missing_ok=True)
