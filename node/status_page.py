"""A small local page for the machine's owner: who this node is, how it isolates, what it runs.

Served by aiohttp on 127.0.0.1 only (`--status-port`, 0 turns it off): `/` is HTML that
refreshes itself, `/status.json` the same facts for scripts. It never shows the node's token.
"""

from __future__ import annotations

import html
import logging
import re
import time
from typing import Any

import click
from aiohttp import web
from aiohttp.typedefs import Handler

from gridx.node import availability
from gridx.node.worker import Worker
from gridx.schemas.jobs import round_label

log = logging.getLogger("gridx.node.status")
PATH = re.compile(r"(?<![\w.])/[^\s:'\"()]+")


def status(worker: Worker) -> dict[str, Any]:
    """The node's state as plain data."""
    current = worker.current
    return {
        "node_id": worker.ident.node_id,
        "name": worker.config.name,
        "coordinator": worker.config.coordinator_url,
        "executor": worker.executor.name,
        "isolation": worker.executor.isolation,
        "draining": worker.draining,
        "uptime_s": round(time.time() - worker.started_at),
        "tasks_run": worker.tasks_run,
        "current_task": None
        if current is None
        else {
            "task": current.task_id,
            "job": current.job_id,
            "round": current.round,
            "shard": current.shard,
            "phase": worker.phase.step if worker.phase else None,
            "phase_detail": worker.phase.detail if worker.phase else None,
        },
        "caps": {
            "cpus": worker.config.cpus or worker.cpus,
            "memory_mb": worker.budget.task_mb,
            "hours": worker.config.hours or None,
            "when_idle": worker.config.when_idle,
            "paused": (worker.config.state_dir / availability.PAUSED).exists(),
        },
        "memory": {
            "machine_mb": worker.budget.total_mb,
            "free_at_start_mb": worker.budget.free_at_start_mb,
            "cap_mb": worker.config.memory_mb,
            "task_mb": worker.budget.task_mb,
            "warm": worker.config.warm,
            "warm_note": worker.budget.warm_note,
        },
        "recent": list(worker.history),
        "datasets": [
            {"name": d.name, "format": d.format, "rows": d.rows} for d in worker.datasets_sent or []
        ],
        "dataset_problems": {n: _no_paths(why) for n, why in worker.catalog.problems.items()},
        "resting": worker.resting,
        "credits": availability.credits(worker.config.state_dir),
    }


def _no_paths(text: str) -> str:
    """`text` with each absolute path shortened to its last part (the page shows no host paths)."""
    return PATH.sub(lambda m: "…/" + m.group(0).rstrip("/").rsplit("/", 1)[-1], text)


def duration(seconds: float) -> str:
    """Seconds for people: 0.4 s, 17.6 s, 3 min 49 s, 2 h 05 min."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _doing(s: dict[str, Any]) -> str:
    """What the node does now, in a sentence."""
    e = html.escape
    current = s["current_task"]
    if current:
        step = e(current["phase"] or "starting")
        detail = f": {e(current['phase_detail'])}" if current["phase_detail"] else ""
        return (
            f"<b>{step}</b>{detail}, task <b>{e(current['task'])}</b> "
            f"({round_label(current['round'])}, shard {current['shard']})"
        )
    if s["draining"]:
        return "draining: taking no new tasks"
    if s["resting"]:
        return f"resting: {e(s['resting'])}"
    return "idle, waiting for work"


def _caps(caps: dict[str, Any]) -> str:
    """The limits the owner set, as they apply now."""
    when = [f"between {caps['hours']}" if caps["hours"] else "at any hour"]
    if caps["when_idle"]:
        when.append("only while the machine is otherwise idle")
    paused = " <b>Paused</b> (<code>gridx-node resume</code> to lend again)." * caps["paused"]
    return (
        f"Each task gets at most {caps['cpus']} CPU(s) and {caps['memory_mb']} MiB of memory; "
        f"tasks run {', '.join(when)}.{paused}"
    )


def _memory(m: dict[str, Any]) -> str:
    """Where the tasks' memory cap comes from, and why a warm runner is kept or not."""
    why = (
        f"your cap (--memory-mb {m['cap_mb']:,})"
        if m["task_mb"] == m["cap_mb"]
        else f"what was free at start less the node's reserve (your cap: {m['cap_mb']:,} MB)"
    )
    text = (
        f"Memory: this machine has {m['machine_mb']:,} MB, {m['free_at_start_mb']:,} MB were "
        f"free when the node started; a task may use {m['task_mb']:,} MB: {why}."
    )
    if not m["warm"]:
        return text + " Warm runners: off (--no-warm)."
    note = m["warm_note"] or "none needed yet"
    return f"{text} Warm runners (a job's interpreter kept between its tasks): {html.escape(note)}."


