"""Settings and autosave files, in the user's config and data folders (platformdirs).

Settings are one JSON file with sensible defaults; a missing or broken file gives the
defaults (a broken one is kept aside as ``settings.json.broken``), never an error.
``MELOFORMER_CONFIG_DIR`` / ``MELOFORMER_DATA_DIR`` override the folders (tests use them).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from platformdirs import user_config_dir, user_data_dir

from meloformer_core.atomic import write_bytes_atomically
from meloformer_core.sampling_settings import CONTROLS, RECOMMENDED

APP = "MeloFormer"
MAX_RECENT = 10
RANGES = {control.name: (control.minimum, control.maximum) for control in CONTROLS}


def config_dir() -> Path:
    return Path(os.environ.get("MELOFORMER_CONFIG_DIR") or user_config_dir(APP, appauthor=False))


def data_dir() -> Path:
    return Path(os.environ.get("MELOFORMER_DATA_DIR") or user_data_dir(APP, appauthor=False))


@dataclass
class Settings:
    recent_files: list[str] = field(default_factory=list)
    last_directory: str = ""
    model_path: str = ""  # "" = the default bundle
    bars: int = 4
    # the sampling settings (`CONTROLS`: a value outside a control's range loads as its default)
    temperature: float = RECOMMENDED.temperature
    top_k: int = RECOMMENDED.top_k
    top_p: float = RECOMMENDED.top_p
    min_p: float = RECOMMENDED.min_p
    repetition_penalty: float = RECOMMENDED.repetition_penalty
    prompt_guidance: float = RECOMMENDED.prompt_guidance
    seed: int = 0
    takes: int = RECOMMENDED.takes  # 0: automatic takes (Continue keeps the most typical)
    midi_port: str = ""  # "" or "builtin": the built-in synth
    soundfont: str = ""  # the built-in synth's .sf2 ("" = TimGM6mb, which installs with the app)
    volume: float = 0.8  # the built-in synth's, 0 to 1
    theme: str = "dark"
    autosave_seconds: int = 60
    shortcuts: dict[str, str] = field(default_factory=dict)  # action name → key sequence
    geometry: str = ""  # base64 of the window geometry

    @classmethod
    def load(cls) -> Settings:
        path = config_dir() / "settings.json"
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError):
            path.replace(path.with_suffix(".json.broken"))
            return cls()
        known = {f.name: f for f in fields(cls)}
        values = {}
        defaults = cls()
        if isinstance(raw, dict) and "variations" in raw:  # what settings files written by 0.1.0 call the takes
            raw.setdefault("takes", raw.pop("variations"))
        for name, value in raw.items() if isinstance(raw, dict) else ():
            if name not in known:
                continue
            default = getattr(defaults, name)
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)  # "temperature": 1 written by hand is 1.0
            if not isinstance(value, type(default)) or isinstance(value, bool) != isinstance(default, bool):
                continue
            if name not in RANGES or RANGES[name][0] <= value <= RANGES[name][1]:
                values[name] = value
        return cls(**values)

    def save(self) -> None:
        path = config_dir() / "settings.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomically(path, json.dumps(asdict(self), indent=1).encode())

    def add_recent(self, path: Path) -> None:
        text = str(path.resolve())
        self.recent_files = [text, *[p for p in self.recent_files if p != text][: MAX_RECENT - 1]]
        self.last_directory = str(path.resolve().parent)


def _process_stat(pid: int) -> tuple[str, str | None] | None:
    """The state and start time (clock ticks after boot) of process ``pid`` from Linux's
    /proc; None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:  # hidden from us (a hidepid mount): it runs, since when is not known
        return "?", None
    fields_after_name = text[text.rindex(")") + 2 :].split()  # the name may hold spaces and ")"
    return fields_after_name[0], fields_after_name[19]  # fields 3 (state) and 22 (starttime)


def _windows_process(pid: int) -> tuple[bool, str | None]:
    """Whether process ``pid`` runs, and its creation time, from the Windows API (os.kill
    would end it there)."""
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.OpenProcess.restype = wintypes.HANDLE
    kernel32.OpenProcess.argtypes = (wintypes.DWORD, wintypes.BOOL, wintypes.DWORD)
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return ctypes.get_last_error() == 5, None  # ERROR_ACCESS_DENIED: it runs, as someone else
    try:
        code = wintypes.DWORD()
        if kernel32.GetExitCodeProcess(handle, ctypes.byref(code)) and code.value != 259:  # STILL_ACTIVE
            return False, None
        created, ended, kernel, user = (wintypes.FILETIME() for _ in range(4))
        if not kernel32.GetProcessTimes(handle, *(ctypes.byref(t) for t in (created, ended, kernel, user))):
            return True, None
        return True, str(created.dwHighDateTime << 32 | created.dwLowDateTime)
    finally:
        kernel32.CloseHandle(handle)


def process_start_time(pid: int) -> str | None:
    """When process ``pid`` started, as the system says it (comparable only with itself);
    None where that is not known (no such process, or a system without /proc and not Windows)."""
    if sys.platform == "win32":
        return _windows_process(pid)[1]
    stat = _process_stat(pid) if Path("/proc/self/stat").exists() else None
    return stat[1] if stat else None


