"""``lorat track``: follow one object through a video, a folder of frames, a glob or a camera.

Writes one line per frame, ``x,y,w,h,score`` (0-based pixels, top-left corner, floats); the first line
is the --box itself with score 1. Optionally writes the frames with the box drawn (--video) and, with
``--masks sam``, SAM's mask of each box (as the official LoRAT VOTS pipeline) as one PNG per frame
(--mask-dir) and as an overlay in --video.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
import warnings
from typing import TYPE_CHECKING, List

if TYPE_CHECKING:  # numpy is imported where it is used: `lorat track --help` stays light
    import numpy as np

from ..io import check_writable, same_file
from ..spec import TrackerSpec
from . import EXIT_INTERRUPTED, UsageError, help_text, job_started

EPILOG = """\
examples:
  lorat track clip.mp4 --box 120,80,60,40 --variant B-224 --weights base.bin \\
      --backbone dinov2_vitb14_pretrain.pth --output boxes.txt --video annotated.mp4
  lorat track seq/img/ --box seq/groundtruth.txt --variant B-224 --weights base.bin \\
      --backbone dinov2_vitb14_pretrain.pth > boxes.txt
  lorat track 'seq/img/*.jpg' --box 120,80,60,40 --start 100 --end 199 --weights merged.safetensors
  lorat track 0 --box 200,150,80,80 --weights merged.safetensors --device cuda   (camera 0; Ctrl-C stops)
  lorat track clip.mp4 --box 120,80,60,40 --weights merged.safetensors --masks sam \\
      --sam-checkpoint sam_vit_h_4b8939.pth --mask-dir masks/ --video annotated.mp4

output: one line per frame, x,y,w,h,score (0-based x,y): the first line is frame START (the --box,
score 1), the next one frame START+1, and so on.
Ctrl-C stops cleanly: the lines and video frames written so far are kept (exit code 130)."""

VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "XVID"}


def add_parser(sub) -> None:
    p = sub.add_parser("track", help="track one object in a video, a folder of frames or a camera",
                       description=help_text(__doc__), epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="SOURCE",
                   help="a video file (anything OpenCV reads), a folder of frames, a quoted glob such as "
                        "'img/*.jpg', a camera index (0) or a stream URL")
    p.add_argument("--box", required=True, metavar="X,Y,W,H",
                   help="the object in frame START: 0-based x,y,w,h (commas, spaces or tabs), or a "
                        "ground-truth file whose first line is used; a negative x needs --box=-3,10,50,40")
    TrackerSpec.add_arguments(p, groups=("model", "runtime"), required=("weights",))
    p.add_argument("--start", type=int, default=0, metavar="N",
                   help="first frame, 0-based (default 0): the frame the --box is in")
    p.add_argument("--end", type=int, default=None, metavar="N",
                   help="last frame, 0-based and INCLUSIVE (default: the last frame; live sources run until "
                        "--end or Ctrl-C)")
    p.add_argument("--output", "-o", metavar="boxes.txt",
                   help="where to write the boxes (default: standard output)")
    p.add_argument("--video", metavar="annotated.mp4",
                   help=f"also write the frames with the box and score drawn ({', '.join(VIDEO_CODECS)})")
    TrackerSpec.add_arguments(p, groups=("masks",), help={
        "masks": "sam: turn every box into a mask with SAM, exactly as the official LoRAT VOTS pipeline; sam2: with "
                 "SAM 2.1 (needs --sam-checkpoint and --mask-dir and/or --video; the box still drives tracking)"})
    p.add_argument("--mask-dir", metavar="DIR",
                   help="with --masks sam or sam2: write one mask per frame, DIR/<frame index, 8 digits>.png, "
                        "8-bit gray, 255 = object")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


# ------------------------------------------------------------------------------------------ the box

def parse_box(text: str) -> List[float]:
    """``--box``: "x,y,w,h" (commas, spaces, tabs) or a ground-truth file (first non-empty line).

    An 8-number line (a VOT polygon) becomes its axis-aligned bounding box. Values are used as given:
    no +-1 shift (LaSOT/GOT-10k/OTB annotations are used as stored by every toolkit, too).
    """
    where = f"--box {text!r}"
    if os.path.isdir(text):
        raise UsageError(f"--box {text} is a folder: pass x,y,w,h or a ground-truth file")
    if os.path.isfile(text):
        where = f"--box file {text}"
        try:
            with open(text, encoding="utf-8", errors="replace") as f:
                line = next((ln.strip() for ln in f if ln.strip()), None)
        except OSError as e:
            raise UsageError(f"cannot read --box file {text}: {e.strerror}") from None
        if line is None:
            raise UsageError(f"--box file {text} is empty")
    else:
        line = text
    parts = [p for p in re.split(r"[,;\s]+", line.strip()) if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        if where.startswith("--box file"):
            raise UsageError(f"{where}: first line {line[:60]!r} is not x,y,w,h numbers") from None
        looks_like_path = os.sep in text or "/" in text or text.lower().endswith((".txt", ".csv"))
        if looks_like_path:
            raise UsageError(f"--box file {text} does not exist") from None
        raise UsageError(f"{where} is neither x,y,w,h (4 numbers separated by commas, spaces or tabs) nor "
                         "an existing ground-truth file") from None
    if len(values) == 8:  # VOT polygon x1,y1,...,x4,y4
        xs, ys = values[0::2], values[1::2]
        values = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
    if len(values) != 4:
        raise UsageError(f"{where} has {len(values)} numbers; expected 4: x,y,w,h")
    return values


# ------------------------------------------------------------------------------------------- output

def format_line(box, score: float) -> str:
    x, y, w, h = (float(v) for v in box)
    return f"{x:.3f},{y:.3f},{w:.3f},{h:.3f},{score:.4f}"


MASK_COLOR_BGR = (255.0, 0.0, 255.0)  # magenta next to the green box


def draw_box(rgb: np.ndarray, box, score: float, index: int, mask: np.ndarray = None) -> np.ndarray:
    """A BGR copy of ``rgb`` with the mask overlay (if any), the box (nearest integer corners), the score
    and the frame index."""
    import cv2
    import numpy as np

    from ..boxes import rounded_corners

    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if mask is not None and mask.any():
        bgr[mask] = (0.55 * bgr[mask] + 0.45 * np.array(MASK_COLOR_BGR, dtype=np.float32)).astype(np.uint8)
    height, width = bgr.shape[:2]
    thick = max(2, round(min(width, height) / 300))
    x1, y1, x2, y2 = rounded_corners(box)
    color = (0, 255, 0)
    cv2.rectangle(bgr, (x1, y1), (max(x2 - 1, x1), max(y2 - 1, y1)), color, thick)  # pt2 is inclusive
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.4, min(width, height) / 600)
    cv2.putText(bgr, f"{score:.2f}", (x1, max(y1 - 4, int(14 * scale / 0.4))), font, scale, color, 1,
                cv2.LINE_AA)
    cv2.putText(bgr, f"#{index}", (4, int(16 * scale / 0.4)), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return bgr


def video_codec(path: str) -> str:
    """The fourcc for --video's extension (mp4v for .mp4, MJPG for .avi, ...)."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in VIDEO_CODECS:
        raise UsageError(f"--video {path}: unsupported extension {ext or '(none)'}; use one of "
                         f"{', '.join(VIDEO_CODECS)}")
    return VIDEO_CODECS[ext]


