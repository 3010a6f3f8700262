"""``python -m lorat_tracker.integrations.pytracking PYTRACKING_DIR``: install LoRAT into a pytracking checkout."""
import argparse
import sys

from .install import PytrackingCheckoutError, install_templates


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lorat_tracker.integrations.pytracking",
        description="Copy pytracking/tracker/lorat and pytracking/parameter/lorat into a visionml/pytracking\n"
                    "checkout, so that `python run_tracker.py lorat b224 ...` finds LoRAT. Parameter files:\n"
                    "b224, b378, l224, l378, g224, g378 (the released models) and export (a merged export\n"
                    "from `lorat export`, any variant).",
        epilog="examples:\n  python -m lorat_tracker.integrations.pytracking ~/src/pytracking\n"
               "  cd ~/src/pytracking/pytracking\n"
               "  LORAT_WEIGHTS=/path/to/base.bin LORAT_BACKBONE=/path/to/dinov2_vitb14_pretrain.pth \\\n"
               "      python run_tracker.py lorat b224 --dataset_name otb\n"
               "  LORAT_WEIGHTS=/path/to/lorat-L-378.safetensors python run_tracker.py lorat export --dataset_name otb\n\n"
               "environment: LORAT_<OPTION> for every tracker option (LORAT_WEIGHTS, LORAT_BACKBONE, LORAT_VARIANT,\n"
               "LORAT_DEVICE, LORAT_PRECISION, LORAT_BACKEND, LORAT_THREADS, ...; see lorat track --help).\n"
               "pytracking skips sequences that already have results (tracking_results/lorat/<param>/): after\n"
               "switching weights pass --runid N or move the old results away.",
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
