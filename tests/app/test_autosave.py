"""Autosaves of several apps in one folder: each running app keeps its own, a clean close
removes only its own, and only the autosaves of apps that are gone (crashed) are offered
back, the newest first. Other apps are real processes: a child standing in for a running
MeloFormer, killed to stand for a crash."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from meloformer_app.settings import Autosave, Orphan, Owner, process_start_time
from meloformer_core.midi_io import midi_bytes, read_midi
from tests.conftest import FIXTURES, ROOT

KNOWS_START_TIMES = process_start_time(os.getpid()) is not None


@contextlib.contextmanager
def other_process(code: str = "") -> Iterator[subprocess.Popen]:
    """A child process that runs ``code``, prints ``ready`` and lives until its stdin closes
    (or it is killed); reaped on the way out, so its pid then names no process."""
    script = f"import sys\n{code}\nprint('ready', flush=True)\nsys.stdin.read()\n"
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, cwd=ROOT)  # fmt: skip
    try:
        assert child.stdout.readline().strip() == "ready"
        yield child
    finally:
        with contextlib.suppress(OSError):
            child.stdin.close()
        child.wait(timeout=60)


def owner_of(child: subprocess.Popen, token: str = "other") -> Owner:
    return Owner(child.pid, process_start_time(child.pid), token)


def dead_owner(token: str = "dead") -> Owner:
    """The owner of an app that has exited."""
    with other_process() as child:
        owner = owner_of(child, token)
    return owner


def written_at(autosave: Autosave, when: float) -> None:
    """Pretend ``autosave`` was last written at ``when`` (seconds since the epoch)."""
    record = json.loads(autosave.info.read_text())
    autosave.info.write_text(json.dumps({**record, "written": when}))


def test_a_running_apps_autosave_is_neither_offered_nor_removed(user_dirs: Path) -> None:
    with other_process() as child:
        theirs = Autosave(owner=owner_of(child))
        theirs.write(b"their song", Path("/music/theirs.mid"))
        ours = Autosave()
        assert ours.orphans() == []
        ours.write(b"our song", None)
        assert ours.midi != theirs.midi and ours.pending() == (ours.midi, None)
        ours.clear()
        assert ours.pending() is None
        assert (
            theirs.pending() == (theirs.midi, Path("/music/theirs.mid")) and theirs.midi.read_bytes() == b"their song"
        )
        child.kill()  # it crashes
    (orphan,) = ours.orphans()
    assert (orphan.midi, orphan.source) == (theirs.midi, Path("/music/theirs.mid"))
    orphan.discard()
    assert ours.orphans() == [] and not any(ours.folder.iterdir())


@pytest.mark.skipif(not KNOWS_START_TIMES, reason="this system does not say when a process started")
def test_a_process_given_a_dead_apps_id_is_not_its_owner(user_dirs: Path) -> None:
    with other_process() as child:
        earlier = Owner(child.pid, "1", "earlier")  # the same id, started long before the child
        assert not earlier.running() and owner_of(child).running()
        Autosave(owner=earlier).write(b"song", None)
        assert [orphan.midi for orphan in Autosave().orphans()] == [Autosave(owner=earlier).midi]


def test_this_process_has_one_owner_and_a_namesake_of_it_is_dead() -> None:
    this = Owner.this_process()
    assert this.running() and Autosave().midi == Autosave().midi  # every window of one app writes one pair
    assert not Owner(os.getpid(), this.started, "an-earlier-app-with-our-id").running()
    assert not Owner(0, None, "x").running() and not Owner(-5, None, "x").running()


def test_orphans_come_newest_first_with_the_old_single_file_among_them(user_dirs: Path) -> None:
    old = Autosave(owner=dead_owner("old"))
    new = Autosave(owner=dead_owner("new"))
    old.write(b"old song", Path("/music/old.mid"))
    new.write(b"new song", None)
    written_at(old, 1_000_000)
    written_at(new, 3_000_000)
    legacy = old.folder / "autosave.mid"  # what versions before per-app autosaves wrote
    legacy.write_bytes(b"legacy song")
    (old.folder / "autosave.json").write_text('{"source": "/music/legacy.mid"}')
    os.utime(legacy, (2_000_000, 2_000_000))
    orphans = Autosave().orphans()
    assert orphans == [
        Orphan(new.midi, new.info, None, 3_000_000.0),
        Orphan(legacy, old.folder / "autosave.json", Path("/music/legacy.mid"), 2_000_000.0),
        Orphan(old.midi, old.info, Path("/music/old.mid"), 1_000_000.0),
    ]
    orphans[1].discard()  # the one declined or recovered goes, the others stay
    assert [orphan.midi for orphan in Autosave().orphans()] == [new.midi, old.midi]


def test_a_record_whose_song_was_never_written_is_cleaned_up(user_dirs: Path) -> None:
    """The record is written first: an app killed before its song leaves the record alone."""
    autosave = Autosave(owner=dead_owner())
    autosave.write(b"song", None)
    autosave.midi.unlink()
    assert Autosave().orphans() == [] and not autosave.info.exists()


# --- in the window ---------------------------------------------------------------------------
OTHER_APP = f"""
from pathlib import Path
from meloformer_app.settings import Autosave
from meloformer_core.midi_io import midi_bytes, read_midi
Autosave().write(midi_bytes(read_midi({str(FIXTURES / "jig_6_8.mid")!r})), Path({str(FIXTURES / "jig_6_8.mid")!r}))
"""


def answering(monkeypatch, answers: list) -> list[str]:
    """Answer the questions with ``answers`` in turn; return the questions' texts as asked."""
    from PySide6.QtWidgets import QMessageBox

    asked: list[str] = []

    def question(parent, title: str, text: str, *args, **kwargs):
        asked.append(text)
        return answers.pop(0)

    monkeypatch.setattr(QMessageBox, "question", question)
    return asked


