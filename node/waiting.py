"""Waiting for work that another event may interrupt: the one helper the worker's long-poll, the
executors' runs and the warm runners' tasks share."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def until(
    work: Awaitable[T], stop: asyncio.Event, timeout_s: float | None = None
) -> asyncio.Future[T]:
    """Wait for `work` until it ends, `stop` is set or `timeout_s` passes; its future, done when
    the work ended, still running otherwise (the caller cancels or kills it)."""
    future = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait(
            {future, stopper}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        stopper.cancel()
    return future
