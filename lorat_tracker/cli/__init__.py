"""``lorat``: the command line, the composition root of the project.

Each subcommand lives in its own module exposing ``add_parser(subparsers)`` (which sets
``func``). Building the parser imports nothing heavy: a subcommand module imports torch, timm, cv2 or
a harness only inside the function that runs the command, so ``lorat --help``, ``lorat --version``
and argument errors answer at once, and ``lorat selftest`` never imports the harness packages.
Exit codes: 0 success, 1 the job ran but failed (e.g. a self-test deviation above tolerance), 2 a
user mistake (bad argument, missing file, wrong weights), 130 interrupted with Ctrl-C.
"""
from __future__ import annotations

import argparse
import importlib
import re
import sys
from typing import List, Optional

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

# subcommand -> module defining add_parser(subparsers); order = order in --help
SUBCOMMANDS = {
    "track": "lorat_tracker.cli.track",
    "eval": "lorat_tracker.cli.evaluate",
    "train": "lorat_tracker.cli.train",
    "export": "lorat_tracker.cli.export",
    "info": "lorat_tracker.cli.export",
    "selftest": "lorat_tracker.cli.selftest",
    "bench": "lorat_tracker.cli.bench",
    "demo-data": "lorat_tracker.cli.demo",
    "vot": "lorat_tracker.integrations.vot.cli",
}


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    """``text`` with control characters (other than newline and tab) shown as escapes: strings read from
    a file (an edited weights file's metadata) must not put terminal control sequences on screen."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


class UsageError(Exception):
    """A user mistake found by a subcommand: printed as one line, exit code 2."""


_JOB = {"started": False}


def job_started() -> None:
    """Mark that the command's work has begun (tracking, training, writing its outputs): an error from now
    on exits 1 (the job ran but failed), one before it 2 (nothing was done: a mistake in what was asked)."""
    _JOB["started"] = True


def os_error_message(e: OSError) -> str:
    """One line for an ``OSError`` that no command translated: the file(s) and the system's reason."""
    from ..io import WRITE_FAULT_ADVICE

    files = " -> ".join(str(f) for f in (e.filename, getattr(e, "filename2", None)) if f is not None)
    if e.errno in WRITE_FAULT_ADVICE and e.filename is not None:
        return f"cannot write {e.filename}: {WRITE_FAULT_ADVICE[e.errno]}"
    reason = e.strerror or str(e)
    return f"{files}: {reason}" if files else reason


def help_text(doc: str) -> str:
    """A module docstring as ``--help`` text: RST literals (double backquotes) become `single` ones."""
    return re.sub(r"``(.+?)``", r"`\1`", doc.strip("\n"), flags=re.S)


class OneLineParser(argparse.ArgumentParser):
    """argparse with the error as the command's one line (``lorat track: error: ...``) instead of the whole
    usage block over it; ``--help`` still shows the usage. Subcommand parsers inherit the class."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="lorat", description="LoRAT visual object tracker: track videos, run benchmarks, manage weights.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  lorat selftest\n  lorat track video.mp4 --box 10,20,50,40 --variant B-224 "
               "--weights base.bin --backbone dinov2_vitb14_pretrain.pth\n\nRun 'lorat COMMAND --help' for more.")
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"lorat-tracker {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    seen = set()
    for module in SUBCOMMANDS.values():
        if module in seen:
            continue
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            if e.name and (e.name == module or module.startswith(e.name + ".")):
                continue  # that subcommand is not part of this build
            raise
        seen.add(module)
        mod.add_parser(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run one command; the exit code (see the module's docstring). Ctrl-C at any moment, during start-up
    or after the work is done included, is one line and 130, never a traceback."""
    import signal

    as_program = argv is None
    try:
        try:
            code = _main(sys.argv[1:] if argv is None else argv)
        except KeyboardInterrupt:
            print("lorat: interrupted", file=sys.stderr)
            code = EXIT_INTERRUPTED
        if as_program:
            # The work is done and its outputs written: a Ctrl-C arriving during interpreter shutdown (atexit
            # handlers of torch and others) must not print a traceback over the result.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    except KeyboardInterrupt:
        # A Ctrl-C held back during an import and delivered while the first one was being reported, or in
        # the moment before SIGINT is ignored: the fault matrix once saw the process die of it (exit -2).
        code = EXIT_INTERRUPTED
        if as_program:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    if as_program and code == EXIT_INTERRUPTED:
        # CPython (3.11) can remember a KeyboardInterrupt that left code run through PyRun_String (C extensions
        # use it while they import) and then kills itself with SIGINT at exit, whatever status was asked
        # for: the fault matrix saw `lorat info` and `lorat vot workspace` print "interrupted" and die -2.
        # The command has written and closed its files on the way out: leave with 130 now.
        import os

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


