"""Node settings: command-line flags, then `GRIDX_*` variables, then `worker_config.env`."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

# Names accepted in worker_config.env / the environment for each setting (first wins).
_ALIASES: dict[str, tuple[str, ...]] = {
    "coordinator_url": ("GRIDX_COORDINATOR_URL", "COORDINATOR_URL"),
    "enrolment_key": ("GRIDX_ENROLMENT_KEY", "ENROLMENT_KEY", "GRIDX_API_KEY", "API_KEY"),
    "owner_email": ("GRIDX_OWNER_EMAIL", "OWNER_EMAIL"),
    "name": ("GRIDX_NODE_NAME", "NODE_NAME"),
    "state_dir": ("GRIDX_STATE_DIR",),
    "executor": ("GRIDX_EXECUTOR",),
    "python": ("GRIDX_PYTHON",),
    "memory_mb": ("GRIDX_MEMORY_MB",),
    "status_port": ("GRIDX_STATUS_PORT",),
    "ca_file": ("GRIDX_CA_FILE", "CA_FILE"),
    "sandbox": ("GRIDX_SANDBOX",),
    "allow_weak_sandbox": ("GRIDX_ALLOW_WEAK_SANDBOX",),
}


class NodeConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How this node runs."""

    coordinator_url: str = "http://127.0.0.1:8080"
    """Base URL of the coordinator."""
    enrolment_key: str = ""
    """The owner's API key, used once to register; not needed after."""
    owner_email: str = ""
    """The owner's email, checked against the enrolment key's owner."""
    name: str = ""
    """Display name (default: host name)."""
    state_dir: Path = Path.home() / ".gridx-node"
    """Holds the identity file (mode 0600) and the work folders."""
    executor: str = "auto"
    """How tasks run: `auto` (docker when an engine answers), `docker`, or `process`."""
    sandbox: str = "auto"
    """The process executor's sandbox: `auto` (the strongest that works), `bubblewrap`,
    `unshare` or `none`."""
    allow_weak_sandbox: bool = False
    """Work even when the start-up self-test finds the sandbox below `strong` (only jobs that
    accept a weak sandbox will come)."""
    python: str = ""
    """Interpreter for train.py (default: the one running the node)."""
    memory_mb: int = 4096
    """Address-space cap for a task."""
    cpus: int = 0
    """Threads a task may use (0: all cores)."""
    once: bool = False
    """Run one task, then exit (tests, batch use)."""
    poll_wait_s: float = 25.0
    """Long-poll duration asked of the coordinator."""
    status_port: int = 8765
    """Port of the owner's status page on 127.0.0.1 (0: no page)."""
    ca_file: str = ""
    """CA bundle to trust for an https coordinator (default: the system's trust store)."""


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a `KEY=value` file (comments, blank lines, optional quotes and `export`)."""
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def load_config(env_file: Path | None, **flags: object) -> NodeConfig:
    """Merge flags (highest), environment variables, and the env file (lowest)."""
    file_values: dict[str, str] = {}
    if env_file is None and Path("worker_config.env").exists():
        env_file = Path("worker_config.env")
    if env_file is not None:
        file_values = read_env_file(env_file)
    merged: dict[str, object] = {}
    for field, names in _ALIASES.items():
        for source in (os.environ, file_values):
            found = next((source[n] for n in names if source.get(n)), None)
            if found is not None:
                merged[field] = found
                break
    merged.update({k: v for k, v in flags.items() if v is not None})
    config = msgspec.convert(merged, NodeConfig, strict=False)
    # Task folders are handed to sandboxes that run elsewhere: keep every path absolute.
    return msgspec.structs.replace(config, state_dir=config.state_dir.expanduser().resolve())
