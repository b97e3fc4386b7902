"""Load: many simulated nodes against real coordinator processes (127.0.0.1 only).

Every simulated node registers, then heartbeats every 5 s (jittered); `--workers` of them also
take tasks and complete each at once with a tiny weight file (uploaded through the signed URL,
validated by the coordinator like any other). A feeder keeps jobs queued. Bounded in count and
time; stops by itself.

How a worker takes its tasks (`--protocol`): `poll`, the baseline, long-polls `request_task`
for each (claim, upload, complete: three calls a task); `next` asks each completion for the next
task (`next: true`) and polls only when none came (two calls a task). `both` (the default) runs
the two on fresh coordinators, one after the other, and prints the ratios.

Prints heartbeat p50/p99, claim p50/p99 (request_task calls that returned a task), dispatch
latency (task created -> leased, from the coordinator's own records), tasks completed per second,
errors, and the coordinators' CPU (per task too) and RSS. Last line: one JSON object.

By default one coordinator on SQLite and local disk. `--database postgresql` runs against a
private PostgreSQL and S3 server (SeaweedFS) started for the run, with `--replicas` coordinator
processes sharing them; nodes are spread over the replicas round-robin.

    python bench/load.py [--nodes 2000] [--seconds 60] [--workers 100] [--protocol both]
    python bench/load.py --database postgresql --replicas 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from gridx.coordinator.cli.cluster import LocalCluster

HEARTBEAT_S = 5.0
TRAIN = b"print('simulated')\n"


def tiny_weights() -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + struct.pack("<2f", 1.0, 2.0)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def proc_stats(pid: int) -> tuple[float, float]:
    """(CPU seconds used, RSS in MiB) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = (
        next(
            int(line.split()[1])
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("VmRSS:")
        )
        / 1024
    )
    return cpu, rss