class VideoOutput:
    """cv2.VideoWriter with the codec picked from the file extension, written to a temporary file next to
    ``path`` and renamed onto it by ``commit`` (an earlier video of that name stays until then; a failed
    run's ``discard`` removes it). OpenCV reports no write error, so ``commit`` reads the frame count
    back: a video cut short (a full disk) is refused instead of kept."""

    def __init__(self, path: str, fps: float, size_wh):
        import cv2

        from ..io import discard_partial, new_partial

        codec = video_codec(path)
        _make_parent(path, "--video")
        self.path, self.size_wh = path, tuple(size_wh)
        self.tmp = new_partial(path, suffix=os.path.splitext(path)[1])
        self.writer = cv2.VideoWriter(self.tmp, cv2.VideoWriter_fourcc(*codec), fps, self.size_wh)
        if not self.writer.isOpened():
            discard_partial(self.tmp)
            raise UsageError(f"cannot write video {path}: OpenCV has no {codec} encoder here - try .avi")
        self.frames = 0

    def write(self, bgr: np.ndarray) -> None:
        import cv2

        if (bgr.shape[1], bgr.shape[0]) != self.size_wh:
            bgr = cv2.resize(bgr, self.size_wh, interpolation=cv2.INTER_AREA)
        self.writer.write(bgr)
        self.frames += 1

    def commit(self) -> None:
        import errno

        import cv2

        from ..io import commit_partial, output_error

        self.writer.release()
        capture = cv2.VideoCapture(self.tmp)
        stored = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
        capture.release()
        if stored < self.frames:
            self.discard()
            raise output_error(self.path, OSError(errno.EIO, f"the video holds {stored} of its {self.frames} frames "
                                                             "- is the disk full? Free some space or write elsewhere"))
        commit_partial(self.tmp, self.path)

    def discard(self) -> None:
        from ..io import discard_partial

        self.writer.release()
        discard_partial(self.tmp)


