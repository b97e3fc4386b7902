"""A WAN lab on one machine: nodes in network namespaces of their own, each on a veth link to a
bridge in this namespace (the coordinator's side, which listens on the bridge's address), each
link shaped with `tc tbf` in both directions, the node's CPU optionally capped by a cgroup, and
a way to cut a link for a while. Used by the tests and by `bench/wan.py`; needs root.

Only the lab's own objects are touched: a bridge, veth pairs and namespaces named after a random
lab id, on a /24 of 10.0.0.0/8 that no interface of this machine uses; `close()` removes them
(and the namespaces' processes must have ended before).

Download and upload are seen from the node: the download is shaped on the bridge's end of the
link (its egress towards the node), the upload on the node's end. `netem` is not in every kernel
(not on these machines), so the lab adds no latency or loss: a cut is a link set down and up.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

CGROUPS = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Profile:
    """A link and a machine: Mbit/s each way, and the CPU it may use (None: no cap)."""

    down_mbit: float
    up_mbit: float
    cpus: float | None = None


PROFILES = {
    "datacenter": Profile(1000, 1000),
    "home": Profile(50, 10),
    "pi-wifi": Profile(20, 4, cpus=1.0),
}


@dataclass
class LabNode:
    name: str
    netns: str
    host_if: str
    node_if: str
    address: str
    profile: Profile
    cgroup: Path | None = None


def _run(*argv: str, netns: str | None = None) -> None:
    prefix = ("ip", "netns", "exec", netns) if netns else ()
    done = subprocess.run([*prefix, *argv], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")


def _ip(*args: str, netns: str | None = None) -> None:
    _run("ip", *args, netns=netns)


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.200.0.0/13 that no address of this machine is in."""
    shown = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    used = [ipaddress.ip_interface(w).network for w in shown.split() if "/" in w and w[0].isdigit()]
    for third in range(200, 208):
        for fourth in range(256):
            net = ipaddress.ip_network(f"10.{third}.{fourth}.0/24")
            if not any(net.overlaps(u) for u in used):
                return net
    raise RuntimeError("the lab found no free /24 in 10.200.0.0/13")


