"""The app on the built-in synth: the default output, playing (the audio follows what the
player sent), loop, metronome, mute, note preview, volume, no audio device, audio export.

The synth plays into a `ClockSink` that keeps its blocks (no sound card needed); every wait
polls for what must happen, nothing asserts how long it took.
"""

from __future__ import annotations

import itertools
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from meloformer_core.midi_io import read_midi, write_midi
from meloformer_core.music import Note, NoteArray, Song, Track
from meloformer_core.playback.audio import AudioDeviceError, ClockSink
from meloformer_core.playback.soundfont import default_soundfont_path
from meloformer_core.playback.synth import BLOCK_FRAMES, SAMPLE_RATE, TAIL_SECONDS, SynthOutput
from tests.conftest import FIXTURES

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(default_soundfont_path() is None, reason="no General MIDI SoundFont (pretty_midi brings one)"),
]

WAIT_MS = 30_000
CLAVES = 75  # a short, dry hit: silence between hits a quarter of a second apart


@pytest.fixture
def sink(monkeypatch: pytest.MonkeyPatch) -> ClockSink:
    """The built-in synth plays into this recording clock instead of the sound card."""
    import meloformer_app.transport as transport

    recording = ClockSink(record=True)

    def open_synth_output() -> SynthOutput:
        output = SynthOutput(recording)
        output.log = []  # (arrival, frame, note-on) of every note-on it plays
        return output

    monkeypatch.setattr(transport, "open_synth_output", open_synth_output)
    return recording


def synth_of(window) -> SynthOutput:
    output = window.transport.output
    assert isinstance(output, SynthOutput)
    return output


def claves_song(tmp_path: Path, hits: int = 8) -> Path:
    """Claves on eighths at 120 bpm, each hit a 16th long, keys rising so their order shows."""
    notes = NoteArray([Note(i * 240, CLAVES, 60, 100) for i in range(hits)])
    song = Song(resolution=480, tracks=(Track("Claves", 0, True, notes),))
    path = tmp_path / "claves.mid"
    write_midi(song, path)
    return path


def onsets(audio: np.ndarray, quiet_frames: int = 441) -> list[int]:
    """Frames where sound starts after at least ``quiet_frames`` of silence."""
    loud = np.flatnonzero(np.abs(audio[:, 0]) > 1e-4)
    if not len(loud):
        return []
    return [int(loud[0])] + [int(b) for a, b in itertools.pairwise(loud) if b - a > quiet_frames]


def test_the_built_in_synth_is_listed_first_and_played_when_no_port_is_chosen(window) -> None:
    from meloformer_app.transport import BUILTIN

    window.refresh_midi_outputs()
    assert window.port_box.itemData(0) == BUILTIN and window.port_box.itemText(0) == "Built-in synth"
    assert window.port_box.currentIndex() == 0 and window.transport.builtin