def write_mask_png(mask_dir: str, index: int, mask: np.ndarray) -> str:
    """``mask_dir/<index:08d>.png`` (0 / 255), written atomically with the umask's permissions."""
    import cv2
    import numpy as np

    from ..io import atomic_open

    path = os.path.join(mask_dir, f"{index:08d}.png")
    ok, data = cv2.imencode(".png", mask.astype(np.uint8) * 255)
    if not ok:
        raise UsageError(f"cannot encode the mask of frame {index} as PNG")
    with atomic_open(path, "wb") as f:
        f.write(data.tobytes())
    return path


def _check_mask_options(args) -> None:
    """The options of this command around the masks (the SAM options themselves: ``TrackerSpec.check``)."""
    if args.masks not in ("sam", "sam2"):
        if args.mask_dir:
            raise UsageError("--mask-dir is used only with --masks sam or sam2 - add --masks sam")
        return
    if not args.mask_dir and not args.video:
        raise UsageError(f"--masks {args.masks} needs --mask-dir DIR and/or --video FILE: nowhere to put the masks")
    if args.mask_dir and os.path.exists(args.mask_dir) and not os.path.isdir(args.mask_dir):
        raise UsageError(f"--mask-dir {args.mask_dir} is a file: pass a folder")


def _make_parent(path: str, option: str) -> None:
    if os.path.isdir(path):
        raise UsageError(f"{option} {path} is a folder: pass a file name")
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{option} {path}: cannot create {parent} ({e.strerror})") from None


def _indices(indices: List[int]) -> str:
    return ", ".join(map(str, indices[:10])) + (f" and {len(indices) - 10} more" if len(indices) > 10 else "")


def refuse_overwriting_inputs(args, source_files: List[str]) -> None:
    """--output / --video must not name a file this command reads (a frame, the video, --box, weights)."""
    inputs = [(f"an input frame of {args.source}" if len(source_files) > 1 else f"the input {args.source}", f)
              for f in source_files]
    inputs += [(f"the {opt} file", getattr(args, attr)) for opt, attr in
               (("--box", "box"), ("--weights", "weights"), ("--backbone", "backbone"))
               if getattr(args, attr) and os.path.isfile(getattr(args, attr))]
    outputs = [(opt, getattr(args, attr)) for opt, attr in (("--output", "output"), ("--video", "video"))
               if getattr(args, attr)]
    for option, path in outputs:
        for what, given in inputs:
            if same_file(path, given):
                raise UsageError(f"{option} {path} is {what}: writing it would overwrite what is being read - "
                                 "pass another file name")
    if len(outputs) == 2 and os.path.abspath(outputs[0][1]) == os.path.abspath(outputs[1][1]):
        raise UsageError(f"--output and --video name the same file {args.output}: pass two different names")


# ---------------------------------------------------------------------------------------------- run

