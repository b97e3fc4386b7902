"""A Raspberry Pi stand-in for the tests: Debian 12 arm64 (the base of Raspberry Pi OS 64-bit),
installed by debootstrap under binfmt emulation and booted as a full arm64 VM
(qemu-system-aarch64, cortex-a72, no KVM), whose guest reaches this machine's 127.0.0.1 as
10.0.2.2.

The rootfs takes about 15 minutes to build under emulation, so it is built once per package
list and kept as a tarball under `build/arm64/`; `infra/test_env.sh` starts that build in the
background before the suites run (`python -m tests.support.arm64_vm prepare`), and `rootfs()`
waits for it. The bundle is installed in a fresh copy per test, by `setup_worker.sh` itself
(chroot, qemu-user), so what is measured is what a Pi owner's install gives.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import html
import os
import shlex
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

from tests.support.bare_debian import PATH, REPO, SUITE, mirror

PACKAGES = (
    "python3,python3-venv,ca-certificates,procps,bubblewrap,iproute2,kmod,util-linux,"
    "linux-image-arm64,initramfs-tools"
)
# the initrd holds only what mounting the root disk needs; the guest's init loads the rest
INITRD_MODULES = ("virtio_pci", "virtio_blk", "ext4")
RECIPE = f"{SUITE} {PACKAGES} {' '.join(INITRD_MODULES)} v1"
CACHE_DIR = REPO / "build" / "arm64"
CACHE = CACHE_DIR / f"{SUITE}-arm64-{hashlib.sha256(RECIPE.encode()).hexdigest()[:12]}.tar"
# PyPI's last torch for aarch64 without the CUDA packages; the PyTorch CPU index (which has
# every release for aarch64) cannot be reached from CI, so the test serves this one as that index
TORCH = "2.9.1"
WHEELS = CACHE_DIR / f"torch-{TORCH}-aarch64"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """One builder at a time (the background build and a test that wants its result)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def emulation_ready() -> str | None:
    """Why this machine cannot run arm64 programs yet (None: it can)."""
    for tool in ("debootstrap", "qemu-system-aarch64", "qemu-aarch64-static", "mkfs.ext4"):
        if shutil.which(tool) is None:
            return (
                f"{tool} is missing (apt-get install debootstrap qemu-user-static qemu-system-arm)"
            )
    if not Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists():
        return "binfmt_misc has no qemu-aarch64 entry (update-binfmts --enable qemu-aarch64)"
    return None


def rootfs() -> Path:
    """The cached tarball of the arm64 rootfs, built first where it is missing."""
    with _locked("rootfs"):
        if not CACHE.exists():
            _build_rootfs()
    return CACHE


def _build_rootfs() -> None:
    root = CACHE_DIR / "rootfs.tmp"
    subprocess.run(["rm", "-rf", str(root)], check=True)
    started = time.monotonic()
    subprocess.run(
        ["debootstrap", "--arch=arm64", "--foreign", "--variant=minbase",
         f"--include={PACKAGES}", SUITE, str(root), mirror()],
        check=True, capture_output=True,
    )  # fmt: skip
    # before the second stage configures the kernel: a small initrd (MODULES=most is ~30 MB
    # and minutes of emulated compression)
    conf = root / "etc" / "initramfs-tools" / "conf.d"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "gridx").write_text("MODULES=list\nCOMPRESS=gzip\n")
    extra = root / "usr" / "share" / "initramfs-tools" / "modules.d"
    extra.mkdir(parents=True, exist_ok=True)
    (extra / "gridx").write_text("\n".join(INITRD_MODULES) + "\n")
    second = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "chroot", str(root),
         "/debootstrap/debootstrap", "--second-stage"],
        capture_output=True, text=True,
    )  # fmt: skip
    if second.returncode:
        log = root / "debootstrap" / "debootstrap.log"
        tail = log.read_text()[-3000:] if log.exists() else second.stderr[-3000:]
        raise RuntimeError(f"debootstrap's second stage failed:\n{tail}")
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for path in (root / junk).glob("*"):
            if path.is_file():
                path.unlink()
    subprocess.run(["tar", "-C", str(root), "-cf", f"{CACHE}.part", "."], check=True)
    os.replace(f"{CACHE}.part", CACHE)
    subprocess.run(["rm", "-rf", str(root)], check=True)
    print(f"arm64 rootfs built in {time.monotonic() - started:.0f} s: {CACHE}", file=sys.stderr)


