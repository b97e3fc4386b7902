"""`/jobs`: submit, list, inspect, cancel, and download the final model."""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec
from litestar import Controller, Request, get, post
from litestar.params import Parameter
from litestar.response import File

from gridx.coordinator.aggregation.engine import check_strategy
from gridx.coordinator.api.multipart import MultipartReceiver
from gridx.coordinator.db.users import UserRow
from gridx.coordinator.errors import BadRequest, InvalidConfig, InvalidInput
from gridx.coordinator.services import jobs
from gridx.coordinator.services.runtime import Runtime
from gridx.schemas.jobs import JobConfig, JobDetail, JobSummary

_PATH = re.compile(r"at `\$\.?([^`\[]*)")
_UNKNOWN = re.compile(r"unknown field `([^`]*)`")


def _field_of(message: str) -> str | None:
    """The dotted field a msgspec validation message is about (`strategy.f`)."""
    path = _PATH.search(message)
    unknown = _UNKNOWN.search(message)
    parts = [p for p in (path.group(1) if path else "", unknown.group(1) if unknown else "") if p]
    return ".".join(parts) or None


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


def decode_config(raw: bytes) -> JobConfig:
    """Decode and validate a job config, naming the offending field.

    `"strategy": "fedmedian"` is short for `"strategy": {"name": "fedmedian"}`.

    Raises:
        InvalidConfig: malformed JSON or a field out of bounds (422 with `field`).
    """
    try:
        data = msgspec.json.decode(raw or b"{}")
        if isinstance(data, dict) and isinstance(data.get("strategy"), str):
            data["strategy"] = {"name": data["strategy"]}
        config = msgspec.convert(data, JobConfig)
    except msgspec.ValidationError as exc:
        raise InvalidConfig(f"invalid job config: {exc}", field=_field_of(str(exc))) from exc
    except msgspec.DecodeError as exc:
        raise InvalidConfig(f"job config is not valid JSON: {exc}", field="config") from exc
    except RecursionError as exc:
        raise BadRequest("job config is nested too deeply", field="config") from exc
    problem = check_strategy(config.strategy, config.shards)
    if problem is not None:
        raise InvalidConfig(f"invalid job config: {problem[1]}", field=problem[0])
    return config


class JobController(Controller):
    """A user's jobs. Other users' jobs answer 404."""

    path = "/jobs"
    tags = ["jobs"]

    @post("/", request_max_body_size=None, status_code=201)
    async def submit(self, request: Request, rt: Runtime, user: UserRow) -> JobDetail:
        """Submit a job as multipart/form-data.

        Fields: `train_py` (file, required), `requirements` (file), `data` (file; a delimited
        table or JSON Lines is split into shards by rows), `init_model` (file: a `.pth`
        state_dict or `.safetensors` every shard starts round 0 from), `evaluate_py` and
        `test_data` (files, together: the held-out evaluation run on each round's model),
        `config` (JSON: name, rounds, shards, epochs, strategy, task_timeout_s, max_attempts,
        seed, ...).
        """
        s = rt.settings
        form = MultipartReceiver(
            rt.storage,
            {
                "train_py": s.max_code_bytes,
                "requirements": s.max_code_bytes,
                "data": s.max_upload_bytes,
                "init_model": s.max_result_bytes,
                "evaluate_py": s.max_code_bytes,
                "test_data": s.max_upload_bytes,
                "config": s.max_json_bytes,
            },
        )
        await form.receive(request.headers.get("content-type"), request.stream())
        try:
            problems: list[InvalidInput] = []
            config = None
            try:
                raw = bytes(form.parts["config"].value) if "config" in form.parts else b""
                config = decode_config(raw)
            except InvalidConfig as exc:
                problems.append(exc)
            code = form.parts.get("train_py")
            if code is None or code.path is None or code.size == 0:
                problems.append(
                    InvalidInput(
                        "train_py is required: the training script to run", field="train_py"
                    )
                )
            empty = form.parts.get("data")
            if empty is not None and empty.filename and empty.size == 0:
                problems.append(
                    InvalidInput(
                        f"data: {empty.filename!r} is empty (0 bytes); attach the dataset, or "
                        "leave the field out for a job without data",
                        field="data",
                    )
                )
            evaluate, test = form.parts.get("evaluate_py"), form.parts.get("test_data")
            if bool(evaluate and evaluate.size) != bool(test and test.size):
                field = "test_data" if evaluate and evaluate.size else "evaluate_py"
                problems.append(
                    InvalidInput(
                        f"{field} is missing: a held-out evaluation needs both evaluate_py (the "
                        "script) and test_data",
                        field=field,
                    )
                )
            if problems:  # report every invalid field at once
                first = problems[0]
                raise type(first)(
                    first.message, field=first.field, errors=[e for p in problems for e in p.errors]
                )
            assert config is not None and code is not None and code.path is not None
            req = form.parts.get("requirements")
            data = form.parts.get("data")
            init = form.parts.get("init_model")
            data_name = file_name(data.filename, "data") if data and data.size else None
            submission = jobs.Submission(
                config=config,
                code=code.path,
                requirements=req.path if req and req.size else None,
                data=data.path if data and data.size else None,
                data_name=data_name,
                init_model=init.path if init and init.size else None,
                evaluate=evaluate.path if evaluate and evaluate.size else None,
                test_data=test.path if test and test.size else None,
                test_data_name=file_name(test.filename, "test_data")
                if test and test.size
                else None,
            )
            return await jobs.submit(rt, user, submission)
        finally:
            form.cleanup()  # adopted files were moved away; this removes only leftovers

    @get("/")
    async def list_jobs(self, rt: Runtime, user: UserRow) -> list[JobSummary]:
        """The caller's jobs, newest first (an admin sees all)."""
        return await jobs.list_jobs(rt, user)

    @get("/{job_id:str}")
    async def detail(self, rt: Runtime, user: UserRow, job_id: str) -> JobDetail:
        """A job with its config, rounds, tasks and attempts."""
        return await jobs.detail(rt, user, job_id)

    @post("/{job_id:str}/cancel", status_code=200)
    async def cancel(self, rt: Runtime, user: UserRow, job_id: str) -> JobSummary:
        """Cancel an unfinished job; running tasks stop within a heartbeat."""
        return await jobs.cancel(rt, user, job_id)

    @get("/{job_id:str}/model")
    async def model(
        self,
        rt: Runtime,
        user: UserRow,
        job_id: str,
        format: Annotated[Literal["pth", "safetensors"], Parameter(query="format")] = "pth",
    ) -> File:
        """Download the final model: `final_model.pth` (state_dict) or `.safetensors`."""
        path = await jobs.model_file(rt, user, job_id, format)
        return File(
            path=path, filename=f"final_model.{format}", content_disposition_type="attachment"
        )
