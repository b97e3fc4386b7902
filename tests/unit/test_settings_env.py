"""Every setting of both sides comes from its own variable, derived from the struct's fields, and a
value that does not fit names the variable."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gridx.coordinator.settings import ENV_NAMES, Settings, settings_from_env
from gridx.node.config import NodeConfig, env_names, load_config
from gridx.schemas.envconfig import ConfigError, env_name

SAMPLES: dict[object, tuple[str, object]] = {
    int: ("7", 7),
    float: ("0.25", 0.25),
    str: ("zz", "zz"),
    bool: ("true", True),
    Path: ("/srv/x", Path("/srv/x")),
}


def sample(kind: msgspec.inspect.Type) -> tuple[str, object]:
    """A raw value for a field's type and what it decodes to."""
    if isinstance(kind, msgspec.inspect.UnionType):  # `Path | None`
        kind = next(t for t in kind.types if not isinstance(t, msgspec.inspect.NoneType))
    if isinstance(kind, msgspec.inspect.VarTupleType):
        return "a.example, b.example", ("a.example", "b.example")
    if isinstance(kind, msgspec.inspect.LiteralType):
        return str(kind.values[-1]), kind.values[-1]
    python = {
        msgspec.inspect.IntType: int,
        msgspec.inspect.FloatType: float,
        msgspec.inspect.StrType: str,
        msgspec.inspect.BoolType: bool,
    }.get(type(kind), Path)
    return SAMPLES[python]


def fields(kind: type[msgspec.Struct]) -> list[msgspec.inspect.Field]:
    info = msgspec.inspect.type_info(kind)
    assert isinstance(info, msgspec.inspect.StructType)
    return list(info.fields)


def test_every_coordinator_setting_is_read_from_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = {}
    for field in fields(Settings):
        raw, value = sample(field.type)
        monkeypatch.setenv((ENV_NAMES.get(field.name) or env_name(field.name))[0], raw)
        expected[field.name] = value
    settings = settings_from_env()
    assert {f.name: getattr(settings, f.name) for f in fields(Settings)} == expected
    assert settings_from_env(port=9).port == 9  # a flag beats the variable
    assert settings_from_env(port=None).port == 7  # an unset flag does not


def test_every_node_setting_is_read_from_its_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no worker_config.env here
    expected = {}
    for field in fields(NodeConfig):
        raw, value = sample(field.type)
        monkeypatch.setenv(env_names(field.name)[0], raw)
        expected[field.name] = value
    config = load_config(None)
    got = {f.name: getattr(config, f.name) for f in fields(NodeConfig)}
    assert got == {**expected, "state_dir": Path("/srv/x")}


def test_a_bad_value_names_its_variable_or_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDX_PORT", "eighty")
    with pytest.raises(ConfigError, match="GRIDX_PORT"):
        settings_from_env()
    monkeypatch.delenv("GRIDX_PORT")
    with pytest.raises(ConfigError, match="--lease-s"):
        settings_from_env(lease_s="soon")
