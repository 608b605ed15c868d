"""Continue, arrange and regenerate in the window: streamed bars, one undo step, cancel, takes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PySide6.QtWidgets import QLabel, QWidget

from tests.conftest import FIXTURES


@pytest.fixture
def loaded(window, qtbot, bundle_dir: Path):
    with qtbot.waitSignal(window.generator.loaded, timeout=120_000):
        window.load_model(str(bundle_dir))
    assert "on the CPU" in window.panel.model_info.text()
    window.open_file(FIXTURES / "drum_groove.mid")
    return window


def run(window, qtbot, action: str) -> None:
    window.actions[action].trigger()
    qtbot.waitUntil(lambda: not window.generator.busy, timeout=300_000)
    qtbot.wait(50)


def test_continue_streams_bars_and_is_one_undo_step(loaded, qtbot) -> None:
    window = loaded
    before = window.editor.document.song
    streamed: list[int] = []
    window.generator.progress.connect(lambda _v, done, _t, song: streamed.append(done))
    window.panel.bars.setValue(3)
    run(window, qtbot, "continue")
    after = window.editor.document.song
    assert streamed == [1, 2, 3]
    assert [t.notes[: len(b.notes)] for t, b in zip(after.tracks, before.tracks, strict=True)] == [
        b.notes for b in before.tracks
    ]  # the original notes are untouched
    start, end = window.editor.document.state.generated
    assert start >= before.bar_starts()[-1] and sum(start <= b < end for b in after.bar_starts(end)) == 3
    new_notes = [n for t, b in zip(after.tracks, before.tracks, strict=True) for n in t.notes[len(b.notes) :]]
    assert new_notes and all(start <= n.start < end for n in new_notes)
    assert window.editor.undo_stack.count() == 1 and window.isWindowModified()
    window.editor.undo_stack.undo()
    assert window.editor.document.song == before and window.editor.document.state.generated is None


def test_same_seed_same_music(loaded, qtbot) -> None:
    window = loaded
    window.panel.seed.setValue(11)
    run(window, qtbot, "continue")
    first = window.editor.document.song
    window.editor.undo_stack.undo()
    run(window, qtbot, "continue")
    assert window.editor.document.song == first


def test_the_prompt_guidance_control_reaches_the_model_and_the_settings(loaded, qtbot) -> None:
    from meloformer_app.settings import Settings
    from meloformer_core.sampling_settings import RECOMMENDED

    window = loaded
    assert window.panel.guidance.value() == RECOMMENDED.prompt_guidance
    run(window, qtbot, "continue")
    guided = window.editor.document.song
    window.editor.undo_stack.undo()
    other = 2.0 if RECOMMENDED.prompt_guidance != 2.0 else 1.0
    window.panel.guidance.setValue(other)
    assert window.panel.sampling().prompt_guidance == other
    run(window, qtbot, "continue")
    assert window.editor.document.song != guided  # same seed, other guidance: other music
    settings = Settings()
    window.panel.store(settings)
    assert settings.prompt_guidance == other


def test_cancel_leaves_the_document_as_it_was(loaded, qtbot) -> None:
    window = loaded
    before = window.editor.document.song
    window.panel.bars.setValue(64)
    window.generator.progress.connect(lambda *_: window.actions["cancel"].trigger())
    with qtbot.waitSignal(window.generator.cancelled, timeout=300_000):
        window.actions["continue"].trigger()
    qtbot.waitUntil(lambda: not window.generator.busy)
    assert window.editor.document.song is before and window.editor.preview is None
    assert window.editor.undo_stack.count() == 0 and "Cancelled" in window.panel.status.text()
    assert window.panel.continue_button.isEnabled() and not window.panel.cancel_button.isEnabled()


def test_takes_are_auditioned_then_one_is_kept(loaded, qtbot) -> None:
    window = loaded
    before = window.editor.document.song
    window.panel.bars.setValue(2)
    window.panel.take_count.setValue(3)
    run(window, qtbot, "continue")
    assert window.panel.takes.count() == 3 and window.editor.undo_stack.count() == 0
    assert "most typical" in window.panel.takes.item(0).text()  # decoded together, the most typical first
    assert len({take.seed for take in window._takes}) == 3 and len({take.song for take in window._takes}) == 3
    window.panel.takes.setCurrentRow(2)
    assert window.editor.shown_song() is window._takes[2].song and window.editor.document.song is before
    window.panel.keep_button.click()
    assert window.editor.undo_stack.count() == 1 and window.editor.document.song != before


def test_automatic_takes_keep_the_most_typical_at_once(loaded, qtbot) -> None:
    window = loaded
    window.panel.bars.setValue(2)
    window.panel.take_count.setValue(0)
    assert window.panel.take_count.text() == "Auto"
    run(window, qtbot, "continue")
    assert window.panel.takes.count() == 0 and window.editor.undo_stack.count() == 1  # kept, one undo step
    assert re.search(r"the most typical of [3-8] takes", window.panel.status.text())
    for index in range(len(window.editor.document.song.tracks)):
        window.tracks.checkbox(index, 0).setChecked(index == 1)
    count = window.editor.undo_stack.count()
    run(window, qtbot, "arrange")  # arranging writes one take
    assert window.panel.takes.count() == 0 and window.editor.undo_stack.count() == count + 1


def test_arrange_rewrites_only_the_ticked_tracks(loaded, qtbot) -> None:
    window = loaded
    before = window.editor.document.song
    for index in range(len(before.tracks)):
        window.tracks.checkbox(index, 0).setChecked(index == 1)
    count = window.editor.undo_stack.count()
    run(window, qtbot, "arrange")
    after = window.editor.document.song
    assert [after.tracks[i] for i in (0, 2, 3)] == [before.tracks[i] for i in (0, 2, 3)]
    assert window.editor.undo_stack.count() == count + 1


def test_arranging_every_bar_ignores_a_note_ringing_past_the_last_bar(loaded, qtbot, tmp_path: Path) -> None:
    """A last note held three bars past the final bar line adds no bars to arrange (the model
    sees the song's onsets), so "all bars" is a range the model has."""
    from meloformer_core.midi_io import read_midi, write_midi

    window = loaded
    song = read_midi(FIXTURES / "drum_groove.mid")
    bar = song.bar_starts()[1] - song.bar_starts()[0]
    held = song.tracks[1].notes[-1]
    longer = held._replace(duration=held.duration + 3 * bar)
    track = song.tracks[1].with_notes(song.tracks[1].notes.with_notes([longer], [held]))
    write_midi(song.replace(tracks=[song.tracks[0], track, *song.tracks[2:]]), tmp_path / "held.mid")
    window.open_file(tmp_path / "held.mid")
    assert len(window.editor.document.song.bar_starts()) > len(song.bar_starts())  # the tail reaches further
    for index in range(len(song.tracks)):
        window.tracks.checkbox(index, 0).setChecked(index == 2)
    count = window.editor.undo_stack.count()
    run(window, qtbot, "arrange")
    assert not window.dialogs and window.editor.undo_stack.count() == count + 1


def test_regenerate_without_a_selection_rewrites_the_bars_in_view(loaded, qtbot) -> None:
    window = loaded
    song = window.editor.document.song
    bar = song.bar_starts()
    window.roll.show_ticks(bar[1], bar[3])  # bars 2 and 3 fill the view …
    vp = window.roll.state.viewport
    vp.left_tick, vp.px_per_tick = bar[1], window.roll.canvas.width() / (bar[3] - bar[1]) * 0.999
    window.editor.set_current_track(1)
    run(window, qtbot, "regenerate")  # … and are regenerated, with no selection
    assert not window.dialogs and window.editor.undo_stack.undoText() == "Regenerate bars 2–3"
    after = window.editor.document.song
    assert [n for n in after.tracks[1].notes if not bar[1] <= n.start < bar[3]] == [
        n for n in song.tracks[1].notes if not bar[1] <= n.start < bar[3]
    ]
    window.editor.undo_stack.undo()


def test_regenerate_the_selected_bars_keeps_the_rest(loaded, qtbot) -> None:
    window = loaded
    song = window.editor.document.song
    bar = song.bar_starts()
    window.editor.set_current_track(1)
    window.editor.select([r for r in window.roll.state.table.in_rect(bar[1], bar[2] - 1, 0, 127, {1})])
    run(window, qtbot, "regenerate")
    after = window.editor.document.song
    assert [after.tracks[i] for i in (0, 2, 3)] == [song.tracks[i] for i in (0, 2, 3)]
    outside = [n for n in song.tracks[1].notes if not bar[1] <= n.start < bar[2]]
    assert [n for n in after.tracks[1].notes if not bar[1] <= n.start < bar[2]] == outside


def test_regenerate_writes_the_selected_bars_when_the_metre_changes_mid_bar(loaded, qtbot, tmp_path: Path) -> None:
    """A 4/4 song turning 3/4 halfway through bar 2: the model counts bars from the next bar
    line, so the app asks for the bars as the model counts them and keeps what it wrote."""
    from meloformer_core.encoding.quantize import bar_ticks
    from meloformer_core.midi_io import write_midi
    from meloformer_core.music import Note, Song, TimeSignature, Track

    beats = [Note(beat * 480, 60 + beat % 5, 480, 80) for beat in range(20)]
    tracks = (Track("piano", 0, False, beats), Track("bass", 33, False, [Note(0, 36, 9600, 90)]))
    song = Song(time_signatures=(TimeSignature(0, 4, 4), TimeSignature(2880, 3, 4)), tracks=tracks)
    write_midi(song, tmp_path / "metre.mid")
    window = loaded
    window.open_file(tmp_path / "metre.mid")
    song = window.editor.document.song
    lines = bar_ticks(song)
    assert song.bar_starts()[3] == 4320 and lines[3] == 5280  # two ways to count: the ruler's, the model's
    window.editor.set_current_track(0)
    window.editor.select([r for r in window.roll.state.table.in_rect(4320, 5279, 0, 127, {0})])
    run(window, qtbot, "regenerate")
    assert window.editor.document.state.generated == (lines[2], lines[3]) == (3840, 5280)  # the bar holding them
    after = window.editor.document.song
    assert after.tracks[1] == song.tracks[1]
    outside = [n for n in song.tracks[0].notes if not 3840 <= n.start < 5280]
    assert [n for n in after.tracks[0].notes if not 3840 <= n.start < 5280] == outside


def test_the_empty_tracks_of_a_file_are_folded_rows_the_model_does_not_hear(loaded, qtbot, tmp_path: Path) -> None:
    from meloformer_core.midi_io import read_midi, write_midi
    from meloformer_core.music import Note, Song, Track

    piano = Track("Piano", 0, False, [Note(i * 240, 60 + i % 7, 240, 80) for i in range(32)])
    write_midi(Song(tracks=(piano, Track("Strings", 48), Track("Guitar 2", 25))), tmp_path / "setup.mid")
    window = loaded
    window.open_file(tmp_path / "setup.mid")
    table = window.tracks.table
    assert table.rowCount() == 3  # one row per track of the file, the empty ones too …
    for row in (1, 2):  # … folded into a thin line that names them
        assert table.rowHeight(row) < table.rowHeight(0) and not table.cellWidget(row, 3).isVisible()
        assert table.item(row, 2).text() == f"{('Strings', 'Guitar 2')[row - 1]} (empty)"
    window.editor.set_current_track(1)  # selected: a full row, to draw in
    assert table.rowHeight(1) == table.rowHeight(0) and table.cellWidget(1, 3).isVisible()
    window.editor.set_current_track(None)
    assert table.rowHeight(1) < table.rowHeight(0)
    heard = []
    start = window.generator.start
    window.generator.start = lambda request: (heard.append(request), start(request))
    window.panel.bars.setValue(1)
    run(window, qtbot, "continue")
    assert [t.name for t in heard[0].song.tracks] == ["Piano"]  # a setup track is not music to continue
    after = window.editor.document.song
    assert [(t.name, t.program, len(t.notes)) for t in after.tracks[1:]] == [("Strings", 48, 0), ("Guitar 2", 25, 0)]
    assert window.editor.document.state.generated is not None
    window.editor.undo_stack.undo()
    opened = read_midi(tmp_path / "setup.mid", empty_tracks=True).tracks
    assert window.editor.document.song.tracks == opened
    assert window._write(tmp_path / "saved.mid")  # File ▸ Save keeps them
    assert read_midi(tmp_path / "saved.mid", empty_tracks=True).tracks == opened


def test_a_broken_model_is_a_dialog_not_a_crash(window, qtbot, tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_bytes(b"not really")
    with qtbot.waitSignal(window.generator.load_failed, timeout=60_000):
        window.load_model(str(tmp_path))
    assert "pickled" in window.dialogs[-1][1] and "No model" in window.panel.model_info.text()
    window.open_file(FIXTURES / "jig_6_8.mid")
    window.actions["continue"].trigger()
    assert window.dialogs[-1][0] == "No model" and not window.generator.busy


def test_takes_are_dropped_when_the_song_changes_before_one_is_kept(loaded, qtbot) -> None:
    """Keeping a take after opening another file used to write the old song over it."""
    window = loaded
    window.panel.bars.setValue(1)
    window.panel.take_count.setValue(2)
    run(window, qtbot, "continue")
    assert window.panel.takes.count() == 2
    window.open_file(FIXTURES / "jig_6_8.mid", confirm=False)
    opened = window.editor.document.song
    window.panel.keep_button.click()
    assert window.editor.document.song is opened and window.editor.undo_stack.count() == 0
    assert window.panel.takes.count() == 0 and "dropped" in window.panel.status.text()


# --- closing while the worker is busy --------------------------------------------------------
class SlowService:
    """A model load that lasts until ``release`` is set, and generations that last until
    they are cancelled."""

    def __init__(self, loading, release, generating=None) -> None:
        self.loading, self.release, self.generating = loading, release, generating
        self.bundle = None

    def __call__(self, device=None):  # stands in for the class: GenerationService(device=…)
        return self

    def load(self, path) -> dict:
        self.loading.set()
        assert self.release.wait(300), "the test never let the model load finish"
        self.bundle = object()
        return {"name": "slow", "device": "cpu"}

    def continue_song(self, song, bars, sampling, progress=None, cancel=None):
        from meloformer_core.errors import MeloformerError

        self.generating.set()
        assert cancel.wait(300), "the generation was never cancelled"
        raise MeloformerError("cancelled")  # as the service ends a cancelled run


def test_closing_while_the_model_loads_neither_waits_nor_destroys_the_thread(qtbot, monkeypatch, request) -> None:
    """The close waited up to 10 s for the load (a frozen window), then gave up and left
    the thread to be destroyed with the window while it ran: Qt aborts the process then."""
    import gc
    import threading
    import weakref

    from PySide6.QtCore import QThread

    import meloformer_app.generation as generation
    from meloformer_app.main_window import MainWindow
    from meloformer_app.settings import Settings

    loading, release = threading.Event(), threading.Event()
    request.addfinalizer(release.set)  # a failing test must not leave the worker blocked
    monkeypatch.setattr(generation, "GenerationService", SlowService(loading, release))
    window = MainWindow(Settings(), load_model=False)
    window.show()
    window.load_model("")
    qtbot.waitUntil(loading.is_set, timeout=30_000)
    thread = weakref.ref(window.generator.thread)
    real_wait, waited_on_running = QThread.wait, []

    def wait(self, *args) -> bool:
        if self.isRunning() and QThread.currentThread() is not self:  # the GUI thread would block on it
            waited_on_running.append(self.objectName())
            return False
        return real_wait(self, *args)

    monkeypatch.setattr(QThread, "wait", wait)
    assert window.close() and not window.isVisible()
    monkeypatch.setattr(QThread, "wait", real_wait)
    assert waited_on_running == [] and not release.is_set() and thread().isRunning()
    with qtbot.waitSignal(window.destroyed, timeout=30_000):  # the window goes; the load goes on
        window.deleteLater()
    del window
    gc.collect()
    assert thread() is not None and thread() in generation.running_threads()
    release.set()
    qtbot.waitUntil(lambda: thread() is None, timeout=60_000)  # finished, then let go
    assert generation.running_threads() == []


def test_closing_while_generating_cancels_it(qtbot, monkeypatch, request) -> None:
    import threading
    import weakref

    import meloformer_app.generation as generation
    from meloformer_app.main_window import MainWindow
    from meloformer_app.settings import Settings
    from meloformer_core.midi_io import read_midi

    loading, release, generating = threading.Event(), threading.Event(), threading.Event()
    release.set()
    service = SlowService(loading, release, generating)
    monkeypatch.setattr(generation, "GenerationService", service)
    window = MainWindow(Settings(), load_model=False)
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.generator.loaded, timeout=30_000):
        window.load_model("")
    window.open_file(FIXTURES / "drum_groove.mid")
    window.actions["continue"].trigger()
    qtbot.waitUntil(generating.is_set, timeout=30_000)
    cancelled = []
    window.generator.cancelled.connect(lambda: cancelled.append(True))
    thread = weakref.ref(window.generator.thread)
    assert window.close() and not window.isVisible()
    qtbot.waitUntil(lambda: thread().isFinished(), timeout=60_000)  # the run saw the cancel and ended
    assert cancelled == []  # a closed window hears nothing more from the worker
    assert window.editor.document.song == read_midi(FIXTURES / "drum_groove.mid")


QUIT_WHILE_LOADING = """
import sys, threading
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QApplication
import meloformer_app.app as app_module
import meloformer_app.generation as generation

class Bridge(QObject):
    close_window = Signal()

bridge, quitting = Bridge(), threading.Event()

class Window(app_module.MainWindow):
    def __init__(self):
        super().__init__()
        bridge.close_window.connect(self.close)

class SlowService:
    bundle = None
    def __init__(self, device=None):
        pass
    def load(self, path):
        bridge.close_window.emit()  # the user closes the window while the model loads …
        quitting.wait()  # … which lasts until the app quits
        print("load finished", flush=True)
        return {"name": "slow", "device": "cpu"}

def about_to_quit():
    shown = [w for w in QApplication.topLevelWidgets() if isinstance(w, Window) and w.isVisible()]
    print("quitting, window", "shown" if shown else "closed", flush=True)
    quitting.set()

generation.GenerationService = SlowService
app_module.MainWindow = Window
app = QApplication(sys.argv[:1])
app.aboutToQuit.connect(about_to_quit)
sys.exit(app_module.run())
"""


def test_quitting_while_the_model_loads_waits_for_it_behind_the_closed_window() -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    result = subprocess.run([sys.executable, "-c", QUIT_WHILE_LOADING], capture_output=True, text=True, cwd=ROOT,
                            env=env, timeout=180)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["quitting, window closed", "load finished"]
    assert "Destroyed while thread" not in result.stderr and "Traceback" not in result.stderr


def test_a_track_the_model_left_empty_is_named_in_the_status(loaded, qtbot, monkeypatch) -> None:
    import dataclasses

    import numpy as np

    import meloformer_core.generation.generate as generate

    real = generate.arrange_grid

    def silent(model, vocab, grid, targets, first, stop, sampling, **options):
        new_bars, stats = real(model, vocab, grid, targets, first, stop, sampling, **options)
        written = new_bars.notes[~np.isin(new_bars.notes[:, 0], list(targets))]
        return dataclasses.replace(new_bars, notes=written), stats

    monkeypatch.setattr(generate, "arrange_grid", silent)
    window = loaded
    for index in range(len(window.editor.document.song.tracks)):
        window.tracks.checkbox(index, 0).setChecked(index == 1)
    run(window, qtbot, "arrange")
    name = window.editor.document.song.tracks[1].name
    assert f"track 2 ({name}) got no notes" in window.panel.status.text()
    assert f"track 2 ({name}) got no notes" in window.statusBar().currentMessage()


def test_arrange_on_a_freshly_opened_file_writes_the_selected_track_or_asks_which(loaded, qtbot, monkeypatch) -> None:
    """Nothing is ticked "Gen" on opening (the file's tracks are kept); Arrange then writes the
    selected track, or asks which one, instead of a dead-end message. A track added with "+"
    starts ticked."""
    from PySide6.QtWidgets import QInputDialog, QToolButton

    window = loaded
    song = window.editor.document.song
    assert not any(view.generate for view in window.editor.document.views)
    assert not any(window.tracks.checkbox(row, 0).isChecked() for row in range(len(song.tracks)))
    window.editor.set_current_track(2)
    run(window, qtbot, "arrange")
    after = window.editor.document.song
    assert not window.dialogs and [after.tracks[i] for i in (0, 1, 3)] == [song.tracks[i] for i in (0, 1, 3)]
    assert window.tracks.checkbox(2, 0).isChecked()  # the track written shows as ticked
    window.editor.set_view(2, generate=False)
    window.editor.set_current_track(None)
    asked: list[list[str]] = []

    def pick(parent, title, label, items, current, editable):
        asked.append(items)
        return items[1], True

    monkeypatch.setattr(QInputDialog, "getItem", pick)
    before = window.editor.document.song
    run(window, qtbot, "arrange")
    assert len(asked) == 1 and len(asked[0]) == len(song.tracks) and not window.dialogs
    after = window.editor.document.song
    assert [after.tracks[i] for i in (0, 2, 3)] == [before.tracks[i] for i in (0, 2, 3)]
    window.editor.set_view(1, generate=False)
    monkeypatch.setattr(QInputDialog, "getItem", lambda *a: ("", False))  # the user cancels: nothing happens
    count = window.editor.undo_stack.count()
    run(window, qtbot, "arrange")
    assert window.editor.undo_stack.count() == count and not window.dialogs
    plus = next(b for b in window.tracks.findChildren(QToolButton) if b.text() == "+")
    plus.click()
    assert window.tracks.checkbox(len(song.tracks), 0).isChecked()
    header = window.tracks.table.horizontalHeaderItem(0)
    assert "Arrange" in header.toolTip()


def test_the_result_is_shown_with_its_join_and_undo_clears_it(loaded, qtbot) -> None:
    """After Continue the view holds the two bars before the new ones and the new bars; undo
    names the generation, and undoing it clears the panel's result and shows the song's end."""
    window = loaded
    assert window.panel.progress.text() == ""  # no "0 / 100 bars" before anything ran
    before = window.editor.document.song
    vp = window.roll.state.viewport
    vp.px_per_tick, vp.left_tick = 0.5, 0.0  # zoomed in on the start: the end is out of view
    window.panel.bars.setValue(2)
    run(window, qtbot, "continue")
    start, end = window.editor.document.state.generated
    join = [tick for tick in before.bar_lines() if tick < start][-2]
    width = window.roll.canvas.width()
    assert vp.left_tick <= join and vp.tick_at(width) >= end
    assert window.actions["undo"].text() == "&Undo Continue 2 bars"
    assert window.panel.progress.value() == 2
    window.editor.undo_stack.undo()
    assert window.panel.progress.text() == "" and "now ends with bar" in window.panel.status.text()
    assert window.actions["undo"].text() == "&Undo"
    assert vp.tick_at(width) >= window.editor.document.song.end_tick


def test_the_side_panels_close_and_come_back_from_the_view_menu(window, qtbot) -> None:
    view = next(action.menu() for action in window.menuBar().actions() if action.text() == "&View")
    toggles = {action.text(): action for action in view.actions() if action.text() in ("Tracks", "Generate")}
    assert set(toggles) == {"Tracks", "Generate"}
    roll_width = window.roll.width()
    for title, dock in window.docks.items():
        assert dock.isVisible() and toggles[title].isChecked()
        toggles[title].trigger()
        qtbot.waitUntil(lambda dock=dock: not dock.isVisible())
    qtbot.waitUntil(lambda: window.roll.width() > roll_width)  # the roll takes the room
    for title, dock in window.docks.items():
        toggles[title].trigger()
        qtbot.waitUntil(lambda dock=dock: dock.isVisible())


def test_the_generate_panel_speaks_music_presets_and_reset(window, qtbot) -> None:
    from meloformer_core.sampling_settings import RECOMMENDED

    panel = window.panel
    labels = {label.text() for label in panel.findChildren(QLabel)}
    assert {"Creativity", "Stay close to the song", "Style", "Takes"} <= labels
    assert not {"Top-k", "Top-p", "Min-p", "Temperature", "Prompt guidance", "Variations"} & labels
    tips = [w.toolTip() for w in panel.findChildren(QWidget) if w.toolTip()]
    assert tips and not any("token" in tip.lower() for tip in tips)
    assert not panel.controls["top_p"].isVisible()  # the fine controls wait under Advanced
    panel.advanced.setChecked(True)
    qtbot.waitUntil(panel.controls["top_p"].isVisible)
    assert panel.preset.currentText() == "Balanced"
    panel.preset.setCurrentText("Adventurous")
    panel.preset.activated.emit(panel.preset.currentIndex())
    assert panel.temperature.value() == 1.2 and panel.guidance.value() == 1.0
    panel.temperature.setValue(0.66)
    assert panel.preset.currentText() == "Custom"
    panel.take_count.setValue(4)
    panel.reset_button.click()
    sampling = panel.sampling()
    assert (sampling.temperature, sampling.top_p, sampling.min_p, sampling.prompt_guidance) == (
        RECOMMENDED.temperature, RECOMMENDED.top_p, RECOMMENDED.min_p, RECOMMENDED.prompt_guidance)  # fmt: skip
    assert panel.take_count.value() == RECOMMENDED.takes and panel.preset.currentText() == "Balanced"