def new_window(qtbot):
    from meloformer_app.main_window import MainWindow
    from meloformer_app.settings import Settings

    window = MainWindow(Settings(), load_model=False)
    qtbot.addWidget(window)
    return window


def test_another_running_app_keeps_its_autosave_until_it_crashes(window, qtbot, monkeypatch) -> None:
    """All apps shared one autosave: a second app offered the first one's live autosave as a
    crash (declining deleted it), and its clean close deleted it too."""
    from PySide6.QtWidgets import QMessageBox

    no, yes = QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes
    with other_process(OTHER_APP) as child:  # another MeloFormer, with unsaved changes to the jig
        asked = answering(monkeypatch, [no])
        window.start()
        assert asked == [] and window.editor.document.song.note_count == 0
        window.open_file(FIXTURES / "bach_chorale.mid")
        window.editor.select_all()
        window.editor.delete_selection()
        window.write_autosave()
        answering(monkeypatch, [QMessageBox.StandardButton.Discard])
        assert window.close()
        left = [path for path in window.autosave.folder.iterdir() if path.suffix == ".mid"]
        assert len(left) == 1 and read_midi(left[0]) == read_midi(FIXTURES / "jig_6_8.mid")
        child.kill()  # the other app crashes
    asked = answering(monkeypatch, [yes])
    after_crash = new_window(qtbot)
    after_crash.start()
    assert len(asked) == 1 and "jig_6_8.mid" in asked[0]
    assert after_crash.editor.document.song == read_midi(FIXTURES / "jig_6_8.mid")
    assert after_crash.editor.document.path == FIXTURES / "jig_6_8.mid" and after_crash.is_dirty()
    # the recovered work is this app's autosave now; the crash's is gone
    assert after_crash.autosave.pending() is not None and after_crash.autosave.orphans() == []
    after_crash.editor.document.mark_clean()
    after_crash.generator.shutdown()


