"""Writing output files: atomically, durably, and with the permissions the user's umask asks for.

Every file the project writes for a user (result and time files, reports, submission zips, merged
exports, tracker registries) goes through ``atomic_path`` / ``atomic_open``: the data is written to a
temporary file in the target's folder, flushed to disk (fsync), given mode ``0o666 & ~umask`` (what
``open()`` would have created; ``tempfile.mkstemp`` alone leaves 0600, unreadable by colleagues on a
shared server) and renamed onto the target with ``os.replace``. A reader, or a crash, sees either the
old file or the complete new one, never half of one. Written by hand because the standard library
has no atomic-replace writer and the packages that do (e.g. ``atomicwrites``) are unmaintained.

A failure while writing (full disk, read-only file system, no permission) is raised as ``OutputError``
naming the target file and the cause, never the temporary file. The temporary file's name carries the
writer's host and process id (``.NAME.HOST-PID.XXXX.partial``): one left by a writer that was killed
(kill -9, power loss) is removed by the next write of the same target on that host, so hidden
partials do not pile up.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import os
import socket
import tempfile
import threading
from typing import IO, Iterator, Optional

from .errors import OutputError

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


WRITE_FAULT_ADVICE = {errno.ENOSPC: "the disk is full - free some space or write elsewhere",
           errno.EDQUOT: "the disk quota is exceeded - free some space or write elsewhere",
           errno.EROFS: "the file system is read-only - write elsewhere",
           errno.EACCES: "permission denied - write elsewhere or change the folder's permissions",
           errno.EPERM: "not permitted - write elsewhere or change the folder's permissions"}


def output_error(path, error: OSError) -> OutputError:
    """``OutputError`` for a failed write of ``path``: the target's name, the cause and what to do."""
    cause = WRITE_FAULT_ADVICE.get(error.errno) or (error.strerror or str(error))
    out = OutputError(error.errno, f"cannot write {os.fspath(path)}: {cause}")
    out.filename = os.fspath(path)
    return out


def check_writable(path, folder: bool = False) -> None:
    """Raise ``OutputError`` now, before any work, when ``path`` (a file, or with ``folder`` a folder to
    write into) cannot be created: its nearest existing folder is read-only or not writable. A full
    disk cannot be foreseen; writing then raises ``OutputError`` too."""
    path = os.fspath(path)
    target = os.path.abspath(path)
    probe = target if folder and os.path.isdir(target) else os.path.dirname(target)
    while probe and not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if os.path.isdir(probe) and not os.access(probe, os.W_OK | os.X_OK):
        try:
            read_only = bool(os.statvfs(probe).f_flag & os.ST_RDONLY)
        except OSError:
            read_only = False
        raise output_error(path, OSError(errno.EROFS if read_only else errno.EACCES, "not writable"))


def write_error(path, error: BaseException) -> OutputError:
    """``OutputError`` for a library's own write error (safetensors' SafetensorError carries the OS error
    only in its text: "... (os error 28)")."""
    code = _os_error_code_in_text(error)
    return output_error(path, OSError(code, os.strerror(code)) if code else OSError(errno.EIO, str(error)))


def _os_error_code_in_text(error: BaseException):
    """The errno a library names only in its message ("... (os error 28)"), or None."""
    import re

    m = re.search(r"os error (\d+)", str(error))
    return int(m.group(1)) if m else None


def _partial_prefix(path: str) -> str:
    return f".{os.path.basename(path)}."


def _owner() -> str:
    return f"{socket.gethostname().replace('.', '_')}-{os.getpid()}"


