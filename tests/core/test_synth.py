"""The built-in synth: what it plays (offline and live, one engine), that Stop leaves
nothing sounding, and `meloformer render`.

Audio is judged by measures, never by ear or by timing: RMS where notes play and after
they end, the strongest partial of an A4 (FFT), where a drum's energy lies.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from meloformer_core.midi_io import read_midi
from meloformer_core.music import Note, NoteArray, Song, Track
from meloformer_core.playback.player import Player, schedule
from meloformer_core.playback.soundfont import SoundFontError, default_soundfont_path, load_soundfont, read_soundfont
from meloformer_core.playback.synth import (
    SAMPLE_RATE,
    TAIL_SECONDS,
    Synth,
    SynthOutput,
    render_events,
    render_song,
)
from tests.conftest import ROOT

CHORALE = ROOT / "resources" / "examples" / "bach_chorale.mid"
RATE = SAMPLE_RATE


@pytest.fixture(scope="module")
def soundfont():
    if default_soundfont_path() is None:
        pytest.skip("no General MIDI SoundFont (pretty_midi, from the app extra, brings TimGM6mb)")
    return load_soundfont()


def rms_db(audio: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(np.square(audio, dtype=np.float64))) + 1e-12)


def one_note(soundfont, channel: int, key: int, program: int = 0, seconds: float = 1.0) -> np.ndarray:
    """A single note held ``seconds`` and its release, left channel."""
    events = [(0, (0xC0 | channel, program)), (0, (0x90 | channel, key, 100)),
              (round(seconds * RATE), (0x80 | channel, key, 0))]  # fmt: skip
    return render_events(events, soundfont, round((seconds + 1) * RATE))[:, 0]


def band_share(audio: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / RATE)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum() / spectrum.sum())


def test_the_chorale_sounds_where_its_notes_play_and_is_silent_after(soundfont) -> None:
    song = read_midi(CHORALE)
    audio = render_song(song, soundfont)
    music_end = float(song.seconds_at([song.end_tick])[0])
    assert len(audio) == round((music_end + TAIL_SECONDS) * RATE)
    assert np.abs(audio).max() <= 1.0
    # every 100 ms in which some note sounds has sound in it
    notes = np.concatenate([t.notes.array for t in song.tracks])
    on_s, off_s = song.seconds_at(notes[:, 0]), song.seconds_at(notes[:, 0] + notes[:, 2])
    for start in np.arange(0.0, music_end - 0.1, 0.1):
        if ((on_s < start + 0.1) & (off_s > start)).any():
            assert rms_db(audio[round(start * RATE) : round((start + 0.1) * RATE)]) > -45, start
    # the release dies away: silence from 1.2 s after the last note ends
    assert rms_db(audio[round((off_s.max() + 1.2) * RATE) :]) < -80


@pytest.mark.parametrize("program", [0, 40, 73])  # piano, violin, flute
def test_an_a4_has_its_strongest_partial_at_440_hz(soundfont, program: int) -> None:
    audio = one_note(soundfont, 0, 69, program)[:RATE]  # the held second
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    strongest = np.fft.rfftfreq(len(audio), 1 / RATE)[spectrum.argmax()]
    assert abs(strongest - 440.0) <= 4.4, strongest


def test_drums_play_the_kit_on_channel_10(soundfont) -> None:
    kick, hihat = one_note(soundfont, 9, 36, seconds=0.3), one_note(soundfont, 9, 42, seconds=0.3)
    piano = one_note(soundfont, 0, 60, seconds=0.3)
    piano_at_hihat_key = one_note(soundfont, 0, 42, seconds=0.3)
    assert rms_db(kick) > -50 and rms_db(hihat) > -60
    # a kick's energy is low, a hi-hat's high, a piano's middle C in between
    assert band_share(kick, 20, 150) > 0.3 > band_share(piano, 20, 150)
    assert band_share(hihat, 5000, 20000) > 0.5 > band_share(piano, 5000, 20000)
    # key 42 on channel 1 is a piano's F#2, not a hi-hat
    assert band_share(piano_at_hihat_key, 5000, 20000) < 0.05


def test_live_blocks_sound_like_the_offline_render(soundfont) -> None:
    """One engine: 512-frame blocks with each message at its frame (live) and the offline
    render differ only by float32 rounding inside a block, far below hearing."""
    song = read_midi(CHORALE)
    events = [(round(e.seconds * RATE), e.message) for e in schedule(song, None, 0, song.bar_lines()[2])]
    frames = events[-1][0] + RATE
    offline = render_events(events, soundfont, frames)
    synth, blocks, next_event = Synth(soundfont), [], 0
    while synth.frame < frames:
        size = min(512, frames - synth.frame)
        while next_event < len(events) and events[next_event][0] < synth.frame + size:
            frame, message = events[next_event]
            synth.handle(message, frame)  # each at its own frame inside the block
            next_event += 1
        blocks.append(synth.render(size))
    live = np.concatenate(blocks)
    fade = round(0.05 * RATE)  # the offline render fades its very end
    assert rms_db(live) > -40
    assert rms_db(live[:-fade] - offline[:-fade]) < rms_db(offline) - 80


def test_stop_leaves_nothing_sounding(soundfont) -> None:
    """Strings (a looped sample) would sound for ever without their note-offs: the player's
    Stop must end every note it started, and the stream rendered after it falls silent."""
    strings = Track("Strings", 48, False, NoteArray([Note(0, 55, 480 * 40, 100), Note(0, 62, 480 * 40, 100),
                                                     Note(480, 67, 480 * 40, 100)]))  # fmt: skip
    song = Song(resolution=480, tracks=(strings,))
    output = SynthOutput()  # no sink: this test renders the stream itself
    output.set_soundfont(soundfont)
    player = Player(output.send, check=output.problem)
    try:
        player.play(song)
        deadline = time.monotonic() + 30
        while output.received < 4 and time.monotonic() < deadline:  # a program change and three note-ons
            threading.Event().wait(0.01)
        assert output.received >= 4
        sounding = np.concatenate([output.render(4410) for _ in range(5)])
        assert rms_db(sounding) > -40
        player.stop()  # returns once the note-offs are with the output
        after = np.concatenate([output.render(4410) for _ in range(40)])  # 4 s after Stop
    finally:
        player.close()
        output.close()
    assert rms_db(after[: RATE // 10]) > rms_db(after[-RATE:]) + 40  # it was sounding, then died away
    assert rms_db(after[-RATE:]) < -90
    assert output.synth.active_voices == 0


def test_messages_land_at_the_frame_they_arrived_for(soundfont) -> None:
    output = SynthOutput()
    output.set_soundfont(soundfont)
    output.log = []
    output.send([0x90, 60, 100])
    arrived = output._queue[0][0]
    output.render(512, block_end=arrived - 0.001)  # a block that ends before it arrived: not in it
    assert output.log == []
    output.render(512, block_end=arrived + 200 / RATE)  # arrived 200 frames before this block's end
    assert [frame for _, frame, _ in output.log] == [512 + 512 - 200]


def test_a_bad_soundfont_is_one_line_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00sfbkLIST\x04\x00\x00\x00INFO")
    with pytest.raises(SoundFontError, match=r"bad\.sf2") as raised:
        read_soundfont(bad)
    assert "\n" not in str(raised.value)
    with pytest.raises(SoundFontError, match=r"missing\.sf2"):
        load_soundfont(tmp_path / "missing.sf2")


# --- meloformer render ----------------------------------------------------------------------
def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meloformer_core.cli", *args], capture_output=True, text=True)


def wav_frames(path: Path) -> tuple[int, int, int]:
    with wave.open(str(path)) as audio:
        return audio.getnframes(), audio.getnchannels(), audio.getframerate()


def test_render_writes_a_wav_of_the_song_s_length(soundfont, tmp_path: Path) -> None:
    out = tmp_path / "chorale.wav"
    result = run("render", str(CHORALE), "-o", str(out), "--soundfont", str(soundfont.path))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    song = read_midi(CHORALE)
    expected = round((float(song.seconds_at([song.end_tick])[0]) + TAIL_SECONDS) * RATE)
    assert wav_frames(out) == (expected, 2, RATE)
    assert report["tracks"] == [1, 2, 3, 4] and report["seconds"] == pytest.approx(expected / RATE, abs=1e-3)


def test_render_some_tracks_and_bars(soundfont, tmp_path: Path) -> None:
    out = tmp_path / "bass.wav"
    result = run("render", str(CHORALE), "-o", str(out), "--tracks", "Bass,1", "--bars", "2:3")
    assert result.returncode == 0, result.stderr
    song = read_midi(CHORALE)
    bars = song.bar_lines()
    seconds = float(np.diff(song.seconds_at([bars[1], bars[3]]))[0])
    assert wav_frames(out)[0] == round((seconds + TAIL_SECONDS) * RATE)
    assert json.loads(result.stdout.strip().splitlines()[-1])["tracks"] == [1, 4]


def test_render_writes_flac(soundfont, tmp_path: Path) -> None:
    soundfile = pytest.importorskip("soundfile", reason="FLAC is written through soundfile (the app extra)")
    out = tmp_path / "chorale.flac"
    result = run("render", str(CHORALE), "-o", str(out), "--bars", "1:1")
    assert result.returncode == 0, result.stderr
    data, rate = soundfile.read(out)
    assert rate == RATE and data.shape[1] == 2 and np.abs(data).max() > 0.01


@pytest.mark.parametrize("case", ["missing", "not-midi", "mp3", "bad-soundfont", "bad-bars", "bad-track"])
def test_render_refuses_bad_input_with_one_line(tmp_path: Path, case: str) -> None:
    not_midi = tmp_path / "not.mid"
    not_midi.write_bytes(b"hello, not midi")
    source, out, extra = str(CHORALE), str(tmp_path / "out.wav"), []
    if case == "missing":
        source = str(tmp_path / "missing.mid")
    elif case == "not-midi":
        source = str(not_midi)
    elif case == "mp3":
        out = str(tmp_path / "out.mp3")
    elif case == "bad-soundfont":
        extra = ["--soundfont", str(not_midi)]
    elif case == "bad-bars":
        extra = ["--bars", "40:41"]
    else:
        extra = ["--tracks", "Banjo"]
    result = run("render", source, "-o", out, *extra)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("meloformer render: error: "), result.stderr
    assert not (tmp_path / "out.wav").exists()
