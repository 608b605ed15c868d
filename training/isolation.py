"""Run a function over many inputs in worker processes that may crash or hang.

Each worker handles one item at a time. An item that raises is reported with its error;
an item that takes longer than the timeout gets its worker killed (and replaced); an item
whose worker dies (a segfault in a parser) is reported as a crash. The run goes on.

Workers never outlive the process that started them, however it ends (``kill -9``
included): on Linux the kernel kills them when it dies (``PR_SET_PDEATHSIG``), elsewhere a
thread in each worker watches for it. An orphaned worker would otherwise wait forever on
its pipe and keep the parent's stdout open, so ``meloformer-preprocess … | cat`` would
never end.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
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


PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
PARENT_POLL_SECONDS = 0.5  # how often a worker without PR_SET_PDEATHSIG looks for its parent


def _set_parent_death_signal() -> bool:
    """Ask Linux to SIGKILL this process when its parent dies; False where that is unavailable."""
    if sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        # prctl is variadic: pass every argument as the unsigned long the kernel reads
        arguments = (ctypes.c_ulong(signal.SIGKILL), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))
        return libc.prctl(PR_SET_PDEATHSIG, *arguments) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)


def _die_with_parent(parent_pid: int) -> None:
    if not _set_parent_death_signal():
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    # the parent may have died before the death signal was armed: we were reparented already
    if os.getppid() != parent_pid:
        os._exit(1)


def _serve(
    function: Callable[[Any], Any], connection: Connection, parent_pid: int, inherited: list[Connection]
) -> None:
    _die_with_parent(parent_pid)
    # A forked worker holds copies of the parent's ends of its own pipe and of the pipes of
    # the workers started before it; while any copy is open, recv() never sees EOF.
    for parent_end in inherited:
        parent_end.close()
    # Ctrl-C reaches the whole process group: the parent stops the workers itself, without
    # a traceback from each of them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
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
    def __init__(self, context: mp.context.BaseContext, function: Callable[[Any], Any], others: list[_Worker]) -> None:
        """Start a worker; ``others`` are the running workers, whose pipes a forked child inherits."""
        self.connection, child = context.Pipe()
        # spawn passes the child only its own end; pickling the parent's ends would copy them
        inherited = [self.connection, *(w.connection for w in others)] if context.get_start_method() == "fork" else []
        self.process = context.Process(target=_serve, args=(function, child, os.getpid(), inherited), daemon=True)
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
    Iterate from a thread that lives as long as the run (the main thread): on Linux a
    worker is killed when the thread that started it ends.
    """
    # fork starts workers in milliseconds on Linux; elsewhere fork is unsafe, so spawn
    context = mp.get_context("fork" if sys.platform == "linux" else "spawn")
    pool: list[_Worker] = []
    for _ in range(max(1, workers)):
        pool.append(_Worker(context, function, pool))
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
                        pool[position] = _Worker(context, function, pool)
                        yield Outcome(index, error=f"the reader crashed (exit code {code})")
                        continue
                    worker.task = None
                    yield Outcome(got_index, value, error)
                elif time.monotonic() >= deadline:
                    worker.stop(kill=True)
                    pool[position] = _Worker(context, function, pool)
                    yield Outcome(index, error=f"timed out after {timeout:g} s (the worker was killed)")
    finally:
        for worker in pool:
            worker.stop(kill=worker.task is not None)