class WanLab:
    """See the module docstring. Use as a context manager."""

    def __init__(self) -> None:
        self.id = secrets.token_hex(2)
        self.net = _free_subnet()
        hosts = self.net.hosts()
        self.host = str(next(hosts))
        """The coordinator's address: bind it there, nodes reach it there."""
        self._addresses = hosts
        self.bridge = f"gxb{self.id}"
        self.nodes: dict[str, LabNode] = {}
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.host}/{self.net.prefixlen}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def __enter__(self) -> WanLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, name: str, profile: str | Profile = "home") -> LabNode:
        """A namespace for node `name` on a link of `profile`."""
        p = PROFILES[profile] if isinstance(profile, str) else profile
        i = len(self.nodes)
        node = LabNode(
            name=name,
            netns=f"gxl{self.id}-{i}",
            host_if=f"gxh{self.id}{i}",
            node_if=f"gxn{self.id}{i}",
            address=str(next(self._addresses)),
            profile=p,
        )
        self.nodes[name] = node
        _ip("netns", "add", node.netns)
        _ip("link", "add", node.host_if, "type", "veth", "peer", "name", node.node_if)
        _ip("link", "set", node.node_if, "netns", node.netns)
        _ip("link", "set", node.host_if, "master", self.bridge)
        _ip("link", "set", node.host_if, "up")
        _ip(
            "addr",
            "add",
            f"{node.address}/{self.net.prefixlen}",
            "dev",
            node.node_if,
            netns=node.netns,
        )
        _ip("link", "set", node.node_if, "up", netns=node.netns)
        _ip("link", "set", "lo", "up", netns=node.netns)
        self.shape(name, p)
        if p.cpus is not None:
            node.cgroup = _cpu_group(f"gridx-lab-{self.id}-{i}", p.cpus)
        return node

    def shape(self, name: str, profile: Profile) -> None:
        """(Re)shape a node's link to `profile`'s rates."""
        node = self.nodes[name]
        for dev, rate, netns in (
            (node.host_if, profile.down_mbit, None),
            (node.node_if, profile.up_mbit, node.netns),
        ):
            # a burst of at least rate / HZ (250), and a queue of about 100 ms at the rate
            burst = max(32_000, int(rate * 1e6 / 8 / 250))
            limit = max(64_000, int(rate * 1e6 / 8 * 0.1))
            tbf = ("tbf", "rate", f"{rate}mbit", "burst", str(burst), "limit", str(limit))
            _run("tc", "qdisc", "replace", "dev", dev, "root", *tbf, netns=netns)
        node.profile = profile

    def argv(self, name: str) -> tuple[str, ...]:
        """The prefix that runs a command as node `name`: in its namespace, in its cgroup."""
        node = self.nodes[name]
        # (not `ip netns exec`, which mounts a /sys of its own: the node would find no cgroups)
        prefix: tuple[str, ...] = ("nsenter", f"--net=/var/run/netns/{node.netns}")
        if node.cgroup is not None:
            join = f'echo $$ > {node.cgroup}/cgroup.procs && exec "$@"'
            prefix += ("sh", "-c", join, "sh")
        return prefix

    def cut(self, name: str, seconds: float) -> threading.Thread:
        """Take node `name`'s link down now and bring it back after `seconds` (in a thread,
        returned started). Its TCP connections are destroyed on both ends (`ss -K`), as a home
        router's restart or a new address does: what was in flight is lost, not delayed."""
        node = self.nodes[name]
        _ip("link", "set", node.host_if, "down")
        _run("ss", "-K", "dst", node.address)
        _run("ss", "-K", "dst", self.host, netns=node.netns)

        def restore() -> None:
            time.sleep(seconds)
            _ip("link", "set", node.host_if, "up")

        thread = threading.Thread(target=restore, name=f"cut-{name}", daemon=True)
        thread.start()
        return thread

    def traffic(self, name: str) -> tuple[int, int]:
        """Bytes node `name` has received and sent over its link so far (down, up)."""
        stats = Path("/sys/class/net") / self.nodes[name].host_if / "statistics"
        return int((stats / "tx_bytes").read_text()), int((stats / "rx_bytes").read_text())

    def close(self) -> None:
        """Remove the namespaces, links, bridge and cgroups (their processes must be gone)."""
        for node in self.nodes.values():
            with contextlib.suppress(RuntimeError):
                _ip("netns", "del", node.netns)  # (its end of the veth pair goes with it)
            with contextlib.suppress(RuntimeError):
                _ip("link", "del", node.host_if)
            if node.cgroup is not None:
                _kill_cgroup(node.cgroup)
        self.nodes.clear()
        with contextlib.suppress(RuntimeError):
            _ip("link", "del", self.bridge)


def _cpu_group(name: str, cpus: float) -> Path:
    """A cgroup whose processes share `cpus` cores (cgroup v2's `cpu.max`, or v1's CFS quota)."""
    quota = int(cpus * 100_000)
    if (CGROUPS / "cgroup.controllers").exists():
        path = CGROUPS / name
        path.mkdir()
        (path / "cpu.max").write_text(f"{quota} 100000\n")
        return path
    path = CGROUPS / "cpu" / name
    path.mkdir()
    (path / "cpu.cfs_period_us").write_text("100000\n")
    (path / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    return path


def _kill_cgroup(path: Path) -> None:
    with contextlib.suppress(OSError):
        (path / "cgroup.kill").write_text("1")  # (v2; v1 has none)
    with contextlib.suppress(OSError):
        for pid in (path / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    for _ in range(50):
        try:
            path.rmdir()
            return
        except OSError:
            time.sleep(0.1)
