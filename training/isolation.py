"""Run a function over many inputs in worker processes that may crash or hang.

Each worker handles one item at a time. An item that raises is reported with its error;
an item that takes longer than the timeout gets its worker killed (and replaced); an item
whose worker dies (a segfault in a parser) is reported as a crash. The run goes on.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any


@dataclass(frozen=True)
class Outcome:
    index: int
    value: Any = None
    error: str | None = None  # one line: what went wrong


def _serve(function: Callable[[Any], Any], connection: Connection) -> None:
    while True:
        try:
            message = connection.recv()
        except EOFError:
            return
        if message is None:
            return
        index, item = message
        try:
            connection.send((index, function(item), None))
        except Exception as error:  # the item failed, not the worker
            text = str(error).strip().splitlines()
            connection.send((index, None, f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")))


class _Worker:
    def __init__(self, context: mp.context.BaseContext, function: Callable[[Any], Any]) -> None:
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(function, child), daemon=True)
        self.process.start()
        child.close()
        self.task: tuple[int, float] | None = None  # (index, deadline)

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.process.kill()
        else:
            with contextlib.suppress(BrokenPipeError, OSError):
                self.connection.send(None)
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.connection.close()


def run_isolated(
    function: Callable[[Any], Any],
    items: Iterable[tuple[int, Any]],
    *,
    workers: int,
    timeout: float,
) -> Iterator[Outcome]:
    """Yield an `Outcome` for every ``(index, item)``, in completion order.

    ``function`` must be picklable (a module-level function) and return picklable values.
    """
    # fork starts workers in milliseconds on Linux; elsewhere fork is unsafe, so spawn
    context = mp.get_context("fork" if sys.platform == "linux" else "spawn")
    pool = [_Worker(context, function) for _ in range(max(1, workers))]
    pending = iter(items)
    exhausted = False
    try:
        while True:
            for worker in pool:
                if worker.task is None and not exhausted:
                    try:
                        index, item = next(pending)
                    except StopIteration:
                        exhausted = True
                        break
                    worker.connection.send((index, item))
                    worker.task = (index, time.monotonic() + timeout)
            busy = [worker for worker in pool if worker.task is not None]
            if not busy:
                return
            soonest = min(worker.task[1] for worker in busy)  # type: ignore[index]
            ready = wait([worker.connection for worker in busy], timeout=max(0.0, soonest - time.monotonic()))
            for position, worker in enumerate(pool):
                if worker.task is None:
                    continue
                index, deadline = worker.task
                if worker.connection in ready:
                    try:
                        got_index, value, error = worker.connection.recv()
                    except (EOFError, OSError):
                        worker.process.join(timeout=1)
                        code = worker.process.exitcode
                        worker.stop(kill=True)
                        pool[position] = _Worker(context, function)
                        yield Outcome(index, error=f"the reader crashed (exit code {code})")
                        continue
                    worker.task = None
                    yield Outcome(got_index, value, error)
                elif time.monotonic() >= deadline:
                    worker.stop(kill=True)
                    pool[position] = _Worker(context, function)
                    yield Outcome(index, error=f"timed out after {timeout:g} s (the worker was killed)")
    finally:
        for worker in pool:
            worker.stop(kill=worker.task is not None)