def _page(s: dict[str, Any]) -> str:
    e = html.escape
    doing = _doing(s)
    warn = (
        '<p class="warn">No isolation: tasks run as this user with network access. '
        "Install Docker or bubblewrap.</p>"
        if s["isolation"] == "none"
        else ""
    )
    rows = (
        "".join(
            f"<tr><td>{e(str(r['task']))}</td>"
            f"<td>{round_label(int(r['round'])).removeprefix('round ')}</td><td>{r['shard']}</td>"
            f"<td>{e(str(r['result']))}</td><td>{duration(float(r['prepare_seconds']))}</td>"
            f"<td>{duration(float(r['seconds']))}</td></tr>"
            for r in s["recent"]
        )
        or '<tr><td colspan="6">no tasks yet</td></tr>'
    )
    held = "".join(
        f"<li>{e(d['name'])} ({e(d['format'])}, {d['rows']} rows)</li>" for d in s["datasets"]
    ) + "".join(
        f'<li class="warn">{e(n)}: {e(why)}</li>' for n, why in s["dataset_problems"].items()
    )
    offered = (
        f"<h2>Datasets offered</h2><ul>{held}</ul><p>Only these names, formats, columns and "
        "row counts leave this machine.</p>"
        if held
        else ""
    )
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="3"><title>Grid-X node {e(s["node_id"])}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}}
table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ddd;padding:.3rem;
text-align:left}}.warn{{background:#fee;padding:.5rem;border-radius:.3rem}}</style></head><body>
<h1>Grid-X node</h1>{warn}
<p><b>{e(s["node_id"])}</b> ({e(s["name"] or "")}) lends this machine to
<code>{e(s["coordinator"])}</code>.</p>
<p>Executor: <b>{e(s["executor"])}</b>, isolation: <b>{e(s["isolation"])}</b>.
Up {duration(s["uptime_s"])}, {s["tasks_run"]} task(s) run.
This machine has given {s["credits"]["tasks"]:g} task(s),
{duration(s["credits"]["seconds"])} of compute.</p>
<p>{_caps(s["caps"])}</p>
<p>{_memory(s["memory"])}</p>
<p>Now: {doing}.</p>{offered}
<h2>Recent tasks</h2><table><thead><tr><th>task</th><th>round</th><th>shard</th><th>result</th>
<th>preparing</th><th>training</th></tr></thead><tbody>{rows}</tbody></table></body></html>"""


PORT_TRIES = 20
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@web.middleware
async def _local_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer only requests addressed to this machine by name: a web page the owner visits
    cannot read the page through a DNS name it points at 127.0.0.1 (DNS rebinding)."""
    host = (request.headers.get("Host") or "").lower()
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if name not in LOCAL_HOSTS:
        return web.Response(status=421, text="this page answers only http://127.0.0.1\n")
    response = await handler(request)
    response.headers.update(HEADERS)
    return response


async def serve(worker: Worker, port: int) -> web.AppRunner | None:
    """Start the page on 127.0.0.1:`port`, or the next free port after it (the address is
    logged and printed); None, with a warning, when none of `PORT_TRIES` is free."""
    app = web.Application(middlewares=[_local_only])

    async def index(_: web.Request) -> web.Response:
        return web.Response(text=_page(status(worker)), content_type="text/html")

    async def as_json(_: web.Request) -> web.Response:
        return web.json_response(status(worker))

    app.router.add_get("/", index)
    app.router.add_get("/status.json", as_json)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    for candidate in range(port, port + PORT_TRIES):
        try:
            await web.TCPSite(runner, "127.0.0.1", candidate).start()
        except OSError:
            continue
        if candidate != port:
            log.warning("status page: port %d is taken, using %d", port, candidate)
        log.info("status page on http://127.0.0.1:%d/", candidate)
        click.echo(f"status page: http://127.0.0.1:{candidate}/", err=True)
        return runner
    log.warning("status page not started: ports %d-%d are taken", port, port + PORT_TRIES - 1)
    await runner.cleanup()
    return None
