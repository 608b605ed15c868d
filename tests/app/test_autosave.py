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
