"""Jobs, rounds and tasks as users see them."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from gridx.schemas.agent import DatasetName, SandboxLevel
from gridx.schemas.placement import Placement
from gridx.schemas.projects import ENTRY_PATTERN
from gridx.schemas.strategies import FedAvg, Positive, Strategy

JobStatus = Literal["queued", "running", "aggregating", "succeeded", "failed", "cancelled"]
FINISHED: tuple[JobStatus, ...] = ("succeeded", "failed", "cancelled")
RoundStatus = Literal["running", "aggregating", "done", "failed", "cancelled"]
TaskStatus = Literal["queued", "leased", "succeeded", "failed", "cancelled"]


Email = Annotated[str, msgspec.Meta(min_length=3, max_length=320)]


class Iid(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="name", tag="iid"):
    """Rows dealt round-robin: every shard a balanced sample of the whole."""


class ByColumn(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="name", tag="by_column"
):
    """A natural split: all rows with one value of `column` (a hospital, a site) in one shard,
    groups balanced across shards, never split."""

    column: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class Dirichlet(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="name", tag="dirichlet"
):
    """Label skew for non-IID studies: each class of `column` is spread over the shards in
    proportions drawn from Dirichlet(alpha) (seeded by the job's seed); the smaller `alpha`,
    the more each shard holds a few classes."""

    column: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    alpha: Annotated[float, msgspec.Meta(gt=0, le=1000)] = 0.5


Partition = Iid | ByColumn | Dirichlet


class Privacy(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Central differential privacy (DP-FedAvg, McMahan et al. 2018), as Flower's server-side
    fixed clipping: each update is clipped to `clip_norm`, the clipped updates are averaged
    uniformly, and Gaussian noise of standard deviation `noise_multiplier * clip_norm / n` is
    added to the mean of the n updates. The privacy spent is tracked with `dp-accounting`'s
    RDP accountant, per round, as (epsilon, delta)."""

    noise_multiplier: Annotated[float, msgspec.Meta(ge=0, le=1000)]
    clip_norm: Positive
    delta: Annotated[float, msgspec.Meta(gt=0, lt=1)] | None = None
    """The delta of (epsilon, delta); default 1 / the rows of the data the job trains on."""
    max_epsilon: Positive | None = None
    """Stop the job (with the model of the last round that fits) before a round would take
    epsilon past this budget."""
    client_clip: bool = False
    """Nodes clip their own update before uploading it; the coordinator refuses an update whose
    norm exceeds `clip_norm` instead of clipping it silently."""


ModuleName = Annotated[
    str,
    msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$", max_length=100),
]


COMPRESS_PATTERN = r"^(int8|int4|topk:0?\.[0-9]{1,6})$"


class JobConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What a user asks for when submitting a job. Every field has a bound."""

    name: Annotated[str, msgspec.Meta(max_length=200)] = ""
    entry: Annotated[str, msgspec.Meta(pattern=ENTRY_PATTERN)] | None = None
    """The script a project (code sent as a folder, the `project` field) runs, at its top level
    (`train.py` when a project is sent without one); None for a single `train_py`."""
    rounds: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    shards: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 2
    epochs: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1
    strategy: Strategy = msgspec.field(default_factory=FedAvg)
    task_timeout_s: Annotated[int, msgspec.Meta(ge=1, le=86_400)] = 600
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=20)] = 3
    """Tries of the user's code per shard and round (its failures: errors, bad weights)."""
    max_node_losses: Annotated[int, msgspec.Meta(ge=1, le=100)] = 5
    """Times a shard may be lost with its node (the lease ran out, the node reported its own
    failure) before the job fails; counted apart from `max_attempts`."""
    replicas: Annotated[int, msgspec.Meta(ge=1, le=5)] | Literal["adaptive"] = 1
    """Train each shard on this many nodes of different owners and accept the update a majority
    of them agree on (redundant computing); disagreeing nodes lose reputation. `adaptive`
    (BOINC's adaptive replication): a result is checked by a node of another owner only while
    its node is not trusted (fewer than `TRUST_STREAK` agreed results in a row, doubled for each
    time it was outvoted), then with probability 1 / its streak; a third copy breaks a tie."""
    replica_tolerance: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 1e-3
    """Copies agree when their relative L2 distance ||a - b|| / max(||a||, ||b||) is at most
    this (0: bit-identical)."""
    seed: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)] = 0
    partition: Partition = msgspec.field(default_factory=Iid)
    """How a table or JSON Lines dataset is split into shards (`iid`, `by_column`, `dirichlet`)."""
    init_step: bool = True
    """Without an `init_model`, first run the script once (round -1: `GRIDX_INIT=1`,
    `GRIDX_EPOCHS=0`; if that fails or writes no model, one ordinary run on shard 0) and give its
    model to every shard of round 0, so they all start from the same weights (jobs of more than
    one shard). False: each shard of round 0 starts from whatever its script initialises. An
    async job without an `init_model` runs it whatever this says: its updates are differences
    from the one model they all left."""
    require_docker: bool = False
    """Run only on nodes whose executor is Docker (the strongest isolation)."""
    min_sandbox: SandboxLevel = "none"
    """Run only on nodes whose measured sandbox is at least this (`weak` or `strong`); nodes
    below `strong` only work when their owner accepted a weak sandbox."""
    require_gpu: bool = False
    """Run only on nodes with a CUDA GPU (passed through to the task)."""
    arch: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    """Run only on nodes of this CPU architecture (`x86_64`, `aarch64`, ...)."""
    min_cpus: Annotated[int, msgspec.Meta(ge=0, le=4096)] = 0
    """Run only on nodes with at least this many cores."""
    min_memory_mb: Annotated[int, msgspec.Meta(ge=0, le=1 << 30)] = 0
    """Run only on nodes with at least this much memory."""
    backup_tasks: bool = False
    """Stragglers, as MapReduce handles them: when a round waits only on tasks that have run
    more than `backup_after` times the median of its finished ones, and a node asks for work
    and finds none, that node gets a second copy of the slowest; the first valid result wins and
    the other copy is cancelled, uncharged (jobs of one copy per shard)."""
    backup_after: Annotated[float, msgspec.Meta(ge=1.0, le=100.0)] = 2.0
    min_fraction: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 1.0
    """Close a round once this fraction of its shards is in and `round_deadline_s` has passed:
    the tasks still running are cancelled, their late results dropped (counted in the round's
    `dropped`), and the merge weighs the shards that came in (1.0: wait for all)."""
    round_deadline_s: Annotated[int, msgspec.Meta(ge=1, le=86_400)] | None = None
    """Seconds after a round opens from which `min_fraction` may close it."""
    mode: Literal["sync", "async"] = "sync"
    """`sync`: rounds, each merging its shards' updates once they are in (or `min_fraction` of
    them). `async` (FedBuff, Nguyen et al. 2022): nothing waits; every shard trains again as soon
    as its update is in, on the newest model, and the coordinator applies a server step every
    `buffer` updates, each weighted by its staleness; `rounds` counts server steps."""
    buffer: Annotated[int, msgspec.Meta(ge=1, le=1024)] | None = None
    """Async: updates merged per server step (default: half the shards, at least 1)."""
    staleness_exponent: Annotated[float, msgspec.Meta(ge=0, le=8)] = 0.5
    """Async: an update trained on the model of s steps ago weighs (1 + s) ** -exponent times
    its rows (0.5: 1 / sqrt(1 + s); 0: no discount)."""
    max_staleness: Annotated[int, msgspec.Meta(ge=0, le=100_000)] | None = None
    """Async: an update more than this many steps behind is dropped (recorded on its task as
    `stale`), and its shard trains again on the newest model (None: none is too old)."""
    eval_every: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1
    """With test data: evaluate the model every this many rounds (server steps in async mode),
    and always the last one."""
    warm: bool = True
    """Run the job's tasks on a node in one warm sandboxed runner that imports `preload` once
    and forks a fresh child per task (no interpreter start or exit per task). False: a fresh
    interpreter per task, for a script that needs one (it changes the interpreter for good)."""
    preload: Annotated[list[ModuleName], msgspec.Meta(max_length=16)] = msgspec.field(
        default_factory=lambda: ["torch", "numpy"]
    )
    """Modules the warm runner imports once (those the job does not have are skipped)."""
    dataset: DatasetName | None = None
    """Train on a dataset the nodes hold (none is uploaded): each round, one task on every
    eligible node that holds a dataset of this name and lets the job's owner use it: the
    owner's own nodes, and nodes of the `holders` named."""
    holders: Annotated[list[Email], msgspec.Meta(max_length=64)] = msgspec.field(
        default_factory=list
    )
    """With `dataset`: the other owners (emails) whose nodes' copies the job accepts, if they
    allow the job's owner. Any other node that declares a dataset of that name never joins
    (a name is only what a node says)."""
    min_nodes: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 1
    """A round on a node-local dataset starts once this many eligible nodes hold it."""
    max_nodes: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 64
    """At most this many nodes train in one round (the rest wait for a later job)."""
    max_weight: Annotated[int, msgspec.Meta(ge=1, le=1 << 50)] | None = None
    """Cap on a node-local update's sample weight (the row count its node declared). Unset,
    the cap is twice the lower median of the round's declarations, so no node can dominate
    the mean by claiming many rows."""
    dp: Privacy | None = None
    """Central differential privacy (see `Privacy`)."""
    compress: Annotated[str, msgspec.Meta(pattern=COMPRESS_PATTERN)] | None = None
    """Nodes send their update (the model minus the round's) compressed: `int8` (about 0.26x
    the bytes), `int4` (0.13x), both with a scale per block of 128 values, or `topk:F` (the
    fraction F of the values that changed most, with their indices; what was left out is added
    to the node's next update of the job: error feedback). None: whole models."""
    keep_rounds: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1
    """How many of the last merged rounds keep their model once the job has ended (while it
    runs, every merged round's is there): `gridx job download JOB --round N`."""
    keep_updates: bool = False
    """Keep every client update and round model after the round is merged (for audits or
    re-aggregation); by default a merged round's updates are deleted, and a finished job keeps
    its code, test data and final model only."""

    @property
    def adaptive(self) -> bool:
        """Adaptive replication: results checked by a second node only while not trusted."""
        return self.replicas == "adaptive"

    @property
    def copies(self) -> int:
        """Copies of a shard a vote compares: `replicas`, or 2 under adaptive replication (a
        checked result and its check; a third copy when those two disagree)."""
        return 2 if self.replicas == "adaptive" else self.replicas

    @property
    def step_size(self) -> int:
        """Updates per merge: the `buffer` of an async job (half its shards by default), the
        shards of a sync one."""
        if self.mode == "sync":
            return self.shards
        return self.buffer if self.buffer is not None else max(1, self.shards // 2)

    @property
    def placement(self) -> Placement:
        """The nodes this job may run on (`schemas/placement.py`)."""
        return Placement(
            require_docker=self.require_docker,
            min_sandbox=self.min_sandbox,
            require_gpu=self.require_gpu,
            min_cpus=self.min_cpus,
            min_memory_mb=self.min_memory_mb,
            arch=self.arch,
        )


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
    """Its round's index, from 0."""
    shard: int
    status: TaskStatus
    node_id: str | None
    node_name: str | None = None
    """The display name of the node that holds or held it."""
    attempts: int
    max_attempts: int
    losses: int = 0
    max_losses: int = 5
    copy: int = 0
    """Which copy of its shard (replicated jobs)."""
    verdict: str | None = None
    """Replicated jobs: `agreed` or `disagreed` with the majority of its shard's copies."""
    rows: int
    """Its sample weight: the shard's rows, or the rows its node declared (capped)."""
    metrics: dict[str, float] | None
    error_code: str | None
    error: str | None
    history: list[AttemptInfo] = []
    kind: Literal["train", "evaluate"] = "train"
    """`evaluate`: the held-out evaluation of its round's model."""
    phase: Literal["downloading", "preparing", "running", "uploading"] | None = None
    """While leased, what its node says it is doing (None: not said yet)."""
    phase_detail: str | None = None
    """The same in words, e.g. "downloading 2 packages (torch 2.13.0, ...): 1.2 GB / 3.0 GB"."""
    merged_into: int | None = None
    """Async jobs: the server step that merged its update (None: not merged, or waiting in the
    buffer; `verdict` `stale`: dropped for being too far behind)."""
    uploaded_bytes: int | None = None
    """What its node uploaded (a compressed update's own size; None: nothing yet)."""


INIT_ROUND = -1
"""The round of a job's initialisation step (see `JobConfig.init_step`): its tasks and its round
are listed with the others, before round 0."""


def round_label(index: int) -> str:
    """A round as people read it: counted from 1 (the API's `round` and `index` count from 0),
    and the initialisation step by name."""
    return "the initialisation step" if index == INIT_ROUND else f"round {index + 1}"


def step_label(index: int) -> str:
    """An async job's round as people read it: its server step, counted from 1."""
    return "the initialisation step" if index == INIT_ROUND else f"step {index + 1}"


SUMMED_METRICS = frozenset({"samples", "n", "num_examples", "examples", "count"})
"""Metric keys that count things: a round reports their sum over its shards; every other key is
the mean weighted by each shard's rows."""


class RoundInfo(msgspec.Struct, kw_only=True):
    """One round of federated averaging."""

    index: int
    """From 0 (`INIT_ROUND`, -1, for the initialisation step); shown to people as index + 1."""
    status: RoundStatus
    input_model_sha256: str | None
    output_model_sha256: str | None
    metrics: dict[str, float] | None
    """The shards' training metrics: row-weighted means, except `summed_metrics`."""
    started_at: int
    finished_at: int | None
    summed_metrics: list[str] = []
    """The keys of `metrics` that are sums over the shards (counts such as `samples`)."""
    held_out: dict[str, float] | None = None
    """The job's evaluation script on its test data with this round's model (None: the job has
    none, or its evaluation has not finished)."""
    epsilon: float | None = None
    """Differentially private jobs: the epsilon spent up to and including this round."""
    nodes: list[str] = []
    """The names of the nodes whose updates this round merged."""
    staleness: list[int] = []
    """Async jobs: how many server steps behind the model each merged update was trained on
    (0: the step's own input model), in merge order."""
    excluded: list[str] = []
    """Who was left out of this round's merge under a robust rule, and why (a holder whose
    update was invalid every time: `shard 2 (400 rows): [invalid_weights] ...`)."""
    uploaded_bytes: int = 0
    """What the nodes uploaded for this round's tasks (each task's last upload: the job's
    traffic towards the coordinator; a compressed job's updates at their compressed size)."""


class JobSummary(msgspec.Struct, kw_only=True):
    """A job as it appears in listings."""

    id: str
    name: str
    owner: str
    status: JobStatus
    current_round: int
    """The round running now, counted from 0 like every round index in the API (people read
    `round_label`: round 1 is index 0); after the last round it stays at `rounds - 1`."""
    rounds: int
    shards: int
    tasks_done: int
    """Training tasks done, each shard of each round once (not the initialisation step, the
    held-out evaluations or backup copies); an async job's updates merged."""
    tasks_total: int
    """Rounds x shards (a local-data job: x the holders its rounds use; an async job: steps x
    its buffer)."""
    error: str | None
    """Why the job failed, or why it stopped before its last round (a privacy budget)."""
    created_at: int
    updated_at: int
    mode: Literal["sync", "async"] = "sync"
    """`async`: its rounds are server steps (`JobConfig.mode`)."""


class JobDetail(msgspec.Struct, kw_only=True):
    """A job with its configuration, rounds and tasks."""

    job: JobSummary
    config: JobConfig
    code_sha256: str
    requirements_sha256: str | None
    data_sha256: str | None
    final_model_sha256: str | None
    final_safetensors_sha256: str | None
    delta: float | None = None
    """Differentially private jobs: the delta every round's epsilon is reported at."""
    storage_bytes: int = 0
    """Bytes of the stored files this job still holds (a file shared with another job counts
    for both); `DELETE /jobs/{id}` frees what only it holds."""
    uploaded_bytes: int = 0
    """What its nodes uploaded, all rounds (the sum of the rounds' `uploaded_bytes`)."""
    rounds: list[RoundInfo]
    tasks: list[TaskInfo]
    waiting: str | None = None
    """Why queued work is not running now, in words (`no node is online`, `the 2 node(s) able
    to run it take no task now (node-1: paused by its owner ...)`); None when nothing waits."""

    @property
    def settled(self) -> bool:
        """Finished, with no held-out evaluation still to come (a succeeded job's last round
        is evaluated after its merge)."""
        pending = ("queued", "leased")
        return self.job.status in FINISHED and not any(
            t.kind == "evaluate" and t.status in pending for t in self.tasks
        )
