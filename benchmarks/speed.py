"""Per-frame speed of LoRATTracker.track()/step() next to the bare network forward on the same inputs.

Random weights are fine for speed (pass --weights/--backbone to time real ones). Shared machines are
noisy, so every configuration is measured *interleaved* in one run: each round times one bare forward
and one tracker step per configuration (alternating which goes first), and the report gives medians
plus the median of per-round ratios, which cancels slow drifts in machine load.

    python benchmarks/speed.py --variant B-224 --device cpu --precision fp32,bf16 --batch-size 1,8 \
        --frames 30 --warmup 3 --json speed.json

Also reports how closely a low precision's boxes follow fp32 over a synthetic sequence (mean IoU;
"free" = each precision tracks on its own, "teacher-forced" = both crop from the fp32 state every
frame, so one flipped argmax does not compound). With random weights the score map is nearly flat,
so these IoUs are a pessimistic stand-in for trained weights.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lorat_tracker.model import LoRATModel  # noqa: E402
from lorat_tracker.tracker import LoRATTracker  # noqa: E402

import common  # noqa: E402  (benchmarks/common.py, beside this script)


# ------------------------------------------------------------------------------------------ inputs

def render_sequence(num_frames: int, size_wh=(640, 480), seed: int = 0, object_wh=(96, 72), speed=6.0):
    """(frames, boxes) of one textured object moving over a textured background: lorat_tracker.demo's
    generator (the one the demo data, the VOT demo workspaces' masks and the tests use), at benchmark size."""
    from lorat_tracker.demo import render_sequence as render

    seq = render(num_frames, size_wh=size_wh, seed=seed, object_size=object_wh, speed=speed)
    return seq.frames, seq.boxes[0]


def build_model(args) -> LoRATModel:
    """The weights given, or random weights of DINOv2-like magnitude (LayerScale 0.1, not its 1e-5 init):
    ``lorat bench``'s model, so the benchmarks and the user's check time the same network."""
    from lorat_tracker.bench import load_model

    return load_model(args.variant, args.weights, args.backbone, seed=args.seed)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------------------ timing

class Config:
    """One (precision, batch size): a tracker, N targets on N sequences, the bare-forward inputs."""

    def __init__(self, model, args, precision: str, batch: int, sequences):
        self.precision, self.batch = precision, batch
        self.tracker = LoRATTracker(model, device=args.device, precision=precision, compile=args.compile)
        self.sequences = [sequences[i % len(sequences)] for i in range(batch)]
        self.num_frames = len(self.sequences[0][0])
        self.t = 0
        self._restart()
        # Bare forward on exactly what step() feeds the network: the targets' templates/masks and
        # the search crops of frame 1.
        tr = self.tracker
        self.x = torch.cat([tr.search_input(frames[1], tgt.box, tgt)
                            for tgt, (frames, _) in zip(self.targets, self.sequences)])
        self.z = torch.stack([t.template for t in self.targets])
        self.mask = torch.stack([t.mask for t in self.targets])
        self.bare_s, self.track_s, self.floor_ms = [], [], []
        self.peak_mem = None

    def _restart(self):
        if self.batch == 1:  # time the public single-target API itself
            self.tracker.initialize(self.sequences[0][0][0], self.sequences[0][1][0])
            self.targets = [self.tracker.target]
        else:
            self.targets = [self.tracker.new_target(frames[0], boxes[0]) for frames, boxes in self.sequences]
        self.t = 1

    def bare(self) -> float:
        tr = self.tracker
        sync(tr.device)
        start = time.perf_counter()
        out = tr.network_outputs(self.z, self.x, self.mask)
        sync(tr.device)
        del out
        return time.perf_counter() - start

    def track(self) -> float:
        if self.t >= self.num_frames:
            self._restart()  # not timed
        frames = [seq[0][self.t] for seq in self.sequences]
        start = time.perf_counter()
        if self.batch == 1:
            self.tracker.track(frames[0])
        else:
            self.tracker.step(self.targets, frames)
        elapsed = time.perf_counter() - start  # step() ends with the host copy of the boxes: synced
        self.t += 1
        return elapsed


def measure(configs, rounds: int, record: bool, device: torch.device, desc: str = "timing",
            progress: bool = True, probes=None):
    """Rounds of every configuration; with ``probes`` (precision -> FloorProbe), each recorded round is
    followed by a floor sample of its precision (its "x of the floor" pairs the two)."""
    # Progress on stderr: a B-224 run on a CPU takes minutes, and the table comes only at the end.
    for r in tqdm(range(rounds), desc=desc, unit="round", file=sys.stderr, disable=not progress,
                  dynamic_ncols=True):
        for cfg in configs:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            order = (cfg.bare, cfg.track) if r % 2 == 0 else (cfg.track, cfg.bare)
            times = {fn.__name__: fn() for fn in order}
            if record:
                cfg.bare_s.append(times["bare"])
                cfg.track_s.append(times["track"])
                probe = (probes or {}).get(cfg.precision)
                if probe is not None:
                    cfg.floor_ms.append(probe.sample())
                if device.type == "cuda":
                    cfg.peak_mem = max(cfg.peak_mem or 0, torch.cuda.max_memory_allocated(device))


# ------------------------------------------------------------------------------------------ accuracy

def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1 = np.maximum(a[:, 0], b[:, 0])
    y1 = np.maximum(a[:, 1], b[:, 1])
    x2 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    y2 = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    return inter / (a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter)


def precision_agreement(model, args, precision: str, frames, boxes) -> dict:
    bar = tqdm(total=4 * (len(frames) - 1), desc=f"{precision} vs fp32 boxes", unit="frame", file=sys.stderr,
               disable=not args.progress, dynamic_ncols=True)
    ref = LoRATTracker(model, device=args.device, precision="fp32")
    low = LoRATTracker(model, device=args.device, precision=precision)
    # Free-running: each precision follows its own predictions.
    out = {}
    for name, tr in (("fp32", ref), (precision, low)):
        tr.initialize(frames[0], boxes[0])
        out[name] = np.array([tr.track(f).box for f in frames[1:]])
        bar.update(len(frames) - 1)
    free = iou(out["fp32"], out[precision])
    # Teacher-forced: the low-precision target crops from the fp32 state each frame.
    ref.initialize(frames[0], boxes[0])
    low.initialize(frames[0], boxes[0])
    forced = []
    for f in frames[1:]:
        low.target.box = ref.target.box.copy()
        a, b = ref.track(f).box, low.track(f).box
        forced.append(iou(a[None], b[None])[0])
    bar.update(len(frames) - 1)
    forced = np.array(forced)
    # Network-level agreement on identical inputs (crops around the true box): every cell's box,
    # not just the argmax one, so it stays meaningful when random weights give flat score maps.
    cells, score_diff = [], 0.0
    target = ref.new_target(frames[0], boxes[0])
    for t in range(1, len(frames)):
        x0, y0, w, h = boxes[t]
        x = ref.search_input(frames[t], (x0, y0, x0 + w, y0 + h), target)
        z, mask = target.template[None], target.mask[None]
        s32, b32 = ref.network_outputs(z, x, mask)
        s16, b16 = low.network_outputs(z, x, mask)
        a, b = b32.reshape(-1, 4).double().cpu().numpy(), b16.reshape(-1, 4).double().cpu().numpy()
        cells.append(iou(np.c_[a[:, :2], a[:, 2:] - a[:, :2]], np.c_[b[:, :2], b[:, 2:] - b[:, :2]]))
        score_diff = max(score_diff, float((s32.sigmoid() - s16.sigmoid()).abs().max()))
        bar.update(1)
    bar.close()
    cells = np.concatenate(cells)
    return {"precision": precision, "frames": len(frames) - 1,
            "mean_cell_box_iou": float(cells.mean()), "min_cell_box_iou": float(cells.min()),
            "max_score_diff": score_diff,
            "mean_iou_free": float(free.mean()), "min_iou_free": float(free.min()),
            "mean_iou_teacher_forced": float(forced.mean()), "min_iou_teacher_forced": float(forced.min()),
            "fp32_vs_ground_truth_mean_iou": float(iou(out["fp32"], boxes[1:]).mean())}


# ------------------------------------------------------------------------------------------ report

def machine_info(device: torch.device) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "")
        flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
        info["cpu_model"] = model
        info["cpu_flags"] = sorted(f for f in flags if f in ("avx2", "avx512f", "avx512_bf16", "avx512_fp16",
                                                              "amx_bf16", "amx_tile", "amx_int8"))
    except OSError:
        info["cpu_model"] = platform.processor()
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    info["load_average"] = os.getloadavg()
    return info


