"""Writing files and folders so that a crash or a kill never leaves a half-written one,
and never touches a folder that is not ours.

Output folders follow one rule (`check_output_folder`): a command writes into a folder
only if it does not exist, is empty, or is recognisably one of its own kind (a model
bundle, a training run, a dataset …: `FolderKind`). Anything else — a folder with the
user's files, a training run given as a bundle's destination, a file — is refused with
one line naming it, before anything is written.

`replace_directory` builds a folder complete in a hidden sibling, then swaps it in:
with ``renameat2(RENAME_EXCHANGE)`` where the file system has it (one atomic step: the
path always holds the old or the new folder), else by two renames. The old folder is
removed only once the new one is in place.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from meloformer_core.errors import MeloformerError

STAGING_MARK = ".meloformer-tmp-"  # hidden siblings we create: `.NAME.meloformer-tmp-XXXX`


class OutputFolderError(MeloformerError):
    """An output path exists and is not a folder we may write into (or replace)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomically(path: Path, data: bytes) -> None:
    """Write to a hidden sibling, flush it to disk, then rename it over ``path``."""
    temporary = path.with_name(f".{path.name}.part")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class FolderKind:
    """What one of our output folders looks like, so that we recognise it before replacing it.

    ``names``: the only entries such a folder may hold (hidden entries are ours too: staging
    siblings and partial files). ``recognise``: a check of its content (a marker file's JSON),
    so that a user's folder that happens to hold a ``config.json`` is not taken for ours.
    """

    description: str  # "model bundle"
    names: frozenset[str]
    recognise: Callable[[Path], bool] = field(compare=False)

    def holds(self, folder: Path) -> bool:
        return self.recognise(folder)


def json_marker(name: str, check: Callable[[object], bool]) -> Callable[[Path], bool]:
    """A `FolderKind.recognise` that reads ``folder/name`` (small JSON) and applies ``check``."""

    def recognise(folder: Path) -> bool:
        path = folder / name
        try:
            if not path.is_file() or path.stat().st_size > 1 << 20:
                return False
            return bool(check(json.loads(path.read_text())))
        except (OSError, ValueError, RecursionError):
            return False

    return recognise


def check_output_folder(path: Path, kind: FolderKind) -> bool:
    """Raise `OutputFolderError` unless ``path`` may be written as a ``kind``.

    Returns True when ``path`` already holds a ``kind`` (it will be replaced or continued),
    False when it is absent or empty.
    """
    if path.is_symlink() and not path.exists():
        raise OutputFolderError(f"{path}: a broken symbolic link; choose another output folder")
    if not path.exists():
        return False
    if not path.is_dir():
        raise OutputFolderError(f"{path}: exists and is not a folder; choose a folder for the {kind.description}")
    try:
        entries = sorted(entry.name for entry in path.iterdir())
    except OSError as error:
        raise OutputFolderError(f"{path}: cannot list the folder ({error.strerror or error})") from None
    visible = [name for name in entries if not name.startswith(".")]
    if not visible:
        return False
    foreign = [name for name in visible if name not in kind.names]
    if foreign or not kind.holds(path):
        shown = ", ".join(foreign[:3] or visible[:3]) + (", …" if len(foreign or visible) > 3 else "")
        raise OutputFolderError(
            f"{path}: not empty and not a {kind.description} (it holds {shown}); nothing was written — "
            "choose a new or empty folder"
        )
    return True


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2``); False where the system cannot."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    result = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def _apply_umask(folder: Path) -> None:
    """`mkdtemp` makes a 0700 folder: give it, and what is inside, the user's usual modes."""
    mask = _umask()
    for root, dirs, files in os.walk(folder):
        os.chmod(root, 0o777 & ~mask)
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~mask)
        for name in files:
            path = os.path.join(root, name)
            executable = os.stat(path).st_mode & stat.S_IXUSR
            os.chmod(path, (0o777 if executable else 0o666) & ~mask)


@contextmanager
def replace_directory(target: Path, kind: FolderKind) -> Iterator[Path]:
    """Yield an empty staging folder beside ``target``; on success it replaces ``target``.

    ``target`` must pass `check_output_folder` for ``kind`` (checked before anything is
    written, and again just before the swap). A failure or a kill at any point leaves
    ``target`` as it was (or, after the swap, complete and new).
    """
    target = Path(target)
    if target.is_symlink() and target.is_dir():
        target = target.resolve()  # replace the folder the link points to, keep the link
    check_output_folder(target, kind)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputFolderError(f"{target.parent}: cannot create the folder ({error.strerror or error})") from None
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}{STAGING_MARK}", dir=target.parent))
    try:
        yield staging
        _apply_umask(staging)
        check_output_folder(target, kind)  # it may have changed while we wrote
        if target.exists():
            if _exchange(staging, target):
                shutil.rmtree(staging)  # now the old folder
                return
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}{STAGING_MARK}", dir=target.parent))
            os.replace(target, old)  # an empty folder of ours is replaced by the rename
            os.replace(staging, target)
            shutil.rmtree(old)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
