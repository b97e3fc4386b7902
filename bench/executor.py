"""Per-task overhead of the executors: the same trivial train.py through each, end to end.

`process`: bubblewrap (or `unshare -n`) + rlimits + python startup.
`docker`: container create + start + wait + logs + remove, python startup inside.
Baseline: a bare `python -c pass` subprocess, measured in the same run.

    python bench/executor.py [--runs 20]     (docker needs an engine and the executor image)
Last line: {"docker_overhead_ms": x, "process_overhead_ms": y, ...}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gridx.node.executors import ProcessExecutor
from gridx.node.executors.base import Executor, RunSpec

TRIVIAL = "open('model.pth', 'wb').write(b'x')\n"


async def per_run_ms(executor: Executor, runtime: str, runs: int, root: Path) -> list[float]:
    times = []
    for i in range(runs + 1):  # the first run warms caches and is dropped
        work = root / f"{executor.name}-{i}" / "work"
        work.mkdir(parents=True)
        (work / "train.py").write_text(TRIVIAL)
        spec = RunSpec(
            workdir=work,
            logdir=work.parent / "logs",
            runtime=runtime,
            env={"PATH": "/usr/bin:/bin", "GRIDX_TASK_ID": f"bench-{i}"},
            timeout_s=60,
            memory_mb=1024,
            max_output_bytes=1 << 20,
        )
        t = time.perf_counter()
        result = await executor.run(spec, asyncio.Event())
        elapsed = (time.perf_counter() - t) * 1000
        if not result.ok:
            raise RuntimeError(
                f"{executor.name}: {result.code} {result.message} {result.stderr_tail}"
            )
        if i:
            times.append(elapsed)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="gridx-bench-exec-"))
    bare = []
    for _ in range(args.runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-S", "-c", "pass"], check=True)
        bare.append((time.perf_counter() - t) * 1000)
    process = ProcessExecutor(state_dir=root / "state", python=sys.executable)
    proc_ms = asyncio.run(per_run_ms(process, sys.executable, args.runs, root))
    figures = {
        "bare_python_ms": round(statistics.median(bare), 1),
        "process_overhead_ms": round(statistics.median(proc_ms), 1),
        "process_isolation": process.isolation,
    }
    print(f"bare python subprocess : {figures['bare_python_ms']:7.1f} ms (median of {args.runs})")
    print(
        f"process executor       : {figures['process_overhead_ms']:7.1f} ms ({process.isolation})"
    )
    from gridx.node.executors.docker import DockerExecutor, docker_available

    if docker_available():
        docker = DockerExecutor(node_id="bench")
        dock_ms = asyncio.run(per_run_ms(docker, docker.image, args.runs, root))
        figures["docker_overhead_ms"] = round(statistics.median(dock_ms), 1)
        figures["docker_vs_process"] = round(
            figures["docker_overhead_ms"] / figures["process_overhead_ms"], 2
        )
        print(
            f"docker executor        : {figures['docker_overhead_ms']:7.1f} ms "
            f"({figures['docker_vs_process']}x the process executor)"
        )
    else:
        print("docker executor        : no engine here, not measured")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
