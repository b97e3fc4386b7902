"""The `docker` executor: train.py in a locked-down container of the executor image.

Training runs with no network, a read-only root, a private /tmp, uid 65534, every capability
dropped, no-new-privileges, memory / CPU / pids limits, a file-size limit, a wall-clock timeout,
and only the task's work folder mounted. Never privileged, never the engine's socket. A job's
requirements.txt is installed in a separate build step without network, from wheels only,
cached as an image tagged by the file's hash. Containers carry this node's label and are removed
after every run, and on the node's next start if it crashed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import docker
from docker.errors import BuildError, DockerException, ImageNotFound, NotFound
from docker.types import DeviceRequest, LogConfig, Ulimit
from packaging.utils import canonicalize_name

from gridx.node.environments import (
    RequirementsError,
    check_requirements,
    conflict,
    fetch,
    plan,
)
from gridx.node.errors import ExecutorUnavailable
from gridx.node.executors.base import (
    TAIL_BYTES,
    RunResult,
    RunSpec,
    judge,
    stopped,
    wait_or_stop,
)
from gridx.node.executors.warm import (
    IDLE_S,
    START_TIMEOUT_S,
    Runner,
    RunnerGone,
    Runners,
    WarmKey,
    WarmOrCold,
    runner_argv,
)
from gridx.node.memory import MemoryBudget
from gridx.node.sandbox import shm_bytes
from gridx.node.wheels import PINNED, Progress, quiet

log = logging.getLogger("gridx.node.docker")
DEFAULT_IMAGE = "gridx-executor:latest"
WORKDIR = "/work"
CONTROL_DIR = "/run/gridx"
LABEL = "org.gridx.node"


def docker_available() -> bool:
    """True when a Docker engine answers (DOCKER_HOST or the default socket)."""
    try:
        client = docker.from_env(timeout=5)
        client.ping()
        client.close()
    except (DockerException, OSError):
        return False
    return True


class DockerExecutor(WarmOrCold):
    """Runs each task in a fresh, locked-down container; a task that may run warm runs in its
    job's warm runner, one locked-down container per job (`warm.py`)."""

    name = "docker"
    isolation = "docker"

    def __init__(
        self,
        node_id: str,
        image: str | None = None,
        cpus: float = 0,
        warm_idle_s: float = IDLE_S,
        budget: MemoryBudget | None = None,
    ) -> None:
        self.client = docker.from_env(timeout=60)
        self.image = image or DEFAULT_IMAGE
        self.node_id = node_id
        self.cpus = cpus or float(os.cpu_count() or 1)
        try:
            self.client.images.get(self.image)
        except ImageNotFound as exc:
            raise ExecutorUnavailable(
                f"executor image {self.image} is missing: build it with "
                "`infra/executor/build_offline.sh` "
                "(or `docker build -t gridx-executor infra/executor`)"
            ) from exc
        self.runners = Runners(self._start_runner, idle_s=warm_idle_s, budget=budget)

    async def shutdown(self) -> None:
        """End the warm runners (their containers go with them)."""
        await self.runners.close_all()

    def cleanup(self) -> None:
        """Remove containers an earlier run of this node left (a crash mid-task). A node not
        registered yet has none: the containers labelled with no node id are the self-tests of
        other new nodes starting beside it."""
        if not self.node_id:
            return
        for c in self.client.containers.list(
            all=True, filters={"label": f"{LABEL}={self.node_id}"}
        ):
            log.info("removing leftover container %s", c.name)
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                c.remove(force=True)  # (it may be going already: auto-removed)

    async def prepare(
        self, requirements: Path | None, sha256: str | None, progress: Progress = quiet
    ) -> str:
        """The executor image, or an image with the job's requirements installed (cached).

        The build never reaches a network: what the image already has is used as is; anything
        else is first fetched on the host as wheels only (pip, no package code runs) and
        installed from that folder, so neither the host's loopback nor a build backend is
        ever reachable from a job's requirements. The image's frameworks (torch) are pinned,
        and a wheel the image already has at the planned version is not fetched.
        """
        if requirements is None or sha256 is None:
            return self.image
        lines = check_requirements(requirements.read_text())
        if not lines:
            return self.image
        tag = f"{self.image.split(':')[0]}:req-{sha256[:16]}"
        try:
            self.client.images.get(tag)
            return tag
        except ImageNotFound:
            pass
        pins = [f"{n}=={v}" for n, v in self.image_packages.items() if n in PINNED]
        if clash := conflict(lines, pins):
            raise clash
        files = {"requirements.txt": ("\n".join(lines) + "\n").encode()}
        progress("building the image from what it has")
        try:  # everything it needs may already be in the image
            await self._build(tag, files)
            return tag
        except BuildError:
            pass
        files.update(await self._fetch(files["requirements.txt"], pins, progress))
        progress("building the image with the fetched wheels")
        try:
            await self._build(tag, files)
        except BuildError as exc:
            tail = "".join(
                str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log
            )
            raise RequirementsError(
                "installing requirements.txt in the image failed", tail[-8192:]
            ) from exc
        return tag

    async def _fetch(self, checked: bytes, pins: list[str], progress: Progress) -> dict[str, bytes]:
        """The wheels the image lacks for the checked requirement lines (never the job's own
        file), for the image's Python and platform: {"wheels/NAME": bytes}."""
        with tempfile.TemporaryDirectory() as tmp:
            # On the host, and safe there: after check_requirements every line names a package,
            # and with wheels only pip builds nothing, so no code of the job's runs here.
            work = Path(tmp)
            (work / "requirements.txt").write_bytes(checked)
            target = ("--target", str(work / "target"), *self._wheel_target())
            pip = [sys.executable, "-m", "pip"]
            planned = await plan(pip, work / "requirements.txt", pins, work, target)
            have = self.image_packages
            needed = [w for w in planned if have.get(canonicalize_name(w.name)) != w.version]
            wheels = work / "wheels"
            if needed:
                flags = tuple(self._wheel_target())
                await fetch(sys.executable, needed, wheels, work, progress, flags)
            return {f"wheels/{w.name}": w.read_bytes() for w in wheels.glob("*.whl")}

    def _wheel_target(self) -> list[str]:
        """pip download flags for the image's Python and platform (not the host's)."""
        version, machine = self.python_tag
        plats = [f"manylinux_2_{n}_{machine}" for n in range(17, 37)]
        plats += [f"manylinux2014_{machine}", f"linux_{machine}"]
        return ["--python-version", version, *(f"--platform={p}" for p in plats)]

    @functools.cached_property
    def python_tag(self) -> tuple[str, str]:
        """The image's Python version (X.Y) and machine (x86_64, aarch64)."""
        out = self._in_image(
            "import platform,sys; print(sys.version_info[0], sys.version_info[1], "
            "platform.machine())"
        )
        major, minor, machine = out.split()
        return f"{major}.{minor}", machine

    def frameworks(self) -> dict[str, str]:
        """The pinned frameworks of the image."""
        return {n: v for n, v in self.image_packages.items() if n in PINNED}

    @functools.cached_property
    def image_packages(self) -> dict[str, str]:
        """{canonical name: version} of what the image's Python has installed."""
        out = self._in_image(
            "import importlib.metadata as m\n"
            "for d in m.distributions(): print(d.metadata['Name'], d.version)"
        )
        return {canonicalize_name(n): v for n, v in (line.split() for line in out.splitlines())}

    def _in_image(self, code: str) -> str:
        """What a Python snippet prints in the executor image (no network)."""
        out = self.client.containers.run(
            self.image, ["python3", "-c", code], network_mode="none", remove=True
        )
        return str(out.decode())

    async def _build(self, tag: str, files: dict[str, bytes]) -> None:
        """Build `tag` from the executor image with `files`, installing wheels only, offline
        (the RUN step is inside the build container, which has no network)."""
        find = "--find-links /tmp/wheels " if any(f.startswith("wheels/") for f in files) else ""
        dockerfile = (
            f"FROM {self.image}\n"
            "COPY . /tmp/\n"
            "RUN python3 -m pip install --no-cache-dir --break-system-packages --no-index "
            f"--only-binary :all: --disable-pip-version-check -q {find}"
            "-r /tmp/requirements.txt && rm -rf /tmp/wheels /tmp/requirements.txt\n"
        )
        context = _tar({"Dockerfile": dockerfile.encode(), **files})
        await asyncio.to_thread(
            self.client.images.build,
            fileobj=context,
            custom_context=True,
            tag=tag,
            network_mode="none",
            rm=True,
            forcerm=True,
        )

    def _container_env(self, spec: RunSpec) -> dict[str, str]:
        host = str(spec.workdir)
        env = {k: v.replace(host, WORKDIR) for k, v in spec.env.items()}
        env.update({"HOME": WORKDIR, "PATH": "/usr/local/bin:/usr/bin:/bin", "TMPDIR": "/tmp"})
        return env

    def _locked_down(self, spec: RunSpec) -> dict[str, Any]:
        """The container options every run gets: no network, read-only root, uid 65534, no
        capabilities, the node's limits."""
        return dict(
            network_mode="none",
            read_only=True,
            tmpfs={"/tmp": "rw,noexec,nosuid,size=256m"},
            shm_size=shm_bytes(spec.memory_mb),  # private to the container, as under bwrap
            user="65534:65534",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            mem_limit=f"{spec.memory_mb}m",
            memswap_limit=f"{spec.memory_mb}m",
            pids_limit=256,
            nano_cpus=int(self.cpus * 1e9),
            ulimits=[Ulimit(name="fsize", soft=spec.max_output_bytes, hard=spec.max_output_bytes)],
            log_config=LogConfig(type="json-file", config={"max-size": "8m", "max-file": "1"}),
            device_requests=[DeviceRequest(count=-1, capabilities=[["gpu"]])] if spec.gpu else [],
            detach=True,
        )

    def _hand_over(self, spec: RunSpec) -> None:
        os.chmod(spec.workdir, 0o777)  # the container's uid 65534 writes the model here

    async def _start_runner(self, key: WarmKey, spec: RunSpec, preload: tuple[str, ...]) -> Runner:
        """A runner in a container that shows the job's folder read-write, at the same path
        (so the task's paths need no rewriting). It connects back over a socket in a short
        folder of its own, shown read-only at CONTROL_DIR (a socket path has at most 107 bytes;
        the job's folder may be deeper), which is removed once it has connected.

        Raises:
            RunnerGone: it did not start or connect in time.
        """
        assert spec.warm is not None
        folder = spec.warm.folder
        env = {k: v for k, v in spec.env.items() if not k.startswith("GRIDX_")}
        env.update({"HOME": str(folder), "PATH": "/usr/local/bin:/usr/bin:/bin", "TMPDIR": "/tmp"})
        rendezvous = Path(tempfile.mkdtemp(prefix="gridx-"))
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        container: Any = None
        try:
            os.chmod(rendezvous, 0o755)
            listener.bind(str(rendezvous / "control"))
            os.chmod(rendezvous / "control", 0o777)
            listener.listen(1)
            listener.setblocking(False)
            container = self.client.containers.create(
                spec.runtime,
                ["python3", *runner_argv(f"--control {CONTROL_DIR}/control", str(folder), preload)],
                working_dir=str(folder),
                volumes={
                    str(folder): {"bind": str(folder), "mode": "rw"},
                    str(rendezvous): {"bind": CONTROL_DIR, "mode": "ro"},
                    **_data_volume(spec),
                },
                environment=env,
                labels={LABEL: self.node_id, "org.gridx.job": key.job_id},
                **self._locked_down(spec),
            )
            await asyncio.to_thread(container.start)
            loop = asyncio.get_running_loop()
            control, _ = await asyncio.wait_for(loop.sock_accept(listener), START_TIMEOUT_S)
        except (DockerException, TimeoutError, OSError) as exc:
            if container is not None:
                await asyncio.to_thread(_remove, container)
            raise RunnerGone(f"its container did not start or connect ({exc})") from exc
        finally:
            listener.close()
            shutil.rmtree(rendezvous, ignore_errors=True)
        control.setblocking(False)

        async def end() -> None:
            await asyncio.to_thread(_remove, container)

        async def out_of_memory() -> bool:
            with contextlib.suppress(DockerException):
                await asyncio.to_thread(container.reload)
                return bool(container.attrs.get("State", {}).get("OOMKilled"))
            return False

        return await Runner.started(key, control, end, out_of_memory)

    async def _cold(self, spec: RunSpec, cancel: asyncio.Event) -> RunResult:
        """The script in a fresh container of its own."""
        container: Any = self.client.containers.create(
            spec.runtime,
            ["python3", "-u", spec.script, *spec.argv],
            working_dir=WORKDIR,
            volumes={str(spec.workdir): {"bind": WORKDIR, "mode": "rw"}, **_data_volume(spec)},
            environment=self._container_env(spec),
            labels={LABEL: self.node_id, "org.gridx.task": spec.env.get("GRIDX_TASK_ID", "")},
            **self._locked_down(spec),
        )
        started = time.monotonic()
        try:
            await asyncio.to_thread(container.start)
            ended = await wait_or_stop(
                asyncio.to_thread(container.wait),
                cancel,
                spec.timeout_s,
                lambda: asyncio.to_thread(_kill, container),
            )
            duration = time.monotonic() - started
            await asyncio.to_thread(container.reload)
            state = container.attrs.get("State", {})
            rc = state.get("ExitCode")
            stdout = await asyncio.to_thread(container.logs, stdout=True, stderr=False)
            stderr = await asyncio.to_thread(container.logs, stdout=False, stderr=True)
        finally:
            await asyncio.to_thread(_remove, container)
        (spec.logdir / "stdout.log").write_bytes(stdout)
        (spec.logdir / "stderr.log").write_bytes(stderr)
        spec.live.write(stdout)  # (a cold container's output arrives when it ends)
        spec.live.write(stderr)
        tail = stderr[-TAIL_BYTES:].decode("utf-8", "replace")
        if not ended:
            return stopped(spec, cancel, rc, tail, duration)
        return await judge(spec, rc, tail, duration, oom=bool(state.get("OOMKilled")))


def _kill(container: Any) -> None:
    with contextlib.suppress(NotFound, DockerException):  # it may have just exited
        container.kill()


def _data_volume(spec: RunSpec) -> dict[str, dict[str, str]]:
    """The node-local data folder, read-only at its own path (GRIDX_DATA names it)."""
    return {str(spec.data): {"bind": str(spec.data), "mode": "ro"}} if spec.data else {}


def _remove(container: Any) -> None:
    with contextlib.suppress(NotFound):
        container.remove(force=True)


def _tar(files: dict[str, bytes]) -> io.BytesIO:
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf
