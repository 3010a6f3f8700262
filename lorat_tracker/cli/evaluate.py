"""lorat eval: run LoRAT on a tracking benchmark through the GOT-10k toolkit and report its scores.

Results go to RESULTS/<Benchmark>/<name>/ in the toolkit's own format (so other tools read them) and
are written atomically, one sequence at a time: an interrupted run (Ctrl-C) keeps every finished
sequence, and running the same command again tracks only the rest. The report (performance.json,
success/precision plots as PNG) goes to REPORTS/<Benchmark>/<name>/, and a results table is printed.
Test splits whose ground truth is withheld (got10k-test, trackingnet) are packed into the zip the
evaluation server wants instead.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, Optional, Tuple

from ..spec import TrackerSpec
from . import UsageError, help_text, job_started

BENCHMARK_HELP = """benchmarks (BENCHMARK) and the --root layout each expects:
  got10k-val    ROOT/val/list.txt, ROOT/val/<seq>/{00000001.jpg..., groundtruth.txt, meta_info.ini, cover.label...}
  got10k-test   ROOT/test/list.txt, ROOT/test/<seq>/{00000001.jpg..., groundtruth.txt}  -> zip for the server
  lasot         ROOT/<class>/<class>-<n>/{img/00000001.jpg..., groundtruth.txt}  (the 280 test sequences found)
  lasot-ext     the same layout (LaSOT_extension_subset), every sequence found
  trackingnet   ROOT/TEST/anno/<seq>.txt, ROOT/TEST/frames/<seq>/0.jpg...  -> zip for the server
  tnl2k         ROOT/<seq>/{imgs/*.jpg|png, groundtruth.txt}
  otb           ROOT/<Name>/{img/0001.jpg..., groundtruth_rect.txt}  (OTB-2015 names)
  uav123        ROOT/anno/UAV123/<seq>.txt, ROOT/data_seq/UAV123/<folder>/000001.jpg...
  nfs           ROOT/<seq>/30/<seq>.txt, ROOT/<seq>/30/<seq>/00001.jpg...  (NfS at 30 fps)
"""

EPILOG = BENCHMARK_HELP + """
examples:
  lorat eval lasot --root data/LaSOT --variant B-224 --weights base.bin \\
      --backbone dinov2_vitb14_pretrain.pth --device cuda
  lorat eval got10k-val --root data/GOT-10k --variant B-224 --weights base.bin \\
      --backbone dinov2_vitb14_pretrain.pth --sequences GOT-10k_Val_000001,GOT-10k_Val_000002
  lorat eval otb --root data/OTB100 --variant B-224 --weights base.bin \\
      --backbone dinov2_vitb14_pretrain.pth --compare results/OTB2015/SiamFC

Run it again to resume: sequences with a result file are not tracked again (delete the file to redo one).
"""


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="run a benchmark (GOT-10k, LaSOT, TrackingNet, OTB, ...) and report its scores",
                       description=help_text(__doc__), epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("benchmark", metavar="BENCHMARK", help="got10k-val, got10k-test, lasot, lasot-ext, trackingnet, "
                                                          "tnl2k, otb, uav123 or nfs (layouts below)")
    p.add_argument("--root", required=True, metavar="DIR", help="the dataset's root folder")
    TrackerSpec.add_arguments(p, groups=("model", "runtime"), required=("weights",))
    p.add_argument("--name", help="tracker name: the results/report folder (default: the variant name - the weights "
                                  "file's name for an export without --variant - plus the backend and precision "
                                  "when they are not torch and auto, e.g. B-224-openvino-bf16)")
    p.add_argument("--results", default="results", metavar="DIR", help="results folder (default: results)")
    p.add_argument("--reports", default="reports", metavar="DIR", help="reports folder (default: reports)")
    p.add_argument("--sequences", metavar="A,B,...", help="only these sequences (comma-separated names)")
    p.add_argument("--batch-size", type=int, default=1, metavar="N",
                   help="track N sequences in lockstep through one batched forward per step (boxes identical "
                        "to N = 1; the big lever on a GPU, a small gain on a CPU); default 1")
    p.add_argument("--compare", nargs="+", default=[], metavar="DIR",
                   help="other trackers' result folders for this benchmark (one <seq>.txt a sequence, or the "
                        "GOT-10k <seq>/<seq>_001.txt layout), scored and plotted on the same axes")
    p.set_defaults(func=run)


# ---------------------------------------------------------------- the per-sequence loop, in parts
# One sequence at a time (track_sequence, then Benchmark.write) or several in lockstep through
# LoRATTracker.step (track_batched, --batch-size N), which writes each sequence as it finishes.

def remaining_sequences(bench, tracker_name: str, sequences: Optional[List[str]] = None
                        ) -> Tuple[List[str], List[str]]:
    """(done, remaining) among ``sequences`` (default all): with a result file, and still to track."""
    sequences = bench.sequences if sequences is None else sequences
    done = [s for s in sequences if bench.is_done(tracker_name, s)]
    finished = set(done)
    return done, [s for s in sequences if s not in finished]


def track_sequence(tracker, bench, seq_name: str):
    """Track one sequence from its first ground-truth box: (boxes (N, 4) 0-based xywh, seconds per frame)."""
    img_files, anno = bench.load(seq_name)
    return tracker.track(img_files, bench.init_box(anno))


def track_batched(tracker, bench, tracker_name: str, seq_names: List[str], batch_size: int, on_done) -> None:
    """Track ``seq_names`` ``batch_size`` at a time in lockstep; write each one's files as it finishes."""
    from lorat_tracker.integrations.got10k import read_image  # decodes exactly as the toolkit's Tracker.track

    from ..batched import SequenceJob, run_batched

    jobs = []
    for seq_name in seq_names:
        img_files, anno = bench.load(seq_name)
        jobs.append(SequenceJob(seq_name, list(img_files), bench.init_box(anno)))

    def finished(result):
        bench.write(tracker_name, result.name, result.boxes, result.times)
        on_done(result.name)

    run_batched(tracker.lorat, jobs, batch_size=batch_size, callback=finished, read_frame=read_image)


# ---------------------------------------------------------------- the command

def run(args) -> int:
    bench_module = _import_integration()
    key = args.benchmark.lower()
    if key not in bench_module.BENCHMARKS:
        raise UsageError(f"unknown benchmark {args.benchmark!r}: choose one of {', '.join(bench_module.BENCHMARKS)}")
    if not os.path.isdir(args.root):
        raise UsageError(f"--root {args.root} does not exist - pass the folder holding the {key} dataset "
                         f"(see 'lorat eval --help' for the layout)")
    compare = _compare_folders(args.compare)
    sequences = [s.strip() for s in args.sequences.split(",") if s.strip()] if args.sequences else None
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    spec = TrackerSpec.from_args(args).check()  # a missing weights file fails now, not after reading the annotations
    spec.check_runtime()  # likewise a device that is not there, or a backend that cannot run on it or is missing
    from ..provenance import default_run_name

    name = args.name or default_run_name(_default_name(args), spec)
    if name in compare:
        raise UsageError(f"--compare folder {compare[name]} has the same name as this tracker ({name}) - "
                         "pass --name to tell them apart")
    from ..io import check_writable

    for folder in (args.results, args.reports):
        check_writable(folder, folder=True)  # read-only or forbidden: now, not after tracking every sequence
    bench = bench_module.Benchmark(key, args.root, args.results, args.reports, sequences)
    bench.check_annotations()  # every line of every selected sequence, before anything is tracked
    if compare and not bench.has_ground_truth:
        raise UsageError(f"--compare needs ground truth, and {bench.title}'s is withheld (its evaluation server "
                         "scores the submissions) - drop --compare")
    from ..provenance import check_results_folder, record_results_folder, tracker_identity

    # The folder's results are resumed or skipped only if this same tracker made them.
    identity = tracker_identity(spec)
    check_results_folder(os.path.join(bench.result_dir, name), identity,
                         has_results=any(bench.is_done(name, s) for s in bench.sequences))
    from .. import distributed

    # Under torchrun every rank takes its fixed share of *all* sequences before looking at what is
    # done, so a fast rank writing results cannot shift another rank's share.
    distributed.init(args.device or ("cuda" if _cuda_available() else "cpu"))
    rank, world = distributed.rank_and_world()
    mine = distributed.shard(bench.sequences) if world > 1 else bench.sequences
    done, remaining = remaining_sequences(bench, name, mine)
    where = os.path.join(bench.result_dir, name)
    who = f"rank {rank}/{world}: {len(mine)} of " if world > 1 else ""
    print(f"{bench.title}: {who}{len(bench.sequences)} sequences; {len(done)} sequences already done, "
          f"{len(remaining)} to track (results in {where})")
    if key == "lasot" and len(bench.sequences) < 280 and not sequences and rank == 0:
        print(f"note: only {len(bench.sequences)} of the 280 LaSOT test sequences are under {args.root}",
              file=sys.stderr)
    scores = {s: bench.sequence_score(name, s) for s in done}
    try:
        if remaining:
            if world > 1 and args.device:
                args.device = str(distributed.device_for_rank(args.device))
            tracker = _load_tracker(args, name, bench_module)
            job_started()  # from here on an error means the evaluation started and failed (exit 1)
            record_results_folder(os.path.join(bench.result_dir, name), identity)
            _track_all(tracker, bench, name, remaining, scores, args.batch_size, show=rank == 0)
        distributed.barrier()
    finally:
        distributed.cleanup()  # a no-op for a single process
    job_started()  # the report: written from the results
    if rank != 0:
        return 0  # rank 0 analyses the shared results

    if not bench.has_ground_truth:
        bench.report([name])
        print(f"ground truth of {bench.title} is withheld: submit {bench.submission_file(name)} to its "
              "evaluation server")
        return 0
    labels = list(compare)
    if compare:
        with bench.with_compared(name, compare):
            performance = bench.report([name] + labels)
    else:
        performance = bench.report([name])
    _print_table(bench, bench.summary(performance), len(bench.sequences))
    print(f"report: {os.path.join(bench.report_dir, name, 'performance.json')}")
    for png in bench.plot_files(name):
        print(f"plot:   {png}")
    return 0


def _track_all(tracker, bench, name: str, remaining: List[str], scores: Dict[str, Optional[float]],
               batch_size: int = 1, show: bool = True) -> None:
    from tqdm import tqdm

    finished = 0
    total = len(scores) + len(remaining)
    bar = tqdm(total=total, initial=len(scores), desc=bench.title, unit="seq", dynamic_ncols=True,
               disable=not show)

    def done(seq_name):
        nonlocal finished
        finished += 1
        scores[seq_name] = bench.sequence_score(name, seq_name)
        bar.update(1)
        _show_score(bar, bench, scores)

    try:
        _show_score(bar, bench, scores)
        if batch_size > 1:
            bar.set_description(f"{bench.title} (batches of {batch_size})")
            track_batched(tracker, bench, name, remaining, batch_size, done)
        else:
            for seq_name in remaining:
                bar.set_description(f"{bench.title} {seq_name}")
                boxes, times = track_sequence(tracker, bench, seq_name)
                bench.write(name, seq_name, boxes, times)
                done(seq_name)
        bar.set_description(bench.title)
    except KeyboardInterrupt:
        bar.close()
        print(f"\n{finished} more sequences finished this run and kept in {os.path.join(bench.result_dir, name)}; "
              "run the same command again to resume", file=sys.stderr)
        raise
    finally:
        bar.close()


def _show_score(bar, bench, scores) -> None:
    known = [v for v in scores.values() if v is not None]
    if known:
        bar.set_postfix_str(f"mean {bench.score_name} {sum(known) / len(known):.3f}")


def _print_table(bench, table: Dict[str, Dict[str, float]], count: int) -> None:
    columns = list(next(iter(table.values())))
    width = max(len("tracker"), *(len(n) for n in table))
    print(f"\n{bench.title} ({count} sequences)")
    print("  ".join(["tracker".ljust(width)] + [c.rjust(7) for c in columns]))
    for name, row in table.items():
        cells = [(f"{row[c]:.1f}" if c == "FPS" else f"{row[c]:.3f}").rjust(7) if row[c] >= 0 else "-".rjust(7)
                 for c in columns]
        print("  ".join([name.ljust(width)] + cells))
    print()


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _import_integration():
    import matplotlib

    matplotlib.use("Agg")  # plots are files; never open a window
    try:
        from lorat_tracker.integrations import got10k
    except ImportError as e:
        if e.name and e.name.split(".")[0] in ("got10k", "six", "shapely", "PIL", "wget", "fire"):
            raise UsageError(f"lorat eval needs the GOT-10k toolkit ({e.name} is missing) - "
                             "install it with: pip install \"lorat-tracker[got10k]\"") from None
        raise
    return got10k


def _default_name(args) -> str:
    source = args.variant or args.weights
    return os.path.splitext(os.path.basename(os.path.normpath(str(source))))[0]


def _compare_folders(folders) -> Dict[str, str]:
    out = {}
    for folder in folders:
        if not os.path.isdir(folder):
            raise UsageError(f"--compare folder {folder} does not exist - pass a folder of another tracker's "
                             "results for this benchmark")
        label = os.path.basename(os.path.normpath(folder))
        base, k = label, 2
        while label in out:
            label, k = f"{base}-{k}", k + 1
        out[label] = folder
    return out


def _load_tracker(args, name: str, integration):
    kind = "ONNX export" if str(args.weights).lower().endswith(".onnx") else "merged export"
    print(f"loading {args.variant or kind} from {args.weights} ...", file=sys.stderr)
    lorat = TrackerSpec.from_args(args).build()
    return integration.LoRATGot10kTracker(lorat, name=name)
