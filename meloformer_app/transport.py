"""The thin Qt adapter over the plain-Python `Player`: output choice, transport, playhead.

The player runs in its own thread with its own clock; this adapter only opens the output,
forwards commands, polls the position for the playhead (30 times a second) and turns the
player's callbacks into Qt signals (delivered on the GUI thread).

The output is the built-in synth (`BUILTIN`, the default: no MIDI port chosen) or a MIDI
port. The built-in synth opens on the system's audio device; without one it still opens,
silent, so that playing, looping and the playhead work, and says why once through `notice`.
Its SoundFont and volume are the adapter's (`set_soundfont`, `set_volume`), and change
what is playing at once.

When the output goes away (a synthesizer quits, the JACK server stops, the audio device is
unplugged) the player stops within a second; the adapter then closes the output, so the
next Play opens whatever the port box offers by then, and says so once through `lost`
(no dialog: nothing was asked).
"""

from __future__ import annotations

import threading

from PySide6.QtCore import QObject, QTimer, Signal

from meloformer_core.errors import MeloformerError
from meloformer_core.midi_io import assign_channels
from meloformer_core.music import Song
from meloformer_core.playback import ports
from meloformer_core.playback.audio import open_synth_output
from meloformer_core.playback.player import Player
from meloformer_core.playback.ports import MidiOutput, OutputPort, list_output_ports
from meloformer_core.playback.soundfont import load_soundfont
from meloformer_core.playback.synth import SynthOutput

BUILTIN = "builtin"  # the port box's name for the built-in synth
DEFAULT_VOLUME = 0.8


def open_output(name: str | None = None) -> MidiOutput | SynthOutput:
    """The output the port box names: the built-in synth (`BUILTIN`, or None: no MIDI port
    chosen) or a MIDI port (`ports.open_output`)."""
    if name in (None, "", BUILTIN):
        return open_synth_output()
    return ports.open_output(name)


