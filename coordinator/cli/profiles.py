"""Where `gridx` finds the coordinator and your key: flags, then `GRIDX_*` variables, then a
profile of the config file, then the defaults.

The file is `$GRIDX_CONFIG`, else `$XDG_CONFIG_HOME/gridx/config.toml`, else
`~/.config/gridx/config.toml`:

    default = "work"              # the profile used without --profile / GRIDX_PROFILE

    [profiles.work]
    url = "https://gridx.example.org"
    api_key = "gxk_..."
    ca_file = "/etc/ssl/example-ca.pem"

    [profiles.local]
    url = "http://127.0.0.1:8080"
    api_key = "gxk_..."
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import click

FIELDS = ("url", "api_key", "ca_file")


def config_path() -> Path:
    """The config file's place (it need not exist)."""
    if os.environ.get("GRIDX_CONFIG"):
        return Path(os.environ["GRIDX_CONFIG"]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "gridx" / "config.toml"


def profile(name: str | None) -> dict[str, str]:
    """The settings of profile `name` (None: the file's `default`, if any; {} without a file).

    Raises:
        click.UsageError: the file is not valid TOML, has other fields, or lacks that profile.
    """
    path = config_path()
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        if name is not None:
            raise click.UsageError(
                f"no profile {name!r}: {path} does not exist (see `gridx --help` for its format)"
            ) from None
        return {}
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
        raise click.UsageError(f"{path}: {exc}") from exc
    profiles = data.get("profiles", {})
    chosen = name or data.get("default")
    if chosen is None:
        return {}
    if not isinstance(profiles, dict) or not isinstance(profiles.get(chosen), dict):
        known = ", ".join(sorted(profiles)) if isinstance(profiles, dict) else ""
        raise click.UsageError(f"no profile {chosen!r} in {path} (profiles: {known or 'none'})")
    values = profiles[chosen]
    unknown = sorted(set(values) - set(FIELDS))
    if unknown or not all(isinstance(v, str) for v in values.values()):
        raise click.UsageError(
            f"{path}: profile {chosen!r} may set {', '.join(FIELDS)} (strings); "
            f"found {', '.join(unknown) or 'a value that is not a string'}"
        )
    return {k: str(v) for k, v in values.items()}
