"""How `gridx job submit` spells a job's structured options: `--strategy krum --param f=1`,
`--partition dirichlet:label:0.3`, `--dp noise_multiplier=1.1,clip_norm=1`."""

from __future__ import annotations

import click


def _number(text: str, hint: str, item: str) -> float | int:
    try:
        return int(text) if text.strip().lstrip("-").isdigit() else float(text)
    except ValueError as exc:
        raise click.BadParameter(f"{item!r}: value must be a number", param_hint=hint) from exc


def strategy_spec(name: str, params: tuple[str, ...]) -> dict[str, object]:
    """`--strategy krum --param f=1` (or `--strategy diloco --param nesterov=false`) as the
    config's strategy object."""
    out: dict[str, object] = {"name": name}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--param")
        flag = _FLAGS.get(value.strip().lower())
        out[key.strip()] = flag if flag is not None else _number(value, "--param", item)
    return out


_FLAGS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}
"""Words a switch parameter (`nesterov=true`) may take."""


def partition_spec(spec: str) -> dict[str, object]:
    """`iid`, `by_column:COLUMN` or `dirichlet:COLUMN[:ALPHA]` as the config's partition."""
    name, _, rest = spec.partition(":")
    if name == "iid" and not rest:
        return {"name": "iid"}
    column, _, alpha = rest.partition(":")
    if name == "by_column" and column and not alpha:
        return {"name": name, "column": column}
    if name == "dirichlet" and column:
        try:
            return {"name": name, "column": column, **({"alpha": float(alpha)} if alpha else {})}
        except ValueError as exc:
            raise click.BadParameter(
                f"alpha {alpha!r} is not a number", param_hint="--partition"
            ) from exc
    raise click.BadParameter(
        f"{spec!r}: use iid, by_column:COLUMN or dirichlet:COLUMN[:ALPHA]", param_hint="--partition"
    )


def privacy_spec(spec: str) -> dict[str, object]:
    """`noise_multiplier=1.1,clip_norm=1,max_epsilon=8,client_clip=1` as the config's `dp`."""
    out: dict[str, object] = {}
    for item in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--dp")
        key = key.strip()
        if key == "client_clip":
            out[key] = value.strip().lower() in ("1", "true", "yes", "on")
        else:
            out[key] = _number(value, "--dp", item)
    return out


def replicas_spec(value: str) -> int | str:
    """`--replicas 3` or `--replicas adaptive`."""
    if value == "adaptive":
        return value
    try:
        return int(value)
    except ValueError as exc:
        raise click.BadParameter(
            f"{value!r}: a number of copies (1-5) or adaptive", param_hint="--replicas"
        ) from exc
