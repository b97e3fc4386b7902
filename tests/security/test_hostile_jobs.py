"""Hostile jobs, through the real CLI, coordinator and node, in every executor mode CI runs.

Modes: `docker`; `bubblewrap` with the node as root; `bubblewrap` with the node as an ordinary
user; and the fallback as shipped (`unshare`), which measures itself weak and refuses to work
until its owner accepts that, then advertises exactly the gaps the attacks find.
Each attack is one line of `HOSTILE` below and one assertion: the README's security table
is written from these results.
"""

from __future__ import annotations

import io
import json
import os
import pwd
import tarfile
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from gridx.coordinator.cli.cluster import LocalCluster
from tests.integration.conftest import Client, gridx
from tests.security.conftest import Host, as_user, node_env_for

MODES = ("docker", "bubblewrap-root", "bubblewrap-user", "unshare-fallback")

# Stdlib only (the ordinary user's node has no torch); saves a hand-written safetensors file.
HOSTILE = """
import ctypes, json, os, socket, struct, sys
PORT, TOKEN, SECRET, DATA, DROP, MARKER = {args!r}
held = {{}}

def connects():
    try:
        socket.create_connection(("127.0.0.1", PORT), timeout=2).close()
        return True
    except OSError:
        return False

def readable(path):
    try:
        open(path, "rb").read(16)
        return True
    except OSError:
        return False

held["network"] = not connects()
libc = ctypes.CDLL(None, use_errno=True)
for target in (f"/proc/{{os.getppid()}}/ns/net", "/proc/1/ns/net"):
    try:
        fd = os.open(target, os.O_RDONLY)
        libc.setns(fd, 0)
        os.close(fd)
    except OSError:
        pass
held["setns"] = not connects()
held["token"] = not readable(TOKEN)
held["root_file"] = not readable(SECRET)
held["coordinator_data"] = not any(
    readable(os.path.join(DATA, name)) for name in ("signing.key", "gridx.db")
)
held["uid_not_root"] = os.getuid() != 0
for folder in (DROP, "/tmp", "/var/tmp", "/dev/shm", "/etc", os.path.dirname(os.getcwd())):
    try:
        open(os.path.join(folder, MARKER), "w").write("escaped")
    except OSError:
        pass
r, w = os.pipe()
children = 0
for _ in range(1000):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    children += 1
os.close(w)
for _ in range(children):
    os.wait()
held["processes"] = children
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", MARKER])
    os._exit(0)
os.wait()
json.dump({{k: float(v) for k, v in held.items()}}, open("metrics.json", "w"))
header = json.dumps({{"w": {{"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}}}).encode()
with open("model.safetensors", "wb") as fh:
    fh.write(struct.pack("<Q", len(header)) + header + struct.pack("<f", 0.0))
"""
# Two rounds of one shard on one node: under bubblewrap both tasks run in one warm runner. The
# first leaves what it can (a module global, files, a daemon); the second looks for it. Both
# go after the runner they were forked from (its memory, ptrace).
WARM_PROBE = """
import ctypes, glob, json, os, struct, sys
MARKER = {marker!r}
ppid = os.getppid()  # 0 where a cold task is its PID namespace's first process
try:
    held = {{"warm": b"--control" in open(f"/proc/{{ppid}}/cmdline", "rb").read()}}
    with open(f"/proc/{{ppid}}/stat") as fh:
        held["parent_started"] = int(fh.read().rsplit(")", 1)[1].split()[19])
except OSError:
    held = {{"warm": False, "parent_started": 0}}
try:
    open(f"/proc/{{ppid}}/mem", "rb").close()
    held["parent_mem"] = False
except OSError:
    held["parent_mem"] = True
held["ptrace"] = ctypes.CDLL(None, use_errno=True).ptrace(16, ppid, None, None) != 0
folders = ("/tmp", "/dev/shm", os.path.dirname(os.getcwd()))
if os.environ["GRIDX_ROUND"] == "0":
    json.GRIDX_LEFT = MARKER
    for folder in folders:
        try:
            open(os.path.join(folder, MARKER), "w").write("left")
        except OSError:
            pass
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", MARKER])
        os._exit(0)
    os.wait()
else:
    held["global"] = not hasattr(json, "GRIDX_LEFT")
    held["files"] = not any(os.path.exists(os.path.join(f, MARKER)) for f in folders)
    held["daemon"] = not any(
        MARKER.encode() in open(p, "rb").read() for p in glob.glob("/proc/[0-9]*/cmdline")
    )
json.dump({{k: float(v) for k, v in held.items()}}, open("metrics.json", "w"))
header = json.dumps({{"w": {{"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}}}).encode()
with open("model.safetensors", "wb") as fh:
    fh.write(struct.pack("<Q", len(header)) + header + struct.pack("<f", 0.0))
"""
# What a task leaves for the node to read after it ends, in place of its outputs: links to what
# the node may read and the task may not (the host's root-only secret, the node's identity), a
# FIFO (an open that blocks), a link to an endless device, a folder, metrics over their cap.
DEPUTY = """
import json, os, struct
KIND, TARGET = {args!r}
def model(name="model.safetensors"):
    header = json.dumps({{"w": {{"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}}}).encode()
    with open(name, "wb") as fh:
        fh.write(struct.pack("<Q", len(header)) + header + struct.pack("<f", 0.0))
if KIND == "model_link":
    os.symlink(TARGET, "model.safetensors")
elif KIND == "metrics_fifo":
    os.mkfifo("metrics.json")
    model()
elif KIND == "metrics_device":
    os.symlink("/dev/zero", "metrics.json")
    model()
elif KIND == "metrics_too_big":
    open("metrics.json", "w").write(json.dumps({{"pad": "x" * (1 << 20)}}))
    model()
elif KIND == "model_folder":
    os.mkdir("model.pth")
"""
# What DataLoader workers need (stdlib only): forked workers, a multiprocessing Queue and Lock
# (SemLock lives in /dev/shm), shared memory; the task's /dev/shm is its own.
WORKERS = """
import json, multiprocessing as mp, os, struct
from multiprocessing import shared_memory
def work(q, lock, i):
    with lock:
        q.put(i * i)
if __name__ == "__main__":
    q, lock = mp.Queue(), mp.Lock()
    ps = [mp.Process(target=work, args=(q, lock, i)) for i in (2, 3)]
    for p in ps:
        p.start()
    got = sorted(q.get(timeout=60) for _ in ps)
    for p in ps:
        p.join()
    block = shared_memory.SharedMemory(create=True, size=1 << 20)
    block.buf[0] = 7
    shared = block.buf[0] == 7
    block.close()
    block.unlink()
    mine = os.stat("/dev/shm").st_mode & 0o1777 == 0o1777
    held = {"workers": float(got == [4, 9]), "shm": float(shared and mine)}
    json.dump(held, open("metrics.json", "w"))
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    with open("model.safetensors", "wb") as fh:
        fh.write(struct.pack("<Q", len(header)) + header + struct.pack("<f", 0.0))
"""
DEPUTY_CODES = {
    "model_link": "unsafe_output",
    "identity_link": "unsafe_output",
    "metrics_fifo": "unsafe_output",
    "metrics_device": "unsafe_output",
    "metrics_too_big": "output_too_large",
    "model_folder": "unsafe_output",
}
MEMORY_HOG = "chunks = []\nwhile True:\n    chunks.append(bytearray(64 << 20))\n"
SPIN = "while True:\n    pass\n"


