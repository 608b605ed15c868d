"""MIDI output ports of every API python-rtmidi was built with (ALSA and JACK on Linux,
CoreMIDI on macOS, WinMM on Windows).

An API that cannot start is not an error: on a machine without an ALSA sequencer,
``rtmidi.MidiOut()`` raises, and JACK without a running server has no ports. Listing
reports those as readable problems beside the ports that do exist, and never starts a
JACK server or hangs. The C libraries' own chatter on stderr is kept out of the terminal.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from meloformer_core.errors import MeloformerError


class PortError(MeloformerError):
    """No MIDI output, or the chosen one cannot be opened."""


@dataclass(frozen=True)
class OutputPort:
    api: str  # "alsa", "jack", "coremidi", "winmm", …
    name: str
    index: int  # position in that API's list

    @property
    def label(self) -> str:
        return f"{self.name} ({self.api.upper()})"


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 (ALSA and JACK print straight to it)."""
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


def list_output_ports() -> tuple[list[OutputPort], list[str]]:
    """All output ports, and one line per API that could not be asked (why)."""
    try:
        import rtmidi
    except ImportError:
        return [], ["python-rtmidi is not installed (pip install python-rtmidi)"]
    os.environ.setdefault("JACK_NO_START_SERVER", "1")
    ports: list[OutputPort] = []
    problems: list[str] = []
    for api in rtmidi.get_compiled_api():
        name = rtmidi.get_api_name(api)
        try:
            with _quiet_stderr():
                out = rtmidi.MidiOut(api)
                names = out.get_ports()
                out.delete()
        except (SystemError, RuntimeError, rtmidi.RtMidiError) as error:
            problems.append(f"{name.upper()}: {str(error).splitlines()[0]}")
            continue
        ports += [OutputPort(name, port, index) for index, port in enumerate(names)]
    return ports, problems


class MidiOutput:
    """An open output port: ``send`` takes one message as a list of bytes."""

    def __init__(self, port: OutputPort | None, handle, label: str) -> None:
        self.port, self._handle, self.label = port, handle, label

    def send(self, message: list[int]) -> None:
        self._handle.send_message(message)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close_port()
            self._handle.delete()
            self._handle = None

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
    import rtmidi

    problems = []
    for api in rtmidi.get_compiled_api():
        name = rtmidi.get_api_name(api)
        if name not in VIRTUAL_APIS:
            continue
        try:
            with _quiet_stderr():
                handle = rtmidi.MidiOut(api, name=client)
                handle.open_virtual_port("out")
        except (SystemError, RuntimeError, rtmidi.RtMidiError) as error:
            problems.append(f"{name.upper()}: {str(error).splitlines()[0]}")
            continue
        return MidiOutput(None, handle, f"{client}:out (virtual, {name.upper()})")
    raise PortError(f"cannot open a virtual MIDI output ({'; '.join(problems) or 'no API here supports one'})")


def open_output(name: str | None = None, client: str = "MeloFormer") -> MidiOutput:
    """Open the output port whose label or name contains ``name`` (the first port when None;
    a virtual port of our own for `VIRTUAL`). Raise `PortError` with one readable line when
    there is none."""
    import rtmidi

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
        with _quiet_stderr():
            handle = rtmidi.MidiOut(api, name=client)
            names = handle.get_ports()
            index = names.index(port.name) if port.name in names else port.index
            handle.open_port(index, "out")
    except (SystemError, RuntimeError, ValueError, rtmidi.RtMidiError) as error:
        raise PortError(f"cannot open MIDI output {port.label}: {str(error).splitlines()[0]}") from None
    return MidiOutput(port, handle, port.label)
