"""What a job did and what it made: `gridx job status` (rounds with metrics, tasks with nodes
and attempts) and `gridx job download` (the final model or a round's checkpoint)."""

from __future__ import annotations

import time

import click
import msgspec

from gridx.coordinator.cli.client import ApiClient, to_json
from gridx.coordinator.cli.options import client_options, destination, json_option
from gridx.coordinator.cli.progress import format_metrics, last_failure, steps_summary
from gridx.coordinator.cli.screen import line, text
from gridx.schemas.jobs import FINISHED, JobConfig, TaskInfo, round_label, step_label


def took(ms: int) -> str:
    """`4.2s`, `3m05s`, `2h01m`."""
    secs = max(ms, 0) / 1000
    if secs < 60:
        return f"{secs:.1f}s"
    minutes, sec = divmod(int(secs), 60)
    return f"{minutes}m{sec:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def task_state(t: TaskInfo, now_ms: int) -> str:
    """What a task is doing and for how long: `running 12.0s` (its node's phase while leased),
    `succeeded in 4.2s` (its last attempt), `queued`."""
    last = t.history[-1] if t.history else None
    if t.status == "leased":
        return f"{t.phase or 'leased'} {took(now_ms - last.started_at)}" if last else "leased"
    if last is not None and last.finished_at is not None:
        return f"{t.status} in {took(last.finished_at - last.started_at)}"
    return t.status


def _describe(config: JobConfig) -> str:
    """`krum(f=1, m=1)`."""
    s = msgspec.to_builtins(config.strategy)
    args = ", ".join(f"{k}={v}" for k, v in s.items() if k != "name" and v is not None)
    return f"{config.strategy.name}({args})"


# --- jobs ------------------------------------------------------------------------------------
@click.command("status")
@click.argument("job_id")
@client_options
@json_option
def job_status(job_id: str, client: ApiClient, as_json: bool) -> None:
    """One job: rounds with metrics, tasks with nodes and attempts."""
    d = client.job(job_id)
    if as_json:
        click.echo(to_json(d))
        return
    j = d.job
    now = int(time.time() * 1000)
    span = took((j.updated_at if j.status in FINISHED else now) - j.created_at)
    ran = f"ran {span}" if j.status in FINISHED else f"for {span}"
    line(f"{j.id}  {j.name}  [{j.status}, {ran}]  owner {j.owner}")
    c = d.config
    click.echo(
        f"config: rounds={c.rounds} shards={c.shards} epochs={c.epochs} strategy={_describe(c)} "
        f"timeout={c.task_timeout_s}s max_attempts={c.max_attempts} seed={c.seed}"
    )
    if c.mode == "async":
        stale = "" if c.max_staleness is None else f" max_staleness={c.max_staleness}"
        line(
            f"mode: async, a server step every {c.step_size} updates, staleness weight "
            f"(1+s)^-{c.staleness_exponent:g}{stale}; {steps_summary(d)}"
        )
    if c.dataset:
        line(f"data: dataset {c.dataset!r} on the nodes that hold it (never uploaded)")
    if d.uploaded_bytes or c.compress:
        how = f"{c.compress} updates" if c.compress else "whole models"
        line(f"traffic: {_mb(d.uploaded_bytes)} uploaded by the nodes ({how})")
    if d.waiting:
        line(f"waiting: {d.waiting}")
    for r in d.rounds:
        name = step_label(r.index) if c.mode == "async" else round_label(r.index)
        held_out = f"  held-out: {format_metrics(r.held_out)}" if r.held_out else ""
        eps = f"  epsilon={r.epsilon:.3g} (delta {d.delta:.3g})" if r.epsilon and d.delta else ""
        who = f"  nodes: {', '.join(r.nodes)}" if c.dataset and r.nodes else ""
        who += f"  sent: {_mb(r.uploaded_bytes)}" if r.uploaded_bytes else ""
        if r.staleness:
            who += f"  staleness: {' '.join(map(str, r.staleness))}"
        line(f"  {name}: {r.status:<11} {format_metrics(r.metrics)}{held_out}{eps}{who}")
        for left_out in r.excluded:
            line(f"    left out: {left_out}")
    for t in d.tasks:
        err = f"  [{t.error_code}] {t.error}" if t.error else ""
        what = "evaluation" if t.kind == "evaluate" else f"shard {t.shard}"
        node = t.node_name or t.node_id or "-"
        line(
            f"    {round_label(t.round)} {what}: {task_state(t, now):<20} node={node} "
            f"attempts={t.attempts}/{t.max_attempts} losses={t.losses}/{t.max_losses} "
            f"rows={t.rows}{err}"
        )
    if j.status == "failed":
        line(f"error: {j.error}")
        text(last_failure(d))
    elif j.error:  # a job that ended early on purpose (its privacy budget) says why
        line(f"note: {j.error}")


def _mb(size: int) -> str:
    return f"{size / 1e6:,.2f} MB"


@click.command("download")
@click.argument("job_id")
@click.option(
    "--format", "fmt", type=click.Choice(["pth", "safetensors"]), default="pth", show_default=True
)
@click.option(
    "--out",
    type=click.Path(),  # (a str: "models/" keeps the slash that says it is a folder)
    default=None,
    help="File to write, or a folder to write final_model.<format> in (default: here).",
)
@click.option(
    "--round", "round_n", type=click.IntRange(1), help="That round's merged model (a checkpoint)."
)
@client_options
def job_download(
    job_id: str, fmt: str, out: str | None, round_n: int | None, client: ApiClient
) -> None:
    """Download a job's final model, or with --round N the model merged in round N (while the
    job runs, and for its last --keep-rounds rounds after it ended, cancelled or failed too)."""
    name = f"final_model.{fmt}" if round_n is None else f"round_{round_n}.{fmt}"
    round_idx = None if round_n is None else round_n - 1
    path = client.download(job_id, fmt, destination(out, name), round_idx)
    click.echo(str(path))
