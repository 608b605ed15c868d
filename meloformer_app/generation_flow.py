"""The main window's side of generating: the model picker, the three requests, streamed
previews, takes and cancelling (a mixin of `MainWindow`, which owns the widgets)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from PySide6.QtWidgets import QInputDialog

from meloformer_app.document.model import for_the_model, from_the_model
from meloformer_app.generation import GenerationRequest, Take
from meloformer_core.encoding.quantize import bar_ticks
from meloformer_core.errors import MeloformerError
from meloformer_core.music import Song

VIEW_BARS = 16  # Regenerate without a selection rewrites at most this many bars in view


class GenerationMixin:
    def load_model(self, path: str, asked: bool = True) -> None:
        """Load a bundle ("" = the default one) in the worker; a failure is a dialog only when
        the user ``asked`` for this model (at start-up the Generate panel says it)."""
        self._model_asked = asked
        self.model_label.setText("Model: loading…")
        self.panel.model_info.setText("loading…")
        self.generator.load(Path(path) if path else None)

    def _model_loaded(self, info: dict) -> None:
        device = "GPU" if str(info.get("device", "cpu")).startswith("cuda") else "CPU"
        size = f"{info.get('parameters', 0) / 1e6:.1f}M parameters" if info.get("parameters") else info.get("size", "")
        self.model_label.setText(f"Model: {info.get('name')} on {device}")
        note = " (no GPU found; the CPU works, more slowly)" if device == "CPU" else ""
        self.panel.model_info.setText(f"{info.get('name')} — {size}, on the {device}{note}")

    def _model_failed(self, message: str) -> None:
        self.model_label.setText("Model: none")
        self.panel.model_info.setText(f"No model: {message}")
        if self._model_asked:
            self.error("Could not load the model", message)
        else:
            self.statusBar().showMessage(f"No model loaded: {message}", 15_000)

    def generator_cancel(self) -> None:
        if self.generator.busy:
            self.generator.cancel()
            self.panel.status.setText("Cancelling…")

    def _start(self, request: GenerationRequest, total: int, region: tuple[int, int | None], text: str) -> None:
        """``region``: the ticks the result is written in; an open end (Continue) ends with the song."""
        if self.generator.busy:
            return
        if self.generator.model_info is None:
            self.error("No model", "The model is not loaded (yet); see the Generate panel.")
            return
        # the folded empty tracks of the file stay out of the model's hearing, and go back into what it wrote
        heard, kept = for_the_model(request.song, self.editor.document.views, request.tracks)
        self._pending = {"region": region, "text": text, "started": time.perf_counter(), "bars": total,
                         "song": request.song, "kind": request.kind, "kept": kept}  # fmt: skip
        self.panel.set_running(True, total)
        self.panel.status.setText(f"{text}…")
        self.panel.store(self.settings)
        self.generator.start(replace(request, song=heard, tracks=tuple(kept.index(t) for t in request.tracks)))

    def _whole(self, song: Song) -> Song:
        """What the model wrote (``song``) with the folded tracks it did not hear put back."""
        return from_the_model(song, self._pending["song"], self._pending["kept"])

    def _sampling(self):
        return self.panel.sampling()

    def continue_song(self) -> None:
        song = self.editor.document.song
        if not song.tracks:
            self.error("Nothing to continue", "Open a MIDI file or draw some notes first.")
            return
        bars = self.panel.bars.value()
        lines = self._bar_lines()
        if lines is None:
            return
        region_start = lines[-1]  # the new bars start at the first bar line after the song
        request = GenerationRequest("continue", song, bars, self._sampling(), takes=self.panel.take_count.value())
        self._start(request, bars, (region_start, None), f"Continue {bars} bars")

    def _bar_lines(self) -> list[int] | None:
        """The song's bar lines as the model counts them (`bar_ticks`); None, after the same
        dialog a failed generation gives, when the song cannot be encoded (too long)."""
        try:
            return bar_ticks(self.editor.document.song)
        except MeloformerError as error:
            self._generation_failed(str(error))
            return None

    def _selected_bars(self, lines: list[int]) -> tuple[int, int] | None:
        selection = self.editor.document.selection
        if not selection:
            return None
        starts = lines[:-1]
        first_tick = min(ref.note.start for ref in selection)
        last_tick = max(ref.note.start for ref in selection)
        first = max(i for i, b in enumerate(starts) if b <= first_tick)
        last = max(i for i, b in enumerate(starts) if b <= last_tick)
        return first, last + 1

    def arrange_tracks(self) -> None:
        song, views = self.editor.document.song, self.editor.document.views
        targets = tuple(i for i, view in enumerate(views) if view.generate) or self._track_to_write()
        if not targets:
            return
        if len(targets) == len(song.tracks) and len(song.tracks) > 1:
            self.error("Choose the tracks to write", "Tick “Gen” for the tracks to rewrite, untick the ones to keep.")
            return
        lines = self._bar_lines()
        if lines is None:
            return
        # no selection: every bar that a note starts in (a note ringing on past the last bar
        # line does not make more bars: the model sees the song as its onsets)
        bars = self._selected_bars(lines) or (0, len(lines) - 1)
        region = bar_span(lines, bars)
        request = GenerationRequest("arrange", song, bars, self._sampling(), targets, self.panel.take_count.value())
        self._start(request, bars[1] - bars[0], region, f"Arrange bars {bars[0] + 1}–{bars[1]}")

    def _track_to_write(self) -> tuple[int, ...]:
        """With no track ticked "Gen": the selected track, or the one the user picks (none if
        the user cancels). The choice is ticked, so the track list shows what is written."""
        song = self.editor.document.song
        if not song.tracks:
            self.error("Nothing to arrange", "Open a MIDI file or add a track first.")
            return ()
        chosen = self.editor.current_track
        if chosen is None:
            names = [f"{i + 1} {track.name}" for i, track in enumerate(song.tracks)]
            name, ok = QInputDialog.getItem(self, "Arrange tracks", "No track is ticked “Gen”. Write this track "
                                            "under the others:", names, len(names) - 1, False)  # fmt: skip
            if not ok:
                return ()
            chosen = names.index(name)
        self.editor.set_view(chosen, generate=True)
        return (chosen,)

    def _bars_in_view(self, lines: list[int]) -> tuple[int, int] | None:
        """The song's bars whose whole length is in view (the first 16 of them), else the bar at
        the view's left edge; None when the view shows no bar of the song."""
        viewport = self.roll.state.viewport
        left, right = viewport.left_tick, viewport.tick_at(self.roll.canvas.width())
        whole = [i for i in range(len(lines) - 1) if lines[i] >= left and lines[i + 1] <= right]
        if whole:
            return whole[0], min(whole[-1] + 1, whole[0] + VIEW_BARS)
        partly = [i for i in range(len(lines) - 1) if lines[i + 1] > left and lines[i] < right]
        return (partly[0], partly[0] + 1) if partly else None

    def regenerate_bars(self) -> None:
        """Regenerate the bars of the selected notes; with no selection, the loop's bars when
        looping, else the bars in view."""
        lines = self._bar_lines()
        if lines is None:
            return
        bars = self._selected_bars(lines)
        if bars is None and self.actions["loop"].isChecked():
            loop = self._loop_ticks()
            first = max(i for i, tick in enumerate(lines) if tick <= loop[0])
            stop = min(max(i for i, tick in enumerate(lines) if tick < loop[1]) + 1, len(lines) - 1)
            bars = (first, stop) if first < stop else None  # a loop after the song's end: the bars in view
        bars = bars or self._bars_in_view(lines)
        if bars is None:
            self.error("No bars to regenerate", "Scroll to the bars to regenerate, or select notes in them.")
            return
        song = self.editor.document.song
        tracks = () if self.editor.current_track is None else (self.editor.current_track,)
        request = GenerationRequest("infill", song, bars, self._sampling(), tracks, self.panel.take_count.value())
        self._start(request, bars[1] - bars[0], bar_span(lines, bars), f"Regenerate bars {bars[0] + 1}–{bars[1]}")

    def _region(self, song: Song) -> tuple[int, int]:
        """The ticks of the bars written so far in ``song``, a result in progress (for
        Continue: the new bars); a finished take says its own (`Take.region`)."""
        pending = self._pending or {}
        start, end = pending.get("region", (0, None))
        if end is not None:
            return start, end
        starts = [b for b in bar_ticks(song) if b >= start]
        return start, starts[min(pending.get("bars", 1), len(starts) - 1)] if len(starts) > 1 else song.end_tick

    def _stale(self) -> bool:
        """Whether the song changed since the request (another file, an edit, an undo). Then the
        result would overwrite that change: the generation stops and its bars are dropped."""
        if self._pending is None or self.editor.document.song is self._pending["song"]:
            return False
        if self.generator.busy:
            self.generator.cancel()
        self._takes = []
        self.panel.show_takes([])
        self._generation_cancelled()
        self.panel.status.setText("The song changed while generating: the new bars were dropped")
        return True

    def _progress(self, take: int, done: int, total: int, song: Song) -> None:
        if self._stale():
            return
        song = self._whole(song)
        self.panel.progress.setValue(done)
        takes = self.panel.take_count.value()  # 0: automatic, one result
        label = "" if takes <= 1 else f" ({takes} takes together)" if take < 0 else f" (take {take + 1})"
        self.panel.status.setText(f"{self._pending['text'] if self._pending else ''}: bar {done} of {total}{label}")
        region = self._region(song)
        self.editor.show_preview(song, region)
        if done == 1:
            self._show_result(region)

    def _generated(self, takes: list[Take]) -> None:
        self.panel.set_running(False)
        elapsed = time.perf_counter() - (self._pending or {}).get("started", time.perf_counter())
        if not takes:
            self._generation_cancelled()
            return
        if self._pending is not None:
            takes = [replace(take, song=self._whole(take.song)) for take in takes]
        self._takes = takes
        if len(takes) == 1:
            self._keep_take(0)
        else:
            typical = " — the most typical" if self._pending and self._pending["kind"] == "continue" else ""
            labels = [f"Take {i + 1}{typical if i == 0 else ''}" for i in range(len(takes))]
            self.panel.show_takes(labels)
        summary = takes[0].summary
        decoded = summary.get("takes", 1)
        chosen = f" (the most typical of {decoded} takes)" if len(takes) == 1 and decoded > 1 else ""
        done = f"Done in {elapsed:.1f} s{chosen}"
        warnings = summary.get("warnings", [])
        self.panel.status.setText(done + "".join(f"; {warning}" for warning in warnings))
        if warnings:
            self.statusBar().showMessage("; ".join(warnings), 15_000)

    def _preview_take(self, index: int) -> None:
        if 0 <= index < len(self._takes) and not self._stale():
            take = self._takes[index]
            self.editor.show_preview(take.song, take.region)

    def _keep_take(self, index: int) -> None:
        if not 0 <= index < len(self._takes) or self._pending is None or self._stale():
            return
        song, region = self._takes[index].song, self._takes[index].region
        self.editor.accept_generation(song, region, self._pending["text"])
        self._show_result(region)
        self.result_region = region
        self._takes, self._pending = [], None
        self.panel.show_takes([])

    def _show_result(self, region: tuple[int, int]) -> None:
        """Scroll so the new bars and the two bars before them are in view: the join shows."""
        start, end = region
        before = [tick for tick in self.editor.shown_song().bar_lines() if tick < start]
        self.roll.show_ticks(before[-2] if len(before) > 1 else before[0] if before else start, end)

    def undo_moved(self) -> None:
        """After an undo (or redo) takes the last result away: no result in the panel, and the
        view on where the song now ends."""
        if self.result_region is None or self._pending is not None:
            return
        if self.editor.document.state.generated == self.result_region:
            return  # the result is still there (an edit after it, or its redo)
        self.result_region = None
        song = self.editor.document.song
        starts = song.bar_starts()
        self.panel.reset_result(f"Undone: the song now ends with bar {len(starts)}")
        self.roll.show_ticks(starts[max(len(starts) - 3, 0)] if starts else 0, max(song.end_tick, 1))

    def _generation_failed(self, message: str) -> None:
        self.panel.set_running(False)
        self.editor.show_preview(None)
        self.panel.status.setText("Failed")
        path = self.editor.document.path
        name = str(path) if path else "the untitled song"
        self.error("Generation failed", message if name in message else f"{name}: {message}")

    def _generation_cancelled(self) -> None:
        self.panel.set_running(False)
        self.editor.show_preview(None)
        self._pending = None
        self.panel.status.setText("Cancelled; the song is as it was")


def bar_span(lines: list[int], bars: tuple[int, int]) -> tuple[int, int]:
    """The ticks of ``bars`` (0-based, end exclusive) on the bar ``lines``."""
    return lines[bars[0]], lines[min(bars[1], len(lines) - 1)]
