"""The node's state folder: its identity, kept in a private file so it registers only once, and
the lock that keeps a second node out of the folder."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

import msgspec

from gridx.node.errors import StateDirInUse


class Identity(msgspec.Struct, kw_only=True):
    """Who this node is to one coordinator."""

    coordinator_url: str
    node_id: str
    node_token: str


STATE_MODE = 0o711
"""The state folder can be crossed but not listed, so a task of the weaker sandboxes (which runs
as another uid) reaches its own work folder; the identity file itself is 0600."""


def identity_path(state_dir: Path) -> Path:
    """Where the identity lives."""
    return state_dir / "identity.json"


def load_identity(state_dir: Path, coordinator_url: str) -> Identity | None:
    """The saved identity for this coordinator, if any."""
    path = identity_path(state_dir)
    if not path.exists():
        return None
    ident = msgspec.json.decode(path.read_bytes(), type=Identity)
    return ident if ident.coordinator_url == coordinator_url else None


def save_identity(state_dir: Path, ident: Identity) -> None:
    """Write the identity atomically, readable by the node's user only."""
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, STATE_MODE)
    path = identity_path(state_dir)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(msgspec.json.encode(ident))
    os.replace(tmp, path)


def lock_state_dir(state_dir: Path) -> IO[str]:
    """Hold the state folder for this process (until it exits; keep the returned file open).

    Two nodes in one folder would share an identity and remove each other's task folders.

    Raises:
        StateDirInUse: another live node holds it.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, STATE_MODE)
    fh = (state_dir / "node.lock").open("a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        fh.seek(0)
        holder = fh.read().strip() or "?"
        fh.close()
        raise StateDirInUse(
            f"another gridx-node (pid {holder}) runs with the state folder {state_dir}; give "
            "this one its own --state-dir (or GRIDX_STATE_DIR)"
        ) from exc
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    return fh