def torch_index() -> Path:
    """A PEP 503 index (folder) with torch for aarch64 (CPU build) and what it depends on."""
    with _locked("wheels"):
        index = WHEELS / "simple"
        if not index.exists():
            files = WHEELS / "files"
            _download(files, [f"torch=={TORCH}"], deps=False)
            # torch's own dependencies as pip on an aarch64 machine sees them (pip here would
            # judge the markers, CUDA's among them, for this x86 machine)
            _download(files, _requires(next(files.glob("torch-*.whl"))), deps=True)
            part = WHEELS / "simple.part"
            shutil.rmtree(part, ignore_errors=True)
            for wheel in sorted(files.iterdir()):
                project = wheel.name.split("-")[0].lower().replace("_", "-")
                page = part / project
                page.mkdir(parents=True, exist_ok=True)
                sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
                link = (
                    f'<a href="../../files/{html.escape(wheel.name)}#sha256={sha}">{wheel.name}</a>'
                )
                with open(page / "index.html", "a") as out:
                    out.write(link + "<br/>\n")
            os.replace(part, index)
    return index


INIT = r"""#!/bin/sh
# PID 1 of the test VM: mounts, the network qemu's user mode gives, then the node
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
mount -t proc proc /proc; mountpoint -q /sys || mount -t sysfs sys /sys
mountpoint -q /dev || mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm; mount -t devpts devpts /dev/pts; mount -t tmpfs tmp /dev/shm
mount -t tmpfs -o mode=1777 tmp /tmp; mount -t tmpfs run /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
modprobe virtio_net; hostname pi
ip link set lo up; ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0; ip route add default via 10.0.2.2
echo "GRIDX-VM up: $(uname -m), $(nproc) cpus, $(awk '/MemTotal/ {print $2}' /proc/meminfo) kB"
cd /opt/gridx-worker && ./start_worker.sh --executor process &
while sleep 2; do
    node=$(ps -C gridx-node -o rss= | sort -n | tail -1)
    runner=$(ps -eo rss=,args= | awk '/--jobdir/ && !/awk/ {print $1}' | sort -n | tr '\n' ' ')
    echo "GRIDX-RSS node=${node:-0} runners=${runner:-0}"
done
"""