def test_playing_on_the_built_in_synth_sounds_each_note_where_the_player_sent_it(window, qtbot, sink, tmp_path) -> None:
    assert window.open_file(claves_song(tmp_path))
    window.play_from(0)
    assert window.transport.playing and window.dialogs == []
    output = synth_of(window)
    qtbot.waitUntil(lambda: not window.transport.playing, timeout=WAIT_MS)
    last = max(frame for _, frame, _ in output.log) if output.log else 0
    qtbot.waitUntil(lambda: len(sink.blocks) * BLOCK_FRAMES > last + SAMPLE_RATE // 5, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: output.synth.active_voices == 0, timeout=WAIT_MS)  # nothing left sounding
    window.transport.close_output()
    song = window.editor.document.song
    assert [m[1] for _, _, m in output.log] == song.tracks[0].notes.pitches.tolist()  # every note, in order
    heard = onsets(sink.audio())
    # each note sounds within one buffer of where the player's message put it in the stream
    sent = [sink.frame_of(arrived) for arrived, _, _ in output.log]
    assert len(heard) == len(sent), (heard, sent)
    assert all(abs(h - s) <= BLOCK_FRAMES for h, s in zip(heard, sent, strict=True)), (heard, sent)


def test_loop_metronome_and_mute_work_on_the_built_in_synth(window, qtbot, sink) -> None:
    window.open_file(FIXTURES / "bach_chorale.mid")
    song = window.editor.document.song
    first_bar = song.bar_starts()[1]
    in_bar = [int(n.pitch) for t in song.tracks for n in t.notes if n.start < first_bar]
    window.editor.select(window.roll.state.table.in_rect(0, first_bar - 1, 0, 127, None))
    window.actions["loop"].setChecked(True)
    window.actions["metronome"].setChecked(True)
    window.play_from(0)
    output = synth_of(window)
    notes = lambda: [m for _, _, m in output.log if m[0] & 0x0F != 9]  # noqa: E731
    clicks = lambda: [m for _, _, m in output.log if m[0] & 0x0F == 9]  # noqa: E731
    qtbot.waitUntil(lambda: len(notes()) > len(in_bar) + 2, timeout=WAIT_MS)  # round the bar at least once
    assert {m[1] for m in clicks()} <= {76, 77} and clicks()  # the metronome's wood blocks
    assert sorted(m[1] for m in notes()[: len(in_bar)]) == sorted(in_bar)
    window.editor.set_view(0, muted=True)  # mute the soprano while it plays
    muted_at = time.monotonic()
    after_mute = lambda: [m for arrived, _, m in output.log if arrived > muted_at]  # noqa: E731
    qtbot.waitUntil(lambda: len(after_mute()) > 6, timeout=WAIT_MS)
    assert window.transport.playing
    assert all(m[0] & 0x0F != 0 for m in after_mute())  # channel 1 is the soprano's
    window.actions["play"].trigger()  # Space: stop
    assert not window.transport.playing
    qtbot.waitUntil(lambda: output.synth.active_voices == 0, timeout=WAIT_MS)


def test_clicking_a_note_previews_it_on_the_built_in_synth(window, qtbot, sink) -> None:
    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtTest import QTest

    window.open_file(FIXTURES / "jig_6_8.mid")
    note = window.editor.document.song.tracks[0].notes[0]
    vp = window.roll.state.viewport
    at = QPoint(round(vp.x(note.start) + 3), round(vp.y(note.pitch) + vp.key_height / 2))
    QTest.mouseClick(window.roll.canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at)
    output = synth_of(window)
    qtbot.waitUntil(lambda: bool(output.log), timeout=WAIT_MS)
    assert [m[1:] for _, _, m in output.log] == [(note.pitch, note.velocity)]
    qtbot.waitUntil(lambda: output.synth.active_voices == 0, timeout=WAIT_MS)  # its note-off came
    assert np.abs(sink.audio()).max() > 0.01


def test_the_volume_control_sets_the_synth_and_is_remembered(window, qtbot, sink) -> None:
    window.open_file(FIXTURES / "jig_6_8.mid")
    window.play_from(0)
    window.volume_slider.setValue(30)
    assert synth_of(window).volume == pytest.approx(0.3)
    window.transport.stop()
    assert window.settings.volume == pytest.approx(0.3)


def test_without_an_audio_device_the_status_bar_says_so_and_playing_still_works(window, qtbot, monkeypatch) -> None:
    import meloformer_core.playback.audio as audio

    def no_device(*args, **kwargs):
        raise AudioDeviceError("no audio device (failed to init device, -401)")

    monkeypatch.setattr(audio, "DeviceSink", no_device)
    window.refresh_midi_outputs()
    message = window.statusBar().currentMessage()
    assert message == "No audio device (failed to init device, -401): the built-in synth is silent"
    assert window.audio_label.text() == "No audio device"
    window.open_file(FIXTURES / "bach_chorale.mid")
    window.play_from(0)
    assert window.transport.playing and window.dialogs == []
    qtbot.waitUntil(lambda: bool(window.roll.state.playhead and window.roll.state.playhead > 0), timeout=WAIT_MS)
    window.transport.stop()
    assert not window.transport.playing and window.dialogs == []


def test_a_soundfont_that_cannot_be_read_is_one_dialog_and_changes_nothing(window, tmp_path) -> None:
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(b"not a soundfont")
    assert not window.use_soundfont(str(bad))
    assert window.dialogs and "bad.sf2" in window.dialogs[-1][1] and window.settings.soundfont == ""
    assert window.use_soundfont(str(default_soundfont_path()))
    assert window.settings.soundfont == str(default_soundfont_path())


def wav_frames(path: Path) -> int:
    with wave.open(str(path)) as audio:
        assert audio.getnchannels() == 2 and audio.getframerate() == SAMPLE_RATE
        return audio.getnframes()


def test_export_audio_renders_the_song_or_the_generated_bars_with_progress(window, qtbot, tmp_path) -> None:
    from meloformer_app.document.model import State

    window.open_file(FIXTURES / "bach_chorale.mid")
    song = window.editor.document.song
    export = window.export_audio(tmp_path / "all.wav")
    qtbot.waitUntil(lambda: export.done, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: "Exported" in window.statusBar().currentMessage(), timeout=WAIT_MS)
    music = float(song.seconds_at([song.end_tick])[0])
    assert wav_frames(tmp_path / "all.wav") == round((music + TAIL_SECONDS) * SAMPLE_RATE)
    assert window.dialogs == []
    # the generated bars of the selected track (as if the last two bars had just been generated)
    bars = song.bar_lines()
    state = window.editor.document.state
    window.editor.apply(State(state.song, state.views, (bars[-3], bars[-1])), "generated")
    window.editor.current_track = 3
    export = window.export_audio(tmp_path / "new.wav", "chosen", "generated")
    qtbot.waitUntil(lambda: export.done, timeout=WAIT_MS)
    seconds = float(np.diff(song.seconds_at([bars[-3], bars[-1]]))[0])
    assert wav_frames(tmp_path / "new.wav") == round((seconds + TAIL_SECONDS) * SAMPLE_RATE)
    assert export.tracks == [3]
    assert read_midi(FIXTURES / "bach_chorale.mid").note_count == song.note_count  # nothing else changed
