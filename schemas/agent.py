"""Node <-> coordinator messages (`/agent/*`)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

Isolation = Literal["bubblewrap", "unshare", "none", "off", "docker"]
SandboxLevel = Literal["none", "weak", "strong"]
SANDBOX_LEVELS: tuple[SandboxLevel, ...] = ("none", "weak", "strong")
"""Ordered: what a node's start-up self-test measured (`strong`: every probe held; `weak`: at
least the network is closed)."""
FailureKind = Literal["user_error", "node_error", "released"]
TaskKind = Literal["train", "evaluate"]

OUTPUT_CHUNK = 16_384
"""Most characters of a running task's output one heartbeat carries."""
OUTPUT_TAIL = 16_384
"""Most characters of a task's output kept with its attempt."""
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Short = Annotated[str, msgspec.Meta(max_length=100)]
Tail = Annotated[str, msgspec.Meta(max_length=16_384)]
Sha256 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
DatasetName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]
"""A node-local dataset's name: letters, digits, `.`, `_`, `-` (it names a folder on nodes)."""
DatasetFormat = Literal["csv", "tsv", "jsonl", "folder"]
Email = Annotated[str, msgspec.Meta(min_length=3, max_length=320)]


class DatasetInfo(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A dataset a node holds, as the node advertises it: never a byte of its content."""

    name: DatasetName
    format: DatasetFormat
    columns: Annotated[
        list[Annotated[str, msgspec.Meta(max_length=200)]], msgspec.Meta(max_length=2000)
    ] = []
    """The header of a table (the keys of a JSON Lines file's first row); none for a folder."""
    rows: Annotated[int, msgspec.Meta(ge=0, le=1 << 50)] = 0
    """Rows of a table or JSON Lines file, files of a folder: the update's sample weight."""
    description: Annotated[str, msgspec.Meta(max_length=500)] = ""
    allow_users: Annotated[list[Email], msgspec.Meta(max_length=256)] = []
    """Who besides the node's owner may train on it (emails)."""


class Capabilities(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What a node can run."""

    arch: Short = ""
    cpus: Annotated[int, msgspec.Meta(ge=0, le=4096)] = 0
    memory_mb: Annotated[int, msgspec.Meta(ge=0, le=1 << 30)] = 0
    """Memory a task may use there (MiB): its owner's cap within what was free at its start;
    a job's `min_memory_mb` is held against this."""
    machine_memory_mb: Annotated[int, msgspec.Meta(ge=0, le=1 << 30)] = 0
    """The machine's memory (MiB)."""
    executors: Annotated[list[Short], msgspec.Meta(max_length=8)] = []
    isolation: Isolation = "none"
    sandbox: SandboxLevel = "none"
    """The isolation level the node's self-test measured."""
    sandbox_gaps: Annotated[list[Short], msgspec.Meta(max_length=16)] = []
    """The self-test's probes that did not hold."""
    docker: bool = False
    gpus: Annotated[int, msgspec.Meta(ge=0, le=1024)] = 0
    version: Short = ""
    frameworks: Annotated[dict[Short, Short], msgspec.Meta(max_length=8)] = {}
    """The versions of the pinned frameworks (torch, ...) its tasks get."""


class RegisterRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Sent once by a new node, authenticated with an enrolment token of its owner's
    (`gridx node token create`; an API key still works, with a warning)."""

    name: Name
    owner_email: Annotated[str, msgspec.Meta(max_length=320)] | None = None
    capabilities: Capabilities = msgspec.field(default_factory=Capabilities)


class RegisterResponse(msgspec.Struct, kw_only=True):
    """The node's identity; the token is shown once and stored hashed."""

    node_id: str
    node_token: str
    heartbeat_s: float
    lease_s: float
    warning: str | None = None
    """Said when the node enrolled with something it should not have (an API key)."""


TaskStep = Literal["downloading", "preparing", "running", "uploading"]


class TaskPhase(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What the node is doing with a task it runs, for people: its inputs arriving
    (`downloading`), its environment being installed (`preparing`, not counted as training
    time), the script running (`running`), its result leaving (`uploading`)."""

    task_id: Short
    step: TaskStep
    detail: Annotated[str, msgspec.Meta(max_length=200)] = ""
    """In words, e.g. "downloading 2 packages (torch 2.13.0, numpy 2.1.0): 1.2 GB / 3.0 GB"."""


class HeartbeatRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Liveness plus the tasks the node is running (their leases get renewed)."""

    running: Annotated[list[Short], msgspec.Meta(max_length=64)] = []
    capabilities: Capabilities | None = None
    datasets: Annotated[list[DatasetInfo], msgspec.Meta(max_length=64)] | None = None
    """Every dataset the node holds, when that changed since the last acknowledged heartbeat
    (None: unchanged)."""
    phase: TaskPhase | None = None
    """What it is doing with the task it runs (shown on the dashboard while leased)."""
    resting: Short | None = None
    """Why the node takes no new task now (`paused by its owner`, `outside its hours (...)`),
    '' when it may, whenever that changed since the last acknowledged heartbeat (None:
    unchanged)."""
    output: Annotated[str, msgspec.Meta(max_length=OUTPUT_CHUNK)] = ""
    """What the running task printed (stdout and stderr as they came) since the last
    heartbeat; `gridx job logs --follow` shows it as it arrives."""


class HeartbeatResponse(msgspec.Struct, kw_only=True):
    """Commands for the node: tasks to stop now, and whether to drain."""

    cancel: list[str] = []
    drain: bool = False
    heartbeat_s: float = 5.0


class BlobRef(msgspec.Struct, kw_only=True):
    """A file the node downloads: a short-lived signed URL and the sha256 it must match."""

    url: str
    sha256: str
    size: int
    name: str


class LocalData(msgspec.Struct, kw_only=True):
    """A task on a dataset the node holds: its name, and the column order the job uses (a
    table whose header lists the same columns in another order is reordered by name)."""

    name: str
    columns: list[str] = []


class TaskAssignment(msgspec.Struct, kw_only=True):
    """A leased task. `lease_token` fences every later call about it."""

    task_id: str
    job_id: str
    round: int
    rounds: int
    shard: int
    num_shards: int
    epochs: int
    seed: int
    lease_token: str
    lease_expires_at: int
    timeout_s: int
    code: BlobRef
    requirements: BlobRef | None
    data: BlobRef | None
    init_model: BlobRef | None
    upload_url: str
    max_result_bytes: int
    strategy: str = "fedavg"
    gpu: bool = False
    """The job asked for a GPU: the executor must pass the node's GPUs through."""
    prox_mu: float | None = None
    """FedProx's mu, for train.py's proximal term (GRIDX_PROX_MU)."""
    kind: TaskKind = "train"
    """`evaluate`: run the job's evaluation script (`code`) on the round's model (`init_model`)
    and its test data (`data`); it reports metrics and uploads nothing."""
    train: BlobRef | None = None
    """An evaluation's copy of the job's train.py, next to the script (to import the model)."""
    warm: bool = False
    """The task may run in its job's warm runner on the node."""
    preload: list[str] = msgspec.field(default_factory=list)
    """What that runner imports once."""
    dataset: LocalData | None = None
    """Train on this node's copy of a dataset (`data` is then None)."""
    client_clip: float | None = None
    """Clip the update (weights minus `init_model`) to this L2 norm before uploading it
    (differential privacy with client-side clipping; the coordinator checks it)."""
    blind: bool = False
    """The initialisation step of a private (dp) job: its data shows its columns and no rows
    (the model it makes leaves the node un-noised, so it must not depend on them)."""
    entry: str | None = None
    """The job's code is a project: `code` (for an evaluation, `train`) is a zip of its folder,
    unpacked into the work folder, and this is the script to run from it."""
    private: bool = False
    """A differentially private job on this node's own data: what the script prints and its
    metrics stay on this node (only the noised merge of its weights leaves)."""
    compress: str | None = None
    """Send the update (weights minus `init_model`) encoded so (`int8`, `int4`, `topk:F`; see
    `JobConfig.compress`) instead of the weights."""


class UploadResponse(msgspec.Struct, kw_only=True):
    """A stored result file."""

    sha256: str
    size: int


class CompleteTaskRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Finish a task with the uploaded weights (by sha256) and the script's metrics (an
    `evaluate` task: metrics only, no weights)."""

    task_id: Short
    lease_token: Short
    result_sha256: Sha256 | None = None
    metrics: Annotated[dict[Short, float], msgspec.Meta(max_length=64)] = {}
    duration_s: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    output_tail: Annotated[str, msgspec.Meta(max_length=OUTPUT_TAIL)] = ""
    """The last of what the script printed (stdout and stderr as they came), kept with the
    attempt as a failed one's stderr is."""
    next: bool = False
    """Also lease the node its next task where one is ready now (no waiting): it comes in the
    answer's `next_task`, and the node skips its `request_task` call (one call fewer a task)."""


class FailTaskRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Give a task up. `user_error` blames the job's script, `node_error` the node,
    `released` nobody (a node shutting down hands its task back)."""

    task_id: Short
    lease_token: Short
    kind: FailureKind
    code: Short
    message: Annotated[str, msgspec.Meta(max_length=2_000)]
    stderr_tail: Tail = ""


class UploadLinkRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Ask for a fresh `upload_url` for a task whose lease the node holds (the one it came with
    may have expired while the task ran)."""

    task_id: Short
    lease_token: Short


class UploadLink(msgspec.Struct, kw_only=True):
    """Where to PUT the task's result now."""

    upload_url: str


class TaskAck(msgspec.Struct, kw_only=True):
    """The task's status after a complete/fail call."""

    task_id: str
    status: str
    next_task: TaskAssignment | None = None
    """The node's next task, leased to it, where the completion asked (`next`) and one was ready."""