class Arm64Machine:
    """A fresh copy of the arm64 rootfs under `work`, the bundle installed into it in a
    chroot, then booted as a VM."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.root = work / "rootfs"
        self.root.mkdir(parents=True)
        subprocess.run(["tar", "-C", str(self.root), "-xf", str(rootfs())], check=True)
        self.console = work / "console.log"
        self.vm: subprocess.Popen[bytes] | None = None

    def chroot(self, command: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        """`command` as root in the rootfs, under qemu-user (no sandbox works there: the VM is
        for that), with this machine's DNS and trust store (pip's way out may pass a proxy
        with its own CA) and a pip cache kept under `build/arm64/`."""
        shutil.copyfile("/etc/resolv.conf", self.root / "etc" / "resolv.conf")
        shutil.copyfile(CA_BUNDLE, self.root / "etc" / "gridx-host-ca.crt")
        cache = CACHE_DIR / "pip-cache"
        cache.mkdir(parents=True, exist_ok=True)
        pip_cache = self.root / "root" / ".cache" / "pip"  # root's, inside the rootfs
        pip_cache.mkdir(parents=True, exist_ok=True)
        mounts = [
            f"mount -t proc proc {self.root}/proc",
            f"mount --rbind /dev {self.root}/dev",
            f"mount -t sysfs sys {self.root}/sys",
            f"mount -t tmpfs -o mode=1777 tmp {self.root}/tmp",
            f"mount --bind {cache} {pip_cache}",
        ]
        enter = shlex.join([
            "chroot", str(self.root), "/usr/bin/env", "-i", "HOME=/root", f"PATH={PATH}",
            "LANG=C.UTF-8", "PIP_CERT=/etc/gridx-host-ca.crt", "/bin/sh", "-c", command,
        ])  # fmt: skip
        return subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             " && ".join([*mounts, enter])],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def boot(self, memory_mb: int = 2048) -> None:
        """The rootfs as a disk, booted with its own kernel; the node starts at once."""
        init = self.root / "sbin" / "gridx-init"
        init.write_text(INIT)
        init.chmod(0o755)
        boot = self.root / "boot"
        kernel = next(boot.glob("vmlinuz-*"))
        initrd = next(boot.glob("initrd.img-*"))
        shutil.copyfile(kernel, self.work / "vmlinuz")
        shutil.copyfile(initrd, self.work / "initrd")
        disk = self.work / "disk.img"
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-d", str(self.root), str(disk), "4G"],
            check=True, capture_output=True,
        )  # fmt: skip
        self.vm = subprocess.Popen(
            ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72", "-smp", "2",
             "-m", str(memory_mb), "-kernel", str(self.work / "vmlinuz"),
             "-initrd", str(self.work / "initrd"),
             "-append", "root=/dev/vda rw console=ttyAMA0 init=/sbin/gridx-init panic=-1",
             "-drive", f"file={disk},if=virtio,format=raw",
             "-netdev", "user,id=n", "-device", "virtio-net-pci,netdev=n,romfile=",
             "-display", "none", "-monitor", "none", "-serial", f"file:{self.console}",
             "-no-reboot"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip

    def read_console(self) -> str:
        return self.console.read_text(errors="replace") if self.console.exists() else ""

    def wait_console(self, text: str, timeout: float) -> str:
        """The console's text once it holds `text`.

        Raises:
            RuntimeError: the VM ended or `timeout` passed first (with the console's tail).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = self.read_console()
            if text in seen:
                return seen
            if self.vm is not None and self.vm.poll() is not None:
                break
            time.sleep(1)
        raise RuntimeError(f"no {text!r} on the VM's console:\n{self.read_console()[-6000:]}")

    def stop(self) -> None:
        if self.vm is not None and self.vm.poll() is None:
            self.vm.kill()
            self.vm.wait()


def _download(folder: Path, specs: list[str], deps: bool) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
         "--platform", "manylinux_2_28_aarch64", "--platform", "manylinux2014_aarch64",
         "--python-version", "3.11", "-d", str(folder), *([] if deps else ["--no-deps"]), *specs],
        check=True, capture_output=True,
    )  # fmt: skip


def _requires(wheel: Path) -> list[str]:
    """The wheel's requirements that hold on Linux aarch64 with Python 3.11."""
    from packaging.requirements import Requirement

    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(name).decode()
    where = {
        "platform_machine": "aarch64",
        "platform_system": "Linux",
        "sys_platform": "linux",
        "python_version": "3.11",
        "python_full_version": "3.11.2",
        "extra": "",
    }
    specs = []
    for line in metadata.splitlines():
        if line.startswith("Requires-Dist:"):
            req = Requirement(line.split(":", 1)[1].strip())
            if req.marker is None or req.marker.evaluate(where):
                specs.append(f"{req.name}{req.specifier}")
    return specs


def main(argv: list[str]) -> int:
    if argv[1:] != ["prepare"]:
        print("usage: python -m tests.support.arm64_vm prepare", file=sys.stderr)
        return 2
    why = emulation_ready()
    if why:
        print(f"arm64: {why}", file=sys.stderr)
        return 1
    torch_index()
    rootfs()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
