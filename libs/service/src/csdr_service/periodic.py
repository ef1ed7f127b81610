"""A job a service runs every so often while it is up (pruning what its retention lets go,
refreshing what it reads from the database): one failure is logged and the next round tries
again; stopping cancels the round in flight."""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)


class Periodic:
    """Runs `job` now and then every `interval_s` seconds; `job` returns how many things it
    changed, logged with `report` (a %d format) when any."""

    def __init__(
        self,
        name: str,
        interval_s: float,
        job: Callable[[], Awaitable[int]],
        report: str = "removed %d rows past their retention",
    ) -> None:
        self.name = name
        self.interval_s = interval_s
        self.job = job
        self.report = report
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the rounds in the background."""
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Stop; a round in flight is cancelled (its transaction rolls back)."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                changed = await self.job()
                if changed:
                    logger.info(f"%s: {self.report}", self.name, changed)
            except Exception as exc:  # one round's failure must not end the rounds
                logger.warning("%s failed (next round in %.0f s): %r", self.name,
                               self.interval_s, exc)  # fmt: skip
            await asyncio.sleep(self.interval_s)
