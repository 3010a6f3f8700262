"""``python -m lorat_tracker.integrations.pytracking PYTRACKING_DIR``: install LoRAT into a pytracking checkout."""
import argparse
import sys

from .install import PytrackingCheckoutError, install_templates


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lorat_tracker.integrations.pytracking",
        description="Copy pytracking/tracker/lorat and pytracking/parameter/lorat into a visionml/pytracking "
                    "checkout, so that `python run_tracker.py lorat b224 ...` finds LoRAT.",
        epilog="example:\n  python -m lorat_tracker.integrations.pytracking ~/src/pytracking\n"
               "  cd ~/src/pytracking/pytracking && LORAT_WEIGHTS=base.bin python run_tracker.py lorat b224 otb",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkout", metavar="PYTRACKING_DIR", help="the folder visionml/pytracking was cloned into")
    parser.add_argument("--overwrite", action="store_true", help="replace existing lorat folders")
    args = parser.parse_args(argv)
    try:
        files = install_templates(args.checkout, overwrite=args.overwrite)
    except PytrackingCheckoutError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in files:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