class KeepAlive:
    """A pool of raw HTTP/1.1 keep-alive connections for the heartbeats, the simulator's hot
    path: aiohttp's cost per request would make the simulator, not the coordinator, the limit
    (at 10,000 nodes it could not send the 2,000 heartbeats a second the fleet owes)."""

    def __init__(self, url: str, size: int) -> None:
        host, _, port = url.removeprefix("http://").partition(":")
        self.host, self.port, self.size = host, int(port), size
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self.opened = 0

    async def _conn(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.idle.empty() and self.opened < self.size:
            self.opened += 1
            try:
                return await asyncio.open_connection(self.host, self.port)
            except OSError:
                self.opened -= 1
                raise
        return await self.idle.get()

    def request(self, path: str, token: str) -> bytes:
        """A JSON POST of `{}` with a bearer token, as bytes."""
        return (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            "Content-Length: 2\r\n\r\n{}"
        ).encode()

    async def send(self, request: bytes) -> int:
        """Send a prepared request; returns the response status."""
        reader, writer = await self._conn()
        try:
            writer.write(request)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
        except BaseException:
            writer.close()
            self.opened -= 1
            raise
        self.idle.put_nowait((reader, writer))
        return status


class Load:
    def __init__(self, urls: list[str], key: str, deadline: float, chain: bool = False) -> None:
        self.chain = chain
        """Ask each completion for the next task (`next`)."""
        self.urls, self.key, self.deadline = urls, key, deadline
        self.url = urls[0]
        self.heartbeats: list[float] = []
        self.claims: list[float] = []
        self.completed = 0
        self.errors: dict[str, int] = {}
        self.weights = tiny_weights()
        self.sha = hashlib.sha256(self.weights).hexdigest()
        self.jobs: list[str] = []

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    async def register(self, s: aiohttp.ClientSession, i: int, sem: asyncio.Semaphore) -> str:
        async with (
            sem,
            s.post(
                f"{self.url}/agent/register",
                json={"name": f"sim-{i}"},
                headers={"Authorization": f"Bearer {self.key}"},
            ) as r,
        ):
            if r.status != 201:
                raise RuntimeError(f"register: {r.status} {await r.text()}")
            return str((await r.json())["node_token"])

    async def heartbeat_loop(self, pool: KeepAlive, token: str) -> None:
        request = pool.request("/agent/heartbeat", token)
        await asyncio.sleep(random.uniform(0, HEARTBEAT_S))
        while time.monotonic() < self.deadline:
            t = time.perf_counter()
            try:
                status = await pool.send(request)
                if status != 200:
                    self.error(f"heartbeat {status}")
                else:
                    self.heartbeats.append((time.perf_counter() - t) * 1000)
            except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
                self.error(f"heartbeat {type(exc).__name__}")
            await asyncio.sleep(HEARTBEAT_S)

    async def _poll(self, s: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> Any:
        wait = max(0.0, min(5.0, self.deadline - time.monotonic()))
        t = time.perf_counter()
        async with s.post(
            f"{url}/agent/request_task", params={"wait_s": str(wait)}, headers=headers
        ) as r:
            if r.status == 204:
                return None
            if r.status != 200:
                self.error(f"request_task {r.status}")
                return None
            task = await r.json()
        self.claims.append((time.perf_counter() - t) * 1000)
        return task

    async def worker_loop(self, s: aiohttp.ClientSession, token: str, url: str) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        task = None
        while time.monotonic() < self.deadline:
            try:
                task = task or await self._poll(s, url, headers)
                if task is None:
                    continue
                upload = task["upload_url"]  # the coordinator's route, or presigned S3
                async with s.put(
                    upload if "://" in upload else url + upload, data=self.weights
                ) as r:
                    await r.read()
                    if r.status >= 300:
                        self.error(f"upload {r.status}")
                        task = None
                        continue
                body = {
                    "task_id": task["task_id"],
                    "lease_token": task["lease_token"],
                    "result_sha256": self.sha,
                    "next": self.chain and time.monotonic() < self.deadline - 1,
                }
                task = None
                async with s.post(f"{url}/agent/complete_task", json=body, headers=headers) as r:
                    if r.status == 200:
                        task = (await r.json()).get("next_task")
                        self.completed += 1
                    else:
                        code = (await r.json()).get("code", "") if r.status < 500 else ""
                        self.error(f"complete {r.status} {code}".strip())
            except (aiohttp.ClientError, TimeoutError, KeyError) as exc:
                self.error(f"worker {type(exc).__name__}")
                task = None

    async def feeder(self, s: aiohttp.ClientSession, shards: int) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        while time.monotonic() < self.deadline:
            async with s.get(f"{self.url}/stats/overview", headers=headers) as r:
                queued = (await r.json())["tasks_queued"]
            if queued < shards:
                form = aiohttp.FormData()
                form.add_field("train_py", TRAIN, filename="train.py")
                form.add_field("config", json.dumps({"rounds": 1, "shards": shards}))
                async with s.post(f"{self.url}/jobs/", data=form, headers=headers) as r:
                    if r.status == 201:
                        self.jobs.append((await r.json())["job"]["id"])
                    else:
                        self.error(f"submit {r.status}")
            await asyncio.sleep(0.5)

    async def dispatch_latencies(self, s: aiohttp.ClientSession) -> list[float]:
        out: list[float] = []
        headers = {"Authorization": f"Bearer {self.key}"}
        for job_id in self.jobs[:20]:
            async with s.get(f"{self.url}/jobs/{job_id}", headers=headers) as r:
                detail = await r.json()
            created = detail["job"]["created_at"]
            out += [
                float(t["history"][0]["started_at"] - created)
                for t in detail["tasks"]
                if t["history"]
            ]
        return out


def fleet_stats(pids: list[int]) -> tuple[float, float]:
    """(CPU seconds, RSS MiB) summed over the coordinator replicas."""
    stats = [proc_stats(p) for p in pids]
    return sum(c for c, _ in stats), sum(r for _, r in stats)


async def run(args: argparse.Namespace, cluster: LocalCluster, chain: bool) -> dict[str, Any]:
    pids = [p.pid for p in cluster.replicas if p is not None]
    urls = cluster.urls
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as s:
        load = Load(urls, cluster.api_key, deadline=0, chain=chain)
        sem = asyncio.Semaphore(64)
        t = time.monotonic()
        tokens = await asyncio.gather(*(load.register(s, i, sem) for i in range(args.nodes)))
        print(f"registered {args.nodes} nodes in {time.monotonic() - t:.1f}s", flush=True)
        cpu0, _ = fleet_stats(pids)
        sim0 = time.process_time()
        start = time.monotonic()
        load.deadline = start + args.seconds
        pools = [KeepAlive(u, 256) for u in urls]
        tasks = [
            asyncio.create_task(load.heartbeat_loop(pools[i % len(pools)], tok))
            for i, tok in enumerate(tokens)
        ]
        tasks += [
            asyncio.create_task(load.worker_loop(s, tok, urls[i % len(urls)]))
            for i, tok in enumerate(tokens[: args.workers])
        ]
        tasks.append(asyncio.create_task(load.feeder(s, args.shards)))
        rss_peak = 0.0
        while time.monotonic() < load.deadline:
            await asyncio.sleep(5)
            _, rss = fleet_stats(pids)
            rss_peak = max(rss_peak, rss)
            print(
                f"  t={time.monotonic() - start:4.0f}s heartbeats={len(load.heartbeats)} "
                f"completed={load.completed} errors={sum(load.errors.values())} "
                f"coordinator RSS {rss:.0f} MiB",
                flush=True,
            )
        await asyncio.gather(*tasks, return_exceptions=True)
        elapsed = time.monotonic() - start
        cpu1, rss = fleet_stats(pids)
        sim1 = time.process_time()
        dispatch = await load.dispatch_latencies(s)
    return {
        "nodes": args.nodes,
        "database": args.database,
        "replicas": args.replicas,
        "heartbeat_p50_ms": round(pct(load.heartbeats, 50), 2),
        "heartbeat_p99_ms": round(pct(load.heartbeats, 99), 2),
        "claim_p50_ms": round(pct(load.claims, 50), 2),
        "claim_p99_ms": round(pct(load.claims, 99), 2),
        "dispatch_p50_ms": round(pct(dispatch, 50), 2),
        "tasks_per_s": round(load.completed / elapsed, 1),
        "heartbeats_per_s": round(len(load.heartbeats) / elapsed, 1),
        "errors": sum(load.errors.values()),
        "error_kinds": load.errors,
        "coordinator_cpu_percent": round(100 * (cpu1 - cpu0) / elapsed, 1),
        "cpu_ms_per_task": round(1000 * (cpu1 - cpu0) / max(load.completed, 1), 2),
        "simulator_cpu_percent": round(100 * (sim1 - sim0) / elapsed, 1),
        "coordinator_rss_mb": round(max(rss_peak, rss), 1),
        "mean_heartbeat_ms": round(statistics.fmean(load.heartbeats), 2) if load.heartbeats else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--workers", type=int, default=100, help="nodes that also take tasks")
    parser.add_argument("--shards", type=int, default=500, help="tasks per feeder job")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--replicas", type=int, default=1, help="coordinators (PostgreSQL only)")
    parser.add_argument(
        "--protocol", choices=("poll", "next", "both"), default="both",
        help="how workers take tasks: poll for each, or the next with each completion",
    )  # fmt: skip
    args = parser.parse_args()
    if args.replicas > 1 and args.database == "sqlite":
        parser.error("--replicas > 1 needs --database postgresql (a SQLite file has one owner)")
    protocols = ("poll", "next") if args.protocol == "both" else (args.protocol,)
    results = {p: measure(args, p == "next") for p in protocols}
    for protocol, result in results.items():
        print(
            f"{protocol}: {result['database']} x{result['replicas']}, nodes {result['nodes']}: "
            f"heartbeat p50 {result['heartbeat_p50_ms']} ms, "
            f"p99 {result['heartbeat_p99_ms']} ms ({result['heartbeats_per_s']}/s); "
            f"claim p50 {result['claim_p50_ms']} ms, p99 {result['claim_p99_ms']} ms; "
            f"dispatch p50 {result['dispatch_p50_ms']} ms; {result['tasks_per_s']} tasks/s; "
            f"errors {result['errors']} {result['error_kinds']}; coordinator "
            f"{result['coordinator_cpu_percent']}% CPU, {result['cpu_ms_per_task']} ms a task, "
            f"{result['coordinator_rss_mb']} MiB; simulator {result['simulator_cpu_percent']}% CPU"
        )
    keys = (
        "heartbeat_p50_ms",
        "heartbeat_p99_ms",
        "claim_p99_ms",
        "dispatch_p50_ms",
        "tasks_per_s",
        "cpu_ms_per_task",
        "errors",
        "coordinator_rss_mb",
    )
    last = results[protocols[-1]]
    line: dict[str, Any] = {k: last[k] for k in ("nodes", "database", "replicas")}
    for protocol, result in results.items():
        line |= {f"{protocol}_{k}": result[k] for k in keys}
    if len(results) == 2:
        poll, chained = results["poll"], results["next"]
        line["tasks_per_s_next_vs_poll"] = round(chained["tasks_per_s"] / poll["tasks_per_s"], 2)
        line["cpu_per_task_next_vs_poll"] = round(
            chained["cpu_ms_per_task"] / poll["cpu_ms_per_task"], 2
        )
        print(
            f"next vs poll: {line['tasks_per_s_next_vs_poll']}x the tasks/s, "
            f"{line['cpu_per_task_next_vs_poll']}x the coordinator CPU a task"
        )
    print(json.dumps(line))


def measure(args: argparse.Namespace, chain: bool) -> dict[str, Any]:
    """One run against fresh coordinators (and, for PostgreSQL, fresh servers)."""
    root = Path(tempfile.mkdtemp(prefix="gridx-bench-load-"))
    env = {
        "GRIDX_REGISTER_PER_MINUTE": str(10 * args.nodes + 100),
        "GRIDX_LEASE_S": "60",
        "GRIDX_HEARTBEAT_S": str(HEARTBEAT_S),
    }
    with contextlib.ExitStack() as stack:
        if args.database == "postgresql":
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test suites' servers
            from tests.support.servers import PostgresServer, S3Server

            pg = PostgresServer(Path(tempfile.mkdtemp(prefix="gridx-bench-pg-")))
            s3 = S3Server(root / "s3")
            pg.start()
            stack.callback(pg.stop)
            s3.start()
            stack.callback(s3.stop)
            os.environ.update(s3.env())
            env |= {
                "GRIDX_DATABASE_URL": pg.new_database(),
                "GRIDX_STORAGE_URL": s3.new_bucket_url(),
                "GRIDX_S3_ENDPOINT": s3.endpoint,
            }
        cluster = stack.enter_context(
            LocalCluster(root, coordinator_env=env, replicas=args.replicas)
        )
        return asyncio.run(run(args, cluster, chain))


if __name__ == "__main__":
    main()