class _SigintDeferringFinder:
    """A ``sys.meta_path`` finder that runs the import of the named top-level modules under
    ``lorat_tracker.io.interrupts_deferred`` (a KeyboardInterrupt raised inside Python code that torch's
    C++ start-up calls crosses a pybind11 boundary and aborts the process, exit -6 and a core dump,
    instead of exiting 130; inside numpy's or matplotlib's C start-up it becomes an ImportError). torch is
    imported lazily, wherever a command first needs it, so the import itself is wrapped rather than moved
    (argument errors still answer without importing it)."""

    def __init__(self, names):
        self.names = set(names)

    def find_spec(self, name, path=None, target=None):
        if name not in self.names:
            return None
        import importlib.util

        self.names.discard(name)  # once; and so that the look-up below skips this finder
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def deferred_exec(module):
            from ..io import interrupts_deferred

            with interrupts_deferred():
                exec_module(module)

        loader.exec_module = deferred_exec
        return spec


def _defer_sigint_while_importing(*names: str) -> None:
    names = [n for n in names if n not in sys.modules]
    if names and not any(isinstance(f, _SigintDeferringFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _SigintDeferringFinder(names))


def _one_line_warnings() -> None:
    """The project's own warnings (slow precision, damaged frames, compile fallback) as one line each,
    "lorat: warning: ...", instead of Python's file:line and source line; others keep their format."""
    import warnings

    previous = warnings.formatwarning

    def formatwarning(message, category, filename, lineno, line=None):
        if category.__module__.startswith("lorat_tracker"):
            return f"lorat: warning: {message}\n"
        return previous(message, category, filename, lineno, line)

    if getattr(warnings.formatwarning, "__name__", "") != "formatwarning" or \
            getattr(warnings.formatwarning, "__module__", "") != __name__:
        warnings.formatwarning = formatwarning


def _main(argv: List[str]) -> int:
    import os

    from ..errors import LoRATError

    # OpenCV's and FFmpeg's own log lines ("[ WARN:0] ... Failed to write frame" per frame, libav's
    # container notes) would bury the one line the command prints about the same fault.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

    _one_line_warnings()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_extra", False):
        print(f"lorat {args.command}: error: unrecognized arguments: {' '.join(extra)} (see 'lorat {args.command} "
              "--help')", file=sys.stderr)
        return EXIT_USAGE
    if extra:
        args.extra = extra
    from ..spec import FLAGS, SpecError

    # The C extensions a Ctrl-C breaks mid-import: torch aborts the process; numpy, OpenCV and matplotlib
    # turn the KeyboardInterrupt into an ImportError ("initialization failed") with a traceback (both
    # found by the fault matrix's Ctrl-C rows). Each import runs whole, then the Ctrl-C is delivered.
    _defer_sigint_while_importing("torch", "numpy", "cv2", "matplotlib")
    _JOB["started"] = False
    failed = lambda: EXIT_FAILED if _JOB["started"] else EXIT_USAGE  # noqa: E731
    try:
        return int(args.func(args) or 0)
    except SpecError as e:  # a tracker option: its message names the flags itself
        print(f"lorat {args.command}: error: {e.render(FLAGS)}", file=sys.stderr)
        return EXIT_USAGE
    except LoRATError as e:  # options it names (LoRATError.naming) are written as flags
        print(f"lorat {args.command}: error: {e.render(FLAGS)}", file=sys.stderr)
        return failed()
    except (UsageError, FileNotFoundError) as e:
        print(f"lorat {args.command}: error: {e}", file=sys.stderr)
        return failed()
    except OSError as e:  # the file system said no (permissions, read-only, full, ...): one line naming the file
        print(f"lorat {args.command}: error: {os_error_message(e)}", file=sys.stderr)
        return failed()
    except KeyboardInterrupt:
        print(f"lorat {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
