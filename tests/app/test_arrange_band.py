"""Adding drums and bass under a melody in the window, with the shipped default model.

The flow a user follows: open a melody, add two tracks with the track list's "+", make
one a drum track and the other a bass, tick "Gen" on those two only, click Arrange. The
new tracks must play (a drum track on General MIDI kit keys, a bass below the melody) and
the melody stay as it was, all in one undo step.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtWidgets import QToolButton

from meloformer_core.midi_io import read_midi, write_midi
from tests.conftest import ROOT

BASS = 33  # GM "Electric Bass (finger)", 0-based


def melody_of_band_example(folder: Path) -> Path:
    song = read_midi(ROOT / "resources" / "examples" / "band_song.mid")
    lead = next(track for track in song.tracks if not track.is_drum and len(track.notes))
    path = folder / "melody.mid"
    write_midi(song.replace(tracks=[lead]), path)
    return path


@pytest.mark.slow
def test_add_drums_and_bass_under_a_melody(window, qtbot, tmp_path: Path) -> None:
    path = melody_of_band_example(tmp_path)
    with qtbot.waitSignal(window.generator.loaded, timeout=120_000):
        window.load_model("")  # the default bundle
    window.open_file(path)
    before = window.editor.document.song
    (lead,) = before.tracks
    plus = next(b for b in window.tracks.findChildren(QToolButton) if b.text() == "+")
    plus.click()
    plus.click()
    window.tracks.table.cellWidget(1, 3).setCurrentIndex(128)  # track 2: the drum kit
    window.tracks.table.cellWidget(2, 3).setCurrentIndex(BASS)  # track 3: a bass
    for row, on in enumerate((False, True, True)):
        window.tracks.checkbox(row, 0).setChecked(on)
    count = window.editor.undo_stack.count()
    window.panel.seed.setValue(3)
    window.panel.arrange_button.click()
    qtbot.waitUntil(lambda: not window.generator.busy and window.editor.undo_stack.count() == count + 1,
                    timeout=600_000)  # fmt: skip
    song = window.editor.document.song
    assert not window.dialogs
    assert song.tracks[0] == lead  # the melody is kept
    drums, bass = song.tracks[1], song.tracks[2]
    assert drums.is_drum and bass.program == BASS
    bars = len(before.bar_starts(int(lead.notes.starts.max())))
    for track in (drums, bass):
        starts = np.asarray(song.bar_starts(int(track.notes.starts.max()) if len(track.notes) else 0))
        played = len(set(np.searchsorted(starts, track.notes.starts, side="right").tolist()))
        assert played >= 0.75 * bars, f"{track.name} plays in {played} of {bars} bars"
    assert all(35 <= pitch <= 81 for pitch in drums.notes.pitches.tolist())  # General MIDI kit keys
    assert np.median(bass.notes.pitches) < np.median(lead.notes.pitches) - 7  # the bass sits under the melody
    assert "no notes" not in window.panel.status.text()
