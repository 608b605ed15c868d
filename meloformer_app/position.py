"""The transport's readout: where the playhead is (bar, beat, time) and the tempo, metre and
key in force there, in the words a musician reads off a DAW's transport bar."""

from __future__ import annotations

from meloformer_app.view.bars import BarMap
from meloformer_core.music import KeySignature, Song, TimeSignature

MAJOR_KEYS = ("C♭", "G♭", "D♭", "A♭", "E♭", "B♭", "F", "C", "G", "D", "A", "E", "B", "F♯", "C♯")
MINOR_KEYS = ("A♭", "E♭", "B♭", "F", "C", "G", "D", "A", "E", "B", "F♯", "C♯", "G♯", "D♯", "A♯")


def position_text(song: Song, tick: int, bars: BarMap | None = None) -> str:
    """``bar.beat`` (both from 1, beats as the metre counts them) and the time, e.g. ``3.2  0:04.5``
    (``bars``: the song's `BarMap`, which finds the bar without walking the song)."""
    bar, start = (bars or BarMap(song)).bar_at(max(tick, 0))
    beat = int((tick - start) // song.time_signature_at(start).beat_ticks(song.resolution))
    seconds = float(song.seconds_at([max(tick, 0)])[0])
    return f"{bar + 1}.{beat + 1}  {int(seconds // 60)}:{seconds % 60:04.1f}"


def conductor_at(song: Song, tick: int) -> tuple[float, TimeSignature, KeySignature | None]:
    """The tempo (quarters a minute), metre and key signature (None: none) in force at ``tick``."""
    tempos = [t for t in song.tempos if t.tick <= tick]
    keys = [k for k in song.key_signatures if k.tick <= tick]
    return (tempos[-1].qpm if tempos else 120.0), song.time_signature_at(tick), (keys[-1] if keys else None)


def key_name(key: KeySignature) -> str:
    return f"{(MINOR_KEYS if key.minor else MAJOR_KEYS)[key.sharps + 7]} {'minor' if key.minor else 'major'}"


def conductor_text(song: Song, tick: int) -> str:
    """The tempo, metre and key in force at ``tick``, e.g. ``112 bpm  4/4  C major``."""
    qpm, metre, key = conductor_at(song, tick)
    named = f"  {key_name(key)}" if key is not None else ""
    return f"{round(qpm, 1):g} bpm  {metre.numerator}/{metre.denominator}{named}"
