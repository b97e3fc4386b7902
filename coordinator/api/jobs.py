"""`/jobs`: submit, list, inspect, cancel, and download the final model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from litestar import Controller, Request, delete, get, post
from litestar.params import Parameter
from litestar.response import File

from gridx.coordinator.api.multipart import MultipartReceiver
from gridx.coordinator.errors import InvalidConfig, InvalidInput
from gridx.coordinator.services import job_models, job_views, jobs, retention
from gridx.coordinator.services.job_config import decode_config
from gridx.coordinator.services.principals import User
from gridx.coordinator.services.runtime import Runtime
from gridx.schemas.jobs import JobConfig, JobDetail, JobSummary


def file_name(raw: str | None, field: str) -> str:
    """The base name of an uploaded file (folders dropped, control characters removed).

    Raises:
        InvalidInput: the name climbs folders (`..`), which no honest client sends.
    """
    parts = (raw or "").replace("\\", "/").split("/")
    if ".." in parts:
        raise InvalidInput(f"{field}: the file name {raw!r} contains '..'", field=field)
    base = "".join(ch for ch in parts[-1] if ch.isprintable()).strip()[:100]
    return base if base not in ("", ".") else field


def _form_problems(form: MultipartReceiver) -> list[InvalidInput]:
    """Every invalid field of a submission form but the config."""
    problems: list[InvalidInput] = []
    sent = [f for f in ("train_py", "project") if (p := form.parts.get(f)) and p.path and p.size]
    if len(sent) != 1:
        problems.append(
            InvalidInput(
                "train_py is required: the training script to run (or project, a zip of its "
                "folder; one of the two)",
                field="train_py",
            )
        )
    empty = form.parts.get("data")
    if empty is not None and empty.filename and empty.size == 0:
        problems.append(
            InvalidInput(
                f"data: {empty.filename!r} is empty (0 bytes); attach the dataset, or leave the "
                "field out for a job without data",
                field="data",
            )
        )
    evaluate, test = form.parts.get("evaluate_py"), form.parts.get("test_data")
    if bool(evaluate and evaluate.size) != bool(test and test.size):
        field = "test_data" if evaluate and evaluate.size else "evaluate_py"
        problems.append(
            InvalidInput(
                f"{field} is missing: a held-out evaluation needs both evaluate_py (the script) "
                "and test_data",
                field=field,
            )
        )
    return problems


def submission_of(form: MultipartReceiver) -> jobs.Submission:
    """The job a received form describes.

    Raises:
        InvalidInput: every invalid field at once (the first one's type, status and message).
    """
    problems: list[InvalidInput] = []
    config = None
    try:
        config = decode_config(bytes(form.parts["config"].value) if "config" in form.parts else b"")
    except InvalidConfig as exc:
        problems.append(exc)
    problems += _form_problems(form)
    if problems:
        first = problems[0]
        raise type(first)(
            first.message, field=first.field, errors=[e for p in problems for e in p.errors]
        )

    def path(field: str) -> Path | None:
        part = form.parts.get(field)
        return part.path if part is not None and part.size else None

    def name(field: str) -> str | None:
        part = form.parts.get(field)
        return file_name(part.filename, field) if part is not None and part.size else None

    project = path("project")
    code = project or path("train_py")
    assert config is not None and code is not None
    return jobs.Submission(
        config=config,
        code=code,
        project=project is not None,
        requirements=path("requirements"),
        data=path("data"),
        data_name=name("data"),
        init_model=path("init_model"),
        evaluate=path("evaluate_py"),
        test_data=path("test_data"),
        test_data_name=name("test_data"),
    )


# What to do instead when a part is over its limit (besides asking an admin to raise it).
DATA = "; or keep the data on the nodes that hold it (`gridx job submit --dataset NAME`)"
CODE = "; data belongs in --data, not in the script"
PROJECT = "; leave what train.py does not need out with a .gridxignore (data: --data)"


class JobController(Controller):
    """A user's jobs. Other users' jobs answer 404."""

    path = "/jobs"
    tags = ["jobs"]

    @post("/", request_max_body_size=None, status_code=201)
    async def submit(self, request: Request, rt: Runtime, user: User) -> JobDetail:
        """Submit a job as multipart/form-data.

        Fields: `train_py` (file) or `project` (a zip of the job's folder, run from its
        config's `entry`, default `train.py`), one of them; `requirements` (file), `data`
        (file; a delimited table or JSON Lines is split into shards by rows), `init_model`
        (file: a `.pth` state_dict or `.safetensors` every shard starts round 0 from),
        `evaluate_py` and
        `test_data` (files, together: the held-out evaluation run on each round's model),
        `config` (JSON: name, rounds, shards, epochs, strategy, task_timeout_s, max_attempts,
        seed, ...).
        """
        s = rt.settings
        declared = int(request.headers.get("content-length") or 0)
        retention.check_free_space(rt, declared)
        await retention.check_quota(rt, user, declared)
        form = MultipartReceiver(
            rt.storage.temp_path,
            {
                "train_py": (s.max_code_bytes, "max_code_bytes", CODE),
                "project": (s.max_project_bytes, "max_project_bytes", PROJECT),
                "requirements": (s.max_code_bytes, "max_code_bytes", ""),
                "data": (s.max_upload_bytes, "max_upload_bytes", DATA),
                "init_model": (s.max_result_bytes, "max_result_bytes", ""),
                "evaluate_py": (s.max_code_bytes, "max_code_bytes", CODE),
                "test_data": (s.max_upload_bytes, "max_upload_bytes", DATA),
                "config": (s.max_json_bytes, "max_json_bytes", ""),
            },
        )
        await form.receive(request.headers.get("content-type"), request.stream())
        try:
            return await jobs.submit(rt, user, submission_of(form))
        finally:
            form.cleanup()  # adopted files were moved away; this removes only leftovers

    @get("/")
    async def list_jobs(self, rt: Runtime, user: User) -> list[JobSummary]:
        """The caller's jobs, newest first (an admin sees all)."""
        return await job_views.list_jobs(rt, user)

    @get("/defaults")
    async def defaults(self, user: User) -> JobConfig:
        """What a job gets for every setting it does not give (the CLI's and the dashboard
        form's defaults)."""
        return JobConfig()

    @get("/{job_id:str}")
    async def detail(self, rt: Runtime, user: User, job_id: str) -> JobDetail:
        """A job with its config, rounds, tasks and attempts."""
        return await job_views.detail(rt, user, job_id)

    @post("/{job_id:str}/cancel", status_code=200)
    async def cancel(self, rt: Runtime, user: User, job_id: str) -> JobSummary:
        """Cancel an unfinished job; running tasks stop within a heartbeat."""
        return await jobs.cancel(rt, user, job_id)

    @delete("/{job_id:str}", status_code=204)
    async def delete_job(self, rt: Runtime, user: User, job_id: str) -> None:
        """Delete an ended job and everything only it used (a file another job shares stays);
        409 while it runs (cancel it first)."""
        await retention.delete_job(rt, user, job_id)

    @get("/{job_id:str}/model")
    async def model(
        self,
        rt: Runtime,
        user: User,
        job_id: str,
        format: Annotated[Literal["pth", "safetensors"], Parameter(query="format")] = "pth",
        round: Annotated[int | None, Parameter(query="round", ge=-1, le=10_000)] = None,
    ) -> File:
        """Download the final model: `final_model.pth` (state_dict) or `.safetensors`; with
        `round` (counted from 0), that round's merged model (a checkpoint, while the job runs
        and, for its last `keep_rounds` rounds, after it ended)."""
        path = await job_models.model_file(rt, user, job_id, format, round)
        name = f"final_model.{format}" if round is None else f"round_{round + 1}.{format}"
        return File(path=path, filename=name, content_disposition_type="attachment")