def crash(autosave_source: Path, edit_count: int, when: float) -> Autosave:
    """An app that crashed at ``when`` with ``edit_count`` notes deleted from ``autosave_source``."""
    song = read_midi(autosave_source)
    track = song.tracks[0]
    song = song.replace(tracks=[track.with_notes(track.notes[edit_count:]), *song.tracks[1:]])
    autosave = Autosave(owner=dead_owner())
    autosave.write(midi_bytes(song), autosave_source)
    written_at(autosave, when)
    return autosave


def test_each_crash_is_asked_about_newest_first(window, qtbot, monkeypatch) -> None:
    from PySide6.QtWidgets import QMessageBox

    yes, no = QMessageBox.StandardButton.Yes, QMessageBox.StandardButton.No
    older = crash(FIXTURES / "bach_chorale.mid", 1, 1_000_000)
    newer = crash(FIXTURES / "jig_6_8.mid", 2, 2_000_000)
    asked = answering(monkeypatch, [no, yes])
    window.start()
    assert ["jig_6_8.mid" in asked[0], "bach_chorale.mid" in asked[1]] == [True, True]
    assert all("of 2" in text for text in asked)
    assert not newer.midi.exists() and not older.midi.exists()  # declined, recovered: both gone
    assert window.editor.document.path.name == "bach_chorale.mid"
    assert window.editor.document.song.note_count == read_midi(FIXTURES / "bach_chorale.mid").note_count - 1
    window.editor.document.mark_clean()  # the questions are answered: closing must not ask


def test_recovering_a_second_crash_asks_about_the_first_and_cancel_keeps_it(window, monkeypatch) -> None:
    from PySide6.QtWidgets import QMessageBox

    yes, cancel = QMessageBox.StandardButton.Yes, QMessageBox.StandardButton.Cancel
    older = crash(FIXTURES / "bach_chorale.mid", 1, 1_000_000)
    newer = crash(FIXTURES / "jig_6_8.mid", 2, 2_000_000)
    asked = answering(monkeypatch, [yes, yes, cancel])
    window.start()
    assert len(asked) == 3 and "Save the changes to jig_6_8.mid" in asked[2]
    assert window.editor.document.path.name == "jig_6_8.mid" and window.is_dirty()
    assert not newer.midi.exists() and older.midi.exists()  # kept for the next start
    assert [orphan.midi for orphan in window.autosave.orphans()] == [older.midi]
    window.editor.document.mark_clean()


def test_the_old_single_autosave_is_offered_once(window, qtbot, monkeypatch) -> None:
    from PySide6.QtWidgets import QMessageBox

    folder = window.autosave.folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "autosave.mid").write_bytes((FIXTURES / "folk_song_3_4.mid").read_bytes())
    (folder / "autosave.json").write_text(json.dumps({"source": str(FIXTURES / "folk_song_3_4.mid")}))
    asked = answering(monkeypatch, [QMessageBox.StandardButton.Yes])
    window.start()
    assert len(asked) == 1 and "folk_song_3_4.mid" in asked[0]
    assert window.editor.document.song == read_midi(FIXTURES / "folk_song_3_4.mid")
    assert not (folder / "autosave.mid").exists() and not (folder / "autosave.json").exists()
    window.editor.document.mark_clean()
    asked = answering(monkeypatch, [])
    later = new_window(qtbot)
    later.start()
    assert asked == []
    later.generator.shutdown()


# --- in the window: recovery at start, closing, and replacing the song -----------------------


def crashed_session(window) -> None:
    """Edits to the jig autosaved, then the app dies without a clean exit: its autosave
    belongs to a process that no longer runs."""
    from meloformer_app.settings import Autosave

    window.autosave = Autosave(window.autosave.folder, dead_owner())
    window.open_file(FIXTURES / "jig_6_8.mid", confirm=False)
    window.editor.select_all()
    window.editor.delete_selection()
    window.write_autosave()
    assert window.autosave.pending() is not None
    window.editor.document.mark_clean()  # its own close must not ask