def summarize(cfg: Config) -> dict:
    bare, track = np.array(cfg.bare_s), np.array(cfg.track_s)
    med_track = float(np.median(track))
    return {
        "precision": cfg.precision, "batch_size": cfg.batch,
        "bare_ms": float(np.median(bare) * 1e3), "track_ms": med_track * 1e3,
        "track_ms_p10_p90": [float(np.percentile(track, 10) * 1e3), float(np.percentile(track, 90) * 1e3)],
        "track_over_bare": float(np.median(track / bare)),  # per-round ratio: robust to load drift
        "ms_per_frame": med_track * 1e3 / cfg.batch,
        "fps": cfg.batch / med_track,
        "peak_gpu_mem_mb": cfg.peak_mem / 2 ** 20 if cfg.peak_mem is not None else None,
        "rounds": len(track),
    }


def main(argv=None) -> int:
    ap = common.parser(__doc__, "variant", "weights", "backbone", "device", "precision", "batch_size", "warmup",
                       "threads", "compile", "iou_frames", "seed", "json_out", "progress", precision="fp32,bf16",
                       warmup=3, iou_frames=24)
    ap.add_argument("--frames", type=int, default=30, help="timed rounds per configuration")
    args = ap.parse_args(argv)
    device = common.apply_runtime(args)
    precisions = common.comma_list(args.precision)
    batches = common.comma_list(args.batch_size, int)

    print(f"building {args.variant} ({args.weights or 'random weights'}) ...", file=sys.stderr, flush=True)
    model = build_model(args)
    sequences = [render_sequence(max(args.frames + args.warmup, 8) + 1, seed=args.seed + i)
                 for i in range(max(batches))]
    configs = [Config(model, args, p, b, sequences) for b in batches for p in precisions]
    names = ", ".join(f"{c.precision}/b{c.batch}" for c in configs)
    measure(configs, args.warmup, record=False, device=device, desc=f"warm-up ({names})", progress=args.progress)
    probes = common.probes(model.cfg, precisions, device)
    measure(configs, args.frames, record=True, device=device, desc=f"timing ({names})", progress=args.progress,
            probes=probes)
    rows = [summarize(c) for c in configs]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB

    floor_of = {p: probe and probe.floor for p, probe in probes.items()}
    for c, r in zip(configs, rows):
        r["floor_ms"], r["x_of_floor"] = common.paired_floor(probes.get(c.precision),
                                                             np.array(c.track_s) * 1e3 / c.batch, c.floor_ms)
    by_key = {(r["precision"], r["batch_size"]): r for r in rows}
    for r in rows:
        one = by_key.get((r["precision"], 1))
        r["fps_gain_vs_batch1"] = r["fps"] / one["fps"] if one else None
        base = by_key.get(("fp32", r["batch_size"]))
        r["speedup_vs_fp32"] = base["track_ms"] / r["track_ms"] if base else None

    agreement = []
    if args.iou_frames > 0:
        frames, boxes = render_sequence(args.iou_frames + 1, seed=args.seed + 100)
        agreement = [precision_agreement(model, args, p, frames, boxes) for p in precisions
                     if p not in ("fp32",) and not (p == "auto" and device.type == "cpu")]

    result = {"variant": args.variant, "device": str(device), "weights": args.weights or "random",
              "compile": args.compile, "machine": machine_info(device), "peak_rss_mb": rss_mb,
              "results": rows, "precision_agreement": agreement,
              "floors": {p: f and {"ms": f.ms, "gflops": f.rate, "library": f.library, "rates": f.rates}
                         for p, f in floor_of.items()},
              "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:]))}

    head = f"{'precision':>9} {'batch':>5} {'bare ms':>9} {'track ms':>9} {'track/bare':>10} " \
           f"{'ms/frame':>9} {'FPS':>7} {'vs fp32':>8} {'vs b=1':>7} {'x floor':>8}"
    print(f"{args.variant} on {result['machine'].get('gpu') or result['machine'].get('cpu_model')} "
          f"({device}, {torch.get_num_threads()} threads, load {result['machine']['load_average'][0]:.2f}), "
          f"{args.frames} interleaved rounds, medians")
    print(head)
    for r in rows:
        def f(v, fmt):
            return format(v, fmt) if v is not None else "-"
        print(f"{r['precision']:>9} {r['batch_size']:>5} {r['bare_ms']:>9.1f} {r['track_ms']:>9.1f} "
              f"{r['track_over_bare']:>10.3f} {r['ms_per_frame']:>9.1f} {r['fps']:>7.2f} "
              f"{f(r['speedup_vs_fp32'], '8.2f'):>8} {f(r['fps_gain_vs_batch1'], '7.2f'):>7} "
              f"{common.x_of_floor(r['x_of_floor']):>8}")
    for p, fl in floor_of.items():
        if fl is not None:
            print(f"floor {p}: {fl.gflop:.1f} GFLOP per frame at {fl.rate:.0f} GFLOP/s ({fl.library}, best of "
                  + ", ".join(f"{k} {v:.0f}" for k, v in fl.rates.items()) + f") = {fl.ms:.1f} ms")
    mem = [f"peak RSS {rss_mb:.0f} MB"] + [f"{r['precision']}/b{r['batch_size']} GPU {r['peak_gpu_mem_mb']:.0f} MB"
                                           for r in rows if r["peak_gpu_mem_mb"] is not None]
    print("memory: " + ", ".join(mem))
    for a in agreement:
        print(f"{a['precision']} vs fp32 over {a['frames']} frames: mean IoU {a['mean_iou_free']:.4f} free-running "
              f"(min {a['min_iou_free']:.3f}), {a['mean_iou_teacher_forced']:.4f} teacher-forced "
              f"(min {a['min_iou_teacher_forced']:.3f}); fp32 vs ground truth {a['fp32_vs_ground_truth_mean_iou']:.3f}")
        print(f"{a['precision']} vs fp32, same crops, every cell of {a['frames']} frames: "
              f"box IoU mean {a['mean_cell_box_iou']:.4f} "
              f"min {a['min_cell_box_iou']:.4f}, max |score difference| {a['max_score_diff']:.4f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
