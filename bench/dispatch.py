"""Dispatch latency: time from a task becoming ready to a long-polling node holding it.

One real coordinator process on 127.0.0.1 (SQLite, local storage) and a few long-polling nodes
(aiohttp, in this process). Tasks are submitted one at a time; for each, the latency is the
coordinator's own record: the attempt's start (lease granted) minus the task's creation, both in
integer milliseconds from the coordinator's clock.

Baseline: the seed's nodes polled every 10 s. A task that becomes ready at a random point of a
node's polling period waits for the next poll: uniform on [0, 10 s), mean 5 s. For each measured
task the bench draws that node's phase (seeded) and prints the resulting waits next to ours.

    python bench/dispatch.py [--tasks 200] [--pollers 4]
Last line: {"tasks": N, "dispatch_p50_ms": x, "dispatch_p99_ms": y, "vs_seed_polling": ratio}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from gridx.coordinator.cli.cluster import LocalCluster

SEED_POLL_S = 10.0
TRAIN = b"import torch\ntorch.save({'w': torch.zeros(1)}, 'model.pth')\n"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def poller(
    session: aiohttp.ClientSession,
    url: str,
    token: str,
    stop: asyncio.Event,
    held: asyncio.Queue[str],
) -> None:
    """A node that long-polls and reports each task it is handed."""
    headers = {"Authorization": f"Bearer {token}"}
    while not stop.is_set():
        async with session.post(
            f"{url}/agent/request_task", params={"wait_s": "5"}, headers=headers
        ) as resp:
            if resp.status == 200:
                await held.put((await resp.json())["job_id"])


async def run(tasks: int, pollers: int) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="gridx-bench-dispatch-"))
    with LocalCluster(root) as cluster:
        auth = {"Authorization": f"Bearer {cluster.api_key}"}
        async with aiohttp.ClientSession() as session:
            tokens = []
            for i in range(pollers):
                async with session.post(
                    f"{cluster.url}/agent/register", json={"name": f"p{i}"}, headers=auth
                ) as r:
                    tokens.append((await r.json())["node_token"])
            stop, held = asyncio.Event(), asyncio.Queue[str]()
            workers = [
                asyncio.create_task(poller(session, cluster.url, t, stop, held)) for t in tokens
            ]
            await asyncio.sleep(0.5)  # every poller is parked in its long-poll
            latencies, ready = [], []
            for i in range(tasks):
                form = aiohttp.FormData()
                form.add_field("train_py", TRAIN, filename="train.py")
                form.add_field("config", json.dumps({"rounds": 1, "shards": 1, "name": f"b{i}"}))
                async with session.post(f"{cluster.url}/jobs/", data=form, headers=auth) as r:
                    job_id = (await r.json())["job"]["id"]
                got = await asyncio.wait_for(held.get(), 10)
                assert got == job_id, (got, job_id)
                async with session.get(f"{cluster.url}/jobs/{job_id}", headers=auth) as r:
                    detail = await r.json()
                created = detail["job"]["created_at"]
                started = detail["tasks"][0]["history"][0]["started_at"]
                latencies.append(float(started - created))
                ready.append(created / 1000)
                await asyncio.sleep(random.uniform(0, 0.02))  # de-synchronise from the pollers
                if (i + 1) % 50 == 0:
                    print(f"  {i + 1}/{tasks} tasks dispatched", flush=True)
            stop.set()
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
    rng = random.Random(42)
    seed_waits = [((rng.uniform(0, SEED_POLL_S) - t) % SEED_POLL_S) * 1000 for t in ready]
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    seed_p50 = percentile(seed_waits, 50)
    return {
        "tasks": tasks,
        "dispatch_p50_ms": p50,
        "dispatch_p99_ms": p99,
        "dispatch_mean_ms": round(statistics.fmean(latencies), 3),
        "seed_p50_ms": round(seed_p50, 1),
        "seed_mean_ms": round(statistics.fmean(seed_waits), 1),
        # resolution is 1 ms, so a 0 ms median counts as 1 ms here
        "vs_seed_polling": round(seed_p50 / max(p50, 1.0), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--pollers", type=int, default=4)
    args = parser.parse_args()
    started = time.monotonic()
    print(f"dispatch latency over {args.tasks} tasks, {args.pollers} long-polling nodes")
    result = asyncio.run(run(args.tasks, args.pollers))
    print(
        f"Grid-X long-poll : p50 {result['dispatch_p50_ms']:.0f} ms, "
        f"p99 {result['dispatch_p99_ms']:.0f} ms, mean {result['dispatch_mean_ms']:.2f} ms"
    )
    print(
        f"seed 10 s polling: p50 {result['seed_p50_ms']:.0f} ms, "
        f"mean {result['seed_mean_ms']:.0f} ms (same ready times)"
    )
    print(
        f"ratio (seed p50 / Grid-X p50): {result['vs_seed_polling']}x  "
        f"[{time.monotonic() - started:.1f}s]"
    )
    print(
        json.dumps(
            {
                k: result[k]
                for k in ("tasks", "dispatch_p50_ms", "dispatch_p99_ms", "vs_seed_polling")
            }
        )
    )


if __name__ == "__main__":
    main()