def next_session(qtbot, monkeypatch, answers: list):
    from PySide6.QtWidgets import QMessageBox

    from meloformer_app.main_window import MainWindow
    from meloformer_app.settings import Settings

    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda parent, title, *a, **k: asked.append(title) or answers.pop(0))
    second = MainWindow(Settings(), load_model=False)
    qtbot.addWidget(second)
    return second, asked


@pytest.mark.parametrize("argument", [None, "jig_6_8.mid"])
def test_autosave_is_recovered_at_start(window, qtbot, monkeypatch, argument) -> None:
    from PySide6.QtWidgets import QMessageBox

    crashed_session(window)
    second, asked = next_session(qtbot, monkeypatch, [QMessageBox.StandardButton.Yes])
    second.start(FIXTURES / argument if argument else None)  # started with no file, or with the crashed one
    assert asked == ["Recover unsaved work"]
    assert second.editor.document.song.note_count == 0 and second.editor.document.path.name == "jig_6_8.mid"
    assert second.editor.undo_stack.canUndo() and second.autosave.orphans() == []
    assert second.autosave.pending()[1] == FIXTURES / "jig_6_8.mid"  # the recovered work is autosaved again
    second.editor.document.mark_clean()
    second.generator.shutdown()


def test_a_recovered_song_gets_its_tracks_views(window, qtbot, monkeypatch) -> None:
    from PySide6.QtWidgets import QMessageBox

    from meloformer_core.midi_io import write_midi

    song = read_midi(FIXTURES / "bach_chorale.mid")
    window.autosave.folder.mkdir(parents=True, exist_ok=True)
    write_midi(song, window.autosave.folder / "autosave.mid")  # as versions before per-app autosaves wrote it
    second, _ = next_session(qtbot, monkeypatch, [QMessageBox.StandardButton.Yes])
    second.start()
    assert len(second.editor.document.views) == len(song.tracks) == second.tracks.table.rowCount()
    second.editor.document.mark_clean()
    second.generator.shutdown()


def test_a_file_argument_opens_only_after_the_crash_is_dealt_with(window, qtbot, monkeypatch) -> None:
    """Opening the file first let the next autosave overwrite the crash's unsaved work."""
    from PySide6.QtWidgets import QMessageBox

    crashed_session(window)
    cancel = [QMessageBox.StandardButton.Yes, QMessageBox.StandardButton.Cancel]
    second, asked = next_session(qtbot, monkeypatch, cancel)
    second.start(FIXTURES / "bach_chorale.mid")
    assert asked == ["Recover unsaved work", "Unsaved changes"]
    assert second.editor.document.path.name == "jig_6_8.mid" and second.editor.document.song.note_count == 0
    second.editor.document.mark_clean()
    second.generator.shutdown()

    discard = [QMessageBox.StandardButton.Yes, QMessageBox.StandardButton.Discard]
    crashed_session(window)
    third, asked = next_session(qtbot, monkeypatch, discard)
    third.start(FIXTURES / "bach_chorale.mid")
    assert third.editor.document.path.name == "bach_chorale.mid" and third.editor.document.song.note_count > 0
    third.generator.shutdown()


def edited(window) -> None:
    """The jig with every note deleted, autosaved: unsaved work a crash would offer back."""
    window.open_file(FIXTURES / "jig_6_8.mid", confirm=False)
    window.editor.select_all()
    window.editor.delete_selection()
    window.write_autosave()
    assert window.autosave.pending() is not None


def answering_all(monkeypatch, window, answer) -> list[bool]:
    """Answer every question with ``answer``; record whether the autosave timer ran meanwhile."""
    from PySide6.QtWidgets import QMessageBox

    timer_running: list[bool] = []
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a, **k: timer_running.append(window.autosave_timer.isActive()) or answer)  # fmt: skip
    return timer_running