def run(args) -> int:
    import numpy as np
    from tqdm import tqdm

    from ..boxes import validate_box
    from ..io import commit_partial, discard_partial, new_partial, output_error
    from ..video import open_source

    start, end = args.start, args.end
    if start < 0:
        raise UsageError(f"--start {start} is negative: frames are numbered from 0")
    if end is not None and end < start:
        raise UsageError(f"--end {end} is before --start {start} (--end is inclusive)")
    box = parse_box(args.box)
    spec = TrackerSpec.from_args(args).check()  # an unknown variant, a missing file... fail now, not after reading
    if args.video:
        video_codec(args.video)
    _check_mask_options(args)
    for path, folder in ((args.output, False), (args.video, False), (args.mask_dir, True)):
        if path:
            check_writable(path, folder=folder)  # read-only or forbidden: now, before reading the video
    if args.masks == "sam":
        from ..segmentation import import_segment_anything

        import_segment_anything()  # not installed: say so before reading the video
    elif args.masks == "sam2":
        from ..segmentation.sam2 import import_sam2

        import_sam2()

    source = open_source(args.source)
    try:
        refuse_overwriting_inputs(args, source.files)
    except UsageError:
        source.close()
        raise
    out_file = video = bar = None
    finished = False
    previous_showwarning = warnings.showwarning
    try:
        n = source.num_frames
        if n is not None and start >= n:
            raise UsageError(f"--start {start} is beyond the end of {args.source}: it has {n} frames "
                             f"(0..{n - 1})")
        frames = source.frames(start, end)
        first = next(frames, None)
        if first is None:
            if start > 0:
                raise UsageError(f"--start {start} is beyond the end of {args.source}")
            raise UsageError(f"{args.source} has no frame OpenCV can decode")
        index, image = first
        height, width = image.shape[:2]
        validate_box(box, (width, height))  # InvalidBoxError before the (slow) model load

        tracker = spec.build()
        refiner = tracker.masks  # SAM with --masks sam: frame START's mask comes from it directly
        if args.mask_dir:
            try:
                os.makedirs(args.mask_dir, exist_ok=True)
            except OSError as e:
                raise UsageError(f"--mask-dir {args.mask_dir}: cannot create it ({e.strerror})") from None
        if args.output:
            _make_parent(args.output, "--output")
            out_tmp = new_partial(args.output)  # renamed onto --output at the end: never a 0-byte or half file
            out_file = open(out_tmp, "w", encoding="utf-8")
        if args.video:
            video = VideoOutput(args.video, source.fps or 30.0, (width, height))

        last = None if end is None else end
        if n is not None:
            last = n - 1 if last is None else min(last, n - 1)
        total = None if last is None else last - start + 1
        bar = tqdm(total=total, unit="frame", desc="lorat track", file=sys.stderr, dynamic_ncols=True,
                   mininterval=0.5, disable=args.no_progress)

        def emit(line: str) -> None:
            if out_file is not None:
                try:
                    out_file.write(line + "\n")
                    out_file.flush()  # so Ctrl-C keeps every finished frame
                except OSError as e:
                    raise output_error(args.output, e) from None
            else:
                bar.write(line, file=sys.stdout)
                sys.stdout.flush()

        def show_warning(message, category, *_args, **_kwargs):  # one line, under the progress bar
            bar.write(f"lorat track: warning: {message}", file=sys.stderr)

        done, first_index, last_index, interrupted, pipe_closed = 0, index, index, False, False
        masks_written = 0
        t0 = time.perf_counter()
        job_started()
        try:
            warnings.showwarning = show_warning
            tracker.initialize(image, box)
            pred_box, score = np.asarray(box, dtype=np.float64), 1.0
            mask = refiner.refine(image, [box])[0].mask if refiner is not None else None
            while True:
                emit(format_line(pred_box, score))
                if args.mask_dir:
                    write_mask_png(args.mask_dir, index, mask)
                    masks_written += 1
                if video is not None:
                    video.write(draw_box(image, pred_box, score, index, mask))
                done, last_index = done + 1, index
                bar.update(1)
                nxt = next(frames, None)
                if nxt is None:
                    break
                index, image = nxt
                prediction = tracker.track(image)
                pred_box, score, mask = prediction.box, prediction.score, prediction.mask
        except KeyboardInterrupt:
            interrupted = True
        except BrokenPipeError:
            # `lorat track ... | head`: the reader has gone; stop quietly like other command-line tools.
            pipe_closed = True
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        finally:
            warnings.showwarning = previous_showwarning
        elapsed = time.perf_counter() - t0
        finished = True
    finally:
        if bar is not None:
            bar.close()
        # A finished or interrupted run replaces --output / --video; a failed one leaves the earlier files.
        try:
            if out_file is not None:
                try:
                    out_file.close()
                except OSError as e:
                    finished = False
                    if sys.exc_info()[1] is None:
                        raise output_error(args.output, e) from None
                finally:
                    if finished:
                        commit_partial(out_tmp, args.output)
                    else:
                        discard_partial(out_tmp)
        finally:  # the video's temporary file is committed or removed whatever happened to --output's
            if video is not None:
                if finished:
                    video.commit()
                else:
                    video.discard()
            source.close()

    fps = done / elapsed if elapsed > 0 else float("inf")
    outputs = [f"boxes -> {args.output}" if args.output else "boxes -> stdout"]
    if video is not None:
        outputs.append(f"video -> {args.video} ({video.frames} frames)")
    if args.mask_dir:
        outputs.append(f"masks -> {args.mask_dir} ({masks_written} PNGs)")
    if pipe_closed:
        return 0
    status = "interrupted: kept " if interrupted else ""
    if source.damaged:
        outputs.append(f"{len(source.damaged)} damaged frame(s), tracked as decoded: {_indices(source.damaged)}")
    print(f"lorat track: {status}{done} frames ({first_index}..{last_index}) in {elapsed:.1f} s, "
          f"{fps:.1f} fps mean; {'; '.join(outputs)}", file=sys.stderr)
    return EXIT_INTERRUPTED if interrupted else 0
