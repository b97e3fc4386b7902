"""The coordinator's resources, handed to every service: settings, database, storage, URL
signer, clock and process pool, plus the process's in-memory parts (each its own object)."""

from __future__ import annotations

import os
import socket
from concurrent.futures import Executor
from dataclasses import dataclass, field

from gridx.coordinator.clock import Clock
from gridx.coordinator.db.connection import Database
from gridx.coordinator.services.background import Background
from gridx.coordinator.services.heartbeats import HeartbeatBuffer
from gridx.coordinator.services.metrics import Metrics
from gridx.coordinator.services.node_cache import NodeCache
from gridx.coordinator.services.rate_limit import RateLimiter
from gridx.coordinator.services.wakeups import Wakeups
from gridx.coordinator.settings import Settings
from gridx.coordinator.storage.base import Storage
from gridx.coordinator.storage.signing import UrlSigner


def default_replica() -> str:
    """This process's name among coordinator replicas: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Runtime:
    """One coordinator process's shared state (built by `services.lifespan.running`)."""

    settings: Settings
    db: Database
    storage: Storage
    signer: UrlSigner
    """Signs the coordinator's own blob and result links (local storage)."""
    clock: Clock
    pool: Executor
    """Where weights are checked and rounds merged (`aggregation.work`)."""
    replica: str = field(default_factory=default_replica)
    """This process's name among coordinator replicas (aggregation leases carry it)."""
    background: Background = field(init=False)
    wakeups: Wakeups = field(init=False)
    node_cache: NodeCache = field(init=False)
    rate_limits: RateLimiter = field(init=False)
    heartbeats: HeartbeatBuffer = field(init=False)
    metrics: Metrics = field(init=False)

    def __post_init__(self) -> None:
        self.background = Background()
        self.wakeups = Wakeups(self.db, self.replica, self.background)
        self.node_cache = NodeCache(self.db, self.replica, self.background)
        self.rate_limits = RateLimiter(self.clock)
        self.heartbeats = HeartbeatBuffer()
        self.metrics = Metrics()
