"""Node settings: command-line flags, then `GRIDX_<FIELD>` variables, then `worker_config.env`."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from gridx.schemas.envconfig import env_name, from_env

# Every field is read from GRIDX_<FIELD>; these take other names too (first wins), as the
# bundle's worker_config.env spells them.
ALIASES: dict[str, tuple[str, ...]] = {
    "coordinator_url": ("COORDINATOR_URL",),
    "enrolment_key": ("ENROLMENT_KEY", "GRIDX_API_KEY", "API_KEY"),
    "owner_email": ("OWNER_EMAIL",),
    "name": ("GRIDX_NODE_NAME", "NODE_NAME"),
    "ca_file": ("CA_FILE",),
}


def env_names(field: str) -> tuple[str, ...]:
    """The variables a field is read from, first wins."""
    return env_name(field) + ALIASES.get(field, ())


class NodeConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How this node runs."""

    coordinator_url: str = "http://127.0.0.1:8080"
    """Base URL of the coordinator."""
    enrolment_key: str = ""
    """An enrolment token of the owner's (`gridx node token create`), used once to register
    and then dropped from `worker_config.env`; never taken from the command line."""
    enrolment_key_file: str = ""
    """A file holding the enrolment token (`-`: standard input), read once to register."""
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
    `unshare`, `none`, or `off` (no sandbox, tasks run as the node's user: one's own code)."""
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
    executor_image: str = ""
    """The docker executor's image (default: `gridx-executor:latest`)."""
    max_project_mb: int = 256
    """Largest project (a job's folder of code) this node unpacks."""
    warm: bool = True
    """Run the tasks of a job that allows it in one warm runner per job (bubblewrap or docker);
    false: a fresh interpreter per task."""
    warm_idle_s: float = 120.0
    """Seconds a job's warm runner (its memory, its container) waits for the job's next task."""
    hours: str = ""
    """Take tasks only between these hours, e.g. `22-07` (local time; empty: any time)."""
    when_idle: bool = False
    """Take tasks only while the machine is otherwise idle (1-minute load under half its cores)."""


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


def default_env_file(env_file: Path | None) -> Path | None:
    """The `worker_config.env` a node reads: the one named, else one in the current folder."""
    if env_file is None and Path("worker_config.env").exists():
        return Path("worker_config.env")
    return env_file


def forget_enrolment_key(env_file: Path | None) -> bool:
    """Remove the enrolment credential from `env_file` once the node is registered (it is not
    needed again, and a file left on disk is a credential left lying around); whether it had one."""
    if env_file is None or not env_file.exists():
        return False
    names = set(env_names("enrolment_key"))
    lines = env_file.read_text().splitlines(keepends=True)
    kept = [
        ln
        for ln in lines
        if ln.strip().removeprefix("export ").partition("=")[0].strip() not in names
    ]
    if len(kept) == len(lines):
        return False
    tmp = env_file.with_name(env_file.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, env_file.stat().st_mode & 0o777)
    with os.fdopen(fd, "w") as fh:
        fh.write("".join(kept))
    os.replace(tmp, env_file)
    return True


def load_config(env_file: Path | None, **flags: object) -> NodeConfig:
    """Merge flags (highest), environment variables, and the env file (lowest).

    Raises:
        ConfigError: a value that does not fit its setting, naming the variable or flag.
    """
    file_values: dict[str, str] = {}
    env_file = default_env_file(env_file)
    if env_file is not None:
        file_values = read_env_file(env_file)
    config = from_env(NodeConfig, [os.environ, file_values], flags, env_names)
    # Task folders are handed to sandboxes that run elsewhere: keep every path absolute.
    return msgspec.structs.replace(config, state_dir=config.state_dir.expanduser().resolve())