@dataclass(frozen=True)
class Owner:
    """The running app an autosave belongs to: its process id, that process's start time (a
    later process given the same id is not the owner) and a random token naming its files."""

    pid: int
    started: str | None  # process_start_time(pid) when the owner started; None where unknown
    token: str

    @classmethod
    def this_process(cls) -> Owner:
        """The one owner of this process: every `Autosave` it makes writes the same files."""
        global _this_process
        if _this_process is None or _this_process.pid != os.getpid():  # a forked child is another app
            _this_process = cls(os.getpid(), process_start_time(os.getpid()), secrets.token_hex(4))
        return _this_process

    def running(self) -> bool:
        """Whether the owner still runs. Where the system cannot tell a process from an
        earlier one with the same id (no start time known), it is taken for the owner: an
        autosave is then offered late, never taken from a running app."""
        if self.pid <= 0:
            return False
        if self.pid == os.getpid():
            return self == Owner.this_process()  # this process has one token: another is a dead namesake's
        if sys.platform == "win32":
            running, started = _windows_process(self.pid)
            if not running:
                return False
        elif Path("/proc/self/stat").exists():
            stat = _process_stat(self.pid)
            if stat is None or stat[0] in ("Z", "X"):  # gone, or dead and not yet reaped
                return False
            started = stat[1]
        else:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:  # it runs, as another user
                pass
            started = None
        return self.started is None or started is None or started == self.started

    @classmethod
    def from_record(cls, record: dict) -> Owner | None:
        pid, started, token = record.get("pid"), record.get("started"), record.get("token")
        if not isinstance(pid, int) or not isinstance(token, str) or not isinstance(started, str | None):
            return None
        return cls(pid, started, token)


_this_process: Owner | None = None


@dataclass(frozen=True)
class Orphan:
    """The autosave of an app that is no longer running: its song, where that song came
    from and when it was written (seconds since the epoch)."""

    midi: Path
    info: Path
    source: Path | None
    written: float

    def discard(self) -> None:
        for path in (self.midi, self.info):
            path.unlink(missing_ok=True)


def _read_record(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


class Autosave:
    """The unsaved document, written every few seconds; found again after a crash.

    Each running app writes its own pair, ``autosave-<pid>-<token>.mid`` with the song and
    ``.json`` naming its owner (pid, process start time, token), the file the song came from
    and when it was written. A clean exit, saving or giving the song up removes that pair
    only. At start-up the pairs whose owner no longer runs are the crashes to offer back
    (`orphans`); another running app's autosave is never offered, nor removed. The single
    ``autosave.mid`` of versions before this one counts as an orphan too.
    """

    LEGACY = "autosave.mid"

    def __init__(self, folder: Path | None = None, owner: Owner | None = None) -> None:
        self.folder = folder or data_dir() / "autosave"
        self.owner = owner or Owner.this_process()

    @property
    def midi(self) -> Path:
        return self.folder / f"autosave-{self.owner.pid}-{self.owner.token}.mid"

    @property
    def info(self) -> Path:
        return self.midi.with_suffix(".json")

    def write(self, midi_bytes: bytes, source: Path | None) -> None:
        """The record first: a song on disk always has its owner beside it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {"pid": self.owner.pid, "started": self.owner.started, "token": self.owner.token,
                  "source": str(source) if source else None, "written": time.time()}  # fmt: skip
        write_bytes_atomically(self.info, json.dumps(record).encode())
        write_bytes_atomically(self.midi, midi_bytes)

    def pending(self) -> tuple[Path, Path | None] | None:
        """This app's autosaved file and the file it came from, if there is one on disk."""
        if not self.midi.is_file():
            return None
        source = _read_record(self.info).get("source")
        return self.midi, Path(source) if isinstance(source, str) and source else None

    def clear(self) -> None:
        """Remove this app's autosave (the song first: a record alone is cleaned up later)."""
        for path in (self.midi, self.info):
            path.unlink(missing_ok=True)

    def orphans(self) -> list[Orphan]:
        """The autosaves of apps that are no longer running, the newest first."""
        found = []
        for info in self.folder.glob("autosave-*.json"):
            owner = Owner.from_record(record := _read_record(info))
            if owner is None or owner.running():
                continue  # not ours to judge, or a running app's
            midi = info.with_suffix(".mid")
            if not midi.is_file():  # its owner died between writing the record and the song
                info.unlink(missing_ok=True)
                continue
            found.append(self._orphan(midi, info, record))
        legacy = self.folder / self.LEGACY
        if legacy.is_file():
            found.append(self._orphan(legacy, legacy.with_suffix(".json"), _read_record(legacy.with_suffix(".json"))))
        return sorted(found, key=lambda orphan: orphan.written, reverse=True)

    @staticmethod
    def _orphan(midi: Path, info: Path, record: dict) -> Orphan:
        source, written = record.get("source"), record.get("written")
        if not isinstance(written, int | float) or isinstance(written, bool):
            try:
                written = midi.stat().st_mtime
            except OSError:
                written = 0.0
        return Orphan(midi, info, Path(source) if isinstance(source, str) and source else None, float(written))
