"""``lorat demo-data DIR --layout L``: write small synthetic sequences in a dataset's own layout.

Textured objects moving over textured backgrounds, with exact boxes (and masks for ``vots``): enough to
try every command and harness offline with the bundled test-size models, as the documentation's
examples do. DIR must be missing or empty (``--force`` writes into a non-empty one, replacing files of
the same name), so a typo never mixes demo files into a real dataset.
"""
from __future__ import annotations

import argparse
import os

from . import UsageError, help_text

EPILOG = """\
examples:
  lorat demo-data demo/LaSOT --layout lasot
  lorat demo-data demo/videos --layout folder --count 8 --frames 30 --seed 100
  lorat demo-data demo/vot --layout vot && lorat vot workspace --workspace ws --stack vot2022/shorttermbox --sequences demo/vot"""


def _layouts():
    # The names only, without importing numpy/cv2 (lorat --help imports nothing heavy).
    return ("lasot", "got10k", "otb", "trackingnet", "tnl2k", "folder", "vot", "vots")


def add_parser(sub) -> None:
    p = sub.add_parser("demo-data", help="write small synthetic datasets (LaSOT, GOT-10k, VOT, ... layouts)",
                       description=help_text(__doc__), epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", metavar="DIR", help="the dataset root to write (missing or empty, unless --force)")
    p.add_argument("--layout", required=True, choices=_layouts(),
                   help="lasot, got10k (val subset), otb, trackingnet (TEST), tnl2k, folder (lorat train's own "
                        "layout, one folder per video), vot (box sequences with anchors), vots (two-object masks)")
    p.add_argument("--count", type=int, metavar="N", help="number of sequences (default: 3, 2 for tnl2k/vot/vots)")
    p.add_argument("--frames", type=int, metavar="N", help="frames per sequence (default: 12; 8 tnl2k; 10 vot/vots)")
    p.add_argument("--seed", type=int, metavar="S", help="random seed (default: one per layout)")
    p.add_argument("--force", action="store_true", help="write into a non-empty DIR")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..demo import LAYOUTS

    layout = LAYOUTS[args.layout]
    count = layout.count if args.count is None else args.count
    frames = layout.frames if args.frames is None else args.frames
    seed = layout.seed if args.seed is None else args.seed
    if count < 1 or frames < 2:
        raise UsageError(f"--count must be >= 1 and --frames >= 2 (got {count} and {frames})")
    if layout.max_count and count > layout.max_count:
        raise UsageError(f"--layout {args.layout} has at most {layout.max_count} sequences (its names come from "
                         f"the benchmark's own list); got --count {count}")
    if os.path.exists(args.dir) and not os.path.isdir(args.dir):
        raise UsageError(f"{args.dir} is a file, not a folder: pass a folder to write the dataset into")
    if os.path.isdir(args.dir) and os.listdir(args.dir) and not args.force:
        raise UsageError(f"{args.dir} is not empty: pass an empty or new folder, or --force to write into it")
    from ..io import check_writable
    from . import job_started

    check_writable(args.dir, folder=True)  # read-only or forbidden: one line now
    job_started()  # from here on a failure (a full disk) is one of writing the data
    sequences = layout.write(args.dir, count, frames, seed)
    print(f"wrote {len(sequences)} sequences of {frames} frames ({layout.description}) to {args.dir}: "
          f"{', '.join(sequences)}")
    return 0
