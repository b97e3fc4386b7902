"""Jobs, rounds and tasks as users see them."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

JobStatus = Literal["queued", "running", "aggregating", "succeeded", "failed", "cancelled"]
RoundStatus = Literal["running", "aggregating", "done", "failed", "cancelled"]
TaskStatus = Literal["queued", "leased", "succeeded", "failed", "cancelled"]
Strategy = Literal["fedavg"]


class JobConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What a user asks for when submitting a job. Every field has a bound."""

    name: Annotated[str, msgspec.Meta(max_length=200)] = ""
    rounds: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    shards: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 2
    epochs: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1
    strategy: Strategy = "fedavg"
    task_timeout_s: Annotated[int, msgspec.Meta(ge=1, le=86_400)] = 600
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=20)] = 3
    seed: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)] = 0


class AttemptInfo(msgspec.Struct, kw_only=True):
    """One try at a task by one node."""

    attempt: int
    node_id: str
    started_at: int
    finished_at: int | None
    outcome: str | None
    error_code: str | None
    error: str | None
    stderr_tail: str | None


class TaskInfo(msgspec.Struct, kw_only=True):
    """A task: one shard in one round."""

    id: str
    round: int
    shard: int
    status: TaskStatus
    node_id: str | None
    attempts: int
    max_attempts: int
    rows: int
    metrics: dict[str, float] | None
    error_code: str | None
    error: str | None
    history: list[AttemptInfo] = []


class RoundInfo(msgspec.Struct, kw_only=True):
    """One round of federated averaging."""

    index: int
    status: RoundStatus
    input_model_sha256: str | None
    output_model_sha256: str | None
    metrics: dict[str, float] | None
    started_at: int
    finished_at: int | None


class JobSummary(msgspec.Struct, kw_only=True):
    """A job as it appears in listings."""

    id: str
    name: str
    owner: str
    status: JobStatus
    current_round: int
    rounds: int
    shards: int
    tasks_done: int
    tasks_total: int
    error: str | None
    created_at: int
    updated_at: int


class JobDetail(msgspec.Struct, kw_only=True):
    """A job with its configuration, rounds and tasks."""

    job: JobSummary
    config: JobConfig
    code_sha256: str
    requirements_sha256: str | None
    data_sha256: str | None
    final_model_sha256: str | None
    final_safetensors_sha256: str | None
    rounds: list[RoundInfo]
    tasks: list[TaskInfo]
