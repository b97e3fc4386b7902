"""A coordinator process from start to stop: open its resources, run its loops, close them."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from gridx.coordinator.aggregation import work
from gridx.coordinator.clock import Clock, SystemClock
from gridx.coordinator.db import connect
from gridx.coordinator.pool import make_pool
from gridx.coordinator.services import (
    aggregation,
    dispatch,
    local_data,
    nodes,
    retention,
    stats,
    stragglers,
)
from gridx.coordinator.services.node_cache import NODES_CHANNEL
from gridx.coordinator.services.runtime import Runtime, default_replica
from gridx.coordinator.services.wakeups import TASKS_CHANNEL
from gridx.coordinator.settings import Settings
from gridx.coordinator.storage import open_storage
from gridx.coordinator.storage.signing import UrlSigner

log = logging.getLogger("gridx.coordinator")


async def listen(rt: Runtime) -> None:
    """Hear the other replicas: ready tasks wake claimers here, changed nodes leave the cache."""
    await rt.db.listen(TASKS_CHANNEL, rt.wakeups.on_notification)
    await rt.db.listen(NODES_CHANNEL, rt.node_cache.on_notification)


@contextlib.asynccontextmanager
async def running(settings: Settings, clock: Clock | None = None) -> AsyncIterator[Runtime]:
    """The coordinator's runtime, with its loops (heartbeat flush, lease reaper, aggregation
    sweeper) running until the block ends; then everything is flushed and closed."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = await connect(settings.db_url)
    pool = make_pool(settings.aggregation_workers)
    if settings.warm_pool:  # fire and forget: start-up does not wait for torch
        for _ in range(settings.aggregation_workers):
            pool.submit(work.warm_up)
    signer = UrlSigner(settings.signing_key(), settings.public_url)
    the_clock = clock or SystemClock()
    storage = await open_storage(settings, signer, the_clock)
    rt = Runtime(
        settings=settings,
        db=db,
        storage=storage,
        signer=signer,
        clock=the_clock,
        pool=pool,
        replica=settings.replica_id or default_replica(),
    )
    try:
        await listen(rt)
        rt.background.every(
            settings.heartbeat_flush_s, lambda: nodes.flush_heartbeats(rt), "heartbeat flush"
        )
        rt.background.every(settings.reaper_s, lambda: dispatch.expire_leases(rt), "lease reaper")
        rt.background.every(
            settings.reaper_s, lambda: aggregation.adopt_orphans(rt), "aggregation sweeper"
        )
        rt.background.every(settings.reaper_s, lambda: stragglers.sweep(rt), "straggler sweeper")
        rt.background.every(
            settings.reaper_s, lambda: local_data.place_waiting(rt), "node-local placement"
        )
        rt.background.every(settings.history_sample_s, lambda: stats.sample(rt), "fleet history")
        rt.background.every(settings.sweep_s, lambda: retention.housekeeping(rt), "storage sweeper")
        adopted = await aggregation.adopt_orphans(rt)
        if adopted:
            log.info("picked up the aggregation of %d round(s)", adopted)
        yield rt
    finally:
        await rt.background.stop()
        await nodes.flush_heartbeats(rt)
        pool.shutdown(wait=True, cancel_futures=True)
        await storage.close()
        await db.close()
