"""The Qt-free document layer: edits, the note table, the viewport, settings and autosave."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from meloformer_app.document import edits
from meloformer_app.document.edits import NoteRef
from meloformer_app.document.export import export_song
from meloformer_app.settings import Autosave, Settings
from meloformer_app.view.bars import BarMap
from meloformer_app.view.geometry import Viewport
from meloformer_app.view.notes import NoteTable
from meloformer_core.midi_io import read_midi
from meloformer_core.music import Note, Song, TextEvent, TimeSignature, Track
from tests.conftest import FIXTURES

SONG = Song(tracks=(Track("a", 0, False, [(0, 60, 480, 80), (480, 62, 480, 80), (960, 64, 240, 90)]),
                    Track("b", 33, False, [(0, 36, 960, 100)])))  # fmt: skip


def refs(track: int, *indices: int) -> list[NoteRef]:
    return [NoteRef(track, SONG.tracks[track].notes[i]) for i in indices]


def test_move_resize_delete_and_paste() -> None:
    moved, where = edits.move_notes(SONG, refs(0, 0, 1), 120, 2)
    assert [tuple(n) for n in moved.tracks[0].notes] == [(120, 62, 480, 80), (600, 64, 480, 80), (960, 64, 240, 90)]
    assert moved.tracks[1] == SONG.tracks[1] and {r.note for r in where} == {(120, 62, 480, 80), (600, 64, 480, 80)}
    # a group stops at the edges and keeps its shape
    clamped, _ = edits.move_notes(SONG, refs(0, 0, 1), -1000, 100)
    assert [n.start for n in clamped.tracks[0].notes][:2] == [0, 480]
    assert max(n.pitch for n in clamped.tracks[0].notes) == 127
    resized, _ = edits.resize_notes(SONG, refs(0, 2), -1000)
    assert resized.tracks[0].notes[2].duration == 1
    assert len(edits.delete_notes(SONG, refs(0, 1)).tracks[0].notes) == 2
    pasted, new = edits.paste_notes(SONG, refs(0, 0, 1), 1920)
    assert [r.note.start for r in new] == [1920, 2400] and len(pasted.tracks[0].notes) == 5
    into_b, new = edits.paste_notes(SONG, refs(0, 0), 0, track=1)
    assert new[0].track == 1 and len(into_b.tracks[1].notes) == 2


def test_quantize_and_velocity() -> None:
    song = Song(tracks=(Track("x", 0, False, [(10, 60, 100, 80), (235, 61, 250, 80)]),))
    snapped, _ = edits.quantize_notes(song, [NoteRef(0, n) for n in song.tracks[0].notes], 120)
    assert [(n.start, n.duration) for n in snapped.tracks[0].notes] == [(0, 120), (240, 240)]
    # half strength: half the way; swing 100 %: every second line a third of a step later
    half, _ = edits.quantize_notes(song, [NoteRef(0, n) for n in song.tracks[0].notes], 120, False, strength=0.5)
    assert [n.start for n in half.tracks[0].notes] == [5, 238]
    swung, _ = edits.quantize_notes(song, [NoteRef(0, n) for n in song.tracks[0].notes], 240, True, swing=1.0)
    assert [(n.start, n.duration) for n in swung.tracks[0].notes] == [(0, 240), (320, 240)]
    loud, _ = edits.set_velocity(song, [NoteRef(0, song.tracks[0].notes[0])], 127)
    assert loud.tracks[0].notes[0].velocity == 127


@given(st.integers(-2000, 2000), st.integers(-40, 40))
def test_a_move_and_its_inverse_give_the_song_back(ticks: int, semitones: int) -> None:
    there, moved = edits.move_notes(SONG, refs(0, 1, 2), ticks, semitones)
    shift_t = moved[0].note.start - SONG.tracks[0].notes[1].start
    shift_p = moved[0].note.pitch - SONG.tracks[0].notes[1].pitch
    back, _ = edits.move_notes(there, moved, -shift_t, -shift_p)
    assert back == SONG


def test_tracks_add_move_remove() -> None:
    song = edits.add_track(SONG, Track("c", 40))
    assert [t.name for t in edits.move_track(song, 2, 0).tracks] == ["c", "a", "b"]
    assert edits.track_order_after_move(3, 2, 0) == [2, 0, 1]
    assert [t.name for t in edits.remove_track(song, 0).tracks] == ["b", "c"]
    assert edits.update_track(song, 1, program=5).tracks[1].program == 5


def test_note_table_hits_and_rectangles() -> None:
    table = NoteTable.of(SONG)
    assert len(table) == 4
    assert table.ref(table.hit(500, 62, None)).note == (480, 62, 480, 80)
    assert table.hit(500, 62, {1}) is None and table.hit(2000, 62, None) is None
    assert {r.note.pitch for r in table.in_rect(0, 600, 60, 62, None)} == {60, 62}
    mask = table.mask_of(frozenset(refs(1, 0)))
    assert mask.tolist() == [False, False, False, True]


def test_grid_follows_zoom_and_pitch_rows_map_back() -> None:
    view = Viewport(resolution=480, px_per_tick=0.05)
    coarse = view.grid_ticks()
    view.px_per_tick = 1.0
    fine = view.grid_ticks()
    assert coarse > fine and coarse % fine == 0
    view.triplets = True
    assert view.grid_ticks() % 160 in (0, 80, 40, 20) and 480 % view.grid_ticks() == 0
    view.grid_choice = "1/8T"
    assert view.grid_ticks() == 160
    for pitch in (0, 37, 60, 127):
        assert view.pitch_at(view.y(pitch) + 1) == pitch and view.pitch_at(view.y(pitch) + view.key_height - 1) == pitch
    assert view.tick_at(view.x(1234)) == 1234


def test_export_parts(tmp_path: Path) -> None:
    song = read_midi(FIXTURES / "drum_groove.mid")
    whole = export_song(song, tmp_path / "all.mid")
    assert read_midi(whole[0]).note_count == song.note_count
    files = export_song(song, tmp_path / "split.mid", per_track=True)
    assert len(files) == len(song.tracks) and all(f.exists() for f in files)
    assert sum(read_midi(f).note_count for f in files) == song.note_count
    bar = song.bar_starts()[1]
    part = read_midi(export_song(song, tmp_path / "bar2.mid", [0], (bar, 2 * bar))[0])
    expected = [n for n in song.tracks[0].notes if bar <= n.start < 2 * bar]
    assert part.note_count == len(expected) and part.tracks[0].notes[0].start == expected[0].start - bar


def test_keep_ranges_moves_the_maps() -> None:
    song = Song(time_signatures=(TimeSignature(0, 4, 4), TimeSignature(1920, 3, 4)), tracks=SONG.tracks)
    song = song.replace(texts=(TextEvent(0, "marker", "Intro"), TextEvent(1920, "marker", "Verse"),
                               TextEvent(2400, "lyric", "la"), TextEvent(3360, "marker", "Chorus")))  # fmt: skip
    part = edits.keep_ranges(song, None, 1920, 3360)
    assert [tuple(ts) for ts in part.time_signatures] == [(0, 3, 4)]
    assert part.texts == (TextEvent(0, "marker", "Verse"), TextEvent(480, "lyric", "la"))


@given(
    st.sampled_from([1, 3, 96, 480]),
    st.lists(st.tuples(st.integers(0, 5000), st.integers(1, 13), st.integers(0, 7)), max_size=5),
    st.floats(-100, 6000),
    st.floats(0, 6000),
)
def test_the_bars_in_view_are_the_songs_bars(resolution: int, metres: list, first: float, last: float) -> None:
    """`BarMap` jumps to the view; `Song.bar_starts` walks from tick 0: the same bars, numbered alike."""
    song = Song(resolution=resolution, time_signatures=[TimeSignature(t, n, 2**p) for t, n, p in metres])
    first, last = min(first, last), max(first, last)
    expected = [(number, tick) for number, tick in enumerate(song.bar_starts(int(last) + 1)) if first <= tick <= last]
    bars = BarMap(song)
    assert bars.between(first, last) == expected
    # thinned for drawing: only the song's bars, at most one per 50 ticks of each metre run,
    # and every metre change in view keeps its bar
    # the bar that holds a tick, found directly, as the walk from tick 0 finds it
    walked = song.bar_starts(int(last))
    assert bars.bar_at(int(last)) == (len(walked) - 1, walked[-1])
    thinned = bars.between(first, last, 50)
    changes = {ts.tick for ts in song.time_signatures if first <= ts.tick <= last}
    assert set(thinned) <= set(expected) and changes <= {tick for _n, tick in thinned}
    assert len(thinned) <= (last - first) / 49 + 1 + len(changes)


def test_bars_far_into_a_song_are_found_without_walking_to_them() -> None:
    song = Song(resolution=1, time_signatures=[TimeSignature(0, 1, 128)])  # a bar every 1/32 tick
    end = 2**31 - 1
    assert BarMap(song).between(end - 2, end) == [(32 * (end - 2) + k, end - 2 + k // 32) for k in range(96)]
    assert BarMap(song).bar_ticks_at(end) == Fraction(1, 32)


def test_settings_survive_a_broken_file_and_round_trip(user_dirs: Path) -> None:
    settings = Settings.load()
    settings.temperature = 0.7
    settings.add_recent(FIXTURES / "jig_6_8.mid")
    settings.save()
    again = Settings.load()
    assert again.temperature == 0.7 and again.recent_files[0].endswith("jig_6_8.mid")
    # edited by hand: a whole number for a decimal setting is taken, a wrong type is ignored
    (user_dirs / "config" / "settings.json").write_text('{"temperature": 1, "top_p": true, "bars": 8.5, "seed": 3}')
    by_hand = Settings.load()
    assert (by_hand.temperature, by_hand.top_p, by_hand.bars, by_hand.seed) == (1.0, Settings().top_p, 4, 3)
    assert isinstance(by_hand.temperature, float)
    # out of a sampling control's range (the same ranges as the panel and the command line): the default
    (user_dirs / "config" / "settings.json").write_text('{"temperature": 9.5, "top_k": -3, "min_p": 0.2}')
    by_hand = Settings.load()
    assert (by_hand.temperature, by_hand.top_k, by_hand.min_p) == (Settings().temperature, Settings().top_k, 0.2)
    (user_dirs / "config" / "settings.json").write_text('{"variations": 3}')  # as 0.1.0 wrote it
    assert Settings.load().takes == 3
    (user_dirs / "config" / "settings.json").write_text("{not json")
    assert Settings.load() == Settings()
    assert (user_dirs / "config" / "settings.json.broken").exists()


def test_autosave_is_found_after_a_crash(user_dirs: Path) -> None:
    autosave = Autosave()
    assert autosave.pending() is None
    autosave.write(b"MThd", Path("/music/song.mid"))
    assert Autosave().pending() == (autosave.midi, Path("/music/song.mid"))
    autosave.clear()
    assert autosave.pending() is None


def test_big_edits_stay_fast_enough_to_be_interactive() -> None:
    """Deleting from a 20,000-note track is vectorised (this once took minutes)."""
    rng = np.random.default_rng(0)
    data = np.column_stack([rng.integers(0, 10**6, 20_000), rng.integers(0, 128, 20_000),
                            rng.integers(1, 500, 20_000), rng.integers(1, 128, 20_000)])  # fmt: skip
    song = Song(tracks=(Track("big", 0, False, data),))
    chosen = [NoteRef(0, Note(*row)) for row in song.tracks[0].notes.array[::10].tolist()]
    smaller = edits.delete_notes(song, chosen)
    assert len(smaller.tracks[0].notes) == 18_000


def test_duplicate_lands_in_the_bars_after_and_humanize_stays_in_bounds() -> None:
    song = Song(tracks=(Track("x", 0, False, [(480, 60, 240, 80), (2400, 62, 240, 127), (0, 64, 100, 1)]),))
    refs = [NoteRef(0, n) for n in song.tracks[0].notes]
    doubled, copies = edits.duplicate_notes(song, refs[1:])  # onsets in bars 1 and 2 (4/4 at 480): two bars later
    assert sorted(r.note.start for r in copies) == [480 + 2 * 1920, 2400 + 2 * 1920]
    assert len(doubled.tracks[0].notes) == 5
    loose, moved = edits.humanize_notes(song, refs, timing=30, velocity=20, seed=4)
    assert loose == edits.humanize_notes(song, refs, timing=30, velocity=20, seed=4)[0]  # the same seed, the same
    for ref in moved:
        assert ref.note.start >= 0 and 1 <= ref.note.velocity <= 127
    starts = sorted(r.note.start for r in moved)
    assert all(abs(a - b) <= 30 for a, b in zip(starts, sorted(n.start for n in song.tracks[0].notes), strict=True))
