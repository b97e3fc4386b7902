"""Settings structs filled from environment variables, one variable per field.

Both sides use it: the coordinator's `Settings` (`GRIDX_<FIELD>`) and the node's `NodeConfig`
(`GRIDX_<FIELD>` plus the older names of `worker_config.env`). The variables are derived from the
struct's fields, so a new field is settable the day it is added.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import msgspec

S = TypeVar("S", bound=msgspec.Struct)


class ConfigError(ValueError):
    """A variable or flag that does not fit its setting; the message names it."""


def env_name(field: str) -> tuple[str, ...]:
    """The default variable of a field: `GRIDX_<FIELD>`."""
    return (f"GRIDX_{field.upper()}",)


def _is_sequence(kind: object) -> bool:
    return isinstance(
        kind, msgspec.inspect.VarTupleType | msgspec.inspect.ListType | msgspec.inspect.TupleType
    )


def _paths(kind: type, value: object) -> object:
    """msgspec has no `Path`: a path field takes a string (a variable) or a path (a flag)."""
    if kind is Path and isinstance(value, str | Path):
        return Path(value)
    raise NotImplementedError(f"cannot read {kind!r} from {type(value).__name__}")


def from_env(
    kind: type[S],
    sources: Sequence[Mapping[str, str]],
    overrides: Mapping[str, object] | None = None,
    names: Callable[[str], tuple[str, ...]] = env_name,
) -> S:
    """A `kind` from the first source that sets each field's variables (`names(field)`, first
    name wins), then the `overrides` that are not None (command-line flags). A sequence field
    takes a comma-separated list.

    Raises:
        ConfigError: a value does not convert; the message names the variable or flag.
    """
    info = msgspec.inspect.type_info(kind)
    assert isinstance(info, msgspec.inspect.StructType)
    values: dict[str, object] = {}
    origin: dict[str, str] = {}
    for field in info.fields:
        for source in sources:
            found = next(((n, source[n]) for n in names(field.name) if source.get(n)), None)
            if found is not None:
                name, raw = found
                values[field.name] = (
                    tuple(v.strip() for v in raw.split(",") if v.strip())
                    if _is_sequence(field.type)
                    else raw
                )
                origin[field.name] = name
                break
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
            origin[key] = "--" + key.replace("_", "-")
    try:
        return msgspec.convert(values, kind, strict=False, dec_hook=_paths)
    except msgspec.ValidationError as exc:
        where = str(exc).rpartition("at `$.")[2].rstrip("`")
        raise ConfigError(f"{origin.get(where, where)}: {exc}") from exc
