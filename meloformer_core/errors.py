"""The project's error types.

Every error a user can cause (a bad file, a wrong model, a cancelled job) is a
`MeloformerError` with a message that names the file and the problem in one line.
Boundaries (CLIs, the app) catch `MeloformerError` and show `str(error)`; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations


class MeloformerError(Exception):
    """Base class of every error the project raises on purpose."""


class MidiReadError(MeloformerError):
    """A MIDI file could not be read (missing, corrupt, unsupported)."""


class MidiWriteError(MeloformerError):
    """A song could not be written as MIDI."""


class SongError(MeloformerError):
    """A `Song` is inconsistent (negative times, out-of-range values)."""


class EncodingError(MeloformerError):
    """A song cannot be encoded, or a token sequence cannot be decoded."""
