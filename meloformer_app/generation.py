"""Model loading and generation off the GUI thread.

The window never imports torch: the `GenerationService` (whose torch imports happen on
first use) lives in a worker `QThread`, and the GUI talks to it through queued signals.
Each finished bar streams back as a whole `Song`; cancelling sets an event the service
polls between tokens, and a cancelled run reports nothing but ``cancelled``.

Closing never waits for the thread: `Generator.shutdown` cancels and lets it end on its
own (a model load cannot be interrupted: torch reads the weights to the end). Every
thread stays referenced here until it has finished, whatever becomes of its window — a
QThread destroyed while it runs aborts the process — and the app waits for the last ones
at exit (`wait_for_threads`), once its window is gone.
"""

from __future__ import annotations

import atexit
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal, Slot

from meloformer_core.errors import MeloformerError
from meloformer_core.music import Song
from meloformer_core.sampling_settings import SamplingConfig
from meloformer_core.service import GenerationService, TrackRequest


@dataclass(frozen=True)
class GenerationRequest:
    kind: str  # "continue", "arrange" or "infill"
    song: Song
    bars: int | tuple[int, int]  # bars to add (continue) or the 0-based bar range
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    tracks: tuple[int | TrackRequest, ...] = ()
    takes: int = 1


@dataclass(frozen=True)
class Take:
    song: Song
    seed: int | None
    summary: dict
    region: tuple[int, int]  # the ticks of the bars the take wrote, as the service says


class _Worker(QObject):
    loaded = Signal(dict)
    load_failed = Signal(str)
    progress = Signal(int, int, int, object)  # take, bars done, bars total, song so far
    finished = Signal(list)  # [Take]
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, device: str | None) -> None:
        super().__init__()
        self.device = device
        self.service: GenerationService | None = None
        self.cancel = threading.Event()

    @Slot(object)
    def load(self, path: Path | None) -> None:
        try:
            if self.service is None:
                self.service = GenerationService(device=self.device)
            info = self.service.load(path)
        except MeloformerError as error:
            self.load_failed.emit(str(error))
        except Exception as error:  # a broken install must not kill the window
            self.load_failed.emit(f"could not load the model: {type(error).__name__}: {error}")
        else:
            self.loaded.emit(info)

    @Slot(object)
    def run(self, request: GenerationRequest) -> None:
        try:
            if self.service is None or self.service.bundle is None:
                raise MeloformerError("no model is loaded yet")
            results = self._continue(request) if request.kind == "continue" else self._rewrite(request)
        except MeloformerError as error:
            if self.cancel.is_set():
                self.cancelled.emit()
            else:
                self.failed.emit(str(error))
            return
        except Exception as error:
            self.failed.emit(f"generation failed: {type(error).__name__}: {error}")
            return
        if self.cancel.is_set():
            self.cancelled.emit()
        else:
            self.finished.emit(results)

    def _continue(self, request: GenerationRequest) -> list[Take]:
        """The takes are decoded together and come back the most typical first; their
        progress is reported once, as take -1 (all of them). Automatic takes (0) give only
        the most typical: they make one continuation better, not several to choose from."""
        sampling = replace(request.sampling, takes=request.takes)

        def progress(done: int, total: int, song: Song) -> None:
            self.progress.emit(-1, done, total, song)

        result = self.service.continue_song(request.song, request.bars, sampling, progress=progress, cancel=self.cancel)
        summary = result.summary()
        takes = [
            Take(song, seed, summary, region)
            for song, seed, region in zip(result.takes, result.take_seeds, result.regions, strict=True)
        ]
        return takes if request.takes else takes[:1]

    def _rewrite(self, request: GenerationRequest) -> list[Take]:
        """Arrange or infill: one take after the other (seeds seed, seed + 1, …)."""
        results = []
        for take in range(max(request.takes, 1)):  # automatic takes: one
            sampling = request.sampling
            if sampling.seed is not None and take:
                sampling = replace(sampling, seed=sampling.seed + take)

            def progress(done: int, total: int, song: Song, take: int = take) -> None:
                self.progress.emit(take, done, total, song)

            options = {"progress": progress, "cancel": self.cancel}
            if request.kind == "arrange":
                result = self.service.arrange_song(request.song, list(request.tracks), request.bars, sampling,
                                                   **options)  # fmt: skip
            else:
                tracks = list(request.tracks) or None
                result = self.service.infill_song(request.song, request.bars, tracks, sampling, **options)
            if self.cancel.is_set():
                break
            results.append(Take(result.song, sampling.seed, result.summary(), result.region))
        return results


