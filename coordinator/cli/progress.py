"""Watching a job from the terminal: one progress bar per round, then its metrics (an async
job: one bar of server steps, with throughput and staleness)."""

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
    word = "step" if detail.config.mode == "async" else "round"
    if detail.config.mode == "async":
        if init:
            detail = _bar(client, job_id, INIT_ROUND, shards, rounds, poll_s, quiet, check)
        detail = _steps(client, job_id, poll_s, quiet, check, held)
    else:
        detail = _rounds(client, job_id, init, poll_s, quiet, check, held)
    while not detail.settled:  # a job with a held-out evaluation: its last round's too
        time.sleep(poll_s)
        detail = poll(client, job_id)
    _held_out(detail, held, quiet, word)
    return detail


def _rounds(
    client: ApiClient,
    job_id: str,
    init: bool,
    poll_s: float,
    quiet: bool,
    check: Callable[[], None] | None,
    held: set[int],
) -> JobDetail:
    """A sync job's bars, one per round, each followed by its metrics; the last detail."""
    detail = poll(client, job_id)
    rounds, shards = detail.config.rounds, detail.config.shards
    for r in [INIT_ROUND, *range(rounds)] if init else range(rounds):
        detail = _bar(client, job_id, r, shards, rounds, poll_s, quiet, check)
        rnd = next((x for x in detail.rounds if x.index == r), None)
        if rnd is not None and rnd.status == "done" and not quiet and r != INIT_ROUND:
            line(f"  round {r + 1} training: {format_metrics(rnd.metrics)}")
        _held_out(detail, held, quiet)
        if detail.job.status in FINISHED and (rnd is None or rnd.status != "done"):
            break
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


def steps_summary(detail: JobDetail) -> str:
    """An async job's progress in words: `12 updates merged, 3.1 updates/s, staleness mean 0.8
    (max 3)`."""
    done = [r for r in detail.rounds if r.index >= 0 and r.status == "done"]
    behind = [s for r in done for s in r.staleness]
    if not behind:
        return "no step merged yet"
    first = min(r.started_at for r in done)
    span_s = max(max(r.finished_at or 0 for r in done) - first, 1) / 1000
    return (
        f"{len(behind)} updates merged, {len(behind) / span_s:.1f} updates/s, "
        f"staleness mean {sum(behind) / len(behind):.1f} (max {max(behind)})"
    )


def _steps(
    client: ApiClient,
    job_id: str,
    poll_s: float,
    quiet: bool,
    check: Callable[[], None] | None,
    held: set[int],
) -> JobDetail:
    """An async job's one bar: server steps merged, with throughput and staleness beside it."""
    detail = poll(client, job_id)
    with click.progressbar(
        length=detail.config.rounds,
        label="server steps",
        show_eta=False,
        item_show_func=lambda text: text,
        file=io.StringIO() if quiet else None,
    ) as bar:
        shown = 0
        while True:
            if check is not None:
                check()
            detail = poll(client, job_id)
            done = sum(1 for r in detail.rounds if r.index >= 0 and r.status == "done")
            bar.update(done - shown, current_item=steps_summary(detail))
            shown = done
            if detail.job.status in FINISHED:
                break
            time.sleep(poll_s)
    _held_out(detail, held, quiet, word="step")
    return detail


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


def _held_out(detail: JobDetail, printed: set[int], quiet: bool, word: str = "round") -> None:
    for rnd in detail.rounds:
        if rnd.held_out is not None and rnd.index not in printed:
            printed.add(rnd.index)
            if not quiet:
                line(f"  {word} {rnd.index + 1} held-out: {format_metrics(rnd.held_out)}")
