"""Soak: many small jobs through one real coordinator; storage must not grow, nor its memory.

One coordinator process on 127.0.0.1 (SQLite, local storage; the sweeper at a 1 s grace), and
simulated nodes in this process (threads speaking the node protocol over HTTP: claim, upload a
random update, complete), so the coordinator is the only thing measured. Each job has 2 shards
and R rounds. Figures:
- blob store after the run (every job ended) against the final models' total;
- coordinator RSS over the first and the last 10% of the jobs;
- errors (any non-2xx answer, any job not succeeded).
Baseline: `keep_updates` jobs, which keep everything as the seed did: their growth per job next
to the default's (the ratio is what the lifecycle saves).

    python bench/soak.py [--jobs 200] [--rounds 5] [--kept 20] [--nodes 4]
Last line: {"jobs": N, "store_bytes": x, "final_models_bytes": y, "rss_first_mb": a,
            "rss_last_mb": b, "errors": 0, "kept_growth_per_job": k, "growth_per_job": g, ...}
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import torch

from gridx.coordinator.cli.cluster import LocalCluster

TRAIN = b"import torch\ntorch.save({'w': torch.zeros(4096)}, 'model.pth')\n"
CSV = "x,label\n" + "".join(f"{i},{i % 2}\n" for i in range(40))
UPDATE_FLOATS = 4096


def update_bytes() -> int:
    """The size of one simulated update (every one has the same shape)."""
    buf = io.BytesIO()
    torch.save({"w": torch.randn(UPDATE_FLOATS)}, buf)
    return len(buf.getvalue())


class Soak:
    """A coordinator, an admin client, and the tally of what went wrong."""

    def __init__(self, root: Path, nodes: int) -> None:
        env = {"GRIDX_SWEEP_S": "0.5", "GRIDX_SWEEP_GRACE_S": "1", "GRIDX_LEASE_S": "30"}
        self.cluster = LocalCluster(root / "cluster", coordinator_env=env)
        self.cluster.start()
        self.http = httpx.Client(
            base_url=self.cluster.url,
            headers={"Authorization": f"Bearer {self.cluster.api_key}"},
            timeout=60,
        )
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.tokens = [self._register(f"sim-{i}") for i in range(nodes)]
        self.threads = [threading.Thread(target=self._node, args=(t,)) for t in self.tokens]
        for t in self.threads:
            t.start()

    def _check(self, r: httpx.Response, what: str) -> httpx.Response:
        if r.status_code >= 400:
            self.errors.append(f"{what}: {r.status_code} {r.text[:200]}")
        return r

    def _register(self, name: str) -> str:
        r = self._check(self.http.post("/agent/register", json={"name": name}), "register")
        return str(r.json()["node_token"])

    def _node(self, token: str) -> None:
        """A simulated node: claim, upload a random update, complete, until stopped."""
        http = httpx.Client(
            base_url=self.cluster.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        while not self.stop.is_set():
            r = http.post("/agent/request_task?wait_s=1")
            if r.status_code == 204:
                continue
            task = self._check(r, "claim").json()
            buf = io.BytesIO()
            torch.save({"w": torch.randn(UPDATE_FLOATS)}, buf)
            up = self._check(http.put(task["upload_url"], content=buf.getvalue()), "upload")
            body = {
                "task_id": task["task_id"],
                "lease_token": task["lease_token"],
                "result_sha256": up.json()["sha256"],
                "metrics": {"loss": 1.0},
            }
            self._check(http.post("/agent/complete_task", json=body), "complete")

    def run_job(self, rounds: int, keep: bool) -> str:
        config = {"rounds": rounds, "shards": 2, "init_step": False, "keep_updates": keep}
        r = self.http.post(
            "/jobs/",
            files={"train_py": ("train.py", TRAIN), "data": ("d.csv", CSV.encode())},
            data={"config": json.dumps(config)},
        )
        job_id = str(self._check(r, "submit").json()["job"]["id"])
        deadline = time.monotonic() + 120
        while (status := self.http.get(f"/jobs/{job_id}").json()["job"]["status"]) not in (
            "succeeded",
            "failed",
            "cancelled",
        ):
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        if status != "succeeded":
            self.errors.append(f"job {job_id}: {status}")
        return job_id

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.cluster.replicas[0].pid}/status").read_text()  # type: ignore[union-attr]
        return int(next(x for x in status.splitlines() if x.startswith("VmRSS")).split()[1]) / 1024

    def store_bytes(self) -> int:
        """The blob store's size once the sweeper has caught up (two quiet sweeps)."""
        time.sleep(3)
        text = self.http.get("/metrics").text
        return int(
            next(x.split()[1] for x in text.splitlines() if x.startswith("gridx_blob_bytes "))
        )

    def final_bytes(self, job_id: str) -> tuple[int, int]:
        """The sizes of a job's final_model.pth and final_model.safetensors."""
        pth, st = (
            len(self.http.get(f"/jobs/{job_id}/model?format={f}").content)
            for f in ("pth", "safetensors")
        )
        return pth, st

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()
        self.cluster.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--kept", type=int, default=20, help="keep_updates jobs (the baseline)")
    ap.add_argument("--nodes", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        soak = Soak(Path(tmp), args.nodes)
        try:
            rss: list[float] = []
            finals = final_pth = 0
            started = time.monotonic()
            for i in range(args.jobs):
                pth, st = soak.final_bytes(soak.run_job(args.rounds, keep=False))
                finals, final_pth = finals + pth + st, final_pth + pth
                rss.append(soak.rss_mb())
                if (i + 1) % max(1, args.jobs // 10) == 0:
                    print(f"  {i + 1}/{args.jobs} jobs, rss {rss[-1]:.0f} MB", flush=True)
            elapsed = time.monotonic() - started
            store = soak.store_bytes()
            for _ in range(args.kept):
                soak.run_job(args.rounds, keep=True)
            kept_store = soak.store_bytes()
        finally:
            soak.close()
    tenth = max(1, len(rss) // 10)
    first, last = statistics.mean(rss[:tenth]), statistics.mean(rss[-tenth:])
    growth = store / args.jobs
    kept_growth = (kept_store - store) / max(1, args.kept)
    # what keep_updates must hold per job: every update, every round model, the final files
    per_job_pth = final_pth / args.jobs
    expected = (
        2 * args.rounds * update_bytes() + (args.rounds - 1) * per_job_pth + finals / args.jobs
    )
    print(f"{args.jobs} jobs x {args.rounds} rounds x 2 shards in {elapsed:.0f} s")
    print(
        f"blob store after the run: {store} bytes; final models: {finals} bytes "
        f"(store - finals = {store - finals} bytes: the shared train.py and rounding)"
    )
    print(f"coordinator RSS: first 10% {first:.0f} MB, last 10% {last:.0f} MB")
    print(
        f"growth per job: {growth:.0f} bytes; keep_updates (baseline, keeps all): "
        f"{kept_growth:.0f} bytes, x{kept_growth / max(growth, 1):.1f}"
    )
    print(f"errors: {len(soak.errors)}", *soak.errors[:5], sep="\n  ")
    print(json.dumps({
        "jobs": args.jobs, "rounds": args.rounds, "seconds": round(elapsed, 1),
        "store_bytes": store, "final_models_bytes": finals,
        "rss_first_mb": round(first, 1), "rss_last_mb": round(last, 1),
        "errors": len(soak.errors), "growth_per_job": round(growth),
        "kept_growth_per_job": round(kept_growth),
        "kept_vs_default": round(kept_growth / max(growth, 1), 2),
        "kept_expected_per_job": round(expected),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