class _Threads(QObject):
    """The generation threads, each with its worker, from their start until they have
    finished: the worker is busy in the thread and the thread must not be destroyed while
    it runs, so neither may go with the window that started them. Lives in the GUI thread,
    where a finished thread is let go (its ``finished`` is queued here)."""

    def __init__(self) -> None:
        super().__init__()
        self.running: dict[int, tuple[QThread, _Worker]] = {}

    def add(self, thread: QThread, worker: _Worker) -> None:
        self.running[id(thread)] = (thread, worker)
        thread.finished.connect(self._finished)

    @Slot()
    def _finished(self) -> None:
        thread = self.sender()
        if isinstance(thread, QThread) and id(thread) in self.running:
            thread.wait()  # past the last steps after ``finished`` (a moment): then it may be destroyed
            del self.running[id(thread)]


_threads: _Threads | None = None


def running_threads() -> list[QThread]:
    """The generation threads not finished yet (a model load that outlived its window)."""
    return [thread for thread, _worker in (_threads.running.values() if _threads else ()) if not thread.isFinished()]


def wait_for_threads(timeout_s: float | None = None) -> bool:
    """Ask every generation thread to stop and wait until they have (a generation stops at
    its next token, a model load only once loaded). False if one still runs after ``timeout_s``."""
    if _threads is None:
        return True
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    entries = list(_threads.running.values())
    for thread, worker in entries:
        worker.cancel.set()
        thread.quit()
    for thread, _worker in entries:
        if deadline is None:
            thread.wait()
        elif not thread.wait(max(0, round((deadline - time.monotonic()) * 1000))):
            return False
    return True  # the finished threads are let go as their ``finished`` arrives (or at exit)


atexit.register(wait_for_threads)  # any host (a script, the tests): never exit with a thread running


class Generator(QObject):
    """The GUI's handle on the worker thread."""

    loaded = Signal(dict)
    load_failed = Signal(str)
    progress = Signal(int, int, int, object)
    finished = Signal(list)
    failed = Signal(str)
    cancelled = Signal()
    _load = Signal(object)
    _run = Signal(object)

    def __init__(self, device: str | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.thread = QThread()
        self.thread.setObjectName("meloformer-generation")
        self.worker = _Worker(device)
        self.worker.moveToThread(self.thread)
        self._load.connect(self.worker.load)
        self._run.connect(self.worker.run)
        for name in ("loaded", "load_failed", "progress", "finished", "failed", "cancelled"):
            getattr(self.worker, name).connect(getattr(self, name))
        self.finished.connect(self._done)
        self.failed.connect(self._done)
        self.cancelled.connect(self._done)
        self.busy = False
        self.model_info: dict | None = None
        self.loaded.connect(lambda info: setattr(self, "model_info", info))
        global _threads
        if _threads is None:
            _threads = _Threads()
        _threads.add(self.thread, self.worker)
        self._shut_down = False
        self.thread.start()

    def load(self, path: Path | None) -> None:
        self.model_info = None
        self._load.emit(path)

    def start(self, request: GenerationRequest) -> None:
        self.worker.cancel.clear()
        self.busy = True
        self._run.emit(request)

    def cancel(self) -> None:
        self.worker.cancel.set()

    def _done(self, *args) -> None:
        self.busy = False

    def shutdown(self) -> None:
        """Stop for good without waiting: cancel a generation, end the thread once it is idle
        (a model load still running finishes first, in the background), and report nothing
        more. Waiting here froze a closing window for up to 10 s, then left a load still
        running to a thread destroyed with the window, which aborts the process."""
        if self._shut_down:
            return
        self._shut_down = True
        self.worker.cancel.set()
        for name in ("loaded", "load_failed", "progress", "finished", "failed", "cancelled"):
            getattr(self.worker, name).disconnect(getattr(self, name))
        self.thread.quit()