def test_discarding_at_close_while_the_model_loads_leaves_nothing_to_recover(window, qtbot, monkeypatch,
                                                                            request) -> None:  # fmt: skip
    """Close → Discard while the model was loading: the close waited for the generation thread,
    the autosave timer fired after it and rewrote the discarded song, and the next start
    offered to recover it."""
    import threading

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QMessageBox

    import meloformer_app.generation as generation

    loading, release = threading.Event(), threading.Event()
    request.addfinalizer(release.set)  # a failing test must not leave the worker thread blocked

    class SlowService:  # a model load that lasts until the test lets it finish
        bundle = None

        def __init__(self, device=None) -> None:
            pass

        def load(self, path) -> dict:
            loading.set()
            release.wait(120)
            return {"name": "slow", "device": "cpu"}

    monkeypatch.setattr(generation, "GenerationService", SlowService)
    window.load_model("")
    qtbot.waitUntil(loading.is_set, timeout=30_000)
    edited(window)
    window.autosave_timer.setInterval(1)  # due at every turn of the event loop
    ticks: list[int] = []
    probe = QTimer(interval=1)  # as often as the autosave timer: while it ticks, that one would have
    probe.timeout.connect(lambda: ticks.append(1))
    probe.start()
    real_shutdown = window.generator.shutdown

    def shutdown_while_loading() -> None:
        """The close waits for the load to end; events run meanwhile (a timer would fire)."""
        if not release.is_set():
            ticks.clear()
            qtbot.waitUntil(lambda: len(ticks) >= 20, timeout=30_000)
            release.set()
        real_shutdown()

    monkeypatch.setattr(window.generator, "shutdown", shutdown_while_loading)
    timer_running = answering_all(monkeypatch, window, QMessageBox.StandardButton.Discard)
    assert window.close()
    ticks.clear()
    qtbot.waitUntil(lambda: len(ticks) >= 20, timeout=30_000)  # and after the close
    probe.stop()
    assert window.autosave.pending() is None
    assert timer_running == [False] and not window.autosave_timer.isActive()
    second, asked = next_session(qtbot, monkeypatch, [QMessageBox.StandardButton.Yes])
    second.start()
    assert asked == [] and second.editor.document.song.note_count == 0 and second.autosave.pending() is None
    second.generator.shutdown()


def test_a_cancelled_close_goes_on_autosaving(window, qtbot, monkeypatch) -> None:
    from PySide6.QtWidgets import QMessageBox

    edited(window)
    window.autosave.clear()
    timer_running = answering_all(monkeypatch, window, QMessageBox.StandardButton.Cancel)
    assert not window.close() and window.isVisible()
    assert timer_running == [False] and window.autosave_timer.isActive()
    window.autosave_timer.setInterval(1)
    qtbot.waitUntil(lambda: window.autosave.pending() is not None, timeout=30_000)


@pytest.mark.parametrize("action", ["new", "open"])
def test_a_song_given_up_for_another_takes_its_autosave_along(window, monkeypatch, tmp_path, action) -> None:
    """File → New or Open, Discard: the autosave of the song given up stayed until a crash
    offered it back. A file that fails to open replaces nothing, so the autosave stays."""
    from PySide6.QtWidgets import QFileDialog, QMessageBox

    broken = tmp_path / "broken.mid"
    broken.write_bytes(b"MThd")
    edited(window)
    timer_running = answering_all(monkeypatch, window, QMessageBox.StandardButton.Discard)
    chosen = [str(broken), str(FIXTURES / "bach_chorale.mid")]
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (chosen.pop(0), ""))
    window.actions["open"].trigger()  # the file cannot be read: the edited jig stays, and its autosave
    assert window.dialogs and window.editor.document.path.name == "jig_6_8.mid"
    assert window.autosave.pending() is not None and window.autosave_timer.isActive()
    window.actions[action].trigger()
    assert window.editor.document.path == (None if action == "new" else FIXTURES / "bach_chorale.mid")
    assert window.autosave.pending() is None and not window.is_dirty()
    assert timer_running == [False, False] and window.autosave_timer.isActive()


def test_undoing_back_to_the_saved_song_removes_its_autosave(window) -> None:
    edited(window)
    window.editor.undo_stack.undo()
    assert not window.is_dirty()
    window.write_autosave()
    assert window.autosave.pending() is None
