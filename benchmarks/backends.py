"""Every available backend side by side: per-frame ``step`` time against torch fp32 and bf16 (CPU) or
torch fp16 + CUDA graphs (GPU), per variant and batch size, and each backend's box agreement.

All configurations run in one process on the same frames and targets, *interleaved*: each round
times one ``step`` of every configuration, in an order rotated each round, so drifts in machine load
hit all of them alike; the table gives medians, and "vs torch fp32" is the median of per-round
ratios. Random weights are fine for speed (pass --weights/--backbone to time real ones).

Agreement, on a synthetic sequence with each configuration tracking on its own: fp32 backends report
their largest box deviation from torch fp32 in pixels, reduced precisions (torch bf16/fp16, OpenVINO
bf16 and int8 - NNCF-calibrated on other synthetic sequences -, TensorRT fp16) their per-frame IoU
with fp32 (mean and min), and all of them the network's per-cell deviation on identical crops. With random weights the score map
is nearly flat, so one flipped argmax moves a box far: these IoUs are a pessimistic stand-in and say
nothing about accuracy on real data.

    python benchmarks/backends.py --variant B-224 --batch-size 1,4 --rounds 7 --markdown docs/backends.md
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from speed import build_model, iou, machine_info, render_sequence, sync  # noqa: E402

from lorat_tracker.backends import import_runtime, load_network  # noqa: E402
from lorat_tracker.backends.onnx_file import export_onnx  # noqa: E402
from lorat_tracker.errors import BackendError, LoRATError  # noqa: E402
from lorat_tracker.tracker import LoRATTracker  # noqa: E402

import common  # noqa: E402  (benchmarks/common.py, beside this script)


def candidate_configs(device: torch.device):
    """(backend, precision, compile) to try on this device; unavailable ones are reported, not timed."""
    if device.type == "cuda":
        return [("torch", "fp32", False), ("torch", "fp16", "cudagraph"), ("onnxruntime", "fp32", False),
                ("tensorrt", "fp32", False), ("tensorrt", "fp16", False)]
    return [("torch", "fp32", False), ("torch", "fp32", "onednn"), ("torch", "bf16", False),
            ("onnxruntime", "fp32", False), ("openvino", "fp32", False), ("openvino", "bf16", False),
            ("openvino", "int8", False), ("tensorrt", "fp16", False)]


class Config:
    """One (backend, precision, batch): a tracker and its targets on ``batch`` sequences."""

    def __init__(self, backend, precision, compile, batch, tracker, sequences):
        self.backend, self.precision, self.compile, self.batch = backend, precision, compile, batch
        self.tracker = tracker
        self.sequences = [sequences[i % len(sequences)] for i in range(batch)]
        self.step_s, self.floor_ms = [], []
        self._restart()

    @property
    def label(self) -> str:
        extra = {False: "", "onednn": " + oneDNN Linear"}.get(self.compile, " + CUDA graphs")
        return f"{self.backend} {self.precision}{extra}"

    def _restart(self):
        self.targets = [self.tracker.new_target(frames[0], boxes[0]) for frames, boxes in self.sequences]
        self.t = 1

    def step(self) -> float:
        if self.t >= len(self.sequences[0][0]):
            self._restart()  # not timed
        frames = [seq[0][self.t] for seq in self.sequences]
        sync(self.tracker.device)
        start = time.perf_counter()
        self.tracker.step(self.targets, frames)  # ends with the host copy of the boxes: synced
        elapsed = time.perf_counter() - start
        self.t += 1
        return elapsed


def build_trackers(model, onnx_path, device, candidates, calibration):
    trackers, skipped = {}, {}
    for backend, precision, compile in candidates:
        key = (backend, precision, compile)
        t0 = time.perf_counter()
        try:
            if backend == "torch":
                tr = LoRATTracker(model, device=device, precision=precision, compile=compile)
            else:
                import_runtime(backend)
                path = onnx_path
                if precision == "int8":
                    if not calibration:
                        raise BackendError("int8 skipped (--int8-frames 0)")
                    from lorat_tracker.backends.quantize import quantize_int8

                    path = onnx_path.replace(".onnx", ".int8.onnx")
                    quantize_int8(onnx_path, calibration, path)
                tr = LoRATTracker(load_network(backend, None, path, None, device, precision), device=device,
                                  precision=precision, backend=backend)
        except LoRATError as e:
            skipped[key] = str(e).split(" - ")[0]
            print(f"skipped {backend} {precision}: {e}", file=sys.stderr)
            continue
        trackers[key] = tr
        print(f"built {backend} {precision} in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return trackers, skipped


def measure(configs, rounds, record, desc, progress=True, probes=None):
    """Interleaved rounds; with ``probes`` (precision -> FloorProbe), each recorded step is followed by
    a floor sample of its precision, so "x of the floor" compares a step with the floor of its moment."""
    for r in tqdm(range(rounds), desc=desc, unit="round", file=sys.stderr, disable=not progress, dynamic_ncols=True):
        shift = r % len(configs)
        for cfg in configs[shift:] + configs[:shift]:
            elapsed = cfg.step()
            if record:
                cfg.step_s.append(elapsed)
                probe = (probes or {}).get(cfg.precision)
                if probe is not None:
                    cfg.floor_ms.append(probe.sample())


def agreement(trackers, frames, boxes, progress=True):
    """Each configuration tracks the sequence on its own; compared with torch fp32 frame by frame."""
    out = {}
    for key, tr in tqdm(list(trackers.items()), desc="agreement", unit="config", file=sys.stderr,
                        disable=not progress, dynamic_ncols=True):
        tr.initialize(frames[0], boxes[0])
        out[key] = np.array([tr.track(f).box for f in frames[1:]])
    ref = out[("torch", "fp32", False)]
    cells = network_agreement(trackers, frames, boxes)
    result = {}
    for key, b in out.items():
        ious = iou(ref, b)
        result[key] = {"max_box_dev_px": float(np.abs(b - ref).max()), "mean_iou": float(ious.mean()),
                       "min_iou": float(ious.min()), "frames": len(b), **cells[key]}
    return result


def network_agreement(trackers, frames, boxes):
    """The network alone on identical inputs (crops around the true box): every cell's box and score,
    not just the chosen one, so it stays informative when random weights give flat score maps."""
    ref = trackers[("torch", "fp32", False)]
    size = ref.cfg.search.size
    target = ref.new_target(frames[0], boxes[0])
    outputs = {key: [] for key in trackers}
    for t in range(1, len(frames)):
        x0, y0, w, h = boxes[t]
        x = ref.search_input(frames[t], (x0, y0, x0 + w, y0 + h), target)
        for key, tracker in trackers.items():
            score_map, cell_boxes = tracker.network_outputs(target.template[None], x, target.mask[None])
            outputs[key].append((score_map.float().sigmoid().cpu().numpy().ravel(),
                                 cell_boxes.float().cpu().numpy().reshape(-1, 4) * size))
    result = {}
    for key, outs in outputs.items():
        s_ref = np.concatenate([o[0] for o in outputs[("torch", "fp32", False)]])
        b_ref = np.concatenate([o[1] for o in outputs[("torch", "fp32", False)]]).astype(np.float64)
        s_have = np.concatenate([o[0] for o in outs])
        b_have = np.concatenate([o[1] for o in outs]).astype(np.float64)
        xywh = lambda b: np.c_[b[:, :2], b[:, 2:] - b[:, :2]]  # noqa: E731
        result[key] = {"cell_max_box_dev_px": float(np.abs(b_have - b_ref).max()),
                       "cell_mean_iou": float(iou(xywh(b_ref), xywh(b_have)).mean()),
                       "cell_max_score_diff": float(np.abs(s_have - s_ref).max())}
    return result


def main(argv=None) -> int:
    ap = common.parser(__doc__, "variant", "weights", "backbone", "device", "batch_size", "warmup", "threads", "seed",
                       "iou_frames", "json_out", "progress")
    ap.add_argument("--rounds", type=int, default=7, help="timed interleaved rounds")
    ap.add_argument("--int8-frames", type=int, default=16,
                    help="OpenVINO int8: NNCF calibration frames, from synthetic sequences not used for "
                         "timing or agreement (0: skip int8)")
    ap.add_argument("--markdown", help="write the table here (e.g. docs/backends.md)")
    ap.add_argument("--note", default="", help="a line for the markdown report (e.g. who else used the machine)")
    args = ap.parse_args(argv)
    device = common.apply_runtime(args)
    batches = common.comma_list(args.batch_size, int)
    load_before = os.getloadavg()
    report = {"machine": machine_info(device), "load_before": load_before, "rounds": args.rounds,
              "weights": args.weights or "random", "device": str(device), "variants": [],
              "command": " ".join(["benchmarks/backends.py"] + (argv if argv is not None else sys.argv[1:]))}
    for variant in [v.strip() for v in args.variant.split(",") if v.strip()]:
        args.variant = variant
        print(f"building {variant} ({args.weights or 'random weights'}) ...", file=sys.stderr, flush=True)
        model = build_model(args)
        with tempfile.TemporaryDirectory(prefix="lorat-bench-") as folder:
            onnx_path = os.path.join(folder, f"{variant}.onnx")
            t0 = time.perf_counter()
            export_onnx(model, onnx_path, batch=None)
            export_s = time.perf_counter() - t0
            print(f"exported ONNX in {export_s:.1f} s", file=sys.stderr, flush=True)
            half = max(args.int8_frames // 2, 2)
            calibration = [render_sequence(half, seed=args.seed + 200 + i) for i in range(2)] \
                if args.int8_frames > 0 else []
            calibration = [(frames, boxes[0]) for frames, boxes in calibration]
            trackers, skipped = build_trackers(model, onnx_path, device, candidate_configs(device), calibration)
        sequences = [render_sequence(max(args.rounds + args.warmup, 8) + 1, seed=args.seed + i)
                     for i in range(max(batches))]
        rows = []
        for batch in batches:
            configs = [Config(*key, batch, tr, sequences) for key, tr in trackers.items()]
            measure(configs, args.warmup, False, f"{variant} b{batch} warm-up", args.progress)
            probes = common.probes(trackers[("torch", "fp32", False)].cfg, sorted({c.precision for c in configs}),
                                   device)
            measure(configs, args.rounds, True, f"{variant} b{batch} timing", args.progress, probes)
            base = next(c for c in configs if (c.backend, c.precision) == ("torch", "fp32"))
            floor_of = {p: probe and probe.floor for p, probe in probes.items()}
            for c in configs:
                times = np.array(c.step_s)
                floor_ms, x = common.paired_floor(probes.get(c.precision), times * 1e3 / batch, c.floor_ms)
                rows.append({"backend": c.backend, "precision": c.precision, "compile": c.compile, "batch": batch,
                             "label": c.label, "step_ms": float(np.median(times) * 1e3),
                             "step_ms_min_max": [float(times.min() * 1e3), float(times.max() * 1e3)],
                             "ms_per_target": float(np.median(times) * 1e3 / batch),
                             "vs_torch_fp32": float(np.median(np.array(base.step_s) / times)),
                             "floor_ms": floor_ms, "x_of_floor": x})
        agree = {}
        if args.iou_frames > 0:
            frames, boxes = render_sequence(args.iou_frames + 1, seed=args.seed + 100)
            agree = agreement(trackers, frames, boxes, args.progress)
        report["variants"].append({
            "variant": variant, "export_s": export_s, "rows": rows,
            "floors": {p: f and {"ms": f.ms, "gflops": f.rate, "library": f.library} for p, f in floor_of.items()},
            "agreement": {" ".join(map(str, k)): v for k, v in agree.items()},
            "skipped": {f"{b} {p}": why for (b, p, _), why in skipped.items()}})
        del trackers
    report["load_after"] = os.getloadavg()
    text = markdown(report, args.note)
    print(text)
    if args.markdown:
        from lorat_tracker.io import atomic_write_text

        atomic_write_text(args.markdown, text)
        print(f"wrote {args.markdown}", file=sys.stderr)
    if args.json_out:
        from lorat_tracker.io import atomic_write_text

        atomic_write_text(args.json_out, json.dumps(report, indent=2))
    return 0


def markdown(report, note="") -> str:
    m = report["machine"]
    where = m.get("gpu") or f"{m.get('cpu_model')} ({', '.join(m.get('cpu_flags', []))})"
    lines = [f"Measured with `{report['command']}` ({report['weights']} weights) on {where}, "
             f"{m['threads']} thread(s) for every runtime, {m['cpu_count']} CPU(s) visible, torch {m['torch']}; "
             f"load average {report['load_before'][0]:.2f} before, {report['load_after'][0]:.2f} after. "
             f"{report['rounds']} interleaved rounds (one `step` of every configuration per round, order rotated), "
             "medians; \"vs torch fp32\" is the median of per-round ratios." + (f" {note}" if note else ""), ""]
    for v in report["variants"]:
        lines += [f"### {v['variant']} (ONNX export {v['export_s']:.0f} s)", "",
                  "| backend | batch | step ms (min-max) | ms per target | vs torch fp32 | x of floor | "
                  "agreement with torch fp32 |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for r in v["rows"]:
            a = v["agreement"].get(f"{r['backend']} {r['precision']} {r['compile']}")
            if a is None:
                agree = "-"
            elif r["precision"] == "fp32":
                agree = (f"tracked boxes: max deviation {a['max_box_dev_px']:.2g} px over {a['frames']} frames; "
                         f"every cell: {a['cell_max_box_dev_px']:.2g} px, score {a['cell_max_score_diff']:.1g}")
            else:
                agree = (f"tracked boxes: IoU per frame mean {a['mean_iou']:.3f}, min {a['min_iou']:.3f} "
                         f"({a['frames']} frames); every cell: IoU mean {a['cell_mean_iou']:.4f}, box "
                         f"{a['cell_max_box_dev_px']:.2g} px, score {a['cell_max_score_diff']:.2g}")
            lines.append(f"| {r['label']} | {r['batch']} | {r['step_ms']:.0f} ({r['step_ms_min_max'][0]:.0f}-"
                         f"{r['step_ms_min_max'][1]:.0f}) | {r['ms_per_target']:.0f} | {r['vs_torch_fp32']:.2f}x | "
                         f"{'-' if r['x_of_floor'] is None else format(r['x_of_floor'], '.2f') + 'x'} | {agree} |")
        for what, why in v["skipped"].items():
            lines.append(f"| {what} | - | unmeasured | - | - | - | {why} |")
        floors = [f"{p} {f['ms']:.3g} ms ({f['library']} {f['gflops']:.0f} GFLOP/s)" for p, f in v["floors"].items()
                  if f]
        if floors:
            lines += ["", "Floor of a frame (its matrix products at the best square-GEMM rate, benchmarks/roofline.py), "
                      "measured at the start: " + ", ".join(floors) + ". \"x of floor\" pairs each step with a floor "
                      "sample taken right after it (median of the ratios)."]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
