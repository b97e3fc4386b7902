"""`gridx job logs`: what every attempt of a job's tasks printed, and how it ended; with
`--follow`, a running task's lines as they arrive (sent on with its node's heartbeats), until
the job has ended and its last attempt is in."""

from __future__ import annotations

import time

import click

from gridx.coordinator.cli.client import ApiClient, to_json
from gridx.coordinator.cli.options import client_options, json_option
from gridx.coordinator.cli.progress import poll
from gridx.coordinator.cli.screen import line
from gridx.schemas.jobs import FINISHED, JobDetail, TaskInfo, round_label

FOLLOW_S = 1.0


def _header(t: TaskInfo, attempt: int, node: str, outcome: str) -> str:
    what = "evaluation" if t.kind == "evaluate" else f"shard {t.shard}"
    return f"== {round_label(t.round)}, {what}, attempt {attempt} on {node} ({t.id}): {outcome}"


def _new_text(old: str, new: str) -> str:
    """What `new` adds to `old` (a tail that may have scrolled: `old`'s end is found in it)."""
    if new.startswith(old):
        return new[len(old) :]
    anchor = old[-200:]
    cut = new.rfind(anchor) if anchor else -1
    return new[cut + len(anchor) :] if cut >= 0 else new


class Follower:
    """Prints each attempt once it appears, its output as it grows, its end once it ends."""

    def __init__(self, task_id: str | None) -> None:
        self.task_id = task_id
        self.printed: dict[tuple[str, int], str] = {}
        self.ended: set[tuple[str, int]] = set()

    def show(self, d: JobDetail) -> bool:
        """Print what is new; whether anything is still running."""
        running = False
        for t in d.tasks:
            if self.task_id not in (None, t.id):
                continue
            for a in t.history:
                key = (t.id, a.attempt)
                err = f" [{a.error_code}] {a.error}" if a.error else ""
                if key not in self.printed:
                    state = "running" if a.outcome is None else f"{a.outcome}{err}"
                    line(_header(t, a.attempt, a.node_id, state))
                    self.printed[key] = ""
                    if a.outcome is not None:
                        self.ended.add(key)
                text = a.stderr_tail or ""
                for out in _new_text(self.printed[key], text).splitlines():
                    line(f"   {out}")
                self.printed[key] = text
                if a.outcome is None:
                    running = True
                elif key not in self.ended:
                    self.ended.add(key)
                    line(f"== {t.id} attempt {a.attempt}: {a.outcome}{err}")
        return running


@click.command("logs")
@click.argument("job_id")
@click.option("--task", "task_id", help="Only this task's attempts.")
@click.option(
    "--follow", "-f", is_flag=True, help="Show running tasks' lines as they come, until the end."
)
@client_options
@json_option
def job_logs(
    job_id: str, task_id: str | None, follow: bool, client: ApiClient, as_json: bool
) -> None:
    """Every attempt of every task: its node, how it ended, and what it printed (the last
    16 KB of its output; a failed one's stderr)."""
    d = client.job(job_id)
    if task_id is not None and all(t.id != task_id for t in d.tasks):
        raise click.ClickException(f"job {job_id} has no task {task_id!r}")
    if as_json:
        tasks = [t for t in d.tasks if task_id in (None, t.id)]
        click.echo(to_json([{"task": t.id, "attempts": t.history} for t in tasks]))
        return
    shown = Follower(task_id)
    running = shown.show(d)
    while follow and (running or d.job.status not in FINISHED):
        time.sleep(FOLLOW_S)
        d = poll(client, job_id)
        running = shown.show(d)
