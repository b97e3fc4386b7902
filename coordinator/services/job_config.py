"""A job's config, decoded and checked: what a submission may ask for."""

from __future__ import annotations

import msgspec

from gridx.coordinator.errors import BadRequest, InvalidConfig
from gridx.schemas.errors import field_of
from gridx.schemas.jobs import JobConfig, Krum, Strategy


def check_strategy(strategy: Strategy, n: int) -> tuple[str, str] | None:
    """A (field, message) problem with `strategy` for `n` clients per round, or None."""
    if isinstance(strategy, Krum):
        if n <= 2 * strategy.f + 2:
            return "strategy.f", (
                f"Krum with f={strategy.f} needs more than 2f+2 = {2 * strategy.f + 2} clients "
                f"per round, and the job has {n} shards"
            )
        if strategy.m > n - strategy.f:
            return "strategy.m", f"Multi-Krum can keep at most n - f = {n - strategy.f} clients"
    return None  # trimmed mean's beta < 0.5 always leaves at least one value


def decode_config(raw: bytes) -> JobConfig:
    """Decode and validate a job config, naming the offending field.

    `"strategy": "fedmedian"` is short for `"strategy": {"name": "fedmedian"}`.

    Raises:
        InvalidConfig: malformed JSON or a field out of bounds (422 with `field`).
        BadRequest: nested past the decoder's depth limit.
    """
    try:
        data = msgspec.json.decode(raw or b"{}")
        if isinstance(data, dict) and isinstance(data.get("strategy"), str):
            data["strategy"] = {"name": data["strategy"]}
        config = msgspec.convert(data, JobConfig)
    except msgspec.ValidationError as exc:
        raise InvalidConfig(f"invalid job config: {exc}", field=field_of(str(exc))) from exc
    except msgspec.DecodeError as exc:
        raise InvalidConfig(f"job config is not valid JSON: {exc}", field="config") from exc
    except RecursionError as exc:
        raise BadRequest("job config is nested too deeply", field="config") from exc
    problem = check_strategy(config.strategy, config.shards)
    if problem is not None:
        raise InvalidConfig(f"invalid job config: {problem[1]}", field=problem[0])
    return config