def _sdist(folder: Path, name: str, marker: Path) -> Path:
    """An sdist whose build backend (setup.py) writes `marker` with whatever token it finds."""
    setup = textwrap.dedent(f"""
        import glob
        found = [open(p).read() for p in glob.glob("/**/identity.json", recursive=True)[:5]]
        open({str(marker)!r}, "w").write("built on the host: " + repr(found))
        from setuptools import setup
        setup(name={name!r}, version="1.0")
    """).encode()
    path = folder / f"{name}-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for member, data in (
            ("setup.py", setup),
            ("PKG-INFO", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode()),
        ):
            info = tarfile.TarInfo(f"{name}-1.0/{member}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def submit(cluster: LocalCluster, folder: Path, name: str, script: str, *flags: str) -> str:
    """`gridx job submit` one hostile script; returns the job id."""
    path = folder / f"{name}.py"
    path.write_text(script)
    out = gridx(
        cluster, "job", "submit", str(path), "--name", name, "--rounds", "1", "--shards", "1",
        "--max-attempts", "1", "--json", *flags,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return str(json.loads(out.stdout)["id"])


def _start_node(
    mode: str, cluster: LocalCluster, host: Host, user: pwd.struct_passwd, env: dict[str, str]
) -> Path:
    """Start the mode's node; returns its state folder."""
    args = ("--memory-mb", "512")
    if mode == "docker":
        cluster.add_node("docker", env, ("--executor", "docker", *args))
        return cluster.root / "docker"
    if mode == "bubblewrap-root":
        cluster.add_node("root", env, ("--executor", "process", "--sandbox", "bubblewrap", *args))
        return cluster.root / "root"
    if mode == "bubblewrap-user":
        python = node_env_for(user.pw_name, host.root / "user-node")
        state = host.root / "user-state"
        state.mkdir()
        os.chown(state, user.pw_uid, user.pw_gid)
        cluster.add_node(
            "user",
            {**env, "HOME": str(state)},
            ("--executor", "process", "--sandbox", "bubblewrap", "--state-dir", str(state), *args),
            launcher=as_user(user, python),
        )
        return state
    # the fallback: without the owner's consent it refuses to work at all. It shows the host's
    # filesystem as the task's uid sees it, so tasks run the system's Python (this machine's own
    # interpreter may sit under a 0700 home: a task could not start a subprocess of it)
    flags = ("--executor", "process", "--sandbox", "unshare", "--python", "/usr/bin/python3", *args)
    refused = cluster.add_node("weak-refused", env, flags)
    assert refused.wait(60) != 0
    log = (cluster.root / "weak-refused.log").read_text()
    assert "refusing to run untrusted jobs" in log and "write_outside" in log, log
    cluster.add_node("weak", env, (*flags, "--allow-weak-sandbox"))
    return cluster.root / "weak"


def _check_warm(body: dict[str, Any], weak: bool) -> None:
    """What the second task of a job found of the first (nothing, but the weak fallback's
    advertised gap: files in the host's /tmp), and that a warm runner's tasks could not reach
    into the runner. Every strong sandbox runs warm; the weak fallback never does."""
    assert body["job"]["status"] == "succeeded", (body["job"]["error"], body["tasks"])
    first, second = (r["metrics"] for r in body["rounds"])
    assert second["global"] == second["daemon"] == 1.0, second
    assert second["files"] == float(not weak), second
    warm = not weak
    assert first["warm"] == second["warm"] == float(warm)
    if warm:  # one runner forked both tasks, and neither could touch it
        assert first["parent_started"] == second["parent_started"]
        for held in (first, second):
            assert held["parent_mem"] == held["ptrace"] == 1.0, held


def _leftovers(host: Host, state: Path) -> list[str]:
    """Files named with the marker anywhere a task could have written, and live processes
    carrying it (a daemon that outlived its task)."""
    found = [
        str(p)
        for folder in (host.drop, Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"), Path("/etc"))
        for p in folder.glob(f"{host.marker}*")
    ]
    found += [str(p) for p in state.rglob(f"{host.marker}*")]
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if host.marker.encode() in cmdline.read_bytes():
                found.append(f"process {cmdline.parent.name}")
        except OSError:
            pass
    return found


@pytest.mark.parametrize("mode", MODES)
def test_hostile_jobs_are_contained_or_refused(
    mode: str,
    cluster: LocalCluster,
    client: Client,
    host: Host,
    ordinary_user: pwd.struct_passwd,
    tmp_path: Path,
) -> None:
    sdists = host.root / "sdists"
    sdists.mkdir()
    built = host.drop / f"{host.marker}-built"
    evil = f"gridxevil{host.marker[-6:]}"
    sdist = _sdist(sdists, evil, built)
    os.chmod(sdists, 0o755)
    os.chmod(sdist, 0o644)
    # the package exists only as an sdist: pip may see it, never build it
    env = {"PIP_FIND_LINKS": str(sdists), "PIP_NO_INDEX": "1"}
    state = _start_node(mode, cluster, host, ordinary_user, env)
    client.wait_for_nodes(1)
    node = client.http.get("/nodes").json()[0]
    weak = mode == "unshare-fallback"
    assert node["capabilities"]["sandbox"] == ("weak" if weak else "strong"), node
    assert node["capabilities"]["sandbox_gaps"] == (["write_outside"] if weak else [])

    token = state / "identity.json"
    args = (cluster.port, str(token), str(host.secret), str(cluster.data_dir), str(host.drop))
    hostile = HOSTILE.format(args=(*args, host.marker))
    strict = submit(cluster, tmp_path, "strict", hostile, "--min-sandbox", "strong")
    jobs = {
        "hostile": submit(cluster, tmp_path, "hostile", hostile),
        "memory": submit(cluster, tmp_path, "memory", MEMORY_HOG),
        "time": submit(cluster, tmp_path, "time", SPIN, "--timeout", "3"),
        "warm": submit(
            cluster, tmp_path, "warm", WARM_PROBE.format(marker=host.marker), "--rounds", "2"
        ),
    }
    # a direct reference is refused at submit (and by every node, were it to get one)
    req = tmp_path / "url.txt"
    req.write_text(f"{evil} @ file://{sdist}\n")
    (tmp_path / "url.py").write_text("print('never runs')\n")
    refused = gridx(cluster, "job", "submit", str(tmp_path / "url.py"), "--requirements", str(req))
    assert refused.returncode != 0 and "is a direct reference" in refused.stderr, refused.stderr
    req = tmp_path / "sdist.txt"
    req.write_text(evil + "\n")
    jobs["sdist"] = submit(
        cluster, tmp_path, "sdist", "print('never runs')\n", "--requirements", str(req)
    )
    done = {name: client.wait_done(job_id, 240) for name, job_id in jobs.items()}

    body = done["hostile"]
    assert body["job"]["status"] == "succeeded", (body["job"]["error"], body["tasks"])
    held: dict[str, Any] = body["rounds"][0]["metrics"]
    assert held["processes"] < 256  # the fork bomb stopped
    del held["processes"]
    assert held == dict.fromkeys(held, 1.0)  # network, setns, token, secret, data dir, uid
    assert len(held) == 6
    deadline = time.monotonic() + 10
    while (left := _leftovers(host, state)) and not weak and time.monotonic() < deadline:
        time.sleep(0.2)  # a daemon is killed with its task; give the kill a moment
    if weak:  # exactly the gap it advertised: world-writable host folders
        assert left and all(not p.startswith("process") for p in left), left
        for p in left:
            Path(p).unlink()
    else:
        assert left == []
    _check_warm(done.pop("warm"), weak)
    errors = {name: b["tasks"][0]["error_code"] for name, b in done.items() if name != "hostile"}
    assert errors == {
        "memory": "out_of_memory",
        "time": "timeout",
        "sdist": "requirements_need_build",
    }
    # after those (the warm runners above are the job's own), what the node reads afterwards
    workers = submit(cluster, tmp_path, "workers", WORKERS)
    deputies = {}
    for kind in DEPUTY_CODES:
        target = str(token) if kind == "identity_link" else str(host.secret)
        real = "model_link" if kind == "identity_link" else kind
        deputies[kind] = submit(cluster, tmp_path, kind, DEPUTY.format(args=(real, target)))
    done = {kind: client.wait_done(job_id, 120) for kind, job_id in deputies.items()}
    assert {kind: b["tasks"][0]["error_code"] for kind, b in done.items()} == DEPUTY_CODES
    body = client.wait_done(workers, 120)
    assert body["job"]["status"] == "succeeded", body["tasks"][0]["history"][0]["stderr_tail"]
    assert body["rounds"][0]["metrics"] == {"workers": 1.0, "shm": 1.0}
    # the node read none of what the links led to, with its own rights: not in the store, not
    # in any answer, and it is still up (a FIFO did not block it)
    node_token = json.loads(token.read_text())["node_token"].encode()
    for p in cluster.data_dir.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            assert b"the host's secret" not in data and node_token not in data, p
    for kind in DEPUTY_CODES:
        assert "the host's secret" not in json.dumps(done[kind]), done[kind]
    assert all(p.poll() is None for n, p in cluster.nodes.items() if n != "weak-refused")
    assert not built.exists(), built.read_text()
    # a job that asks for a strong sandbox was never handed to a weaker node
    strict_body = client.job(strict)
    if weak:
        assert strict_body["job"]["status"] == "queued" and strict_body["tasks"][0]["history"] == []
    else:
        assert client.wait_done(strict, 60)["job"]["status"] == "succeeded"
