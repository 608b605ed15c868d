"""Continue, arrange and regenerate in the window: streamed bars, one undo step, cancel, takes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

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
    from meloformer_core.model.sampling_config import RECOMMENDED

    window = loaded
    assert window.panel.guidance.value() == RECOMMENDED.prompt_guidance
    run(window, qtbot, "continue")
    guided = window.editor.document.song
    window.editor.undo_stack.undo()
    window.panel.guidance.setValue(1.0)
    assert window.panel.sampling().prompt_guidance == 1.0
    run(window, qtbot, "continue")
    assert window.editor.document.song != guided  # same seed, other guidance: other music
    settings = Settings()
    window.panel.store(settings)
    assert settings.prompt_guidance == 1.0


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


def test_variations_are_auditioned_then_one_is_kept(loaded, qtbot) -> None:
    window = loaded
    before = window.editor.document.song
    window.panel.bars.setValue(2)
    window.panel.variations.setValue(3)
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
    window.panel.variations.setValue(0)
    assert window.panel.variations.text() == "Auto"
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


def test_regenerate_needs_a_selection_then_keeps_the_rest(loaded, qtbot) -> None:
    window = loaded
    run(window, qtbot, "regenerate")
    assert window.dialogs[-1][0] == "Select some bars"
    song = window.editor.document.song
    bar = song.bar_starts()
    window.editor.set_current_track(1)
    window.editor.select([r for r in window.roll.state.table.in_rect(bar[1], bar[2] - 1, 0, 127, {1})])
    run(window, qtbot, "regenerate")
    after = window.editor.document.song
    assert [after.tracks[i] for i in (0, 2, 3)] == [song.tracks[i] for i in (0, 2, 3)]
    outside = [n for n in song.tracks[1].notes if not bar[1] <= n.start < bar[2]]
    assert [n for n in after.tracks[1].notes if not bar[1] <= n.start < bar[2]] == outside


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
    window.panel.variations.setValue(2)
    run(window, qtbot, "continue")
    assert window.panel.takes.count() == 2
    window.open_file(FIXTURES / "jig_6_8.mid", confirm=False)
    opened = window.editor.document.song
    window.panel.keep_button.click()
    assert window.editor.document.song is opened and window.editor.undo_stack.count() == 0
    assert window.panel.takes.count() == 0 and "dropped" in window.panel.status.text()
