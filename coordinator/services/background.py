"""Work a coordinator process runs beside its requests: one-off tasks and periodic loops."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from typing import Any

log = logging.getLogger("gridx.coordinator")


class Background:
    """Holds a reference to every background task (so none is garbage-collected mid-run), logs
    the ones that fail, and cancels them all at shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._keys: set[Hashable] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str, key: Hashable = None) -> bool:
        """Run `coro` in the background. With a `key`, only while no task of that key runs here
        (the coroutine is closed unrun otherwise); returns whether it was started."""
        if key is not None:
            if key in self._keys:
                coro.close()
                return False
            self._keys.add(key)
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            self._keys.discard(key)
            if not t.cancelled() and t.exception() is not None:
                log.error("background task %s failed", name, exc_info=t.exception())

        task.add_done_callback(done)
        return True

    def every(self, seconds: float, step: Callable[[], Awaitable[object]], name: str) -> None:
        """Run `step` every `seconds` until shutdown; a failed step is logged and retried."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(seconds)
                try:
                    await step()
                except Exception:
                    log.exception("%s failed; retrying in %.1fs", name, seconds)

        self.spawn(loop(), name)

    async def stop(self) -> None:
        """Cancel every task and wait for them to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
