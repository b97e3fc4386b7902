"""Watching a job from the terminal: one progress bar per round, then its metrics."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable

import click

from gridx.coordinator.cli.client import ApiClient, Unreachable
from gridx.coordinator.cli.screen import line
from gridx.schemas.jobs import FINISHED, INIT_ROUND, JobDetail, round_label

COUNTS = re.compile(r"(^|_)(samples|examples|rows|count|steps|batches|epochs|n)$|^(num|n)_")
"""Metric names that count things: printed as whole numbers (`samples=2400`, not 2400.0000)."""


WAIT_SHOWN_S = 3.0
"""A round that waits this long says why (`JobDetail.waiting`) under its bar."""


def format_metrics(metrics: dict[str, float] | None) -> str:
    """`loss=0.1234 accuracy=0.9650 samples=2400`."""
    shown = (
        f"{k}={int(v)}" if COUNTS.search(k) and float(v).is_integer() else f"{k}={v:.4f}"
        for k, v in (metrics or {}).items()
    )
    return " ".join(shown) or "(no metrics)"


def last_failure(detail: JobDetail) -> str:
    """The attempt that failed first, with its stderr tail, for a failed job (never the
    cancellations that followed it, nor a node handing its task back)."""
    attempts = [
        (t, a)
        for t in detail.tasks
        for a in t.history
        if a.error and a.outcome not in ("cancelled", "released", "succeeded")
    ]
    if not attempts:
        return ""
    task, first = min(attempts, key=lambda ta: (ta[1].finished_at or 0, ta[1].attempt))
    tail = (first.stderr_tail or "").strip()
    where = f"{round_label(task.round)}, shard {task.shard}, try {first.attempt}"
    text = (
        f"first failed attempt ({where}, node {first.node_id}): [{first.error_code}] {first.error}"
    )
    if tail:
        text += "\n--- stderr (tail) ---\n" + "\n".join(tail.splitlines()[-15:])
    return text


def watch(
    client: ApiClient,
    job_id: str,
    poll_s: float = 0.3,
    quiet: bool = False,
    check: Callable[[], None] | None = None,
) -> JobDetail:
    """Follow a job until it finishes, drawing a bar per round (nothing when `quiet`); `check`
    runs at every poll (the demo's: raise when one of its nodes died)."""
    detail = poll(client, job_id)
    rounds, shards = detail.config.rounds, detail.config.shards
    init = any(x.index == INIT_ROUND for x in detail.rounds)
    held: set[int] = set()  # rounds whose held-out line is printed (each as soon as it is in)
    for r in [INIT_ROUND, *range(rounds)] if init else range(rounds):
        detail = _bar(client, job_id, r, shards, rounds, poll_s, quiet, check)
        rnd = next((x for x in detail.rounds if x.index == r), None)
        if rnd is not None and rnd.status == "done" and not quiet and r != INIT_ROUND:
            line(f"  round {r + 1} training: {format_metrics(rnd.metrics)}")
        _held_out(detail, held, quiet)
        if detail.job.status in FINISHED and (rnd is None or rnd.status != "done"):
            break
    while not detail.settled:  # a job with a held-out evaluation: its last round's too
        time.sleep(poll_s)
        detail = poll(client, job_id)
    _held_out(detail, held, quiet)
    return detail


def _bar(
    client: ApiClient,
    job_id: str,
    r: int,
    shards: int,
    rounds: int,
    poll_s: float,
    quiet: bool,
    check: Callable[[], None] | None,
) -> JobDetail:
    """Draw round `r`'s bar until the round is done or the job finished; the last detail."""
    with click.progressbar(
        length=1 if r == INIT_ROUND else shards,
        label="initial model" if r == INIT_ROUND else f"round {r + 1}/{rounds}",
        show_eta=False,
        file=io.StringIO() if quiet else None,
    ) as bar:
        shown = 0
        said: str | None = None
        began = time.monotonic()
        while True:
            if check is not None:
                check()
            detail = poll(client, job_id)
            train = [t for t in detail.tasks if t.round == r and t.kind == "train"]
            if r != INIT_ROUND and train:  # a local-data round has one task per holder
                bar.length = len({t.shard for t in train})
            done = len({t.shard for t in train if t.status == "succeeded"})
            if done > shown:
                bar.update(done - shown)
                shown = done
            rnd = next((x for x in detail.rounds if x.index == r), None)
            if detail.job.status in FINISHED or (rnd is not None and rnd.status == "done"):
                return detail
            if detail.waiting != said and time.monotonic() - began > WAIT_SHOWN_S and not quiet:
                said = detail.waiting  # (a moment's wait between two tasks is not news)
                if said:
                    line(f"\n  waiting: {said}", err=True)
            time.sleep(poll_s)


def poll(client: ApiClient, job_id: str, patience_s: float = 600.0) -> JobDetail:
    """The job's detail; while the coordinator does not answer (a restart), asked again every
    second for up to `patience_s`: the job goes on without us watching.

    Raises:
        Unreachable: it did not come back in time.
    """
    deadline = time.monotonic() + patience_s
    lost = False
    while True:
        try:
            detail = client.job(job_id)
        except Unreachable as exc:
            if time.monotonic() > deadline:
                raise
            if not lost:
                line(f"\n{exc.message}; asking again every second (the job goes on)", err=True)
                lost = True
            time.sleep(1.0)
            continue
        if lost:
            line("the coordinator answers again", err=True)
        return detail


def _held_out(detail: JobDetail, printed: set[int], quiet: bool) -> None:
    for rnd in detail.rounds:
        if rnd.held_out is not None and rnd.index not in printed:
            printed.add(rnd.index)
            if not quiet:
                line(f"  round {rnd.index + 1} held-out: {format_metrics(rnd.held_out)}")