class Transport(QObject):
    position = Signal(int)  # the playhead, in ticks
    state_changed = Signal(bool)  # playing or not
    failed = Signal(str)  # the output could not be opened (a dialog's worth)
    lost = Signal(str, str)  # (the output's label, one line why): it went away while open
    notice = Signal(str)  # one line for the status bar: the built-in synth is silent (no audio device)
    _finished = Signal()
    _error = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.output: MidiOutput | SynthOutput | None = None
        self.port_name = BUILTIN
        self.soundfont = ""  # the built-in synth's .sf2 ("" = the one that installs with the app)
        self.volume = DEFAULT_VOLUME
        self.player: Player | None = None
        self.ports: list[OutputPort] = []
        self.problems: list[str] = []
        self.timer = QTimer(self, interval=33)
        self.timer.timeout.connect(self._tick)
        self._finished.connect(self._done)
        self._error.connect(self._lost)
        self.start_tick = 0
        self.loop_enabled = False
        self.metronome = False

    def refresh_ports(self) -> list[OutputPort]:
        if self.output is not None and not self.playing and self.output.problem():
            self.close_output(wait=False)  # gone while idle; closing it also lets JACK be listed again
        self.ports, self.problems = list_output_ports()
        return self.ports

    def choose_port(self, name: str) -> None:
        """Use the output named ``name`` from the next Play on (`BUILTIN` or "": the built-in synth)."""
        name = name or BUILTIN
        if name != self.port_name:
            self.close_output()
            self.port_name = name

    @property
    def builtin(self) -> bool:
        """Whether the chosen output is the built-in synth."""
        return self.port_name == BUILTIN

    def set_volume(self, volume: float) -> None:
        """The built-in synth's volume, 0 to 1 (at once, also while it plays)."""
        self.volume = min(1.0, max(0.0, volume))
        if isinstance(self.output, SynthOutput):
            self.output.volume = self.volume

    def set_soundfont(self, path: str) -> str:
        """Play the built-in synth with the SoundFont at ``path`` ("" = the default), from now
        on; its name. Raises `MeloformerError` (one line) when it cannot be read."""
        soundfont = load_soundfont(path or None)
        self.soundfont = path
        if isinstance(self.output, SynthOutput):
            self.output.set_soundfont(soundfont)
        return soundfont.name

    def _ensure_output(self, quiet: bool = False) -> bool:
        if self.output is not None and self.output.problem():
            self.close_output(wait=False)  # went away while nothing played: open afresh
        if self.output is not None:
            return True
        try:
            output = open_output(self.port_name or None)
            if isinstance(output, SynthOutput):
                self._set_up_synth(output)
        except MeloformerError as error:
            if not quiet:
                self.failed.emit(str(error))
            return False
        self.output = output
        self.player = Player(self.output.send, on_error=self._error.emit, on_finished=self._finished.emit,
                             check=self.output.problem)  # fmt: skip
        return True

    def _set_up_synth(self, output: SynthOutput) -> None:
        try:
            output.set_soundfont(load_soundfont(self.soundfont or None))
        except MeloformerError:
            output.close()
            raise
        output.volume = self.volume
        if output.notice:
            self.notice.emit(output.notice)

    @property
    def playing(self) -> bool:
        return self.player is not None and self.player.playing

    def play(self, song: Song, start_tick: int, tracks: list[int], loop: tuple[int, int] | None = None) -> bool:
        if not song.tracks or not self._ensure_output():
            return False
        self.player.loop = loop if self.loop_enabled else None
        self.player.metronome = self.metronome
        self.player.play(song, start_tick, tracks)
        self.timer.start()
        self.state_changed.emit(True)
        return True

    def audition(self, song: Song, track: int, key: int, velocity: int) -> None:
        """Sound one note of ``track`` (clicked or drawn); silent when there is no output."""
        if not (self.builtin or self.ports) or not 0 <= track < len(song.tracks):
            return
        if not self._ensure_output(quiet=True):
            return
        channel = assign_channels(song)[track]
        self.player.audition(channel, song.tracks[track].program, key, velocity)

    def stop(self) -> None:
        """Stop where the music is; the next Play goes on from there (Enter plays from the start)."""
        if self.player is not None:
            if self.player.playing:
                self.start_tick = self.player.current_tick()
            self.player.stop()
        self.timer.stop()
        self.state_changed.emit(False)
        self.position.emit(self.start_tick)

    def seek(self, tick: int) -> None:
        self.start_tick = tick
        if self.player is not None and self.player.playing:
            self.player.seek(tick)
        self.position.emit(tick)

    def update_song(self, song: Song, tracks: list[int]) -> None:
        """An edit (or mute/solo) while playing: the player goes on with the new song."""
        if self.player is not None and self.player.playing:
            self.player.update_song(song, tracks)

    def set_loop(self, loop: tuple[int, int] | None) -> None:
        if self.player is not None:
            self.player.loop = loop if self.loop_enabled else None

    def _tick(self) -> None:
        if self.player is not None:
            self.position.emit(self.player.current_tick())

    def _done(self) -> None:
        self.timer.stop()
        self.state_changed.emit(False)

    def _lost(self, message: str) -> None:
        """The player stopped because its output went away: drop the output, say which and why."""
        if self.player is None:  # already closed (another port was chosen meanwhile)
            return
        label = self.output.label if self.output is not None else self.port_name
        self.start_tick = self.player.current_tick()
        self.close_output(wait=False)
        self.timer.stop()
        self.state_changed.emit(False)
        self.position.emit(self.start_tick)
        self.lost.emit(label, message)

    def close_output(self, wait: bool = True) -> None:
        """Close the player, then the output; without ``wait`` the output closes on a thread of
        its own (one whose JACK server died takes a second to close: not on the GUI thread)."""
        player, output, self.player, self.output = self.player, self.output, None, None
        if player is not None:
            player.close()
        if output is not None and wait:
            output.close()
        elif output is not None:
            threading.Thread(target=output.close, name="meloformer-close-output", daemon=True).start()

    def shutdown(self) -> None:
        self.timer.stop()
        self.close_output()
