"""A job's config, decoded and checked: what a submission may ask for."""

from __future__ import annotations

import msgspec

from gridx.coordinator.errors import BadRequest, InvalidConfig
from gridx.schemas.errors import field_of
from gridx.schemas.jobs import JobConfig


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
    problem = config.strategy.problem(config.shards)
    if problem is not None:
        raise InvalidConfig(f"invalid job config: {problem[1]}", field=problem[0])
    return config
