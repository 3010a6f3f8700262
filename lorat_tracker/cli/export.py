"""``lorat export`` and ``lorat info``: make one self-contained weights file, and say what a file is.

The two ``--help`` descriptions are EXPORT_DESCRIPTION and INFO_DESCRIPTION below.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

from ..constants import EXPORT_FORMATS
from ..io import check_writable, same_file
from ..spec import TrackerSpec
from . import UsageError, job_started

EXPORT_DESCRIPTION = """\
lorat export: merge the LoRA into the backbone (what loading does anyway) and write one safetensors
file that carries the variant's configuration. Afterwards `--weights merged.safetensors` alone is
enough: no --variant, no --backbone, no network.
With --format onnx the merged network is written as ONNX (template and search crops and the
template mask in, score map and boxes out) for the onnxruntime, openvino and tensorrt backends; its
metadata carries the variant configuration and a digest of graph and weights, checked on load."""

INFO_DESCRIPTION = """\
lorat info: say what a weights file is. Reads any weights file LoRAT users have (the released .bin, a
training model.safetensors, a merged export from `lorat export`, a DINOv2 backbone: Meta .pth, timm
file or Hugging Face transformers folder with its config.json) and reports its variant, format,
parameter count, LoRA rank/alpha and whether it needs a --backbone. An ONNX file from
`lorat export --format onnx` is verified (digest) and described: variant, geometry, batch."""

EXPORT_EPILOG = """\
example:
  lorat export --variant B-224 --weights base.bin --backbone dinov2_vitb14_pretrain.pth \\
      --out lorat-B-224.safetensors
  lorat track clip.mp4 --box 120,80,60,40 --weights lorat-B-224.safetensors
  lorat export --weights lorat-B-224.safetensors --format onnx --dynamic-batch --out lorat-B-224.onnx"""

INFO_EPILOG = """\
examples:
  lorat info base.bin
  lorat info lorat-B-224.safetensors --json
  lorat info dinov2-base/            (a Hugging Face transformers folder: config.json + model.safetensors)
  lorat info lorat-B-224.onnx"""


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="merge LoRA and backbone into one self-contained weights file",
                       description=EXPORT_DESCRIPTION, epilog=EXPORT_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    TrackerSpec.add_arguments(p, groups=("model",), required=("weights",))
    p.add_argument("--out", required=True, metavar="FILE", help="the file to write (merged.safetensors, or "
                                                                 "model.onnx with --format onnx)")
    p.add_argument("--format", default="safetensors", choices=EXPORT_FORMATS,
                   help="safetensors (default: the merged weights, for backend torch) or onnx (the merged "
                        "network as an ONNX graph, for backends onnxruntime, openvino and tensorrt)")
    batch = p.add_mutually_exclusive_group()
    batch.add_argument("--batch", type=_positive_int, metavar="N",
                       help="--format onnx: a fixed batch of N targets (default 1; other counts are padded "
                            "or split into batches of N)")
    batch.add_argument("--dynamic-batch", action="store_true",
                       help="--format onnx: any number of targets per call")
    p.set_defaults(func=run_export)

    q = sub.add_parser("info", help="which variant and format a weights file is; whether it needs a backbone",
                       description=INFO_DESCRIPTION, epilog=INFO_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("file", metavar="FILE", help="any weights file: released .bin, model.safetensors, merged "
                                                "export, ONNX export or a DINOv2 backbone (file, or Hugging Face folder)")
    q.add_argument("--json", action="store_true", help="print the fields as JSON instead of text")
    q.set_defaults(func=run_info)


def run_export(args) -> int:
    from ..weights import build_model, export_merged, inspect_weights

    out = args.out
    if os.path.isdir(out):
        raise UsageError(f"--out {out} is a folder: pass a file name such as {os.path.join(out, 'merged.safetensors')}")
    for option, given in (("--weights", args.weights), ("--backbone", args.backbone)):
        if given and same_file(out, given):
            raise UsageError(f"--out {out} is one of the input files ({option}): pass another name")
    onnx = args.format == "onnx"
    if not onnx and (args.batch is not None or args.dynamic_batch):
        raise UsageError("--batch and --dynamic-batch apply to --format onnx only")
    if args.weights.lower().endswith(".onnx"):
        raise UsageError(f"--weights {args.weights} is already an ONNX export: pass the LoRAT weights or the "
                         "merged export it was made from")
    spec = TrackerSpec.from_args(args).check()
    check_writable(out)  # a read-only or forbidden folder: now, not after the load
    if onnx:
        from ..backends.onnx_file import check_export_available, is_onnx_path

        if not is_onnx_path(out):
            raise UsageError(f"--out {out}: an ONNX export's name ends in .onnx (backends recognise it by that)")
        check_export_available()  # a missing package: now, not after the load
    t0 = time.perf_counter()
    model = build_model(spec.variant, weights=spec.weights, backbone=spec.backbone, device="cpu")
    job_started()
    if onnx:
        from ..backends.onnx_file import export_onnx

        info = export_onnx(model, out, batch=None if args.dynamic_batch else (args.batch or 1))
        print(info.describe())
        print(f"wrote {out} ({os.path.getsize(out) / 2**20:.1f} MiB) in {time.perf_counter() - t0:.1f} s; run "
              f"it with backend onnxruntime, openvino or tensorrt (weights={out})")
        return 0
    # Atomic (temporary file, then rename): an interrupted export never leaves a half file behind.
    export_merged(model, out)
    print_info(inspect_weights(out))
    print(f"wrote {out} ({os.path.getsize(out) / 2**20:.1f} MiB) in {time.perf_counter() - t0:.1f} s; use it "
          f"alone: --weights {out} (no --variant or --backbone needed)")
    return 0


def matching_variants(info) -> list:
    """Bundled variants whose architecture fits the file (for files that do not name their variant)."""
    from ..config import available_variants, load_config

    found = []
    for name in available_variants():
        cfg = load_config(name)
        b = cfg.backbone
        if info.embed_dim is not None and b.embed_dim != info.embed_dim:
            continue
        if info.depth is not None and b.depth != info.depth:
            continue
        if info.ffn is not None and b.ffn != info.ffn:
            continue
        if info.search_grid is not None and cfg.search_grid != info.search_grid:
            continue
        if info.lora_rank is not None and cfg.lora.r != info.lora_rank:
            continue
        found.append(name)
    return found


def _merged_lora(info) -> str:
    """For a merged export: the LoRA rank/alpha it was trained with, from the stored variant config."""
    if info.kind != "merged-export" or info.container != "safetensors":
        return ""
    from safetensors import safe_open

    with safe_open(info.path, framework="pt") as f:
        lora = json.loads((f.metadata() or {}).get("config", "{}")).get("lora", {})
    if not isinstance(lora, dict) or not isinstance(lora.get("r"), int) or \
            not isinstance(lora.get("alpha", lora["r"]), (int, float)):
        return ""
    return f"merged into the backbone (rank {lora['r']}, alpha {lora.get('alpha', lora['r']):g})"


def print_info(info, candidates=()) -> None:
    from . import terminal_safe

    print(terminal_safe(info.describe()))
    merged_lora = _merged_lora(info)
    if merged_lora:
        print(terminal_safe(f"LoRA:            {merged_lora}"))
    if candidates and (info.variant is None or info.variant not in candidates):
        print(f"matching variants: {', '.join(candidates)} (bundled configs with this architecture)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text!r}")
    return value


def run_info(args) -> int:
    from ..weights import inspect_weights

    if args.file.lower().endswith(".onnx"):
        from ..backends.onnx_file import read_onnx

        info = read_onnx(args.file)
        if args.json:
            data = dataclasses.asdict(info)
            data["cfg"] = json.loads(info.cfg.to_json())
            print(json.dumps(data, indent=2))
        else:
            from . import terminal_safe

            print(terminal_safe(info.describe()))
        return 0
    info = inspect_weights(args.file)
    candidates = matching_variants(info) if info.embed_dim is not None else []
    if args.json:
        data = dataclasses.asdict(info)
        data["matching_variants"] = candidates
        print(json.dumps(data, indent=2))
        return 0
    print_info(info, candidates)
    if info.kind.startswith("backbone"):
        print("this is a DINOv2 backbone: pass it with --backbone, next to the LoRAT weights (--weights)")
    elif info.kind == "unknown":
        print("this file holds none of the tensors of a LoRAT model")
    return 0
