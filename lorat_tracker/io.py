"""Writing output files: atomically, durably, and with the permissions the user's umask asks for.

Every file the project writes for a user (result and time files, reports, submission zips, merged
exports, tracker registries) goes through ``atomic_path`` / ``atomic_open``: the data is written to a
temporary file in the target's folder, flushed to disk (fsync), given mode ``0o666 & ~umask`` (what
``open()`` would have created; ``tempfile.mkstemp`` alone leaves 0600, unreadable by colleagues on a
shared server) and renamed onto the target with ``os.replace``. A reader, or a crash, sees either the
old file or the complete new one, never half of one. Written by hand because the standard library
has no atomic-replace writer and the packages that do (e.g. ``atomicwrites``) are unmaintained.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from typing import IO, Iterator

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux >= 4.7 /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    # os.umask can only be read by setting it: set and restore under a lock (other threads writing
    # files in between would briefly see the same value, which is the one we restore).
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: 0o666 minus the umask."""
    return 0o666 & ~current_umask()


@contextlib.contextmanager
def atomic_path(path) -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` (umask-honouring mode).

    For writers that want a file name (``safetensors.save_file``, ``zipfile.ZipFile``...). On any
    exception (Ctrl-C included) the temporary file is removed and ``path`` is left untouched.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".partial", dir=folder)
    os.close(fd)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path, mode: str = "w", **kwargs) -> Iterator[IO]:
    """``open(path, mode)`` that only replaces ``path`` once the ``with`` block has finished."""
    if not mode.startswith("w"):
        raise ValueError(f"atomic_open writes whole files: mode must start with 'w', got {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f
            f.flush()


def atomic_write_text(path, text: str, encoding: str = "utf-8") -> None:
    with atomic_open(path, "w", encoding=encoding) as f:
        f.write(text)


def same_file(a, b) -> bool:
    """True if ``a`` and ``b`` name the same file: the same absolute path (whether it exists or not), or
    the same existing file reached another way (links, relative paths)."""
    if os.path.abspath(a) == os.path.abspath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False
