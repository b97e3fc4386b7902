"""A job's config, decoded and checked: what a submission may ask for."""

from __future__ import annotations

import msgspec

from gridx.coordinator.errors import BadRequest, InvalidConfig
from gridx.schemas.errors import field_of
from gridx.schemas.jobs import JobConfig, StrategyBase


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
        problem = config.strategy.problem(config.shards)
        problems = [] if problem is None else [(problem[0], f"invalid job config: {problem[1]}")]
        problems += [(f, f"invalid job config: {m}") for f, m in _round_rules(config)]
    if problems:
        field, message = problems[0]
        raise InvalidConfig(message, field=field, errors=problems)
    return config


def _round_rules(config: JobConfig) -> list[tuple[str, str]]:
    """What the straggler rules (backup tasks, early close) ask of the rest of the config."""
    problems = []
    if config.backup_tasks and config.replicas > 1:
        problems.append(("$.backup_tasks", "backup tasks need replicas = 1 (copies already race)"))
    if (config.min_fraction < 1.0) != (config.round_deadline_s is not None):
        problems.append(
            ("$.round_deadline_s", "min_fraction below 1 and round_deadline_s go together")
        )
    return problems


def _problems(data: dict[str, object]) -> list[tuple[str, str]]:
    """(field, message) for every field of `data` that does not fit `JobConfig`, and the
    strategy's own check when it and `shards` are valid."""
    problems: list[tuple[str, str]] = []
    valid: dict[str, object] = {}
    for key, value in data.items():
        try:
            valid[key] = getattr(msgspec.convert({key: value}, JobConfig), key)
        except msgspec.ValidationError as exc:
            problems.append((field_of(str(exc)) or key, f"invalid job config: {exc}"))
    strategy = valid.get("strategy")
    shards = valid.get("shards", None if "shards" in data else JobConfig().shards)
    if isinstance(strategy, StrategyBase) and isinstance(shards, int):
        problem = strategy.problem(shards)
        if problem is not None:
            problems.append((problem[0], f"invalid job config: {problem[1]}"))
    return problems
