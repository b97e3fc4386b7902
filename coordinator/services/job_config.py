"""A job's config, decoded and checked: what a submission may ask for."""

from __future__ import annotations

import msgspec

from gridx.coordinator.errors import BadRequest, InvalidConfig
from gridx.schemas.errors import field_of, plain
from gridx.schemas.jobs import Iid, JobConfig
from gridx.schemas.strategies import MEAN_RULES, StrategyBase


def decode_config(raw: bytes) -> JobConfig:
    """Decode and validate a job config, naming every offending field at once.

    `"strategy": "fedmedian"` is short for `"strategy": {"name": "fedmedian"}`.

    Raises:
        InvalidConfig: malformed JSON, or fields out of bounds (422; `field` is the first,
            `errors` lists them all).
        BadRequest: nested past the decoder's depth limit.
    """
    try:
        data = msgspec.json.decode(raw or b"{}")
    except msgspec.DecodeError as exc:
        raise InvalidConfig(f"job config is not valid JSON: {exc}", field="config") from exc
    except RecursionError as exc:
        raise BadRequest("job config is nested too deeply", field="config") from exc
    if not isinstance(data, dict):
        raise InvalidConfig("job config must be a JSON object", field="config")
    if isinstance(data.get("strategy"), str):
        data["strategy"] = {"name": data["strategy"]}
    try:
        config = msgspec.convert(data, JobConfig)
    except msgspec.ValidationError:
        problems = _problems(data)
    except RecursionError as exc:
        raise BadRequest("job config is nested too deeply", field="config") from exc
    else:
        problem = config.strategy.problem(clients(config))
        problems = [] if problem is None else [(problem[0], f"invalid job config: {problem[1]}")]
        rules = _round_rules(config) + _local_rules(config) + _privacy_rules(config)
        rules += _compress_rules(config)
        rules += _async_rules(config)
        problems += [(f, f"invalid job config: {m}") for f, m in rules]
    if problems:
        field, message = problems[0]
        raise InvalidConfig(message, field=field, errors=problems)
    return config


def clients(config: JobConfig) -> int:
    """The fewest updates a round of the job merges: its shards, for a job on node-local data
    the nodes it waits for, for an async job its buffer."""
    if config.dataset is not None:
        return config.min_nodes
    return config.step_size


def _async_rules(config: JobConfig) -> list[tuple[str, str]]:
    """What an asynchronous (FedBuff) job cannot also ask for, and why."""
    if config.mode != "async":
        for name in ("buffer", "max_staleness"):
            if getattr(config, name) is not None:
                problems = [(name, f"{name} is for mode async (this job is sync)")]
                return problems
        return []
    problems = []
    if config.buffer is not None and config.buffer > config.shards:
        problems.append(
            (
                "buffer",
                f"buffer {config.buffer} is more than the job's {config.shards} shards: "
                "a step would wait for some shard to report twice",
            )
        )
    if config.copies > 1:
        problems.append(
            (
                "replicas",
                "async copies of a shard would train from different models and never agree: "
                "replicas must be 1 in mode async",
            )
        )
    if config.backup_tasks or config.min_fraction < 1.0 or config.round_deadline_s is not None:
        field = "backup_tasks" if config.backup_tasks else "min_fraction"
        problems.append((field, "mode async never waits for a round: no straggler rules"))
    if config.dp is not None:
        problems.append(
            (
                "dp",
                "the accountant composes one clipped update per shard per step; in mode async a "
                "fast shard may send several to one step, so its sensitivity is unbounded: use "
                "mode sync for differential privacy",
            )
        )
    if config.dataset is not None:
        problems.append(
            ("dataset", "jobs on node-local data run in mode sync (one round per holder)")
        )
    return problems


def _local_rules(config: JobConfig) -> list[tuple[str, str]]:
    """What a job on node-local data cannot also ask for."""
    if config.dataset is None:
        return []
    problems = []
    if config.min_nodes > config.max_nodes:
        problems.append(("min_nodes", "min_nodes must not exceed max_nodes"))
    if config.copies > 1:
        problems.append(("replicas", "each node holds its own data: replicas must be 1"))
    if config.backup_tasks:
        problems.append(("backup_tasks", "only the node holding the data can run its task"))
    if not isinstance(config.partition, Iid):
        problems.append(("partition", "node-local data is already split by its nodes"))
    return problems


def _privacy_rules(config: JobConfig) -> list[tuple[str, str]]:
    """Central DP's noise calibration holds for the mean of clipped updates only."""
    if config.dp is None:
        return []
    problems = []
    if config.strategy.name not in MEAN_RULES:
        problems.append(
            (
                "strategy",
                "differential privacy needs a mean-based strategy "
                f"({', '.join(sorted(MEAN_RULES))}): the noise is calibrated to the mean's "
                "sensitivity clip_norm / n, which "
                f"{config.strategy.name} does not have",
            )
        )
    if config.strategy.clip_norm is not None:
        problems.append(("strategy.clip_norm", "with dp, clipping is dp.clip_norm"))
    return problems


def _compress_rules(config: JobConfig) -> list[tuple[str, str]]:
    """What a compressed job cannot also ask for, and why."""
    if config.compress is None:
        return []
    problems = []
    if config.compress.startswith("topk") and config.copies > 1:
        problems.append(
            (
                "compress",
                "topk keeps on each node what it did not send and adds it to that node's next "
                "update, so copies of a shard differ by their nodes' past: replicas must be 1 "
                "(int8 and int4 work with replicas)",
            )
        )
    if config.compress.startswith("topk") and float(config.compress[5:]) <= 0:
        problems.append(("compress", "topk's fraction must be above 0 (topk:0.01 sends 1%)"))
    return problems


def _round_rules(config: JobConfig) -> list[tuple[str, str]]:
    """What the straggler rules (backup tasks, early close) ask of the rest of the config."""
    problems = []
    if config.backup_tasks and config.copies > 1:
        problems.append(("backup_tasks", "backup tasks need replicas = 1 (copies already race)"))
    if (config.min_fraction < 1.0) != (config.round_deadline_s is not None):
        problems.append(
            ("round_deadline_s", "min_fraction below 1 and round_deadline_s go together")
        )
    return problems


def _shown(value: object) -> bool:
    """A value short and plain enough to quote back in an error."""
    return isinstance(value, int | float | str) and len(repr(value)) <= 40


def _problems(data: dict[str, object]) -> list[tuple[str, str]]:
    """(field, message) for every field of `data` that does not fit `JobConfig`, and the
    strategy's own check when it and `shards` are valid."""
    problems: list[tuple[str, str]] = []
    valid: dict[str, object] = {}
    for key, value in data.items():
        try:
            valid[key] = getattr(msgspec.convert({key: value}, JobConfig), key)
        except msgspec.ValidationError as exc:
            field = field_of(str(exc)) or key
            got = f", not {value!r}" if field == key and _shown(value) else ""
            problems.append((field, f"invalid job config: `{field}` {plain(str(exc))}{got}"))
    strategy = valid.get("strategy")
    shards = valid.get("shards", None if "shards" in data else JobConfig().shards)
    if valid.get("dataset") is not None:
        shards = valid.get("min_nodes", None if "min_nodes" in data else JobConfig().min_nodes)
    if isinstance(strategy, StrategyBase) and isinstance(shards, int):
        problem = strategy.problem(shards)
        if problem is not None:
            problems.append((problem[0], f"invalid job config: {problem[1]}"))
    return problems
