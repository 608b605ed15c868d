"""Write the band example, `resources/examples/band_song.mid`: eight bars of pop-rock in C major.

Lead, electric piano, guitar, bass and drums play C–G–Am–F twice at 112 quarters per minute
(the last bar turns to G, a half cadence that asks to be continued). The song is original
music by the MeloFormer project, shipped under the project's licence (MIT). The script is
deterministic: run it again and the file comes out the same.

    python scripts/make_band_example.py [OUT.mid]
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from meloformer_core.midi_io import write_midi
from meloformer_core.music import KeySignature, Note, Song, TempoChange, TimeSignature, Track

ROOT = Path(__file__).resolve().parent.parent
TPQ = 480  # ticks per quarter note
BAR = 4 * TPQ
QPM = 112

# Chord name → (bass root, electric-piano voicing). The guitar plays root and fifth an
# octave above the bass.
CHORDS = {
    "C": (36, (55, 60, 64)),
    "G": (31, (55, 59, 62)),
    "Am": (33, (57, 60, 64)),
    "F": (29, (57, 60, 65)),
}
# Per bar: (beat, chord) from that beat on.
PROGRESSION = [[(0, "C")], [(0, "G")], [(0, "Am")], [(0, "F")]] * 2
PROGRESSION[-1] = [(0, "F"), (2, "G")]

# Per bar: (beat, pitch name, length in beats); four two-bar phrases, the second half higher.
MELODY = [
    [(0, "G4", 0.5), (0.5, "C5", 0.5), (1, "E5", 1), (2, "D5", 0.5), (2.5, "C5", 0.5), (3, "E5", 1)],
    [(0, "D5", 1.5), (1.5, "B4", 0.5), (2, "G4", 1.5)],
    [(0.5, "A4", 0.5), (1, "C5", 0.5), (1.5, "E5", 1), (2.5, "D5", 0.5), (3, "C5", 1)],
    [(0, "A4", 1.5), (1.5, "C5", 0.5), (2, "A4", 1), (3.5, "G4", 0.5)],
    [(0, "C5", 0.5), (0.5, "E5", 0.5), (1, "G5", 1.5), (2.5, "E5", 0.5), (3, "G5", 0.5), (3.5, "A5", 0.5)],
    [(0, "G5", 1), (1, "F5", 0.5), (1.5, "D5", 0.5), (2, "B4", 1.5)],
    [(0, "E5", 1), (1, "A5", 1), (2, "G5", 0.5), (2.5, "E5", 0.5), (3, "C5", 1)],
    [(0, "C5", 1), (1, "A4", 0.5), (1.5, "C5", 0.5), (2, "D5", 2)],
]

KICK, SNARE, CLOSED_HAT, OPEN_HAT, CRASH = 36, 38, 42, 46, 49
FILLS = {3: (SNARE, 48, 47, 45), 7: (50, 48, 47, 45)}  # bar index → four sixteenths on beat 4

_rng = random.Random(7)


def pitch(name: str) -> int:
    """MIDI pitch of a natural note name such as "C4" (= 60)."""
    return 12 * (int(name[1:]) + 1) + "C D EF G A B".index(name[0])


def note(bar: int, beat: float, key: int, beats: float, velocity: int) -> Note:
    """A note at ``beat`` (from 0) of ``bar``; velocity nudged by a few steps, as a player would."""
    velocity = max(1, min(127, velocity + _rng.randint(-4, 4)))
    return Note(bar * BAR + round(beat * TPQ), key, max(1, round(beats * TPQ)), velocity)


def chord_at(bar: int, beat: float) -> str:
    return [name for start, name in PROGRESSION[bar] if start <= beat][-1]


def chorus(bar: int) -> bool:
    return bar >= 4


def lead() -> list[Note]:
    notes = []
    for bar, phrase in enumerate(MELODY):
        for beat, name, beats in phrase:
            accent = 10 if beat == 0 else 4 if beat % 1 == 0 else 0
            notes.append(note(bar, beat, pitch(name), beats - 0.08, 84 + accent + 4 * chorus(bar)))
    return notes


def electric_piano() -> list[Note]:
    hits = [(0, 1.0, 80), (1.5, 0.5, 66), (2.5, 1.0, 74), (3.5, 0.5, 62)]  # a pushed, syncopated comp
    notes = []
    for bar in range(len(PROGRESSION)):
        for beat, beats, velocity in hits:
            for key in CHORDS[chord_at(bar, beat)][1]:
                notes.append(note(bar, beat, key, beats - 0.1, velocity + 6 * chorus(bar)))
    return notes


def guitar() -> list[Note]:
    notes = []
    for bar in range(len(PROGRESSION)):
        for step in range(8):  # palm-muted eighth-note power chords, louder on the beats
            beat = step / 2
            root = CHORDS[chord_at(bar, beat)][0] + 12
            velocity = (86 if step % 2 == 0 else 70) - 14 * (not chorus(bar))
            notes += [note(bar, beat, root, 0.4, velocity), note(bar, beat, root + 7, 0.4, velocity - 6)]
    return notes


def bass() -> list[Note]:
    notes = []
    for bar in range(len(PROGRESSION)):
        first, second = (CHORDS[chord_at(bar, beat)][0] for beat in (0, 2))
        following = CHORDS[chord_at((bar + 1) % len(PROGRESSION), 0)][0]
        notes += [
            note(bar, 0, first, 1.25, 100),  # root, with the kick
            note(bar, 1.5, first, 0.45, 80),  # with the kick
            note(bar, 2, second, 0.45, 94),  # with the kick
            note(bar, 2.5, second + 7, 0.9, 84),  # the fifth
            note(bar, 3.5, following - 1, 0.45, 78),  # chromatic approach to the next root
        ]
    return notes


def drums() -> list[Note]:
    notes = []
    for bar in range(len(PROGRESSION)):
        fill = FILLS.get(bar)
        kicks = [0, 1.5, 2, 2.5] if chorus(bar) else [0, 1.5, 2]
        notes += [note(bar, beat, KICK, 0.25, 104 if beat == 0 else 90) for beat in kicks]
        notes.append(note(bar, 1, SNARE, 0.25, 104))
        if bar in (0, 4):
            notes.append(note(bar, 0, CRASH, 2, 108))
        for step in range(6 if fill else 8):
            beat = step / 2
            if beat == 0 and bar in (0, 4):
                continue  # the crash takes the first hat
            hat = OPEN_HAT if chorus(bar) and beat == 3.5 else CLOSED_HAT
            notes.append(note(bar, beat, hat, 0.25 if hat == CLOSED_HAT else 0.5, 86 if step % 2 == 0 else 62))
        if fill:
            notes += [note(bar, 3 + i / 4, key, 0.25, 84 + 7 * i) for i, key in enumerate(fill)]
        else:  # backbeat, then a ghost note leading into the next bar
            notes += [note(bar, 3, SNARE, 0.25, 108), note(bar, 3.75, SNARE, 0.25, 38)]
    return notes


def band_song() -> Song:
    return Song(
        resolution=TPQ,
        tempos=(TempoChange(0, round(60_000_000 / QPM)),),
        time_signatures=(TimeSignature(0, 4, 4),),
        key_signatures=(KeySignature(0, 0, False),),
        tracks=(
            Track("Lead", 80, notes=lead()),
            Track("Electric Piano", 4, notes=electric_piano()),
            Track("Guitar", 29, notes=guitar()),
            Track("Bass", 33, notes=bass()),
            Track("Drums", 0, is_drum=True, notes=drums()),
        ),
    )


def main(out: Path) -> int:
    write_midi(band_song(), out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "resources" / "examples" / "band_song.mid"))
