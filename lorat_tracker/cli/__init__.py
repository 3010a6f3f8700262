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
    "demo-data": "lorat_tracker.cli.demo",
    "vot": "lorat_tracker.integrations.vot.cli",
}


# The core's messages give advice the way a Python caller writes it (``backbone=PATH``,
# ``device='cpu'``, ``variant='L-224'``); a CLI user reads the same advice as flags. Errors of the
# tracker options (``lorat_tracker.spec.SpecError``) carry their option as data and are rendered in
# flags directly; this table and ``cli_message`` remain for the core's own messages raised while a
# tracker is built (weights.py: ``pass backbone=PATH``, ``variant='L-224'``; tracker.py:
# ``use device='cpu'``), the one place that translates: core modules never need to know who called.
def _parameter_flags():
    from ..spec import options  # the tracker options' one definition (imports no torch)

    return {o.name: o.flag for o in options()}


PARAMETER_FLAGS = _parameter_flags()
_PYTHON_ARGUMENT = re.compile(r"(?<![\w.-])(%s)=(PATH\b|'[^'\s]*'|\"[^\"\s]*\"|)" % "|".join(PARAMETER_FLAGS))


def cli_message(text: str) -> str:
    """``pass backbone=PATH`` -> ``pass --backbone FILE``, ``use device='cpu'`` -> ``use --device cpu``."""
    def flag(m: re.Match) -> str:
        value = m.group(2)
        value = "FILE" if value == "PATH" else value.strip("'\"")
        return f"{PARAMETER_FLAGS[m.group(1)]} {value}" if value else PARAMETER_FLAGS[m.group(1)]

    return _PYTHON_ARGUMENT.sub(flag, text)


class UsageError(Exception):
    """A user mistake found by a subcommand: printed as one line, exit code 2."""


def help_text(doc: str) -> str:
    """A module docstring as ``--help`` text: RST literals (double backquotes) become `single` ones."""
    return re.sub(r"``(.+?)``", r"`\1`", doc.strip("\n"), flags=re.S)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lorat", description="LoRAT visual object tracker: track videos, run benchmarks, manage weights.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  lorat selftest\n  lorat track video.mp4 --box 10,20,50,40 --variant B-224 "
               "--weights base.bin --backbone dinov2_vitb14_pretrain.pth\n\nRun 'lorat COMMAND --help' for more.")
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"lorat-tracker {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    seen = set()
    for name, module in SUBCOMMANDS.items():
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
    from ..errors import LoRATError

    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.extra = extra
    from ..spec import FLAGS, SpecError

    try:
        return int(args.func(args) or 0)
    except SpecError as e:  # a tracker option: its message names the flags itself
        print(f"lorat {args.command}: error: {e.render(FLAGS)}", file=sys.stderr)
        return EXIT_USAGE
    except (LoRATError, UsageError, FileNotFoundError) as e:
        print(f"lorat {args.command}: error: {cli_message(str(e))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"lorat {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
