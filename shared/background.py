"""A loop that runs as one named task for as long as its owner lives."""

from __future__ import annotations

import asyncio
from contextlib import suppress


class Background:
    """Subclasses implement ``_run``; ``start`` runs it as a task, ``stop`` cancels it."""

    task_name = "background"

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.task_name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        raise NotImplementedError
