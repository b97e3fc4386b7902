"""What a task needs in its work folder before it runs: its script or its project unpacked,
its data (downloaded, or this node's own copy of a dataset, or, for a private job's
initialisation step, a stand-in with the columns and no rows) and the model it starts from."""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

from gridx.node.client import CoordinatorClient
from gridx.node.config import NodeConfig
from gridx.node.datasets import Catalog
from gridx.node.private_training import blind_copy, local_data
from gridx.node.projects import unpack as unpack_project
from gridx.node.update_wrapping import keep_residual, wrap
from gridx.schemas.agent import TaskAssignment

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def safe_filename(name: str, default: str) -> str:
    """A file name from the coordinator reduced to a harmless basename."""
    base = _SAFE_NAME.sub("_", Path(name).name).lstrip(".")
    return base[:100] or default


class TaskInputs:
    """One task's inputs, laid out in its (fresh, node-made) work folder."""

    def __init__(
        self,
        client: CoordinatorClient,
        catalog: Catalog,
        config: NodeConfig,
        task: TaskAssignment,
        workdir: Path,
        env: dict[str, str],
    ) -> None:
        self.client = client
        self.catalog = catalog
        self.config = config
        self.task = task
        self.workdir = workdir
        self.env = env
        """The task's environment, completed with where its data and model are."""

    async def download(self, logdir: Path) -> None:
        """Fetch the script (or unpack the project), its data and the model to start from (or
        to evaluate); `logdir` is the node's own folder of the task."""
        task, workdir, env = self.task, self.workdir, self.env
        evaluate = task.kind == "evaluate"
        project = task.train if evaluate else task.code
        if task.entry is not None and project is not None:  # a folder: unpacked, then run
            archive = logdir / "project.zip"  # (the node's own folder: no task sees it)
            logdir.mkdir(parents=True, exist_ok=True)
            await self.client.download(project, archive)
            cap = self.config.max_project_mb << 20
            await asyncio.to_thread(unpack_project, archive, workdir, cap)
        if evaluate or task.entry is None:
            script = "evaluate.py" if evaluate else "train.py"
            await self.client.download(task.code, workdir / script)
        if task.train is not None and task.entry is None:  # an evaluation may import train.py
            await self.client.download(task.train, workdir / "train.py")
        if task.data is not None:
            data = workdir / safe_filename(task.data.name, "data")
            await self.client.download(task.data, data)
            env["GRIDX_DATA"] = str(data)
        if task.init_model is not None:
            init = workdir / ("model_in.pth" if evaluate else "init_model.pth")
            await self.client.download(task.init_model, init)
            env["GRIDX_MODEL" if evaluate else "GRIDX_INIT_MODEL"] = str(init)

    async def private(self, script: str) -> tuple[Path | None, str]:
        """This node's own copy of the job's dataset (the folder the sandbox shows), and the
        script to run (a wrapper when the job clips or compresses its updates on the node)."""
        task, workdir, env = self.task, self.workdir, self.env
        data_dir = None
        if task.dataset is not None:
            data_dir, data = await asyncio.to_thread(
                local_data, self.catalog, self.config.state_dir, task.dataset
            )
            env["GRIDX_DATA"] = str(data)
        if task.blind and "GRIDX_DATA" in env:  # columns, no rows: see TaskAssignment.blind
            real = Path(env["GRIDX_DATA"])
            blind = await asyncio.to_thread(blind_copy, real, workdir / f"blind-{real.name}")
            if real.parent == workdir:
                await asyncio.to_thread(real.unlink)
            env["GRIDX_DATA"], data_dir = str(blind), None
        script = await asyncio.to_thread(wrap, task, workdir, script, env, self.residual)
        return data_dir, script

    @property
    def residual(self) -> Path:
        """Where this node keeps the job's top-k residual between its tasks."""
        return self.config.state_dir / "residuals" / f"{safe_filename(self.task.job_id, 'job')}.pt"

    async def keep(self) -> None:
        """After the task succeeded: keep what the node carries to the job's next task."""
        cap = 8 * self.task.max_result_bytes  # (float32 residuals of a half-precision model)
        await asyncio.to_thread(keep_residual, self.task, self.workdir, self.residual, cap)


def remove_folder(path: Path) -> None:
    """Delete a folder a task may have replaced with a link (the link goes, never its target)."""
    if path.is_symlink():
        path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)
