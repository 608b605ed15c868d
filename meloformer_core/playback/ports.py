"""MIDI output ports of every API python-rtmidi was built with (ALSA and JACK on Linux,
CoreMIDI on macOS, WinMM on Windows).

An API that cannot start is not an error: on a machine without an ALSA sequencer,
``rtmidi.MidiOut()`` raises, and JACK without a running server has no ports. Listing
reports those as readable problems beside the ports that do exist, and never starts a
JACK server or hangs. The C libraries' own chatter on stderr is kept out of the terminal:
ALSA's around the calls that make it, libjack's for good (`silence_libjack`), since
libjack also prints from its own threads at any time (when its server dies, say).

An open output can be lost while it plays: a synthesizer quits, a device is unplugged, the
JACK server stops. A write to a JACK port never fails (RtMidi queues it for the JACK
thread, which simply stops running), and an ALSA write to a vanished destination goes to
no one, so `MidiOutput.problem` asks instead: is the port still in its own client's
listing, and for JACK, does the server it was opened on still listen? The player asks
every half second while it plays.

One rule about JACK keeps this process alive: never open a JACK client while a client of
ours is connected to a server that has gone. libjack then "cleans up" (its message: "Jack
server was closed but clients are still allocated, cleanup...") by closing and freeing
those older clients behind RtMidi's back, and the next close_port() or delete() on them
uses freed memory: a segmentation fault. So the server is watched without libjack, through
its listening socket (`_jack_server`), and listing or opening JACK ports is refused (one
readable problem) while an open output's server is gone, until that output is closed.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import threading
import time
import weakref
from dataclasses import dataclass

from meloformer_core.errors import MeloformerError


class PortError(MeloformerError):
    """No MIDI output, or the chosen one cannot be opened."""


class OutputLostError(PortError):
    """An open MIDI output went away (its port vanished, its MIDI system stopped, a write failed)."""


@dataclass(frozen=True)
class OutputPort:
    api: str  # "alsa", "jack", "coremidi", "winmm", …
    name: str
    index: int  # position in that API's list

    @property
    def label(self) -> str:
        return f"{self.name} ({self.api.upper()})"


_stderr_lock = threading.Lock()  # two threads swapping fd 2 at once could leave it on /dev/null


@contextlib.contextmanager
def _quiet_stderr(quiet: bool = True):
    """Silence file descriptor 2 (ALSA prints straight to it) while the block runs."""
    if not quiet:
        yield
        return
    with _stderr_lock:
        try:
            saved = os.dup(2)
        except OSError:
            yield
            return
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                os.close(saved)


_libjack_silenced: bool | None = None  # None: not tried yet


def silence_libjack() -> bool:
    """Point libjack's error and info messages at a function that ignores them; True when done.

    libjack prints to fd 2 from its own threads ("Cannot read socket fd = 5", "CheckRes
    error", "JackSocketClientChannel read fail" the moment its server dies; "Server is not
    running" for every later call), so no redirection around our calls can catch it. Its
    own switch, ``jack_set_error_function``, can: it must reach the libjack that RtMidi
    loaded (python-rtmidi's wheels bring their own copy), so it is found among the
    process's mapped files. The function is libc's ``strlen``: it reads the message and
    does nothing, takes no lock and no GIL, as libjack's real-time thread needs. We report
    what matters in one line ourselves. Set MELOFORMER_JACK_MESSAGES=1 to keep them.
    """
    global _libjack_silenced
    if _libjack_silenced is not None:
        return _libjack_silenced
    _libjack_silenced = False
    if os.environ.get("MELOFORMER_JACK_MESSAGES"):
        return False
    path = None
    with contextlib.suppress(OSError), open("/proc/self/maps") as maps:
        path = next((line.split()[-1] for line in maps if os.path.basename(line.split()[-1]).startswith("libjack")),
                    None)  # fmt: skip
    if path is None:
        path = ctypes.util.find_library("jack")
    if path is None:
        return False
    try:
        libjack = ctypes.CDLL(path)
        ignore = ctypes.cast(ctypes.CDLL(None).strlen, ctypes.c_void_p)
        for setter in (libjack.jack_set_error_function, libjack.jack_set_info_function):
            setter.argtypes, setter.restype = [ctypes.c_void_p], None
            setter(ignore)
    except (OSError, AttributeError):
        return False
    _libjack_silenced = True
    return True


def _rtmidi():
    """python-rtmidi, set up: JACK never autostarts a server, libjack keeps quiet."""
    import rtmidi

    os.environ.setdefault("JACK_NO_START_SERVER", "1")
    silence_libjack()
    return rtmidi


UNKNOWN_SERVER = "unknown"  # no /proc/net/unix to ask (not Linux): JACK's server is not watched


def _jack_server() -> str | None:
    """The JACK server that new clients of this process would reach, as "socket path#inode"
    while it listens; None when it does not (stopped, or killed: its socket file may stay,
    but no socket listens on it any more); `UNKNOWN_SERVER` where this cannot be told.

    JACK2's server listens on ``/dev/shm/jack_<name>_<uid>_0`` (``/tmp`` in some builds),
    the name being $JACK_DEFAULT_SERVER or "default". The socket's inode tells a restarted
    server from the one an output was opened on. Reading /proc/net/unix opens no client
    (see the module's doc for why that matters) and takes about a millisecond.
    """
    name = os.environ.get("JACK_DEFAULT_SERVER") or "default"
    uid = os.getuid() if hasattr(os, "getuid") else 0
    paths = {f"{folder}/jack_{name}_{uid}_0" for folder in ("/dev/shm", "/tmp")}
    try:
        with open("/proc/net/unix") as table:
            for line in table:
                fields = line.split()  # Num RefCount Protocol Flags Type St Inode Path
                if len(fields) >= 8 and fields[7] in paths and int(fields[3], 16) & 0x10000:  # __SO_ACCEPTCON
                    return f"{fields[7]}#{fields[6]}"
    except (OSError, ValueError):
        return UNKNOWN_SERVER
    return None


_open_jack_outputs: weakref.WeakSet[MidiOutput] = weakref.WeakSet()
_open_jack_lock = threading.Lock()  # the app lists ports on a thread of its own


def _jack_blocked() -> str | None:
    """Why no JACK client may be opened now (None when one may): an open output of ours is
    connected to a JACK server that is gone or was restarted."""
    with _open_jack_lock:
        servers = {output.jack_server for output in _open_jack_outputs} - {UNKNOWN_SERVER}
    if servers and servers != {_jack_server()}:
        return "the server an open output was using is gone (that output must be closed first)"
    return None


def _port_names(api: int) -> list[str]:
    """The output port names one MIDI system lists now (raises what RtMidi raises when it
    cannot be asked: an ALSA without sequencer, a JACK without server)."""
    rtmidi = _rtmidi()
    blocked = _jack_blocked() if rtmidi.get_api_name(api) == "jack" else None
    if blocked:
        raise rtmidi.RtMidiError(blocked)
    with _quiet_stderr(rtmidi.get_api_name(api) != "jack" or not _libjack_silenced):
        out = rtmidi.MidiOut(api, name="MeloFormer ports")
        try:
            return out.get_ports()
        finally:
            out.delete()


def list_output_ports() -> tuple[list[OutputPort], list[str]]:
    """All output ports, and one line per API that could not be asked (why)."""
    try:
        rtmidi = _rtmidi()
    except ImportError:
        return [], ["python-rtmidi is not installed (pip install python-rtmidi)"]
    ports: list[OutputPort] = []
    problems: list[str] = []
    for api in rtmidi.get_compiled_api():
        name = rtmidi.get_api_name(api)
        try:
            names = _port_names(api)
        except (SystemError, RuntimeError, rtmidi.RtMidiError) as error:
            problems.append(f"{name.upper()}: {str(error).splitlines()[0]}")
            continue
        ports += [OutputPort(name, port, index) for index, port in enumerate(names)]
    return ports, problems


# How long a JACK output stays open after its last message. RtMidi's close_port waits for one
# JACK cycle to move our queued messages into the port, then unregisters it at once; a client
# reading that port (a synthesizer) that has not run that cycle yet, which happens on a busy
# machine, reads an empty buffer. The last messages sent are the note-offs that end the
# music, so losing them leaves notes hanging: `meloformer play` lost the final chord's
# note-offs in about 1 run in 20 with both cores busy. A period is 1-100 ms, so waiting
# this long lets the cycle that carries them end for every client.
JACK_DRAIN_SECONDS = 0.25


class MidiOutput:
    """An open output port: ``send`` takes one message as a list of bytes; ``problem`` says
    whether it is still there."""

    def __init__(self, port: OutputPort | None, handle, label: str, api: int | None = None) -> None:
        self.port, self._handle, self.label, self.api = port, handle, label, api
        self._failure: str | None = None  # what RtMidi reported while sending
        self._lock = threading.Lock()  # `problem` (the player's checking thread) against `close`
        self._listing: int | None = None  # the thread listing ports in `problem`: its errors are not the port's
        self._listing_failed = False
        self.jack_server: str | None = None  # the JACK server it was opened on (see `_jack_server`)
        self._last_send = -float("inf")  # time.monotonic() of the last message sent
        if handle is not None:
            handle.set_error_callback(self._rtmidi_error)
        if api is not None and _rtmidi().get_api_name(api) == "jack":
            self.jack_server = _jack_server() or UNKNOWN_SERVER
            with _open_jack_lock:
                _open_jack_outputs.add(self)

    def _rtmidi_error(self, _kind: int, message: str, _data) -> None:
        # Called by RtMidi inside the call that failed, on its thread. In send_message its
        # warnings matter too: "JACK ringbuffer full" means the JACK thread no longer takes
        # our messages, so they are being lost.
        if threading.get_ident() == self._listing:
            self._listing_failed = True  # the port list changed under `problem`: ask again next time
            return
        self._failure = message.strip().splitlines()[0] if message.strip() else "error"

    def _lost(self, why: str) -> OutputLostError:
        return OutputLostError(f"MIDI output {self.label} lost: {why}")

    def send(self, message: list[int]) -> None:
        if self._handle is None:
            raise self._lost("it was closed")
        try:
            self._handle.send_message(message)
            self._last_send = time.monotonic()
        except Exception as error:  # whatever RtMidi's layers raise, it is this port failing
            why = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise self._lost(f"writing failed ({why})") from error
        if self._failure is not None:
            raise self._lost(f"writing failed ({self._failure})")

    def problem(self) -> str | None:
        """Why this output can no longer be played on, in one line naming it (None while it can):
        a write failed, its JACK server stopped (or was restarted), or its own client's listing
        no longer has its port. Opens no client; about a millisecond."""
        with self._lock:
            if self._failure is not None:
                return str(self._lost(f"writing failed ({self._failure})"))
            if self._handle is None:
                return str(self._lost("it was closed"))
            if self.jack_server not in (None, UNKNOWN_SERVER):
                now = _jack_server()
                if now is None:
                    return str(self._lost("the JACK server is not running"))
                if now != self.jack_server:
                    return str(self._lost("the JACK server was restarted"))
            if self.port is None:  # a virtual port of our own: only its MIDI system can go
                return None
            self._listing, self._listing_failed = threading.get_ident(), False
            try:
                names = self._handle.get_ports()
            except Exception as error:  # RtMidi's layers raise several types
                return str(self._lost(f"its MIDI system stopped answering ({str(error).splitlines()[0]})"))
            finally:
                self._listing = None
            if self._listing_failed:
                return None
            return None if self.port.name in names else str(self._lost("the port is gone"))

    def close(self) -> None:
        with self._lock:
            if self._handle is None:
                return
            handle, self._handle = self._handle, None
        if self.jack_server is not None:  # let the last messages reach the clients that read them
            time.sleep(max(0.0, self._last_send + JACK_DRAIN_SECONDS - time.monotonic()))
        handle.close_port()
        if self.jack_server is not None:
            # RtMidi's JACK output frees its message buffer before it closes its client, so a
            # process cycle that began before close_port (a late one: a busy machine, a JACK
            # without real-time threads) would read freed memory. After close_port every new
            # cycle returns at once; give a late one a few periods to end.
            time.sleep(0.05)
        handle.delete()
        with _open_jack_lock:
            _open_jack_outputs.discard(self)

    def __enter__(self) -> MidiOutput:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


VIRTUAL = "virtual"  # as a port name: open a port of our own that synthesizers can connect to
VIRTUAL_APIS = ("jack", "alsa", "core")  # the APIs that can make one (not Windows' WinMM)


def virtual_possible(problems: list[str]) -> bool:
    """Whether an API that can open a virtual port started (``problems`` from `list_output_ports`)."""
    try:
        import rtmidi
    except ImportError:
        return False
    failed = {problem.split(":", 1)[0].lower() for problem in problems}
    compiled = {rtmidi.get_api_name(api) for api in rtmidi.get_compiled_api()}
    return bool((compiled & set(VIRTUAL_APIS)) - failed)


def open_virtual_output(client: str = "MeloFormer") -> MidiOutput:
    """A port of our own (``MeloFormer:out``) that other programs connect to."""
    rtmidi = _rtmidi()

    problems = []
    for api in rtmidi.get_compiled_api():
        name = rtmidi.get_api_name(api)
        if name not in VIRTUAL_APIS:
            continue
        if name == "jack" and _jack_blocked():
            problems.append(f"JACK: {_jack_blocked()}")
            continue
        try:
            with _quiet_stderr(name != "jack" or not _libjack_silenced):
                handle = rtmidi.MidiOut(api, name=client)
                handle.open_virtual_port("out")
        except (SystemError, RuntimeError, rtmidi.RtMidiError) as error:
            problems.append(f"{name.upper()}: {str(error).splitlines()[0]}")
            continue
        return MidiOutput(None, handle, f"{client}:out (virtual, {name.upper()})", api)
    raise PortError(f"cannot open a virtual MIDI output ({'; '.join(problems) or 'no API here supports one'})")


def open_output(name: str | None = None, client: str = "MeloFormer") -> MidiOutput:
    """Open the output port whose label or name contains ``name`` (the first port when None;
    a virtual port of our own for `VIRTUAL`). Raise `PortError` with one readable line when
    there is none."""
    rtmidi = _rtmidi()

    if name == VIRTUAL:
        return open_virtual_output(client)
    ports, problems = list_output_ports()
    if name:
        wanted = name.lower()
        matches = [p for p in ports if p.label.lower() == wanted or p.name.lower() == wanted]
        matches = matches or [p for p in ports if wanted in p.label.lower()]
    else:
        matches = ports
    if not matches:
        known = ", ".join(p.label for p in ports) or "none"
        why = f" ({'; '.join(problems)})" if problems and not ports else ""
        raise PortError(f"no MIDI output port {name!r}; available: {known}{why}" if name else
                        f"no MIDI output port available{why}")  # fmt: skip
    port = matches[0]
    api = next(a for a in rtmidi.get_compiled_api() if rtmidi.get_api_name(a) == port.api)
    try:
        with _quiet_stderr(port.api != "jack" or not _libjack_silenced):
            handle = rtmidi.MidiOut(api, name=client)
            names = handle.get_ports()
            index = names.index(port.name) if port.name in names else port.index
            handle.open_port(index, "out")
    except (SystemError, RuntimeError, ValueError, rtmidi.RtMidiError) as error:
        raise PortError(f"cannot open MIDI output {port.label}: {str(error).splitlines()[0]}") from None
    return MidiOutput(port, handle, port.label, api)