def remove_stale_partials(path) -> None:
    """Remove the temporary files of earlier writes of ``path`` whose writer (same host) is gone."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    host = socket.gethostname().replace(".", "_")
    pattern = os.path.join(glob.escape(folder), glob.escape(_partial_prefix(path)) + "*.partial*")
    for tmp in glob.glob(pattern):
        owner = os.path.basename(tmp)[len(_partial_prefix(path)):].split(".", 1)[0]
        writer_host, _, pid = owner.rpartition("-")
        if writer_host != host or not pid.isdigit() or _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            os.remove(tmp)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: another user's live process
        return True
    return True


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold a Ctrl-C back until the block has run, then deliver it to the handler it was meant for.

    For steps that must not be cut in two (create a temporary file and remember its name; flush, chmod
    and rename it) and for imports whose C++ start-up calls Python (torch: a KeyboardInterrupt raised
    there crosses a pybind11 boundary and aborts the process). A Python-level handler records the
    signal, whichever thread the OS delivered it to; only the main thread can install one, and only
    it ever sees a KeyboardInterrupt, so elsewhere the block runs as it is."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(frame))
    except ValueError:  # no signal handling here (an embedded interpreter)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            if callable(previous):
                previous(signal.SIGINT, received[0])
            elif previous == signal.SIG_DFL:
                os.kill(os.getpid(), signal.SIGINT)


def new_partial(path, suffix: str = "", created: Optional[list] = None) -> str:
    """A new empty temporary file next to ``path`` (its folder made if needed) for ``commit_partial``.

    A Ctrl-C that came while the file was made is delivered once it exists; the file is then removed
    before the KeyboardInterrupt leaves, so no caller is left without the name of a file that exists.
    ``created``, if given, gets the name appended the moment the file exists (for a caller that must
    clean up even if the signal lands between this function's return and its own next step)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        remove_stale_partials(path)
        with interrupts_deferred():  # the deferred Ctrl-C is raised here, on leaving the block
            fd, tmp = tempfile.mkstemp(prefix=f"{_partial_prefix(path)}{_owner()}.", suffix=".partial" + suffix,
                                       dir=folder)
            os.close(fd)
            if created is not None:
                created.append(tmp)
    except OSError as e:
        raise output_error(path, e) from None
    except BaseException:
        if tmp is not None:
            discard_partial(tmp)
        raise
    return tmp


def commit_partial(tmp: str, path) -> None:
    """Flush ``tmp`` to disk, give it the umask's mode and rename it onto ``path``; on failure remove it
    and raise ``OutputError`` naming ``path``."""
    try:
        with interrupts_deferred():  # renamed whole, or removed: never left behind by a Ctrl-C
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.chmod(tmp, default_file_mode())
            os.replace(tmp, path)
    except OSError as e:
        discard_partial(tmp)
        raise output_error(path, e) from None
    except BaseException:
        discard_partial(tmp)
        raise


def discard_partial(tmp: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(tmp)


@contextlib.contextmanager
def atomic_path(path, suffix: str = "") -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` (umask-honouring mode).

    For writers that want a file name (``safetensors.save_file``, ``zipfile.ZipFile``; ``suffix`` for one
    that picks its format by the name's extension). On any exception (Ctrl-C included) the temporary
    file is removed and ``path`` is left untouched. An ``OSError`` of the file system (full, read-only,
    permissions) becomes ``OutputError`` naming ``path``.
    """
    path = os.fspath(path)
    created: list = []
    try:
        tmp = new_partial(path, suffix, created)
        yield tmp
    except BaseException as e:  # Ctrl-C included: the temporary file goes, the target stays as it was
        for made in created:
            discard_partial(made)
        if not created:
            raise
        fault = _write_fault_of(e, created[0], path)
        if fault is not None:
            raise output_error(path, fault) from None
        raise
    commit_partial(tmp, path)


def _write_fault_of(error: BaseException, tmp: str, path: str):
    """The ``OSError`` of the file system behind ``error``, if it is one: the error itself, the one a
    library re-raised as its own (torch.save: RuntimeError "unexpected pos" with the OSError as its
    context) or named only in its text (safetensors: "... (os error 28)")."""
    if isinstance(error, OutputError) or not isinstance(error, Exception):
        return None
    seen = error
    while seen is not None:
        if isinstance(seen, OSError) and not isinstance(seen, OutputError) and _is_write_fault(seen, tmp, path):
            return seen
        seen = seen.__cause__ or seen.__context__
    code = _os_error_code_in_text(error)
    return OSError(code, os.strerror(code)) if code in WRITE_FAULT_ADVICE else None


def _is_write_fault(error: OSError, tmp: str, path: str) -> bool:
    """An error of writing ``tmp`` / renaming it onto ``path`` (or a full / read-only disk anywhere): not a
    read error of some input that happened inside the ``with`` block."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return True
    return error.filename in (None, tmp, path) or getattr(error, "filename2", None) in (tmp, path)


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
