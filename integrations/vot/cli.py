"""``lorat vot``: register LoRAT in a VOT workspace, build offline workspaces, run the patched ``vot``.

    lorat vot register --workspace WS --variant B-224 --weights W [--backbone B] [--name ID] ...
    lorat vot workspace --workspace WS --stack STACK (--sequences DIR | --demo N)
    lorat vot ARGS...          the `vot` command (evaluate, analysis, report, test, pack, ...) with
                               vot-toolkit 0.9.0's multistart/realtime/supervised bugs fixed in-process
                               (plain `vot` gets the same fixes from lorat-tracker's start-up hook),
                               no update check, and exit status 1 when the tracker fails

Nothing here imports ``vot`` or ``trax`` until a command runs, so ``lorat`` works without them.
"""
from __future__ import annotations

import argparse
import sys

USAGE = __doc__.split("\n\n")[1]
VERBS = ("register", "workspace")  # lorat's own verbs; every other first argument goes to the toolkit


def add_parser(sub) -> None:
    # prefix_chars="\0": every argument after `vot`, options included, reaches run() untouched.
    p = sub.add_parser("vot", help="VOT toolkit: register LoRAT, build a workspace, run `vot` with fixes",
                       add_help=False, prefix_chars="\0")
    p.add_argument("vot_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=run)


def _register_parser() -> argparse.ArgumentParser:
    from lorat_tracker.cli import OneLineParser
    from lorat_tracker.spec import TrackerSpec

    from .registration import DEFAULT_TIMEOUT_S

    p = OneLineParser(
        prog="lorat vot register",
        description="Write (or update) the LoRAT entry of a VOT workspace's trackers.ini, keeping the other\n"
                    "trackers. Afterwards `vot evaluate --workspace WS ID` runs LoRAT on any bundled stack:\n"
                    "installing lorat-tracker adds a start-up hook that fixes vot-toolkit 0.9.0's multistart,\n"
                    "realtime and supervised experiments whenever `vot` is imported (LORAT_VOT_HOOK=0 turns it\n"
                    "off). `lorat vot evaluate ...` is the same command with the fixes applied in-process, no\n"
                    "update check and a non-zero exit status when the tracker fails.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  lorat vot register --workspace vot-ws --variant B-224 --weights base.bin \\\n"
               "      --backbone dinov2_vitb14_pretrain.pth --name LoRAT_B224 --device cuda\n"
               "  vot evaluate --workspace vot-ws LoRAT_B224\n"
               "VOTS masks with SAM:\n  lorat vot register --workspace vots-ws --variant g-378 --weights giant_378.bin \\\n"
               "      --backbone dinov2_vitg14_pretrain.pth --device cuda --masks sam --sam-checkpoint sam_vit_h_4b8939.pth")
    p.add_argument("--workspace", required=True, help="VOT workspace directory (holds config.yaml)")
    # the model and runtime options of the tracker spec (--variant ... --backend --threads), as in `lorat track`
    TrackerSpec.add_arguments(p, groups=("model", "runtime"), required=("weights",))
    p.add_argument("--name", help="tracker identifier in trackers.ini (default LoRAT_<variant>)")
    p.add_argument("--label", help="the tracker's name in the toolkit's reports (default: LoRAT <variant>, with the "
                                   "backend and precision when they are not torch and auto)")
    p.add_argument("--timeout", type=int, default=None,
                   help=f"seconds the toolkit waits for each reply (default {DEFAULT_TIMEOUT_S}, more with --masks "
                        "sam: room for SAM on a 20-object frame on the device, scaled by the checkpoint's measured "
                        "size; model loading happens before the handshake and is not counted)")
    TrackerSpec.add_arguments(p, groups=("masks",), help={
        "masks": "what mask stacks (VOTS) get: none = the box as a filled mask (default), sam = SAM's mask "
                 "of each box, exactly as the official LoRAT segmentify (box stacks keep rectangles)"})
    p.add_argument("--multiobject", default="auto", choices=("auto", "on", "off"),
                   help="track all objects of a sequence in one batch (auto: on unless the stack has "
                        "supervised experiments, which need one object at a time)")
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="do not load the model once to check the files fit the variant")
    return p


def _workspace_parser() -> argparse.ArgumentParser:
    from lorat_tracker.cli import OneLineParser

    p = OneLineParser(
        prog="lorat vot workspace",
        description="Create a VOT workspace that runs offline: your sequences (linked, not copied) or "
                    "synthetic demo sequences, list.txt, config.yaml for STACK and an empty trackers.ini.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  lorat vot workspace --workspace vot-demo --stack tests/multiobject --demo 2\n"
               "  lorat vot workspace --workspace vot-ws --stack vot2022/shorttermbox --sequences data/vot2022stb")
    p.add_argument("--workspace", required=True, help="new workspace directory")
    p.add_argument("--stack", required=True,
                   help="bundled stack (vot2022/shorttermbox, tests/multiobject, vots2024/main, ...) or a YAML file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--sequences", help="directory of sequences in the VOT layout (<name>/color/%%08d.jpg, "
                                         "groundtruth.txt or groundtruth_<id>.txt)")
    src.add_argument("--demo", type=int, metavar="N", help="N synthetic sequences (the toolkit's moving cow)")
    p.add_argument("--demo-objects", type=int, default=1, help="objects per demo sequence (default 1)")
    p.add_argument("--demo-length", type=int, default=30, help="frames per demo sequence (default 30)")
    p.add_argument("--demo-masks", action="store_true",
                   help="demo ground truth as masks (the cow's silhouette, as in VOTS) instead of rectangles")
    p.add_argument("--copy", action="store_true", help="copy the sequence files instead of linking them")
    return p


def _need_vot() -> None:
    from lorat_tracker.cli import UsageError

    try:
        from .compat import _fix_attributee

        _fix_attributee()
        import trax  # noqa: F401
        import vot  # noqa: F401
    except ImportError as e:
        raise UsageError(f"the VOT toolkit is not installed ({e}) - install it with: pip install \"lorat-tracker[vot]\"") from None
    except TypeError as e:
        raise UsageError(f"`import vot` fails ({e}) - pin attributee: pip install \"attributee==0.1.9\"") from None


def run(args) -> int:
    argv = list(args.vot_args)
    if not argv or argv[0] in ("-h", "--help", "help"):
        from lorat_tracker.cli import help_text

        print("usage:\n" + help_text(USAGE) + "\n\n`lorat vot register --help`, `lorat vot workspace --help`, "
              "`lorat vot --help-vot` (the toolkit's own help)")
        return 0
    if argv[0] == "--help-vot":
        argv = ["--help"]
    if argv[0] == "register":
        a = _register_parser().parse_args(argv[1:])
        _need_vot()
        from lorat_tracker.spec import TrackerSpec

        from .registration import register

        from lorat_tracker.cli import job_started

        register(a.workspace, TrackerSpec.from_args(a), name=a.name, timeout=a.timeout, multiobject=a.multiobject,
                 check=a.check, on_start=job_started, label=a.label)
        return 0
    if argv[0] == "workspace":
        a = _workspace_parser().parse_args(argv[1:])
        _need_vot()
        from lorat_tracker.cli import job_started

        from .workspace import create_workspace

        create_workspace(a.workspace, a.stack, sequences=a.sequences, demo=a.demo or 0,
                         demo_objects=a.demo_objects, demo_length=a.demo_length, copy=a.copy,
                         demo_masks=a.demo_masks, on_start=job_started)
        return 0
    _need_vot()
    from .compat import run_vot

    sys.stdout.flush()
    return run_vot(argv)
