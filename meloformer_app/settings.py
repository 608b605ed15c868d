"""Settings and autosave files, in the user's config and data folders (platformdirs).

Settings are one JSON file with sensible defaults; a missing or broken file gives the
defaults (a broken one is kept aside as ``settings.json.broken``), never an error.
``MELOFORMER_CONFIG_DIR`` / ``MELOFORMER_DATA_DIR`` override the folders (tests use them).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from platformdirs import user_config_dir, user_data_dir

from meloformer_core.atomic import write_bytes_atomically
from meloformer_core.model.sampling_config import RECOMMENDED

APP = "MeloFormer"
MAX_RECENT = 10


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
    temperature: float = RECOMMENDED.temperature
    top_k: int = 0
    top_p: float = RECOMMENDED.top_p
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    prompt_guidance: float = RECOMMENDED.prompt_guidance
    seed: int = 0
    variations: int = RECOMMENDED.takes  # 0: automatic takes (Continue keeps the most typical)
    midi_port: str = ""
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
        for name, value in raw.items() if isinstance(raw, dict) else ():
            if name not in known:
                continue
            default = getattr(defaults, name)
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)  # "temperature": 1 written by hand is 1.0
            if isinstance(value, type(default)) and isinstance(value, bool) == isinstance(default, bool):
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


class Autosave:
    """The unsaved document, written every few seconds; found again after a crash.

    ``autosave.mid`` holds the song, ``autosave.json`` names the file it came from. A clean
    exit (or saving) removes both, so their presence at start-up means a crash.
    """

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or data_dir() / "autosave"

    @property
    def midi(self) -> Path:
        return self.folder / "autosave.mid"

    @property
    def info(self) -> Path:
        return self.folder / "autosave.json"

    def write(self, midi_bytes: bytes, source: Path | None) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_bytes_atomically(self.midi, midi_bytes)
        write_bytes_atomically(self.info, json.dumps({"source": str(source) if source else None}).encode())

    def pending(self) -> tuple[Path, Path | None] | None:
        """The autosaved file and the file it came from, if the last session did not end cleanly."""
        if not self.midi.is_file():
            return None
        try:
            source = json.loads(self.info.read_text()).get("source")
        except (OSError, ValueError, AttributeError):
            source = None
        return self.midi, Path(source) if source else None

    def clear(self) -> None:
        for path in (self.midi, self.info):
            path.unlink(missing_ok=True)
